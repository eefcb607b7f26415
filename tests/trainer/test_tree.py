from trainer.tree import identity_tree, path, prune, streams_per_layer, used_nodes


def test_identity_tree_uses_every_node():
    tree = identity_tree(3, 4)
    assert all(all(row) for row in used_nodes(tree))
    assert streams_per_layer(tree) == [4, 4, 4, 4]


def test_single_trunk_tree():
    tree = ((1, 1, 1), (1, 1, 1), (0, 1, 2))  # trunk on stream 1, split at the top
    assert streams_per_layer(tree) == [1, 1, 3, 3]
    assert path(tree, 2) == [1, 1, 2, 2]


def test_prune_marks_unused_parents_and_is_canonical():
    a = ((0, 2, 1), (0, 0, 0))
    b = ((0, 1, 2), (0, 0, 0))  # differ only in parents of unused nodes
    assert prune(a) == prune(b) == ((0, -1, -1), (0, 0, 0))
    assert prune(prune(a)) == prune(a)
