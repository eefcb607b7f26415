import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from runtime.viz import colourise, compose  # noqa: E402


@pytest.mark.parametrize("kind, channels", [("segmentation", 5), ("regression", 1), ("normals", 3), ("binary", 1)])
def test_each_task_kind_gets_a_varied_colour_panel(kind, channels):
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
    out = rng.standard_normal((channels, 16, 16)).astype(np.float32) * 3 + 5  # depth-like offsets too
    panel = colourise(kind, out, frame)
    assert panel.shape == (40, 40, 3) and panel.dtype == np.uint8
    assert panel.reshape(-1, 3).std(0).max() > 10  # not one flat colour


def test_compose_leaves_the_frame_untouched_and_rejects_unknown_kinds():
    frame = np.full((32, 32, 3), 100, np.uint8)
    canvas = compose(frame, {"depth": np.ones((1, 8, 8), np.float32)}, {"depth": "regression"}, ["hud line"])
    assert canvas.shape[1] == 64 and canvas.shape[0] > 32
    assert (frame == 100).all()  # the model's next input must not carry our labels
    with pytest.raises(ValueError, match="no colour map"):
        colourise("audio", np.zeros((1, 4, 4), np.float32), frame)


def test_a_classification_panel_draws_the_likeliest_class_longest():
    frame = np.full((50, 60, 3), 100, np.uint8)  # dimmed to 35: no class colour
    panel = colourise("classification", np.array([0.0, 4.0, 1.0, 0.0, 0.0], np.float32), frame)
    assert panel.shape == (50, 60, 3) and panel.dtype == np.uint8
    lengths = [int((panel[k * 10 + 5] != 35).any(axis=1).sum()) for k in range(5)]
    assert max(lengths) == lengths[1] and lengths[1] > 40  # class 1 holds ~93% of the probability
