"""Content-addressed array files (`<id>.npz`): the anchor's weights and each grid
point's adaptation in a bundle.

The id is the content hash of the arrays (names, dtypes, shapes, bytes), so two
grid points with identical adaptations share one file, and a file whose content
no longer matches its name (tampered, truncated, swapped) is detected on load.
npz files are read with `allow_pickle=False`: an array file cannot run code.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path
from typing import Mapping

import numpy as np

from edgecore.errors import EdgeError
from edgecore.fileio import atomic_write


def arrays_id(arrays: Mapping[str, np.ndarray], length: int = 16) -> str:
    """Content hash of named arrays, independent of dict order."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{arr.dtype.str}:{arr.shape};".encode())
        h.update(arr.tobytes())
    return h.hexdigest()[:length]


def save_arrays(arrays: Mapping[str, np.ndarray], directory: str | Path) -> str:
    """Writes `<directory>/<id>.npz` atomically (skipped if present); returns the id."""
    aid = arrays_id(arrays)
    path = Path(directory) / f"{aid}.npz"
    if not path.exists():
        atomic_write(path, lambda f: np.savez(f, **{k: np.ascontiguousarray(v) for k, v in arrays.items()}))
    return aid


def load_arrays(path: str | Path, verify: bool = True, error: type[Exception] = EdgeError) -> dict[str, np.ndarray]:
    """Reads an array file; with `verify`, its content must hash to its file name."""
    path = Path(path)
    if not path.is_file():
        raise error(f"array file {path} is missing: the bundle is incomplete, rebuild it")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise error(f"array file {path} is corrupt or not an npz file ({exc.__class__.__name__})") from None
    if verify and arrays_id(arrays) != path.stem:
        raise error(f"array file {path} is corrupt: its content hashes to {arrays_id(arrays)}, expected {path.stem}")
    return arrays


def nbytes(arrays: Mapping[str, np.ndarray]) -> int:
    """Total bytes of the arrays."""
    return int(sum(np.asarray(v).nbytes for v in arrays.values()))
