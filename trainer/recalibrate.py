"""Per-tree BatchNorm statistics, expressed as BN deltas (issue 23, item 4).

A node reached through a cross-stream edge sees inputs its running statistics were
never measured on: the paper normalises a node's input with batch statistics; a
deployed network uses fixed ones. Recalibrating a tree's statistics on a few hundred
training images (AdaBN-style: one pass in train mode, a cumulative average) gives
each of its BatchNorms new (mu', var'). Folded against the anchor's own statistics
(mu, var) they are exactly a (delta gamma, delta beta) pair:

    gamma (x - mu') / s' + beta = (gamma + dg) (x - mu) / s + (beta + db)
    with s = sqrt(var + eps), s' = sqrt(var' + eps):
    dg = gamma (s / s' - 1),   db = gamma (mu - mu') / s'

so a recalibrated tree fits the bundle's per-point deltas, the compiler's folding
and both runtimes without a format change. `trainer eval` measures what it does to
the sharing cost (eval.json "sharing_cost_recalibrated")."""

from __future__ import annotations

import copy

import torch
from torch import nn

from edgecore.tree import used_nodes


def _bns(module: nn.Module) -> dict[str, nn.BatchNorm2d]:
    return {n: m for n, m in module.named_modules() if isinstance(m, nn.BatchNorm2d)}


def _remeasure(modules, forward, x: torch.Tensor, batch: int) -> None:
    """New running statistics for every BatchNorm in `modules`: each in train mode with its
    statistics reset and averaged cumulatively, one pass of `forward` over x in batches."""
    for module in modules:
        module.train()
        for m in _bns(module).values():
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches
    for chunk in x.split(batch):
        forward(chunk)


@torch.no_grad()
def tree_statistics_deltas(anchor, tree, x: torch.Tensor, batch: int = 64) -> dict:
    """{node: {bn.weight / bn.bias: delta}} that give `anchor` (frozen, eval mode) the
    BatchNorm statistics of `tree`'s used nodes measured on images `x`."""
    probe = copy.deepcopy(anchor).eval()
    used = used_nodes(tree)
    nodes = [(l, i) for l, row in enumerate(used) for i, u in enumerate(row) if u]
    _remeasure([probe.node(l, i) for l, i in nodes], lambda xb: probe.forward_tree(xb, tree), x, batch)
    deltas: dict = {}
    for l, i in nodes:
        new, old = _bns(probe.node(l, i)), _bns(anchor.node(l, i))
        for name, m in new.items():
            o = old[name]
            s, s2 = torch.sqrt(o.running_var + o.eps), torch.sqrt(m.running_var + o.eps)
            gamma = o.weight.detach()
            deltas.setdefault((l, i), {})[f"{name}.weight"] = gamma * (s / s2 - 1)
            deltas[(l, i)][f"{name}.bias"] = gamma * (o.running_mean - m.running_mean) / s2
    return deltas


@torch.no_grad()
def with_own_statistics(module: nn.Module, forward, x: torch.Tensor, batch: int = 64) -> nn.Module:
    """A copy of `module` (eval mode) whose BatchNorm running statistics are re-measured
    by `forward(copy, images)` over `x`. What PHN-BN needs at evaluation: it trains with
    batch statistics while its hypernet shifts the BN parameters per preference, so one
    set of running statistics (averaged over every preference) serves none of them; with
    its own statistics each preference's network normalises as it did in training."""
    probe = copy.deepcopy(module)
    _remeasure([probe], lambda xb: forward(probe, xb), x, batch)
    return probe.eval()
