"""PHN-BN baseline: one shared backbone with all task heads, whose BatchNorm
affine parameters a hypernet predicts from the task preference r (no cost)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from trainer.models.anchor import run_node
from trainer.models.blocks import BackboneSpec, bn_names, make_blocks, make_stem
from trainer.models.heads import make_head
from trainer.models.hypernets import WeightHypernet
from trainer.tasks import TaskSpec


class PHNBN(nn.Module):
    def __init__(
        self,
        tasks: Sequence[TaskSpec],
        backbone: BackboneSpec,
        head_channels: int,
        image_size: int,
        embed_dim: int = 32,
        hidden: Sequence[int] = (100, 100, 100),
    ):
        super().__init__()
        self.trunk = nn.ModuleList([make_stem(backbone), *make_blocks(backbone)])
        cout = backbone.layers[-1].channels
        self.heads = nn.ModuleList(make_head(t.kind, cout, head_channels, t.channels, image_size) for t in tasks)
        layout = [((l, 0), bn_names(m)) for l, m in enumerate(self.trunk)]
        layout += [((len(self.trunk), j), bn_names(h)) for j, h in enumerate(self.heads)]
        self.hypernet = WeightHypernet(layout, len(tasks), embed_dim, hidden, use_cost=False)

    def init_from(self, anchor, stream: int = 0) -> None:
        """Starts from a hard-shared anchor (the pretrain stage): trunk = stream
        `stream`'s stem and blocks, heads = the anchor's heads. PHN-BN and our
        model then start from the same network, so the comparison is fair."""
        for l, module in enumerate(self.trunk):
            module.load_state_dict(anchor.node(l, stream).state_dict())
        for head, source in zip(self.heads, anchor.heads):
            head.load_state_dict(source.state_dict())

    def network_modules(self) -> list[nn.Module]:
        """What runs at inference (the hypernet only runs when r changes)."""
        return [*self.trunk, *self.heads]

    def forward(self, x: torch.Tensor, r: torch.Tensor) -> list[torch.Tensor]:
        deltas = self.hypernet(r)
        for l, module in enumerate(self.trunk):
            x = run_node(module, x, deltas[(l, 0)])
        top = len(self.trunk)
        return [run_node(h, x, deltas[(top, j)]) for j, h in enumerate(self.heads)]
