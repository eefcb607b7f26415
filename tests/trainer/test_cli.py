"""End-to-end CLI behaviour: tiny fit + eval, resume after Ctrl-C, exit codes."""

import json

import pytest
import torch

from trainer import train
from trainer.cli import main


@pytest.mark.slow
def test_fit_then_eval_via_cli(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["fit", "--config", "tiny", "--out", str(run), "--set", "train.phn_bn.steps=3"]) == 0
    assert (run / "model.ckpt").is_file() and (run / "log.jsonl").is_file()
    assert main(["eval", "--run", str(run), "--set", "n_prefs=3"]) == 0
    result = json.loads((run / "eval.json").read_text())
    assert len(result["preferences"]) == 3
    assert "HV" in capsys.readouterr().out


def _interrupt_on_call(owner, attr: str, n: int):
    """Replacement for owner.attr that raises KeyboardInterrupt on its n-th call."""
    real, calls = getattr(owner, attr), {"n": 0}

    def wrapped(*args):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        return real(*args)

    return wrapped


@pytest.mark.slow
@pytest.mark.parametrize(
    "owner, attr, n, stage",
    [
        (train, "get_temperature", 5, "edge"),  # edge stage, step 4: after one partial checkpoint (every 4)
        # pretrain step 5, in the middle of the step: the forward pass has already moved BN
        # statistics and the loss running means past the partial checkpoint at step 4
        (train.LossScale, "forward", 6, "pretrain"),
    ],
)
def test_interrupted_fit_resumes_to_the_same_model(tmp_path, monkeypatch, owner, attr, n, stage):
    straight = tmp_path / "straight"
    train.fit(_cfg(), straight)
    resumed = tmp_path / "resumed"
    real = getattr(owner, attr)
    monkeypatch.setattr(owner, attr, _interrupt_on_call(owner, attr, n))
    with pytest.raises(KeyboardInterrupt):
        train.fit(_cfg(), resumed)
    assert (resumed / "stages" / f"{stage}.partial.pt").is_file()
    assert not (resumed / "model.ckpt").exists()
    monkeypatch.setattr(owner, attr, real)
    train.fit(_cfg(), resumed)
    assert not (resumed / "stages" / f"{stage}.partial.pt").exists()
    a = torch.load(straight / "model.ckpt", weights_only=True)["states"]
    b = torch.load(resumed / "model.ckpt", weights_only=True)["states"]
    for key in a:
        for name in a[key]:
            torch.testing.assert_close(a[key][name], b[key][name], msg=f"{key}.{name}")


@pytest.mark.slow
@pytest.mark.parametrize("gradient", ["relaxed", "reinforce"])
def test_sampled_edge_gradients_train_with_the_paper_terms_and_the_cost_term(tmp_path, gradient):
    from trainer.config import load_config

    cfg = load_config(
        "tiny",
        [
            f"method.edge_gradient={gradient}",
            "method.lambda_active=1.0",
            "method.lambda_inactive=0.1",
            "train.weight.steps=1",
            "train.phn_bn.steps=1",
        ],
    )
    train.fit(cfg, tmp_path / "run")
    logs = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    edge = [rec for rec in logs if rec["stage"] == "edge"]
    assert edge and all({"task", "omega", "active", "inactive", "cost"} <= set(rec) for rec in edge)
    assert not (tmp_path / "run" / "stages" / "paths.pt").exists()  # only the exact objective needs the table


def _cfg():
    from trainer.config import load_config

    return load_config("tiny")


def test_bad_config_exits_2_with_message(tmp_path, capsys):
    assert main(["fit", "--config", "tiny", "--out", str(tmp_path / "r"), "--set", "data.tasks=[semseg, deph]"]) == 2
    err = capsys.readouterr().err
    assert "unknown task(s) ['deph']" in err
    assert not (tmp_path / "r").exists()  # nothing half-written
    assert main(["eval", "--run", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_rerun_with_other_config_is_refused(tmp_path, capsys):
    run = tmp_path / "r"
    (run).mkdir()
    (run / "config.yaml").write_text("name: something-else\n")
    assert main(["fit", "--config", "tiny", "--out", str(run)]) == 2
    assert "different config" in capsys.readouterr().err


@pytest.mark.parametrize("damage", [lambda b: b[: len(b) // 2], lambda b: b"not a stage"])
def test_a_corrupt_stage_file_on_resume_is_one_clear_error(tiny_run, tmp_path, capsys, damage):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    stage = run / "stages" / "single.pt"
    stage.write_bytes(damage(stage.read_bytes()))
    assert main(["fit", "--config", "tiny", "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert f"stage file {stage} is unreadable" in err and "delete it" in err and "Traceback" not in err
