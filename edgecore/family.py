"""Model families: what the compiler and the runtime know about a sub-network spec.

A controllable multi-task model hands out one sub-network per preference. What
that sub-network *is* depends on the family: a tree over the anchor net's
streams (DYMU, CVPR 2022: `dymu-tree`) or, next, a width configuration of a
slimmable encoder and decoders (ICCV 2023). The compiler and the runtime speak
of a *spec* through this small, torch-free interface, registered by name like
the backends; the manifest records the family, so a bundle says how to read
its specs. The torch half of a family (derive a spec and its weight adaptation
from a preference, build the standalone module, fold its weights, count its
cost) lives in the trainer (`trainer.families`), named by `trainer_module`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from edgecore.errors import EdgeError
from edgecore.fold import TreeAnchor
from edgecore.tree import canonical_tree, tree_signature, used_nodes
from edgecore.widths import SlimAnchor, canonical_widths, widths_signature


@dataclass(frozen=True)
class Family:
    name: str
    canonical: Callable[[Any], Any]  # spec (JSON lists or tuples) -> canonical, hashable spec; ValueError if malformed
    signature: Callable[[Any], str]  # spec -> short hex digest: one graph and one engine per signature
    units_per_layer: Callable[[Any], tuple[int, ...]]  # what the spec computes per layer (manifest, reports)
    trainer_module: str  # the torch half: defines `FAMILY`, a trainer.families.ModelFamily
    # (anchor arrays, the manifest's anchor plan) -> an object whose `weights(spec, adaptation)`
    # returns a sub-network's folded weights by initializer name; ValueError if malformed
    anchor: Callable[[Mapping[str, Any], Any], Any]


FAMILIES: dict[str, Family] = {}
DEFAULT_FAMILY = "dymu-tree"  # bundles and checkpoints written before families were recorded


def _pairs(plan: Any) -> dict:
    if not isinstance(plan, dict) or not isinstance(plan.get("pairs"), dict):
        raise ValueError(f"a {DEFAULT_FAMILY} anchor plan is {{'pairs': {{module: [[conv, bn, eps], ...]}}}}")
    return plan["pairs"]


def register_family(family: Family) -> Family:
    FAMILIES[family.name] = family
    return family


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise EdgeError(f"unknown model family {name!r}; expected one of {sorted(FAMILIES)}")
    return FAMILIES[name]


register_family(
    Family(
        DEFAULT_FAMILY,
        canonical_tree,
        tree_signature,
        lambda tree: tuple(sum(row) for row in used_nodes(canonical_tree(tree))),
        "trainer.families",
        lambda arrays, plan: TreeAnchor(arrays, _pairs(plan)),
    )
)

SLIM_FAMILY = "slim-width"
register_family(
    Family(
        SLIM_FAMILY,
        canonical_widths,
        widths_signature,
        canonical_widths,  # the encoder's and each decoder's width (%)
        "trainer.slim.family",
        SlimAnchor,
    )
)
