"""CIFAR-100-MTL: 20 five-way classification tasks, one per CIFAR-100 superclass.

The multi-task CIFAR-100 of routing networks (Rosenbaum et al., ICLR 2018) that
Raychaudhuri et al. (CVPR 2022) train ResNet-9 trees on: task t classifies the
images of superclass t among its 5 fine classes (index 0..4, the fine classes in
fine-label order); every other image is IGNORE for task t, so each image
trains exactly one task.

Files are the official python release (cifar-100-python.tar.gz, extracted):
`train`, `test` and `meta` pickles written by Python 2. CIFAR publishes no
validation split, so "val" and "test" both read `test` (as the MTL codebases do).
"""

from __future__ import annotations

import pickle
from functools import lru_cache
from pathlib import Path

import numpy as np

from trainer.config import DataConfig
from trainer.data.base import ArraySource, DatasetSpec, require_file, require_root
from trainer.errors import TrainerError
from trainer.tasks import IGNORE, Accuracy, TaskSpec, ignore_ce_loss, select_tasks

# The 20 coarse label names in label order (the official meta's b"coarse_label_names").
TASK_NAMES = (
    "aquatic_mammals",
    "fish",
    "flowers",
    "food_containers",
    "fruit_and_vegetables",
    "household_electrical_devices",
    "household_furniture",
    "insects",
    "large_carnivores",
    "large_man-made_outdoor_things",
    "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores",
    "medium_mammals",
    "non-insect_invertebrates",
    "people",
    "reptiles",
    "small_mammals",
    "trees",
    "vehicles_1",
    "vehicles_2",
)
# Superclass of each fine label 0..99 (fixed by the dataset). Hardcoded rather than read
# from the images so that a task's 0..4 labels are the same in every split.
FINE_TO_COARSE = np.array(
    [4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11, 6, 11, 5, 10, 7, 6, 13, 15, 3, 15]
    + [0, 11, 1, 10, 12, 14, 16, 9, 11, 5, 5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17]
    + [10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13, 16, 19, 2, 4, 6, 19, 5, 5, 8, 19]
    + [18, 1, 2, 15, 6, 0, 17, 8, 14, 13]
)
# Index of each fine label among the 5 fine labels of its superclass, sorted by id.
FINE_TO_INDEX = np.array([int((FINE_TO_COARSE[:f] == FINE_TO_COARSE[f]).sum()) for f in range(100)])

TASKS: dict[str, TaskSpec] = {
    name: TaskSpec(name, "classification", 5, ignore_ce_loss, Accuracy) for name in TASK_NAMES
}
FOLDER = "cifar-100-python"
SPLIT_FILES = {"train": "train", "val": "test", "test": "test"}


