"""The width family's torch-free half: specs, and the search from (r, budget) to widths."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecore.widths import SlimAnchor, budget_of, canonical_widths, search, widths_signature

WIDTHS = (25, 50, 75, 100)


def table(seed: int, n: int = 3):
    """A random search table: losses fall with width, costs grow with it."""
    rng = np.random.default_rng(seed)
    k = len(WIDTHS)
    loss = np.sort(rng.uniform(0.5, 2, (k, n, k)), axis=2)[:, :, ::-1] * np.linspace(1.2, 1, k)[:, None, None]
    enc = {e: float(e * e) for e in WIDTHS}
    dec = np.array([[[a * 10 + b * 5 + rng.uniform(0, 3) for b in WIDTHS] for _ in range(n)] for a in WIDTHS])
    return loss, enc, dec


def cost_of(spec, enc, dec):
    a = WIDTHS.index(spec[0])
    return enc[spec[0]] + sum(dec[a, i, WIDTHS.index(d)] for i, d in enumerate(spec[1:]))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 1000), frac=st.floats(0, 1), r=st.lists(st.floats(0.01, 1), min_size=3, max_size=3))
def test_search_never_exceeds_the_budget_and_widens_the_preferred_decoder(seed, frac, r):
    loss, enc, dec = table(seed)
    r = np.array(r) / sum(r)
    low, high = cost_of((25, 25, 25, 25), enc, dec), cost_of((100, 100, 100, 100), enc, dec)
    budget = budget_of(frac, low, high)
    spec = search(r, budget, WIDTHS, loss, enc, dec)
    assert cost_of(spec, enc, dec) <= budget + 1e-9
    for i, j in itertools.permutations(range(3), 2):
        if r[i] > r[j]:
            assert spec[1 + i] >= spec[1 + j]


def test_search_is_the_best_monotone_configuration_within_the_budget():
    loss, enc, dec = table(7)
    r = np.array([0.6, 0.3, 0.1])
    budget = 0.6 * cost_of((100,) * 4, enc, dec)
    best = None
    for spec in itertools.product(WIDTHS, repeat=4):
        ok = spec[1] >= spec[2] >= spec[3] and cost_of(spec, enc, dec) <= budget
        score = sum(r[i] * loss[WIDTHS.index(spec[0]), i, WIDTHS.index(d)] for i, d in enumerate(spec[1:]))
        if ok and (best is None or score < best[0]):
            best = (score, spec)
    assert search(r, budget, WIDTHS, loss, enc, dec) == best[1]


def test_a_larger_budget_never_gives_a_worse_configuration():
    loss, enc, dec = table(3)
    r = np.array([0.2, 0.5, 0.3])
    high = cost_of((100,) * 4, enc, dec)
    scores = []
    for frac in np.linspace(0.2, 1.0, 9):
        spec = search(r, frac * high, WIDTHS, loss, enc, dec)
        scores.append(sum(r[i] * loss[WIDTHS.index(spec[0]), i, WIDTHS.index(d)] for i, d in enumerate(spec[1:])))
    assert all(a >= b - 1e-12 for a, b in zip(scores, scores[1:]))


def test_an_impossible_budget_gives_the_cheapest_configuration():
    loss, enc, dec = table(1)
    assert search([0.5, 0.3, 0.2], 0.0, WIDTHS, loss, enc, dec) == (25, 25, 25, 25)


def test_specs_are_validated_and_signed():
    assert canonical_widths([50, 25, 100]) == (50, 25, 100)
    assert widths_signature([50, 25, 100]) == widths_signature((50, 25, 100)) != widths_signature((50, 100, 25))
    for bad in ([50], [50, 0, 25], [50, 25.0, 25], "50,25,25", [True, 50, 50]):
        with pytest.raises(ValueError):
            canonical_widths(bad)


def test_a_plan_that_slices_beyond_its_array_is_an_error():
    arrays = {"w": np.zeros((4, 3, 1, 1), np.float32)}
    plan = {"units": {"enc/50": {"prefix": "encoder.", "pairs": [], "params": {"0.weight": ["w", None, [8, 3, 1, 1]]}}}}
    plan["units"].update({f"dec{i}/50/50": {"prefix": f"decoders.{i}.", "pairs": [], "params": {}} for i in range(2)})
    with pytest.raises(ValueError, match="cannot slice"):
        SlimAnchor(arrays, plan).weights((50, 50, 50))
    with pytest.raises(ValueError, match="no unit 'enc/25'"):
        SlimAnchor(arrays, plan).weights((25, 50, 50))
