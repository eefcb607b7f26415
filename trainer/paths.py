"""Exact expected task loss of a tree distribution, from a table of path losses.

With the anchor frozen, task j's output depends only on its *path*: the streams
p_0 .. p_{L-1} whose nodes it passes through at node layers 0 .. L-1 (layer L is
always its own block, then its head). The edge hypernet's tree distribution picks
every child's parent independently, so the path's probability factorises along it:

    P_j(p_0 .. p_{L-1}) = nu^{L-1}_j(p_{L-1}) * nu^{L-2}_{p_{L-1}}(p_{L-2}) * ... * nu^0_{p_1}(p_0)

and E_T[sum_j r_j w_j L_j(T)] = sum_j r_j w_j sum_paths P_j(path) table_j[path],
exactly, with a table of N^L path losses per task measured once on a fixed set
of training images. Why: the score-function estimate of the same gradient, from
4 sampled trees on 8 images, was too noisy to move balanced preferences away from
whatever the regulariser pushed them to (README, "Edge hypernet training"); the
table makes the task term exact and each step cheap. It needs N^L paths per task,
so it is for CPU-sized anchors; paper-scale anchors use the sampled estimators.
"""

from __future__ import annotations

from typing import Sequence

import torch

from trainer.errors import TrainerError

MAX_PATHS = 4096  # N^L per task; beyond this the table costs more than sampling


def check_size(n_tasks: int, n_layers: int) -> None:
    if n_tasks**n_layers > MAX_PATHS:
        raise TrainerError(
            f"method.edge_gradient=exact needs N^L <= {MAX_PATHS} paths per task, found "
            f"{n_tasks}^{n_layers} = {n_tasks**n_layers}; use 'reinforce' or 'relaxed' for this anchor"
        )


@torch.no_grad()
def path_losses(anchor, tasks, x: torch.Tensor, ys: Sequence[torch.Tensor], chunk: int = 128) -> torch.Tensor:
    """(N, N, ..., N) tensor T: T[j, p_0, .., p_{L-1}] = task j's mean loss over x on that path.

    Walks the prefix tree depth first, so every prefix's features are computed once."""
    L, N = anchor.n_layers, anchor.n_tasks
    check_size(N, L)
    sums = torch.zeros((N,) + (N,) * L, dtype=torch.float64)
    for s in range(0, len(x), chunk):
        xb, yb = x[s : s + chunk], [y[s : s + chunk] for y in ys]

        def visit(feat, prefix):
            if len(prefix) == L:
                for j, task in enumerate(tasks):
                    out = anchor.heads[j](anchor.node(L, j)(feat))
                    sums[(j, *prefix)] += float(task.loss(out, yb[j])) * len(xb)
                return
            for p in range(N):
                visit(anchor.node(len(prefix), p)(feat), prefix + (p,))

        visit(xb, ())
    return (sums / len(x)).float()


def path_probs(probs: Sequence[torch.Tensor], task: int) -> torch.Tensor:
    """P(task's path = p_0 .. p_{L-1}) as an (N,) * L tensor; probs[l][child, parent]
    is the distribution of child (l + 1, child) over the parents in layer l."""
    a = probs[-1][task]  # over p_{L-1}: the task's own top node picks it
    for nu in reversed(probs[:-1]):
        a = torch.einsum("qp,q...->pq...", nu, a)  # prepend p_l, chosen by node (l + 1, p_{l+1})
    return a


def expected_task_loss(probs: Sequence[torch.Tensor], table: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    """sum_j coef_j * E[L_j] (coef = r * w), exact under independent parent choices."""
    return sum(coef[j] * (path_probs(probs, j) * table[j]).sum() for j in range(len(coef)))
