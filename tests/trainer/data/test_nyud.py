"""The NYUD-MT reader on a tiny dataset written in the archive's exact layout (6 x 8 frames)."""

import re
import shutil

import numpy as np
import pytest
from PIL import Image

from trainer.config import DataConfig
from trainer.data import nyud, open_split
from trainer.data.transforms import Augment
from trainer.errors import TrainerError
from trainer.tasks import IGNORE

H, W = 6, 8
TRAIN, VAL = ["0001", "0002", "0003"], ["0004", "0005"]
ALL = ("semseg", "depth", "normals", "edges")


def _seg(k: int) -> np.ndarray:
    """Stored NYUD labels: 0 (unlabelled) and classes 1..40, with one known value per corner."""
    seg = (np.arange(H * W).reshape(H, W) + k) % 41
    seg[0, 0], seg[0, 1], seg[0, 2], seg[0, 3] = 0, 1, 5, 40
    return seg.astype(np.uint8)


def _normals(k: int) -> np.ndarray:
    """Not unit length (the reader renormalises), x varying along the row, one zero vector."""
    n = np.zeros((H, W, 3), np.float32)
    n[..., 0] = np.linspace(-0.5, 0.5, W)[None, :] + 0.01 * k
    n[..., 1], n[..., 2] = 0.2, 0.7
    n[2, 3] = 0
    return n


def write_dataset(root, train=TRAIN, val=VAL):
    rng = np.random.default_rng(0)
    for sub in ("images", "segmentation", "depth", "normals", "edge", "gt_sets"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for k, sid in enumerate(train + val):
        Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(root / "images" / f"{sid}.jpg")
        Image.fromarray(_seg(k)).save(root / "segmentation" / f"{sid}.png")
        depth = rng.uniform(0.5, 10, (H, W)).astype(np.float32)
        depth[1, :2] = 0
        np.save(root / "depth" / f"{sid}.npy", depth)
        np.save(root / "normals" / f"{sid}.npy", _normals(k))
        np.save(root / "edge" / f"{sid}.npy", (rng.random((H, W)) < 0.3).astype(np.float32))
    (root / "gt_sets" / "train.txt").write_text("\n".join(train) + "\n")
    (root / "gt_sets" / "val.txt").write_text("\n".join(val) + "\n")
    return root


@pytest.fixture
def root(tmp_path):
    return write_dataset(tmp_path / "NYUD_MT")


def cfg(root, tasks=ALL) -> DataConfig:
    return DataConfig(dataset="nyud", root=str(root), tasks=tasks, size=4, deploy_size=[6, 8])


def test_every_target_decodes_to_the_trainers_conventions(root):
    """Segmentation shifts 1..40 to 0..39 with 0 ignored, depth 0 stays invalid, normals become
    (3, H, W) unit vectors with zero kept as invalid, edges become uint8 {0, 1}."""
    s = nyud.open_split(cfg(root), "train").item(0)
    assert s["image"].shape == (3, H, W) and s["image"].dtype == np.uint8  # JPEG: lossy, shape only
    seg = s["semseg"]
    assert seg.dtype == np.uint8 and seg.shape == (H, W)
    assert seg[0, :4].tolist() == [IGNORE, 0, 4, 39]
    np.testing.assert_array_equal(seg, np.where(_seg(0) == 0, IGNORE, _seg(0).astype(int) - 1))
    stored = np.load(root / "depth" / "0001.npy")
    assert s["depth"].dtype == np.float32 and np.array_equal(s["depth"], stored) and (s["depth"][1, :2] == 0).all()
    n, raw = s["normals"], _normals(0).transpose(2, 0, 1)
    assert n.shape == (3, H, W) and n.dtype == np.float32
    assert (n[:, 2, 3] == 0).all()
    valid = np.linalg.norm(raw, axis=0) > 0
    np.testing.assert_allclose(np.linalg.norm(n, axis=0)[valid], 1, atol=1e-6)
    np.testing.assert_allclose(n[:, valid], (raw / np.linalg.norm(raw, axis=0).clip(1e-12))[:, valid], atol=1e-6)
    edges = np.load(root / "edge" / "0001.npy")
    assert s["edges"].dtype == np.uint8 and np.array_equal(s["edges"], (edges > 0.5).astype(np.uint8))


def test_only_the_selected_tasks_are_read(root):
    """A config naming two tasks needs neither the other folders nor their files."""
    for sub in ("normals", "edge"):
        for f in (root / sub).iterdir():
            f.unlink()
        (root / sub).rmdir()
    s = nyud.open_split(cfg(root, ("semseg", "depth")), "val").item(1)
    assert set(s) == {"image", "semseg", "depth"}


def test_splits_are_the_published_lists_and_test_reads_val(root):
    """train and val come from gt_sets/; "test" reads val.txt (the benchmark has no other list)."""
    assert len(nyud.open_split(cfg(root), "train")) == 3
    val, test = nyud.open_split(cfg(root), "val"), nyud.open_split(cfg(root), "test")
    assert val.ids == test.ids == VAL
    first_val = np.load(root / "depth" / "0004.npy")
    assert np.array_equal(val.item(0)["depth"], first_val)


def test_batches_through_the_registry(root):
    """trainer.data.open_split collates the samples at the deployed size, tasks in config order."""
    split = open_split(cfg(root), "val", train=False)
    images, targets = next(split.batches(8))
    assert tuple(images.shape) == (2, 3, H, W)
    assert [tuple(t.shape) for t in targets] == [(2, H, W), (2, H, W), (2, 3, H, W), (2, H, W)]
    assert int(targets[0][0, 0, 0]) == IGNORE


class _FlipRng:
    """Scale at the low end, crops at offset 0, and always the flip (uniform() = 0 < 0.5)."""

    def uniform(self, low=0.0, high=1.0):
        return low

    def integers(self, n):
        return 0


def test_horizontal_flip_mirrors_normals_and_negates_x(root):
    """A mirrored scene is consistent only if the normals' x component changes sign."""
    s = nyud.open_split(cfg(root), "train").item(0)
    kinds = {"image": "image", **{t: nyud.TASKS[t].kind for t in ALL}}
    out = Augment(size=H, scale_range=(1.0, 1.0), flip=True)(s, kinds, _FlipRng())
    crop = s["normals"][:, :, :H]  # size x size crop at offset 0, then mirrored
    expected = crop[:, :, ::-1] * np.array([-1, 1, 1], np.float32)[:, None, None]
    np.testing.assert_array_equal(out["normals"], expected)
    np.testing.assert_array_equal(out["semseg"], s["semseg"][:, :H][:, ::-1])


def test_missing_folder_names_it_and_the_archive(root):
    shutil.rmtree(root / "depth")
    with pytest.raises(TrainerError, match=re.escape(str(root / "depth")) + ".*NYUD_MT.tgz"):
        nyud.open_split(cfg(root), "train")


def test_missing_file_names_it_and_the_archive(root):
    """Files are opened per item (the archive is GBs), so a missing one surfaces when read."""
    (root / "normals" / "0002.npy").unlink()
    with pytest.raises(TrainerError, match=re.escape(str(root / "normals" / "0002.npy")) + ".*NYUD_MT.tgz"):
        nyud.open_split(cfg(root), "train").item(1)


def test_missing_split_list_or_root_is_named(root):
    (root / "gt_sets" / "train.txt").unlink()
    with pytest.raises(TrainerError, match=re.escape(str(root / "gt_sets" / "train.txt"))):
        nyud.open_split(cfg(root), "train")
    with pytest.raises(TrainerError, match="data.root"):
        nyud.open_split(DataConfig(dataset="nyud", root=None, tasks=ALL), "train")


def _truncated_npy(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 9])


