"""Export of both hypernets (`hypernets.onnx`) plus what the runtime needs to fold
weights for preferences off the grid: the anchor's raw node arrays
(`anchor.npz`) and the layout of the weight hypernet's output (`hypernets.json`).

hypernets.onnx: inputs r (N,) and c (1,) float32 -> edge_logits (L, N, N) and
bn_deltas (flat, in `layout` order: per node, per BN, delta gamma then delta beta).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from compiler.export import OPSET
from edgecore.tree import node_key
from trainer.models.subnet import TreeFolder

PLAN_VERSION = 1


class HypernetPair(nn.Module):
    """Both hypernets as one module with inputs (r, c): the graph the runtime's exact mode runs."""

    def __init__(self, edge, weight):
        super().__init__()
        self.edge, self.weight = edge, weight

    def forward(self, r, c):
        logits = self.edge(r, c[0])
        h = self.weight.body(self.weight.embed(r, c[0]))
        return logits, torch.cat([head(h) for head in self.weight.heads])


def export_hypernets(models, directory: Path) -> dict:
    """Writes hypernets.onnx, hypernets.json and anchor.npz; returns the manifest's `hypernets` entry."""
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
    folder = TreeFolder(anchor)
    arrays = {f"{node_key(l, i)}/{k}": v for (l, i), (arr, _) in folder.nodes.items() for k, v in arr.items()}
    arrays.update({f"heads.{j}/{k}": v for j, (arr, _) in enumerate(folder.heads) for k, v in arr.items()})
    np.savez(directory / "anchor.npz", **arrays)
    plan = {
        "version": PLAN_VERSION,
        "n_tasks": n,
        "n_layers": anchor.n_layers,
        "layout": [[l, i, [[name, ch] for name, ch in bns]] for (l, i), bns in models.weight.layout],
        "pairs": {node_key(l, i): pairs for (l, i), (_, pairs) in folder.nodes.items()}
        | {f"heads.{j}": pairs for j, (_, pairs) in enumerate(folder.heads)},
    }
    (directory / "hypernets.json").write_text(json.dumps(plan))
    return {"graph": "hypernets.onnx", "plan": "hypernets.json", "anchor": "anchor.npz"}
