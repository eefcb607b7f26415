import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgecore.tree import used_nodes
from trainer.regularizer import (
    RegularizerConfig,
    active_loss,
    branching_regularizer,
    inactive_loss,
    p_use,
    rsa_affinity,
)


def brute_force_p_use(nus):
    """Exact P(node (l, i) used) by enumerating every tree with its probability."""
    L, n = len(nus), nus[0].shape[0]
    probs = [np.zeros(n) for _ in range(L + 1)]
    choices = [range(n)] * (L * n)
    for flat in itertools.product(*choices):
        tree = [flat[l * n : (l + 1) * n] for l in range(L)]
        p = np.prod([float(nus[l][j, tree[l][j]]) for l in range(L) for j in range(n)])
        for l, row in enumerate(used_nodes(tree)):
            probs[l] += p * np.array(row, dtype=float)
    return probs


def random_nus(L, n, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.softmax(torch.randn(n, n, generator=g) * 2, -1) for _ in range(L)]


@pytest.mark.parametrize("n", [2, 3])
def test_p_use_top_choice_is_exact(n):
    # With one branching choice the children's picks are independent: the DP is exact.
    nus = random_nus(1, n, seed=n)
    for got, want in zip(p_use(nus), brute_force_p_use(nus)):
        np.testing.assert_allclose(got.numpy(), want, atol=1e-6)


@pytest.mark.parametrize("L,n", [(2, 2), (3, 2), (2, 3)])
def test_p_use_exact_for_deterministic_trees_at_any_depth(L, n):
    g = torch.Generator().manual_seed(L * 10 + n)
    trees = torch.randint(0, n, (L, n), generator=g)
    nus = [F.one_hot(t, n).float() for t in trees]
    for got, want in zip(p_use(nus), brute_force_p_use(nus)):
        np.testing.assert_allclose(got.numpy(), want, atol=1e-6)


@pytest.mark.parametrize("L,n", [(2, 2), (2, 3), (3, 2)])
def test_p_use_deep_layers_close_to_enumeration(L, n):
    # Below the top the DP treats sibling usage as independent (appendix E's
    # approximation); it stays a probability and near the exact marginal.
    nus = random_nus(L, n, seed=7 * L + n)
    for got, want in zip(p_use(nus), brute_force_p_use(nus)):
        assert ((got >= 0) & (got <= 1)).all()
        np.testing.assert_allclose(got.numpy(), want, atol=0.15)


def cfg(**kw):
    return RegularizerConfig(tau=0.2, **kw)


def test_active_loss_gradient_reaches_active_rows_and_usage_only():
    n, L = 3, 2
    logits = torch.randn(L, n, n, requires_grad=True)
    nus = list(torch.softmax(logits, -1))
    mask = torch.tensor([True, True, False])
    active_loss(nus, mask, torch.ones(n, n), cfg()).backward()
    assert logits.grad[:, :2].abs().sum() > 0
    # An inactive child's row never enters a distance term; at layer l it only
    # moves P_use of layer-l nodes, which weighs the terms of the choice below.
    # The stems' choice (layer 0) has no choice below it: no gradient there.
    assert logits.grad[0, 2].abs().sum() == 0
    assert logits.grad[-1, 2].abs().sum() > 0


def test_active_loss_zero_when_active_children_agree_and_no_grad_with_one_task():
    same = [torch.tensor([[0.7, 0.2, 0.1]] * 3) for _ in range(2)]
    assert active_loss(same, torch.tensor([True, True, True]), torch.ones(3, 3), cfg()) == 0
    logits = torch.randn(2, 3, 3, requires_grad=True)
    loss = active_loss(list(torch.softmax(logits, -1)), torch.tensor([True, False, False]), torch.ones(3, 3), cfg())
    assert loss == 0


def test_affinity_and_layer_weighting_scale_the_active_loss():
    nus = random_nus(2, 3, seed=1)
    mask = torch.ones(3, dtype=torch.bool)
    full = active_loss(nus, mask, torch.ones(3, 3), cfg())
    half = active_loss(nus, mask, torch.full((3, 3), 0.5), cfg())
    torch.testing.assert_close(half, full / 2)
    assert active_loss(nus, mask, torch.ones(3, 3), cfg(layer_weighting=False)) > full


