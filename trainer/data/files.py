"""Reading untrusted dataset files: each helper decodes one file or raises one
TrainerError naming it, what was expected and what was found. Pillow decodes
images; it is imported on first use, so the procedural scenes need neither it
nor scipy."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trainer.data.base import DatasetSpec, read_list, require_file
from trainer.errors import TrainerError
from trainer.tasks import TaskSpec


def bad_file(spec: DatasetSpec, what: str, path: Path, expected: str, found: str) -> TrainerError:
    """The one error a malformed file raises: which file, what it should hold, what it holds."""
    found = " ".join(str(found).split())[:200]  # CLIs print errors on one line
    return TrainerError(f"{spec.name}: {what} {path} is malformed: expected {expected}, found {found}")


def require_dir(path: Path, spec: DatasetSpec, what: str) -> Path:
    if not path.is_dir():
        raise TrainerError(f"{spec.name}: {what} folder {path} is missing ({spec.obtain})")
    return path


def split_ids(root: Path, rel: str, spec: DatasetSpec) -> list[str]:
    """The ids of a split file, refusing any that could name a file outside root."""
    path = root / rel
    ids = read_list(path, spec)
    for sid in ids:
        if "/" in sid or "\\" in sid or "\0" in sid or ".." in sid:
            raise TrainerError(
                f"{spec.name}: split file {path} lists {sid!r}, which is not a plain file name "
                "(ids may not contain '/', '\\' or '..'); refusing to read outside data.root"
            )
    return ids


def check_tasks(tasks, known: dict[str, TaskSpec], spec: DatasetSpec) -> tuple[str, ...]:
    unknown = [t for t in tasks if t not in known]
    if unknown:
        raise TrainerError(f"unknown task(s) {unknown} for dataset {spec.name!r}; its tasks are {sorted(known)}")
    return tuple(tasks)


def pillow(spec: DatasetSpec):
    try:
        from PIL import Image
    except ImportError as e:
        raise TrainerError(f"dataset {spec.name!r} decodes its images with Pillow: pip install pillow") from e
    return Image


def read_rgb(path: Path, spec: DatasetSpec) -> np.ndarray:
    """An image file as uint8 (3, H, W) RGB (any format Pillow decodes, converted as the codebases do)."""
    Image = pillow(spec)
    require_file(path, spec, "image")
    try:
        with Image.open(path) as img:
            rgb = np.asarray(img.convert("RGB"))
    except Exception as e:  # untrusted bytes: any decoder failure is one malformed-file error
        raise bad_file(spec, "image", path, "an RGB image Pillow can decode", f"{type(e).__name__}: {e}") from e
    return np.ascontiguousarray(rgb.transpose(2, 0, 1))


def read_png(path: Path, spec: DatasetSpec, what: str, modes: tuple[str, ...], convert: str | None = None):
    """A lossless PNG as its stored values (labels must not pass through a lossy codec). Pillow
    modes outside `modes` are converted to mode `convert` when one is given, otherwise refused."""
    Image = pillow(spec)
    require_file(path, spec, what)
    arr = None
    try:
        with Image.open(path) as img:
            fmt, mode = img.format, img.mode
            if fmt == "PNG" and mode in modes:
                arr = np.array(img)  # a writable copy: torch warns on read-only arrays
            elif fmt == "PNG" and convert:
                arr = np.array(img.convert(convert))
    except Exception as e:  # untrusted bytes: any decoder failure is one malformed-file error
        raise bad_file(spec, what, path, "a PNG image", f"{type(e).__name__}: {e}") from e
    if fmt != "PNG":
        raise bad_file(spec, what, path, "a PNG image", f"a {fmt} image")
    if arr is None:
        raise bad_file(spec, what, path, f"a PNG of mode {' or '.join(modes)}", f"mode {mode}")
    return arr


def read_npy(path: Path, spec: DatasetSpec, what: str) -> np.ndarray:
    """A .npy array, never unpickling (allow_pickle=False) and never a .npz archive."""
    require_file(path, spec, what)
    try:
        with open(path, "rb") as f:
            return np.lib.format.read_array(f, allow_pickle=False)
    except Exception as e:
        raise bad_file(spec, what, path, "a .npy array", f"{type(e).__name__}: {e}") from e


def check_shape(a: np.ndarray, shape: tuple[int, ...], kinds: str, spec: DatasetSpec, what: str, path: Path):
    """a as an array of `shape` (the image's size) with a dtype of one of `kinds` (numpy kind codes)."""
    if a.shape != tuple(shape) or a.dtype.kind not in kinds:
        names = {"b": "bool", "i": "int", "u": "uint", "f": "float"}
        dtypes = "/".join(names[k] for k in kinds)
        expected = f"{dtypes} values of shape {tuple(shape)} like its image"
        raise bad_file(spec, what, path, expected, f"{a.dtype} values of shape {a.shape}")
    return a


def unit_normals(n: np.ndarray) -> np.ndarray:
    """(3, H, W) float32 unit vectors; zero and non-finite vectors become zero (invalid)."""
    n = n.astype(np.float32)
    n[:, ~np.isfinite(n).all(0)] = 0
    norm = np.linalg.norm(n, axis=0)
    return np.where(norm > 0, n / np.maximum(norm, 1e-12), 0).astype(np.float32)


def planar(a: np.ndarray) -> np.ndarray:
    """(H, W, 1) arrays as (H, W); others unchanged (check_shape judges them)."""
    return a[..., 0] if a.ndim == 3 and a.shape[-1] == 1 else a
