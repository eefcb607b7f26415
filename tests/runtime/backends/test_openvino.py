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
