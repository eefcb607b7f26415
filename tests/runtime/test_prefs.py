import math

import pytest

from runtime.errors import EdgeRuntimeError
from runtime.prefs import validate_preference


def test_valid_preference_is_normalised_within_tolerance():
    p = validate_preference([0.33333, 0.33333, 0.33334], 0.5, 3)
    assert abs(sum(p.r) - 1) < 1e-12 and p.c == 0.5


@pytest.mark.parametrize(
    "r,c,match",
    [
        ([0.5, 0.5], 0.0, "r must have 3 entries"),
        ([0.5, 0.6, -0.1], 0.0, r"r\[2\] must be >= 0"),
        ([math.nan, 0.5, 0.5], 0.0, r"r\[0\] must be finite"),
        ([0.2, 0.2, 0.2], 0.0, "must sum to 1"),
        ([0.2, 0.3, 0.5], 1.5, r"c must be in \[0, 1\], found 1.5"),
        ([0.2, 0.3, 0.5], math.nan, "c must be a finite number"),
        ([0.2, "x", 0.8], 0.0, r"r\[1\] must be a number"),
        ("abc", 0.0, "r must be a list"),
    ],
)
def test_bad_preferences_name_the_problem(r, c, match):
    with pytest.raises(EdgeRuntimeError, match=match):
        validate_preference(r, c, 3)
