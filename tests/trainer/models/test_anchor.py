import random

import pytest
import torch
import torch.nn.functional as F

from edgecore.tree import identity_tree, path
from trainer.config import load_config
from trainer.models import build_models


@pytest.fixture
def models(randomise_bn):
    torch.manual_seed(0)
    m = build_models(load_config("tiny"))
    for module in m.modules().values():
        module.eval()
        randomise_bn(module)
    return m


def random_tree(n_layers, n_tasks, rng):
    return tuple(tuple(rng.randrange(n_tasks) for _ in range(n_tasks)) for _ in range(n_layers))


def naive(anchor, x, tree, deltas=None):
    """Each task's path computed on its own, recomputing shared prefixes."""
    outs = []
    for task in range(anchor.n_tasks):
        y = x
        for layer, stream in enumerate(path(tree, task)):
            y = run(anchor.node(layer, stream), y, (deltas or {}).get((layer, stream)))
        outs.append(anchor.heads[task](y))
    return outs


def run(module, x, delta):
    from trainer.models.anchor import run_node

    return run_node(module, x, delta)


@pytest.mark.parametrize("seed", range(5))
def test_tree_execution_equals_naive_per_task_paths(models, seed):
    rng = random.Random(seed)
    anchor = models.anchor
    tree = random_tree(anchor.n_layers, anchor.n_tasks, rng)
    x = torch.randn(2, 3, 16, 16)
    r = torch.tensor([0.2, 0.5, 0.3])
    deltas = {k: {n: torch.randn_like(v) * 0.1 for n, v in d.items()} for k, d in models.adaptation(r, 0.5).items()}
    with torch.no_grad():
        for got, want in zip(anchor.forward_tree(x, tree, deltas), naive(anchor, x, tree, deltas)):
            torch.testing.assert_close(got, want)


def test_identity_tree_equals_single_task_streams(models):
    anchor, x = models.anchor, torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        outs = anchor.forward_tree(x, identity_tree(anchor.n_layers, anchor.n_tasks))
        for i, out in enumerate(outs):
            torch.testing.assert_close(out, anchor.forward_stream(x, i))


def test_mixed_with_one_hot_samples_equals_tree(models):
    anchor = models.anchor
    tree = random_tree(anchor.n_layers, anchor.n_tasks, random.Random(11))
    nus = [F.one_hot(torch.tensor(row), anchor.n_tasks).float() for row in tree]
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        for got, want in zip(anchor.forward_mixed(x, nus), anchor.forward_tree(x, tree)):
            torch.testing.assert_close(got, want)


def test_mixed_passes_gradient_to_branching_samples(models):
    anchor = models.anchor
    logits = torch.zeros(anchor.n_layers, anchor.n_tasks, anchor.n_tasks, requires_grad=True)
    nus = [F.gumbel_softmax(lg, tau=1.0, dim=-1) for lg in logits]
    sum(o.square().mean() for o in anchor.forward_mixed(torch.randn(2, 3, 16, 16), nus)).backward()
    assert logits.grad.abs().sum(dim=(1, 2)).gt(0).all()  # every layer's choice gets a gradient


def test_bn_deltas_shift_outputs_and_leave_anchor_untouched(models):
    anchor = models.anchor
    before = {k: v.clone() for k, v in anchor.state_dict().items()}
    tree, x = identity_tree(anchor.n_layers, anchor.n_tasks), torch.randn(2, 3, 16, 16)
    zero = {
        k: {n: torch.zeros_like(v) for n, v in d.items()} for k, d in models.adaptation(torch.ones(3) / 3, 0.0).items()
    }
    with torch.no_grad():
        base = anchor.forward_tree(x, tree)
        torch.testing.assert_close(anchor.forward_tree(x, tree, zero), base)
        bumped = {k: {n: v + 0.5 for n, v in d.items()} for k, d in zero.items()}
        assert not torch.allclose(anchor.forward_tree(x, tree, bumped)[0], base[0])
    for k, v in anchor.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("tree_input", [False, True])
