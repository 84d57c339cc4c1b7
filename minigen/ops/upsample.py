"""Upsampling: transposed convolution, pixel shuffle and their checkerboards.

Implements
- transposed convolution as zero insertion followed by an ordinary convolution, and
  as a scatter-add, after V. Dumoulin, F. Visin, "A guide to convolution arithmetic
  for deep learning", arXiv:1603.07285 (2016), with the conventions of
  torch.nn.functional.conv_transpose2d;
- pixel shuffle, W. Shi et al., "Real-Time Single Image and Video Super-Resolution
  Using an Efficient Sub-Pixel Convolutional Neural Network", CVPR 2016, and its
  ICNR initialisation, A. Aitken et al., "Checkerboard artifact free sub-pixel
  convolution", arXiv:1707.02937 (2017);
- resize-convolution and the checkerboard artifacts of transposed convolution,
  A. Odena, V. Dumoulin, C. Olah, "Deconvolution and Checkerboard Artifacts",
  Distill (2016), measured by `checkerboard_score`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import einsum, rearrange

from minigen.core.validators import check_int, check_optional, check_tensor
from minigen.ops.arith import per_axis, transposed_output_size
from minigen.ops.conv import conv2d

IntPair = int | tuple[int, int]


# ----------------------------------------------------------------------------------
# Transposed convolution from scratch
# ----------------------------------------------------------------------------------


def _transposed_setup(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: IntPair,
    padding: IntPair,
    output_padding: IntPair,
    dilation: IntPair,
    groups: int,
) -> tuple[tuple[int, int], ...]:
    """Check one transposed convolution.

    Returns the (height, width) pairs of s, p, a, d and of the output size.
    """
    check_tensor("x", x, dims=4, shape="(B, C_in, H, W)")
    check_tensor("weight", weight, dims=4, shape="(C_in, C_out / groups, kH, kW)")
    check_optional(check_tensor, "bias", bias, dims=1, shape="(C_out,)")
    groups = check_int("groups", groups)
    if weight.shape[0] != x.shape[1]:
        raise ValueError(
            "a transposed convolution's weight is (C_in, C_out / groups, kH, kW): "
            f"its first axis ({weight.shape[0]}) must equal x's channels "
            f"({x.shape[1]})"
        )
    if x.shape[1] % groups:
        raise ValueError(
            f"groups={groups} must divide the input channels ({x.shape[1]})"
        )
    for name, tensor in (("weight", weight), ("bias", bias)):
        if tensor is not None and tensor.dtype != x.dtype:
            raise TypeError(
                f"x is {x.dtype} but {name} is {tensor.dtype}; convert one of them"
            )
    out_channels = weight.shape[1] * groups
    if bias is not None and tuple(bias.shape) != (out_channels,):
        raise ValueError(
            f"bias must have shape ({out_channels},), one per output channel, "
            f"got {tuple(bias.shape)}"
        )
    s, p = per_axis("stride", stride), per_axis("padding", padding)
    a = per_axis("output_padding", output_padding)
    d = per_axis("dilation", dilation)
    # one (i, k, s, p, d, a) per axis; transposed_output_size validates them all
    axes = zip(x.shape[-2:], weight.shape[-2:], s, p, d, a)
    out_size = tuple(transposed_output_size(*axis) for axis in axes)
    return s, p, a, d, out_size


def insert_zeros(x: torch.Tensor, stride: IntPair) -> torch.Tensor:
    """Put s - 1 zeros between neighbouring pixels.

    (B, C, H, W) -> (B, C, (H-1)sH + 1, (W-1)sW + 1).
    """
    check_tensor("x", x, dims=4, shape="(B, C, H, W)")
    sh, sw = (check_int("stride", value) for value in per_axis("stride", stride))
    batch, channels, height, width = x.shape
    new_height, new_width = (height - 1) * sh + 1, (width - 1) * sw + 1
    spread = x.new_zeros(batch, channels, new_height, new_width)
    spread[..., ::sh, ::sw] = x  # x'[s h, s w] = x[h, w], zero elsewhere
    return spread


def conv_transpose2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    output_padding: IntPair = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> torch.Tensor:
    """Transposed convolution as F.conv_transpose2d: zeros in, then a convolution.

    x: (B, C_in, H, W), weight: (C_in, C_out / groups, kH, kW), bias: (C_out,)
    -> (B, C_out, oH, oW) with o = (i - 1)s - 2p + d(k - 1) + a + 1
    (minigen.ops.arith.transposed_output_size). The stride-1 convolution pads the
    spread input by d(k - 1) - p on each side (a negative amount crops), plus
    output_padding at the bottom and right, and uses the kernel flipped and with
    in/out swapped.
    """
    (sh, sw), (ph, pw), (ah, aw), (dh, dw), out_size = _transposed_setup(
        x, weight, bias, stride, padding, output_padding, dilation, groups
    )
    kh, kw = weight.shape[-2:]
    spread = insert_zeros(x, (sh, sw))  # (B, C_in, (H-1)s + 1, (W-1)s + 1)
    top, left = dh * (kh - 1) - ph, dw * (kw - 1) - pw  # p' = d(k - 1) - p
    padded = F.pad(spread, (left, left + aw, top, top + ah))  # crops where p' < 0
    # W'[o, c, i, j] = W[c, o, k-1-i, k-1-j] within each group: the transpose of
    # the convolution's matrix
    flipped = rearrange(weight, "(g c) o i j -> (g o) c i j", g=groups).flip(-2, -1)
    out = conv2d(padded, flipped, bias, stride=1, dilation=(dh, dw), groups=groups)
    assert tuple(out.shape[-2:]) == out_size, (out.shape, out_size)
    return out  # (B, C_out, oH, oW)


def conv_transpose2d_scatter(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    output_padding: IntPair = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> torch.Tensor:
    """Transposed convolution as a scatter-add of one stamp per input pixel.

    Each input pixel stamps value * kernel into the output; the stamp of pixel
    (h, w) lands at rows s h + d i, columns s w + d j, and overlapping stamps add.
    Padding p then crops p cells from each side. Python loops over the pixels: a
    teaching version for small inputs; conv_transpose2d computes the same, fast.
    """
    (sh, sw), (ph, pw), _, (dh, dw), (oh, ow) = _transposed_setup(
        x, weight, bias, stride, padding, output_padding, dilation, groups
    )
    kh, kw = weight.shape[-2:]
    batch, _, height, width = x.shape
    out_channels = weight.shape[1] * groups
    # Before cropping, the canvas spans the stamps of all pixels, plus
    # output_padding (ph + oh + ph cells).
    canvas = x.new_zeros(batch, out_channels, oh + 2 * ph, ow + 2 * pw)
    grouped_x = rearrange(x, "b (g c) h w -> b g c h w", g=groups)
    grouped_weight = rearrange(weight, "(g c) o i j -> g c o i j", g=groups)
    for h in range(height):
        for w in range(width):
            pixel = grouped_x[..., h, w]  # (B, G, C)
            # stamp[o, i, j] = sum_c x[c, h, w] W[c, o, i, j]
            stamp = einsum(pixel, grouped_weight, "b g c, g c o i j -> b g o i j")
            rows = slice(h * sh, h * sh + dh * (kh - 1) + 1, dh)
            cols = slice(w * sw, w * sw + dw * (kw - 1) + 1, dw)
            canvas[:, :, rows, cols] += rearrange(stamp, "b g o i j -> b (g o) i j")
    out = canvas[:, :, ph : ph + oh, pw : pw + ow]  # crop p from each side
    if bias is not None:
        out = out + rearrange(bias, "o -> 1 o 1 1")  # + b[o]
    return out  # (B, C_out, oH, oW)


# ----------------------------------------------------------------------------------
# Pixel shuffle
# ----------------------------------------------------------------------------------


def _check_shuffle(x: torch.Tensor, r: int) -> int:
    """x as a (B, C, H, W) tensor and r as an int >= 1."""
    check_tensor("x", x, dims=4, shape="(B, C, H, W)")
    return check_int("upscale factor r", r)


def pixel_shuffle(x: torch.Tensor, r: int) -> torch.Tensor:
    """Rearrange channels into space, as F.pixel_shuffle.

    (B, C r^2, H, W) -> (B, C, H r, W r), with
    y[c, h r + i, w r + j] = x[c r^2 + i r + j, h, w].
    """
    _check_shuffle(x, r)
    if x.shape[1] % (r * r):
        raise ValueError(
            f"pixel_shuffle with r={r} needs (B, C*{r * r}, H, W), got shape "
            f"{tuple(x.shape)}"
        )
    return rearrange(x, "b (c i j) h w -> b c (h i) (w j)", i=r, j=r)


def pixel_unshuffle(x: torch.Tensor, r: int) -> torch.Tensor:
    """The inverse of pixel_shuffle, as F.pixel_unshuffle.

    (B, C, H r, W r) -> (B, C r^2, H, W).
    """
    _check_shuffle(x, r)
    if x.shape[2] % r or x.shape[3] % r:
        raise ValueError(
            f"pixel_unshuffle with r={r} needs (B, C, H, W) with H and W divisible "
            f"by {r}, got shape {tuple(x.shape)}"
        )
    return rearrange(x, "b c (h i) (w j) -> b (c i j) h w", i=r, j=r)


# ----------------------------------------------------------------------------------
# Checkerboard artifacts as a number
# ----------------------------------------------------------------------------------

BORDER = 2  # pixels cropped from each side before scoring: padding disturbs edges

_LOW = torch.tensor([1.0, 2.0, 1.0]) / 4  # h_0: gain 1 at frequency 0, gain 0 at pi
# h_pi: gain 1 at pi, 0 at 0 and on ramps
_HIGH = torch.tensor([1.0, -2.0, 1.0]) / 4
# (3, 3, 3): the filters h_a (x) h_b of the three stride-2 frequencies
_NYQUIST_FILTERS = torch.stack(
    [
        torch.outer(_HIGH, _LOW),  # (pi, 0): alternates down the rows
        torch.outer(_LOW, _HIGH),  # (0, pi): alternates along the columns
        torch.outer(_HIGH, _HIGH),  # (pi, pi): the checkerboard proper
    ]
)


def checkerboard_score(y: torch.Tensor) -> torch.Tensor:
    """The fraction of a map's energy in the stride-2 frequencies.

    (B, C, H, W) -> (B,). The frequencies are (pi, 0), (0, pi) and (pi, pi). After
    cropping a border of BORDER pixels, each channel is filtered by the three
    separable 3x3 filters h_a (x) h_b with h_0 = [1, 2, 1]/4 and h_pi = [1, -2, 1]/4
    (a local Fourier analysis: each passes one stride-2 frequency with gain 1 and
    blocks the others and the constant). Over the filters' valid region,

        score = sum_{(a,b) != (0,0)} ||(h_a (x) h_b) * y||^2 / ||y||^2

    0 for a constant or a linear ramp, 1 for a pure +-1 checkerboard, within [0, 1],
    and unchanged when y is scaled. An all-zero map scores 0.
    """
    check_tensor("y", y, dims=4, shape="(B, C, H, W)")
    if y.numel() == 0:
        raise ValueError(
            f"y must hold at least one map, got shape {tuple(y.shape)}"
        )
    if min(y.shape[-2:]) < 2 * BORDER + 3:
        raise ValueError(
            f"y must be at least {2 * BORDER + 3} pixels high and wide (a "
            f"{BORDER}-pixel border is cropped, then a 3x3 filter applied), got "
            f"{tuple(y.shape[-2:])}"
        )
    dtype = y.dtype if y.is_floating_point() else torch.float32
    # (B, C, H', W'), in float64 so that tiny artifacts still count
    y = y[..., BORDER:-BORDER, BORDER:-BORDER].double()
    maps = rearrange(y, "b c h w -> (b c) 1 h w")
    filters = rearrange(_NYQUIST_FILTERS.to(maps), "f i j -> f 1 i j")
    # (BC, 3, H'-2, W'-2): the stride-2 components
    nyquist = F.conv2d(maps, filters)
    nyquist_energy = _sum_per_image(nyquist.square(), y.shape[0])
    valid = maps[..., 1:-1, 1:-1]  # the same valid region as the filters'
    total_energy = _sum_per_image(valid.square(), y.shape[0])
    tiny = torch.finfo(torch.float64).tiny
    score = nyquist_energy / total_energy.clamp_min(tiny)  # 0 / tiny = 0 for y = 0
    return score.to(dtype)


def _sum_per_image(values: torch.Tensor, batch: int) -> torch.Tensor:
    """Sum of (B C, ...) values per image: -> (B,)."""
    return rearrange(values, "(b c) f h w -> b (c f h w)", b=batch).sum(dim=1)
