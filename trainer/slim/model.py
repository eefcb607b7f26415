"""SlimNet: a width-slimmable encoder (a backbone preset) and slimmable task decoders.

A configuration (e, d_1..d_N) runs the encoder at e% of its channels and decoder
i at d_i%. Every sliced tensor is a prefix of the full one (first channels
out, first channels in), so one set of full-width weights serves every
configuration. Each unit (the encoder at a width, decoder i at an encoder and
a decoder width) has a *skeleton*: the ordinary module at those widths, built
on the meta device, run with `functional_call` on views of the full tensors,
so gradients reach the shared weights and a sliced standalone module is the
same skeleton with copied weights (`subnet`): slicing equals masking by
construction, and a test checks it.

BatchNorm is switchable (Slimmable Networks): the encoder keeps one set of BN
parameters and statistics per encoder width, decoder i one per (encoder width,
decoder width) pair, because a layer's statistics depend on how many channels
feed it. 4 + 4 x 4 sets per task for 4 widths, a few percent of the weights,
and no post-training recalibration, which would need data at compile time.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from trainer.distributed import sync_batchnorm
from trainer.models.blocks import ConvBN, get_backbone, make_blocks, make_stem
from trainer.models.subnet import fold_module

WIDTHS = (25, 50, 75, 100)  # percent


def scale(channels: int, percent: int) -> int:
    """Channels at a width, rounded as backbone presets round (multiples of 4)."""
    return max(4, int(round(channels * percent / 100 / 4)) * 4)


class SlimDecoder(nn.Module):
    """Two 3x3 ConvBNs, then per-pixel logits upsampled to the input (dense tasks) or a
    pooled linear classifier. No concatenation anywhere, so every slice is a prefix."""

    def __init__(self, kind: str, cin: int, channels: int, n_out: int, out_size):
        super().__init__()
        self.conv1, self.conv2 = ConvBN(cin, channels, 3), ConvBN(channels, channels, 3)
        self.dense = kind != "classification"
        self.out = nn.Conv2d(channels, n_out, 1) if self.dense else nn.Linear(channels, n_out)
        self.out_size = out_size

    def forward(self, x):
        y = self.conv2(self.conv1(x))
        if not self.dense:
            return self.out(y.mean((2, 3)))
        size = (self.out_size, self.out_size) if isinstance(self.out_size, int) else tuple(self.out_size)
        return F.interpolate(self.out(y), size=size, mode="bilinear", align_corners=False)


def _key(name: str) -> str:
    return name.replace(".", "__")  # ParameterDict keys cannot hold dots


class SlimNet(nn.Module):
    def __init__(
        self, tasks, backbone: str, width: float, head_channels: int, image_size, widths: Sequence[int] = WIDTHS
    ):
        super().__init__()
        self.widths, self.task_names = tuple(widths), [t.name for t in tasks]
        self.kinds, self.n_out = [t.kind for t in tasks], [t.channels for t in tasks]
        self.backbone, self.width, self.head_channels, self.out_size = backbone, width, head_channels, image_size
        self.n_tasks, self._skeletons, self._plans = len(tasks), {}, {}
        self.sync_bn = False  # torchrun (trainer.slim.train): skeletons' BatchNorm statistics over every rank
        self.params, self.bn_weight, self.bn_bias = nn.ParameterDict(), nn.ParameterDict(), nn.ParameterDict()
        full = [("enc", self.make_unit("enc", 100))] + [
            (f"dec{i}", self.make_unit(f"dec{i}", 100, 100)) for i in range(self.n_tasks)
        ]
        for scope, module in full:
            self._adopt(scope, module, sets=len(self.widths) ** (1 if scope == "enc" else 2))
        k = len(self.widths)
        # The search table (stage "search"): scaled val loss per (encoder width, task, decoder width),
        # and FLOPs per unit; part of the state, so the checkpoint carries it to the compiler.
        self.register_buffer("search_loss", torch.zeros(k, self.n_tasks, k))
        self.register_buffer("enc_flops", torch.zeros(k))
        self.register_buffer("dec_flops", torch.zeros(k, self.n_tasks, k))

    # -- units ---------------------------------------------------------------------------
    def make_unit(self, scope: str, e: int, d: int | None = None, device=None) -> nn.Module:
        """The ordinary module of one unit at these widths (freshly initialised)."""
        enc = get_backbone(self.backbone, self.width * e / 100)
        if scope == "enc":
            with torch.device(device or "cpu"):
                return nn.Sequential(make_stem(enc), *make_blocks(enc))
        i = int(scope.removeprefix("dec"))
        cin, ch = enc.layers[-1].channels, scale(self.head_channels, d)
        with torch.device(device or "cpu"):
            return SlimDecoder(self.kinds[i], cin, ch, self.n_out[i], self.out_size)

    def _adopt(self, scope: str, module: nn.Module, sets: int) -> None:
        """Registers a full-width unit's weights, with `sets` BatchNorm sets."""
        bns = {n for n, m in module.named_modules() if isinstance(m, nn.BatchNorm2d)}
        for name, p in module.named_parameters():
            owner, _, leaf = name.rpartition(".")
            if owner in bns:
                init = torch.ones if leaf == "weight" else torch.zeros
                target = self.bn_weight if leaf == "weight" else self.bn_bias
                target[_key(f"{scope}.{owner}")] = nn.Parameter(init(sets, p.shape[0]))
            else:
                self.params[_key(f"{scope}.{name}")] = nn.Parameter(p.detach().clone())
        for owner in bns:
            c = module.get_submodule(owner).num_features
            self.register_buffer(f"rm__{_key(f'{scope}.{owner}')}", torch.zeros(sets, c))
            self.register_buffer(f"rv__{_key(f'{scope}.{owner}')}", torch.ones(sets, c))

    def bn_row(self, unit: tuple) -> int:
        """The BatchNorm set of a unit: its encoder width, or (encoder, decoder) width."""
        k = len(self.widths)
        if unit[0] == "enc":
            return self.widths.index(unit[1])
        return self.widths.index(unit[1]) * k + self.widths.index(unit[2])

    def skeleton(self, unit: tuple) -> nn.Module:
        if unit not in self._skeletons:
            skel = self.make_unit(*unit, device="meta")
            if self.sync_bn:
                sync_batchnorm(skel)
            self._skeletons[unit] = skel
        return self._skeletons[unit]

    def sources(self, unit: tuple) -> dict[str, tuple[str, int | None, tuple[int, ...]]]:
        """Every parameter and BN statistic of a unit's skeleton: (source, BN row, shape)."""
        skel, row, scope = self.skeleton(unit), self.bn_row(unit), unit[0]
        out = {}
        for name, p in skel.named_parameters():
            owner, _, leaf = name.rpartition(".")
            if isinstance(skel.get_submodule(owner) if owner else skel, nn.BatchNorm2d):
                out[name] = (f"bn_{leaf}.{_key(f'{scope}.{owner}')}", row, tuple(p.shape))
            else:
                out[name] = (f"params.{_key(f'{scope}.{name}')}", None, tuple(p.shape))
        for name, m in skel.named_modules():
            if isinstance(m, nn.BatchNorm2d):
                k = _key(f"{scope}.{name}")
                out[f"{name}.running_mean"] = (f"rm__{k}", row, (m.num_features,))
                out[f"{name}.running_var"] = (f"rv__{k}", row, (m.num_features,))
        return out

    def _plan(self, unit: tuple) -> tuple[dict, list[str]]:
        """`sources(unit)` and the skeleton's BatchNorm names, computed once per unit (the
        skeleton, which both describe, is cached and never rebuilt)."""
        if unit not in self._plans:
            bns = [n for n, m in self.skeleton(unit).named_modules() if isinstance(m, nn.BatchNorm2d)]
            self._plans[unit] = (self.sources(unit), bns)
        return self._plans[unit]

    def tensors(self, unit: tuple) -> dict[str, torch.Tensor]:
        """Views of the full tensors in the unit's shapes (gradients reach the full weights,
        BatchNorm updates its row of statistics in place)."""
        # Looked up per call: .to() and friends replace buffer objects.
        state = dict(self.named_parameters()) | dict(self.named_buffers())
        sources, bns = self._plan(unit)
        out = {}
        for name, (source, row, shape) in sources.items():
            t = state[source]
            t = t if row is None else t[row]
            out[name] = t[tuple(slice(0, n) for n in shape)]
        for name in bns:
            out[f"{name}.num_batches_tracked"] = torch.zeros((), dtype=torch.long)
        return out

    def run_unit(self, unit: tuple, x: torch.Tensor) -> torch.Tensor:
        skel = self.skeleton(unit)
        skel.train(self.training)
        return functional_call(skel, self.tensors(unit), (x,))

    # -- configurations ------------------------------------------------------------------
    def units(self, spec: Sequence[int]) -> list[tuple]:
        e, *ds = spec
        return [("enc", e)] + [(f"dec{i}", e, d) for i, d in enumerate(ds)]

    def forward(self, x: torch.Tensor, spec: Sequence[int]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Task outputs of configuration `spec` and the encoder's features (for distillation)."""
        enc, *decs = self.units(spec)
        feat = self.run_unit(enc, x)
        return [self.run_unit(u, feat) for u in decs], feat

    def largest(self) -> tuple[int, ...]:
        return (self.widths[-1],) * (self.n_tasks + 1)

    def smallest(self) -> tuple[int, ...]:
        return (self.widths[0],) * (self.n_tasks + 1)

    def set_output_size(self, hw) -> None:
        self.out_size = tuple(hw)
        for skel in self._skeletons.values():
            if isinstance(skel, SlimDecoder):
                skel.out_size = tuple(hw)

    @torch.no_grad()
    def unit_module(self, unit: tuple) -> nn.Module:
        """A unit as an ordinary module with its sliced weights (real tensors, eval mode)."""
        module = self.make_unit(*unit)
        tensors = self.tensors(unit)
        module.load_state_dict({k: v.detach().clone() for k, v in tensors.items()})
        return module.eval()

    def subnet(self, spec: Sequence[int]) -> nn.Module:
        """The standalone, BN-folded module of one configuration (exportable to ONNX)."""
        return SlimSubnet(self, spec)


class SlimSubnet(nn.Module):
    """One configuration: the encoder and every decoder sliced, BN folded, one output per task."""

    def __init__(self, net: SlimNet, spec: Sequence[int]):
        super().__init__()
        enc, *decs = net.units(spec)
        self.task_names = list(net.task_names)
        self.encoder = fold_module(net.unit_module(enc))
        self.decoders = nn.ModuleList(fold_module(net.unit_module(u)) for u in decs)
        for d in self.decoders:
            d.out_size = net.out_size
        self.eval()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feat = self.encoder(x)
        return tuple(d(feat) for d in self.decoders)
