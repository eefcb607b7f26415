import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgecore.tree import path
from trainer.config import load_config
from trainer.data import get_tasks
from trainer.errors import TrainerError
from trainer.models import build_models
from trainer.paths import check_size, expected_task_loss, path_losses, path_probs


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    cfg = load_config("tiny", ["model.backbone=tiny-resnet", "data.tasks=[semseg, depth]"])
    models, tasks = build_models(cfg), get_tasks(cfg.data.tasks)
    anchor = models.anchor.eval()
    for i, stem in enumerate(anchor.stems):  # streams that differ, so paths differ
        torch.nn.init.normal_(stem[0].weight, std=0.3 + 0.2 * i)
    x = torch.randn(6, 3, 16, 16)
    ys = [torch.randint(0, 5, (6, 16, 16)), torch.rand(6, 16, 16)]
    return anchor, tasks, x, ys


def _all_trees(L, n):
    for flat in itertools.product(range(n), repeat=L * n):
        yield tuple(tuple(flat[l * n : (l + 1) * n]) for l in range(L))


def test_table_entry_is_the_loss_of_every_tree_with_that_path(setup):
    anchor, tasks, x, ys = setup
    table = path_losses(anchor, tasks, x, ys, chunk=4)  # two chunks: means weighted by size
    assert table.shape == (2,) * 5
    with torch.no_grad():
        for tree in [((0, 1), (1, 1), (0, 0), (1, 0)), ((1, 0), (1, 1), (0, 1), (0, 0))]:
            outs = anchor.forward_tree(x, tree)
            for j, task in enumerate(tasks):
                p = path(tree, j)[:-1]
                assert float(table[(j, *p)]) == pytest.approx(float(task.loss(outs[j], ys[j])), rel=1e-5)


def test_expected_loss_equals_the_sum_over_all_trees(setup):
    anchor, tasks, x, ys = setup
    table = path_losses(anchor, tasks, x, ys)
    g = torch.Generator().manual_seed(1)
    probs = [torch.softmax(torch.randn(2, 2, generator=g) * 2, -1) for _ in range(4)]
    coef = torch.tensor([0.3, 1.7])
    want = 0.0
    for tree in _all_trees(4, 2):  # 256 trees: P(T) * sum_j coef_j L_j(T) from the table
        p = np.prod([float(probs[l][j, tree[l][j]]) for l in range(4) for j in range(2)])
        want += p * sum(float(coef[j] * table[(j, *path(tree, j)[:-1])]) for j in range(2))
    assert float(expected_task_loss(probs, table, coef)) == pytest.approx(want, rel=1e-5)
    for j in range(2):
        assert float(path_probs(probs, j).sum()) == pytest.approx(1.0)


def test_one_hot_distribution_gives_that_trees_loss(setup):
    anchor, tasks, x, ys = setup
    table = path_losses(anchor, tasks, x, ys)
    tree = ((1, 1), (0, 1), (0, 0), (1, 0))
    probs = [F.one_hot(torch.tensor(row), 2).float() for row in tree]
    with torch.no_grad():
        outs = anchor.forward_tree(x, tree)
    want = sum(float(t.loss(o, y)) for t, o, y in zip(tasks, outs, ys))
    assert float(expected_task_loss(probs, table, torch.ones(2))) == pytest.approx(want, rel=1e-5)


def test_too_many_paths_is_one_clear_error():
    check_size(3, 5)
    with pytest.raises(TrainerError, match=r"N\^L <= 4096.*3\^16.*use 'reinforce'"):
        check_size(3, 16)
