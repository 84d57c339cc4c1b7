"""Tests for minigen.nn.layers (group_norm, norm_act, zero_init, downsample against torch.nn.functional;
CheckedModule's pre-hook with positional and keyword arguments, deep copies and pickling) and the entry
checks of minigen.nn.residual.ResidualBlock."""

import copy
import io
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from minigen.nn.layers import (
    CheckedModule,
    downsample,
    group_norm,
    norm_act,
    zero_init,
)
from minigen.nn.residual import ResidualBlock


@pytest.mark.parametrize("channels", [1, 3, 4, 6, 8, 12, 16, 24])
def test_group_norm_uses_gcd_groups_and_matches_functional(channels):
    norm = group_norm(channels)
    assert (
        norm.num_groups == math.gcd(8, channels) and norm.num_channels == channels
    )
    with torch.no_grad():
        norm.weight.normal_(), norm.bias.normal_()
    x = torch.randn(2, channels, 5, 3) * 3 + 1
    expected = F.group_norm(
        x, math.gcd(8, channels), norm.weight, norm.bias, eps=1e-5
    )
    torch.testing.assert_close(norm(x), expected)


def test_norm_act_is_group_norm_then_silu():
    layer = norm_act(12)
    with torch.no_grad():
        layer[0].weight.normal_(), layer[0].bias.normal_()
    x = torch.randn(2, 12, 4, 4) * 2 - 1
    expected = F.silu(F.group_norm(x, 4, layer[0].weight, layer[0].bias))
    torch.testing.assert_close(layer(x), expected)


def test_zero_init_zeroes_every_parameter_and_returns_the_module():
    conv = nn.Conv2d(3, 4, 3)
    assert zero_init(conv) is conv
    assert all(not p.any() for p in conv.parameters())
    assert torch.equal(conv(torch.randn(1, 3, 5, 5)), torch.zeros(1, 4, 3, 3))


@pytest.mark.parametrize("c_in, c_out, side", [(3, None, 8), (4, 6, 6), (2, 5, 16)])
def test_downsample_halves_the_side_like_a_stride_2_convolution(c_in, c_out, side):
    layer = downsample(c_in, c_out)
    x = torch.randn(2, c_in, side, side)
    out = layer(x)
    assert out.shape == (2, c_out or c_in, side // 2, side // 2)
    c_out = c_out or c_in
    assert (
        sum(p.numel() for p in layer.parameters()) == c_out * c_in * 9 + c_out
    )  # a bias too
    torch.testing.assert_close(
        out, F.conv2d(x, layer.weight, layer.bias, stride=2, padding=1)
    )


def test_layer_constructors_reject_bad_arguments():
    with pytest.raises(ValueError, match="channels must be an int >= 1"):
        group_norm(0)
    with pytest.raises(TypeError, match="channels must be an int"):
        norm_act(4.0)
    with pytest.raises(TypeError, match="c_in must be an int"):
        downsample("3")
    with pytest.raises(ValueError, match="c_out must be an int >= 1"):
        downsample(3, 0)


# --- CheckedModule ------------------------------------------------------------------------------------------


class Scale(CheckedModule):
    def __init__(self, features):
        super().__init__()
        self.features = features
        self.weight = nn.Parameter(torch.ones(features))
        self.seen = []

    def forward(self, x, factor=1.0):
        return x * self.weight * factor

    def check_inputs(self, x, factor=1.0):
        self.seen.append(factor)
        if x.shape[-1] != self.features:
            raise ValueError(f"x must end in {self.features} features")


def test_checked_module_checks_positional_and_keyword_arguments():
    layer = Scale(3)
    assert torch.equal(layer(torch.ones(2, 3), 2.0), torch.full((2, 3), 2.0))
    layer(torch.ones(2, 3), factor=5.0)
    layer(x=torch.ones(2, 3))
    assert layer.seen == [2.0, 5.0, 1.0]
    with pytest.raises(ValueError, match="end in 3 features"):
        layer(torch.ones(2, 4))


def test_checked_module_copies_and_pickles_with_their_own_checks():
    layer = Scale(3)
    twin = copy.deepcopy(layer)
    twin.features = (
        4  # the copy's hook must read the copy's attributes, not the original's
    )
    with pytest.raises(ValueError, match="end in 4 features"):
        twin(torch.ones(1, 3))
    assert twin.seen == [1.0] and layer.seen == []
    layer(torch.ones(1, 3))
    buffer = io.BytesIO()
    torch.save(layer, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    with pytest.raises(ValueError, match="end in 3 features"):
        loaded(torch.ones(1, 5))


def test_checked_module_without_checks_says_so():
    class Forgetful(CheckedModule):
        def forward(self, x):
            return x

    with pytest.raises(
        NotImplementedError, match="Forgetful must define check_inputs"
    ):
        Forgetful()(torch.ones(1))


# --- ResidualBlock entry checks (its math is tested in test_unet.py) ----------------------------------------


def test_residual_block_rejects_bad_arguments():
    with pytest.raises(ValueError, match="dropout must lie in"):
        ResidualBlock(4, 4, 8, dropout=1.0)
    with pytest.raises(TypeError, match="dropout must be a number"):
        ResidualBlock(4, 4, 8, dropout="0.1")
    with pytest.raises(TypeError, match="emb_dim must be an int"):
        ResidualBlock(4, 4, 8.0)
    with pytest.raises(ValueError, match="c_out must be an int >= 1"):
        ResidualBlock(4, 0, 8)
    block = ResidualBlock(4, 6, 8)
    x, emb = torch.randn(2, 4, 3, 3), torch.randn(2, 8)
    assert block(x, emb=emb).shape == (2, 6, 3, 3)
    with pytest.raises(ValueError, match=r"expects x \(B, 4, H, W\)"):
        block(torch.randn(2, 6, 3, 3), emb)
    with pytest.raises(ValueError, match=r"expects emb \(2, 8\)"):
        block(x, torch.randn(3, 8))
    with pytest.raises(TypeError, match="emb must be a torch.Tensor"):
        block(x, None)
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        block(x.long(), emb)


def test_zero_init_refuses_what_is_not_a_module():
    with pytest.raises(
        TypeError, match="module must be an nn.Module, got NoneType"
    ):
        zero_init(None)
    with pytest.raises(
        TypeError, match="module must be a model instance, got the class Linear"
    ):
        zero_init(nn.Linear)
