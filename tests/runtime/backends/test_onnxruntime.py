"""The ONNX Runtime runner binds each weight set as external initializers of a
weight-less engine at session creation; these tests prove the bound weights
are the ones that run, and show why initializer override was not used."""

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from compiler.export import export_graph  # noqa: E402
from runtime.backends import get_builder, get_runner  # noqa: E402
from runtime.backends.onnxruntime import session_options  # noqa: E402
from runtime.errors import EdgeRuntimeError  # noqa: E402
from trainer.config import load_config  # noqa: E402
from trainer.models import build_models  # noqa: E402
from trainer.models.subnet import TreeFolder  # noqa: E402

TREE = ((0, 0, 0), (0, 1, 1), (0, 1, 2), (2, 1, 2))


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """An optimised engine of one tree, plus two different weight sets for it."""
    from tests.conftest import randomise_bn

    torch.manual_seed(0)
    m = build_models(load_config("tiny"))
    randomise_bn(m.anchor)
    m.anchor.eval()
    d = tmp_path_factory.mktemp("ort")
    module = m.anchor.subnet(TREE)
    info = export_graph(module, (3, 16, 16), m.anchor.task_names, d / "graph.onnx")
    get_builder("onnxruntime").build(d / "graph.onnx", d / "engine.onnx", "fp32", info.weight_names)
    r = torch.tensor([0.2, 0.3, 0.5])
    deltas = {k: {n: torch.randn_like(v) * 0.2 for n, v in dd.items()} for k, dd in m.weight(r, 0.5).items()}
    folder = TreeFolder(m.anchor)
    return d, m.anchor, deltas, folder.weights(TREE), folder.weights(TREE, deltas)


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
