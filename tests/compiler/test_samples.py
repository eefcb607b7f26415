"""A bundle's sample frames come from the model's dataset when it is on the build machine."""

import shutil

import numpy as np
import pytest

from compiler.build import BuildConfig, build
from compiler.grid import GRID_DIR
from runtime.sources import sample_frames
from tests.trainer.data.test_nyud import write_dataset
from trainer.config import load_config
from trainer.data import get_dataset
from trainer.data.transforms import resize
from trainer.train import fit

SMALL = ["data.size=32", "data.deploy_size=[16, 24]", "model.width=0.125", "model.head_channels=8"]
STAGES = [f"train.{s}={{steps: 1, batch_size: 8}}" for s in ("pretrain", "single", "edge", "weight", "phn_bn")]


@pytest.mark.slow
def test_samples_are_the_datasets_test_images_or_rendered_scenes_without_it(tmp_path):
    root = write_dataset(tmp_path / "NYUD_MT")
    cfg = load_config("nyud-resnet34", [f"data.root={root}", *SMALL, *STAGES])
    ckpt = fit(cfg, tmp_path / "run")
    grid = str(GRID_DIR / "scenes3-21.json")
    out = tmp_path / "bundle"
    build(BuildConfig(str(ckpt), grid, str(out), "onnxruntime", cache=str(tmp_path / "c"), hypernets=False))
    frames = sample_frames(out)
    source = get_dataset("nyud").open(cfg.data, "test")
    expected = np.stack([resize(source.item(i)["image"], "image", (16, 24)) for i in range(len(source))])
    np.testing.assert_array_equal(frames, expected.transpose(0, 2, 3, 1))
    shutil.rmtree(root)  # the data is not on this machine any more: rendered scenes instead
    again = tmp_path / "bundle2"
    build(BuildConfig(str(ckpt), grid, str(again), "onnxruntime", cache=str(tmp_path / "c"), hypernets=False))
    rendered = sample_frames(again)
    assert rendered.shape[0] > len(source) and rendered.dtype == np.uint8
    assert (again / "samples" / "frames.safetensors").is_file()
