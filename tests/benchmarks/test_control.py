import pytest

pytest.importorskip("matplotlib")

from benchmarks.control import cost_latency_ratios  # noqa: E402


def test_cost_latency_ratio_pairs_c0_and_c1_of_the_same_r():
    pts = [
        {"r": [1.0, 0.0], "c": 0.0, "p50": 2.0},
        {"r": [1.0, 0.0], "c": 1.0, "p50": 1.0},
        {"r": [0.5, 0.5], "c": 0.0, "p50": 2.0},
        {"r": [0.5, 0.5], "c": 1.0, "p50": 1.9},
        {"r": [0.5, 0.5], "c": 0.5, "p50": 0.1},  # c = 0.5 is not part of the ratio
        {"r": [0.0, 1.0], "c": 1.0, "p50": 1.0},
    ]  # no c = 0 partner: left out
    q = cost_latency_ratios(pts)
    assert q["n"] == 2 and sorted(q["ratios"]) == [0.5, 0.95]
    assert q["share_at_most_0.85"] == 0.5 and q["min"] == 0.5 and q["max"] == 0.95
    assert cost_latency_ratios(pts[-1:]) is None


def test_cost_latency_ratio_reports_the_r_whose_sub_network_changes():
    pts = [
        {"r": [1.0, 0.0], "c": 0.0, "p50": 1.0, "signature": "a"},
        {"r": [1.0, 0.0], "c": 1.0, "p50": 1.0, "signature": "a"},  # one trunk at both c
        {"r": [0.5, 0.5], "c": 0.0, "p50": 2.0, "signature": "full"},
        {"r": [0.5, 0.5], "c": 1.0, "p50": 1.0, "signature": "a"},
    ]
    q = cost_latency_ratios(pts)
    assert q["n"] == 2 and q["n_changed"] == 1
    assert q["changed_median"] == 0.5 and q["changed_share_at_most_0.85"] == 1.0
