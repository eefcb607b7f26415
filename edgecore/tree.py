"""Tree sub-networks of the N-stream anchor net as plain tuples: which nodes a
tree uses, its canonical form and signature, and the names its weights carry.

Node layers are 0..L: layer 0 holds the N stems, layers 1..L the branching
blocks. A tree is `parents[l][j]` for l = 0..L-1: the node of layer l that
feeds node (l+1, j), which runs stream j's block. Every node of layer L is
used (task j's head reads node (L, j)); a lower node is used when a used
child picks it. The canonical form writes -1 for the parents of unused nodes,
so two trees that compute the same thing compare equal and share one
signature (docs/design.md section 4): one graph, one engine.

The trainer, the compiler and the runtime all call these functions; the
initializer names of compiled graphs, the keys of weight files and the runtime's
folding agree because they come from `node_prefix` and `head_prefix`.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

Tree = tuple[tuple[int, ...], ...]
SIGNATURE_VERSION = 1  # bump when the canonical text changes: every signature changes with it


def used_nodes(parents: Sequence[Sequence[int]]) -> list[list[bool]]:
    """used[l][i] for l = 0..L: whether node (l, i) is computed by the tree
    (parents of unused children, -1 in the canonical form, are ignored)."""
    n = len(parents[0])
    used = [[False] * n for _ in parents] + [[True] * n]
    for layer in range(len(parents) - 1, -1, -1):
        for child, parent in enumerate(parents[layer]):
            if used[layer + 1][child] and parent >= 0:
                used[layer][parent] = True
    return used


def canonical_tree(parents: Sequence[Sequence[int]]) -> Tree:
    """Parents of used nodes, -1 for unused ones; ValueError for a malformed tree."""
    if not parents or not parents[0]:
        raise ValueError("a tree needs at least one layer and one task")
    n = len(parents[0])
    for layer, row in enumerate(parents):
        if len(row) != n:
            raise ValueError(f"tree layer {layer} has {len(row)} parents, expected {n}")
        bad = [p for p in row if not -1 <= p < n]
        if bad:
            raise ValueError(f"tree layer {layer}: parent {bad[0]} is out of range, expected -1..{n - 1}")
    used = used_nodes(parents)
    for layer, row in enumerate(parents):
        for child, p in enumerate(row):
            if used[layer + 1][child] and p < 0:
                raise ValueError(f"tree layer {layer}: used child {child} has no parent (-1)")
    return tuple(
        tuple(int(p) if used[layer + 1][child] else -1 for child, p in enumerate(row))
        for layer, row in enumerate(parents)
    )


def canonical_text(parents: Sequence[Sequence[int]]) -> str:
    """'v1:N=3:0,-1,2|0,0,2|...' - stable across Python versions and platforms."""
    tree = canonical_tree(parents)
    body = "|".join(",".join(str(p) for p in row) for row in tree)
    return f"v{SIGNATURE_VERSION}:N={len(tree[0])}:{body}"


def tree_signature(parents: Sequence[Sequence[int]], length: int = 16) -> str:
    """Short hex digest (sha256) of the canonical text."""
    return hashlib.sha256(canonical_text(parents).encode()).hexdigest()[:length]


def identity_tree(n_layers: int, n_tasks: int) -> Tree:
    """The anchor net itself: every stream on its own (no sharing)."""
    return tuple(tuple(range(n_tasks)) for _ in range(n_layers))


def path(parents: Sequence[Sequence[int]], task: int) -> list[int]:
    """Stream index of the node task `task` passes through at layers 0..L."""
    nodes = [task]
    for layer in range(len(parents) - 1, -1, -1):
        nodes.append(parents[layer][nodes[-1]])
    return nodes[::-1]


def streams_per_layer(parents: Sequence[Sequence[int]]) -> list[int]:
    """Number of used nodes in layers 0..L (1 everywhere below L = one trunk)."""
    return [sum(row) for row in used_nodes(parents)]


def node_key(layer: int, stream: int) -> str:
    """'n2_1': node (2, 1), stream 1's block at layer 2 (module and file key)."""
    return f"n{layer}_{stream}"


def parse_node_key(key: str) -> tuple[int, int]:
    """(layer, stream) of a `node_key`; ValueError for anything else."""
    layer, sep, stream = key.removeprefix("n").partition("_")
    if not key.startswith("n") or not sep or not layer.isdigit() or not stream.isdigit():
        raise ValueError(f"expected a node key like 'n2_1', found {key!r}")
    return int(layer), int(stream)


def node_prefix(layer: int, stream: int) -> str:
    """Prefix of node (layer, stream)'s parameters in compiled graphs and weight sets."""
    return f"nodes.{node_key(layer, stream)}."


def head_prefix(task: int) -> str:
    """Prefix of task `task`'s head parameters in compiled graphs and weight sets."""
    return f"heads.{task}."
