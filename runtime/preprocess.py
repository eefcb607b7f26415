"""Frame -> engine input, following the bundle's input spec."""

from __future__ import annotations

import numpy as np

from runtime.errors import EdgeRuntimeError
from runtime.manifest import InputSpec


def resize(frame: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear (area for downscaling) with OpenCV when present, else nearest in numpy."""
    if frame.shape[:2] == (h, w):
        return frame
    try:
        import cv2
    except ImportError:
        ys = (np.arange(h) * frame.shape[0] / h).astype(int)
        xs = (np.arange(w) * frame.shape[1] / w).astype(int)
        return frame[ys][:, xs]
    shrink = frame.shape[0] > h or frame.shape[1] > w
    return cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def preprocess(frame: np.ndarray, spec: InputSpec, colour_order: str = "RGB") -> np.ndarray:
    """HxWx3 uint8 in `colour_order` -> (1, C, H, W) float32 normalised as trained."""
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != spec.shape[0]:
        found = getattr(frame, "shape", type(frame).__name__)
        raise EdgeRuntimeError(f"frame must be an HxWx{spec.shape[0]} array, found {found}")
    if frame.dtype != np.uint8:
        raise EdgeRuntimeError(
            f"frame must be uint8 (0..255), found {frame.dtype}; pass preprocessed "
            f"(1, C, H, W) float32 tensors to Runtime.run instead"
        )
    if colour_order.upper() != spec.colour_order.upper():
        frame = frame[..., ::-1]
    x = resize(frame, spec.shape[1], spec.shape[2]).astype(np.float32) * np.float32(spec.scale)
    x = (x - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])
