"""The embedded procedural scenes as a dataset: its tasks and its on-disk cache."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from trainer.config import DataConfig
from trainer.data.base import SPLITS, ArraySource, DatasetSpec
from trainer.data.scenes import CLASSES, GENERATOR_VERSION, render_scenes
from trainer.tasks import (
    RMSE,
    BinaryScore,
    MeanAngle,
    MeanIoU,
    TaskSpec,
    ce_loss,
    cosine_normals_loss,
    fixed_bce,
    l1_depth_loss,
)

TASKS: dict[str, TaskSpec] = {
    "semseg": TaskSpec("semseg", "segmentation", len(CLASSES), ce_loss, lambda: MeanIoU(len(CLASSES))),
    "depth": TaskSpec("depth", "regression", 1, l1_depth_loss, RMSE),
    "normals": TaskSpec("normals", "normals", 3, cosine_normals_loss, MeanAngle),
    # Edges are ~14% of pixels: pos_weight balances the classes roughly.
    "edges": TaskSpec("edges", "binary", 1, fixed_bce(4.0), lambda: BinaryScore("F1")),
    "saliency": TaskSpec("saliency", "binary", 1, fixed_bce(1.0), lambda: BinaryScore("IoU")),
}
_CHUNK = 512  # scenes rendered per call: bounds peak memory at ~100 MB for 48x48


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "edgemtl" / "scenes"


def split_size(cfg: DataConfig, split: str) -> int:
    return {"train": cfg.n_train, "val": cfg.n_val, "test": cfg.n_test}[split]


def _render(cfg: DataConfig, split: str) -> dict[str, np.ndarray]:
    # Splits are disjoint by seed: each (seed, split, chunk) gets its own stream.
    n = split_size(cfg, split)
    chunks = []
    for c, start in enumerate(range(0, n, _CHUNK)):
        seq = np.random.SeedSequence([cfg.seed, SPLITS.index(split), c])
        chunk_seed = int(seq.generate_state(1)[0])
        chunks.append(render_scenes(min(_CHUNK, n - start), cfg.size, chunk_seed, cfg.max_objects))
    return {k: np.concatenate([ch[k] for ch in chunks]) for k in chunks[0]}


def cache_key(cfg: DataConfig, split: str) -> str:
    ident = {
        "generator": GENERATOR_VERSION,
        "split": split,
        "n": split_size(cfg, split),
        "size": cfg.size,
        "seed": cfg.seed,
        "max_objects": cfg.max_objects,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def load_split(cfg: DataConfig, split: str) -> dict[str, np.ndarray]:
    """Returns all arrays of one split, rendering and caching them on a miss."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    cache = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
    path = cache / f"scenes-{split}-{cache_key(cfg, split)}.npz"
    if path.is_file():
        try:
            with np.load(path) as f:
                return {k: f[k] for k in f.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile):
            pass  # corrupt or truncated cache file: render again and replace it
    data = _render(cfg, split)
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache, suffix=".npz.tmp")
    with os.fdopen(fd, "wb") as f:
        np.savez(f, **data)
    os.replace(tmp, path)  # atomic: readers never see a half-written file
    return data


def open_split(cfg: DataConfig, split: str) -> ArraySource:
    return ArraySource(load_split(cfg, split))


# Rendered at the training size, every pixel labelled: nothing to augment.
SPEC = DatasetSpec("scenes", TASKS, open_split, augment=False, native_size=True, obtain="rendered on first use, cached")
