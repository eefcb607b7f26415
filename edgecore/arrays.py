"""Content-addressed array files (`<id>.safetensors`): the anchor's weights and each
grid point's adaptation in a bundle.

The id is the content hash of the arrays (names, dtypes, shapes, bytes), so two
grid points with identical adaptations share one file, and a file whose content
no longer matches its name (tampered, truncated, swapped) is detected on load.
The files are safetensors (bundle format 3): an 8-byte header length, a JSON
header of names, dtypes, shapes and byte offsets, then the raw little-endian
bytes. Flat and zero-copy, so the C++ runtime reads them without a zip library,
and, like npz with `allow_pickle=False`, an array file cannot run code.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Mapping

import numpy as np
import safetensors.numpy
from safetensors import SafetensorError

from edgecore.errors import EdgeError
from edgecore.fileio import atomic_path

SUFFIX = ".safetensors"


def arrays_id(arrays: Mapping[str, np.ndarray], length: int = 16) -> str:
    """Content hash of named arrays, independent of dict order."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{arr.dtype.str}:{arr.shape};".encode())
        h.update(arr.tobytes())
    return h.hexdigest()[:length]


def _little_endian(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Contiguous little-endian copies where needed: what safetensors stores (and so what a
    load returns), so the id computed before saving is the one the file hashes to."""
    out = {}
    for k, v in arrays.items():
        v = np.asarray(v)
        out[k] = np.ascontiguousarray(v, dtype=v.dtype.newbyteorder("<") if v.dtype.byteorder == ">" else v.dtype)
    return out


def write_arrays(path: str | Path, arrays: Mapping[str, np.ndarray]) -> Path:
    """Writes named arrays to one safetensors file, atomically (temp file + rename)."""
    with atomic_path(path) as tmp:
        safetensors.numpy.save_file(_little_endian(arrays), str(tmp))
    return Path(path)


def save_arrays(arrays: Mapping[str, np.ndarray], directory: str | Path) -> str:
    """Writes `<directory>/<id>.safetensors` atomically (skipped if present); returns the id."""
    arrays = _little_endian(arrays)
    aid = arrays_id(arrays)
    path = Path(directory) / f"{aid}{SUFFIX}"
    if not path.exists():
        write_arrays(path, arrays)
    return aid


def read_arrays(path: str | Path, error: type[Exception] = EdgeError) -> dict[str, np.ndarray]:
    """Every array of a safetensors file; one `error` naming the file if it is missing,
    truncated or not safetensors (safetensors checks the header's length, JSON and offsets)."""
    path = Path(path)
    if not path.is_file():
        raise error(f"array file {path} is missing: the bundle is incomplete, rebuild it")
    try:
        return safetensors.numpy.load_file(str(path))
    except (SafetensorError, OSError, ValueError, TypeError) as exc:
        raise error(f"array file {path} is corrupt or not a safetensors file ({exc})") from None


def load_arrays(path: str | Path, verify: bool = True, error: type[Exception] = EdgeError) -> dict[str, np.ndarray]:
    """Reads a content-addressed array file; with `verify`, its content must hash to its file name."""
    path = Path(path)
    arrays = read_arrays(path, error)
    if verify and arrays_id(arrays) != path.name.removesuffix(SUFFIX):
        raise error(
            f"array file {path} is corrupt: its content hashes to {arrays_id(arrays)}, "
            f"expected {path.name.removesuffix(SUFFIX)}; rebuild the bundle"
        )
    return arrays


def nbytes(arrays: Mapping[str, np.ndarray]) -> int:
    """Total bytes of the arrays."""
    return int(sum(np.asarray(v).nbytes for v in arrays.values()))
