"""OpenVINO as a bundle's backend: built by `compiler build --backend openvino`, run by
the runtime like ONNX Runtime, in fp32 (equal to ONNX Runtime) and bf16 (within the
reduced-precision parity budget, on CPUs that execute bf16)."""

import numpy as np
import pytest

import runtime
from runtime.backends import available

pytestmark = pytest.mark.skipif(not available("openvino")[0], reason=f"openvino: {available('openvino')[1]}")


def _build(tiny_run, tmp_path, precision):
    from compiler.cli import main
    from compiler.grid import GRID_DIR

    out = tmp_path / f"ov-{precision}"
    args = ["build", "--checkpoint", str(tiny_run / "model.ckpt"), "--prefs", str(GRID_DIR / "scenes3-21.json")]
    args += ["--out", str(out), "--backend", "openvino", "--precision", precision, "--cache", str(tmp_path / "c")]
    assert main(args) == 0
    return out


@pytest.mark.slow
def test_an_openvino_bundle_runs_like_onnxruntime(tiny_run, tiny_bundle, tmp_path):
    out = _build(tiny_run, tmp_path, "fp32")
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    with runtime.load(out) as ov_rt, runtime.load(tiny_bundle[0], "onnxruntime") as ort_rt:
        assert ov_rt.backend == "openvino"
        for r, c in [([1, 0, 0], 0.0), ([0.2, 0.3, 0.5], 0.0)]:
            ov_rt.set_preference(r, c), ort_rt.set_preference(r, c)
            for a, b in zip(ov_rt.run(x).values(), ort_rt.run(x).values()):
                np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())


@pytest.mark.slow
def test_bf16_engines_pass_the_reduced_precision_budget(tiny_run, tmp_path):
    from runtime.backends.openvino import cpu_has_bf16
    from runtime.manifest import load_manifest

    if not cpu_has_bf16():
        pytest.skip("this CPU does not execute bf16")
    m = load_manifest(_build(tiny_run, tmp_path, "bf16"))
    worst = max(err["rel"] for e in m.grid for err in e.parity.values())
    assert 1e-5 < worst <= 3e-2  # really reduced precision, and within the budget


@pytest.fixture(scope="module")
def ov_engine(tree_graph):
    from runtime.backends import get_builder

    out = tree_graph.dir / "engine.ov.onnx"
    meta = get_builder("openvino").build(tree_graph.dir / "graph.onnx", out, "fp32", tree_graph.weight_names)
    assert meta["engine_format"] == 2
    return out


def test_the_engine_takes_the_image_then_every_weight_as_graph_inputs(tree_graph, ov_engine):
    """Engine format 2, what the C++ runtime relies on: no weight initializers; input 0 the
    image, then one input per weight with its name, element type and shape."""
    import onnx

    from runtime.backends.openvino import ENGINE_FORMAT, FORMAT_KEY, PRECISION_KEY

    graph, engine = onnx.load(str(tree_graph.dir / "graph.onnx")), onnx.load(str(ov_engine))
    assert not {t.name for t in engine.graph.initializer} & set(tree_graph.weight_names)
    inputs = [(i.name, i.type.tensor_type.elem_type, [d.dim_value for d in i.type.tensor_type.shape.dim])
              for i in engine.graph.input]  # fmt: skip
    assert inputs[0] == ("image", onnx.TensorProto.FLOAT, [1, 3, 16, 16])
    weights = {t.name: (t.name, t.data_type, list(t.dims)) for t in graph.graph.initializer}
    assert sorted(inputs[1:]) == sorted(weights[n] for n in tree_graph.weight_names)
    meta = {p.key: p.value for p in engine.metadata_props}
    assert meta == {PRECISION_KEY: "fp32", FORMAT_KEY: str(ENGINE_FORMAT)}
    assert engine.graph.node == graph.graph.node  # the computation itself is untouched


def test_a_missing_or_misshapen_weight_is_named(tree_graph, ov_engine):
    from runtime.backends import get_runner
    from runtime.errors import EdgeRuntimeError

    name = tree_graph.weight_names[0]
    lacking = {k: v for k, v in tree_graph.base.items() if k != name}
    with pytest.raises(EdgeRuntimeError, match=f"the weight set lacks \\['{name}'\\]"):
        get_runner("openvino")(ov_engine, lacking).activate()
    misshapen = {**tree_graph.base, name: tree_graph.base[name][:1]}
    with pytest.raises(EdgeRuntimeError, match=f"weight {name} has shape"):
        get_runner("openvino")(ov_engine, misshapen).activate()


def test_an_engine_of_format_1_gets_the_rebuild_error(tree_graph, tmp_path):
    """Format 1 engines held the weights as never-written external initializers."""
    import onnx

    from runtime.backends import get_runner
    from runtime.backends.onnxruntime import externalise
    from runtime.backends.openvino import PRECISION_KEY
    from runtime.errors import EdgeRuntimeError

    model = onnx.load(str(tree_graph.dir / "graph.onnx"))
    externalise(model, set(tree_graph.weight_names))
    onnx.helper.set_model_props(model, {PRECISION_KEY: "fp32"})
    old = tmp_path / "old.ov.onnx"
    onnx.save(model, str(old))
    with pytest.raises(EdgeRuntimeError, match=r"openvino: cannot load engine .*rebuild with compiler >= 0\.3\.0"):
        get_runner("openvino")(old, tree_graph.base).activate()
    plain = onnx.load(str(tree_graph.dir / "graph.onnx"))  # readable, but not an engine of format 2
    onnx.helper.set_model_props(plain, {PRECISION_KEY: "fp32"})
    onnx.save(plain, str(old))
    with pytest.raises(EdgeRuntimeError, match=r"engine format 1, this runtime reads 2; rebuild the bundle"):
        get_runner("openvino")(old, tree_graph.base).activate()


GUARD = """
import builtins, sys
import numpy as np
real = builtins.__import__
def guard(name, *args, **kwargs):
    if name.split(".")[0] in ("onnx", "torch"):
        raise ImportError("blocked: " + name)
    return real(name, *args, **kwargs)
builtins.__import__ = guard
from runtime.backends import get_runner
weights = dict(np.load(sys.argv[2]))
with get_runner("openvino")(sys.argv[1], weights) as r:
    out = r.run(np.ones((1, 3, 16, 16), np.float32))
np.save(sys.argv[3], out[0])
"""


def test_the_runner_binds_weights_through_openvino_alone(tree_graph, ov_engine, tmp_path):
    """No onnx or protobuf at run time: binding is OpenVINO's graph API, as in C++."""
    import subprocess
    import sys

    from runtime.backends import get_runner

    np.savez(tmp_path / "w.npz", **tree_graph.adapted)
    args = [sys.executable, "-c", GUARD, str(ov_engine), str(tmp_path / "w.npz"), str(tmp_path / "out.npy")]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with get_runner("onnxruntime")(_ort_engine(tree_graph), tree_graph.adapted) as ort:
        ref = ort.run(np.ones((1, 3, 16, 16), np.float32))[0]
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def _ort_engine(tree_graph):
    from runtime.backends import get_builder

    out = tree_graph.dir / "engine-ref.onnx"
    if not out.exists():
        get_builder("onnxruntime").build(tree_graph.dir / "graph.onnx", out, "fp32", tree_graph.weight_names)
    return out
