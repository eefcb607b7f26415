"""runtime.sources: file sources in order, live sources keep only the newest frame."""

import time

import numpy as np
import pytest

from runtime.errors import EdgeRuntimeError
from runtime.sources import LiveSource, is_live, open_source


def _numbered(n=None):
    """Frames whose first pixel is their sequence number (endless if n is None; int64,
    so a consumer delayed by the machine never sees the numbers wrap)."""
    i = 0
    while n is None or i < n:
        yield np.full((2, 2, 3), i, np.int64)
        i += 1


def test_a_slow_consumer_gets_the_newest_frames_and_the_rest_are_counted_as_dropped():
    live = LiveSource(_numbered(), fps=500, limit=8)
    seen = []
    for frame in live:
        seen.append(int(frame[0, 0, 0]))
        time.sleep(0.03)  # ~15 frame periods per frame: most arrivals must be dropped
    assert len(seen) == 8 and seen == sorted(seen) and len(set(seen)) == 8
    assert live.dropped > 0 and seen[-1] - seen[0] > 7  # frames were skipped, not queued
    assert live.produced - live.delivered - live.dropped in (0, 1)  # at most one left untaken at the stop


def test_a_finite_live_source_ends_and_accounts_for_every_frame():
    live = LiveSource(_numbered(20))
    got = [int(f[0, 0, 0]) for f in live]
    assert got == sorted(got) and got[-1] == 19  # the last frame is always delivered
    assert live.produced == 20 and live.delivered + live.dropped == 20


def test_producer_errors_reach_the_consumer_and_the_thread_stops():
    def broken():
        yield np.zeros((2, 2, 3), np.uint8)
        raise OSError("camera unplugged")

    live = LiveSource(broken())
    with pytest.raises(OSError, match="camera unplugged"):
        list(live)
    assert not live._thread.is_alive()


def test_which_sources_are_live_and_bad_rates_are_rejected(tiny_bundle):
    assert is_live("0") and is_live("rtsp://cam/stream") and not is_live("clip.mp4") and not is_live("synthetic")
    frames, live = open_source("synthetic", tiny_bundle[0], 3)
    assert live is None and len(list(frames)) == 3
    frames, live = open_source("synthetic", tiny_bundle[0], 3, live_fps=1000)
    assert frames is live and len(list(frames)) == 3
    for bad in (0, -5, float("nan")):
        with pytest.raises(EdgeRuntimeError, match="positive number of frames per second"):
            open_source("synthetic", tiny_bundle[0], 3, live_fps=bad)
