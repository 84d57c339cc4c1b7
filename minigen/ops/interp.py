"""Interpolation from scratch: nearest, bilinear and bicubic resizing as matrices.

Resizing an image is linear and separable: out = R_h · x · R_wᵀ, where R, of shape
(out_size, in_size), holds in row o the weights that output pixel o gives to each
input pixel. Each row is a kernel (triangle for bilinear, R. Keys' cubic for
bicubic) centred on the source coordinate of pixel o.

References: R. Keys, "Cubic convolution interpolation for digital image processing",
IEEE Trans. ASSP 29(6), 1981 (the cubic kernel with parameter a; torch uses
a = -0.75, PIL a = -0.5). The border, coordinate and antialias rules follow
torch.nn.functional.interpolate (the tests compare with it); antialias=True is the
PIL / torch "resample with a widened kernel" rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from einops import einsum
from torch import Tensor

from minigen.core.validators import (
    check_bool,
    check_float,
    check_instance,
    check_int,
    check_optional,
    check_positive,
    check_tensor,
)
from minigen.ops.arith import per_axis

MODES = ("nearest", "nearest-exact", "bilinear", "bicubic")
_MODE_ALIASES = {"linear": "bilinear", "cubic": "bicubic"}  # 1-D names, same rules
_TAPS = {"bilinear": 2, "bicubic": 4}  # input pixels the kernel touches at scale 1
TORCH_CUBIC_A = -0.75  # torch's bicubic (no antialias)
PIL_CUBIC_A = -0.5  # PIL's bicubic, and torch's bicubic with antialias=True
MAX_ENTRIES = 10**8  # the most entries of a resampling matrix or a resized channel


def linear_kernel(t: Tensor) -> Tensor:
    """The triangle (tent) kernel of linear interpolation: max(0, 1 - |t|)."""
    check_tensor("t", t)
    return (1 - t.abs()).clamp(min=0)  # k(t) = max(0, 1 - |t|)


def cubic_kernel(t: Tensor, a: float = TORCH_CUBIC_A) -> Tensor:
    """Keys' cubic convolution kernel with parameter a; zero for |t| >= 2.

    torch uses a = -0.75, PIL a = -0.5.
    """
    check_tensor("t", t)
    a = check_float("a", a)
    t = t.abs()
    # (a+2)|t|³ - (a+3)|t|² + 1,  |t| <= 1
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    # a|t|³ - 5a|t|² + 8a|t| - 4a,  1 < |t| < 2
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return torch.where(t <= 1, near, torch.where(t < 2, far, torch.zeros_like(t)))


def source_ratio(
    in_size: int, out_size: int, align_corners: bool, scale: float | None = None
) -> float:
    """Input pixels per output pixel, as torch computes it.

    align_corners=True: (in - 1) / (out - 1) (0 for a single output pixel);
    otherwise 1 / scale when a scale_factor was given (not in / out: the output size
    was rounded down), else in / out.
    """
    in_size = check_int("in_size", in_size)
    out_size = check_int("out_size", out_size)
    align_corners = check_bool("align_corners", align_corners)
    scale = check_optional(check_positive, "scale", scale)
    if align_corners:
        return (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
    return 1 / scale if scale is not None else in_size / out_size


def source_coordinates(
    in_size: int, out_size: int, align_corners: bool, scale: float | None = None
) -> Tensor:
    """Where each output pixel centre lies on the input axis, in input pixels.

    Returns (out_size,) float64. align_corners=True maps the first/last pixel
    centres onto each other: x_in = x_out (in-1)/(out-1). False lines up the pixel
    edges (half-pixel centres): x_in = (x_out + 0.5) · ratio - 0.5. Coordinates
    outside [0, in - 1] are returned as they are; resample_matrix handles the
    borders.
    """
    ratio = source_ratio(in_size, out_size, align_corners, scale)
    x_out = torch.arange(out_size, dtype=torch.float64)  # (out,)
    if align_corners:
        return x_out * ratio  # x_in = x_out · (in - 1)/(out - 1)
    return (x_out + 0.5) * ratio - 0.5  # x_in = (x_out + 1/2) · in/out - 1/2


def _nearest_indices(
    in_size: int, out_size: int, exact: bool, scale: float | None
) -> Tensor:
    """torch's nearest rules, in float32 as torch computes them: (out_size,) long.

    "nearest": floor(x_out · ratio), which samples the left/top of each cell (an old
    rule that shifts the image by half a pixel; torch keeps it for compatibility,
    and short-cuts out = in and out = 2·in). "nearest-exact":
    floor((x_out + 0.5) · ratio), the pixel whose cell holds the centre (as PIL).
    """
    x_out = torch.arange(out_size)  # (out,)
    if not exact and out_size == in_size:
        return x_out
    if not exact and out_size == 2 * in_size:
        return x_out // 2
    ratio = 1 / scale if scale is not None else in_size / out_size
    ratio = torch.tensor(ratio, dtype=torch.float32)
    centre = x_out.float() + 0.5 if exact else x_out.float()
    index = torch.floor(centre * ratio).long()  # i = floor(x · in/out)
    return index.clamp(max=in_size - 1)


def _kernel(mode: str, a: float) -> Callable[[Tensor], Tensor]:
    return linear_kernel if mode == "bilinear" else lambda t: cubic_kernel(t, a)


def _interpolation_matrix(
    in_size: int, source: Tensor, mode: str, a: float
) -> Tensor:
    """Kernel weights at the taps around each source coordinate, one row each.

    Border taps replicate the edge pixel.
    """
    # (T,) tap offsets: linear 0, 1; cubic -1, 0, 1, 2
    taps = torch.arange(_TAPS[mode]) - (_TAPS[mode] // 2 - 1)
    left = source.floor()  # (out,) the input pixel at or left of the source
    columns = left.long()[:, None] + taps  # (out, T)
    # (out, T): w = k(x_in - i)
    weights = _kernel(mode, a)(source[:, None] - columns.double())
    matrix = torch.zeros(len(source), in_size, dtype=torch.float64)  # (out, in)
    rows = torch.arange(len(source))[:, None].expand_as(columns)  # (out, T)
    # Taps past the border read the edge pixel, so their weight adds to the edge
    # column.
    edge = columns.clamp(0, in_size - 1)
    return matrix.index_put_((rows, edge), weights, accumulate=True)


def _antialias_matrix(
    in_size: int, out_size: int, ratio: float, mode: str, a: float
) -> Tensor:
    """The kernel stretched by the downscale factor, rows normalised to sum to 1.

    The antialias rule of torch and PIL.
    """
    # Downscaling by r widens the kernel r times (a low-pass filter); upscaling
    # keeps it.
    stretch = max(ratio, 1.0)
    out_centres = torch.arange(out_size, dtype=torch.float64) + 0.5  # (out,)
    centres = out_centres * ratio  # (out,) in the input's edge coordinates
    pixel_centres = torch.arange(in_size, dtype=torch.float64) + 0.5  # (in,)
    distances = (pixel_centres[None, :] - centres[:, None]) / stretch  # (out, in)
    weights = _kernel(mode, a)(distances)  # (out, in)
    # (out, 1); pixels outside the image are left out, so < 1 there
    totals = weights.sum(dim=1, keepdim=True)
    # w_i = k((i + 1/2 - c)/s) / sum_j k(...)
    return torch.where(totals != 0, weights / totals, weights)


def _check_mode(mode: str) -> str:
    """One of MODES, with the 1-D names 'linear' and 'cubic' mapped to theirs."""
    check_instance("mode", mode, str)
    if _MODE_ALIASES.get(mode, mode) not in MODES:
        names = ", ".join(map(repr, MODES))
        raise ValueError(
            f"mode must be one of {names} (or 'linear', 'cubic'), got {mode!r}"
        )
    return _MODE_ALIASES.get(mode, mode)


def resample_matrix(
    in_size: int,
    out_size: int,
    mode: str,
    align_corners: bool = False,
    a: float | None = None,
    antialias: bool = False,
    scale: float | None = None,
) -> Tensor:
    """The (out_size, in_size) float64 matrix R with out = R @ x along one axis.

    mode: "nearest", "nearest-exact", "bilinear" ("linear") or "bicubic" ("cubic").
    a: the cubic parameter; None follows torch: -0.75, or -0.5 (PIL's) when
    antialias=True.
    antialias: widen the kernel by the downscale factor and renormalise (bilinear /
    bicubic only).
    scale: the scale_factor (out / in) the size came from, if any; torch then uses
    1 / scale.
    Borders as torch: bilinear clamps the source coordinate into [0, in - 1],
    bicubic replicates the edge pixels, antialias drops taps outside the image and
    renormalises.
    """
    mode = _check_mode(mode)
    # source_ratio checks the sizes, align_corners and scale
    ratio = source_ratio(in_size, out_size, align_corners, scale)
    a = check_optional(check_float, "a", a)
    antialias = check_bool("antialias", antialias)
    if in_size * out_size > MAX_ENTRIES:
        raise ValueError(
            f"a {out_size}x{in_size} resampling matrix has more than "
            f"{MAX_ENTRIES:,} entries; resize in steps, or use F.interpolate"
        )
    if a is not None and mode != "bicubic":
        raise ValueError(
            f"the cubic parameter a only applies to bicubic, not {mode!r}"
        )
    if mode.startswith("nearest"):
        if antialias or align_corners:
            raise ValueError(
                "antialias and align_corners only apply to bilinear and bicubic, "
                f"not {mode!r}"
            )
        matrix = torch.zeros(out_size, in_size, dtype=torch.float64)
        exact = mode == "nearest-exact"
        columns = _nearest_indices(in_size, out_size, exact, scale)
        ones = torch.ones(out_size, dtype=torch.float64)
        return matrix.index_put_((torch.arange(out_size), columns), ones)
    if a is None:
        a = PIL_CUBIC_A if antialias else TORCH_CUBIC_A
    if out_size == in_size and (mode == "bilinear" or antialias):
        # torch's CPU kernels copy an axis whose size does not change, even when a
        # scale_factor != 1 asked for a shift (e.g. 5 * 1.1 -> 5); we follow them
        # (its bicubic does not skip).
        return torch.eye(in_size, dtype=torch.float64)
    if antialias:
        return _antialias_matrix(in_size, out_size, ratio, mode, a)
    source = source_coordinates(in_size, out_size, align_corners, scale)  # (out,)
    if mode == "bilinear":
        # torch clamps the left border; the right one is clamped by the taps
        source = source.clamp(min=0)
    return _interpolation_matrix(in_size, source, mode, a)


def _check_pixels(height: int, width: int) -> tuple[int, int]:
    """(height, width) of an output channel of at most MAX_ENTRIES pixels."""
    if height * width > MAX_ENTRIES:
        raise ValueError(
            f"an output of {height}x{width} pixels is more than {MAX_ENTRIES:,} "
            "per channel"
        )
    return height, width


def _check_size(size: int | tuple[int, int]) -> tuple[int, int]:
    """`size` as (height, width): one int >= 1 for both sides, or a pair."""
    height, width = per_axis("size", size)
    height = check_int("size (height)", height)
    width = check_int("size (width)", width)
    return _check_pixels(height, width)


def _output_sizes(
    in_sizes: tuple[int, int],
    size: int | tuple[int, int] | None,
    scale_factor: float | tuple[float, float] | None,
    recompute_scale_factor: bool,
) -> tuple[tuple[int, int], tuple[float | None, float | None]]:
    """(oH, oW) and the scales torch uses for the ratio (None: use in / out)."""
    if (size is None) == (scale_factor is None):
        raise ValueError(
            "give exactly one of size and scale_factor (got both or neither)"
        )
    if size is not None:
        return _check_size(size), (None, None)
    scales = per_axis("scale_factor", scale_factor)
    scales = tuple(check_positive("scale_factor", value) for value in scales)
    sizes = tuple(math.floor(n * s) for n, s in zip(in_sizes, scales))  # o = ⌊i·s⌋
    if min(sizes) < 1:
        raise ValueError(
            f"scale_factor {scale_factor!r} turns input {in_sizes} into an empty "
            f"output {sizes}"
        )
    return _check_pixels(*sizes), (None, None) if recompute_scale_factor else scales


def interpolate(
    x: Tensor,
    size: int | tuple[int, int] | None = None,
    scale_factor: float | tuple[float, float] | None = None,
    mode: str = "nearest",
    align_corners: bool | None = None,
    a: float | None = None,
    antialias: bool = False,
    recompute_scale_factor: bool = False,
) -> Tensor:
    """Resize images (B, C, H, W) -> (B, C, oH, oW) as F.interpolate, with matrices.

    mode: "nearest", "nearest-exact", "bilinear" or "bicubic"; align_corners:
    bilinear/bicubic only (None means False); a: cubic parameter (None: torch's
    choice, see resample_matrix). scale_factor: the output size is
    floor(in · scale); unless recompute_scale_factor, the source coordinates then
    use 1 / scale_factor, as torch does, not in / out.
    """
    check_tensor("x", x, dims=4, floating=True, shape="(B, C, H, W)")
    mode = _check_mode(mode)
    align_corners = check_optional(check_bool, "align_corners", align_corners)
    recompute = check_bool("recompute_scale_factor", recompute_scale_factor)
    if mode.startswith("nearest") and align_corners is not None:
        raise ValueError(
            "align_corners only applies to bilinear and bicubic; leave it None for "
            f"{mode!r}"
        )
    height, width = x.shape[-2:]
    (out_h, out_w), (scale_h, scale_w) = _output_sizes(
        (height, width), size, scale_factor, recompute
    )
    align_corners = bool(align_corners)  # None means False
    options = dict(mode=mode, align_corners=align_corners, a=a, antialias=antialias)
    rows = resample_matrix(height, out_h, scale=scale_h, **options)  # (oH, H)
    columns = resample_matrix(width, out_w, scale=scale_w, **options)  # (oW, W)
    rows, columns = rows.to(x), columns.to(x)  # x's dtype and device
    # Separable: resample the columns of every image, then its rows. y = R_h x R_wᵀ
    tall = einsum(rows, x, "oh h, b c h w -> b c oh w")  # (B, C, oH, W)
    return einsum(tall, columns, "b c oh w, ow w -> b c oh ow")  # (B, C, oH, oW)


_PIL_FILTERS = {"nearest": "NEAREST", "bilinear": "BILINEAR", "bicubic": "BICUBIC"}


def _check_image(x: Tensor, *, floating: bool) -> None:
    """One finite, non-empty image (C, H, W)."""
    check_tensor("x", x, dims=3, floating=floating, finite=True, shape="(C, H, W)")
    if x.numel() == 0:
        raise ValueError(
            f"x must hold at least one pixel, got shape {tuple(x.shape)}"
        )


def pil_resize(
    x: Tensor,
    size: int | tuple[int, int],
    mode: str = "bicubic",
    as_uint8: bool = True,
) -> Tensor:
    """PIL's Image.resize of an image (C, H, W) in [0, 1]: (C, h, w) float32.

    size: (h, w), or one int for both. as_uint8=True resizes 8-bit images, as one
    does with photos: the input is rounded to 1/255 steps and PIL rounds (and clips
    to [0, 1]) after each axis. as_uint8=False resizes each channel as a 32-bit
    float image (PIL mode "F"), which isolates PIL's arithmetic from that rounding.
    """
    from PIL import Image

    _check_image(x, floating=False)
    mode = _check_mode(mode)
    if mode not in _PIL_FILTERS:
        raise ValueError(
            f"PIL has no {mode!r}; use one of {', '.join(_PIL_FILTERS)} (PIL's "
            "nearest is nearest-exact)"
        )
    height, width = _check_size(size)
    as_uint8 = check_bool("as_uint8", as_uint8)
    resample = getattr(Image.Resampling, _PIL_FILTERS[mode])
    pixels = x.detach().cpu().double().numpy()  # (C, H, W)
    if as_uint8:
        if pixels.min() < 0 or pixels.max() > 1:
            raise ValueError(
                "x must lie in [0, 1] to become 8-bit pixels; clamp it first"
            )
        levels = np.rint(pixels * 255).astype(np.uint8)  # (C, H, W)
        images = [Image.fromarray(plane) for plane in levels]  # mode "L"
    else:
        images = [Image.fromarray(p, mode="F") for p in pixels.astype(np.float32)]
    planes = [image.resize((width, height), resample) for image in images]
    resized = torch.from_numpy(np.stack([np.asarray(plane) for plane in planes]))
    return resized.float() / 255 if as_uint8 else resized  # (C, h, w)


def explain_pil_difference(
    x: Tensor, size: int | tuple[int, int], mode: str = "bicubic"
) -> dict[str, dict[str, float]]:
    """Why PIL and torch disagree, one cause at a time, in [0, 1] units.

    Returns {step: {"mean": ..., "max": ...}}. Starting from torch's default resize,
    switch to PIL's cubic parameter (a = -0.5), then to its widened, renormalised
    kernel (antialias, which matters when downscaling and at the borders), then
    compare with PIL on float pixels: what remains against 8-bit PIL is uint8
    rounding.
    """
    _check_image(x, floating=True)
    mode = _check_mode(mode)
    if mode not in ("bilinear", "bicubic"):
        raise ValueError(
            "mode must be 'bilinear' or 'bicubic' (the modes with a kernel to "
            f"compare), got {mode!r}"
        )
    images = x[None]  # (1, C, H, W)
    pil_8bit = pil_resize(x, size, mode).double()
    pil_float = pil_resize(x, size, mode, as_uint8=False).double()
    default = "torch default (no antialias"
    default += ", a = -0.75)" if mode == "bicubic" else ")"
    steps = {default: (interpolate(images, size, mode=mode)[0], pil_8bit)}
    if mode == "bicubic":
        pil_a = interpolate(images, size, mode=mode, a=PIL_CUBIC_A)[0]
        steps["PIL's cubic a = -0.5, no antialias"] = (pil_a, pil_8bit)
    # PIL's rule: widened kernel (a = -0.5)
    ours = interpolate(images, size, mode=mode, antialias=True)[0]
    steps["+ antialias (PIL's algorithm), vs 8-bit PIL"] = (
        ours.clamp(0, 1),
        pil_8bit,
    )
    steps["same, vs PIL on float pixels (no uint8 rounding)"] = (ours, pil_float)
    table = {}
    for step, (mine, theirs) in steps.items():
        gap = (mine.double() - theirs).abs()
        table[step] = {"mean": gap.mean().item(), "max": gap.max().item()}
    return table
