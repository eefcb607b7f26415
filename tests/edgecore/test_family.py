import pytest

from edgecore.errors import EdgeError
from edgecore.family import DEFAULT_FAMILY, get_family
from edgecore.tree import tree_signature


def test_the_tree_family_reads_specs_as_canonical_trees():
    fam = get_family(DEFAULT_FAMILY)
    spec = fam.canonical([[0, 2, 1], [0, 0, 0]])  # JSON lists, unused parents
    assert spec == ((0, -1, -1), (0, 0, 0)) and fam.signature(spec) == tree_signature(spec)
    assert fam.units_per_layer(spec) == (1, 1, 3)
    with pytest.raises(ValueError):
        fam.canonical([[0, 5]])


def test_an_unknown_family_names_the_known_ones():
    with pytest.raises(EdgeError, match="unknown model family .slim.; expected one of"):
        get_family("slim")
