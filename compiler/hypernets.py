"""Export of both hypernets (`hypernets.onnx`) plus the layout of the weight
hypernet's output (`hypernets.json`): with the bundle's anchor (stored once for
every grid point) that is what the runtime needs for preferences off the grid.

hypernets.onnx: inputs r (N,) and c (1,) float32 -> edge_logits (L, N, N) and
bn_deltas (flat, in `layout` order: per node, per BN, delta gamma then delta beta).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import nn

from compiler.export import OPSET

PLAN_VERSION = 2  # 2: the anchor arrays and fold pairs moved to the bundle's anchor entry


class HypernetPair(nn.Module):
    """Both hypernets as one module with inputs (r, c): the graph the runtime's exact mode runs."""

    def __init__(self, edge, weight):
        super().__init__()
        self.edge, self.weight = edge, weight

    def forward(self, r, c):
        logits = self.edge(r, c[0])
        onehot = None
        if self.weight.tree_input:  # the argmax tree as one-hot parents (Equal against a range: plain ONNX ops)
            onehot = (logits.argmax(-1, keepdim=True) == torch.arange(logits.shape[-1], device=logits.device)).float()
        h = self.weight.features(r, c[0], onehot)
        return logits, torch.cat([head(h) for head in self.weight.heads])


def export_hypernets(models, directory: Path) -> dict:
    """Writes hypernets.onnx and hypernets.json; returns the manifest's `hypernets` entry."""
    anchor = models.anchor
    n = anchor.n_tasks
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            HypernetPair(models.edge, models.weight).eval(),
            (torch.full((n,), 1 / n), torch.zeros(1)),
            str(directory / "hypernets.onnx"),
            dynamo=False,
            opset_version=OPSET,
            input_names=["r", "c"],
            output_names=["edge_logits", "bn_deltas"],
        )
    plan = {
        "version": PLAN_VERSION,
        "n_tasks": n,
        "n_layers": anchor.n_layers,
        "layout": [[l, i, [[name, ch] for name, ch in bns]] for (l, i), bns in models.weight.layout],
    }
    (directory / "hypernets.json").write_text(json.dumps(plan))
    return {"graph": "hypernets.onnx", "plan": "hypernets.json"}
