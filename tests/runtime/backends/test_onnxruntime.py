"""The ONNX Runtime runner binds each weight set as external initializers of a
weight-less engine at session creation; these tests prove the bound weights
are the ones that run, and show why initializer override was not used."""

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from runtime.backends import get_builder, get_runner  # noqa: E402
from runtime.backends.onnxruntime import session_options  # noqa: E402
from runtime.errors import EdgeRuntimeError  # noqa: E402
from tests.runtime.backends.conftest import TREE  # noqa: E402


@pytest.fixture(scope="module")
def engine(tree_graph):
    """An optimised engine of one tree, plus two different weight sets for it."""
    g = tree_graph
    get_builder("onnxruntime").build(g.dir / "graph.onnx", g.dir / "engine.onnx", "fp32", g.weight_names)
    return g.dir, g.anchor, g.deltas, g.base, g.adapted


def _reference(anchor, deltas, x):
    with torch.no_grad():
        return [o.numpy() for o in anchor.forward_tree(torch.from_numpy(x), TREE, deltas)]


def test_bound_weights_change_outputs_exactly_as_the_tree_model(engine):
    d, anchor, deltas, base, adapted = engine
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    runner = get_runner("onnxruntime")(d / "engine.onnx", adapted)
    with runner:
        got = runner.run(x)
        ref = _reference(anchor, deltas, x)
        for g, r in zip(got, ref):
            np.testing.assert_allclose(g, r, atol=1e-4 * np.abs(r).max())
        runner.bind(base)  # same engine, the unadapted weights
        got = runner.run(x)
        assert runner.last_latency_ms > 0
    ref0 = _reference(anchor, None, x)
    for g, r, r_adapted in zip(got, ref0, ref):
        np.testing.assert_allclose(g, r, atol=1e-4 * np.abs(r).max())
        # The two weight sets differ by far more than the tolerance, so binding the wrong one fails.
        assert np.abs(r - r_adapted).max() > 10 * 1e-4 * np.abs(r).max()


def test_initializer_override_is_silently_ignored_at_enable_all(engine):
    """Why the engine holds no weights: `add_initializer` on a graph that has its
    own weights is ignored at ORT_ENABLE_ALL (the NCHWc pass reorders the graph's
    weights), and honoured only with the optimiser (and its 2x speed-up) off."""
    import onnxruntime as ort

    d, anchor, deltas, base, adapted = engine
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    ref = _reference(anchor, deltas, x)

    def error(level):
        so = session_options(level=level)
        values = [ort.OrtValue.ortvalue_from_numpy(v) for v in adapted.values()]
        for name, value in zip(adapted, values):
            so.add_initializer(name, value)
        got = ort.InferenceSession(str(d / "graph.onnx"), so, providers=["CPUExecutionProvider"]).run(
            None, {"image": x}
        )
        return max(float(np.abs(g - r).max() / np.abs(r).max()) for g, r in zip(got, ref))

    assert error("ORT_ENABLE_ALL") > 1e-3
    assert error("ORT_DISABLE_ALL") < 1e-5


def test_engine_holds_structure_only(engine):
    d, *_ = engine
    assert (d / "engine.onnx").stat().st_size < (d / "graph.onnx").stat().st_size / 3
    with pytest.raises(EdgeRuntimeError, match="pass a weight set"):
        get_runner("onnxruntime")(d / "engine.onnx").activate()
