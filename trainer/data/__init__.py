"""Datasets: the embedded procedural scenes, cached on disk by content."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from trainer.config import DataConfig
from trainer.data.scenes import CLASSES, GENERATOR_VERSION, render_scenes

SPLITS = ("train", "val", "test")
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


__all__ = ["CLASSES", "SPLITS", "load_split", "render_scenes", "default_cache_dir"]
