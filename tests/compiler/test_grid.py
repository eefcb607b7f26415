import json
from math import comb

import pytest

from compiler.errors import CompilerError
from compiler.grid import GRID_DIR, load_grid, parse_grid, simplex_lattice


@pytest.mark.parametrize("n,step", [(3, 0.1), (3, 0.5), (5, 0.25), (2, 1.0)])
def test_lattice_counts_and_lies_on_the_simplex(n, step):
    points = simplex_lattice(n, step)
    k = round(1 / step)
    assert len(points) == comb(k + n - 1, n - 1) == len(set(points))
    assert all(abs(sum(p) - 1) < 1e-12 and min(p) >= 0 for p in points)


def test_shipped_grids():
    assert len(load_grid(GRID_DIR / "scenes3-198.json", 3)) == 198
    assert len(load_grid(GRID_DIR / "scenes3-21.json", 3)) == 21
    names = [p.name for p in load_grid(GRID_DIR / "example-explicit.json", 3)]
    assert names[0] == "balanced" and len(names) == 4


@pytest.mark.parametrize(
    "data,match",
    [
        ({"preferences": [{"r": [0.5, 0.5], "c": 0}]}, r"preferences\[0\]: r must have 3 entries"),
        ({"preferences": [{"r": [0.5, 0.6, -0.1], "c": 0}]}, r"r\[2\] must be >= 0, found -0.1"),
        ({"preferences": [{"r": ["NaN", 0.5, 0.5], "c": 0}]}, r"r\[0\] must be a number"),
        ({"preferences": [{"r": [0.2, 0.2, 0.2], "c": 0}]}, "must sum to 1"),
        ({"preferences": [{"r": [0.2, 0.3, 0.5], "c": 2}]}, r"c must be in \[0, 1\], found 2"),
        ({"preferences": [{"r": [0.2, 0.3, 0.5], "c": 0, "weight": 1}]}, r"unknown key\(s\) \['weight'\]"),
        ({"preferences": [{"r": [0.2, 0.3, 0.5]}]}, "missing key 'c'"),
        ({"prefs": []}, r"unknown key\(s\) \['prefs'\]"),
        ({"preferences": [], "lattice": {}}, "exactly one of"),
        ({"preferences": []}, "non-empty list"),
        ({"lattice": {"r_step": 0.3, "c": [0]}}, "divide 1 into whole steps"),
        ({"lattice": {"r_step": 0.5, "c": [0, 1.5]}}, r"c must be in \[0, 1\]"),
        ({"lattice": {"r_step": 0.5}}, "non-empty list of cost preferences"),
        (
            {"preferences": [{"r": [1, 0, 0], "c": 0, "name": "a"}, {"r": [0, 1, 0], "c": 0, "name": "a"}]},
            r"duplicate point name\(s\) \['a'\]",
        ),
    ],
)
def test_bad_grids_name_the_problem(data, match):
    with pytest.raises(CompilerError, match=match):
        parse_grid(data, 3)


def test_nan_in_json_file_and_broken_files(tmp_path):
    path = tmp_path / "grid.json"
    path.write_text('{"preferences": [{"r": [NaN, 0.5, 0.5], "c": 0}]}')  # Python's json accepts NaN
    with pytest.raises(CompilerError, match=r"grid.json: preferences\[0\]: r\[0\] must be finite"):
        load_grid(path, 3)
    path.write_text("{not json")
    with pytest.raises(CompilerError, match="not valid JSON"):
        load_grid(path, 3)
    with pytest.raises(CompilerError, match="does not exist"):
        load_grid(tmp_path / "missing.json", 3)
    path.write_text(json.dumps({"preferences": [{"r": [1, 0, 0], "c": 0}]}))
    assert load_grid(path, 3)[0].name == "p0"
