"""Tree structures over the anchor net's nodes, as plain tuples (no torch).

Node layers are 0..L: layer 0 holds the N stems, layers 1..L the branching
blocks. A tree is `parents[l][j]` for l = 0..L-1: the node of layer l that
feeds node (l+1, j), which runs stream j's block. Every node of layer L is
used (task j's head reads node (L, j)); a lower node is used when a used
child picks it. A pruned tree writes -1 for the parents of unused nodes, so
two trees that compute the same thing compare equal.
"""

from __future__ import annotations

from typing import Sequence

Tree = tuple[tuple[int, ...], ...]


def used_nodes(parents: Sequence[Sequence[int]]) -> list[list[bool]]:
    """used[l][i] for l = 0..L: whether node (l, i) is computed by the tree."""
    L, N = len(parents), len(parents[0])
    used = [[False] * N for _ in range(L)] + [[True] * N]
    for l in range(L - 1, -1, -1):
        for j in range(N):
            if used[l + 1][j]:
                used[l][parents[l][j]] = True
    return used


def prune(parents: Sequence[Sequence[int]]) -> Tree:
    """Canonical form: parents of unused nodes replaced by -1."""
    used = used_nodes(parents)
    return tuple(tuple(p if used[l + 1][j] else -1 for j, p in enumerate(row))
                 for l, row in enumerate(parents))


def identity_tree(n_layers: int, n_tasks: int) -> Tree:
    """The anchor net itself: every stream on its own (no sharing)."""
    return tuple(tuple(range(n_tasks)) for _ in range(n_layers))


def path(parents: Sequence[Sequence[int]], task: int) -> list[int]:
    """Stream index of the node task `task` passes through at layers 0..L."""
    nodes = [task]
    for l in range(len(parents) - 1, -1, -1):
        nodes.append(parents[l][nodes[-1]])
    return nodes[::-1]


def streams_per_layer(parents: Sequence[Sequence[int]]) -> list[int]:
    """Number of used nodes in layers 0..L (1 everywhere below L = one trunk)."""
    return [sum(row) for row in used_nodes(parents)]
