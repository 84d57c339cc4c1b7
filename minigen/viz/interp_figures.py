"""Pictures of interpolation: the kernels, their separable 2-D form, the weights and the resized images.

Drawn from :mod:`minigen.interp` (the from-scratch code, one source of truth), for the book's static
figures and for :class:`minigen.widgets.InterpolationExplorer`. The cubic kernel is Keys'
("Cubic convolution interpolation for digital image processing", IEEE TASSP 1981), with torch's
a = -0.75 and PIL's a = -0.5; align_corners=True pins the centres of the corner pixels, False the
outer edges of the image (half-pixel centres, as PIL and OpenCV).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from minigen.ops import interp
from minigen.data.photo import grace_hopper
from minigen.viz.grids import to_numpy_image

MODES = ("nearest", "bilinear", "bicubic")


def nearest_kernel(t: Tensor) -> Tensor:
    """The box: weight 1 within half a pixel of the sample, 0 elsewhere (the picture of nearest)."""
    return ((t >= -0.5) & (t < 0.5)).to(t.dtype)  # k(t) = 1 for -1/2 <= t < 1/2


def kernel_figure() -> Figure:
    """The 1-D kernels: nearest (box), linear (tent), Keys cubic with a = -0.5 (PIL) and a = -0.75 (torch)."""
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
    ax.set_xlabel("distance t from the output pixel's source coordinate (input pixels)")
    ax.set_ylabel("weight k(t)")
    ax.set_title("1-D interpolation kernels: the cubic dips below 0 at 1 < |t| < 2")
    ax.legend(fontsize="small")
    return figure


def separable_kernel_figure(a: float = -0.75) -> Figure:
    """The 2-D bicubic kernel as the outer product k(y)·k(x) of the 1-D one: separable resampling."""
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
    image = right.imshow(kernel_2d.numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit, extent=(-2, 2, 2, -2))
    right.set_xlabel("x (input pixels)")
    right.set_ylabel("y (input pixels)")
    right.set_title("2-D: k(y)·k(x), 4×4 taps")
    figure.colorbar(image, ax=right, shrink=0.85, label="weight")
    return figure


def draw_weights(ax: Axes, in_size: int, out_size: int, mode: str = "bilinear", *, align_corners: bool = False,
                 antialias: bool = False, output_pixel: int = 0, a: float | None = None) -> Tensor:
    """Draw the weights that output pixel ``output_pixel`` gives each input pixel, along one axis.

    Returns that row of :func:`minigen.interp.resample_matrix`, shape (in_size,); the plot shows the
    input pixels around the non-zero weights. a: the cubic parameter (None: as :mod:`minigen.interp`).
    """
    if not 0 <= output_pixel < out_size:
        raise ValueError(f"output_pixel must be in 0..{out_size - 1} for {out_size} output pixels, got {output_pixel}")
    weights = interp.resample_matrix(in_size, out_size, mode, align_corners=align_corners if mode != "nearest"
                                     else False, a=a, antialias=antialias)[output_pixel]  # (in_size,)
    positions = np.arange(in_size)
    ax.bar(positions, weights.numpy(), width=0.6, color=np.where(weights.numpy() < 0, "C3", "C0"))
    ax.axhline(0.0, color="0.5", linewidth=0.8)
    if mode != "nearest":
        source = float(interp.source_coordinates(in_size, out_size, align_corners)[output_pixel])
        ax.axvline(source, color="k", linestyle="--", linewidth=1.0, label=f"source coordinate {source:.3g}")
        ax.legend(fontsize="small", loc="upper right")
    used = weights.nonzero().flatten()  # the input pixels this output pixel reads
    ax.set_xlim(max(int(used[0]) - 3, 0) - 0.5, min(int(used[-1]) + 3, in_size - 1) + 0.5)
    ax.set_xlabel("input pixel")
    ax.set_ylabel("weight")
    ax.set_title(f"weights of output pixel {output_pixel}\n({mode}, {in_size} → {out_size} pixels)")
    return weights


def default_crop() -> Tensor:
    """A 32×32 crop of the Grace Hopper photo (an eye and the rim of the glasses), shape (3, 32, 32).

    Taken from a 128×128 region shrunk 4× by averaging 4×4 blocks, so that edges are a few pixels wide.
    """
    region = grace_hopper()[:, 140:268, 120:248]  # (3, 128, 128)
    return F.avg_pool2d(region.unsqueeze(0), 4)[0]  # (3, 32, 32)


def resize(image: Tensor, scale: float, mode: str, align_corners: bool = False, antialias: bool = False) -> Tensor:
    """``image`` (C, H, W) resized to floor(H·scale) × floor(W·scale) by :func:`minigen.interp.interpolate`."""
    if image.dim() != 3:
        raise ValueError(f"image must be (C, H, W), got shape {tuple(image.shape)}")
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    size = output_size(image.shape[-2], scale), output_size(image.shape[-1], scale)
    options = {} if mode == "nearest" else dict(align_corners=align_corners, antialias=antialias)
    return interp.interpolate(image.unsqueeze(0), size=size, mode=mode, **options)[0]  # (C, H_out, W_out)


def output_size(in_size: int, scale: float) -> int:
    """floor(in_size · scale), the size F.interpolate gives for a scale factor; at least 1 pixel is required."""
    size = int(np.floor(in_size * scale))  # o = ⌊i·s⌋
    if size < 1:
        raise ValueError(f"scale {scale} shrinks {in_size} pixels to {size}; use a scale >= {1 / in_size:.3g}")
    return size


def resampling_figure(image: Tensor | None = None, scale: float = 4.0, modes: Sequence[str] = MODES) -> Figure:
    """One image resized by each mode, with align_corners False and True (nearest has no such option).

    Bicubic overshoots [0, 1] near edges: the titles give the range, the pictures are clamped to show it.
    """
    image = default_crop() if image is None else image
    panels: list[tuple[str, Tensor]] = [(f"input {image.shape[-2]}×{image.shape[-1]}", image)]
    for mode in modes:
        for align_corners in ((False,) if mode == "nearest" else (False, True)):
            resized = resize(image, scale, mode, align_corners)
            title = mode if mode == "nearest" else f"{mode}\nalign_corners={align_corners}"
            low, high = float(resized.min()), float(resized.max())
            if low < 0 or high > 1:
                title += f"\nrange {low:.2f}..{high:.2f}, clamped"
            panels.append((title, resized.clamp(0, 1)))
    figure = Figure(figsize=(2.0 * len(panels), 2.6), layout="constrained")
    for ax, (title, picture) in zip(figure.subplots(1, len(panels)), panels):
        ax.imshow(to_numpy_image(picture), interpolation="nearest")
        ax.set_title(title, fontsize="small")
        ax.set_axis_off()
    figure.suptitle(f"resized ×{scale:g} by minigen.interp.interpolate")
    return figure
