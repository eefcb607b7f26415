"""SlimNet: one set of full-width weights serves every width configuration."""

import numpy as np
import pytest
import torch

from trainer.config import load_config
from trainer.models import build_models
from trainer.slim.family import FAMILY


@pytest.fixture
def net():
    torch.manual_seed(0)
    net = build_models(load_config("tiny-slim")).anchor
    with torch.no_grad():  # non-trivial BatchNorm sets, so a wrong set or slice shows up
        for name, b in net.named_buffers():
            if name.startswith("rm__"):
                b.uniform_(-0.3, 0.3)
            elif name.startswith("rv__"):
                b.uniform_(0.5, 1.5)
        for p in [*net.bn_weight.values(), *net.bn_bias.values()]:
            p.uniform_(0.5, 1.5)
    return net.eval()


SPECS = [(100, 100, 100, 100), (25, 50, 75, 100), (50, 25, 25, 75), (25, 25, 25, 25)]


@pytest.mark.parametrize("spec", SPECS)
def test_a_sliced_subnetwork_equals_the_slimmable_model_at_that_width(net, spec):
    """Slicing equals masking: the standalone module (real smaller tensors, BN folded)
    computes what the slimmable model computes at these widths."""
    x = torch.randn(2, 3, 16, 16)
    sub = net.subnet(spec)
    with torch.no_grad():
        for ref, out in zip(net(x, spec)[0], sub(x)):
            torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    enc_channels = sub.encoder[-1].conv2[0].out_channels
    assert enc_channels < net.unit_module(("enc", 100))[-1].conv2[0].out_channels or spec[0] == 100


def test_narrower_configurations_have_fewer_parameters(net):
    params = [sum(p.numel() for p in net.subnet(s).parameters()) for s in SPECS]
    assert params[0] > params[1] and params[0] > params[3] and min(params) == params[3]


@pytest.mark.parametrize("spec", SPECS[1:])
def test_numpy_folding_gives_the_subnetworks_weights(net, spec):
    """What the bundle stores (full arrays once + a slicing plan) folds, torch-free, to
    exactly the standalone module's weights, named as its graph's initializers."""
    arrays, plan = FAMILY.anchor_arrays(type("M", (), {"anchor": net})())
    weights = FAMILY.info.anchor(arrays, plan).weights(spec)
    state = net.subnet(spec).state_dict()
    assert set(weights) == set(state)
    for k, v in state.items():
        np.testing.assert_allclose(weights[k], v.numpy(), rtol=1e-6, atol=1e-6, err_msg=k)


def test_gradients_of_a_narrow_configuration_reach_only_its_slice(net):
    net.train()
    x = torch.randn(4, 3, 16, 16)
    sum(o.square().mean() for o in net(x, (25, 25, 25, 25))[0]).backward()
    first = next(v for k, v in net.params.items() if k.startswith("enc__0__0"))  # the stem conv
    used = net.unit_module(("enc", 25))[0][0].out_channels
    assert first.grad[:used].abs().sum() > 0 and first.grad[used:].abs().sum() == 0


def test_inverted_residual_encoders_slice_too():
    """MobileNetV2-style blocks (depthwise convolutions: groups follow the width)."""
    from trainer.config import load_config as load

    torch.manual_seed(0)
    net = build_models(load("tiny-slim", ["model.backbone=tiny-mbv2"])).anchor.eval()
    x = torch.randn(2, 3, 16, 16)
    for spec in [(50, 25, 75, 100), (25, 100, 50, 25)]:
        with torch.no_grad():
            for ref, out in zip(net(x, spec)[0], net.subnet(spec)(x)):
                torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
