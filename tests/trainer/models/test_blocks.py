import pytest
import torch

from trainer.errors import TrainerError
from trainer.models.blocks import (
    BasicBlock,
    ConvPool,
    InvertedResidual,
    Residual,
    conv_bn_pairs,
    count_params,
    get_backbone,
    make_blocks,
    make_stem,
)


def backbone_params(name):
    spec = get_backbone(name)
    return count_params(make_stem(spec)) + sum(count_params(b) for b in make_blocks(spec))


def test_paper_backbones_are_expressible():
    # ResNet-34's 16 basic blocks hold 21.28M parameters (torchvision, without
    # the 7x7 stem and the classifier); ours differs only in the stem.
    r34 = get_backbone("resnet34")
    assert len(r34.layers) == 16 and r34.layers[-1].channels == 512
    assert 21.2e6 < backbone_params("resnet34") < 21.4e6
    mb = get_backbone("mobilenetv2")
    assert len(mb.layers) == 17 and mb.layers[-1].channels == 320
    assert 1.8e6 < backbone_params("mobilenetv2") < 1.9e6  # MobileNetV2 features w/o last 1x1


def test_width_multiplier_and_unknown_backbone():
    assert get_backbone("tiny-resnet", 2.0).layers[0].channels == 2 * get_backbone("tiny-resnet").layers[0].channels
    with pytest.raises(TrainerError, match="unknown backbone 'resnet1000'.*tiny-resnet"):
        get_backbone("resnet1000")


@pytest.mark.parametrize(
    "block, out_shape",
    [
        (BasicBlock(8, 16, 2), (16, 4, 4)),
        (InvertedResidual(8, 8, 1, 4), (8, 8, 8)),
        (ConvPool(8, 16, 2), (16, 4, 4)),
        (Residual(8, 8), (8, 8, 8)),
    ],
)
def test_blocks_shapes_and_foldable_pairs(block, out_shape):
    y = block(torch.randn(2, 8, 8, 8))
    assert y.shape[1:] == out_shape
    for conv, bn in conv_bn_pairs(block):
        assert isinstance(block.get_submodule(conv), torch.nn.Conv2d)
        assert isinstance(block.get_submodule(bn), torch.nn.BatchNorm2d)


def test_resnet9_is_cifar10_fast_resnet9():
    # cifar10-fast's ResNet-9 holds 6,573,120 parameters with its 512 x 10 classifier
    # (no bias): 6,568,000 in prep + the five branching layers, as here.
    spec = get_backbone("resnet9")
    assert [(l.block, l.channels) for l in spec.layers] == [
        ("conv_pool", 128),
        ("residual", 128),
        ("conv_pool", 256),
        ("conv_pool", 512),
        ("residual", 512),
    ]
    assert (spec.stem_channels, spec.stem_stride) == (64, 1)
    assert backbone_params("resnet9") == 6_568_000
    net = torch.nn.Sequential(make_stem(spec), *make_blocks(spec))
    assert net(torch.zeros(1, 3, 32, 32)).shape == (1, 512, 4, 4)  # output stride 8
    tiny = get_backbone("tiny-resnet9", 0.5)
    assert [l.channels for l in tiny.layers] == [16, 16, 32, 64, 64] and tiny.stem_channels == 8


def test_residual_layer_keeps_its_shape():
    with pytest.raises(ValueError, match="residual layer keeps its shape"):
        Residual(8, 16)


RESNET9_SETTINGS = {
    "scenes": ["model.backbone=tiny-resnet9"],
    "cifar100": [
        "model.backbone=tiny-resnet9",
        "data.dataset=cifar100",
        "data.tasks=[aquatic_mammals, fish, trees]",
        "data.size=32",
    ],
}


def resnet9_models(dataset, randomise_bn):
    from trainer.config import load_config
    from trainer.models import build_models

    torch.manual_seed(0)
    cfg = load_config("tiny", RESNET9_SETTINGS[dataset])
    models = build_models(cfg)
    randomise_bn(models.anchor)
    return models, cfg.data.size


@pytest.mark.parametrize("dataset", sorted(RESNET9_SETTINGS))
def test_tiny_resnet9_anchor_runs_trees_and_folds(dataset, randomise_bn):
    """Every tree of the ResNet-9 anchor runs, and its BN-folded sub-network (what the
    compiler exports) and the numpy folder match the PyTorch tree with BN deltas."""
    from trainer.models.subnet import TreeFolder

    models, size = resnet9_models(dataset, randomise_bn)
    anchor = models.anchor.eval()
    assert anchor.n_layers == 5
    tree = [[0, 0, 0], [0, 1, 1], [0, 1, 2], [2, 2, 2], [0, 1, 2]]
    deltas = {
        k: {n: torch.randn_like(v) * 0.1 for n, v in d.items()}
        for k, d in models.adaptation(torch.tensor([0.2, 0.5, 0.3]), 0.5).items()
    }
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        outs = anchor.forward_tree(x, tree, deltas)
        derived = anchor.subnet(tree, deltas)
        for got, want in zip(derived(x), outs):
            torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    shape = (2, 5) if dataset == "cifar100" else (2, 5, size, size)
    assert outs[0].shape == shape
    got = TreeFolder(anchor).weights(tree, deltas)
    assert set(got) == set(derived.weights())


def test_tiny_resnet9_tree_exports_to_onnx(tmp_path, randomise_bn):
    """Max-pool and residual layers survive export: ONNX Runtime matches the folded module."""
    ort = pytest.importorskip("onnxruntime")
    from compiler.export import export_graph

    models, size = resnet9_models("cifar100", randomise_bn)
    derived = models.anchor.eval().subnet([[0, 0, 0], [0, 1, 1], [1, 1, 2], [0, 1, 2], [0, 1, 2]])
    export_graph(derived, (3, size, size), ["a", "b", "c"], tmp_path / "tree.onnx")
    x = torch.randn(1, 3, size, size)
    session = ort.InferenceSession(str(tmp_path / "tree.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": x.numpy()})
    with torch.no_grad():
        for g, want in zip(got, derived(x)):
            torch.testing.assert_close(torch.from_numpy(g), want, atol=1e-4, rtol=1e-4)
