"""Preference (r, c) validation shared by the compiler (grid files) and the runtime."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from runtime.errors import EdgeRuntimeError

SIMPLEX_TOL = 1e-4  # |sum(r) - 1| allowed: grid files are written by hand, in decimals


@dataclass(frozen=True)
class Preference:
    """Task importances r (on the simplex) and cost preference c in [0, 1]."""

    r: tuple[float, ...]
    c: float

    def as_array(self) -> np.ndarray:
        return np.asarray(self.r, dtype=np.float64)


def validate_preference(r: Sequence[float], c: float, n_tasks: int, where: str = "preference") -> Preference:
    """Checks one preference; raises EdgeRuntimeError naming the first problem."""
    if isinstance(r, (str, bytes)) or not hasattr(r, "__len__"):
        raise EdgeRuntimeError(f"{where}: r must be a list of {n_tasks} numbers, found {r!r}")
    if len(r) != n_tasks:
        raise EdgeRuntimeError(f"{where}: r must have {n_tasks} entries (one per task), found {len(r)}")
    values = []
    for i, v in enumerate(r):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
            raise EdgeRuntimeError(f"{where}: r[{i}] must be a number, found {v!r}")
        if not math.isfinite(float(v)):
            raise EdgeRuntimeError(f"{where}: r[{i}] must be finite, found {v}")
        if v < 0:
            raise EdgeRuntimeError(f"{where}: r[{i}] must be >= 0, found {v}")
        values.append(float(v))
    if abs(sum(values) - 1.0) > SIMPLEX_TOL:
        raise EdgeRuntimeError(f"{where}: r must sum to 1 (within {SIMPLEX_TOL}), found sum {sum(values):.6g}")
    if isinstance(c, bool) or not isinstance(c, (int, float, np.floating, np.integer)) or not math.isfinite(float(c)):
        raise EdgeRuntimeError(f"{where}: c must be a finite number in [0, 1], found {c!r}")
    if not 0.0 <= float(c) <= 1.0:
        raise EdgeRuntimeError(f"{where}: c must be in [0, 1], found {c}")
    total = sum(values)
    return Preference(tuple(v / total for v in values), float(c))
