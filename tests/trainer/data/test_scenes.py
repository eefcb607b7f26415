import numpy as np
import pytest

from trainer.config import DataConfig
from trainer.data import load_split
from trainer.data.scenes import N_ROOM_SURFACES, rays, render_scenes


@pytest.fixture(scope="module")
def scenes():
    return render_scenes(32, 24, seed=7, max_objects=4)


def test_same_seed_same_bytes_other_seed_differs():
    a, b = render_scenes(4, 16, seed=3), render_scenes(4, 16, seed=3)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["image"], render_scenes(4, 16, seed=4)["image"])


def test_shapes_and_dtypes(scenes):
    assert scenes["image"].shape == (32, 3, 24, 24) and scenes["image"].dtype == np.uint8
    assert scenes["normals"].shape == (32, 3, 24, 24)
    for key in ("semseg", "depth", "edges", "saliency"):
        assert scenes[key].shape == (32, 24, 24)


def test_normals_unit_length_and_facing_camera(scenes):
    n = scenes["normals"]
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-5)
    # A visible surface faces the camera: its normal points against the view ray.
    ray = rays(scenes["focal"].astype(float), 24)
    assert ((n * ray).sum(1) < 1e-6).mean() > 0.999


def test_depth_positive_and_finite(scenes):
    d = scenes["depth"]
    assert np.isfinite(d).all() and (d > 0).all()


def test_edges_cover_every_class_change(scenes):
    seg, edges = scenes["semseg"], scenes["edges"].astype(bool)
    change_v = seg[:, 1:, :] != seg[:, :-1, :]
    change_h = seg[:, :, 1:] != seg[:, :, :-1]
    assert edges[:, 1:, :][change_v].all() and edges[:, :-1, :][change_v].all()
    assert edges[:, :, 1:][change_h].all() and edges[:, :, :-1][change_h].all()
    assert 0.02 < edges.mean() < 0.5  # boundaries, not everything


def test_saliency_is_exactly_the_objects(scenes):
    objects = scenes["semseg"] >= 2  # sphere, box, cylinder
    assert np.array_equal(scenes["saliency"].astype(bool), objects)
    assert scenes["saliency"].any(axis=(1, 2)).mean() > 0.8
    assert N_ROOM_SURFACES == 5


def test_every_class_appears(scenes):
    assert set(np.unique(scenes["semseg"])) == {0, 1, 2, 3, 4}


def test_splits_are_disjoint_and_cached(tmp_path):
    cfg = DataConfig(size=16, n_train=8, n_val=8, n_test=8, cache_dir=str(tmp_path))
    train, val = load_split(cfg, "train"), load_split(cfg, "val")
    flat = lambda a: {a[i].tobytes() for i in range(len(a))}  # noqa: E731
    assert not flat(train["image"]) & flat(val["image"])
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 2
    again = load_split(cfg, "train")
    assert np.array_equal(again["image"], train["image"])


def test_corrupt_cache_file_is_rendered_again(tmp_path):
    cfg = DataConfig(size=16, n_train=4, n_val=4, n_test=4, cache_dir=str(tmp_path))
    good = load_split(cfg, "test")
    (path,) = tmp_path.glob("*.npz")
    path.write_bytes(path.read_bytes()[:100])
    assert np.array_equal(load_split(cfg, "test")["depth"], good["depth"])
