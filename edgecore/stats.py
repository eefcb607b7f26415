"""The one percentile helper: latency summaries everywhere (runtime stats, the HUD,
calibration, benchmarks) use the same keys and the same numpy definition."""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np


def percentiles(values: Sequence[float] | Iterable[float], qs: Sequence[int] = (50, 90, 99)) -> dict[str, float]:
    """{"p50": ..., "p90": ..., "p99": ...} of `values` (linear interpolation); {} when empty."""
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0:
        return {}
    return {f"p{q}": float(x) for q, x in zip(qs, np.percentile(v, list(qs)))}
