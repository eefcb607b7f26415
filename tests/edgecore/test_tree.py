import pytest

from edgecore.tree import (
    canonical_text,
    canonical_tree,
    head_prefix,
    identity_tree,
    node_prefix,
    path,
    streams_per_layer,
    tree_signature,
    used_nodes,
)


def test_identity_tree_uses_every_node():
    tree = identity_tree(3, 4)
    assert all(all(row) for row in used_nodes(tree))
    assert streams_per_layer(tree) == [4, 4, 4, 4]


def test_single_trunk_tree():
    tree = ((1, 1, 1), (1, 1, 1), (0, 1, 2))  # trunk on stream 1, split at the top
    assert streams_per_layer(tree) == [1, 1, 3, 3]
    assert path(tree, 2) == [1, 1, 2, 2]


def test_canonical_tree_marks_unused_parents_and_is_canonical():
    a = ((0, 2, 1), (0, 0, 0))
    b = ((0, 1, 2), (0, 0, 0))  # differ only in parents of unused nodes
    assert canonical_tree(a) == canonical_tree(b) == ((0, -1, -1), (0, 0, 0))
    assert canonical_tree(canonical_tree(a)) == canonical_tree(a)


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


def test_used_nodes_ignore_the_parents_of_unused_children():
    assert used_nodes(((0, -1, -1), (0, 0, 0))) == [[True, False, False], [True, False, False], [True, True, True]]


def test_weight_names_come_from_one_place():
    assert node_prefix(2, 1) == "nodes.n2_1." and head_prefix(0) == "heads.0."
