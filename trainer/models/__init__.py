"""Model factory: builds every network of a run from its resolved config."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from trainer.config import FitConfig
from trainer.data import get_tasks
from trainer.models.anchor import AnchorNet
from trainer.models.blocks import get_backbone
from trainer.models.hypernets import EdgeHypernet, WeightHypernet
from trainer.models.phn_bn import PHNBN


@dataclass
class Models:
    anchor: AnchorNet
    edge: EdgeHypernet
    weight: WeightHypernet
    phn_bn: PHNBN

    def adaptation(self, r, c, tree=None) -> dict:
        """The weight hypernet's BN deltas for (r, c) on `tree` (default: the edge
        hypernet's tree for (r, c), the one those deltas are trained for)."""
        return self.weight(r, c, self.edge.tree(r, c) if tree is None else tree)

    def modules(self) -> dict[str, nn.Module]:
        return {
            "anchor": self.anchor,
            "edge_hypernet": self.edge,
            "weight_hypernet": self.weight,
            "phn_bn": self.phn_bn,
        }


@dataclass
class SlimModels:
    """The slim-width family's one network (named `anchor`: what the compiler folds)."""

    anchor: nn.Module

    def modules(self) -> dict[str, nn.Module]:
        return {"anchor": self.anchor}


def build_models(cfg: FitConfig) -> Models | SlimModels:
    """Fresh (untrained) networks for `cfg`; checkpoints load states into these."""
    tasks = get_tasks(cfg.data.tasks, cfg.data.dataset)
    if cfg.model.family == "slim-width":
        from trainer.slim.model import SlimNet

        m = cfg.model
        return SlimModels(SlimNet(tasks, m.backbone, m.width, m.head_channels, cfg.data.size, m.widths))
    backbone = get_backbone(cfg.model.backbone, cfg.model.width)
    m = cfg.method
    anchor = AnchorNet(tasks, backbone, cfg.model.head_channels, cfg.data.size, cfg.model.shared_init)
    edge = EdgeHypernet(len(tasks), anchor.n_layers, m.embed_dim, m.edge_hidden, m.edge_init_identity)
    weight = WeightHypernet(
        anchor.node_bn_layout(), len(tasks), m.embed_dim, m.weight_hidden, tree_input=m.weight_tree_input
    )
    phn = PHNBN(tasks, backbone, cfg.model.head_channels, cfg.data.size, m.embed_dim, m.weight_hidden)
    return Models(anchor, edge, weight, phn)
