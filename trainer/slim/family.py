"""The width-slimmable family's torch half (edgecore.family "slim-width"): what the
compiler needs from a trained SlimNet to compile width configurations."""

from __future__ import annotations

import numpy as np
import torch

from edgecore.family import SLIM_FAMILY, get_family
from edgecore.widths import budget_of, search
from trainer.cost import flops
from trainer.families import ModelFamily
from trainer.models.blocks import conv_bn_pairs, count_params


class SlimWidth(ModelFamily):
    """Configurations (e, d_1..d_N) of a SlimNet; no per-point adaptation (switchable BN
    is part of the anchor)."""

    @torch.no_grad()
    def derive(self, models, r, c):
        return search_config(models.anchor, np.asarray(r, float), float(c)), None

    def full_spec(self, models):
        return models.anchor.largest()

    def subnet(self, models, spec, adaptation=None):
        return models.anchor.subnet(spec)

    def anchor_arrays(self, models):
        """Every full tensor once (BatchNorm sets as rows) and, per unit, how to slice it."""
        net = models.anchor
        state = dict(net.named_parameters()) | dict(net.named_buffers())
        arrays = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in state.items() if not k.endswith("flops")}
        arrays = {k: v for k, v in arrays.items() if k != "search_loss"}
        units = {}
        for unit in all_units(net):
            skel = net.skeleton(unit)
            pairs = [[conv, bn, float(skel.get_submodule(bn).eps)] for conv, bn in conv_bn_pairs(skel)]
            params = {name: [src, row, list(shape)] for name, (src, row, shape) in net.sources(unit).items()}
            units[unit_name(unit)] = {"prefix": unit_prefix(unit), "pairs": pairs, "params": params}
        return arrays, {"widths": list(net.widths), "units": units}

    def adaptation_arrays(self, spec, adaptation):
        return {}

    def cost(self, models, spec, size):
        net = models.anchor
        hw = (size, size) if isinstance(size, int) else tuple(size)
        net.set_output_size(hw)
        sub = net.subnet(spec)
        return count_params(sub), flops(sub, hw)

    def reference(self, models, x, spec, adaptation=None):
        return list(models.anchor(x, spec)[0])


def all_units(net) -> list[tuple]:
    units = [("enc", e) for e in net.widths]
    return units + [(f"dec{i}", e, d) for i in range(net.n_tasks) for e in net.widths for d in net.widths]


def unit_name(unit: tuple) -> str:
    """edgecore.widths' unit names: enc/<e>, dec<i>/<e>/<d>."""
    return "/".join(str(p) for p in unit)


def unit_prefix(unit: tuple) -> str:
    """Where a unit's weights sit in the compiled graph (SlimSubnet's module names)."""
    return "encoder." if unit[0] == "enc" else f"decoders.{int(unit[0].removeprefix('dec'))}."


def cost_range(net) -> tuple[float, float]:
    """FLOPs of the smallest and the largest configuration (the search table's units)."""
    k = len(net.widths)
    idx = torch.arange(net.n_tasks)
    low = net.enc_flops[0] + net.dec_flops[0, idx, 0].sum()
    high = net.enc_flops[k - 1] + net.dec_flops[k - 1, idx, k - 1].sum()
    return float(low), float(high)


def search_config(net, r: np.ndarray, c: float) -> tuple[int, ...]:
    """The paper's search for preference r under the budget c sets (c = 0: the largest
    configuration's FLOPs, c = 1: the smallest's), on the search table of the checkpoint."""
    low, high = cost_range(net)
    enc = {e: float(net.enc_flops[a]) for a, e in enumerate(net.widths)}
    return search(r, budget_of(c, low, high), net.widths, net.search_loss.numpy(), enc, net.dec_flops.numpy())


FAMILY = SlimWidth(get_family(SLIM_FAMILY))
