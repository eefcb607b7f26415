"""Task heads: a light DeepLabv3-style dense head and a linear classifier head."""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from trainer.models.blocks import ConvBN


class DenseHead(nn.Module):
    """ASPP (1x1, dilated 3x3, image pooling) -> projection -> 3x3 refine ->
    per-pixel logits, bilinearly upsampled to the input size.

    DeepLabv3+ also fuses a low-level skip from an early backbone layer; in a
    tree that layer may belong to another task's stream, so the head reads
    node (L, j) only and refines after upsampling instead.
    """

    def __init__(self, cin: int, channels: int, n_out: int, out_size: int | tuple[int, int]):
        super().__init__()
        self.aspp1 = ConvBN(cin, channels, 1)
        self.aspp2 = ConvBN(cin, channels, 3, dilation=2)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, channels, 1), nn.ReLU(inplace=True))
        self.project = ConvBN(3 * channels, channels, 1)
        self.refine = ConvBN(channels, channels, 3)
        self.classifier = nn.Conv2d(channels, n_out, 1)
        self.out_size = out_size  # int (square) or (H, W): the input size the outputs match

    def forward(self, x):
        size = x.shape[-2:]
        pooled = self.pool(x).expand(-1, -1, *size)
        y = self.project(torch.cat([self.aspp1(x), self.aspp2(x), pooled], 1))
        y = F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)
        y = self.classifier(self.refine(y))
        size = (self.out_size, self.out_size) if isinstance(self.out_size, int) else tuple(self.out_size)
        return F.interpolate(y, size=size, mode="bilinear", align_corners=False)


class LinearHead(nn.Module):
    """Global average pool -> linear: for classification tasks (e.g. CIFAR-100)."""

    def __init__(self, cin: int, n_out: int):
        super().__init__()
        self.fc = nn.Linear(cin, n_out)

    def forward(self, x):
        return self.fc(x.mean((2, 3)))


def make_head(kind: str, cin: int, channels: int, n_out: int, out_size: int) -> nn.Module:
    return LinearHead(cin, n_out) if kind == "classification" else DenseHead(cin, channels, n_out, out_size)


def set_output_size(module: nn.Module, hw) -> list:
    """Points every dense head in `module` at outputs of size hw; returns the old sizes.
    The nets are fully convolutional: training crops, evaluation frames and the
    deployed camera frames may each have their own size."""
    heads = [m for m in module.modules() if isinstance(m, DenseHead)]
    old = [h.out_size for h in heads]
    for h in heads:
        h.out_size = tuple(hw)
    return old


@contextmanager
def output_size(module: nn.Module, hw):
    """set_output_size for the duration of a with-block (e.g. a validation pass)."""
    old = set_output_size(module, hw)
    try:
        yield
    finally:
        for h, size in zip([m for m in module.modules() if isinstance(m, DenseHead)], old):
            h.out_size = size
