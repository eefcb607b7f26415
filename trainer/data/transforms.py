"""Label-aware resizing and augmentation, as the multi-task codebases do it.

Every array of a sample moves with the image: the image is resized bilinearly,
label maps, depth and normals by nearest neighbour (interpolating a class id or
across a depth edge invents values), and depth is divided by the zoom factor. Padding fills with each array's "invalid"
value, and a horizontal flip negates the normals' x component, so a flipped
sample is still a consistent scene. How each array behaves follows its task's
kind (TaskSpec.kind); "image" is the input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from trainer.tasks import IGNORE

# kind -> (interpolation, padding value); classification targets are not spatial.
_RULES = {
    "image": ("bilinear", 0),
    "segmentation": ("nearest", IGNORE),
    "binary": ("nearest", IGNORE),
    "regression": ("nearest", 0),
    "normals": ("nearest", 0),
}


def _chw(a: np.ndarray) -> np.ndarray:
    return a if a.ndim == 3 else a[None]


def resize(a: np.ndarray, kind: str, hw: tuple[int, int]) -> np.ndarray:
    """(C, H, W) or (H, W) array resized to hw with its kind's interpolation."""
    if a.shape[-2:] == tuple(hw):
        return a
    mode = _RULES[kind][0]
    t = torch.from_numpy(np.ascontiguousarray(_chw(a))).float()[None]
    t = F.interpolate(t, size=tuple(hw), mode=mode, **({"align_corners": False} if mode == "bilinear" else {}))[0]
    out = t.round().clamp(0, 255).to(torch.uint8) if a.dtype == np.uint8 else t.to(torch.float32)
    out = out.numpy()
    return out if a.ndim == 3 else out[0]


def _pad(a: np.ndarray, kind: str, top: int, left: int, hw: tuple[int, int]) -> np.ndarray:
    """a placed at (top, left) in an array of size hw filled with its kind's pad value."""
    out = np.full(a.shape[:-2] + tuple(hw), _RULES[kind][1], dtype=a.dtype)
    out[..., top : top + a.shape[-2], left : left + a.shape[-1]] = a
    return out


def spatial(sample: dict, kinds: dict[str, str]) -> list[str]:
    return [k for k in sample if kinds.get(k) in _RULES]


def resize_sample(sample: dict, kinds: dict[str, str], hw: tuple[int, int]) -> dict:
    """Every spatial array of the sample resized to hw (evaluation frames)."""
    return {k: resize(v, kinds[k], hw) if k in spatial(sample, kinds) else v for k, v in sample.items()}


@dataclass(frozen=True)
class Augment:
    """Random scale (relative to base_hw, the size evaluation frames get; None: the
    sample's own), padding, a random size x size crop and a horizontal flip."""

    size: int
    scale_range: tuple[float, float] = (1.0, 1.0)
    pad: int = 0
    flip: bool = True
    base_hw: tuple[int, int] | None = None

    def __call__(self, sample: dict, kinds: dict[str, str], rng: np.random.Generator) -> dict:
        keys = spatial(sample, kinds)
        h, w = self.base_hw or sample["image"].shape[-2:]
        s = rng.uniform(*self.scale_range)
        hw = (max(1, round(h * s)), max(1, round(w * s)))
        out = {k: resize(sample[k], kinds[k], hw) for k in keys}
        # Zooming in by s is moving the camera s times closer: depth shrinks by s (as
        # the multi-task codebases scale it); 0 (no reading) stays 0.
        out = {k: v / np.float32(s) if kinds[k] == "regression" else v for k, v in out.items()}
        ph, pw = max(self.size, hw[0] + 2 * self.pad), max(self.size, hw[1] + 2 * self.pad)
        top, left = (ph - hw[0]) // 2, (pw - hw[1]) // 2
        out = {k: _pad(v, kinds[k], top, left, (ph, pw)) for k, v in out.items()}
        y, x = int(rng.integers(ph - self.size + 1)), int(rng.integers(pw - self.size + 1))
        out = {k: v[..., y : y + self.size, x : x + self.size] for k, v in out.items()}
        if self.flip and rng.uniform() < 0.5:
            out = {k: _flip(v, kinds[k]) for k, v in out.items()}
        return {**sample, **{k: np.ascontiguousarray(v) for k, v in out.items()}}


def _flip(a: np.ndarray, kind: str) -> np.ndarray:
    a = a[..., ::-1].copy()
    if kind == "normals":
        a[0] = -a[0]  # x points the other way in the mirrored image
    return a
