"""The backend contract: every registered backend (and the toy one) passes the
same tests, or skips with the reason it cannot run here (TensorRT without a GPU).
A new backend gets this suite by adding its table row."""

import threading

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")

from runtime.backends import BACKENDS, available, get_builder, get_runner  # noqa: E402
from runtime.errors import EdgeRuntimeError  # noqa: E402
from tests.runtime.backends.conftest import SHAPE, TREE  # noqa: E402
from tests.runtime.backends.test_registry import TOY  # noqa: E402


@pytest.fixture(scope="module")
def model(tree_graph):
    """The exported graph's folder and weight names, its anchor, and two weight sets (unadapted, adapted)."""
    g = tree_graph
    return g.dir, g.weight_names, g.anchor, {"base": (g.base, None), "adapted": (g.adapted, g.deltas)}


@pytest.fixture(scope="module", params=[*sorted(BACKENDS), "toy"])
def engine(request, model):
    """(backend name, engine path) built by the backend's own builder."""
    name = request.param
    mp = pytest.MonkeyPatch()
    if name == "toy":
        mp.setitem(BACKENDS, "toy", TOY)
    ok, why = available(name)
    if not ok:
        mp.undo()
        pytest.skip(f"{name} backend unavailable: {why}")
    d, names, *_ = model
    builder = get_builder(name)
    out = d / f"engine-{name}{builder.suffix}"
    builder.check("fp32")
    builder.build(d / "graph.onnx", out, "fp32", tuple(names))
    yield name, out
    mp.undo()


def reference(model, which: str, x: np.ndarray) -> list[np.ndarray]:
    _, _, anchor, sets = model
    with torch.no_grad():
        return [o.numpy() for o in anchor.forward_tree(torch.from_numpy(x), TREE, sets[which][1])]


def close_to(got, ref):
    for g, r in zip(got, ref, strict=True):
        np.testing.assert_allclose(g, r, atol=1e-4 * np.abs(r).max())


X = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)


def test_activate_run_close(engine, model):
    name, path = engine
    runner = get_runner(name)(path, model[3]["adapted"][0])
    with runner:
        close_to(runner.run(X), reference(model, "adapted", X))
        assert np.isfinite(runner.last_latency_ms) and runner.last_latency_ms > 0
    with pytest.raises(EdgeRuntimeError, match="not active"):
        runner.run(X)


def test_binding_a_second_weight_set_runs_those_weights(engine, model):
    name, path = engine
    with get_runner(name)(path, model[3]["adapted"][0]) as runner:
        runner.bind(model[3]["base"][0])
        close_to(runner.run(X), reference(model, "base", X))


def test_a_wrong_input_is_one_clear_error(engine, model):
    name, path = engine
    with get_runner(name)(path, model[3]["base"][0]) as runner:
        with pytest.raises(EdgeRuntimeError, match=r"shape \(1, 3, 16, 16\), found \(1, 3, 8, 8\)"):
            runner.run(np.zeros((1, 3, 8, 8), np.float32))
        with pytest.raises(EdgeRuntimeError, match="float32, found float64"):
            runner.run(np.zeros(SHAPE))


def test_missing_or_corrupt_engines_are_one_clear_error(engine, model, tmp_path):
    name, path = engine
    with pytest.raises(EdgeRuntimeError, match="missing"):
        get_runner(name)(tmp_path / f"nope{path.suffix}", model[3]["base"][0]).activate()
    bad = tmp_path / f"bad{path.suffix}"
    bad.write_bytes(b"not an engine")
    with pytest.raises(EdgeRuntimeError, match=f"{name}: cannot"):
        get_runner(name)(bad, model[3]["base"][0]).activate()


def test_two_runners_on_two_threads_each_run_their_own_weights(engine, model):
    name, path = engine
    results, errors = {}, []

    def work(which):
        try:
            with get_runner(name)(path, model[3][which][0], threads=1) as runner:
                results[which] = [runner.run(X) for _ in range(10)]
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in ("base", "adapted")]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    for which, outs in results.items():
        for out in outs:
            close_to(out, reference(model, which, X))
