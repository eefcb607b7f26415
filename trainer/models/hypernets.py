"""Preference-conditioned hypernets (paper section 3.3, appendix G).

Both read the embedding p = sum_i r_i e_i + c e_c of a preference (r, c):
- EdgeHypernet: MLP (2 x 100) -> L heads of N x N branching logits;
- WeightHypernet: MLP (3 x 100) -> one linear head per node predicting the
  (delta gamma, delta beta) of every BatchNorm in that node. Heads start at
  zero, so training starts from the unadapted anchor net.
PHN-BN uses the weight hypernet with the cost term switched off.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import torch
from torch import nn


class PreferenceEmbedding(nn.Module):
    def __init__(self, n_tasks: int, dim: int, use_cost: bool = True):
        super().__init__()
        self.tasks = nn.Parameter(torch.randn(n_tasks, dim) / dim**0.5)
        self.cost = nn.Parameter(torch.randn(dim) / dim**0.5) if use_cost else None

    def forward(self, r: torch.Tensor, c: torch.Tensor | float = 0.0) -> torch.Tensor:
        p = r @ self.tasks
        return p if self.cost is None else p + c * self.cost


def mlp(dim_in: int, hidden: Sequence[int]) -> nn.Sequential:
    layers, d = [], dim_in
    for h in hidden:
        layers += [nn.Linear(d, h), nn.ReLU(inplace=True)]
        d = h
    return nn.Sequential(*layers)


class EdgeHypernet(nn.Module):
    """(r, c) -> branching logits alpha of shape (L, N, N); row j = child j."""

    def __init__(
        self,
        n_tasks: int,
        n_layers: int,
        embed_dim: int = 32,
        hidden: Sequence[int] = (100, 100),
        init_identity: float = 0.0,
    ):
        super().__init__()
        self.n_tasks, self.n_layers = n_tasks, n_layers
        self.embed = PreferenceEmbedding(n_tasks, embed_dim)
        self.body = mlp(embed_dim, hidden)
        self.heads = nn.ModuleList(nn.Linear(hidden[-1], n_tasks * n_tasks) for _ in range(n_layers))
        # Optional prior towards the anchor itself (child j reads parent j): every
        # preference then starts from the best tree for task loss alone, and the
        # regulariser, not random search, decides where to share.
        with torch.no_grad():
            for head in self.heads:
                head.bias += init_identity * torch.eye(n_tasks).flatten()

    def forward(self, r: torch.Tensor, c: torch.Tensor | float) -> torch.Tensor:
        h = self.body(self.embed(r, c))
        return torch.stack([head(h).view(self.n_tasks, self.n_tasks) for head in self.heads])

    @torch.no_grad()
    def tree(self, r: torch.Tensor, c: torch.Tensor | float) -> tuple[tuple[int, ...], ...]:
        """Maximum-likelihood tree: argmax parent of every child (unpruned)."""
        return tuple(tuple(int(p) for p in row) for row in self(r, c).argmax(-1))


def _zero_linear(cin: int, cout: int) -> nn.Module:
    """A linear head that starts at 0 (no adaptation); a node without BatchNorm (a
    classification head) gets an empty one, without torch's warning about it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Initializing zero-element tensors", UserWarning)
        head = nn.Linear(cin, cout)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    return head


class WeightHypernet(nn.Module):
    """(r, c) -> {node: {bn_name.weight|bias: delta}} for every BN of every node."""

    def __init__(
        self, layout, n_tasks: int, embed_dim: int = 32, hidden: Sequence[int] = (100, 100, 100), use_cost: bool = True
    ):
        super().__init__()
        self.layout = [(tuple(node), list(bns)) for node, bns in layout]
        self.embed = PreferenceEmbedding(n_tasks, embed_dim, use_cost)
        self.body = mlp(embed_dim, hidden)
        self.heads = nn.ModuleList(_zero_linear(hidden[-1], 2 * sum(c for _, c in bns)) for _, bns in self.layout)

    def forward(self, r: torch.Tensor, c: torch.Tensor | float = 0.0) -> dict:
        h = self.body(self.embed(r, c))
        deltas = {}
        for (node, bns), head in zip(self.layout, self.heads):
            flat, out, i = head(h), {}, 0
            for name, ch in bns:
                out[f"{name}.weight"], out[f"{name}.bias"] = flat[i : i + ch], flat[i + ch : i + 2 * ch]
                i += 2 * ch
            deltas[node] = out
        return deltas
