import pytest
import torch

from trainer.errors import TrainerError
from trainer.models.blocks import (
    BasicBlock,
    InvertedResidual,
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


@pytest.mark.parametrize("block", [BasicBlock(8, 16, 2), InvertedResidual(8, 8, 1, 4)])
def test_blocks_shapes_and_foldable_pairs(block):
    y = block(torch.randn(2, 8, 8, 8))
    assert y.shape[1] == (16 if isinstance(block, BasicBlock) else 8)
    for conv, bn in conv_bn_pairs(block):
        assert isinstance(block.get_submodule(conv), torch.nn.Conv2d)
        assert isinstance(block.get_submodule(bn), torch.nn.BatchNorm2d)
