"""The PASCAL-MT reader on a tiny dataset written in the archive's exact layout (6 x 8 frames),
checked against the decoding of the ASTMT / Multi-Task-Learning-PyTorch PASCALContext loader."""

import re
import shutil

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from trainer.config import DataConfig
from trainer.data import open_split, pascal
from trainer.errors import TrainerError
from trainer.tasks import IGNORE

H, W = 6, 8
TRAIN, VAL = ["2008_000001", "2008_000002"], ["2008_000003"]
ALL = ("semseg", "human_parts", "saliency", "normals", "edges")
WALL, SKY, PERSON_CTX = 440, 360, 284  # Context labels: wall has NYUD normals, sky does not
DOG = 12


def _mask(rows, cols) -> np.ndarray:
    m = np.zeros((H, W), np.uint8)
    m[rows, cols] = 1
    return m


def anno(objects) -> dict:
    """A PASCAL-Part annotation as MATLAB stores it: anno(imname, objects(class, class_ind, mask,
    parts(part_name, mask))), parts an empty 0 x 0 array when an object has none."""
    objs = np.zeros((1, len(objects)), dtype=[("class", "O"), ("class_ind", "O"), ("mask", "O"), ("parts", "O")])
    for j, (cls, mask, parts) in enumerate(objects):
        table = np.zeros((0, 0))
        if parts:
            table = np.zeros((1, len(parts)), dtype=[("part_name", "O"), ("mask", "O")])
            for k, part in enumerate(parts):
                table[0, k] = part
        objs[0, j] = ("person" if cls == 15 else "other", cls, mask, table)
    a = np.zeros((1, 1), dtype=[("imname", "O"), ("objects", "O")])
    a[0, 0] = ("img", objs)
    return {"anno": a}


# A person with parts in file order (neck overwrites head at (0, 3)), a dog whose "head" must not
# count, and a second person without parts.
PARTS = [
    ("head", _mask(0, slice(0, 4))),
    ("torso", _mask(1, slice(0, 4))),
    ("luarm", _mask(2, 0)),
    ("llarm", _mask(2, 1)),
    ("lhand", _mask(2, 2)),
    ("luleg", _mask(3, 0)),
    ("rfoot", _mask(3, 1)),
    ("neck", _mask(0, 3)),
]
EXPECTED_PARTS = np.zeros((H, W), np.uint8)
EXPECTED_PARTS[0, :4], EXPECTED_PARTS[1, :4] = 1, 2
EXPECTED_PARTS[2, :3], EXPECTED_PARTS[3, :2], EXPECTED_PARTS[0, 3] = [3, 4, 4], [5, 6], 2
HUMAN_PARTS = {
    "2008_000001": [
        (15, _mask(slice(0, 4), slice(0, 4)), PARTS),
        (DOG, _mask(5, slice(0, 8)), [("head", _mask(5, slice(0, 8)))]),
        (15, _mask(4, slice(4, 8)), []),
    ],
    "2008_000002": [(DOG, _mask(5, slice(0, 8)), [("head", _mask(5, 0))])],  # no person: all IGNORE
    "2008_000003": [(15, _mask(4, slice(4, 8)), [])],  # a person without parts: all IGNORE too
}


def _semseg() -> np.ndarray:
    seg = np.zeros((H, W), np.uint8)
    seg[0, :4] = [0, 5, 20, IGNORE]
    return seg


def _normals_png() -> np.ndarray:
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[...] = [255, 128, 0]
    rgb[0, 1] = [0, 255, 255]
    return rgb


def _labels() -> np.ndarray:
    labels = np.full((H, W), WALL, np.uint16)
    labels[:, 4:] = SKY
    return labels


def _saliency() -> np.ndarray:
    sal = np.zeros((H, W), np.uint8)
    sal[0, :4] = [0, 127, 128, 255]
    return sal


