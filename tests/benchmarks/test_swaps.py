import json

from benchmarks import swaps


def test_swaps_benchmark_writes_consistent_results(tiny_bundle, tmp_path):
    res = swaps.main(str(tiny_bundle[0]), rounds=8, calls=10, threads=1, out=tmp_path)
    saved = json.loads((tmp_path / "swaps.json").read_text())
    assert saved["hot_swap_ms"]["n"] >= 7 and saved["cold_swap_ms"]["n"] >= 19
    for key in (
        "hot_swap_ms",
        "cold_swap_ms",
        "session_run_ms",
        "runtime_run_ms",
        "resolve_nearest_ms",
        "resolve_exact_ms",
    ):
        v = saved[key]
        assert 0 <= v["p50"] <= v["p90"] <= v["p99"], key
    assert saved["machine"]["cores"] >= 1 and res["bundle"] == str(tiny_bundle[0])
    assert "| hot swap (warm pool) |" in (tmp_path / "swaps.md").read_text()
