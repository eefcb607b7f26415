"""The scale benchmark's pieces on the tiny run: what they measure is consistent and
the report renders, also where a measurement has nothing to measure (n/a)."""

import json

from benchmarks import scale
from compiler.grid import GRID_DIR


def test_scale_pieces_measure_and_render(tiny_run, tiny_bundle, tmp_path):
    bundle = tiny_bundle[0]
    built = scale.builds(tiny_run / "model.ckpt", {66: GRID_DIR / "scenes3-21.json"}, tmp_path, 8, jobs_compare=False)
    cold, warm = built["rows"]
    assert (cold["mode"], warm["mode"]) == ("cold", "warm") and cold["points"] == 21
    sizes = built["sizes"][66]
    assert sizes["total"] == sum(v for k, v in sizes.items() if k != "total") and sizes["anchor"] > 0
    lat = scale.latency(bundle, 2)
    assert len(lat["rows"]) == len(json.loads((bundle / "manifest.json").read_text())["signatures"])
    assert 0 < lat["P3"]["fraction"]
    sw = scale.swaps_and_memory(bundle, 3)
    assert sw["cold_swap_ms"]["n"] == 3 and sw["memory_per_warm_subnetwork_mb"]["p50"] > 0
    cams = [scale.camera(bundle, 0.5, wait) for wait in (False, True)]
    assert all(c["frames"] > 0 and c["steady_ms"]["n"] + c["during_swap_ms"]["n"] == c["frames"] for c in cams)
    sw["weight_change_same_signature_ms"] = scale.pct([])  # a bundle with one weight set per signature
    r = {"input": [3, 16, 16], "backbone": "tiny-resnet", "full_net": {"params": 1e5, "flops": 1e7},
         "builds": built, "latency": lat, "swaps": sw, "ort_modes": [], "camera": cams}  # fmt: skip
    md = scale.markdown({"machine": {"cpu": "cpu", "cores": 2}, "models": {"tiny": r}})
    assert "## tiny" in md and "n/a ms" in md and "| 66 | cold | 1 |" in md
