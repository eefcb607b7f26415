"""NYUD-MT: NYU Depth v2 as packaged for multi-task learning (semseg, depth, normals, edges).

Layout under data.root, as Multi-Task-Learning-PyTorch (SimonVandenhende/Multi-Task-Learning-PyTorch,
data/nyud.py, derived from facebookresearch/astmt) reads its NYUD_MT.tgz:

    images/<id>.jpg            RGB, 480 x 640
    segmentation/<id>.png      40 classes, 0 = unlabelled
    depth/<id>.npy             (H, W) float metres, 0 = no reading
    normals/<id>.npy           (H, W, 3) float in [-1, 1], zero vector = no normal
    edge/<id>.npy              (H, W) in {0, 1}
    gt_sets/train.txt, gt_sets/val.txt    795 / 654 ids

Decoding, as that codebase does it (its AddIgnoreRegions turns our "invalid" values into its 255):
segmentation 0 -> IGNORE and 1..40 -> 0..39 ("we ignore the background class as other related
works"); depth as stored, with 0 (and negative or non-finite values) invalid; normals transposed to
(3, H, W) and renormalised to unit length, zero vectors staying zero (invalid); edges > 0.5.
The benchmark publishes two lists, so "val" and "test" both read gt_sets/val.txt (papers report
val numbers). The older ASTMT release of an archive with the same name stores depth and
segmentation as .mat, normals as .jpg and edges as .png; that layout is not read here.

Files are untrusted: ids must be plain names (no "/", "\\" or ".."), so nothing outside
data.root is opened, and a file that does not decode as expected raises one TrainerError
that names it (trainer/data/files.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trainer.config import DataConfig
from trainer.data.base import DatasetSpec, require_root
from trainer.data.files import (
    bad_file,
    check_shape,
    check_tasks,
    planar,
    read_npy,
    read_png,
    read_rgb,
    require_dir,
    split_ids,
    unit_normals,
)
from trainer.errors import TrainerError
from trainer.tasks import (
    IGNORE,
    RMSE,
    MaxF,
    MeanAngle,
    MeanIoU,
    TaskSpec,
    balanced_bce,
    ignore_ce_loss,
    masked_depth_loss,
    normals_l1_loss,
)

N_CLASSES = 40
TASKS: dict[str, TaskSpec] = {
    "semseg": TaskSpec("semseg", "segmentation", N_CLASSES, ignore_ce_loss, lambda: MeanIoU(N_CLASSES)),
    "depth": TaskSpec("depth", "regression", 1, masked_depth_loss, RMSE),
    "normals": TaskSpec("normals", "normals", 3, normals_l1_loss, MeanAngle),
    # 0.95: the fixed positive weight of the MTL codebases' edge loss (their edge_w).
    "edges": TaskSpec("edges", "binary", 1, balanced_bce(0.95), lambda: MaxF("odsF", 1.0)),
}
FOLDERS = {"image": "images", "semseg": "segmentation", "depth": "depth", "normals": "normals", "edges": "edge"}
SUFFIX = {"image": ".jpg", "semseg": ".png", "depth": ".npy", "normals": ".npy", "edges": ".npy"}
SPLIT_FILES = {"train": "gt_sets/train.txt", "val": "gt_sets/val.txt", "test": "gt_sets/val.txt"}


# -- NYUD-MT --------------------------------------------------------------------------------------
def _semseg(path: Path, hw) -> np.ndarray:
    seg = check_shape(
        read_png(path, SPEC, "segmentation", ("L", "P", "I", "I;16")), hw, "iu", SPEC, "segmentation", path
    )
    if seg.min() < 0 or seg.max() > N_CLASSES:
        found = f"values {seg.min()}..{seg.max()}"
        raise bad_file(SPEC, "segmentation", path, f"class ids 0..{N_CLASSES} (0 = unlabelled)", found)
    return np.where(seg == 0, IGNORE, seg.astype(np.int64) - 1).astype(np.uint8)


def _depth(path: Path, hw) -> np.ndarray:
    depth = check_shape(planar(read_npy(path, SPEC, "depth map")), hw, "f", SPEC, "depth map", path)
    depth = depth.astype(np.float32)
    depth[~np.isfinite(depth) | (depth < 0)] = 0  # no reading
    return depth


def _normals(path: Path, hw) -> np.ndarray:
    n = check_shape(read_npy(path, SPEC, "normals"), (*hw, 3), "f", SPEC, "normals", path)
    return unit_normals(n.transpose(2, 0, 1))


def _edges(path: Path, hw) -> np.ndarray:
    edges = check_shape(planar(read_npy(path, SPEC, "edge map")), hw, "biuf", SPEC, "edge map", path)
    return (edges > 0.5).astype(np.uint8)


_LOAD = {"semseg": _semseg, "depth": _depth, "normals": _normals, "edges": _edges}


class NYUDSource:
    """One split, read lazily: item(i) decodes the image and the selected tasks' files of id i."""

    def __init__(self, root: Path, ids: list[str], tasks: tuple[str, ...]):
        self.root, self.ids, self.tasks = root, ids, tasks

    def __len__(self) -> int:
        return len(self.ids)

    def path(self, key: str, sid: str) -> Path:
        return self.root / FOLDERS[key] / f"{sid}{SUFFIX[key]}"

    def item(self, i: int) -> dict[str, np.ndarray]:
        sid = self.ids[i]
        image = read_rgb(self.path("image", sid), SPEC)
        hw = image.shape[1:]
        return {"image": image, **{t: _LOAD[t](self.path(t, sid), hw) for t in self.tasks}}


def open_split(cfg: DataConfig, split: str) -> NYUDSource:
    """The split's ids from gt_sets/ ("test" reads val.txt: only train and val are published);
    the folders of the image and of each selected task must exist."""
    if split not in SPLIT_FILES:
        raise TrainerError(f"split must be one of {tuple(SPLIT_FILES)}, found {split!r}")
    tasks = check_tasks(cfg.tasks, TASKS, SPEC)
    root = require_root(cfg, SPEC)
    ids = split_ids(root, SPLIT_FILES[split], SPEC)
    for key in ("image", *tasks):
        require_dir(root / FOLDERS[key], SPEC, key)
    return NYUDSource(root, ids, tasks)


# The MTL codebase trains NYUD at scales 1, 1.2 and 1.5 of the full frame.
SPEC = DatasetSpec(
    "nyud",
    TASKS,
    open_split,
    augment=True,
    scale_range=(1.0, 1.5),
    obtain="the NYUD-MT archive NYUD_MT.tgz distributed with ASTMT / Multi-Task-Learning-PyTorch "
    "(github.com/SimonVandenhende/Multi-Task-Learning-PyTorch); data.root is its unpacked NYUD_MT folder",
)
