"""`runtime` CLI: headless run with a schedule, calibrate, bench, bad input."""

import json
import shutil

import pytest

from runtime.cli import main
from runtime.manifest import load_manifest
from tests.conftest import write_latency

cv2 = pytest.importorskip("cv2")


@pytest.fixture
def bundle(tiny_bundle, tmp_path):
    dst = tmp_path / "bundle"
    shutil.copytree(tiny_bundle[0], dst)
    return dst


def _distinct_points(m, k):
    """k grid points, each consecutive pair on a different (signature, weights)."""
    return [e for e in m.grid][:k]


def test_headless_run_records_the_frame_each_scheduled_swap_took_effect(bundle, tmp_path, capsys):
    m = load_manifest(bundle)
    pts = _distinct_points(m, 5)
    # Latency table written by hand so the budget pick is known: grid[0]'s signature is fastest
    # (other grid points may share it; the first of them in grid order is grid[0]).
    lat = {sig: 0.5 if sig == pts[0].signature else 1.0 for sig in m.signatures}
    write_latency(bundle, "onnxruntime", m.signatures[pts[0].signature].engines[0].device, lat)
    events = [{"frame": 4 * (i + 1), "r": list(e.r), "c": e.c} for i, e in enumerate(pts[1:])]
    events.append({"frame": 22, "budget_ms": 0.1})  # nothing fits: the fastest point, grid[0]
    events.append({"frame": 26, "r": list(pts[2].r), "c": pts[2].c})
    (tmp_path / "s.json").write_text(json.dumps({"events": events}))
    out, stats = tmp_path / "out.mp4", tmp_path / "stats.json"
    assert (
        main(
            [
                "run",
                "--bundle",
                str(bundle),
                "--source",
                "synthetic",
                "--frames",
                "30",
                "--headless",
                "--out",
                str(out),
                "--schedule",
                str(tmp_path / "s.json"),
                "--stats",
                str(stats),
                "--wait-swaps",
            ]
        )
        == 0
    )
    assert "frames processed" in capsys.readouterr().out
    s = json.loads(stats.read_text())
    assert s["frames"] == s["processed"] == 30 and s["dropped"] == 0
    assert s["frames_log"] == str(tmp_path / "stats.frames.jsonl")  # per-frame records are streamed beside it
    per_frame = [json.loads(line) for line in (tmp_path / "stats.frames.jsonl").read_text().splitlines()]
    assert [f["frame"] for f in per_frame] == list(range(30))
    # --wait-swaps: every swap is active at the frame whose event asked for it.
    assert [(sw["requested"], sw["frame"], sw["state"]) for sw in s["swaps"]] == [
        (e["frame"], e["frame"], "active") for e in events
    ]
    for sw in s["swaps"]:
        assert per_frame[sw["frame"]]["point"] == sw["to"] and per_frame[sw["frame"] - 1]["point"] != sw["to"]
    # One segment per stretch on one point, priced from the manifest.
    seg = s["segments"]
    assert [(g["first"], g["last"]) for g in seg][:2] == [(0, 3), (4, 7)] and seg[-1]["last"] == 29
    sig = m.signatures[seg[1]["signature"]]
    assert seg[1]["point"] == pts[1].name and seg[1]["params"] == sig.params / m.full_net["params"]
    cap = cv2.VideoCapture(str(out))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == s["video_frames"] == 30


def test_background_swaps_record_where_each_took_effect(bundle, tmp_path):
    """Without --wait-swaps the frame loop never waits: each swap takes effect at or
    after the frame that asked (or is overtaken by the next request)."""
    m = load_manifest(bundle)
    events = [{"frame": 2 * (i + 1), "r": list(e.r), "c": e.c} for i, e in enumerate(m.grid[1:9])]
    (tmp_path / "s.json").write_text(json.dumps({"events": events}))
    stats = tmp_path / "stats.json"
    args = [
        "run",
        str(bundle),
        "--headless",
        "--frames",
        "60",
        "--schedule",
        str(tmp_path / "s.json"),
        "--stats",
        str(stats),
    ]
    assert main(args) == 0
    s = json.loads(stats.read_text())
    per_frame = [json.loads(line) for line in (tmp_path / "stats.frames.jsonl").read_text().splitlines()]
    assert [sw["requested"] for sw in s["swaps"]] == [e["frame"] for e in events]
    # the last swap to take effect before a frame started is the one that frame ran on
    # (two can take effect between the same two frames when a load finishes fast)
    ran_on = {sw["frame"]: sw["to"] for sw in s["swaps"] if sw["state"] == "active"}
    for sw in s["swaps"]:
        assert sw["state"] in ("active", "superseded")
        if sw["state"] == "active":
            assert sw["frame"] >= sw["requested"]
            if sw["frame"] < len(per_frame):  # a load still running at the last frame takes effect after it
                assert per_frame[sw["frame"]]["point"] == ran_on[sw["frame"]]
            assert per_frame[sw["frame"] - 1]["point"] != sw["to"]


