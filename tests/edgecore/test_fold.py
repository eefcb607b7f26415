import numpy as np
import pytest
import torch

from edgecore.fold import fold_conv_bn


@pytest.mark.parametrize("groups,bias", [(1, False), (1, True), (4, False)])
def test_folded_conv_equals_conv_then_adapted_bn(groups, bias):
    torch.manual_seed(groups)
    conv = torch.nn.Conv2d(8, 8, 3, padding=1, groups=groups, bias=bias).double()
    bn = torch.nn.BatchNorm2d(8).double().eval()
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.2, 2)
    bn.weight.data.uniform_(0.5, 1.5)
    bn.bias.data.uniform_(-0.5, 0.5)
    dgamma, dbeta = torch.randn(8).double() * 0.1, torch.randn(8).double() * 0.1
    x = torch.randn(2, 8, 6, 6).double()
    with torch.no_grad():
        y = torch.nn.functional.batch_norm(
            conv(x), bn.running_mean, bn.running_var, bn.weight + dgamma, bn.bias + dbeta, False, 0.0, bn.eps
        )
    w_f, b_f = fold_conv_bn(
        conv.weight.detach().numpy(),
        None if not bias else conv.bias.detach().numpy(),
        bn.weight.detach().numpy(),
        bn.bias.detach().numpy(),
        bn.running_mean.numpy(),
        bn.running_var.numpy(),
        bn.eps,
        dgamma.numpy(),
        dbeta.numpy(),
    )
    folded = torch.nn.functional.conv2d(x, torch.from_numpy(w_f), torch.from_numpy(b_f), padding=1, groups=groups)
    torch.testing.assert_close(folded, y, rtol=1e-10, atol=1e-10)


def test_fold_without_deltas_keeps_dtype_and_checks_shapes():
    w = np.ones((2, 3, 1, 1), np.float32)
    w_f, b_f = fold_conv_bn(w, None, np.array([2.0, 1.0]), np.zeros(2), np.array([1.0, 0.0]), np.array([3.0, 0.0]), 1.0)
    assert w_f.dtype == np.float32 and b_f.dtype == np.float32
    np.testing.assert_allclose(w_f[:, 0, 0, 0], [1.0, 1.0])  # 2/sqrt(4), 1/sqrt(1)
    np.testing.assert_allclose(b_f, [-1.0, 0.0])
    with pytest.raises(ValueError, match=r"gamma must have shape \(2,\), found \(3,\)"):
        fold_conv_bn(w, None, np.ones(3), np.zeros(2), np.zeros(2), np.ones(2), 1e-5)
