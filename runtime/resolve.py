"""Preference and budget resolution over a bundle's grid (docs/design.md section 7).

Distance between preferences: d((r, c), (r', c')) = sum_i |r_i - r'_i| + |c - c'|
(L1 over task weights and cost, equal units: moving all weight from one task to
another costs 2, the whole cost range costs 1). Ties go to the earlier grid point.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runtime.errors import EdgeRuntimeError
from runtime.manifest import GridEntry, Manifest


@dataclass(frozen=True)
class Selection:
    entry: GridEntry
    distance: float  # to the requested preference (r-distance for budget picks)
    reason: str  # how it was chosen, for HUDs and logs
    fits: bool = True  # budget picks: whether its measured latency fits the budget


def r_distance(a, b) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).sum())


def nearest(manifest: Manifest, r, c: float) -> Selection:
    d = [r_distance(e.r, r) + abs(e.c - c) for e in manifest.grid]
    i = int(np.argmin(d))
    return Selection(
        manifest.grid[i], d[i], "exact grid point" if d[i] < 1e-9 else f"nearest grid point (d={d[i]:.3f})"
    )


def within_budget(manifest: Manifest, latency: dict[str, float], budget_ms: float, r) -> Selection:
    """The most capable point that fits: closest to `r`, then smallest c whose
    signature's measured latency fits; else the fitting point closest to `r`;
    else the fastest point overall (fits=False)."""

    def lat(e: GridEntry) -> float:
        if e.signature not in latency:
            raise EdgeRuntimeError(f"latency table has no entry for signature {e.signature}: rerun `runtime calibrate`")
        return latency[e.signature]

    dist = {id(e): r_distance(e.r, r) for e in manifest.grid}
    fitting = [e for e in manifest.grid if lat(e) <= budget_ms]
    if fitting:
        best = min(fitting, key=lambda e: (round(dist[id(e)], 9), e.c))
        return Selection(best, dist[id(best)], f"fits {budget_ms:g} ms ({lat(best):.2f} ms measured)")
    fastest = min(manifest.grid, key=lat)
    return Selection(
        fastest, dist[id(fastest)], f"nothing fits {budget_ms:g} ms: fastest point ({lat(fastest):.2f} ms)", fits=False
    )
