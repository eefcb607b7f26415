"""Architecture signature (DESIGN.md section 4): the canonical text of a pruned
tree hashed to a short hex digest. Two preferences with the same signature
share one graph and one engine."""

from __future__ import annotations

import hashlib
from typing import Sequence

SIGNATURE_VERSION = 1  # bump when the canonical text changes: every signature changes with it


def _used(parents: Sequence[Sequence[int]]) -> list[list[bool]]:
    n = len(parents[0])
    used = [[False] * n for _ in parents] + [[True] * n]
    for layer in range(len(parents) - 1, -1, -1):
        for child, parent in enumerate(parents[layer]):
            if used[layer + 1][child]:
                used[layer][parent] = True
    return used


def canonical_tree(parents: Sequence[Sequence[int]]) -> tuple[tuple[int, ...], ...]:
    """Parents of used nodes, -1 for unused ones (the trainer's tree.prune)."""
    if not parents or not parents[0]:
        raise ValueError("a tree needs at least one layer and one task")
    n = len(parents[0])
    for layer, row in enumerate(parents):
        if len(row) != n:
            raise ValueError(f"tree layer {layer} has {len(row)} parents, expected {n}")
        bad = [p for p in row if not -1 <= p < n]
        if bad:
            raise ValueError(f"tree layer {layer}: parent {bad[0]} is out of range, expected -1..{n - 1}")
    used = _used([[max(p, 0) for p in row] for row in parents])
    for layer, row in enumerate(parents):
        for child, p in enumerate(row):
            if used[layer + 1][child] and p < 0:
                raise ValueError(f"tree layer {layer}: used child {child} has no parent (-1)")
    return tuple(tuple(int(p) if used[layer + 1][child] else -1 for child, p in enumerate(row))
                 for layer, row in enumerate(parents))


def canonical_text(parents: Sequence[Sequence[int]]) -> str:
    """'v1:N=3:0,-1,2|0,0,2|...' - stable across Python versions and platforms."""
    tree = canonical_tree(parents)
    body = "|".join(",".join(str(p) for p in row) for row in tree)
    return f"v{SIGNATURE_VERSION}:N={len(tree[0])}:{body}"


def tree_signature(parents: Sequence[Sequence[int]], length: int = 16) -> str:
    """Short hex digest (sha256) of the canonical text."""
    return hashlib.sha256(canonical_text(parents).encode()).hexdigest()[:length]
