"""Adding a backend is one module plus one table row: a toy backend (ONNX's
reference evaluator) registered here is built by `compiler build`, chosen by
the runtime and matches ONNX Runtime, with no other code touched."""

import numpy as np
import pytest

from runtime import backends
from runtime.backends import BACKENDS, Backend

pytest.importorskip("onnx")

TOY = Backend("toy", "tests.runtime.backends.toy_backend", ("fp32",), ("cpu",), 0, ".toy.onnx")


@pytest.fixture()
def toy(monkeypatch):
    monkeypatch.setitem(BACKENDS, "toy", TOY)
    return TOY


def test_the_table_drives_names_choices_and_auto_order(toy):
    assert backends.names() == ["tensorrt", "onnxruntime", "openvino", "toy"]  # priority order
    assert backends.precisions() == ["fp32", "bf16", "fp16"]
    assert backends.available("toy")[0]
    with pytest.raises(backends.EdgeRuntimeError, match="unknown backend 'nope'; expected one of"):
        backends.backend("nope")


@pytest.mark.slow
def test_a_registered_backend_compiles_and_runs_like_onnxruntime(toy, tiny_run, tiny_bundle, tmp_path):
    import runtime
    from compiler.cli import main
    from compiler.grid import GRID_DIR

    out = tmp_path / "toy-bundle"
    assert (
        main(
            [
                "build",
                "--checkpoint",
                str(tiny_run / "model.ckpt"),
                "--prefs",
                str(GRID_DIR / "scenes3-21.json"),
                "--out",
                str(out),
                "--backend",
                "toy",
                "--cache",
                str(tmp_path / "cache"),
            ]
        )
        == 0
    )
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    with runtime.load(out) as toy_rt, runtime.load(tiny_bundle[0], "onnxruntime") as ort_rt:
        assert toy_rt.backend == "toy"  # auto: the only backend compiled into this bundle
        for r, c in [([1, 0, 0], 0.0), ([0.2, 0.3, 0.5], 1.0)]:
            toy_rt.set_preference(r, c), ort_rt.set_preference(r, c)
            # the same grid point (each bundle records its own backend's parity error)
            assert toy_rt.current.entry.name == ort_rt.current.entry.name
            assert toy_rt.current.entry.signature == ort_rt.current.entry.signature
            for a, b in zip(toy_rt.run(x).values(), ort_rt.run(x).values()):
                np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
