"""Pictures of interpolation: kernels, their 2-D form, weights and resized images.

Drawn from :mod:`minigen.ops.interp` (the from-scratch code, one source of truth),
for the book's static figures and for
:class:`minigen.viz.widgets.InterpolationExplorer`.
The cubic kernel is Keys' ("Cubic convolution interpolation for digital image
processing", IEEE TASSP 1981), with torch's a = -0.75 and PIL's a = -0.5;
align_corners=True pins the centres of the corner pixels, False the outer edges of
the image (half-pixel centres, as PIL and OpenCV).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from minigen.core.validators import (
    check_bool,
    check_choice,
    check_float,
    check_instance,
    check_int,
    check_positive,
    check_tensor,
    describe,
)
from minigen.data.photo import grace_hopper
from minigen.ops import interp
from minigen.viz.grids import to_numpy_image

MODES = ("nearest", "bilinear", "bicubic")
MAX_SIDE = 4096  # the largest side of an image these figures resize to


def nearest_kernel(t: Tensor) -> Tensor:
    """The box of nearest: weight 1 within half a pixel of the sample, else 0."""
    check_tensor("t", t)
    return ((t >= -0.5) & (t < 0.5)).to(t.dtype)  # k(t) = 1 for -1/2 <= t < 1/2


def kernel_figure() -> Figure:
    """The 1-D kernels: nearest (box), linear (tent) and Keys' cubic.

    The cubic with a = -0.5 (PIL) and a = -0.75 (torch).
    """
    t = torch.linspace(-2.5, 2.5, 1001, dtype=torch.float64)
    curves = {
        "nearest (box)": nearest_kernel(t),
        "linear (tent)": interp.linear_kernel(t),
        "cubic, a = −0.5 (PIL)": interp.cubic_kernel(t, a=-0.5),
        "cubic, a = −0.75 (torch)": interp.cubic_kernel(t, a=-0.75),
    }
    figure = Figure(figsize=(6.4, 3.4), layout="constrained")
    ax = figure.add_subplot()
    for (label, weights), style in zip(curves.items(), ("-", "-", "--", "-")):
        ax.plot(t, weights, style, label=label, linewidth=1.8)
    ax.axhline(0.0, color="0.5", linewidth=0.8)
    ax.set_xticks(range(-2, 3))
    xlabel = "distance t from the output pixel's source coordinate (input pixels)"
    ax.set_xlabel(xlabel)
    ax.set_ylabel("weight k(t)")
    ax.set_title("1-D interpolation kernels: the cubic dips below 0 at 1 < |t| < 2")
    ax.legend(fontsize="small")
    return figure


def separable_kernel_figure(a: float = -0.75) -> Figure:
    """The 2-D bicubic kernel as the outer product k(y)·k(x) of the 1-D one.

    It pictures separable resampling.
    """
    a = check_float("a", a)
    t = torch.linspace(-2.0, 2.0, 201, dtype=torch.float64)
    profile = interp.cubic_kernel(t, a=a)  # (T,)
    kernel_2d = torch.outer(profile, profile)  # (T, T): k(y, x) = k(y) k(x)
    figure = Figure(figsize=(7.4, 3.2), layout="constrained")
    left, right = figure.subplots(1, 2, width_ratios=(1.2, 1))
    left.plot(t, profile, color="C3")
    left.axhline(0.0, color="0.5", linewidth=0.8)
    left.set_xlabel("t (input pixels)")
    left.set_ylabel("k(t)")
    left.set_title(f"1-D cubic, a = {a:g}")
    limit = float(kernel_2d.abs().max())
    options = dict(cmap="RdBu_r", vmin=-limit, vmax=limit, extent=(-2, 2, 2, -2))
    image = right.imshow(kernel_2d.numpy(), **options)
    right.set_xlabel("x (input pixels)")
    right.set_ylabel("y (input pixels)")
    right.set_title("2-D: k(y)·k(x), 4×4 taps")
    figure.colorbar(image, ax=right, shrink=0.85, label="weight")
    return figure


def draw_weights(
    ax: Axes,
    in_size: int,
    out_size: int,
    mode: str = "bilinear",
    *,
    align_corners: bool = False,
    antialias: bool = False,
    output_pixel: int = 0,
    a: float | None = None,
) -> Tensor:
    """Draw the weights that output pixel ``output_pixel`` gives each input pixel.

    Along one axis. Returns that row of :func:`minigen.ops.interp.resample_matrix`,
    shape (in_size,); the plot shows the input pixels around the non-zero weights.
    a: the cubic parameter (None: as :mod:`minigen.ops.interp`).
    """
    check_instance("ax", ax, Axes, "a matplotlib Axes")
    in_size = check_int("in_size", in_size)
    out_size = check_int("out_size", out_size)
    align_corners = check_bool("align_corners", align_corners)
    antialias = check_bool("antialias", antialias)
    output_pixel = check_int("output_pixel", output_pixel, 0, None)
    if output_pixel >= out_size:
        raise ValueError(
            f"output_pixel must be in 0..{out_size - 1} for {out_size} output "
            f"pixels, got {output_pixel}"
        )
    options = dict(align_corners=align_corners and mode != "nearest", a=a)
    options["antialias"] = antialias
    matrix = interp.resample_matrix(in_size, out_size, mode, **options)
    weights = matrix[output_pixel]  # (in_size,)
    colours = np.where(weights.numpy() < 0, "C3", "C0")
    ax.bar(np.arange(in_size), weights.numpy(), width=0.6, color=colours)
    ax.axhline(0.0, color="0.5", linewidth=0.8)
    if mode != "nearest":
        sources = interp.source_coordinates(in_size, out_size, align_corners)
        source = float(sources[output_pixel])
        label = f"source coordinate {source:.3g}"
        ax.axvline(source, color="k", linestyle="--", linewidth=1.0, label=label)
        ax.legend(fontsize="small", loc="upper right")
    used = weights.nonzero().flatten()  # the input pixels this output pixel reads
    first, last = max(int(used[0]) - 3, 0), min(int(used[-1]) + 3, in_size - 1)
    ax.set_xlim(first - 0.5, last + 0.5)
    ax.set_xlabel("input pixel")
    ax.set_ylabel("weight")
    sizes = f"{in_size} → {out_size} pixels"
    ax.set_title(f"weights of output pixel {output_pixel}\n({mode}, {sizes})")
    return weights


def default_crop() -> Tensor:
    """A 32×32 crop of the Grace Hopper photo: an eye and the rim of the glasses.

    Shape (3, 32, 32), taken from a 128×128 region shrunk 4× by averaging 4×4
    blocks, so that edges are a few pixels wide.
    """
    region = grace_hopper()[:, 140:268, 120:248]  # (3, 128, 128)
    return F.avg_pool2d(region.unsqueeze(0), 4)[0]  # (3, 32, 32)


def resize(
    image: Tensor,
    scale: float,
    mode: str,
    align_corners: bool = False,
    antialias: bool = False,
) -> Tensor:
    """``image`` (C, H, W) resized to floor(H·scale) × floor(W·scale).

    By :func:`minigen.ops.interp.interpolate`.
    """
    check_tensor("image", image, dims=3, floating=True, shape="(C, H, W)")
    mode = check_choice("mode", mode, MODES)
    align_corners = check_bool("align_corners", align_corners)
    antialias = check_bool("antialias", antialias)
    size = output_size(image.shape[-2], scale), output_size(image.shape[-1], scale)
    options = {}
    if mode != "nearest":
        options = dict(align_corners=align_corners, antialias=antialias)
    images = image.unsqueeze(0)  # (1, C, H, W)
    return interp.interpolate(images, size=size, mode=mode, **options)[0]


def output_size(in_size: int, scale: float) -> int:
    """floor(in_size · scale), the size F.interpolate gives for a scale factor.

    At least 1 pixel is required, and at most MAX_SIDE.
    """
    in_size, scale = check_int("in_size", in_size), check_positive("scale", scale)
    size = int(np.floor(in_size * scale))  # o = ⌊i·s⌋
    if size < 1:
        raise ValueError(
            f"scale {scale} shrinks {in_size} pixels to {size}; use a scale >= "
            f"{1 / in_size:.3g}"
        )
    if size > MAX_SIDE:
        raise ValueError(
            f"scale {scale} grows {in_size} pixels to {size}; use a scale <= "
            f"{MAX_SIDE / in_size:.3g}"
        )
    return size


def _check_modes(modes: Sequence[str]) -> None:
    """A non-empty list of names from MODES."""
    if isinstance(modes, str) or not isinstance(modes, Sequence):
        raise TypeError(
            f"modes must be a list of mode names, got {describe(modes)}"
        )
    if not modes:
        raise ValueError("modes must name at least one mode, got an empty list")
    for index, mode in enumerate(modes):
        check_choice(f"modes[{index}]", mode, MODES)


def resampling_figure(
    image: Tensor | None = None, scale: float = 4.0, modes: Sequence[str] = MODES
) -> Figure:
    """One image resized by each mode, with align_corners False and True.

    Nearest has no align_corners. Bicubic overshoots [0, 1] near edges: the titles
    give the range, the pictures are clamped to show it.
    """
    if image is None:
        image = default_crop()
    check_tensor("image", image, dims=3, shape="(C, H, W)")
    scale = check_positive("scale", scale)
    _check_modes(modes)
    panels = [(f"input {image.shape[-2]}×{image.shape[-1]}", image)]
    for mode in modes:
        for align_corners in (False,) if mode == "nearest" else (False, True):
            resized = resize(image, scale, mode, align_corners)
            title = mode
            if mode != "nearest":
                title += f"\nalign_corners={align_corners}"
            low, high = float(resized.min()), float(resized.max())
            if low < 0 or high > 1:
                title += f"\nrange {low:.2f}..{high:.2f}, clamped"
            panels.append((title, resized.clamp(0, 1)))
    figure = Figure(figsize=(2.0 * len(panels), 2.6), layout="constrained")
    for ax, (title, picture) in zip(figure.subplots(1, len(panels)), panels):
        ax.imshow(to_numpy_image(picture), interpolation="nearest")
        ax.set_title(title, fontsize="small")
        ax.set_axis_off()
    figure.suptitle(f"resized ×{scale:g} by minigen.ops.interp.interpolate")
    return figure
