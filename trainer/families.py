"""The torch half of each model family (see edgecore.family): what the compiler
needs from a trained model to compile one sub-network spec.

    fam = model_family("dymu-tree")
    spec, adaptation = fam.derive(models, r, c)      # argmax tree + BN deltas
    module = fam.subnet(models, spec)                # standalone, BN folded (exportable)
    weights = fam.folder(models)(spec, adaptation)   # the same weights in numpy, by initializer name
    params, flops = fam.cost(models, spec, size)
    outs = fam.reference(models, x, spec, adaptation)  # unfolded PyTorch forward (parity)
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from edgecore.errors import EdgeError
from edgecore.family import DEFAULT_FAMILY, Family, get_family
from edgecore.tree import canonical_tree, identity_tree
from trainer.cost import tree_cost
from trainer.errors import TrainerError
from trainer.models.subnet import TreeFolder


class ModelFamily(ABC):
    """One family's model-side operations; `info` is its torch-free record."""

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
    def folder(self, models) -> Callable[[Any, Any], dict[str, np.ndarray]]: ...

    @abstractmethod
    def cost(self, models, spec, size: int) -> tuple[int, float]: ...

    @abstractmethod
    def reference(self, models, x: torch.Tensor, spec, adaptation=None) -> list[torch.Tensor]: ...


class DymuTree(ModelFamily):
    """Trees over the N-stream anchor net (CVPR 2022): the edge hypernet's argmax tree,
    the weight hypernet's BN deltas as the adaptation."""

    @torch.no_grad()
    def derive(self, models, r, c):
        tree = canonical_tree(models.edge.tree(r, c))
        deltas = {node: {k: v.detach().clone() for k, v in d.items()} for node, d in models.weight(r, c).items()}
        return tree, deltas

    def full_spec(self, models):
        return identity_tree(models.anchor.n_layers, models.anchor.n_tasks)

    def subnet(self, models, spec, adaptation=None):
        return models.anchor.subnet(spec, adaptation)

    def folder(self, models):
        return TreeFolder(models.anchor).weights

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