def write_dataset(root):
    rng = np.random.default_rng(0)
    dirs = ("JPEGImages", "semseg/pascal-context", "semseg/VOC12", "human_parts", "normals_distill")
    for sub in (*dirs, "sal_distill", "pascal-context/trainval", "ImageSets/Context"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for sid in TRAIN + VAL:
        Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(root / "JPEGImages" / f"{sid}.jpg")
        Image.fromarray(_semseg()).save(root / "semseg/pascal-context" / f"{sid}.png")
        savemat(root / "human_parts" / f"{sid}.mat", anno(HUMAN_PARTS[sid]))
        Image.fromarray(_normals_png()).save(root / "normals_distill" / f"{sid}.png")
        Image.fromarray(_saliency()).save(root / "sal_distill" / f"{sid}.png")
        savemat(root / "pascal-context/trainval" / f"{sid}.mat", {"LabelMap": _labels()})
    # VOC12 has its own (official VOC) label for the second image: the codebase prefers it.
    Image.fromarray(np.full((H, W), 7, np.uint8)).save(root / "semseg/VOC12" / "2008_000002.png")
    (root / "ImageSets/Context/train.txt").write_text("\n".join(TRAIN) + "\n")
    (root / "ImageSets/Context/val.txt").write_text("\n".join(VAL) + "\n")
    return root


@pytest.fixture
def root(tmp_path):
    return write_dataset(tmp_path / "PASCAL_MT")


def cfg(root, tasks=ALL) -> DataConfig:
    return DataConfig(dataset="pascal", root=str(root), tasks=tasks, size=4, deploy_size=[6, 8])


def sample(root, i=0, split="train", tasks=ALL):
    return pascal.open_split(cfg(root, tasks), split).item(i)


def test_semseg_keeps_ids_and_ignore_and_prefers_voc12(root):
    """21 classes stored as-is with 255 unlabelled; per id, semseg/VOC12 wins over pascal-context
    (the codebase's _get_semseg_fname)."""
    s = sample(root, 0)
    assert s["image"].shape == (3, H, W) and s["image"].dtype == np.uint8  # JPEG: lossy, shape only
    assert s["semseg"].dtype == np.uint8 and np.array_equal(s["semseg"], _semseg())
    assert (sample(root, 1)["semseg"] == 7).all()


def test_human_parts_follow_the_six_group_mapping(root):
    """Only persons' parts are painted, in file order, grouped head/torso/upper arm/lower arm/
    upper leg/lower leg; everything else in an image with parts is background 0."""
    parts = sample(root, 0)["human_parts"]
    assert parts.dtype == np.uint8 and np.array_equal(parts, EXPECTED_PARTS)


def test_images_without_person_parts_are_ignored_entirely(root):
    """No person (or a person without part masks): the codebase's zero target becomes all 255."""
    assert (sample(root, 1)["human_parts"] == IGNORE).all()
    assert (sample(root, 0, "val")["human_parts"] == IGNORE).all()


def test_a_person_with_an_empty_instance_mask_does_not_count(root):
    """Has-parts is decided from persons with a non-empty mask (the codebase's area_thres=0)."""
    savemat(root / "human_parts/2008_000002.mat", anno([(15, _mask(slice(0, 0), 0), PARTS)]))
    assert (sample(root, 1)["human_parts"] == IGNORE).all()


def test_normals_decode_2v_over_255_and_only_on_nyud_classes(root):
    """n = 2 v / 255 - 1 renormalised on wall pixels; sky has no NYUD class, so it is invalid (zero)."""
    n = sample(root, 0)["normals"]
    assert n.shape == (3, H, W) and n.dtype == np.float32
    raw = 2 * _normals_png().transpose(2, 0, 1).astype(np.float64) / 255 - 1
    unit = raw / np.linalg.norm(raw, axis=0)
    np.testing.assert_allclose(n[:, :, :4], unit[:, :, :4], atol=1e-6)
    np.testing.assert_allclose(n[:, 0, 1], np.array([-1, 1, 1]) / np.sqrt(3), atol=1e-6)
    assert (n[:, :, 4:] == 0).all()
    assert WALL in pascal.NORMALS_VALID_LABELS and PERSON_CTX in pascal.NORMALS_VALID_LABELS
    assert SKY not in pascal.NORMALS_VALID_LABELS and len(pascal.NORMALS_VALID_LABELS) == 170


def test_saliency_is_thresholded_at_half(root):
    """v / 255 > 0.5: 127 is background, 128 salient; an RGB file is read as grey."""
    assert sample(root, 0)["saliency"][0, :4].tolist() == [0, 0, 1, 1]
    Image.fromarray(np.repeat(_saliency()[..., None], 3, axis=2)).save(root / "sal_distill/2008_000001.png")
    assert np.array_equal(sample(root, 0)["saliency"], (_saliency() > 127).astype(np.uint8))


def test_edges_are_the_thinned_laplacian_of_the_label_map(root):
    """The wall|sky boundary between columns 3 and 4: the Laplacian marks both columns, skimage's
    thinning keeps column 3 and erodes the band's end on the top row."""
    assert np.array_equal(pascal.laplacian(_labels()) != 0, np.isin(np.arange(W), [3, 4])[None].repeat(H, 0))
    expected = np.zeros((H, W), np.uint8)
    expected[1:, 3] = 1
    edges = sample(root, 0)["edges"]
    assert edges.dtype == np.uint8 and np.array_equal(edges, expected)


def test_laplacian_is_cv2s_with_reflect_101_border():
    """cv2.Laplacian(ksize=1): 4-neighbour kernel, border pixels see their inner neighbour twice;
    a label between a lower and a higher one can sum to zero (no edge), as in the codebase."""
    dot = np.zeros((3, 3), np.uint8)
    dot[1, 1] = 1
    np.testing.assert_array_equal(pascal.laplacian(dot), [[0, 2, 0], [2, -4, 2], [0, 2, 0]])
    assert pascal.laplacian(np.array([[1, 2, 3]] * 3))[:, 1].tolist() == [0, 0, 0]


def test_thinning_tables_are_skimages():
    """The deletion tables equal skimage.morphology's G123_LUT and G123P_LUT (same since 2017)."""
    g123 = [14, 20, 22, 28, 30, 52, 54, 56, 60, 62, 80, 84, 86, 88, 92, 94, 112, 116, 118, 120, 124, 126, 193, 208]
    g123 += [209, 212, 216, 217, 220, 224, 225, 240, 241, 244, 248, 249, 252]
    g123p = [5, 7, 13, 14, 15, 28, 29, 30, 31, 65, 67, 69, 71, 77, 79, 97, 99, 101, 103, 131, 133, 135, 141, 143]
    g123p += [157, 159, 193, 195, 197, 199, 205, 207, 224, 225, 227, 229, 231]
    assert [np.flatnonzero(t).tolist() for t in pascal.THIN_LUTS] == [g123, g123p]


def test_splits_and_batches_through_the_registry(root):
    """train/val from ImageSets/Context, "test" reads val.txt; batches collate every task."""
    assert len(pascal.open_split(cfg(root), "train")) == 2
    assert pascal.open_split(cfg(root), "test").ids == pascal.open_split(cfg(root), "val").ids == VAL
    images, targets = next(open_split(cfg(root), "train", train=False).batches(8))
    assert tuple(images.shape) == (2, 3, H, W)
    assert [tuple(t.shape) for t in targets] == [(2, H, W), (2, H, W), (2, H, W), (2, 3, H, W), (2, H, W)]


def test_only_the_selected_tasks_are_read(root):
    for sub in ("human_parts", "pascal-context", "normals_distill"):
        shutil.rmtree(root / sub)
    assert set(sample(root, 0, tasks=("semseg", "saliency"))) == {"image", "semseg", "saliency"}


def test_missing_folders_and_files_are_named_with_the_archive(root):
    shutil.rmtree(root / "semseg")
    with pytest.raises(TrainerError, match=re.escape(str(root / "semseg/pascal-context")) + ".*PASCAL_MT.tgz"):
        pascal.open_split(cfg(root), "train")
    (root / "pascal-context/trainval/2008_000001.mat").unlink()
    path = root / "pascal-context/trainval/2008_000001.mat"
    with pytest.raises(TrainerError, match=re.escape(str(path)) + ".*PASCAL_MT.tgz"):
        sample(root, 0, tasks=("edges", "saliency"))


MALFORMED = {
    "mat that is not a mat": ("human_parts/2008_000001.mat", lambda p: p.write_bytes(b"MATLAB 5.0 garbage")),
    "mat without anno": ("human_parts/2008_000001.mat", lambda p: savemat(p, {"other": np.ones(3)})),
    "anno of the wrong layout": ("human_parts/2008_000001.mat", lambda p: savemat(p, {"anno": np.ones((1, 1))})),
    "unknown person part": (
        "human_parts/2008_000001.mat",
        lambda p: savemat(p, anno([(15, _mask(0, 0), [("tail", _mask(0, 0))])])),
    ),
    "label map of the wrong size": (
        "pascal-context/trainval/2008_000001.mat",
        lambda p: savemat(p, {"LabelMap": np.ones((H, W + 1), np.uint16)}),
    ),
    "grey normals png": ("normals_distill/2008_000001.png", lambda p: Image.fromarray(_saliency()).save(p)),
    "saliency that is not an image": ("sal_distill/2008_000001.png", lambda p: p.write_bytes(b"\x89PNG\r\n")),
    "class id 21": ("semseg/pascal-context/2008_000001.png", lambda p: Image.fromarray(_semseg() + 21).save(p)),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_file_is_one_error_naming_it(root, case):
    rel, spoil = MALFORMED[case]
    spoil(root / rel)
    with pytest.raises(TrainerError, match=re.escape(str(root / rel)) + ".*expected"):
        sample(root, 0)


@pytest.mark.parametrize("bad", ["../2008_000001", "/etc/passwd", "x/../../y"])
def test_ids_that_leave_the_root_are_refused(root, bad):
    (root / "ImageSets/Context/train.txt").write_text(f"2008_000001\n{bad}\n")
    with pytest.raises(TrainerError, match=re.escape(str(root / "ImageSets/Context/train.txt"))):
        pascal.open_split(cfg(root), "train")


def test_spec_declares_the_benchmark_tasks():
    assert [(t.name, t.kind, t.channels) for t in pascal.TASKS.values()] == [
        ("semseg", "segmentation", 21),
        ("human_parts", "segmentation", 7),
        ("saliency", "binary", 1),
        ("normals", "normals", 3),
        ("edges", "binary", 1),
    ]
    assert pascal.SPEC.scale_range == (0.5, 2.0) and "PASCAL_MT.tgz" in pascal.SPEC.obtain


def test_samples_are_writable_arrays(root):
    """Augment hands them to torch.from_numpy, which warns on read-only (decoder-owned) buffers."""
    assert all(a.flags.writeable for a in sample(root, 0).values())
