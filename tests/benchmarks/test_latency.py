"""benchmarks.latency.paired: the two engines of a P1 ratio see the same machine state."""

from benchmarks.latency import paired


def test_paired_alternates_calls_on_the_same_rotating_inputs():
    log = []
    ta, tb = paired(lambda x: log.append(("a", x)), lambda x: log.append(("b", x)), [0, 1, 2], warmup=2, repeats=5)
    assert len(ta) == len(tb) == 5 and all(t >= 0 for t in ta + tb)
    timed = log[4:]  # after 2 warm-up pairs
    assert [k for k, _ in timed] == ["a", "b"] * 5
    assert [x for _, x in timed[::2]] == [x for _, x in timed[1::2]] == [0, 1, 2, 0, 1]


def test_paired_blocks_start_with_an_untimed_call_and_time_every_repeat():
    log = []
    ta, tb = paired(
        lambda x: log.append(("a", x)), lambda x: log.append(("b", x)), [0, 1, 2], warmup=1, repeats=5, block=3
    )
    assert len(ta) == len(tb) == 5
    # warm-up pair, then per block: one untimed call + the block's timed calls, a before b
    assert [k for k, _ in log[2:]] == ["a"] * 4 + ["b"] * 4 + ["a"] * 3 + ["b"] * 3
    assert [x for k, x in log[2:] if k == "a"] == [0, 0, 1, 2, 0, 0, 1]
