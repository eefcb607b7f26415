"""Standalone, BN-folded PyTorch sub-networks of the anchor net, one per tree
(+ BN deltas): what `AnchorNet.subnet` hands out (once-for-all's
`get_active_subnet`), and `TreeFolder`, the same weights in numpy.

The module holds only the used nodes of the anchor net, each computed once
(shared prefixes are shared), with every ConvBN folded into a biased conv by
`edgecore.fold.fold_conv_bn` - the same code the runtime uses. Parameter names
are stable and readable (`nodes.n2_1.conv1.0.weight`: node (2, 1), i.e. stream
1's block at layer 2), which makes them usable as ONNX initializer names and as
keys of the weight files bound at load time.
"""

from __future__ import annotations

import copy
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from edgecore.fold import fold_conv_bn, fold_tree
from edgecore.tree import canonical_tree, node_key, used_nodes
from trainer.models.blocks import conv_bn_pairs


@torch.no_grad()
def fold_module(module: nn.Module, delta: Mapping[str, torch.Tensor] | None = None) -> nn.Module:
    """A folded copy of `module`: each ConvBN's BN (shifted by `delta`, keyed by
    '<bn name>.weight|bias') merged into its conv, the BN replaced by Identity."""
    out = copy.deepcopy(module).eval()
    delta = delta or {}
    for conv_name, bn_name in conv_bn_pairs(out):
        conv, bn = out.get_submodule(conv_name), out.get_submodule(bn_name)
        w, b = fold_conv_bn(
            conv.weight.double().numpy(),
            None if conv.bias is None else conv.bias.double().numpy(),
            bn.weight.double().numpy(),
            bn.bias.double().numpy(),
            bn.running_mean.double().numpy(),
            bn.running_var.double().numpy(),
            bn.eps,
            _np(delta.get(f"{bn_name}.weight")),
            _np(delta.get(f"{bn_name}.bias")),
        )
        fused = nn.Conv2d(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            conv.dilation,
            conv.groups,
            bias=True,
        )
        fused.weight.copy_(torch.from_numpy(w.astype(np.float32)))
        fused.bias.copy_(torch.from_numpy(b.astype(np.float32)))
        parent_name, _, leaf = conv_name.rpartition(".")
        parent = out.get_submodule(parent_name) if parent_name else out
        setattr(parent, leaf, fused)
        setattr(parent, bn_name.rpartition(".")[2], nn.Identity())
    return out


def _np(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().double().numpy()


class TreeModule(nn.Module):
    """Inference module for one tree: used nodes only, BN folded, one output per task."""

    def __init__(
        self,
        anchor: nn.Module,
        parents: Sequence[Sequence[int]],
        deltas: Mapping[tuple[int, int], Mapping[str, torch.Tensor]] | None = None,
    ):
        super().__init__()
        self.tree = canonical_tree(parents)
        self.task_names = list(anchor.task_names)
        used = used_nodes(self.tree)
        deltas = deltas or {}
        self.order = [(l, i) for l, row in enumerate(used) for i, u in enumerate(row) if u]
        self.nodes = nn.ModuleDict(
            {node_key(l, i): fold_module(anchor.node(l, i), deltas.get((l, i))) for l, i in self.order}
        )
        self.heads = nn.ModuleList(fold_module(h) for h in anchor.heads)
        self.n_layers = anchor.n_layers
        self.eval()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs: dict[tuple[int, int], torch.Tensor] = {}
        for l, i in self.order:
            inp = x if l == 0 else outs[(l - 1, self.tree[l - 1][i])]
            outs[(l, i)] = self.nodes[node_key(l, i)](inp)
        return tuple(head(outs[(self.n_layers, j)]) for j, head in enumerate(self.heads))

    def weights(self) -> dict[str, np.ndarray]:
        """Every parameter by name (float32): one distinct weight set of this tree."""
        return {k: v.detach().numpy().astype(np.float32) for k, v in self.state_dict().items()}


def node_arrays(module: nn.Module) -> tuple[dict[str, np.ndarray], list[tuple[str, str, float]]]:
    """A module's parameters and BN statistics as float32 numpy arrays, and its
    (conv, bn, eps) pairs: the torch-free input of `edgecore.fold.fold_params`."""
    arrays = {k: v.detach().numpy().astype(np.float32) for k, v in module.named_parameters()}
    pairs = []
    for conv, bn in conv_bn_pairs(module):
        m = module.get_submodule(bn)
        arrays[f"{bn}.running_mean"] = m.running_mean.numpy().astype(np.float32)
        arrays[f"{bn}.running_var"] = m.running_var.numpy().astype(np.float32)
        pairs.append((conv, bn, float(m.eps)))
    return arrays, pairs


class TreeFolder:
    """Folded weights of any tree + deltas in numpy, without building modules
    (about 100x cheaper than `TreeModule(...).weights()`, with the same names
    and values): the compiler calls it once per grid point."""

    def __init__(self, anchor: nn.Module):
        self.n_layers = anchor.n_layers
        self.nodes = {
            (l, i): node_arrays(anchor.node(l, i)) for l in range(anchor.n_layers + 1) for i in range(anchor.n_tasks)
        }
        self.heads = [node_arrays(h) for h in anchor.heads]

    def weights(self, tree, deltas: Mapping | None = None) -> dict[str, np.ndarray]:
        d = {node: {k: _np(v) for k, v in nd.items()} for node, nd in (deltas or {}).items()}
        return fold_tree(self.nodes, self.heads, tree, d)
