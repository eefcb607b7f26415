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
    assert [g["met"] in (True, False) for g in saved["goals"]] == [True] * 9
    for o in saved["one_hot"]:
        assert o["streams_per_layer"][-1] == 3 and len(o["tree"]) == 4
        k = ["semseg", "depth", "normals"].index(o["task"])
        assert o["own_stream"] == (path(o["tree"], k) == [k] * 5)
        assert o["minimal"] == (o["streams_per_layer"][:-1] == [1] * 4)
        assert o["own_trunk"] == (o["own_stream"] and o["minimal"])
    # Sharing cost: task x donor x depth, 1 on the diagonal, positive elsewhere.
    cost = np.array(saved["sharing_cost"])
    assert cost.shape == (3, 3, 4) and np.all(cost[np.arange(3), np.arange(3)] == 1) and np.all(cost > 0)
    assert "Sharing cost" in (tiny_run / "eval.md").read_text()
    recal = np.array(saved["sharing_cost_recalibrated"])
    assert recal.shape == cost.shape and np.all(recal[np.arange(3), np.arange(3)] == 1)
    # Every method that takes r reports its task control; Single-Task takes none.
    assert rows["Single-Task"]["task_control"] is None
    assert all(-1 <= r["task_control"] <= 1 for n, r in rows.items() if n != "Single-Task")
    assert set(saved["response"]) == {"edge hypernet", "weight hypernet", "PHN-BN hypernet"}
    for f in saved["fixed_tree"]:  # each adapted loss vector was scored on the one fixed tree
        assert len(f["adapted_losses"]) == len(f["preferences"]) >= 1 and f["weighted_loss_ratio"] > 0


def test_task_control_is_one_when_losses_fall_with_importance_and_zero_when_constant():
    from trainer.evaluate import task_control

    prefs = simplex_points(3, 30, seed=2)
    assert task_control(prefs, 1 - prefs) == pytest.approx(1.0)
    assert task_control(prefs, np.ones_like(prefs)) == 0.0  # a baseline that ignores r


def test_tree_statistics_deltas_normalise_each_bn_by_the_trees_own_statistics(randomise_bn):
    """After recalibration on x, the first BatchNorm of a node fed by another stream
    outputs, over x, per-channel mean beta and std |gamma| (what batch statistics
    give), although the anchor's running statistics are random."""
    import torch

    from trainer.config import load_config
    from trainer.models import build_models
    from trainer.recalibrate import tree_statistics_deltas

    anchor = build_models(load_config("tiny")).anchor.eval()
    randomise_bn(anchor)
    tree = donor_tree(anchor.n_layers, 3, task=1, donor=0, depth=2)
    x = torch.randn(64, 3, 16, 16)
    deltas = tree_statistics_deltas(anchor, tree, x, batch=64)
    node = anchor.node(2, 1)  # reads stream 0's node (1, 0): a cross-stream edge
    name, bn = next((n, m) for n, m in node.named_modules() if isinstance(m, torch.nn.BatchNorm2d))
    seen = []
    handle = bn.register_forward_hook(lambda m, i, o: seen.append(o.clone()))  # before the in-place ReLU
    with torch.no_grad():
        anchor.forward_tree(x, tree, deltas)
    handle.remove()
    out = seen[0]
    torch.testing.assert_close(out.mean((0, 2, 3)), bn.bias.detach(), atol=1e-3, rtol=0)
    std = out.transpose(0, 1).flatten(1).std(1)
    torch.testing.assert_close(std, bn.weight.detach().abs(), rtol=5e-3, atol=1e-3)
    assert set(deltas[(2, 1)]) >= {f"{name}.weight", f"{name}.bias"}


def test_with_own_statistics_re_measures_every_batchnorm_and_leaves_the_original(randomise_bn):
    import torch

    from trainer.recalibrate import with_own_statistics

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).eval()
    randomise_bn(net)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(32, 3, 8, 8) * 2 + 1
    own = with_own_statistics(net, lambda m, xb: m(xb), x, batch=32)
    with torch.no_grad():
        out = own(x)
    assert not own.training
    torch.testing.assert_close(out.mean((0, 2, 3)), net[1].bias.detach(), atol=1e-4, rtol=0)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
