"""Preference-conditioned hypernets (paper section 3.3, appendix G).

Both read the embedding p = sum_i r_i e_i + c e_c of a preference (r, c):
- EdgeHypernet: MLP (2 x 100) -> L heads of N x N branching logits;
- WeightHypernet: MLP (3 x 100) -> one linear head per node predicting the
  (delta gamma, delta beta) of every BatchNorm in that node; it may also read
  `tree_features` of the edge hypernet's tree (our extension, see the class).
PHN-BN uses the weight hypernet with the cost term switched off.

Conditioning of the BN hypernets (measured, issue 23): with embeddings of norm ~1,
torch's default Linear init, ReLU and zero-initialised heads, the first layer's
output was dominated by its bias, a third to a half of the last layer's units were
dead for every preference, and training settled on one output for all (r, c)
(relative spread 1e-6). They now read embeddings with unit-variance entries (the
preference, not the bias, drives the first layer), use GELU (no unit is dead for
every input) and start their heads at small random weights, so the body gets a
gradient from the first step while the deltas start ~1e-3, near the unadapted
anchor. `response` measures whether a hypernet's output depends on its input.
"""

from __future__ import annotations

import warnings
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn


class PreferenceEmbedding(nn.Module):
    """p = sum_i r_i e_i + c e_c with learnable e (entries ~ N(0, std^2))."""

    def __init__(self, n_tasks: int, dim: int, use_cost: bool = True, std: float | None = None):
        super().__init__()
        std = dim**-0.5 if std is None else std
        self.tasks = nn.Parameter(torch.randn(n_tasks, dim) * std)
        self.cost = nn.Parameter(torch.randn(dim) * std) if use_cost else None

    def forward(self, r: torch.Tensor, c: torch.Tensor | float = 0.0) -> torch.Tensor:
        p = r @ self.tasks
        return p if self.cost is None else p + c * self.cost


