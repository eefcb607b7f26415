"""PASCAL-MT: PASCAL-Context with human parts and distilled normals and saliency (five tasks).

Layout under data.root, as facebookresearch/astmt (fblib/dataloaders/pascal_context.py) and its
port SimonVandenhende/Multi-Task-Learning-PyTorch (data/pascal_context.py; same logic) read
PASCAL_MT.tgz:

    JPEGImages/<id>.jpg                  RGB
    semseg/VOC12/<id>.png                21 classes (0 background .. 20), 255 = unlabelled
    semseg/pascal-context/<id>.png       the same encoding, for ids VOC12 does not have
    human_parts/<id>.mat                 PASCAL-Part annotation (struct "anno")
    normals_distill/<id>.png             RGB, n = 2 v / 255 - 1
    sal_distill/<id>.png                 grey, salient where v / 255 > 0.5
    pascal-context/trainval/<id>.mat     PASCAL-Context label map (key "LabelMap", 459 classes)
    ImageSets/Context/train.txt, val.txt 4998 / 5105 ids

Decoding, as the codebase does it (references are to its PASCALContext class and its
custom_transforms.AddIgnoreRegions; its 255 ignore is our IGNORE, its zero normals our zero vector):

- semseg: the codebase's _get_semseg_fname takes semseg/VOC12/<id>.png when that file exists and
  semseg/pascal-context/<id>.png otherwise, per id; so does this reader.
- human_parts: anno.objects is a struct array (class, class_ind, mask, parts), parts a struct
  array (part_name, mask), read by position as the codebase does (anno[0][0][1][0]). An image has
  parts when an object of class_ind 15 (person) has a non-empty instance mask (its
  ImageSets/Parts/<split>.txt cache, built with area_thres=0; we decide from the .mat directly and
  write nothing). Part masks of every person that has parts are painted in file order with the
  6-part grouping HUMAN_PART[6] (the codebase overrides pascal_part.json's entry "15" with it):
  1 head (hair, head, ears, eyebrows, eyes, mouth, nose), 2 torso (torso, neck), 3 upper arms,
  4 lower arms and hands, 5 upper legs, 6 lower legs and feet; other pixels 0 (background).
  Images without a person with parts get a zero target, which AddIgnoreRegions turns into all-255
  ("images without human part annotations"), so they are all IGNORE here and the part loss and
  mIoU skip them. The codebase applies that rule after augmentation, to the resized frame; here it
  applies to the whole image, so a crop of an annotated image keeps its background labels.
- normals: 2 v / 255 - 1, kept only on pixels whose PASCAL-Context class is also an NYUD class
  (plus tvmonitor): the codebase's normals_valid_classes, from its db_info nyu_classes.json and
  context_classes.json, listed below as NORMALS_VALID_LABELS. Other pixels are zero (invalid), and
  valid vectors are renormalised (its FixedResize renormalises every frame). So normals, like
  edges, also read the label map.
- saliency: v / 255 > 0.5 on the grey PNG (an RGB one is converted to grey first).
- edges: thin(|Laplacian(LabelMap)| > 0): cv2.Laplacian(label, CV_64F) (3x3 kernel
  [[0,1,0],[1,-4,1],[0,1,0]], reflect-101 border) then skimage.morphology.thin, both reimplemented
  here with numpy (thin: Guo-Hall two-subiteration thinning with skimage's lookup tables).

The benchmark publishes two lists, so "val" and "test" both read ImageSets/Context/val.txt.
Files are untrusted, read as trainer/data/nyud.py describes (whose file helpers this uses);
scipy reads the .mat files and is imported on first use.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trainer.config import DataConfig
from trainer.data.base import DatasetSpec, require_file, require_root
from trainer.data.files import (
    bad_file,
    check_shape,
    check_tasks,
    read_png,
    read_rgb,
    require_dir,
    split_ids,
    unit_normals,
)
from trainer.errors import TrainerError
from trainer.tasks import (
    IGNORE,
    MaxF,
    MeanAngle,
    MeanIoU,
    TaskSpec,
    balanced_bce,
    ignore_ce_loss,
    normals_l1_loss,
)

N_CLASSES, N_PARTS = 21, 7  # 20 VOC classes + background; 6 part groups + background
TASKS: dict[str, TaskSpec] = {
    "semseg": TaskSpec("semseg", "segmentation", N_CLASSES, ignore_ce_loss, lambda: MeanIoU(N_CLASSES)),
    "human_parts": TaskSpec("human_parts", "segmentation", N_PARTS, ignore_ce_loss, lambda: MeanIoU(N_PARTS)),
    # Saliency: positives weighted by the batch's fraction of negatives, scored by maxF (beta^2 = 0.3).
    "saliency": TaskSpec("saliency", "binary", 1, balanced_bce(None), lambda: MaxF("maxF", 0.3)),
    "normals": TaskSpec("normals", "normals", 3, normals_l1_loss, MeanAngle),
    "edges": TaskSpec("edges", "binary", 1, balanced_bce(0.95), lambda: MaxF("odsF", 1.0)),
}
SPLIT_FILES = {"train": "ImageSets/Context/train.txt", "val": "ImageSets/Context/val.txt"}
SPLIT_FILES["test"] = SPLIT_FILES["val"]
FOLDERS = {
    "image": "JPEGImages",
    "human_parts": "human_parts",
    "normals": "normals_distill",
    "saliency": "sal_distill",
    "labels": "pascal-context/trainval",
}
SEMSEG_FOLDERS = ("semseg/VOC12", "semseg/pascal-context")  # per id, the first that has the file
# The FOLDERS each task reads besides the image (semseg: one of SEMSEG_FOLDERS).
READS = {
    "human_parts": ("human_parts",),
    "normals": ("normals", "labels"),
    "saliency": ("saliency",),
    "edges": ("labels",),
}

PERSON = 15  # class_ind of "person" in PASCAL-Part
# HUMAN_PART[6] of the codebase: PASCAL-Part person part name -> part group.
HUMAN_PARTS = {
    **dict.fromkeys(("hair", "head", "lear", "rear", "lebrow", "rebrow", "leye", "reye", "mouth", "nose"), 1),
    **dict.fromkeys(("torso", "neck"), 2),
    **dict.fromkeys(("luarm", "ruarm"), 3),
    **dict.fromkeys(("llarm", "rlarm", "lhand", "rhand"), 4),
    **dict.fromkeys(("luleg", "ruleg"), 5),
    **dict.fromkeys(("llleg", "rlleg", "lfoot", "rfoot"), 6),
}
# PASCAL-Context label ids whose class name is also an NYUD class (nyu_classes.json keys found in
# context_classes.json, "unknown" excluded) plus tvmonitor (427): where distilled normals are valid.
# fmt: off
NORMALS_VALID_LABELS = np.array(
    [3, 4, 6, 9, 10, 11, 13, 15, 17, 18, 22, 23, 29, 30, 33, 34, 36, 37, 38, 39, 41, 43, 46, 49, 50, 51, 53, 55,
     56, 59, 61, 62, 65, 66, 68, 69, 72, 73, 78, 83, 84, 85, 87, 88, 95, 96, 101, 104, 105, 107, 111, 113, 115,
     122, 124, 135, 141, 142, 143, 146, 150, 154, 157, 158, 159, 165, 172, 174, 181, 183, 184, 191, 193, 195, 197,
     199, 202, 213, 215, 216, 219, 220, 223, 225, 228, 230, 232, 233, 238, 239, 242, 243, 246, 250, 251, 252, 255,
     260, 261, 263, 269, 272, 273, 275, 281, 283, 284, 285, 286, 287, 288, 290, 291, 292, 293, 295, 304, 307, 309,
     310, 314, 315, 319, 323, 329, 330, 331, 336, 342, 345, 349, 350, 351, 352, 355, 357, 368, 370, 371, 374, 379,
     380, 383, 384, 397, 401, 403, 405, 407, 408, 411, 412, 413, 414, 417, 419, 421, 423, 427, 429, 430, 432, 440,
     441, 442, 443, 444, 446, 454, 457]
)
# fmt: on


# -- edges: cv2.Laplacian + skimage.morphology.thin in numpy ------------------------------------
def laplacian(labels: np.ndarray) -> np.ndarray:
    """cv2.Laplacian(labels, CV_64F) with ksize=1: kernel [[0,1,0],[1,-4,1],[0,1,0]] over a
    BORDER_REFLECT_101 border (numpy's "reflect")."""
    p = np.pad(labels.astype(np.float64), 1, mode="reflect")
    return p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:] - 4 * p[1:-1, 1:-1]


