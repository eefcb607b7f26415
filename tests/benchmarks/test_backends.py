"""The CPU-backend comparison on the tiny run: every usable backend is built and timed."""

from benchmarks import backends
from compiler.grid import GRID_DIR


def test_every_cpu_backend_is_built_timed_and_reported(tiny_run, tmp_path):
    bundles = backends.build_all(str(tiny_run / "model.ckpt"), str(GRID_DIR / "scenes3-21.json"), tmp_path)
    assert set(bundles) == set(backends.variants()) and ("onnxruntime", "fp32") in bundles
    rows = backends.measure(bundles, calls=3)
    assert rows and all(r[f"{b}-{p}"] > 0 for r in rows for b, p in bundles)
    res = {"machine": {"cpu": "cpu", "cores": 2}, "input": [3, 16, 16], "variants": list(bundles), "rows": rows}
    assert "| 1 | " in backends.markdown(res) and "(1.00x, 1.00-1.00)" in backends.markdown(res)