def test_inactive_loss_pulls_inactive_rows_to_nearest_active():
    nus = [torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 1.0, 0]])]
    mask = torch.tensor([True, True, False])
    assert inactive_loss(nus, mask) == 0  # task 2 already copies active task 1
    nus = [torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]], requires_grad=True)]
    loss = inactive_loss(nus, mask)
    assert loss.item() == pytest.approx(2.0)
    loss.backward()
    assert nus[0].grad[2].abs().sum() > 0


def test_graded_inactive_pull_fades_at_the_threshold():
    nus = [torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])]
    r, aff = torch.tensor([0.8, 0.15, 0.05]), torch.ones(3, 3)  # tau 0.2: tasks 1 and 2 inactive
    plain = branching_regularizer(nus, r, 0.0, aff, RegularizerConfig(tau=0.2))[1]["inactive"]
    graded = branching_regularizer(nus, r, 0.0, aff, RegularizerConfig(tau=0.2, graded_inactive=True))[1]["inactive"]
    assert plain == pytest.approx(4.0)  # each inactive row is 2 away from the active one
    assert graded == pytest.approx(2 * (0.05 / 0.2) + 2 * (0.15 / 0.2))


def test_omega_active_term_scales_with_cost_preference():
    nus = random_nus(2, 3, seed=3)
    r = torch.tensor([0.4, 0.4, 0.2])
    aff = torch.ones(3, 3)
    o0, parts = branching_regularizer(nus, r, 0.0, aff, RegularizerConfig(tau=0.3))
    o1, _ = branching_regularizer(nus, r, 1.0, aff, RegularizerConfig(tau=0.3))
    assert parts["active"] > 0 and parts["inactive"] > 0
    torch.testing.assert_close(o0, torch.tensor(0.1 * parts["inactive"]))
    torch.testing.assert_close(o1 - o0, torch.tensor(parts["active"]))


def test_rsa_affinity_properties():
    g = torch.Generator().manual_seed(0)
    base = [torch.randn(8, 4, 3, 3, generator=g) for _ in range(2)]
    other = [torch.randn(8, 4, 3, 3, generator=g) for _ in range(2)]
    scaled = [2.5 * f for f in base]  # cosine similarity ignores scale
    aff = rsa_affinity([base, scaled, other])
    assert torch.allclose(aff.diagonal(), torch.ones(3))
    assert aff[0, 1] == pytest.approx(1.0) and aff[0, 2] == pytest.approx(0.0, abs=1e-6)
    assert ((aff >= 0) & (aff <= 1)).all()


def test_expected_cost_of_a_discrete_tree_is_its_used_nodes_cost():
    from trainer.regularizer import expected_cost

    tree = ((0, 0, 0), (0, 1, 1))  # one stem; layer 1: nodes 0 and 1 used
    nus = [F.one_hot(torch.tensor(row), 3).float() for row in tree]
    cost = torch.arange(9, dtype=torch.float32).view(3, 3)  # node (l, i) costs 3l + i
    used = used_nodes(tree)
    want = sum(float(cost[l, i]) for l in range(3) for i in range(3) if used[l][i])
    assert float(expected_cost(nus, cost)) == pytest.approx(want)


def test_cost_term_scales_with_c_and_prices_sharing():
    cfg = RegularizerConfig(tau=0.2, lambda_active=0.0, lambda_inactive=0.0, lambda_cost=1.0)
    spread = list(torch.softmax(torch.zeros(2, 3, 3), -1))  # every child picks any parent
    shared = list(torch.softmax(torch.stack([torch.tensor([[6.0, 0, 0]] * 3), torch.zeros(3, 3)]), -1))
    r, aff, cost = torch.ones(3) / 3, torch.ones(3, 3), torch.ones(3, 3)
    at0, _ = branching_regularizer(spread, r, 0.0, aff, cfg, cost)
    at1, parts = branching_regularizer(spread, r, 1.0, aff, cfg, cost)
    assert at0.item() == 0 and at1.item() == pytest.approx(parts["cost"]) and parts["cost"] > 0
    # All children of the stems' layer reading stem 0 leaves two stems unused: cheaper.
    assert branching_regularizer(shared, r, 1.0, aff, cfg, cost)[0].item() < at1.item() - 0.5
    # lambda_cost = 0 is the paper's regulariser: node costs change nothing.
    paper = RegularizerConfig(tau=0.2)
    assert (
        branching_regularizer(spread, r, 1.0, aff, paper, cost)[0].item()
        == branching_regularizer(spread, r, 1.0, aff, paper)[0].item()
    )
