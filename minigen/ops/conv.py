"""Convolution and pooling from scratch: a sliding dot product, max and mean.

Implements the operations whose arithmetic V. Dumoulin and F. Visin describe in "A
guide to convolution arithmetic for deep learning", arXiv:1603.07285 (2016), with
the conventions of torch.nn.functional.conv2d / max_pool2d / avg_pool2d, against
which the tests check them. Output sizes come from minigen.ops.arith, the single
source of the size arithmetic.

Like every deep-learning library, "convolution" here is cross-correlation: the
kernel is not flipped. (A flipped kernel is just another kernel, so a learned layer
loses nothing.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import einsum, rearrange, reduce

from minigen.core.validators import (
    check_bool,
    check_int,
    check_optional,
    check_tensor,
)
from minigen.ops.arith import (
    PaddingMode,
    conv_output_size,
    effective_kernel,
    per_axis,
    pool_output_size,
    same_padding,
)

IntPair = int | tuple[int, int]
Pair = tuple[int, int]


def _check_images(x: torch.Tensor, *, floating: bool = False) -> torch.Tensor:
    """x as a 4-D tensor (B, C, H, W)."""
    return check_tensor("x", x, dims=4, floating=floating, shape="(B, C, H, W)")


def _check_conv_inputs(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, groups: int
) -> None:
    """Check that x, weight, bias and groups describe one valid convolution."""
    _check_images(x)
    check_tensor("weight", weight, dims=4, shape="(C_out, C_in / groups, kH, kW)")
    check_optional(check_tensor, "bias", bias, dims=1, shape="(C_out,)")
    groups = check_int("groups", groups)
    channels, out_channels = x.shape[1], weight.shape[0]
    channels_per_group = weight.shape[1]
    if channels % groups or out_channels % groups:
        raise ValueError(
            f"groups={groups} must divide both the input channels ({channels}) and "
            f"the output channels ({out_channels})"
        )
    if channels_per_group * groups != channels:
        raise ValueError(
            f"weight of shape {tuple(weight.shape)} expects {channels_per_group} "
            f"channels per group, i.e. {channels_per_group * groups} input "
            f"channels with groups={groups}, but x has {channels}"
        )
    for name, tensor in (("weight", weight), ("bias", bias)):
        if tensor is not None and tensor.dtype != x.dtype:
            raise TypeError(
                f"x is {x.dtype} but {name} is {tensor.dtype}; convert one of them"
            )
    if bias is not None and tuple(bias.shape) != (out_channels,):
        raise ValueError(
            f"bias must have shape ({out_channels},), one per output channel, "
            f"got {tuple(bias.shape)}"
        )


def _conv_padding(
    x: torch.Tensor,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: IntPair | PaddingMode,
    dilation: tuple[int, int],
) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """Output size (oH, oW) and the (left, right, top, bottom) padding for F.pad."""
    paddings = per_axis("padding", padding)  # a mode such as "same" holds for both
    before_after = []
    out_size = []
    for size, k, s, p, d in zip(x.shape[-2:], kernel, stride, paddings, dilation):
        out_size.append(conv_output_size(size, k, s, p, d))  # validates all
        if p == "same":
            before_after.append(same_padding(k, d))
        elif p == "valid":
            before_after.append((0, 0))
        else:
            before_after.append((p, p))
    (top, bottom), (left, right) = before_after
    return (out_size[0], out_size[1]), (left, right, top, bottom)


def sliding_windows(
    x: torch.Tensor, kernel: IntPair, stride: IntPair = 1, dilation: IntPair = 1
) -> torch.Tensor:
    """Every kernel-sized window of x, as a view (no copy).

    (B, C, H, W) -> (B, C, oH, oW, kH, kW): window (h, w) holds
    x[..., s*h + d*i, s*w + d*j] for i < kH, j < kW. No padding: pad first.
    """
    _check_images(x)
    kh, kw = per_axis("kernel", kernel)
    sh, sw = per_axis("stride", stride)
    dh, dw = per_axis("dilation", dilation)
    conv_output_size(x.shape[2], kh, sh, 0, dh)  # validates the height axis
    conv_output_size(x.shape[3], kw, sw, 0, dw)  # and the width axis
    rows = x.unfold(2, effective_kernel(kh, dh), sh)  # (B, C, oH, W, kH_eff)
    # (B, C, oH, oW, kH_eff, kW_eff)
    windows = rows.unfold(3, effective_kernel(kw, dw), sw)
    return windows[..., ::dh, ::dw]  # (B, C, oH, oW, kH, kW): keep every d-th tap


def conv2d_loops(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntPair = 1,
    padding: IntPair | PaddingMode = 0,
) -> torch.Tensor:
    """2-D convolution by its definition: one dot product per output, in loops.

    Slow on purpose (a teaching version for tiny inputs); conv2d computes the same
    thing fast. x: (B, C, H, W), weight: (C_out, C, kH, kW), bias: (C_out,)
    -> (B, C_out, oH, oW). padding: as in conv2d.
    """
    _check_conv_inputs(x, weight, bias, groups=1)
    kh, kw = weight.shape[-2:]
    sh, sw = per_axis("stride", stride)
    (oh, ow), pads = _conv_padding(x, (kh, kw), (sh, sw), padding, (1, 1))
    x = F.pad(x, pads)  # zeros around: (B, C, H + pT + pB, W + pL + pR)
    batch, out_channels = x.shape[0], weight.shape[0]
    out = x.new_zeros(batch, out_channels, oh, ow)
    for b in range(batch):
        for o in range(out_channels):
            for h in range(oh):
                for w in range(ow):
                    # (C, kH, kW)
                    window = x[b, :, h * sh : h * sh + kh, w * sw : w * sw + kw]
                    # y[o,h,w] = sum_{c,i,j} W[o,c,i,j] x[c, s h + i, s w + j]
                    out[b, o, h, w] = (window * weight[o]).sum()
    if bias is not None:
        out = out + rearrange(bias, "o -> 1 o 1 1")  # + b[o]
    return out


def conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntPair = 1,
    padding: IntPair | PaddingMode = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> torch.Tensor:
    """2-D convolution as F.conv2d: cross-correlation, as every library computes it.

    x: (B, C, H, W), weight: (C_out, C / groups, kH, kW), bias: (C_out,)
    -> (B, C_out, oH, oW). padding: an int, a pair (pH, pW), "valid" (none) or
    "same" (output size = input size, stride 1 only). Groups split the channels
    into independent convolutions.
    """
    _check_conv_inputs(x, weight, bias, groups)
    kernel = tuple(weight.shape[-2:])
    stride, dilation = per_axis("stride", stride), per_axis("dilation", dilation)
    _, pads = _conv_padding(x, kernel, stride, padding, dilation)
    # (B, C, oH, oW, kH, kW)
    windows = sliding_windows(F.pad(x, pads), kernel, stride, dilation)
    windows = rearrange(windows, "b (g c) h w i j -> b g c h w i j", g=groups)
    weight = rearrange(weight, "(g o) c i j -> g o c i j", g=groups)
    # y[g,o,h,w] = sum_{c,i,j} W[g,o,c,i,j] x[g,c, s h + d i, s w + d j]
    out = einsum(windows, weight, "b g c h w i j, g o c i j -> b g o h w")
    out = rearrange(out, "b g o h w -> b (g o) h w")  # (B, C_out, oH, oW)
    if bias is not None:
        out = out + rearrange(bias, "o -> 1 o 1 1")  # + b[o]
    return out


def _pool_padding(
    size: int, kernel: int, stride: int, padding: int, dilation: int, out: int
) -> tuple[int, int]:
    """(before, after) padding so that exactly `out` windows fit.

    The after side may exceed `padding`: with ceil_mode the last window can hang
    over the right padding.
    """
    # cells spanned by `out` windows
    needed = (out - 1) * stride + effective_kernel(kernel, dilation)
    return padding, max(padding, needed - size - padding)


def _pool_setup(
    x: torch.Tensor,
    kernel_size: IntPair,
    stride: IntPair | None,
    padding: IntPair,
    dilation: IntPair,
    ceil_mode: bool,
) -> tuple[Pair, Pair, Pair, tuple[int, int, int, int]]:
    """Kernel, stride and dilation pairs, and (left, right, top, bottom) padding."""
    _check_images(x)
    kernel = per_axis("kernel_size", kernel_size)
    stride = kernel if stride is None else per_axis("stride", stride)
    padding, dilation = per_axis("padding", padding), per_axis("dilation", dilation)
    before_after = []
    for size, k, s, p, d in zip(x.shape[-2:], kernel, stride, padding, dilation):
        out = pool_output_size(size, k, s, p, d, ceil_mode)  # validates all
        before_after.append(_pool_padding(size, k, s, p, d, out))
    (top, bottom), (left, right) = before_after
    return kernel, stride, dilation, (left, right, top, bottom)


def max_pool2d(
    x: torch.Tensor,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    ceil_mode: bool = False,
) -> torch.Tensor:
    """Max pooling, as F.max_pool2d: the largest value in each window.

    (B, C, H, W) -> (B, C, oH, oW). Padding is -inf, so it never wins; the stride
    defaults to the kernel size.
    """
    kernel, stride, dilation, pads = _pool_setup(
        x, kernel_size, stride, padding, dilation, ceil_mode
    )
    padded = F.pad(x, pads, value=-torch.inf)
    # (B, C, oH, oW, kH, kW)
    windows = sliding_windows(padded, kernel, stride, dilation)
    # y[h,w] = max_{i,j} x[s h + d i, s w + d j]; torch.max sends the gradient to
    # the first maximum, like torch
    return windows.flatten(-2).max(dim=-1).values


def avg_pool2d(
    x: torch.Tensor,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> torch.Tensor:
    """Average pooling, as F.avg_pool2d. (B, C, H, W) -> (B, C, oH, oW).

    Each window's sum is divided by how many cells it covers: with count_include_pad
    the zero padding counts, otherwise only real input does; ceil_mode's overhang
    past the padding never counts.
    """
    check_bool("count_include_pad", count_include_pad)
    kernel, stride, _, pads = _pool_setup(
        x, kernel_size, stride, padding, 1, ceil_mode
    )
    # (B, C, oH, oW)
    sums = sliding_windows(F.pad(x, pads), kernel, stride).sum(dim=(-2, -1))
    # The divisor is the same sliding sum over a mask of the cells that count.
    ph, pw = per_axis("padding", padding)
    height, width = x.shape[-2:]
    if count_include_pad:
        # input and padding
        counted = x.new_ones(1, 1, height + 2 * ph, width + 2 * pw)
    else:
        # input only
        counted = F.pad(x.new_ones(1, 1, height, width), (pw, pw, ph, ph))
    _, right, _, bottom = pads
    # ceil_mode's overhang: never counted
    counted = F.pad(counted, (0, right - pw, 0, bottom - ph))
    # (1, 1, oH, oW)
    divisor = sliding_windows(counted, kernel, stride).sum(dim=(-2, -1))
    # y[h,w] = sum of the window / number of counted cells in it
    return sums / divisor


def global_avg_pool2d(x: torch.Tensor) -> torch.Tensor:
    """Mean over all positions of each channel: (B, C, H, W) -> (B, C)."""
    _check_images(x, floating=True)
    return reduce(x, "b c h w -> b c", "mean")


def global_max_pool2d(x: torch.Tensor) -> torch.Tensor:
    """Maximum over all positions of each channel: (B, C, H, W) -> (B, C)."""
    _check_images(x)
    return reduce(x, "b c h w -> b c", "max")
