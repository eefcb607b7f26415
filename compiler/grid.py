"""Preference grids (`grid.json`): an explicit list or a simplex lattice.

    {"preferences": [{"r": [0.6, 0.2, 0.2], "c": 0.0, "name": "seg-first"}, ...]}
    {"lattice": {"r_step": 0.1, "c": [0.0, 0.5, 1.0]}}

Every point is validated against the model's task count with the runtime's
preference rules; the first problem raises CompilerError naming where it is
(e.g. `grid.json: preferences[3].r[1] must be >= 0, found -0.1`).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path

from compiler.errors import CompilerError
from runtime.errors import EdgeRuntimeError
from runtime.prefs import Preference, validate_preference

GRID_DIR = Path(__file__).parent / "grids"  # shipped example grids
_TOP_KEYS = {"preferences", "lattice"}
_POINT_KEYS = {"r", "c", "name"}
_LATTICE_KEYS = {"r_step", "c"}


@dataclass(frozen=True)
class GridPoint:
    name: str
    preference: Preference


def simplex_lattice(n_tasks: int, step: float) -> list[tuple[float, ...]]:
    """All r with entries in multiples of `step` that sum to 1 (C(k+N-1, N-1) points)."""
    k = round(1 / step)
    if k < 1 or abs(k * step - 1) > 1e-9:
        raise CompilerError(f"lattice.r_step must divide 1 into whole steps (e.g. 0.1, 0.25), found {step}")
    return [tuple(i / k for i in combo) for combo in _compositions(k, n_tasks)]


def _compositions(total: int, parts: int):
    # Stars and bars: positions of parts-1 bars among total+parts-1 slots.
    for bars in itertools.combinations(range(total + parts - 1), parts - 1):
        edges = (-1,) + bars + (total + parts - 1,)
        yield tuple(edges[i + 1] - edges[i] - 1 for i in range(parts))


def _check_keys(obj, allowed: set[str], where: str) -> None:
    if not isinstance(obj, dict):
        raise CompilerError(f"{where}: expected an object, found {type(obj).__name__}")
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise CompilerError(f"{where}: unknown key(s) {unknown}; allowed keys are {sorted(allowed)}")


def _point(obj, n_tasks: int, where: str, default_name: str) -> GridPoint:
    _check_keys(obj, _POINT_KEYS, where)
    for key in ("r", "c"):
        if key not in obj:
            raise CompilerError(f"{where}: missing key {key!r}")
    try:
        pref = validate_preference(obj["r"], obj["c"], n_tasks, where)
    except EdgeRuntimeError as exc:
        raise CompilerError(str(exc)) from None
    name = obj.get("name", default_name)
    if not isinstance(name, str) or not name:
        raise CompilerError(f"{where}: name must be a non-empty string, found {name!r}")
    return GridPoint(name, pref)


def _lattice(spec, n_tasks: int, where: str) -> list[GridPoint]:
    _check_keys(spec, _LATTICE_KEYS, where)
    step, costs = spec.get("r_step"), spec.get("c")
    if isinstance(step, bool) or not isinstance(step, (int, float)) or not 0 < step <= 1:
        raise CompilerError(f"{where}.r_step: expected a number in (0, 1], found {step!r}")
    if not isinstance(costs, list) or not costs:
        raise CompilerError(f"{where}.c: expected a non-empty list of cost preferences, found {costs!r}")
    points = []
    for c in costs:
        for r in simplex_lattice(n_tasks, step):
            name = "r=" + ",".join(f"{v:g}" for v in r) + f";c={c}"
            points.append(_point({"r": list(r), "c": c}, n_tasks, f"{where} point {name}", name))
    return points


def parse_grid(data, n_tasks: int, where: str = "grid") -> list[GridPoint]:
    """Grid points from parsed JSON; names are unique; order is the file's."""
    _check_keys(data, _TOP_KEYS, where)
    if len(set(data) & _TOP_KEYS) != 1:
        raise CompilerError(f"{where}: expected exactly one of 'preferences' or 'lattice', found {sorted(data)}")
    if "lattice" in data:
        points = _lattice(data["lattice"], n_tasks, f"{where}: lattice")
    else:
        prefs = data["preferences"]
        if not isinstance(prefs, list) or not prefs:
            raise CompilerError(f"{where}: preferences must be a non-empty list, found {prefs!r}")
        points = [_point(p, n_tasks, f"{where}: preferences[{i}]", f"p{i}") for i, p in enumerate(prefs)]
    names = [p.name for p in points]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise CompilerError(f"{where}: duplicate point name(s) {dupes[:5]}")
    return points


def load_grid(path: str | Path, n_tasks: int) -> list[GridPoint]:
    """Reads and validates a grid file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CompilerError(f"grid file {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CompilerError(f"{path.name}: not valid JSON ({exc})") from None
    return parse_grid(data, n_tasks, path.name)
