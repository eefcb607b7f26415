import random

import pytest

from runtime.signature import canonical_text, canonical_tree, tree_signature
from trainer.tree import prune


def test_canonical_tree_matches_the_trainers_pruning():
    rng = random.Random(0)
    for _ in range(200):
        n, layers = rng.randint(2, 5), rng.randint(1, 6)
        tree = [[rng.randrange(n) for _ in range(n)] for _ in range(layers)]
        assert canonical_tree(tree) == prune(tree)


def test_signature_ignores_unused_parents_and_is_stable():
    a = ((0, 2, 1), (0, 0, 0))
    b = ((0, 1, 2), (0, 0, 0))
    assert tree_signature(a) == tree_signature(b)
    assert tree_signature(a) != tree_signature(((0, 1, 2), (0, 1, 2)))
    assert canonical_text(a) == "v1:N=3:0,-1,-1|0,0,0"
    # Pinned digest: a change here invalidates every cache entry (bump SIGNATURE_VERSION).
    assert tree_signature(a) == "510062f93e64d622"


def test_bad_trees_are_rejected():
    with pytest.raises(ValueError, match="expected 3"):
        canonical_tree([[0, 1, 2], [0, 1]])
    with pytest.raises(ValueError, match="parent 3 is out of range"):
        canonical_tree([[0, 1, 3], [0, 1, 2]])


def test_used_child_without_parent_is_rejected():
    with pytest.raises(ValueError, match="used child 0 has no parent"):
        canonical_tree([[-1, 0], [0, 1]])
