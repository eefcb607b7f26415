"""TensorRT runner and builder: run only where TensorRT and a CUDA GPU exist."""

import subprocess
import sys

import numpy as np
import pytest

from runtime.backends import available

OK, REASON = available("tensorrt")


def test_importing_the_tensorrt_backend_needs_no_tensorrt():
    code = (
        'import sys, runtime.backends as b; b.get_builder("tensorrt"); b.get_runner("tensorrt"); '
        'print("tensorrt" in sys.modules)'
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_unavailable_reason_is_specific():
    if OK:
        pytest.skip("TensorRT is available here")
    assert "tensorrt" in REASON or "CUDA" in REASON or "cuda-python" in REASON


@pytest.mark.skipif(not OK, reason=f"TensorRT backend unavailable: {REASON}")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_engine_refits_to_each_weight_set(tmp_path, precision):
    import torch

    from compiler.export import export_graph
    from runtime.backends import BuildOptions, get_builder, get_runner
    from runtime.errors import EdgeRuntimeError
    from tests.conftest import randomise_bn
    from trainer.config import load_config
    from trainer.models import build_models
    from trainer.models.subnet import TreeFolder

    torch.manual_seed(0)
    m = build_models(load_config("tiny"))
    randomise_bn(m.anchor)
    m.anchor.eval()
    tree = ((0, 0, 0), (0, 1, 1), (0, 1, 2), (2, 1, 2))
    b = get_builder("tensorrt", BuildOptions(timing_cache=tmp_path / "timing.cache"))
    info = export_graph(
        m.anchor.subnet(tree), (3, 16, 16), m.anchor.task_names, tmp_path / "g.onnx", b.graph_precision(precision)
    )
    meta = b.build(tmp_path / "g.onnx", tmp_path / "e.plan", precision, info.weight_names)
    assert (tmp_path / "timing.cache").stat().st_size > 0
    if meta["stripped"]:  # the plan holds no weights: it cannot run without a weight set
        with pytest.raises(EdgeRuntimeError, match="bind a weight set"):
            get_runner("tensorrt")(tmp_path / "e.plan").activate()
    deltas = {
        k: {n: torch.randn_like(v) * 0.2 for n, v in dd.items()}
        for k, dd in m.adaptation(torch.tensor([0.2, 0.3, 0.5]), 0.5).items()
    }
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    tol = 1e-4 if precision == "fp32" else 2e-2
    with get_runner("tensorrt")(tmp_path / "e.plan", TreeFolder(m.anchor).weights(tree, deltas)) as runner:
        got = runner.run(x)
    with torch.no_grad():
        ref = [o.numpy() for o in m.anchor.forward_tree(torch.from_numpy(x), tree, deltas)]
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, atol=tol * np.abs(r).max())