def mlp(dim_in: int, hidden: Sequence[int], activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    layers, d = [], dim_in
    for h in hidden:
        layers += [nn.Linear(d, h), activation()]
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
        # The weight hypernet's conditioning (unit-variance embedding, GELU): with the
        # default 1/sqrt(dim) embedding and ReLU, (r, c) moved the body's input so little
        # that c barely changed the tree and scenes5 collapsed to one trunk even at c = 0
        # and one-hot r (measured on its path table: README, "Edge hypernet training").
        self.embed = PreferenceEmbedding(n_tasks, embed_dim, std=1.0)
        self.body = mlp(embed_dim, hidden, nn.GELU)
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


HEAD_INIT_STD = 1e-3  # BN deltas at init: ~1e-3 of the anchor's gammas (~1), not exactly 0


def _delta_head(cin: int, cout: int) -> nn.Module:
    """A linear head whose deltas start near 0 (close to no adaptation) but not at 0:
    zero weights give the body no gradient, and a body that learns nothing outputs the
    same deltas for every preference. A node without BatchNorm (a classification head)
    gets an empty head, without torch's warning about it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Initializing zero-element tensors", UserWarning)
        head = nn.Linear(cin, cout)
    nn.init.normal_(head.weight, std=HEAD_INIT_STD)
    nn.init.zeros_(head.bias)
    return head


def parents_onehot(tree, n_tasks: int) -> torch.Tensor:
    """(L, N, N) float tensor, [l, j, p] = 1 where child (l + 1, j) reads parent (l, p). A
    canonical tree's -1 (unused child) becomes parent 0: no task's path runs through an
    unused child, so its row never reaches `tree_features`."""
    return nn.functional.one_hot(torch.as_tensor(tree, dtype=torch.long).clamp(min=0), n_tasks).float()


def tree_features(onehot: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """What each node of a tree serves, for the weight hypernet: for node layers 0..L, the
    r-weighted number of tasks whose path runs through each node, and whether any does
    ((L + 1) * N each). From the one-hot parents by matrix products only, so the same
    function runs in training and inside hypernets.onnx (after an argmax of the logits)."""
    n = onehot.shape[-1]
    member = torch.eye(n, dtype=onehot.dtype, device=onehot.device)  # task j sits at node (L, j)
    layers = [member]
    for a in reversed(list(onehot)):
        member = member @ a  # [task, node]: task j passes node (l, p)
        layers.insert(0, member)
    paths = torch.stack(layers)  # (L + 1, N tasks, N nodes)
    usage = torch.einsum("t,ltn->ln", r, paths)
    used = paths.sum(1).clamp(max=1)
    return torch.cat([usage.flatten(), used.flatten()])


class WeightHypernet(nn.Module):
    """(r, c) -> {node: {bn_name.weight|bias: delta}} for every BN of every node.

    With `tree_input` (our extension) the body also reads `tree_features` of the tree
    the edge hypernet picks for (r, c), which the caller passes as `tree` (the output
    is still a function of (r, c): the edge hypernet is frozen when this one trains).
    Why: a node's best delta depends on which tasks run through it, and that changes in
    steps with (r, c); a smooth MLP of (r, c) alone blends the deltas of neighbouring
    trees. Measured on scenes3 without it: inside one tree, a task's loss rose with its
    own weight (task control -0.8 on training images; README, "Adaptation")."""

    def __init__(
        self,
        layout,
        n_tasks: int,
        embed_dim: int = 32,
        hidden: Sequence[int] = (100, 100, 100),
        use_cost: bool = True,
        tree_input: bool = False,
    ):
        super().__init__()
        self.layout = [(tuple(node), list(bns)) for node, bns in layout]
        self.n_tasks, self.tree_input = n_tasks, tree_input
        node_layers = 1 + max(l for (l, _), _ in self.layout)
        extra = 2 * node_layers * n_tasks if tree_input else 0
        self.embed = PreferenceEmbedding(n_tasks, embed_dim, use_cost, std=1.0)
        self.body = mlp(embed_dim + extra, hidden, nn.GELU)
        self.heads = nn.ModuleList(_delta_head(hidden[-1], 2 * sum(c for _, c in bns)) for _, bns in self.layout)

    def features(self, r: torch.Tensor, c, onehot: torch.Tensor | None = None) -> torch.Tensor:
        """The body's output; `onehot` = parents_onehot(tree) when tree_input."""
        p = self.embed(r, c)
        if self.tree_input:
            if onehot is None:
                raise ValueError("this weight hypernet reads the tree: pass tree=the edge hypernet's tree for (r, c)")
            p = torch.cat([p, tree_features(onehot.to(p), r)])
        return self.body(p)

    def forward(self, r: torch.Tensor, c: torch.Tensor | float = 0.0, tree=None) -> dict:
        onehot = None if tree is None else parents_onehot(tree, self.n_tasks).to(r.device)
        h = self.features(r, c, onehot)
        deltas = {}
        for (node, bns), head in zip(self.layout, self.heads):
            flat, out, i = head(h), {}, 0
            for name, ch in bns:
                out[f"{name}.weight"], out[f"{name}.bias"] = flat[i : i + ch], flat[i + ch : i + 2 * ch]
                i += 2 * ch
            deltas[node] = out
        return deltas


def simplex_points(n_tasks: int, count: int, seed: int) -> np.ndarray:
    """Preferences drawn uniformly from the simplex (Dirichlet(1, ..., 1)): what
    evaluation draws (trainer.evaluate) and what the response probe starts from."""
    return np.random.default_rng(seed).dirichlet(np.ones(n_tasks), size=count)


def probe_preferences(n_tasks: int, count: int = 64, seed: int = 0) -> torch.Tensor:
    """A fixed probe set: `count` preferences uniform on the simplex plus the one-hot corners."""
    r = simplex_points(n_tasks, count, seed)
    return torch.cat([torch.tensor(r, dtype=torch.float32), torch.eye(n_tasks)])


def _leaves(out):
    """The tensors of a hypernet's output (a tensor, or nested dicts of tensors)."""
    if isinstance(out, dict):
        for v in out.values():
            yield from _leaves(v)
    else:
        yield out


def _flat(out) -> torch.Tensor:
    """A hypernet's output as one flat vector (on the output's own device)."""
    return torch.cat([t.reshape(-1) for t in _leaves(out)])


@torch.no_grad()
def response(hypernet: Callable, n_tasks: int, uses_cost: bool, device: str | torch.device = "cpu") -> dict:
    """How much a hypernet's output (`hypernet(r, c)`: a module, or e.g. Models.adaptation)
    depends on its input, over `probe_preferences`:
    - spread_r: per-entry standard deviation across preferences (at each c, then
      averaged), over the mean |output|; 0 for a hypernet that ignores r;
    - spread_c: mean |output(r, c=1) - output(r, c=0)| over the mean |output|
      (None where c is no input);
    - varying: share of entries whose range over the probe exceeds 1e-3 of the mean |output|.
    Why: a constant hypernet passes every other check (issue 23 found both BN
    hypernets constant to 1e-6 after training). The hypernets hold no BatchNorm or
    dropout, so train and eval mode give the same output."""
    prefs = probe_preferences(n_tasks).to(device)
    cs = (0.0, 0.5, 1.0) if uses_cost else (0.0,)
    outs = torch.stack([torch.stack([_flat(hypernet(r, c)) for r in prefs]) for c in cs]).double().cpu()
    scale = float(outs.abs().mean())
    if outs.numel() == 0 or scale == 0:
        return {"spread_r": 0.0, "spread_c": 0.0 if uses_cost else None, "varying": 0.0, "mean_abs": scale,
                "probes": len(prefs)}  # fmt: skip
    spread_r = float(outs.std(dim=1).mean()) / scale
    spread_c = float((outs[-1] - outs[0]).abs().mean()) / scale if uses_cost else None
    flat = outs.reshape(-1, outs.shape[-1])
    varying = float(((flat.max(0).values - flat.min(0).values) > 1e-3 * scale).double().mean())
    return {"spread_r": spread_r, "spread_c": spread_c, "varying": varying, "mean_abs": scale, "probes": len(prefs)}
