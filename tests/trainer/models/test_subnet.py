import random

import pytest
import torch

from trainer.config import load_config
from trainer.models import build_models
from trainer.models.blocks import BasicBlock, InvertedResidual
from trainer.models.subnet import TreeFolder, fold_module


@pytest.fixture
def models(randomise_bn):
    torch.manual_seed(0)
    m = build_models(load_config("tiny"))
    randomise_bn(m.anchor)
    m.anchor.eval()
    return m


@pytest.mark.parametrize("block", [BasicBlock(8, 16, 2), InvertedResidual(8, 8, 1, 4)])
def test_folded_block_equals_block_with_deltas(block, randomise_bn):
    randomise_bn(block)
    block.eval()
    delta = {
        f"{n}.{p}": torch.randn(m.num_features) * 0.1
        for n, m in block.named_modules()
        if isinstance(m, torch.nn.BatchNorm2d)
        for p in ("weight", "bias")
    }
    from trainer.models.anchor import run_node

    x = torch.randn(2, 8, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(fold_module(block, delta)(x), run_node(block, x, delta), atol=1e-5, rtol=1e-5)
    folded = fold_module(block)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())


@pytest.mark.parametrize("seed", range(4))
def test_derived_module_equals_tree_model(models, seed):
    rng = random.Random(seed)
    anchor = models.anchor
    tree = [[rng.randrange(3) for _ in range(3)] for _ in range(anchor.n_layers)]
    r = torch.tensor([0.2, 0.5, 0.3])
    deltas = {k: {n: torch.randn_like(v) * 0.1 for n, v in d.items()} for k, d in models.adaptation(r, 0.5).items()}
    derived = anchor.subnet(tree, deltas)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        for got, want in zip(derived(x), anchor.forward_tree(x, tree, deltas)):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_derived_module_holds_only_used_nodes_with_readable_names(models):
    anchor = models.anchor
    trunk = [[0, 0, 0]] * anchor.n_layers  # one trunk on stream 0, split into 3 at the top block
    derived = anchor.subnet(trunk)
    assert sorted(derived.nodes) == sorted(["n0_0", "n1_0", "n2_0", "n3_0", "n4_0", "n4_1", "n4_2"])
    names = list(derived.weights())
    assert "nodes.n4_1.conv1.0.bias" in names  # folded conv gained a bias
    assert not any("running_mean" in n for n in names)


@pytest.mark.parametrize("seed", range(3))
def test_numpy_folder_equals_folded_module(models, seed):
    """TreeFolder (what the compiler and the runtime's exact mode use) gives the
    same names and values as folding the derived module in torch."""
    import numpy as np

    rng = random.Random(seed)
    tree = [[rng.randrange(3) for _ in range(3)] for _ in range(models.anchor.n_layers)]
    deltas = {
        k: {n: torch.randn_like(v) * 0.2 for n, v in d.items()}
        for k, d in models.adaptation(torch.tensor([0.2, 0.5, 0.3]), 0.3).items()
    }
    want = models.anchor.subnet(tree, deltas).weights()
    got = TreeFolder(models.anchor).weights(tree, deltas)
    assert set(got) == set(want)
    for k in want:
        assert got[k].dtype == want[k].dtype == np.float32
        np.testing.assert_array_equal(got[k], want[k])
