"""Inference cost of a tree: params of its used nodes + heads and batch-1 FLOPs
(torch's FlopCounterMode). One definition shared by the eval tables, the
compiler's manifest and the benchmarks."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from edgecore.tree import used_nodes
from trainer.models.blocks import count_params


def flops(fn, size: int | tuple[int, int]) -> float:
    """FLOPs of `fn` on one RGB frame of size x size (or (H, W))."""
    hw = (size, size) if isinstance(size, int) else tuple(size)
    return flops_on(fn, torch.zeros(1, 3, *hw))


def flops_on(fn, x: torch.Tensor) -> float:
    """FLOPs of `fn(x)` (e.g. a decoder on its encoder's feature map)."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        fn(x)
    return float(counter.get_total_flops())


def tree_cost(anchor, tree, size: int | tuple[int, int]) -> tuple[int, float]:
    """(params of the used, unfolded nodes + heads, batch-1 FLOPs) of `tree`."""
    used = used_nodes(tree)
    params = sum(count_params(anchor.node(l, i)) for l, row in enumerate(used) for i, u in enumerate(row) if u)
    return params + count_params(anchor.heads), flops(lambda x: anchor.forward_tree(x, tree), size)
