"""Overlays for the run app: one panel per task beside the input, plus a HUD.

Colour maps follow the task kind (the trainer's TaskSpec.kind): segmentation ->
palette blended over the frame; regression (depth) -> turbo colour map between
the 2nd and 98th percentile (near = warm); normals -> RGB of (n + 1) / 2;
binary (edges, saliency) -> sigmoid mask over the frame; classification (CIFAR-100-MTL) ->
class-probability bars over the dimmed frame. Needs OpenCV.
"""

from __future__ import annotations

import numpy as np

PALETTE = np.array(
    [
        [128, 64, 128],
        [70, 70, 70],
        [220, 20, 60],
        [0, 142, 0],
        [250, 170, 30],
        [0, 60, 100],
        [119, 11, 32],
        [190, 153, 153],
        [152, 251, 152],
        [70, 130, 180],
    ],
    np.uint8,
)


def colourise(kind: str, out: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """(C, h, w) task output -> HxWx3 uint8 RGB panel at the frame's size."""
    import cv2

    h, w = frame.shape[:2]
    if kind == "segmentation":
        panel = PALETTE[out.argmax(0) % len(PALETTE)]
        panel = cv2.resize(panel, (w, h), interpolation=cv2.INTER_NEAREST)
        return (0.55 * panel + 0.45 * frame).astype(np.uint8)
    if kind in ("regression", "depth"):
        lo, hi = np.percentile(out[0], [2, 98])  # robust to a few border pixels
        d = np.clip((out[0] - lo) / max(float(hi - lo), 1e-6), 0, 1)
        panel = cv2.applyColorMap((255 * (1 - d)).astype(np.uint8), cv2.COLORMAP_TURBO)[..., ::-1]
    elif kind == "normals":
        n = out[:3] / np.maximum(np.linalg.norm(out[:3], axis=0, keepdims=True), 1e-6)
        panel = ((n.transpose(1, 2, 0) + 1) * 127.5).astype(np.uint8)
    elif kind == "binary":  # edges, saliency: one logit channel -> mask
        p = 1 / (1 + np.exp(-out[0]))
        panel = np.zeros((*p.shape, 3), np.uint8)
        panel[..., 1] = (255 * p).astype(np.uint8)
        panel = cv2.resize(panel, (w, h), interpolation=cv2.INTER_LINEAR)
        return np.maximum(panel, (0.5 * frame).astype(np.uint8))
    elif kind == "classification":  # one logit vector: a bar per class over the dimmed frame
        return _class_bars(np.asarray(out, np.float64).reshape(-1), frame)
    else:
        raise ValueError(f"no colour map for task kind {kind!r}")
    return cv2.resize(np.ascontiguousarray(panel), (w, h), interpolation=cv2.INTER_LINEAR)


def _class_bars(logits: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """Softmax probabilities as horizontal bars (class k in palette colour k), top to bottom."""
    import cv2

    h, w = frame.shape[:2]
    p = np.exp(logits - logits.max())
    p /= p.sum()
    panel = np.ascontiguousarray((0.35 * frame).astype(np.uint8))
    bar = max(1, h // len(p))
    for k, v in enumerate(p):
        colour = tuple(int(c) for c in PALETTE[k % len(PALETTE)])
        cv2.rectangle(panel, (0, k * bar), (int(v * (w - 1)), (k + 1) * bar - 1), colour, -1)
    return panel


def compose(frame: np.ndarray, outputs: dict, kinds: dict, hud: list[str]) -> np.ndarray:
    """Input and task panels side by side with HUD lines underneath (RGB uint8)."""
    import cv2

    panels = [frame.copy()] + [colourise(kinds[name], out, frame) for name, out in outputs.items()]
    for panel, name in zip(panels, ["input", *outputs]):
        cv2.putText(panel, name, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
    top = np.concatenate(panels, axis=1)
    strip = np.zeros((14 * len(hud) + 6, top.shape[1], 3), np.uint8)
    for i, line in enumerate(hud):
        cv2.putText(strip, line, (4, 14 * i + 13), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([top, strip], axis=0)
