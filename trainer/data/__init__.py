"""Datasets: a registry of what `data.dataset` can name, and splits as batches.

- scenes    the embedded procedural scenes (rendered, cached; no files needed)
- nyud      NYUD-MT as packaged for multi-task learning (data.root)
- pascal    PASCAL-MT (PASCAL-Context with parts, distilled normals/saliency)
- cifar100  CIFAR-100-MTL: 20 five-way tasks, one per superclass

Each entry (trainer/data/base.py DatasetSpec) names its tasks with their losses
and metrics, opens a split from disk, and says how training augments it.
"""

from __future__ import annotations

from trainer.config import DataConfig
from trainer.data import cifar, nyud, pascal, procedural
from trainer.data.base import SPLITS, DatasetSpec
from trainer.data.procedural import load_split
from trainer.data.scenes import CLASSES, render_scenes
from trainer.data.split import MEAN, STD, Split
from trainer.data.transforms import Augment
from trainer.errors import TrainerError
from trainer.tasks import TaskSpec, select_tasks

DATASETS: dict[str, DatasetSpec] = {s.name: s for s in (procedural.SPEC, nyud.SPEC, pascal.SPEC, cifar.SPEC)}


def get_dataset(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise TrainerError(f"data.dataset: unknown dataset {name!r}; known datasets are {sorted(DATASETS)}")
    return DATASETS[name]


def get_tasks(names, dataset: str = "scenes") -> list[TaskSpec]:
    """The TaskSpecs of `names` in `dataset` (its losses, metrics, output channels)."""
    return select_tasks(names, get_dataset(dataset).tasks, dataset)


def open_split(cfg: DataConfig, split: str, train: bool = False) -> Split:
    """One split as batches: augmented when `train` (and data.augment allows), its
    evaluation frames at the deployed size (data.input_hw) unless the dataset's
    samples already come at the training size (the scenes)."""
    if split not in SPLITS:
        raise TrainerError(f"split must be one of {SPLITS}, found {split!r}")
    spec = get_dataset(cfg.dataset)
    tasks = get_tasks(cfg.tasks, cfg.dataset)
    eval_hw = None if spec.native_size else cfg.input_hw
    augment = None
    if train and (spec.augment if cfg.augment is None else cfg.augment):
        scale = tuple(cfg.scale_range) if cfg.scale_range else spec.scale_range
        pad = spec.pad if cfg.pad is None else cfg.pad
        augment = Augment(cfg.size, scale, pad, cfg.flip, eval_hw)
    return Split(spec.open(cfg, split), tasks, augment, eval_hw, cfg.workers)


__all__ = [
    "CLASSES",
    "DATASETS",
    "MEAN",
    "SPLITS",
    "STD",
    "Split",
    "get_dataset",
    "get_tasks",
    "load_split",
    "open_split",
    "render_scenes",
]
