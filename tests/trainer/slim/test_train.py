"""`trainer fit` and `trainer eval` of the width-slimmable family (tiny-slim)."""

import json

import numpy as np
import pytest
import torch

from trainer.checkpoint import load_checkpoint
from trainer.cli import main
from trainer.slim.family import FAMILY, cost_range


@pytest.mark.slow
def test_fit_writes_a_self_describing_checkpoint_with_the_search_table(tiny_slim_run):
    cfg, models, payload = load_checkpoint(tiny_slim_run / "model.ckpt")
    assert cfg.model.family == "slim-width" and payload["config"]["model"]["family"] == "slim-width"
    net = models.anchor
    k, n = len(net.widths), len(payload["tasks"])
    assert net.search_loss.shape == (k, n, k) and (net.search_loss > 0).all()
    low, high = cost_range(net)
    assert 0 < low < high
    log = [json.loads(line) for line in (tiny_slim_run / "log.jsonl").read_text().splitlines()]
    assert {r["stage"] for r in log} == {"slim"} and all(np.isfinite(r["kd"]) for r in log)


@pytest.mark.slow
def test_the_budget_sets_the_cost_and_the_preference_the_decoders(tiny_slim_run):
    _, models, _ = load_checkpoint(tiny_slim_run / "model.ckpt")
    r = torch.tensor([0.7, 0.2, 0.1])
    big, _ = FAMILY.derive(models, r, 0.0)
    small, _ = FAMILY.derive(models, r, 1.0)
    assert small == models.anchor.smallest()
    assert FAMILY.cost(models, small, 16)[1] <= FAMILY.cost(models, big, 16)[1]
    assert big[1] >= big[2] >= big[3]


@pytest.mark.slow
def test_eval_prints_the_table_with_controllability(tiny_slim_run, capsys):
    assert main(["eval", "--run", str(tiny_slim_run)]) == 0
    result = json.loads((tiny_slim_run / "eval.json").read_text())
    assert result["family"] == "slim-width"
    assert [r["method"] for r in result["rows"]][2:] == [f"Slim search, c={c}" for c in ("0.0", "0.5", "1.0")]
    assert -1 <= result["controllability"]["score"] <= 1
    assert "controllability" in capsys.readouterr().out
