"""The width-slimmable family (ICCV 2023 follow-up), torch-free: specs, folding, search.

A sub-network is a *width configuration* `(e, d_1, ..., d_N)`: the shared
encoder's width and each task decoder's width, in percent of the full width
(e.g. 25, 50, 75, 100). Every sliced tensor is a prefix of the full one, so a
bundle stores the full network once and folds any configuration from it:

    arrays  full conv/linear weights by source key, and switchable BatchNorm sets
            as 2-D arrays (one row per BN key: the encoder's width, or a decoder's
            (encoder width, decoder width))
    plan    {"widths": [...], "units": {unit: {"prefix", "pairs", "params"}}}, one
            unit per encoder width ("enc/<e>") and per decoder width pair
            ("dec<i>/<e>/<d>"); "params" maps each parameter of the sliced module
            to [source key, BN row or None, sliced shape]

`SlimAnchor(arrays, plan).weights(spec)` slices and folds (edgecore.fold), named
as the compiled graph's initializers. `search` turns a preference and a budget
into a configuration (docs: README, "Width-slimmable family").
"""

from __future__ import annotations

import hashlib
import itertools
from typing import Any, Mapping, Sequence

import numpy as np

from edgecore.fold import fold_params


def canonical_widths(spec: Any) -> tuple[int, ...]:
    """(e, d_1, ..., d_N) as a tuple of positive ints (percent); ValueError otherwise."""
    if not isinstance(spec, (list, tuple)) or len(spec) < 3:
        raise ValueError(f"a width configuration is [encoder %, decoder % per task (>= 2)], found {spec!r}")
    if not all(isinstance(w, int) and not isinstance(w, bool) and 0 < w <= 100 for w in spec):
        raise ValueError(f"widths are integer percentages in 1..100, found {list(spec)}")
    return tuple(spec)


def widths_signature(spec: Any) -> str:
    text = "slim:" + ",".join(str(w) for w in canonical_widths(spec))
    return hashlib.sha256(text.encode()).hexdigest()[:16]  # as tree signatures: the manifest checks it


def units_of(spec: Sequence[int]) -> list[str]:
    """The units a configuration runs: its encoder width and one decoder per task."""
    e, *ds = canonical_widths(spec)
    return [f"enc/{e}"] + [f"dec{i}/{e}/{d}" for i, d in enumerate(ds)]


class SlimAnchor:
    """The full slimmable network in numpy; `weights(spec)` folds one configuration."""

    def __init__(self, arrays: Mapping[str, np.ndarray], plan: Any):
        if not isinstance(plan, dict) or not isinstance(plan.get("units"), dict):
            raise ValueError("a slim-width anchor plan is {'widths': [...], 'units': {unit: {...}}}")
        self.arrays, self.units = arrays, plan["units"]

    def weights(self, spec, adaptation: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for unit in units_of(spec):
            if unit not in self.units:
                raise ValueError(f"the anchor has no unit {unit!r} (widths {spec} were not trained)")
            u = self.units[unit]
            params = {name: self._slice(name, *src) for name, src in u["params"].items()}
            pairs = [(c, b, float(eps)) for c, b, eps in u["pairs"]]
            out.update(fold_params(params, pairs, prefix=u["prefix"]))
        return out

    def _slice(self, name: str, source: str, row, shape) -> np.ndarray:
        if source not in self.arrays:
            raise ValueError(f"{name}: the anchor has no array {source!r}")
        a = self.arrays[source] if row is None else self.arrays[source][int(row)]
        if len(shape) != a.ndim or any(n > m for n, m in zip(shape, a.shape)):
            raise ValueError(f"{name}: cannot slice {list(shape)} from {source} of shape {list(a.shape)}")
        return np.ascontiguousarray(a[tuple(slice(0, n) for n in shape)])


def budget_of(c: float, low: float, high: float) -> float:
    """The cost preference c in [0, 1] as a budget: c = 0 the largest configuration's
    cost, c = 1 the smallest's (the tree family's reading of c: larger = cheaper)."""
    return high - float(c) * (high - low)


def search(
    r: Sequence[float],
    budget: float,
    widths: Sequence[int],
    loss: np.ndarray,
    enc_cost: Mapping[int, float],
    dec_cost: np.ndarray,
) -> tuple[int, ...]:
    """The configuration (e, d_1..d_N) minimising sum_i r_i L[e, i, d_i] at cost <= budget.

    loss[a, i, b]: task i's scaled validation loss with encoder width widths[a] and its
    decoder at widths[b] (decoders are independent given the encoder, so K x N x K
    numbers describe all K^(N+1) configurations). enc_cost[e] + sum_i dec_cost[a, i, b]
    is a configuration's cost (FLOPs, or measured latency). The paper's rule is a
    constraint: a task preferred more never gets a narrower decoder than one preferred
    less (ties in r may go either way), so decoder widths follow the preference and
    the encoder width is what the search trades. Exhaustive: K times the number of
    width sequences that are monotone in r's order (20 for 3 tasks, 56 for 5 with
    K = 4), microseconds. When nothing fits the budget, the cheapest configuration.
    """
    r = np.asarray(r, float)
    order = np.argsort(-r, kind="stable")  # most preferred first
    best, best_key = None, None
    for a, e in enumerate(widths):
        for seq in itertools.combinations_with_replacement(range(len(widths) - 1, -1, -1), len(r)):
            b = np.empty(len(r), int)
            b[order] = seq  # non-increasing widths along decreasing preference
            cost = enc_cost[e] + sum(dec_cost[a, i, b[i]] for i in range(len(r)))
            score = float(np.sum(r * loss[a, np.arange(len(r)), b]))
            key = (cost > budget, cost if cost > budget else score, cost)
            if best_key is None or key < best_key:
                best, best_key = (e, *(widths[k] for k in b)), key
    return tuple(int(w) for w in best)
