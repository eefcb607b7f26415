"""The torch half of each model family (see edgecore.family): what the compiler
needs from a trained model to compile one sub-network spec.

    fam = model_family("dymu-tree")
    spec, adaptation = fam.derive(models, r, c)      # argmax tree + BN deltas
    module = fam.subnet(models, spec)                # standalone, BN folded (exportable)
    arrays, plan = fam.anchor_arrays(models)         # the anchor, stored once per bundle
    delta = fam.adaptation_arrays(spec, adaptation)  # per point: what differs (a few KB)
    weights = fam.info.anchor(arrays, plan).weights(spec, delta)  # folded, by initializer name
    params, flops = fam.cost(models, spec, size)
    outs = fam.reference(models, x, spec, adaptation)  # unfolded PyTorch forward (parity)
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import torch
from torch import nn

from edgecore.errors import EdgeError
from edgecore.family import DEFAULT_FAMILY, Family, get_family
from edgecore.fold import tree_adaptation
from edgecore.tree import canonical_tree, identity_tree, node_key
from trainer.cost import tree_cost
from trainer.errors import TrainerError
from trainer.models.subnet import TreeFolder


class ModelFamily(ABC):
    """One family's model-side operations; `info` is its torch-free record."""

    hypernets = False  # exports hypernets.onnx (the runtime's exact mode evaluates them)

    def __init__(self, info: Family):
        self.info = info
        self.name = info.name

    @abstractmethod
    def derive(self, models, r: torch.Tensor, c: float) -> tuple[Any, Any]: ...

    @abstractmethod
    def full_spec(self, models) -> Any: ...

    @abstractmethod
    def subnet(self, models, spec, adaptation=None) -> nn.Module: ...

    @abstractmethod
    def anchor_arrays(self, models) -> tuple[dict[str, np.ndarray], dict]: ...

    @abstractmethod
    def adaptation_arrays(self, spec, adaptation) -> dict[str, np.ndarray]: ...

    @abstractmethod
    def cost(self, models, spec, size: int | tuple[int, int]) -> tuple[int, float]: ...

    @abstractmethod
    def reference(self, models, x: torch.Tensor, spec, adaptation=None) -> list[torch.Tensor]: ...

    def set_input_size(self, models, hw) -> None:
        """Dense outputs match inputs of (H, W) from now on (deploy or parity resolution)."""
        models.anchor.set_output_size(tuple(hw))


class DymuTree(ModelFamily):
    """Trees over the N-stream anchor net (CVPR 2022): the edge hypernet's argmax tree,
    the weight hypernet's BN deltas as the adaptation."""

    hypernets = True

    @torch.no_grad()
    def derive(self, models, r, c):
        tree = canonical_tree(models.edge.tree(r, c))
        deltas = {node: {k: v.detach().clone() for k, v in d.items()} for node, d in models.adaptation(r, c).items()}
        return tree, deltas

    def full_spec(self, models):
        return identity_tree(models.anchor.n_layers, models.anchor.n_tasks)

    def subnet(self, models, spec, adaptation=None):
        return models.anchor.subnet(spec, adaptation)

    def anchor_arrays(self, models):
        """Every node's and head's raw arrays (`<module>/<param>`) and the plan that folds them."""
        folder = TreeFolder(models.anchor)
        modules = {node_key(l, i): fold for (l, i), fold in folder.nodes.items()}
        modules.update({f"heads.{j}": fold for j, fold in enumerate(folder.heads)})
        arrays = {f"{m}/{k}": v for m, (arr, _) in modules.items() for k, v in arr.items()}
        return arrays, {"pairs": {m: [list(p) for p in pairs] for m, (_, pairs) in modules.items()}}

    def adaptation_arrays(self, spec, adaptation):
        deltas = {node: {k: v.detach().cpu().numpy() for k, v in d.items()} for node, d in (adaptation or {}).items()}
        return tree_adaptation(spec, deltas)

    def cost(self, models, spec, size):
        return tree_cost(models.anchor, spec, size)

    def reference(self, models, x, spec, adaptation=None):
        return list(models.anchor.forward_tree(x, spec, adaptation))


FAMILY = DymuTree(get_family(DEFAULT_FAMILY))


def family_of(config: dict) -> str:
    """The family a run's resolved config trains (runs before families: the tree family)."""
    return (config.get("model") or {}).get("family", DEFAULT_FAMILY)


def model_family(name: str = DEFAULT_FAMILY) -> ModelFamily:
    """The registered family's torch half."""
    try:
        info = get_family(name)
    except EdgeError as exc:
        raise TrainerError(str(exc)) from None
    return importlib.import_module(info.trainer_module).FAMILY