def _thin_luts() -> tuple[np.ndarray, np.ndarray]:
    """Deletion tables of the two subiterations (Guo & Hall 1989), as skimage's
    _generate_thin_luts builds them: bit k of a code is neighbour k, counter-clockwise from east."""
    b = ((np.arange(256)[:, None] >> np.arange(8)) & 1).astype(bool)
    g1 = sum(~b[:, i] & (b[:, i + 1] | b[:, (i + 2) % 8]) for i in (0, 2, 4, 6)) == 1
    n1 = sum(b[:, k] | b[:, k - 1] for k in (1, 3, 5, 7))
    n2 = sum(b[:, k] | b[:, (k + 1) % 8] for k in (1, 3, 5, 7))
    g12 = g1 & np.isin(np.minimum(n1, n2), (2, 3))
    g3 = ~((b[:, 1] | b[:, 2] | ~b[:, 7]) & b[:, 0])
    g3p = ~((b[:, 5] | b[:, 6] | ~b[:, 3]) & b[:, 4])
    return g12 & g3, g12 & g3p


THIN_LUTS = _thin_luts()
# (dy, dx, bit) of the 8 neighbours: skimage correlates with [[8, 4, 2], [16, 0, 1], [32, 64, 128]].
_NEIGHBOURS = ((0, 1, 1), (-1, 1, 2), (-1, 0, 4), (-1, -1, 8), (0, -1, 16), (1, -1, 32), (1, 0, 64), (1, 1, 128))


