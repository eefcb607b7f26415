"""The paper's configurations: shipped by name, with the paper's hyperparameters, and
trainable on data in the benchmark's layout (a tiny NYUD-MT folder here)."""

import json

import pytest
import torch

from tests.trainer.data.test_nyud import write_dataset
from trainer.cli import main
from trainer.config import load_config
from trainer.data import get_tasks
from trainer.errors import TrainerError
from trainer.models import build_models
from trainer.train import load_backbone

PAPER = {
    # name: (dataset, tasks, tau, lambda_A, lambda_I, loss weights, HV reference)
    "nyud-resnet34": ("nyud", 3, 0.2, 1.0, 0.1, [1, 3, 10], 4.0),
    "pascal5-mobilenetv2": ("pascal", 5, 0.1, 1.0, 0.1, [1, 2, 5, 10, 50], 3.0),
    "pascal3-mobilenetv2": ("pascal", 3, 0.2, 1.0, 0.1, [1, 2, 5], 3.0),
    "cifar100-resnet9": ("cifar100", 20, 0.02, 0.2, 0.02, [1] * 20, 1.0),
}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_configs_carry_the_papers_hyperparameters(name):
    dataset, n, tau, la, li, w, ref = PAPER[name]
    cfg = load_config(name)
    m, t = cfg.method, cfg.train
    assert (cfg.data.dataset, len(cfg.data.tasks), m.tau) == (dataset, n, tau)
    assert (m.lambda_active, m.lambda_inactive) == (la, li)
    assert list(m.loss_weights) == w and cfg.eval.hv_ref == ref
    assert (m.embed_dim, m.edge_hidden, m.weight_hidden, m.dirichlet) == (32, (100, 100), (100, 100, 100), 0.2)
    assert (m.temp_init, m.temp_decay, m.temp_every) == (5.0, 0.97, 300)
    assert (t.edge.steps, t.edge.lr, t.weight.steps, t.weight.lr) == (30000, 1e-3, 30000, 1e-3)
    assert len(get_tasks(cfg.data.tasks, dataset)) == n


@pytest.mark.slow
def test_nyud_resnet34_fits_a_few_steps_on_a_folder_in_the_nyud_mt_layout(tmp_path, capsys):
    root = write_dataset(tmp_path / "NYUD_MT")
    small = ["data.size=32", "data.deploy_size=[16, 24]", "model.width=0.125", "model.head_channels=8"]
    stages = [f"train.{s}={{steps: 2, batch_size: 8}}" for s in ("pretrain", "single", "edge", "weight", "phn_bn")]
    args = ["fit", "--config", "nyud-resnet34", "--out", str(tmp_path / "run"), "--set", f"data.root={root}"]
    for item in small + stages:
        args += ["--set", item]
    assert main(args) == 0
    payload = torch.load(tmp_path / "run" / "model.ckpt", weights_only=True)
    assert [t["name"] for t in payload["tasks"]] == ["semseg", "depth", "normals"]
    assert payload["tasks"][0]["channels"] == 40 and payload["input_spec"]["shape"] == [3, 16, 24]
    assert payload["loss_weights"] == [1.0, 3.0, 10.0]
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert {r["stage"] for r in log} == {"pretrain", "single", "edge", "weight", "phn_bn"}
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in log)


def test_every_stream_starts_from_a_backbone_file(tmp_path):
    cfg = load_config("tiny")
    source = build_models(cfg).anchor
    torch.save(source.stream_state(), tmp_path / "backbone.pt")
    anchor = build_models(cfg).anchor
    load_backbone(anchor, str(tmp_path / "backbone.pt"))
    for stream in range(anchor.n_tasks):
        state = anchor.stream_state(stream)
        assert all(torch.equal(state[k], v) for k, v in source.stream_state().items())


def test_a_backbone_file_that_does_not_fit_is_one_error_naming_it(tmp_path):
    anchor = build_models(load_config("tiny")).anchor
    state = anchor.stream_state()
    state["1.conv.weight"] = torch.zeros(1)  # an extra key
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(TrainerError, match=r"bad.pt does not fit model.backbone .*unexpected \['1.conv.weight'\]"):
        load_backbone(anchor, str(tmp_path / "bad.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(TrainerError, match="junk.pt is not a torch state dict"):
        load_backbone(anchor, str(tmp_path / "junk.pt"))
