"""The stream app as a library: `run_stream(StreamConfig(...))` is what `runtime run` calls."""

import json

import numpy as np

import runtime
from runtime.app import StreamConfig, run_stream


def test_run_stream_reports_the_sub_network_of_every_frame(tiny_bundle, tmp_path):
    log = tmp_path / "frames.jsonl"
    res = run_stream(StreamConfig(str(tiny_bundle[0]), frames=6, r=(0.2, 0.3, 0.5), c=1.0, frames_log=str(log)))
    per_frame = [json.loads(line) for line in log.read_text().splitlines()]
    assert res["frames"] == len(per_frame) == 6 and not res["interrupted"]
    assert {f["point"] for f in per_frame} == {res["segments"][0]["point"]}
    with runtime.load(tiny_bundle[0]) as rt:
        want = rt.resolve([0.2, 0.3, 0.5], 1.0)[0].entry
    seg = res["segments"][0]
    assert (seg["point"], seg["c"], seg["first"], seg["last"]) == (want.name, want.c, 0, 5)


def test_long_runs_keep_bounded_memory(tiny_bundle, monkeypatch):
    """Ring buffers and streamed logs: nothing in memory grows with the number of frames."""
    import runtime.core
    from runtime.app import FrameLog

    monkeypatch.setattr(runtime.core, "RECENT_CALLS", 5)
    monkeypatch.setattr(FrameLog, "RECENT", 5)
    res = run_stream(StreamConfig(str(tiny_bundle[0]), frames=40))
    assert res["frames"] == res["summary"]["calls"] == 40 and "per_frame" not in res
    with runtime.load(tiny_bundle[0]) as rt:
        for _ in range(12):
            rt.run(np.zeros((1, *rt.manifest.input.shape), np.float32))
        assert rt.calls == 12 and len(rt.call_ms) == len(rt.engine_ms) == 5
