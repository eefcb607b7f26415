"""Label-aware augmentation: every array of a sample moves with the image, and what
each kind of array means survives (class ids, invalid pixels, depth, normals)."""

import numpy as np

from trainer.data.transforms import Augment, resize, resize_sample
from trainer.tasks import IGNORE

KINDS = {"image": "image", "semseg": "segmentation", "depth": "regression", "normals": "normals"}


def sample(h=4, w=6) -> dict:
    rng = np.random.default_rng(0)
    normals = np.zeros((3, h, w), np.float32)
    normals[2] = 1
    return {
        "image": rng.integers(0, 256, (3, h, w), dtype=np.uint8),
        "semseg": rng.integers(0, 5, (h, w)).astype(np.uint8),
        "depth": rng.uniform(1, 5, (h, w)).astype(np.float32),
        "normals": normals,
    }


class Fixed:
    """The scale `s`, crops at offset 0, no flip."""

    def __init__(self, s):
        self.s = s

    def uniform(self, low=0.0, high=1.0):
        return self.s if high > 1 or low > 0 else 0.9

    def integers(self, n):
        return 0


def test_label_maps_keep_their_class_ids_when_resized():
    seg = np.array([[0, 3], [7, 1]], np.uint8)
    assert set(np.unique(resize(seg, "segmentation", (5, 5)))) <= {0, 1, 3, 7}


def test_zooming_in_divides_depth_by_the_scale_and_keeps_no_reading_at_zero():
    s = sample()
    s["depth"][0, 0] = 0
    out = Augment(size=4, scale_range=(2.0, 2.0), flip=False)(s, KINDS, Fixed(2.0))
    np.testing.assert_allclose(out["depth"][:2, :2], s["depth"][:1, :1].repeat(2, 0).repeat(2, 1) / 2)
    assert out["depth"][0, 0] == 0


def test_padding_fills_each_array_with_its_invalid_value():
    out = Augment(size=8, pad=0, flip=False)(sample(4, 6), KINDS, Fixed(1.0))
    assert out["image"].shape == (3, 8, 8) and out["semseg"].shape == (8, 8)
    assert out["semseg"][0, 0] == IGNORE and out["depth"][0, 0] == 0
    assert not out["normals"][:, 0, 0].any() and out["image"][:, 0, 0].tolist() == [0, 0, 0]


def test_evaluation_frames_are_resized_to_the_deployed_size():
    out = resize_sample(sample(4, 6), KINDS, (8, 12))
    assert out["image"].shape == (3, 8, 12) and out["normals"].shape == (3, 8, 12) and out["depth"].shape == (8, 12)
