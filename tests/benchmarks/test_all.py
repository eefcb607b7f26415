"""Every benchmark script on the tiny run and bundle: correctness of the files
they write (timings are never asserted)."""

import json
import shutil

import pytest

pytest.importorskip("matplotlib")

from benchmarks import camera, compile, control, latency, resolution, summary  # noqa: E402
from benchmarks.__main__ import main as bench_main  # noqa: E402
from runtime.cli import main as runtime_main  # noqa: E402


@pytest.fixture
def bundle(tiny_bundle, tmp_path):
    dst = tmp_path / "bundle"
    shutil.copytree(tiny_bundle[0], dst)
    assert runtime_main(["calibrate", str(dst), "--repeats", "3", "--warmup", "1"]) == 0
    return dst


def test_every_benchmark_writes_json_markdown_and_plots(bundle, tiny_run, tmp_path):
    out = tmp_path / "results"
    lat = latency.main(str(bundle), str(tiny_run), repeats=3, warmup=1, out=out)
    assert {r["signature"] for r in lat["signatures"]} == set(
        json.loads((bundle / "manifest.json").read_text())["signatures"]
    )
    assert all(r["engine"]["p50"] > 0 and 0 < r["flops_ratio"] <= 1 for r in lat["signatures"])
    lat_sigs = [r["signature"] for r in lat["signatures"]]
    assert lat["peak"]["peak_gflops"] > 0 and "P2" in (out / "latency.md").read_text()
    res = resolution.main(str(bundle), str(tiny_run), sizes=(16, 32), threads=(1,), repeats=3, warmup=1, out=out)
    assert [(c["size"], c["threads"]) for c in res["configs"]] == [(16, 1), (32, 1)]
    for c in res["configs"]:
        assert {r["signature"] for r in c["rows"]} == set(lat_sigs)
        assert all(0 < r["flops_ratio"] <= 1 and r["latency_ratio"] > 0 for r in c["rows"])
    assert 3.5 < res["configs"][1]["full_gflops"] / res["configs"][0]["full_gflops"] < 4.5  # 2x the side, ~4x FLOPs
    comp = compile.main(str(tiny_run / "model.ckpt"), sizes=(21,), out=out)
    cold, warm = comp["rows"]
    assert cold["engine_builds"] == cold["signatures"] and warm["engine_builds"] == 0
    cam = camera.main(str(bundle), fps=200.0, frames=25, out=out)
    assert [len(r["per_frame"]) for r in cam["runs"]] == [25, 25]
    assert all(len(r["switches"]) == 4 for r in cam["runs"]) and cam["runs"][1]["calibrated_at_fps"] == 200.0
    ctl = control.main(str(tiny_run), str(bundle), quick=True, out=out)
    assert len(ctl["shares"]["ours"]["0.0"]) == len(ctl["shares"]["r"]) == 66
    assert set(ctl["plots"]) == {"fig5_param_share.png", "fig7_loss_vs_preference.png", "latency_over_simplex.png"}
    for name in ("latency_vs_flops.png", "p1_by_input_size.png", "compile_time.png", *ctl["plots"]):
        assert (out / name).stat().st_size > 1000
    text = summary.main(out).read_text()
    assert (
        "P1 latency tracks FLOPs" in text
        and "P1 at a 32x32 input, ORT threads 1" in text
        and "P5 build, 21 points, warm" in text
        and "uniformity" in text
    )


def test_cli_reports_missing_arguments(capsys):
    assert bench_main(["all", "--bundle", "x"]) == 2
    assert "missing --run" in capsys.readouterr().err


def test_benchmarks_check_that_the_run_is_the_bundles_model(bundle, tiny_run, tmp_path):
    from runtime.errors import EdgeRuntimeError

    other = tmp_path / "other-run"
    other.mkdir()
    (other / "model.ckpt").write_bytes((tiny_run / "model.ckpt").read_bytes() + b"\0")
    with pytest.raises(EdgeRuntimeError, match="not the checkpoint this bundle was built from"):
        latency.main(str(bundle), str(other), repeats=1, warmup=0, out=tmp_path / "results")
    with pytest.raises(EdgeRuntimeError, match="does not exist"):
        resolution.main(str(bundle), str(tmp_path / "nowhere"), out=tmp_path / "results")
