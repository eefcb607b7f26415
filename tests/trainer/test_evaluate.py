import json

import numpy as np
import pytest

from edgecore.tree import identity_tree, path
from trainer.evaluate import donor_tree, hypervolume, simplex_points, uniformity


def test_uniformity_is_one_when_weighted_losses_are_equal():
    r = np.array([0.5, 0.25, 0.25])
    losses = np.array([1.0, 2.0, 2.0])  # r_j L_j all equal
    assert uniformity(losses, r) == pytest.approx(1.0)


def test_uniformity_hand_checked():
    # Lhat = [0.75, 0.25] -> KL(Lhat || 1/2) = 0.75 ln 1.5 + 0.25 ln 0.5
    r, losses = np.array([0.5, 0.5]), np.array([3.0, 1.0])
    kl = 0.75 * np.log(1.5) + 0.25 * np.log(0.5)
    assert uniformity(losses, r) == pytest.approx(1 - kl)
    assert uniformity(losses, r) < 1


def test_hypervolume_hand_checked():
    ref = np.array([2.0, 2.0])
    assert hypervolume(np.array([[1.0, 1.0]]), ref) == pytest.approx(1.0)
    # union of [1,2]x[1,2] and [0.5,2]x[1.5,2]: 1 + 0.5 * 0.5
    assert hypervolume(np.array([[1.0, 1.0], [0.5, 1.5]]), ref) == pytest.approx(1.25)
    # a dominated point adds nothing; a point outside the box adds nothing
    assert hypervolume(np.array([[1.0, 1.0], [1.5, 1.5], [3.0, 0.1]]), ref) == pytest.approx(1.0)
    assert hypervolume(np.array([[0.5, 0.5, 0.5]]), np.full(3, 1.5)) == pytest.approx(1.0)


def test_simplex_points_are_on_the_simplex_and_seeded():
    p = simplex_points(3, 50, seed=1)
    assert p.shape == (50, 3) and np.allclose(p.sum(1), 1) and (p > 0).all()
    assert np.array_equal(p, simplex_points(3, 50, seed=1))


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_donor_tree_runs_the_donor_for_the_first_depth_layers(depth):
    tree = donor_tree(4, 3, task=1, donor=2, depth=depth)
    assert path(tree, 1) == [2] * depth + [1] * (5 - depth)
    for other in (0, 2):  # the other tasks keep their own streams
        assert path(tree, other) == path(identity_tree(4, 3), other)


@pytest.mark.slow
def test_evaluate_tiny_run_writes_complete_table(tiny_run):
    from trainer.evaluate import evaluate

    result = evaluate(tiny_run)
    saved = json.loads((tiny_run / "eval.json").read_text())
    assert (tiny_run / "eval.md").read_text().count("| Ours") == 4
    names = [r["method"] for r in saved["rows"]]
    assert names == [
        "Single-Task",
        "PHN-BN",
        "Ours w/o adaptation, c=0.0",
        "Ours w/o adaptation, c=1.0",
        "Ours, c=0.0",
        "Ours, c=1.0",
    ]
    rows = {r["method"]: r for r in result["rows"]}
    single = rows["Single-Task"]
    assert single["param_share"] == 1.0 and single["uniformity"] is None
    for name, row in rows.items():
        assert 0 < row["params"] <= single["params"] and row["gflops"] > 0
        assert len(row["metrics"]) == 3 and len(row["losses"]) == (1 if name == "Single-Task" else 4)
    # Adaptation changes weights only: same trees, same cost.
    assert rows["Ours, c=0.0"]["params"] == rows["Ours w/o adaptation, c=0.0"]["params"]
    assert rows["Ours, c=0.0"]["control_params"] > rows["Ours w/o adaptation, c=0.0"]["control_params"]
    assert len(saved["one_hot"]) == 6
    assert [g["met"] in (True, False) for g in saved["goals"]] == [True] * 5
    for o in saved["one_hot"]:
        assert o["streams_per_layer"][-1] == 3 and len(o["tree"]) == 4
        k = ["semseg", "depth", "normals"].index(o["task"])
        assert o["own_trunk"] == (o["streams_per_layer"][:-1] == [1] * 4 and path(o["tree"], k) == [k] * 5)
    # Sharing cost: task x donor x depth, 1 on the diagonal, positive elsewhere.
    cost = np.array(saved["sharing_cost"])
    assert cost.shape == (3, 3, 4) and np.all(cost[np.arange(3), np.arange(3)] == 1) and np.all(cost > 0)
    assert "Sharing cost" in (tiny_run / "eval.md").read_text()