def _codes(skel: np.ndarray) -> np.ndarray:
    """Each pixel's 8-neighbourhood as a byte, pixels outside the image 0 (ndi.correlate, mode="constant")."""
    p = np.pad(skel, 1)
    h, w = skel.shape
    codes = np.zeros((h, w), np.uint8)
    for dy, dx, bit in _NEIGHBOURS:
        codes |= p[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] * np.uint8(bit)
    return codes


def thin(mask: np.ndarray) -> np.ndarray:
    """skimage.morphology.thin: both subiterations repeated until a pass deletes nothing."""
    skel = mask.astype(np.uint8)
    while True:
        before = int(skel.sum())
        for lut in THIN_LUTS:
            skel[lut[_codes(skel)]] = 0
        if int(skel.sum()) == before:
            return skel.astype(bool)


def label_edges(labels: np.ndarray) -> np.ndarray:
    """The codebase's edge target: thin(|Laplacian(LabelMap)| > 0) as uint8 {0, 1}."""
    return thin(laplacian(labels) != 0).astype(np.uint8)


# -- .mat files --------------------------------------------------------------------------------
def read_mat(path: Path, what: str, key: str) -> np.ndarray:
    """Variable `key` of a MATLAB (v5) file, read by scipy (no code is executed)."""
    try:
        from scipy.io import loadmat
    except ImportError as e:
        raise TrainerError("dataset 'pascal' reads its .mat annotations with scipy: pip install scipy") from e
    require_file(path, SPEC, what)
    try:
        mat = loadmat(path)
    except Exception as e:  # untrusted bytes: any reader failure is one malformed-file error
        raise bad_file(SPEC, what, path, "a MATLAB v5 .mat file", f"{type(e).__name__}: {e}") from e
    if key not in mat:
        found = f"variables {sorted(k for k in mat if not k.startswith('__'))}"
        raise bad_file(SPEC, what, path, f"a .mat file with variable {key!r}", found)
    return mat[key]


def _part_target(anno: np.ndarray, hw, path: Path) -> np.ndarray:
    """The codebase's _load_human_parts (6 groups) followed by AddIgnoreRegions."""
    objects = anno[0][0][1]  # anno.objects
    objects = objects[0] if objects.size else []
    person = [int(np.asarray(o[1]).ravel()[0]) == PERSON for o in objects]  # o.class_ind
    # "Has human parts": some person's instance mask (o.mask) is non-empty (area_thres=0).
    if not any(p and np.asarray(o[2]).sum() > 0 for p, o in zip(person, objects)):
        return np.full(hw, IGNORE, np.uint8)
    target = np.zeros(hw, np.uint8)
    for p, o in zip(person, objects):
        parts = o[3]  # o.parts: (part_name, mask), empty (0 x 0) when the object has none
        for part in parts[0] if p and len(parts) else []:
            name = str(np.asarray(part[0]).ravel()[0])
            if name not in HUMAN_PARTS:
                raise bad_file(SPEC, "human-parts annotation", path, f"person part names {sorted(HUMAN_PARTS)}", name)
            mask = check_shape(np.asarray(part[1]), hw, "biuf", SPEC, f"human-parts mask {name!r} of", path)
            target[mask.astype(bool)] = HUMAN_PARTS[name]
    return target if target.any() else np.full(hw, IGNORE, np.uint8)


def _human_parts(root: Path, sid: str, hw) -> np.ndarray:
    path = root / FOLDERS["human_parts"] / f"{sid}.mat"
    anno = read_mat(path, "human-parts annotation", "anno")
    try:
        return _part_target(anno, hw, path)
    except (IndexError, TypeError, ValueError, KeyError, AttributeError) as e:
        expected = "PASCAL-Part struct anno.objects(class, class_ind, mask, parts(part_name, mask))"
        raise bad_file(SPEC, "human-parts annotation", path, expected, f"{type(e).__name__}: {e}") from e


