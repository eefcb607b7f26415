"""Branching blocks (the anchor net's nodes) and backbone presets, behind registries.

A backbone is a stem plus a list of `LayerSpec`s; every stream of the anchor
net uses the same one, so node (l, i) and node (l, j) have the same shapes and
any parent can feed any child. Presets cover the CPU-sized nets we train here
and the paper's ResNet-34 / MobileNetV2 / ResNet-9 (CIFAR-100) sizes
(expressible, not trained on CPU).
All normalisation is plain `nn.BatchNorm2d`: hypernet deltas are applied by
parameter name (torch.func.functional_call), and the compiler folds BN by the
same names (`conv_bn_pairs`).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from trainer.errors import TrainerError


class ConvBN(nn.Sequential):
    """conv (no bias) -> BatchNorm2d -> optional activation: one foldable unit."""

    def __init__(self, cin, cout, k=3, stride=1, groups=1, dilation=1, act: str | None = "relu"):
        pad = dilation * (k // 2)
        layers = [
            nn.Conv2d(cin, cout, k, stride, pad, dilation=dilation, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if act == "relu":
            layers.append(nn.ReLU(inplace=True))
        elif act == "relu6":
            layers.append(nn.ReLU6(inplace=True))
        super().__init__(*layers)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 ConvBNs and a (projected) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 1, expand: int = 1):
        super().__init__()
        self.conv1 = ConvBN(cin, cout, 3, stride)
        self.conv2 = ConvBN(cout, cout, 3, 1, act=None)
        self.shortcut = ConvBN(cin, cout, 1, stride, act=None) if (stride != 1 or cin != cout) else None
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        skip = x if self.shortcut is None else self.shortcut(x)
        return self.act(self.conv2(self.conv1(x)) + skip)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 linear projection."""

    def __init__(self, cin: int, cout: int, stride: int = 1, expand: int = 6):
        super().__init__()
        hidden = cin * expand
        layers = [ConvBN(cin, hidden, 1, act="relu6")] if expand != 1 else []
        layers += [ConvBN(hidden, hidden, 3, stride, groups=hidden, act="relu6"), ConvBN(hidden, cout, 1, act=None)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        out = self.body(x)
        return x + out if self.residual else out


class ConvPool(nn.Module):
    """ResNet-9's downsampling layer: 3x3 ConvBN + ReLU, then a stride x stride max-pool
    (cifar10-fast's conv_bn + MaxPool2d(2)). `expand` is unused (the registry's signature)."""

    def __init__(self, cin: int, cout: int, stride: int = 2, expand: int = 1):
        super().__init__()
        self.conv = ConvBN(cin, cout, 3)
        self.pool = nn.MaxPool2d(stride) if stride > 1 else nn.Identity()

    def forward(self, x):
        return self.pool(self.conv(x))


class Residual(nn.Module):
    """ResNet-9's residual layer: x + res2(res1(x)), two 3x3 ConvBN + ReLU and an
    identity shortcut with no activation after the sum (cifar10-fast's Residual)."""

    def __init__(self, cin: int, cout: int, stride: int = 1, expand: int = 1):
        super().__init__()
        if cin != cout or stride != 1:
            raise ValueError(f"a residual layer keeps its shape, found {cin}->{cout} channels, stride {stride}")
        self.res1 = ConvBN(cin, cout, 3)
        self.res2 = ConvBN(cout, cout, 3)

    def forward(self, x):
        return x + self.res2(self.res1(x))


BLOCKS: dict[str, type[nn.Module]] = {
    "basic": BasicBlock,
    "inverted_residual": InvertedResidual,
    "conv_pool": ConvPool,
    "residual": Residual,
}


@dataclass(frozen=True)
class LayerSpec:
    block: str
    channels: int
    stride: int = 1
    expand: int = 1


@dataclass(frozen=True)
class BackboneSpec:
    stem_channels: int
    stem_stride: int
    layers: tuple[LayerSpec, ...]


def _resnet(stem: int, stages: list[tuple[int, int, int]], stem_stride=1) -> BackboneSpec:
    layers = []
    for channels, count, stride in stages:
        layers += [LayerSpec("basic", channels, stride if i == 0 else 1) for i in range(count)]
    return BackboneSpec(stem, stem_stride, tuple(layers))


def _mbv2(stem: int, settings: list[tuple[int, int, int, int]], stem_stride=1) -> BackboneSpec:
    layers = []
    for t, c, n, s in settings:
        layers += [LayerSpec("inverted_residual", c, s if i == 0 else 1, t) for i in range(n)]
    return BackboneSpec(stem, stem_stride, tuple(layers))


def _resnet9(c: int) -> BackboneSpec:
    """cifar10-fast's ResNet-9 at prep width c: five branching layers (conv-pool 2c,
    residual 2c, conv-pool 4c, conv-pool 8c, residual 8c), output stride 8."""
    layers = (
        LayerSpec("conv_pool", 2 * c, 2),
        LayerSpec("residual", 2 * c),
        LayerSpec("conv_pool", 4 * c, 2),
        LayerSpec("conv_pool", 8 * c, 2),
        LayerSpec("residual", 8 * c),
    )
    return BackboneSpec(c, 1, layers)


BACKBONES: dict[str, BackboneSpec] = {
    # CPU-sized streams for 32-48 px scenes: 4 (or 6) branching layers, output stride 4.
    "tiny-resnet": _resnet(16, [(16, 1, 1), (24, 1, 2), (32, 1, 1), (32, 1, 1)], stem_stride=2),
    # 5 branching layers whose last block narrows to 16 channels: the part every task
    # keeps for itself (node (L, j) feeds head j) is small, so a tree can shrink to
    # about half the anchor, as ResNet-34 trees do in the paper (c = 1: 0.845x).
    "tiny-resnet5": _resnet(16, [(16, 1, 1), (32, 1, 2), (32, 2, 1), (16, 1, 1)], stem_stride=2),
    "tiny-resnet6": _resnet(16, [(16, 2, 1), (24, 2, 2), (32, 2, 1)], stem_stride=2),
    "tiny-mbv2": _mbv2(16, [(1, 16, 1, 1), (4, 24, 2, 2), (4, 32, 1, 1)], stem_stride=2),
    # ResNet-9 at a quarter of its channels (16 -> 32, 32, 64, 128, 128): CPU tests.
    "tiny-resnet9": _resnet9(16),
    # The paper's backbones (ImageNet-style strides; 16 and 17 branching layers).
    # The stem here is one 3x3 ConvBN instead of ResNet's 7x7 + max-pool.
    "resnet34": _resnet(64, [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)], stem_stride=4),
    "mobilenetv2": _mbv2(
        32,
        [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)],
        stem_stride=2,
    ),
    # The paper's CIFAR-100-MTL backbone (github.com/davidcpage/cifar10-fast): its prep
    # ConvBN (3 -> 64, stride 1) is the stem; 6.57M parameters without the classifier.
    "resnet9": _resnet9(64),
}


