"""Branching regulariser (paper eqs. 3, 5, 6; appendices D and E).

Indexing: nus[l] (l = 0..L-1) is the (N, N) Gumbel-softmax sample whose row j
is child (l+1, j)'s distribution over the parents in layer l. The active loss
compares two children's rows, so it weights them by the probability that both
children are used, P_use(l+1, i) P_use(l+1, j), and by (L - l) / L, which
favours sharing the low layers (1 at the stems' choice, 1/L at the top).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def p_use(nus: list[torch.Tensor]) -> list[torch.Tensor]:
    """P_use(l, i) for node layers l = 0..L by the dynamic programme of appendix E:
    P_use(L, i) = 1, P_use(l, i) = 1 - prod_k (1 - P_use(l+1, k) * nu^l_k(i))."""
    n = nus[0].shape[0]
    probs = [nus[0].new_ones(n)]
    for nu in reversed(nus):
        probs.append(1 - torch.prod(1 - probs[-1][:, None] * nu, dim=0))
    return probs[::-1]


def active_tasks(r: torch.Tensor, tau: float) -> torch.Tensor:
    """Boolean mask of tasks with r_i >= tau (the active set A)."""
    return r >= tau


def _pairwise_sq(nu: torch.Tensor) -> torch.Tensor:
    return ((nu[:, None, :] - nu[None, :, :]) ** 2).sum(-1)


@dataclass(frozen=True)
class RegularizerConfig:
    tau: float
    lambda_active: float = 1.0
    lambda_inactive: float = 0.1
    layer_weighting: bool = True
    use_affinity: bool = True
    task_split: bool = True  # False: every task active (Table 6 ablation)
    lambda_cost: float = 0.0  # our extension: c * lambda_cost * expected_cost (0: the paper)
    # Our extension: weight inactive task j by (tau - r_j) / tau, so the pull fades
    # to 0 at the threshold instead of switching on at full strength (README).
    graded_inactive: bool = False


def active_loss(nus, r_active, affinity, cfg: RegularizerConfig) -> torch.Tensor:
    L = len(nus)
    probs = p_use(nus)
    idx = torch.nonzero(r_active).flatten()
    total = nus[0].new_zeros(())
    pair = 1 - torch.eye(len(idx), device=nus[0].device)  # i != j
    aff = affinity[idx][:, idx] if cfg.use_affinity else torch.ones_like(pair)
    for l, nu in enumerate(nus):
        sub = nu[idx]
        weight = (L - l) / L if cfg.layer_weighting else 1.0
        pu = probs[l + 1][idx]
        total = total + weight * (pair * aff * pu[:, None] * pu[None, :] * _pairwise_sq(sub)).sum()
    return total


def inactive_loss(nus, r_active, weight: torch.Tensor | None = None) -> torch.Tensor:
    """sum_l sum_{j in I} weight_j * min_{i in A} ||nu_i - nu_j||^2 (weight: 1 in the paper)."""
    act, ina = torch.nonzero(r_active).flatten(), torch.nonzero(~r_active).flatten()
    total = nus[0].new_zeros(())
    if len(act) == 0 or len(ina) == 0:
        return total
    wj = 1.0 if weight is None else weight[ina]
    for nu in nus:
        # Inactive tasks mimic the active ones, not the other way round: the
        # active rows are targets (no gradient), so a dominant task keeps the
        # branching its own loss asks for instead of being dragged to a compromise.
        d = ((nu[ina][:, None, :] - nu[act].detach()[None, :, :]) ** 2).sum(-1)  # (|I|, |A|)
        total = total + (wj * d.min(dim=1).values).sum()
    return total


def expected_cost(nus, node_cost: torch.Tensor) -> torch.Tensor:
    """sum over nodes of P_use(l, i) * node_cost[l, i]: the expected cost (e.g. the
    share of the anchor's parameters) of the tree the samples describe."""
    return sum((p * cost).sum() for p, cost in zip(p_use(nus), node_cost))


def branching_regularizer(
    nus,
    r: torch.Tensor,
    c: float,
    affinity: torch.Tensor,
    cfg: RegularizerConfig,
    node_cost: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict]:
    """Omega(r, c, alpha) = c * lambda_A * L_active + lambda_I * L_inactive
    (+ c * lambda_cost * expected_cost when lambda_cost > 0 and node costs are given).
    `nus` are Gumbel samples (the paper) or the parent distributions themselves
    (the exact objective).

    Why the extra term: the active loss only asks similar active tasks to pick the
    same parents, weighted by affinity; when sharing costs the task loss little,
    nothing in the paper's Omega says that a smaller tree is worth anything, and
    c then changes nothing (README, "Edge hypernet training"). The cost term prices the
    used nodes directly, so c trades task loss against parameters."""
    mask = active_tasks(r, cfg.tau) if cfg.task_split else torch.ones_like(r, dtype=torch.bool)
    la = active_loss(nus, mask, affinity, cfg)
    li = inactive_loss(nus, mask, ((cfg.tau - r) / cfg.tau).clamp_min(0) if cfg.graded_inactive else None)
    omega = c * cfg.lambda_active * la + cfg.lambda_inactive * li
    parts = {"active": la.item(), "inactive": li.item()}
    if cfg.lambda_cost > 0 and node_cost is not None:
        cost = expected_cost(nus, node_cost)
        omega = omega + c * cfg.lambda_cost * cost
        parts["cost"] = cost.item()
    return omega, parts


@torch.no_grad()
def rsa_affinity(features: list[list[torch.Tensor]]) -> torch.Tensor:
    """Task affinity by representational similarity analysis (appendix D).

    features[i][l] is (K, ...) = task i's anchor features at block layer l for
    the same K images. Per layer: cosine-similarity matrix (K x K) per task,
    Frobenius distance between tasks, rows min-max scaled to [0, 1],
    affinity = 1 - scaled distance; the result is the mean over layers.
    """
    n, n_layers = len(features), len(features[0])
    acc = torch.zeros(n, n, dtype=torch.float64, device=features[0][0].device)
    for l in range(n_layers):
        sims = []
        for i in range(n):
            f = torch.nn.functional.normalize(features[i][l].flatten(1).double(), dim=1)
            sims.append(f @ f.T)
        s = torch.stack(sims)
        d = torch.linalg.matrix_norm(s[:, None] - s[None, :], ord="fro")
        lo, hi = d.min(1, keepdim=True).values, d.max(1, keepdim=True).values
        acc += 1 - (d - lo) / (hi - lo).clamp_min(1e-12)
    return (acc / n_layers).float().cpu()