# -- the other tasks ---------------------------------------------------------------------------
def _label_map(root: Path, sid: str, hw) -> np.ndarray:
    path = root / FOLDERS["labels"] / f"{sid}.mat"
    labels = read_mat(path, "PASCAL-Context label map", "LabelMap")
    return check_shape(np.asarray(labels), hw, "iuf", SPEC, "PASCAL-Context LabelMap of", path)


def _semseg_path(root: Path, sid: str) -> Path:
    paths = [root / folder / f"{sid}.png" for folder in SEMSEG_FOLDERS]
    return next((p for p in paths if p.is_file()), paths[-1])


def _semseg(root: Path, sid: str, hw) -> np.ndarray:
    path = _semseg_path(root, sid)
    seg = check_shape(read_png(path, SPEC, "segmentation", ("L", "P")), hw, "u", SPEC, "segmentation", path)
    if ((seg >= N_CLASSES) & (seg != IGNORE)).any():
        found = f"values {sorted(set(np.unique(seg).tolist()) - set(range(N_CLASSES)) - {IGNORE})}"
        raise bad_file(SPEC, "segmentation", path, f"class ids 0..{N_CLASSES - 1} or {IGNORE}", found)
    return np.ascontiguousarray(seg, dtype=np.uint8)


def _normals(root: Path, sid: str, hw, labels: np.ndarray) -> np.ndarray:
    path = root / FOLDERS["normals"] / f"{sid}.png"
    rgb = check_shape(read_png(path, SPEC, "normals", ("RGB",)), (*hw, 3), "u", SPEC, "normals", path)
    n = 2.0 * rgb.transpose(2, 0, 1).astype(np.float32) / 255.0 - 1.0
    n[:, ~np.isin(labels, NORMALS_VALID_LABELS)] = 0
    return unit_normals(n)


def _saliency(root: Path, sid: str, hw) -> np.ndarray:
    path = root / FOLDERS["saliency"] / f"{sid}.png"
    sal = check_shape(read_png(path, SPEC, "saliency", ("L", "P"), convert="L"), hw, "u", SPEC, "saliency", path)
    return (sal / 255.0 > 0.5).astype(np.uint8)


class PascalSource:
    """One split, read lazily: item(i) decodes the image and the selected tasks' files of id i
    (the label map once, when edges or normals need it)."""

    def __init__(self, root: Path, ids: list[str], tasks: tuple[str, ...]):
        self.root, self.ids, self.tasks = root, ids, tasks

    def __len__(self) -> int:
        return len(self.ids)

    def item(self, i: int) -> dict[str, np.ndarray]:
        root, sid = self.root, self.ids[i]
        image = read_rgb(root / FOLDERS["image"] / f"{sid}.jpg", SPEC)
        hw = image.shape[1:]
        labels = _label_map(root, sid, hw) if {"edges", "normals"} & set(self.tasks) else None
        load = {
            "semseg": lambda: _semseg(root, sid, hw),
            "human_parts": lambda: _human_parts(root, sid, hw),
            "normals": lambda: _normals(root, sid, hw, labels),
            "saliency": lambda: _saliency(root, sid, hw),
            "edges": lambda: label_edges(labels),
        }
        return {"image": image, **{t: load[t]() for t in self.tasks}}


def open_split(cfg: DataConfig, split: str) -> PascalSource:
    """The split's ids from ImageSets/Context ("test" reads val.txt: only train and val are
    published); the folders the image and each selected task read must exist."""
    if split not in SPLIT_FILES:
        raise TrainerError(f"split must be one of {tuple(SPLIT_FILES)}, found {split!r}")
    tasks = check_tasks(cfg.tasks, TASKS, SPEC)
    root = require_root(cfg, SPEC)
    ids = split_ids(root, SPLIT_FILES[split], SPEC)
    require_dir(root / FOLDERS["image"], SPEC, "image")
    if "semseg" in tasks and not any((root / f).is_dir() for f in SEMSEG_FOLDERS):
        require_dir(root / SEMSEG_FOLDERS[-1], SPEC, "semseg")  # pascal-context: the folder every id has
    for task in tasks:
        for key in READS.get(task, ()):
            require_dir(root / FOLDERS[key], SPEC, task)
    return PascalSource(root, ids, tasks)


# Wide random scales, as the dataset's images vary in size and framing.
SPEC = DatasetSpec(
    "pascal",
    TASKS,
    open_split,
    augment=True,
    scale_range=(0.5, 2.0),
    obtain="the PASCAL-MT archive PASCAL_MT.tgz of ASTMT / Multi-Task-Learning-PyTorch "
    "(data.vision.ee.ethz.ch/kmaninis/share/MTL/PASCAL_MT.tgz); data.root is its unpacked PASCAL_MT folder",
)
