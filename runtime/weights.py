"""Folded weight sets (`weights/<id>.npz`): one per distinct (tree, BN deltas).

The id is the content hash of the arrays (names, dtypes, shapes, bytes), so two
grid points whose hypernet outputs fold to identical weights share one file,
and a file whose content no longer matches its name is detected on load.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path
from typing import Mapping

import numpy as np

from edgecore.fileio import atomic_write
from runtime.errors import EdgeRuntimeError


def weights_id(weights: Mapping[str, np.ndarray], length: int = 16) -> str:
    """Content hash of a weight set, independent of dict order."""
    h = hashlib.sha256()
    for name in sorted(weights):
        arr = np.ascontiguousarray(weights[name])
        h.update(f"{name}:{arr.dtype.str}:{arr.shape};".encode())
        h.update(arr.tobytes())
    return h.hexdigest()[:length]


def save_weights(weights: Mapping[str, np.ndarray], directory: str | Path) -> str:
    """Writes `<directory>/<id>.npz` atomically (skipped if present); returns the id."""
    wid = weights_id(weights)
    path = Path(directory) / f"{wid}.npz"
    if not path.exists():
        atomic_write(path, lambda f: np.savez(f, **{k: np.ascontiguousarray(v) for k, v in weights.items()}))
    return wid


def load_weights(path: str | Path, verify: bool = True) -> dict[str, np.ndarray]:
    """Reads a weight set; with `verify`, its content must hash to its file name."""
    path = Path(path)
    if not path.is_file():
        raise EdgeRuntimeError(f"weights file {path} is missing")
    try:
        with np.load(path, allow_pickle=False) as z:
            weights = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise EdgeRuntimeError(
            f"weights file {path} is corrupt or not an npz file ({exc.__class__.__name__})"
        ) from None
    if verify and weights_id(weights) != path.stem:
        raise EdgeRuntimeError(
            f"weights file {path} is corrupt: its content hashes to {weights_id(weights)}, expected {path.stem}"
        )
    return weights


def npz_bytes(weights: Mapping[str, np.ndarray]) -> int:
    """Total array bytes of a weight set (what binding it costs in memory)."""
    return int(sum(np.asarray(v).nbytes for v in weights.values()))


__all__ = ["load_weights", "npz_bytes", "save_weights", "weights_id"]
