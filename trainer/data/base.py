"""What every dataset provides: a record in the registry and one Source per split.

A Source hands out raw samples by index: "image" as uint8 (3, H, W) RGB and one
array per task under the task's name ((H, W) label/depth maps, (3, H, W)
normals, a scalar class for classification). Sizes may differ between samples
(the public benchmarks' images do); trainer/data/split.py makes batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from trainer.errors import TrainerError
from trainer.tasks import TaskSpec

SPLITS = ("train", "val", "test")


class Source(Protocol):
    def __len__(self) -> int: ...

    def item(self, i: int) -> dict[str, np.ndarray]: ...


class ArraySource:
    """Samples held as stacked arrays in memory (the procedural scenes, CIFAR)."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        self.arrays = arrays

    def __len__(self) -> int:
        return len(self.arrays["image"])

    def item(self, i: int) -> dict[str, np.ndarray]:
        return {k: v[i] for k, v in self.arrays.items()}

    def take(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """A whole batch in one indexing operation (no per-sample work)."""
        return {k: v[idx] for k, v in self.arrays.items()}


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset: its tasks, how to open a split, and its augmentation defaults
    (scale_range is relative to the deployed frame size; pad is added on every side
    before the random crop)."""

    name: str
    tasks: dict[str, TaskSpec]
    open: Callable  # (DataConfig, split) -> Source
    augment: bool = True
    native_size: bool = False  # samples come at the training size (no resize for evaluation)
    scale_range: tuple[float, float] = (1.0, 1.0)
    pad: int = 0
    obtain: str = ""  # where the archives are usually obtained (named in missing-file errors)


def require_root(cfg, spec: DatasetSpec) -> Path:
    """data.root as a folder that exists, or one error that says what to set."""
    if not cfg.root:
        raise TrainerError(
            f"dataset {spec.name!r} reads files from data.root; set it, e.g. --set data.root=/data/{spec.name} "
            f"({spec.obtain})"
        )
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise TrainerError(f"data.root {root} is not a folder; expected the {spec.name} layout there ({spec.obtain})")
    return root


def require_file(path: Path, spec: DatasetSpec, what: str) -> Path:
    if not path.is_file():
        raise TrainerError(f"{spec.name}: {what} {path} is missing ({spec.obtain})")
    return path


def read_list(path: Path, spec: DatasetSpec) -> list[str]:
    """Sample ids, one per line, of a split file."""
    ids = [line.strip() for line in require_file(path, spec, "split file").read_text().splitlines()]
    ids = [i for i in ids if i]
    if not ids:
        raise TrainerError(f"{spec.name}: split file {path} lists no samples")
    return ids
