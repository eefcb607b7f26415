from types import SimpleNamespace

import numpy as np
import torch

from trainer.config import load_config
from trainer.models.hypernets import EdgeHypernet
from trainer.train import get_lr, get_temperature, reinforce_task_loss
from trainer.tree import used_nodes


class CountingAnchor:
    """Stand-in anchor whose every task loss is the number of used children
    that read another stream's parent: the identity tree is the optimum."""

    def forward_tree(self, x, tree):
        used = used_nodes(tree)
        cost = sum(p != j for l, row in enumerate(tree) for j, p in enumerate(row) if used[l + 1][j])
        return [torch.tensor(float(cost))] * len(tree[0])


def test_reinforce_gradient_favours_the_better_trees():
    torch.manual_seed(0)
    n, L = 3, 2
    logits = torch.zeros(L, n, n, requires_grad=True)
    tasks = [SimpleNamespace(loss=lambda o, y: o)] * n
    surrogate, value = reinforce_task_loss(CountingAnchor(), tasks, logits, 1.0, None, [None] * n,
                                           torch.ones(n), torch.ones(n) / n, samples=256)
    surrogate.backward()
    assert value > 0
    # Gradient descent raises the own-stream logit of every child at the top choice.
    diag = logits.grad[-1].diagonal()
    off = logits.grad[-1][~torch.eye(n, dtype=torch.bool)]
    assert (diag < 0).all() and (off > 0).all()


def test_edge_hypernet_identity_prior_starts_at_the_anchor():
    edge = EdgeHypernet(3, 4, init_identity=5.0)
    for r in (torch.tensor([1.0, 0, 0]), torch.tensor([0.2, 0.3, 0.5])):
        for c in (0.0, 1.0):
            assert edge.tree(r, c) == ((0, 1, 2),) * 4


def test_schedules_follow_the_paper_scaled_to_the_stage():
    cfg = load_config("tiny", ["train.edge.steps=30000"])
    stage = cfg.train.edge
    assert get_lr(0, stage) == stage.lr
    assert np.isclose(get_lr(14000, stage), stage.lr * 0.3)
    assert np.isclose(get_lr(28000, stage), stage.lr * 0.09)
    assert get_temperature(299, 30000, cfg) == 5.0
    assert np.isclose(get_temperature(300, 30000, cfg), 5.0 * 0.97)
    # A 1000-step stage ends at the same temperature as the paper's 30K steps.
    assert np.isclose(get_temperature(999, 1000, cfg), get_temperature(29999, 30000, cfg), rtol=0.05)