# -- restricted unpickling ------------------------------------------------------
# Unpickling runs whatever callables a pickle names, so a tampered download could
# execute code. The official files name exactly three globals, to rebuild the
# uint8 ndarray under b"data": numpy.core.multiarray._reconstruct, numpy.ndarray and
# numpy.dtype. Those (and _reconstruct's numpy >= 2 module name, for files
# re-saved under Python 3) are the only globals resolved; every other is refused.
_RECONSTRUCT = np.empty(0).__reduce__()[0]  # the function numpy itself pickles arrays with
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the numpy globals an ndarray needs (see _ALLOWED_GLOBALS)."""

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[(module, name)]
        raise pickle.UnpicklingError(f"refused global {module}.{name} (only numpy array globals are allowed)")


def restricted_load(path: Path):
    """The pickle at `path`, read with Python 2 strings as bytes (the official encoding)."""
    with path.open("rb") as f:
        return RestrictedUnpickler(f, encoding="bytes").load()


def _read_dict(path: Path) -> dict:
    """A pickled dict with str keys (the official files' bytes keys decoded), or one error."""
    try:
        obj = restricted_load(path)
    except Exception as exc:  # untrusted input: any parse failure is a bad file
        raise TrainerError(f"cifar100: {path} is not a readable CIFAR-100 pickle: {exc}") from None
    if not isinstance(obj, dict):
        raise TrainerError(f"cifar100: {path} holds a {type(obj).__name__}, expected a dict")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


# -- decoding ----------------------------------------------------------------------
def _labels(d: dict, key: str, n: int, high: int, path: Path) -> np.ndarray:
    if key not in d:
        raise TrainerError(f"cifar100: {path} lacks {key!r}; found keys {sorted(map(str, d))}")
    try:
        labels = np.asarray(d[key])
    except (TypeError, ValueError):  # ragged or odd objects
        labels = np.zeros(0, object)
    ok = labels.shape == (n,) and np.issubdtype(labels.dtype, np.integer)
    if not ok or (n and not 0 <= labels.min() <= labels.max() < high):
        raise TrainerError(f"cifar100: {path} {key!r} must be {n} integers in 0..{high - 1}")
    return labels.astype(np.int64)


def _images(d: dict, path: Path) -> np.ndarray:
    """N x 3072 rows (R, G and B planes of 32 x 32, row-major) as (N, 3, 32, 32)."""
    if "data" not in d:
        raise TrainerError(f"cifar100: {path} lacks 'data'; found keys {sorted(map(str, d))}")
    data = d["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        found = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise TrainerError(f"cifar100: {path} 'data' must be a uint8 N x 3072 array, found {found}")
    if not len(data):
        raise TrainerError(f"cifar100: {path} holds no images")
    return np.ascontiguousarray(data.reshape(-1, 3, 32, 32))


@lru_cache(maxsize=2)  # train + test: "val" and "test" share a file, stages reopen splits
def _decode(path: Path, stamp: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 3, 32, 32), fine labels (N,)) of one file, read-only (shared by the cache)."""
    d = _read_dict(path)
    images = _images(d, path)
    fine = _labels(d, "fine_labels", len(images), 100, path)
    coarse = _labels(d, "coarse_labels", len(images), 20, path)
    if not np.array_equal(FINE_TO_COARSE[fine], coarse):
        raise TrainerError(f"cifar100: {path} pairs fine and coarse labels unlike CIFAR-100")
    for a in (images, fine):
        a.setflags(write=False)
    return images, fine


def read_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images, fine labels) of one official file, decoded once per version of it."""
    st = path.stat()
    return _decode(path.resolve(), (st.st_mtime_ns, st.st_size))


def task_labels(fine: np.ndarray, task: int) -> np.ndarray:
    """uint8 (N,): the 0..4 index of each image of superclass `task`, IGNORE elsewhere."""
    return np.where(FINE_TO_COARSE[fine] == task, FINE_TO_INDEX[fine], IGNORE).astype(np.uint8)


def check_meta(path: Path) -> None:
    """The meta file (when present) must name the superclasses as TASK_NAMES does."""
    names = _read_dict(path).get("coarse_label_names")
    try:
        names = tuple(n.decode() if isinstance(n, bytes) else n for n in names)
    except (TypeError, UnicodeDecodeError):
        raise TrainerError(f"cifar100: {path} has no readable 'coarse_label_names'") from None
    if names != TASK_NAMES:
        raise TrainerError(f"cifar100: {path} names the superclasses {list(names)}, expected {list(TASK_NAMES)}")


# -- the dataset ---------------------------------------------------------------------
def folder(root: Path) -> Path:
    """root/cifar-100-python (the archive's folder), or root itself when it holds the files."""
    nested = root / FOLDER
    if nested.is_dir() or not any((root / f).is_file() for f in ("train", "test", "meta")):
        return nested
    return root


def open_split(cfg: DataConfig, split: str) -> ArraySource:
    base = folder(require_root(cfg, SPEC))
    tasks = select_tasks(cfg.tasks, TASKS, SPEC.name)
    if (base / "meta").is_file():
        check_meta(base / "meta")
    path = require_file(base / SPLIT_FILES[split], SPEC, f"file of the {split} split")
    images, fine = read_file(path)
    return ArraySource({"image": images, **{t.name: task_labels(fine, TASK_NAMES.index(t.name)) for t in tasks}})


# 32 x 32 samples are the training size; random crops of the 4-pixel-padded image
# and flips, as cifar10-fast trains ResNet-9.
SPEC = DatasetSpec(
    "cifar100",
    TASKS,
    open_split,
    augment=True,
    native_size=True,
    scale_range=(1.0, 1.0),
    pad=4,
    obtain="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz, extracted",
)
