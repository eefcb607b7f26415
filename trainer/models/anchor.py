"""The N-stream anchor net and its three ways of running.

- `forward_stream(x, i)`: stream i alone (single-task training; the baseline).
- `forward_shared(x)`: stream 0's backbone feeding every head (the pretrain stage).
- `forward_tree(x, parents, deltas)`: a discrete tree; computes only used
  nodes, each once, so shared prefixes cost nothing extra.
- `forward_mixed(x, nus, deltas)`: every child reads the nu-weighted mix of its
  parents (Gumbel-softmax samples), so gradients reach the edge hypernet.

`deltas` maps a node (l, i) to {BN parameter name: delta}; they are added to
the node's BatchNorm weight/bias through `torch.func.functional_call`, which
leaves the anchor's own parameters untouched.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn
from torch.func import functional_call

from edgecore.tree import used_nodes
from trainer.models.blocks import BackboneSpec, bn_names, make_blocks, make_stem
from trainer.models.heads import make_head
from trainer.models.subnet import TreeModule
from trainer.tasks import TaskSpec

Node = tuple[int, int]
NodeDeltas = Mapping[Node, Mapping[str, torch.Tensor]]


def run_node(module: nn.Module, x: torch.Tensor, delta: Mapping[str, torch.Tensor] | None) -> torch.Tensor:
    """Runs one node, with its BN affine parameters shifted by `delta` if given."""
    if not delta:
        return module(x)
    params = dict(module.named_parameters())
    return functional_call(module, {k: params[k] + v for k, v in delta.items()}, (x,))


class AnchorNet(nn.Module):
    def __init__(
        self,
        tasks: Sequence[TaskSpec],
        backbone: BackboneSpec,
        head_channels: int,
        image_size: int,
        shared_init: bool = True,
    ):
        super().__init__()
        self.task_names = [t.name for t in tasks]
        self.n_tasks, self.n_layers = len(tasks), len(backbone.layers)
        self.stems = nn.ModuleList(make_stem(backbone) for _ in tasks)
        per_stream = [make_blocks(backbone) for _ in tasks]  # [stream][layer]
        self.blocks = nn.ModuleList(nn.ModuleList(s[l] for s in per_stream) for l in range(self.n_layers))
        if shared_init:
            # Every stream starts from the same weights, as the paper's streams all
            # start from one ImageNet backbone: their features stay comparable, so a
            # child reading another stream's node gets inputs it can use. Independent
            # random inits give unrelated channel orders and cross-stream edges fail.
            self.share_stream(0)
        cout = backbone.layers[-1].channels
        self.heads = nn.ModuleList(make_head(t.kind, cout, head_channels, t.channels, image_size) for t in tasks)

    def set_output_size(self, hw: tuple[int, int]) -> None:
        """Dense heads upsample to (H, W): deploy at another resolution than the training crops."""
        for head in self.heads:
            if hasattr(head, "out_size"):
                head.out_size = tuple(hw)

    def node(self, layer: int, stream: int) -> nn.Module:
        """Node (layer, stream): layer 0 is the stem, 1..L the blocks."""
        return self.stems[stream] if layer == 0 else self.blocks[layer - 1][stream]

    def share_stream(self, source: int) -> None:
        """Copies stream `source`'s stem and blocks into every other stream (heads untouched)."""
        for l in range(self.n_layers + 1):
            state = self.node(l, source).state_dict()
            for i in range(self.n_tasks):
                if i != source:
                    self.node(l, i).load_state_dict(state)

    def stream_state(self, stream: int = 0) -> dict[str, torch.Tensor]:
        """One stream's stem and blocks as a flat state dict, keys "<layer>.<name>" (layer 0:
        the stem): the format `model.backbone_weights` files hold."""
        return {f"{l}.{k}": v for l in range(self.n_layers + 1) for k, v in self.node(l, stream).state_dict().items()}

    def load_backbone(self, state: Mapping[str, torch.Tensor]) -> None:
        """Starts every stream from one backbone (stream_state's format), as the paper's
        streams all start from one ImageNet backbone. ValueError names what does not fit."""
        expected = self.stream_state()
        missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
        if missing or unexpected or wrong:
            shapes = [f"{k} {tuple(state[k].shape)} (expected {tuple(expected[k].shape)})" for k in wrong[:3]]
            raise ValueError(f"missing {missing[:3]}, unexpected {unexpected[:3]}, wrong shapes {shapes}")
        for l in range(self.n_layers + 1):
            node = {k.split(".", 1)[1]: v for k, v in state.items() if k.split(".", 1)[0] == str(l)}
            for i in range(self.n_tasks):
                self.node(l, i).load_state_dict(node)

    def forward_shared(self, x: torch.Tensor, stream: int = 0) -> list[torch.Tensor]:
        """Hard-shared multi-task network: stream `stream`'s stem and blocks feed every head."""
        for l in range(self.n_layers + 1):
            x = self.node(l, stream)(x)
        return [head(x) for head in self.heads]

    def subnet(self, parents: Sequence[Sequence[int]], deltas: NodeDeltas | None = None) -> TreeModule:
        """The standalone inference module of one tree: its used nodes only, BN (shifted
        by `deltas`) folded into the convs, one output per task (exportable to ONNX)."""
        return TreeModule(self, parents, deltas)

    def node_bn_layout(self) -> list[tuple[Node, list[tuple[str, int]]]]:
        """Every node with its BatchNorm (name, channels): what the weight hypernet predicts."""
        return [((l, i), bn_names(self.node(l, i))) for l in range(self.n_layers + 1) for i in range(self.n_tasks)]

    def forward_stream(self, x: torch.Tensor, stream: int) -> torch.Tensor:
        for l in range(self.n_layers + 1):
            x = self.node(l, stream)(x)
        return self.heads[stream](x)

    def stream_features(self, x: torch.Tensor, stream: int) -> list[torch.Tensor]:
        """Outputs of stream `stream`'s blocks (layers 1..L), for task affinity."""
        feats, x = [], self.stems[stream](x)
        for l in range(1, self.n_layers + 1):
            x = self.node(l, stream)(x)
            feats.append(x)
        return feats

    def forward_tree(
        self, x: torch.Tensor, parents: Sequence[Sequence[int]], deltas: NodeDeltas | None = None
    ) -> list[torch.Tensor]:
        used = used_nodes(parents)
        deltas = deltas or {}
        outs = {i: run_node(self.stems[i], x, deltas.get((0, i))) for i in range(self.n_tasks) if used[0][i]}
        for l in range(1, self.n_layers + 1):
            outs = {
                j: run_node(self.node(l, j), outs[parents[l - 1][j]], deltas.get((l, j)))
                for j in range(self.n_tasks)
                if used[l][j]
            }
        return [self.heads[j](outs[j]) for j in range(self.n_tasks)]

    def forward_mixed(
        self, x: torch.Tensor, nus: Sequence[torch.Tensor], deltas: NodeDeltas | None = None
    ) -> list[torch.Tensor]:
        """nus[l] is (N, N): row j = child (l+1, j)'s weights over layer-l parents."""
        deltas = deltas or {}
        ys = torch.stack([run_node(self.stems[i], x, deltas.get((0, i))) for i in range(self.n_tasks)])
        for l in range(1, self.n_layers + 1):
            mixed = torch.einsum("jp,pbchw->jbchw", nus[l - 1], ys)
            ys = torch.stack([run_node(self.node(l, j), mixed[j], deltas.get((l, j))) for j in range(self.n_tasks)])
        return [self.heads[j](ys[j]) for j in range(self.n_tasks)]
