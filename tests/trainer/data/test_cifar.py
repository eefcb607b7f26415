import pickle
import struct

import numpy as np
import pytest
import torch

from trainer.config import DataConfig
from trainer.data import cifar, open_split
from trainer.errors import TrainerError
from trainer.tasks import IGNORE

# Fine labels of the fake files: beaver (4) and whale (95) are aquatic mammals
# (indices 0 and 4 of 4, 30, 55, 72, 95), aquarium fish (1) and trout (91) are fish
# (0 and 4 of 1, 32, 67, 73, 91), apple (0) is fruit_and_vegetables (0 of 0, 51, 53, 57, 83).
TRAIN_FINE = [4, 95, 1, 91, 0, 30, 55, 72, 32, 67]
TEST_FINE = [73, 4, 0, 95, 1]


class Py2Pickler(pickle._Pickler):
    """Protocol 2 as Python 2's cPickle wrote the official files: str and bytes as
    Python 2 strings (BINSTRING), numpy's rebuilder under numpy.core.multiarray."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_string(self, obj):
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    def save_global(self, obj, name=None):
        module = {"numpy._core.multiarray": "numpy.core.multiarray"}.get(obj.__module__, obj.__module__)
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__qualname__}\n".encode())
        self.memoize(obj)

    dispatch[str] = dispatch[bytes] = save_py2_string


def py2_dump(obj, path):
    with open(path, "wb") as f:
        Py2Pickler(f, protocol=2).dump(obj)


def image_rows(fine):
    """N x 3072 rows whose R, G, B planes are filled with fine, fine + 1, fine + 2
    (pixel (0, 0) of each plane marked 200 + channel)."""
    planes = np.stack([np.full((len(fine), 1024), np.array(fine)[:, None] + c) for c in range(3)], 1)
    planes[:, :, 0] = 200 + np.arange(3)
    return planes.reshape(len(fine), 3072).astype(np.uint8)


def batch(fine, name):
    return {
        "batch_label": name,
        "filenames": [f"img{i}.png" for i in range(len(fine))],
        "fine_labels": list(fine),
        "coarse_labels": [int(cifar.FINE_TO_COARSE[f]) for f in fine],
        "data": image_rows(fine),
    }


@pytest.fixture
def root(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    py2_dump(batch(TRAIN_FINE, "training batch 1 of 1"), folder / "train")
    py2_dump(batch(TEST_FINE, "testing batch 1 of 1"), folder / "test")
    py2_dump({"fine_label_names": [f"f{i}" for i in range(100)], "coarse_label_names": list(cifar.TASK_NAMES)},
             folder / "meta")  # fmt: skip
    return tmp_path


def cfg(root, tasks=("aquatic_mammals", "fish", "fruit_and_vegetables")):
    return DataConfig(dataset="cifar100", root=str(root), tasks=tuple(tasks), size=32)


def test_fake_files_are_in_the_official_format(root):
    raw = (root / "cifar-100-python" / "train").read_bytes()
    assert raw.startswith(b"\x80\x02") and b"cnumpy.core.multiarray\n_reconstruct\n" in raw
    assert b"_codecs" not in raw  # Python 2 strings, not Python 3 bytes
    d = pickle.loads(raw, encoding="bytes")
    assert d[b"data"].shape == (10, 3072) and d[b"data"].dtype == np.uint8


def test_every_superclass_has_five_fine_classes():
    assert np.bincount(cifar.FINE_TO_COARSE).tolist() == [5] * 20
    assert sorted(cifar.FINE_TO_INDEX[cifar.FINE_TO_COARSE == 0].tolist()) == [0, 1, 2, 3, 4]
    assert cifar.SPEC.tasks["fish"].channels == 5 and cifar.SPEC.tasks["fish"].kind == "classification"


def test_labels_go_to_their_superclass_task_and_ignore_elsewhere(root):
    arrays = cifar.open_split(cfg(root), "train").arrays
    assert arrays["aquatic_mammals"].tolist() == [0, 4, IGNORE, IGNORE, IGNORE, 1, 2, 3, IGNORE, IGNORE]
    assert arrays["fish"].tolist() == [IGNORE, IGNORE, 0, 4, IGNORE, IGNORE, IGNORE, IGNORE, 1, 2]
    assert arrays["fruit_and_vegetables"].tolist() == [IGNORE] * 4 + [0] + [IGNORE] * 5
    assert all(arrays[t].dtype == np.uint8 and arrays[t].shape == (10,) for t in cfg(root).tasks)


def test_each_image_is_labelled_for_exactly_one_task(root):
    arrays = cifar.open_split(cfg(root, cifar.TASK_NAMES), "train").arrays
    labelled = np.stack([arrays[t] != IGNORE for t in cifar.TASK_NAMES])
    assert labelled.sum(0).tolist() == [1] * 10


def test_rows_decode_to_channel_planes(root):
    images = cifar.open_split(cfg(root), "train").arrays["image"]
    assert images.shape == (10, 3, 32, 32) and images.dtype == np.uint8
    for c in range(3):
        assert images[1, c, 0, 0] == 200 + c
        assert (images[1, c].ravel()[1:] == 95 + c).all()


def test_val_and_test_read_the_test_file(root):
    for split in ("val", "test"):
        arrays = cifar.open_split(cfg(root), split).arrays
        assert len(arrays["image"]) == 5
        assert arrays["fish"].tolist() == [3, IGNORE, IGNORE, IGNORE, 0]


def test_root_may_be_the_extracted_folder_itself(root):
    arrays = cifar.open_split(cfg(root / "cifar-100-python"), "test").arrays
    assert len(arrays["image"]) == 5


def test_python3_pickles_load_too(root):
    # Someone re-saving the files under Python 3: str keys, protocol 4, numpy 2's module name.
    folder = root / "cifar-100-python"
    (folder / "test").write_bytes(pickle.dumps(batch(TEST_FINE, "test"), protocol=4))
    assert cifar.open_split(cfg(root), "test").arrays["fish"].tolist() == [3, IGNORE, IGNORE, IGNORE, 0]


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_forbidden_globals_are_refused_not_run(root, tmp_path):
    marker = tmp_path / "pwned"
    d = batch(TEST_FINE, "test")
    d["fine_labels"] = Evil(marker)
    path = root / "cifar-100-python" / "test"
    py2_dump(d, path)
    assert b"system" in path.read_bytes()
    with pytest.raises(TrainerError, match=r"test is not a readable CIFAR-100 pickle: refused global .*system"):
        cifar.open_split(cfg(root), "test")
    assert not marker.exists()


def test_missing_files_are_named(root, tmp_path):
    (root / "cifar-100-python" / "test").unlink()
    where = r"file of the val split .*cifar-100-python/test is missing .*cifar-100-python\.tar\.gz"
    with pytest.raises(TrainerError, match=where):
        cifar.open_split(cfg(root), "val")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TrainerError, match=r"file of the train split .*empty/cifar-100-python/train is missing"):
        cifar.open_split(cfg(empty), "train")
    with pytest.raises(TrainerError, match="set it"):
        cifar.open_split(DataConfig(dataset="cifar100", tasks=("fish", "trees")), "train")


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: b"not a pickle at all", "not a readable CIFAR-100 pickle"),
        (lambda d: [1, 2, 3], "holds a list, expected a dict"),
        (lambda d: {k: v for k, v in d.items() if k != "coarse_labels"}, "lacks 'coarse_labels'"),
        (lambda d: {**d, "data": d["data"][:, :100]}, r"'data' must be a uint8 N x 3072 array, found uint8 \(5, 100\)"),
        (lambda d: {**d, "fine_labels": d["fine_labels"][:3]}, "'fine_labels' must be 5 integers in 0..99"),
        (lambda d: {**d, "coarse_labels": [0] * 5}, "pairs fine and coarse labels unlike CIFAR-100"),
    ],
)
def test_malformed_files_are_one_error_naming_the_file(root, damage, message):
    path = root / "cifar-100-python" / "test"
    bad = damage(batch(TEST_FINE, "test"))
    if isinstance(bad, bytes):
        path.write_bytes(bad)
    else:
        py2_dump(bad, path)
    with pytest.raises(TrainerError, match=f"{path}.*{message}"):
        cifar.open_split(cfg(root), "test")


def test_meta_naming_other_superclasses_is_an_error(root):
    names = list(cifar.TASK_NAMES)
    names[0] = "sea_creatures"
    py2_dump({"coarse_label_names": names}, root / "cifar-100-python" / "meta")
    with pytest.raises(TrainerError, match="meta names the superclasses .*sea_creatures"):
        cifar.open_split(cfg(root), "train")


def test_training_batches_are_padded_crops_with_class_targets(root):
    split = open_split(cfg(root, ("aquatic_mammals", "fish")), "train", train=True)
    images, targets = split.sample(torch.Generator().manual_seed(0), 4)
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.float32
    assert [t.shape for t in targets] == [(4,), (4,)]
    assert all(set(t.tolist()) <= {0, 1, 2, 3, 4, IGNORE} for t in targets)
    assert split.augment.pad == 4 and (images == -2.0).any()  # zero padding shows in some crops
    images, targets = next(open_split(cfg(root, ("aquatic_mammals", "fish")), "test").batches(8))
    assert images.shape == (5, 3, 32, 32) and targets[1].tolist() == [3, IGNORE, IGNORE, IGNORE, 0]
