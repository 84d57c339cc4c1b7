import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from minigen.data.shapes import ShapesWorld
from minigen.eval.metrics import psnr
from minigen.models.upsampler import (
    Upsampler2x,
    artifact_scores,
    artifact_scores_of,
    downsample,
    evaluate_upsampler,
    restore,
    train_upsampler,
)
from minigen.nn.resample import UPSAMPLERS, PixelShuffleUp, make_upsampler
from minigen.ops.upsample import (
    checkerboard_score,
    conv_transpose2d,
    conv_transpose2d_scatter,
    insert_zeros,
    pixel_shuffle,
    pixel_unshuffle,
)


@st.composite
def transposed_cases(draw):
    """Random valid arguments of F.conv_transpose2d (float64)."""
    groups = draw(st.integers(1, 3))
    c_in, c_out = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ah, aw = (
        draw(st.integers(0, max(sh, dh) - 1)),
        draw(st.integers(0, max(sw, dw) - 1)),
    )
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    # keep the output positive: p <= ((i - 1)s + d(k - 1) + a) / 2
    ph = draw(st.integers(0, ((h - 1) * sh + dh * (kh - 1) + ah) // 2))
    pw = draw(st.integers(0, ((w - 1) * sw + dw * (kw - 1) + aw) // 2))
    seed = draw(st.integers(0, 2**16))
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(2, c_in, h, w, dtype=torch.float64, generator=generator)
    weight = torch.randn(
        c_in, c_out // groups, kh, kw, dtype=torch.float64, generator=generator
    )
    bias = (
        torch.randn(c_out, dtype=torch.float64, generator=generator)
        if draw(st.booleans())
        else None
    )
    kwargs = dict(
        stride=(sh, sw),
        padding=(ph, pw),
        output_padding=(ah, aw),
        dilation=(dh, dw),
        groups=groups,
    )
    return x, weight, bias, kwargs


@settings(max_examples=150, deadline=None)
@given(transposed_cases())
def test_conv_transpose2d_matches_torch(case):
    x, weight, bias, kwargs = case
    expected = F.conv_transpose2d(x, weight, bias, **kwargs)
    torch.testing.assert_close(
        conv_transpose2d(x, weight, bias, **kwargs), expected
    )


@settings(max_examples=60, deadline=None)
@given(transposed_cases())
def test_conv_transpose2d_scatter_matches_torch(case):
    x, weight, bias, kwargs = case
    expected = F.conv_transpose2d(x, weight, bias, **kwargs)
    torch.testing.assert_close(
        conv_transpose2d_scatter(x, weight, bias, **kwargs), expected
    )


def test_conv_transpose2d_gradient_matches_torch():
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(2, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    ours = torch.autograd.grad(
        conv_transpose2d(x, weight, stride=2, padding=1).sum(), (x, weight)
    )
    theirs = torch.autograd.grad(
        F.conv_transpose2d(x, weight, stride=2, padding=1).sum(), (x, weight)
    )
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b)


def test_transposed_conv_is_the_adjoint_of_conv():
    """<conv(u), v> = <u, conv_transpose(v)>: the transposed convolution is the convolution's transpose."""
    u = torch.randn(1, 2, 9, 9, dtype=torch.float64)
    weight = torch.randn(3, 2, 3, 3, dtype=torch.float64)
    v = torch.randn(
        1, 3, 4, 4, dtype=torch.float64
    )  # conv of a 9x9 by k3 s2 p0 is 4x4
    left = (F.conv2d(u, weight, stride=2) * v).sum()
    right = (u * conv_transpose2d(v, weight, stride=2)).sum()
    torch.testing.assert_close(left, right)


def test_insert_zeros():
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    expected = torch.tensor([[[[1.0, 0, 0, 2.0], [0, 0, 0, 0], [3.0, 0, 0, 4.0]]]])
    torch.testing.assert_close(insert_zeros(x, (2, 3)), expected)


@pytest.mark.parametrize("op", [conv_transpose2d, conv_transpose2d_scatter])
def test_transposed_bad_input_fails_clearly(op):
    x, weight = torch.randn(1, 2, 4, 4), torch.randn(2, 3, 3, 3)
    with pytest.raises(ValueError, match="first axis"):
        op(x, torch.randn(3, 2, 3, 3))
    with pytest.raises(ValueError, match="output_padding"):
        op(x, weight, stride=2, output_padding=2)
    with pytest.raises(ValueError, match="not positive"):
        op(torch.randn(1, 2, 1, 1), weight, padding=2)
    with pytest.raises(ValueError, match="bias"):
        op(x, weight, bias=torch.randn(2))
    with pytest.raises(TypeError, match="float64"):
        op(x, weight.double())
    with pytest.raises(
        TypeError, match="^x is torch.float32 but bias is torch.float64"
    ):
        op(x, weight, bias=torch.randn(3, dtype=torch.float64))
    with pytest.raises(
        TypeError, match=r"^x must be a torch.Tensor \(B, C_in, H, W\), got list"
    ):
        op(x.tolist(), weight)
    with pytest.raises(
        ValueError,
        match=r"^weight must be a 4-d tensor \(C_in, C_out / groups, kH, kW\)",
    ):
        op(x, weight[0])
    with pytest.raises(TypeError, match="^bias must be a torch.Tensor"):
        op(x, weight, bias=[0.0, 0.0, 0.0])
    with pytest.raises(TypeError, match="^groups must be an int, got str '1'"):
        op(x, weight, groups="1")
    with pytest.raises(ValueError, match="^stride s must be an int <= 1,000,000"):
        op(x, weight, stride=10**9)
    with pytest.raises(TypeError, match="^padding p must be an int, got float"):
        op(x, weight, padding=0.5)


def test_insert_zeros_bad_input():
    with pytest.raises(ValueError, match="^stride must be an int >= 1, got 0"):
        insert_zeros(torch.zeros(1, 1, 2, 2), (1, 0))
    with pytest.raises(ValueError, match="^stride must be an int <= 1,000,000"):
        insert_zeros(torch.zeros(1, 1, 2, 2), 10**9)
    with pytest.raises(TypeError, match="^stride must be an int, got float"):
        insert_zeros(torch.zeros(1, 1, 2, 2), 2.0)
    with pytest.raises(ValueError, match=r"^x must be a 4-d tensor \(B, C, H, W\)"):
        insert_zeros(torch.zeros(2, 2), 2)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(1, 3), st.integers(1, 4), st.integers(1, 4))
def test_pixel_shuffle_matches_torch(r, channels, h, w):
    x = torch.randn(2, channels * r * r, h, w)
    torch.testing.assert_close(pixel_shuffle(x, r), F.pixel_shuffle(x, r))
    y = torch.randn(2, channels, h * r, w * r)
    torch.testing.assert_close(pixel_unshuffle(y, r), F.pixel_unshuffle(y, r))
    torch.testing.assert_close(pixel_shuffle(pixel_unshuffle(y, r), r), y)


def test_pixel_shuffle_bad_input():
    with pytest.raises(ValueError, match="C\\*4"):
        pixel_shuffle(torch.randn(1, 6, 2, 2), 2)
    with pytest.raises(ValueError, match="divisible by 2"):
        pixel_unshuffle(torch.randn(1, 1, 3, 4), 2)
    with pytest.raises(
        ValueError, match="^upscale factor r must be an int >= 1, got 0"
    ):
        pixel_shuffle(torch.randn(1, 4, 2, 2), 0)
    with pytest.raises(
        TypeError, match="^upscale factor r must be an int, got float 2.0"
    ):
        pixel_unshuffle(torch.randn(1, 1, 4, 4), 2.0)
    with pytest.raises(
        ValueError, match="^upscale factor r must be an int <= 1,000,000"
    ):
        pixel_shuffle(torch.randn(1, 4, 2, 2), 10**9)
    with pytest.raises(
        TypeError, match=r"^x must be a torch.Tensor \(B, C, H, W\), got list"
    ):
        pixel_shuffle([[1.0]], 1)
    with pytest.raises(
        ValueError,
        match=r"^x must be a 4-d tensor \(B, C, H, W\), got shape \(4, 2, 2\)",
    ):
        pixel_unshuffle(torch.randn(4, 2, 2), 2)


@pytest.mark.parametrize(
    "x, error, message",
    [
        (None, TypeError, "x must be a torch.Tensor"),
        ([[1.0]], TypeError, "x must be a torch.Tensor"),
        (torch.randn(3, 8, 8), ValueError, "x must be a 4-d tensor"),
        (torch.randn(2, 4, 8, 8), ValueError, r"x must have shape \(B, 3, H, W\)"),
        (torch.ones(2, 3, 8, 8, dtype=torch.long), TypeError, "floating"),
    ],
)
def test_upsampler2x_names_a_wrong_input(x, error, message):
    with pytest.raises(error, match=message):
        Upsampler2x("pixel shuffle", channels=4)(x)


@pytest.mark.parametrize("name", UPSAMPLERS)
def test_upsampler_shapes(name):
    module = make_upsampler(name, 5)
    assert module(torch.randn(2, 5, 7, 6)).shape == (2, 5, 14, 12)
    assert Upsampler2x(name, channels=4)(torch.randn(2, 3, 8, 8)).shape == (
        2,
        3,
        16,
        16,
    )


def test_make_upsampler_unknown_name():
    with pytest.raises(ValueError, match="valid names"):
        make_upsampler("transposed k5s2", 4)


def test_transposed_module_is_the_from_scratch_op():
    module = make_upsampler("transposed k3s2", 3).double()
    x = torch.randn(1, 3, 5, 5, dtype=torch.float64)
    conv = module.conv
    expected = conv_transpose2d(
        x, conv.weight, conv.bias, stride=2, padding=1, output_padding=1
    )
    torch.testing.assert_close(module(x), expected)


def test_checkerboard_score_known_maps():
    rows, cols = torch.arange(20.0).view(20, 1), torch.arange(20.0).view(1, 20)
    board = ((-1.0) ** (rows + cols)).expand(2, 3, 20, 20)
    ramp = (0.3 * rows - 0.7 * cols + 5).expand(2, 3, 20, 20)
    stripes = ((-1.0) ** rows).expand(1, 1, 20, 20)  # (pi, 0) alone
    torch.testing.assert_close(checkerboard_score(board), torch.ones(2))
    torch.testing.assert_close(checkerboard_score(7 * stripes), torch.ones(1))
    torch.testing.assert_close(
        checkerboard_score(ramp), torch.zeros(2), atol=1e-7, rtol=0
    )
    torch.testing.assert_close(
        checkerboard_score(torch.zeros(1, 1, 9, 9)), torch.zeros(1)
    )
    # a constant plus a small checkerboard: energy eps^2 / (c^2 + eps^2)
    torch.testing.assert_close(
        checkerboard_score(2 + 0.5 * board), torch.full((2,), 0.25 / 4.25)
    )


def test_checkerboard_score_is_scale_invariant_and_bounded():
    y = torch.randn(3, 2, 16, 16)
    scores = checkerboard_score(y)
    torch.testing.assert_close(checkerboard_score(-50 * y), scores)
    assert ((scores >= 0) & (scores <= 1)).all()


def test_checkerboard_score_rejects_small_maps():
    with pytest.raises(ValueError, match="at least 7"):
        checkerboard_score(torch.randn(1, 1, 6, 10))
    with pytest.raises(
        ValueError,
        match=r"^y must be a 4-d tensor \(B, C, H, W\), got shape \(8, 8\)",
    ):
        checkerboard_score(torch.randn(8, 8))
    with pytest.raises(TypeError, match="^y must be a torch.Tensor"):
        checkerboard_score(torch.randn(1, 1, 8, 8).numpy())
    with pytest.raises(
        ValueError, match=r"^y must hold at least one map, got shape \(0, 1, 8, 8\)"
    ):
        checkerboard_score(torch.randn(0, 1, 8, 8))


def test_checkerboard_score_of_constant_input():
    """The issue's known inputs: resize-conv (nearest) is exactly 0, k3s2 transposed conv is not."""
    assert artifact_scores("resize-conv nearest")["output"] == pytest.approx(
        0.0, abs=1e-12
    )
    assert artifact_scores("transposed k3s2")["output"] > 0.05


def test_icnr_removes_pixel_shuffle_checkerboard():
    torch.manual_seed(0)
    assert artifact_scores_of(PixelShuffleUp(4), 4)["output"] > 0.05
    assert artifact_scores_of(PixelShuffleUp(4, icnr=True), 4)[
        "output"
    ] == pytest.approx(0.0, abs=1e-12)


def test_gradient_score_sees_strided_convolution():
    """A stride-2 k3 convolution sends back a checkerboard gradient (Odena et al. 2016); stride 1 does not."""
    torch.manual_seed(0)
    assert (
        artifact_scores_of(nn.Conv2d(4, 4, 3, stride=2, padding=1), 4)["gradient"]
        > 0.05
    )
    assert artifact_scores_of(nn.Conv2d(4, 4, 3, padding=1), 4)[
        "gradient"
    ] == pytest.approx(0.0, abs=1e-12)


def test_psnr_closed_form():
    target = torch.zeros(2, 3, 4, 4)
    pred = target.clone()
    pred[0] += 0.1  # MSE 0.01 -> 20 dB
    pred[1, 0, 0, 0] = 1.0  # MSE 1/48 -> 10 log10(48)
    torch.testing.assert_close(
        psnr(pred, target), torch.tensor([20.0, 10 * math.log10(48)])
    )
    assert psnr(target, target).isinf().all()
    torch.testing.assert_close(
        psnr(2 * pred, 2 * target, max_value=2.0), psnr(pred, target)
    )
    with pytest.raises(ValueError, match="same shape"):
        psnr(pred, target[:1])


def test_smoke_training_lowers_the_loss():
    world = ShapesWorld(resolution=32)
    model, history = train_upsampler(
        "resize-conv nearest",
        world,
        steps=30,
        batch_size=16,
        channels=8,
        progress=False,
    )
    assert len(history.losses) == 30
    assert sum(history.losses[-5:]) / 5 < 0.7 * sum(history.losses[:5]) / 5
    assert not model.training


def checker_mask(like):
    mask = torch.zeros_like(like)
    mask[..., ::2, ::2] = 1.0
    return mask


class Doubling(nn.Module):
    """x2 nearest upsampling times `gain`, plus `checker` times a stride-2
    checkerboard; a dropout layer that must be off when evaluated."""

    def __init__(self, gain: float = 1.0, checker: float = 0.0):
        super().__init__()
        self.gain, self.checker = gain, checker
        self.drop = nn.Dropout(0.5)
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        y = self.drop(F.interpolate(x, scale_factor=2) * self.gain * self.scale)
        return y + self.checker * checker_mask(y)


def brute_force_psnr(restored, truth):
    mse = ((restored - truth) ** 2).flatten(1).mean(1)
    return (10 * torch.log10(1 / mse)).mean().item()


def test_restore_undoes_downsampling_in_eval_mode_and_clamps():
    images = ShapesWorld().scenes(6, split="test").images
    model = Doubling(gain=3.0).train()
    restored = restore(model, images)
    expected = (3 * F.interpolate(F.avg_pool2d(images, 2), scale_factor=2)).clamp(
        0, 1
    )
    torch.testing.assert_close(restored, expected)  # no dropout, clamped
    assert model.training  # the mode is restored
    assert restored.dtype == torch.float32 and not restored.requires_grad


def test_evaluate_upsampler_matches_brute_force_and_sees_checkerboards():
    images = ShapesWorld().scenes(8, split="test").images
    blocky = F.interpolate(F.avg_pool2d(images, 2), scale_factor=2)
    plain = evaluate_upsampler(Doubling().train(), images)
    assert plain["psnr"] == pytest.approx(
        brute_force_psnr(blocky, images), rel=1e-5
    )
    assert plain["score"] == pytest.approx(
        checkerboard_score(blocky).mean().item(), rel=1e-5
    )
    assert plain["grey"] < 1e-6  # a flat grey input stays flat
    checkered = evaluate_upsampler(Doubling(checker=0.2), images)
    assert checkered["grey"] > 0.01
    assert checkered["score"] > plain["score"]
    expected = brute_force_psnr(
        (blocky + 0.2 * checker_mask(blocky)).clamp(0, 1), images
    )
    assert checkered["psnr"] == pytest.approx(expected, rel=1e-5)


# --- bad input at the entry points: a clear TypeError or ValueError, never silence ---


def test_downsample_is_2x2_average_pooling_and_checks_its_images():
    images = torch.rand(2, 3, 8, 6, dtype=torch.float64)
    # brute force: the mean of each 2x2 block
    expected = images.unfold(2, 2, 2).unfold(3, 2, 2).mean(dim=(-1, -2))
    torch.testing.assert_close(downsample(images), expected)
    with pytest.raises(TypeError, match="images must be a torch.Tensor"):
        downsample("images")
    with pytest.raises(
        ValueError, match=r"images must be a 4-d tensor \(B, 3, H, W\)"
    ):
        downsample(torch.rand(3, 8, 8))
    with pytest.raises(TypeError, match="images must be a floating-point tensor"):
        downsample(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="even height and width"):
        downsample(torch.rand(1, 3, 7, 8))


def test_artifact_scores_take_any_finite_constant_but_not_nan():
    torch.manual_seed(0)
    up = nn.ConvTranspose2d(
        4, 4, 3, stride=2, padding=1, output_padding=1, bias=False
    )
    at_one = artifact_scores_of(up, 4, value=1.0)
    # a linear map without bias: the score is the same for -1 (and any scale) as for 1
    assert artifact_scores_of(up, 4, value=-1.0) == pytest.approx(at_one)
    assert artifact_scores_of(up, 4, value=-3.5) == pytest.approx(at_one)
    with pytest.raises(ValueError, match="value must be a finite number, got nan"):
        artifact_scores_of(up, 4, value=float("nan"))


def test_a_module_that_cannot_take_the_input_is_named():
    with pytest.raises(
        ValueError,
        match=r"the module Linear failed on a constant input of shape \(1, 4, 16, 16\)",
    ):
        artifact_scores_of(nn.Linear(2, 2), 4)
    world = ShapesWorld()
    with pytest.raises(
        ValueError,
        match=r"the module Linear failed on downsampled scenes of shape \(2, 3, 16, 16\)",
    ):
        evaluate_upsampler(nn.Linear(2, 2), world.scenes(2).images)
    with pytest.raises(
        ValueError,
        match=r"images must be a 4-d tensor \(N, 3, H, W\), got shape \(3, 32, 32\)",
    ):
        restore(Doubling(), torch.rand(3, 32, 32))
    with pytest.raises(TypeError, match="module must be an nn.Module, got str"):
        artifact_scores_of("pixel shuffle", 4)