def get_backbone(name: str, width: float = 1.0) -> BackboneSpec:
    """Preset by name, with channels scaled by `width` (rounded to multiples of 4)."""
    if name not in BACKBONES:
        raise TrainerError(f"unknown backbone {name!r}; known backbones are {sorted(BACKBONES)}")
    spec = BACKBONES[name]
    scale = lambda c: max(4, int(round(c * width / 4)) * 4)  # noqa: E731
    layers = tuple(LayerSpec(l.block, scale(l.channels), l.stride, l.expand) for l in spec.layers)
    return BackboneSpec(scale(spec.stem_channels), spec.stem_stride, layers)


def make_stem(spec: BackboneSpec) -> nn.Module:
    return ConvBN(3, spec.stem_channels, 3, spec.stem_stride)


def make_blocks(spec: BackboneSpec) -> list[nn.Module]:
    """One freshly initialised block per layer of the backbone."""
    blocks, cin = [], spec.stem_channels
    for layer in spec.layers:
        blocks.append(BLOCKS[layer.block](cin, layer.channels, layer.stride, layer.expand))
        cin = layer.channels
    return blocks


def conv_bn_pairs(module: nn.Module) -> list[tuple[str, str]]:
    """(conv name, bn name) of every ConvBN inside `module`: the BN fusion protocol."""
    return [
        (f"{name}.0" if name else "0", f"{name}.1" if name else "1")
        for name, m in module.named_modules()
        if isinstance(m, ConvBN)
    ]


def bn_names(module: nn.Module) -> list[tuple[str, int]]:
    """(name, channels) of every BatchNorm2d, in a stable order."""
    return [(n, m.num_features) for n, m in module.named_modules() if isinstance(m, nn.BatchNorm2d)]


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
