"""The stream app as a library: `run_stream(StreamConfig(...))` is what `runtime run` calls."""

import runtime
from runtime.app import StreamConfig, run_stream


def test_run_stream_reports_the_sub_network_of_every_frame(tiny_bundle):
    res = run_stream(StreamConfig(str(tiny_bundle[0]), frames=6, r=(0.2, 0.3, 0.5), c=1.0))
    assert res["frames"] == len(res["per_frame"]) == 6 and not res["interrupted"]
    assert {f["point"] for f in res["per_frame"]} == {res["segments"][0]["point"]}
    with runtime.load(tiny_bundle[0]) as rt:
        want = rt.resolve([0.2, 0.3, 0.5], 1.0)[0].entry
    seg = res["segments"][0]
    assert (seg["point"], seg["c"], seg["first"], seg["last"]) == (want.name, want.c, 0, 5)