def test_live_run_processes_the_requested_frames_and_reports_drops(bundle, tmp_path, monkeypatch):
    import time

    import runtime.app

    real = runtime.app.preprocess

    def slow(*a, **k):  # 10 ms per frame against a frame every 0.5 ms: frames must be dropped, never queued
        time.sleep(0.01)
        return real(*a, **k)

    monkeypatch.setattr(runtime.app, "preprocess", slow)
    stats = tmp_path / "stats.json"
    assert (
        main(
            [
                "run",
                str(bundle),
                "--source",
                "synthetic",
                "--frames",
                "12",
                "--headless",
                "--live-fps",
                "2000",
                "--stats",
                str(stats),
            ]
        )
        == 0
    )
    s = json.loads(stats.read_text())
    assert s["live"] and s["processed"] == 12 and s["dropped"] > 0
    assert s["produced"] - s["processed"] - s["dropped"] in (0, 1)
    assert main(["run", "--bundle", str(bundle), "--live-fps", "0", "--headless"]) == 2


def test_ctrl_c_ends_the_stream_and_keeps_stats_and_video(bundle, tmp_path, monkeypatch):
    import runtime.app

    real = runtime.app.open_source

    def interrupted_after_7(*a, **k):
        frames, live = real(*a, **k)

        def gen():
            for i, f in enumerate(frames):
                if i == 7:
                    raise KeyboardInterrupt
                yield f

        return gen(), live

    monkeypatch.setattr(runtime.app, "open_source", interrupted_after_7)
    out, stats = tmp_path / "out.mp4", tmp_path / "stats.json"
    assert (
        main(["run", "--bundle", str(bundle), "--frames", "30", "--headless", "--out", str(out), "--stats", str(stats)])
        == 130
    )
    s = json.loads(stats.read_text())
    assert s["interrupted"] and s["processed"] == 7 and s["video_frames"] == 7
    cap = cv2.VideoCapture(str(out))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 7  # the mp4 was finalised, not left truncated


def test_bench_and_calibrate_cover_every_signature(bundle, capsys):
    assert main(["bench", str(bundle), "--repeats", "3", "--warmup", "1"]) == 0
    out = capsys.readouterr().out
    sigs = load_manifest(bundle).signatures
    assert all(sig in out for sig in sigs)
    assert main(["calibrate", str(bundle), "--repeats", "3", "--warmup", "1"]) == 0
    table = json.loads(next((bundle / "latency").glob("onnxruntime-*.json")).read_text())
    assert set(table["signatures"]) == set(sigs)
    assert all(0 < v["p50"] <= v["p90"] <= v["p99"] for v in table["signatures"].values())


@pytest.mark.parametrize(
    "schedule, match",
    [
        ({"events": [{"frame": -1, "budget_ms": 1}]}, "frame must be an integer"),
        ({"events": [{"frame": 1, "r": [1, 0, 0]}]}, "r and c together"),
        ({"events": [{"frame": 1, "speed": 2}]}, "expected keys"),
        ([], "expected"),
        ({"events": [{"frame": 3, "r": [0.5, 0.5], "c": 0}]}, "r must have 3 entries"),
        ({"events": [{"frame": 3, "budget_ms": -1}]}, "budget_ms must be a positive number"),
    ],
)
def test_bad_schedules_exit_2(bundle, tmp_path, capsys, schedule, match):
    (tmp_path / "s.json").write_text(json.dumps(schedule))
    assert main(["run", "--bundle", str(bundle), "--headless", "--schedule", str(tmp_path / "s.json")]) == 2
    assert match in capsys.readouterr().err


def test_bad_bundle_or_source_exit_2(bundle, tmp_path, capsys):
    assert main(["run", "--bundle", str(tmp_path / "nope"), "--headless"]) == 2
    assert "not a bundle" in capsys.readouterr().err
    assert main(["run", "--bundle", str(bundle), "--source", str(tmp_path / "missing.mp4"), "--headless"]) == 2
    assert "cannot open source" in capsys.readouterr().err
    raw = json.loads((bundle / "manifest.json").read_text())
    raw["format_version"] = 99
    (bundle / "manifest.json").write_text(json.dumps(raw))
    assert main(["bench", "--bundle", str(bundle)]) == 2
    assert "version 99 is not supported" in capsys.readouterr().err


def test_the_bundle_is_positional_for_every_subcommand_and_two_bundles_are_refused(bundle, tmp_path, capsys):
    assert main(["bench", str(bundle), "--repeats", "1", "--warmup", "0"]) == 0
    assert main(["run", str(bundle), "--frames", "2", "--headless"]) == 0
    with pytest.raises(SystemExit) as exc:
        main(["run", str(bundle), "--bundle", str(tmp_path), "--headless"])
    assert exc.value.code == 2 and "two bundles given" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["calibrate"])
    assert exc.value.code == 2 and "bundle directory is required" in capsys.readouterr().err


def test_sigterm_ends_a_run_like_ctrl_c_with_a_readable_video_and_stats(bundle, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    cv2 = pytest.importorskip("cv2")
    out, stats = tmp_path / "out.mp4", tmp_path / "stats.json"
    cmd = [sys.executable, "-m", "runtime.cli", "run", str(bundle), "--frames", "100000", "--headless",
           "--out", str(out), "--stats", str(stats)]  # fmt: skip
    err = tmp_path / "stderr.txt"  # a file, not a pipe nobody drains while the run goes on
    with err.open("w") as f:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=f)
    log = tmp_path / "stats.frames.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not log.exists() or log.stat().st_size < 2000):
        time.sleep(0.2)  # until a few dozen frames have run
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 130, err.read_text()
    s = json.loads(stats.read_text())
    # SIGTERM stops between two frames: every processed frame is in the video.
    assert s["interrupted"] and s["frames"] >= 10 and s["video_frames"] == s["frames"]
    assert int(cv2.VideoCapture(str(out)).get(cv2.CAP_PROP_FRAME_COUNT)) == s["video_frames"]