def test_weight_hypernet_starts_near_zero_and_covers_every_bn(models, tree_input):
    """Deltas start small (near the unadapted anchor) but not at 0, so the body learns."""
    from edgecore.tree import identity_tree
    from trainer.models.hypernets import WeightHypernet

    anchor = models.anchor
    fresh = WeightHypernet(anchor.node_bn_layout(), anchor.n_tasks, tree_input=tree_input)
    tree = identity_tree(anchor.n_layers, anchor.n_tasks) if tree_input else None
    deltas = fresh(torch.tensor([0.1, 0.1, 0.8]), 1.0, tree)
    assert len(deltas) == (anchor.n_layers + 1) * anchor.n_tasks
    for (layer, stream), d in deltas.items():
        bns = {n for n, m in anchor.node(layer, stream).named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
        assert {k.rsplit(".", 1)[0] for k in d} == bns
        assert all(0 < float(v.abs().max()) < 0.05 for v in d.values())


def test_tree_features_count_the_tasks_through_each_node():
    """Node (l, p) carries the r-weighted count of the tasks whose path runs through it."""
    from trainer.models.hypernets import parents_onehot, tree_features

    tree = ((0, 0, 2), (0, 1, 2))  # L = 2, N = 3: task 1 reads stream 0's stem, then its own block
    r = torch.tensor([0.5, 0.3, 0.2])
    usage, used = tree_features(parents_onehot(tree, 3), r).view(2, 3, 3)
    torch.testing.assert_close(usage, torch.tensor([[0.8, 0.0, 0.2], [0.5, 0.3, 0.2], [0.5, 0.3, 0.2]]))
    torch.testing.assert_close(used, torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]))


def test_a_tree_reading_weight_hypernet_needs_the_tree():
    from trainer.models.hypernets import WeightHypernet

    hyper = WeightHypernet([((0, 0), [("bn", 4)])], n_tasks=3, tree_input=True)
    with pytest.raises(ValueError, match="pass tree="):
        hyper(torch.ones(3) / 3, 0.5)


def test_edge_hypernet_shapes_and_argmax_tree(models):
    edge = models.edge
    logits = edge(torch.tensor([0.2, 0.3, 0.5]), 0.5)
    assert logits.shape == (edge.n_layers, 3, 3)
    tree = edge.tree(torch.tensor([0.2, 0.3, 0.5]), 0.5)
    assert tree == tuple(tuple(int(i) for i in row) for row in logits.argmax(-1))


def test_phn_bn_outputs_every_task(models):
    outs = models.phn_bn(torch.randn(2, 3, 16, 16), torch.tensor([0.2, 0.3, 0.5]))
    assert [o.shape[1] for o in outs] == [5, 1, 3]
    assert all(o.shape[-2:] == (16, 16) for o in outs)


def test_streams_share_their_initial_weights_unless_disabled():
    from trainer.data import get_tasks
    from trainer.models.anchor import AnchorNet
    from trainer.models.blocks import get_backbone

    tasks, spec = get_tasks(["semseg", "depth", "normals"]), get_backbone("tiny-resnet", 0.5)
    shared = AnchorNet(tasks, spec, 8, 16)
    for l in range(shared.n_layers + 1):
        a, b = shared.node(l, 0).state_dict(), shared.node(l, 2).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)
        assert shared.node(l, 0).state_dict() is not shared.node(l, 2).state_dict()
    shared.node(1, 0).conv1[0].weight.data.add_(1.0)  # copies, not tied parameters
    assert not torch.equal(shared.node(1, 0).conv1[0].weight, shared.node(1, 1).conv1[0].weight)
    independent = AnchorNet(tasks, spec, 8, 16, shared_init=False)
    assert not torch.equal(independent.node(1, 0).conv1[0].weight, independent.node(1, 1).conv1[0].weight)
