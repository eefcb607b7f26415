import pytest
import torch

from trainer.checkpoint import FORMAT_VERSION, load_checkpoint, read_checkpoint
from trainer.errors import TrainerError


@pytest.mark.slow
def test_round_trip_restores_every_state(tiny_run):
    cfg, models, payload = load_checkpoint(tiny_run / "model.ckpt")
    assert cfg.name == "tiny"
    for key, module in models.modules().items():
        for name, value in module.state_dict().items():
            assert torch.equal(value, payload["states"][key][name]), f"{key}.{name}"
    assert [t["name"] for t in payload["tasks"]] == ["semseg", "depth", "normals"]
    assert payload["input_spec"]["shape"] == [3, 16, 16]
    assert len(payload["affinity"]) == 3 and len(payload["loss_weights"]) == 3
    # Loading a run directory finds model.ckpt inside it.
    assert read_checkpoint(tiny_run)["format_version"] == FORMAT_VERSION


@pytest.mark.slow
def test_other_format_version_is_rejected(tiny_run, tmp_path):
    payload = read_checkpoint(tiny_run)
    payload["format_version"] = FORMAT_VERSION + 1
    torch.save(payload, tmp_path / "model.ckpt")
    with pytest.raises(TrainerError, match=f"format version {FORMAT_VERSION + 1} is not supported"):
        load_checkpoint(tmp_path / "model.ckpt")


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "junk.ckpt").write_bytes(b"not a zip file at all")
    with pytest.raises(TrainerError, match="is not a model checkpoint"):
        read_checkpoint(tmp_path / "junk.ckpt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.ckpt")
    with pytest.raises(TrainerError, match="expected format 'edgemtl.trainer.checkpoint'"):
        read_checkpoint(tmp_path / "other.ckpt")
    with pytest.raises(TrainerError, match="does not exist"):
        read_checkpoint(tmp_path / "missing")