MALFORMED = {
    "truncated npy": ("depth/0001.npy", _truncated_npy),
    "npy of the wrong shape": ("depth/0001.npy", lambda p: np.save(p, np.ones((H, W + 1), np.float32))),
    "integer depth": ("depth/0001.npy", lambda p: np.save(p, np.ones((H, W), np.uint16))),
    "normals without 3 channels": ("normals/0001.npy", lambda p: np.save(p, np.ones((H, W), np.float32))),
    "pickled npy": ("edge/0001.npy", lambda p: np.save(p, np.array([{}], dtype=object), allow_pickle=True)),
    "png that is not an image": ("segmentation/0001.png", lambda p: p.write_bytes(b"\x89PNG not really")),
    "label png as lossy jpeg": ("segmentation/0001.png", lambda p: Image.fromarray(_seg(0)).save(p, format="JPEG")),
    "class id above 40": ("segmentation/0001.png", lambda p: Image.fromarray(np.full((H, W), 41, np.uint8)).save(p)),
    "jpeg that does not decode": ("images/0001.jpg", lambda p: p.write_bytes(b"\xff\xd8\xff garbage")),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_file_is_one_error_naming_it(root, case):
    rel, spoil = MALFORMED[case]
    spoil(root / rel)
    with pytest.raises(TrainerError, match=re.escape(str(root / rel)) + ".*expected"):
        nyud.open_split(cfg(root), "train").item(0)


@pytest.mark.parametrize("bad", ["../0001", "/etc/passwd", "sub/0001", "..\\0001"])
def test_ids_that_leave_the_root_are_refused(root, bad):
    """A split list is data too: an id must not point outside data.root."""
    (root / "gt_sets" / "val.txt").write_text(f"0004\n{bad}\n")
    with pytest.raises(TrainerError, match=re.escape(str(root / "gt_sets" / "val.txt"))):
        nyud.open_split(cfg(root), "val")


def test_spec_declares_the_benchmark_tasks():
    assert [(t.name, t.kind, t.channels) for t in nyud.TASKS.values()] == [
        ("semseg", "segmentation", 40),
        ("depth", "regression", 1),
        ("normals", "normals", 3),
        ("edges", "binary", 1),
    ]
    assert nyud.SPEC.name == "nyud" and nyud.SPEC.scale_range == (1.0, 1.5) and "NYUD_MT.tgz" in nyud.SPEC.obtain


def test_samples_are_writable_arrays(root):
    """Augment hands them to torch.from_numpy, which warns on read-only (decoder-owned) buffers."""
    assert all(a.flags.writeable for a in nyud.open_split(cfg(root), "train").item(0).values())
