"""Pictures of tensors and of training, drawn with matplotlib: grids, loss curves.

Images follow torch's layout, (C, H, W) with C = 1 or 3 and values in [0, 1].
Values outside that range are an error, never silently clipped: a generated image
that leaves [0, 1] is worth seeing. Pixels are drawn as blocks (nearest), so small
images are shown as they are, not blurred.
"""

from __future__ import annotations

import base64
import html
import io
import math
import textwrap
from collections.abc import Mapping, Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch
from einops import rearrange
from matplotlib.axes import Axes
from matplotlib.colors import Colormap
from matplotlib.figure import Figure
from PIL import Image

from minigen.core.train import History
from minigen.core.validators import (
    check_bool,
    check_float,
    check_instance,
    check_int,
    check_optional,
    describe,
)

ImageLike = torch.Tensor | np.ndarray
TOLERANCE = 1e-3  # rounding slack around [0, 1]; only values within it are clipped
MAX_IMAGES = 256  # the most images one grid draws (one matplotlib Axes each)


def _as_float_array(image: ImageLike) -> np.ndarray:
    """A torch.Tensor or NumPy array of real numbers as a float32 array."""
    kinds = "a torch.Tensor or NumPy array"
    check_instance("image", image, (torch.Tensor, np.ndarray), kinds)
    if isinstance(image, torch.Tensor):
        real = not image.is_complex()
    else:
        real = image.dtype.kind in "biuf"  # bool, int, unsigned, float
    if not real:
        raise TypeError(
            "image must hold real numbers (bool, int or float), got dtype "
            f"{image.dtype}"
        )
    if isinstance(image, torch.Tensor):
        return image.detach().float().cpu().numpy()
    return image.astype(np.float32)


def to_numpy_image(image: ImageLike, normalize: bool = False) -> np.ndarray:
    """(C, H, W) with C = 1 or 3, or (H, W) -> float32 (H, W, 3) or (H, W).

    The result is what `imshow` takes. normalize=True rescales this image's
    min..max to 0..1 (a constant image becomes all 0); otherwise values must lie in
    [0, 1].
    """
    array = _as_float_array(image)
    normalize = check_bool("normalize", normalize)
    shape = tuple(array.shape)
    if array.ndim == 3 and shape[0] in (1, 3):
        array = array[0] if shape[0] == 1 else rearrange(array, "c h w -> h w c")
    elif array.ndim != 2:
        hint = ""
        if array.ndim == 3 and shape[-1] in (1, 3):
            hint = "; channels last? use einops.rearrange(x, 'h w c -> c h w')"
        raise ValueError(
            "an image must be (C, H, W) with C = 1 or 3, or (H, W); got shape "
            f"{shape}{hint}"
        )
    if array.size == 0:
        raise ValueError(f"the image is empty: shape {shape}")
    if not np.isfinite(array).all():
        raise ValueError("the image holds NaN or inf values")
    low, high = float(array.min()), float(array.max())
    if normalize:  # x <- (x - min) / (max - min)
        return (array - low) / (high - low) if high > low else np.zeros_like(array)
    if low < -TOLERANCE or high > 1 + TOLERANCE:
        raise ValueError(
            f"image values span [{low:.3g}, {high:.3g}], outside [0, 1]; map them "
            "into [0, 1] first ((x + 1) / 2 for data in [-1, 1], or x.clamp(0, 1)) "
            "or pass normalize=True"
        )
    return np.clip(array, 0.0, 1.0)


def _as_image_list(images: ImageLike | Sequence[ImageLike]) -> list[ImageLike]:
    """A batch (N, C, H, W) or a list of images, as a list of 1 to MAX_IMAGES."""
    if isinstance(images, (torch.Tensor, np.ndarray)):
        if images.ndim != 4:
            raise ValueError(
                "images must be an (N, C, H, W) batch, got shape "
                f"{tuple(images.shape)}; for a single image pass [image]"
            )
        images = list(images)
    if not isinstance(images, Sequence):
        raise TypeError(
            "images must be an (N, C, H, W) tensor or array, or a list of images; "
            f"got {describe(images)}"
        )
    if not 1 <= len(images) <= MAX_IMAGES:
        raise ValueError(
            f"images must hold 1 to {MAX_IMAGES} images, got {len(images)}"
        )
    return list(images)


def _check_titles(titles: Sequence[str] | None, count: int) -> None:
    """None, or one str per image."""
    if titles is None:
        return
    if isinstance(titles, str) or not isinstance(titles, Sequence):
        raise TypeError(
            "titles must be a list of strings, one per image, got "
            f"{describe(titles)}"
        )
    for index, title in enumerate(titles):
        check_instance(f"titles[{index}]", title, str)
    if len(titles) != count:
        raise ValueError(f"got {len(titles)} titles for {count} images")


def _check_cmap(cmap: str | Colormap) -> None:
    """A matplotlib Colormap or the name of one."""
    check_instance("cmap", cmap, (str, Colormap), "a colour map name or Colormap")
    if isinstance(cmap, str) and cmap not in matplotlib.colormaps:
        raise ValueError(
            "cmap must be a matplotlib colour map such as 'gray' or 'viridis', got "
            f"{cmap!r}"
        )


def _wrap(title: str, width: int) -> str:
    """Wrap each line of `title` to `width` characters, keeping its line breaks."""
    return "\n".join(textwrap.fill(line, width) for line in title.splitlines())


def image_grid(
    images: ImageLike | Sequence[ImageLike],
    titles: Sequence[str] | None = None,
    ncols: int = 8,
    scale: float = 1.5,
    suptitle: str | None = None,
    title_fontsize: float = 8,
    cmap: str = "gray",
    normalize: bool = False,
) -> Figure:
    """Images in rows of `ncols`, each `scale` inches wide, with optional titles.

    images: an (N, C, H, W) tensor or array, or a list of (C, H, W) / (H, W) images.
    titles: one per image, wrapped to the image's width.
    cmap: colour map for one-channel images (drawn on a fixed 0..1 scale).
    normalize: rescale each image's own min..max to 0..1 (see `to_numpy_image`).
    """
    normalize = check_bool("normalize", normalize)
    image_list = _as_image_list(images)
    pictures = [to_numpy_image(image, normalize) for image in image_list]
    _check_titles(titles, len(pictures))
    ncols = check_int("ncols", ncols)
    scale = check_float("scale", scale, 0, 100, open_min=True)  # inches
    fontsize = check_float("title_fontsize", title_fontsize, 0, 100, open_min=True)
    suptitle = check_optional(check_instance, "suptitle", suptitle, str)
    _check_cmap(cmap)
    # 72 points per inch, ~0.6 em per character
    chars_per_line = max(8, int(scale * 72 / (0.6 * fontsize)))
    wrapped = [_wrap(title, chars_per_line) for title in titles or []]
    title_lines = max((text.count("\n") + 1 for text in wrapped), default=0)
    ncols = min(ncols, len(pictures))
    nrows = math.ceil(len(pictures) / ncols)
    row_height = scale + title_lines * fontsize * 1.3 / 72  # inches
    figsize = (scale * ncols, row_height * nrows + (0.4 if suptitle else 0))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=figsize, squeeze=False, layout="constrained"
    )
    for index, ax in enumerate(axes.flat):
        if index >= len(pictures):
            fig.delaxes(ax)  # the unused cells of the last row
            continue
        picture = pictures[index]
        if picture.ndim == 2:
            ax.imshow(picture, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        else:
            ax.imshow(picture, interpolation="nearest")
        ax.set_axis_off()
        if wrapped:
            ax.set_title(wrapped[index], fontsize=fontsize)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


class ActualSize:
    """Images shown pixel for pixel (or enlarged by a whole factor `zoom`, as
    blocks) with captions: an HTML row of PNGs that the browser neither resamples
    nor blurs, so fine patterns (moiré, aliasing) appear as they are in the tensor.
    """

    def __init__(
        self,
        images: ImageLike | Sequence[ImageLike],
        titles: Sequence[str] | None = None,
        zoom: int = 1,
    ) -> None:
        self.pictures = [
            np.round(to_numpy_image(image) * 255).astype(np.uint8)
            for image in _as_image_list(images)
        ]
        _check_titles(titles, len(self.pictures))
        self.titles = list(titles or [""] * len(self.pictures))
        self.zoom = check_int("zoom", zoom, maximum=64)

    def _figure(self, picture: np.ndarray, title: str) -> str:
        buffer = io.BytesIO()
        Image.fromarray(picture).save(buffer, format="PNG")
        data = base64.b64encode(buffer.getvalue()).decode("ascii")
        height, width = (side * self.zoom for side in picture.shape[:2])
        style = "image-rendering: pixelated; image-rendering: crisp-edges"
        caption = html.escape(title).replace("\n", "<br>")
        return (
            '<figure style="margin: 0 12px 12px 0; display: inline-block; '
            'vertical-align: top">'
            f'<img src="data:image/png;base64,{data}" width="{width}" '
            f'height="{height}" style="{style}; max-width: none">'
            f'<figcaption style="font-size: 0.9em; max-width: {width}px">'
            f"{caption}</figcaption></figure>"
        )

    def _repr_html_(self) -> str:
        figures = "".join(map(self._figure, self.pictures, self.titles))
        return f"<div>{figures}</div>"


def plot_history(
    history: History | Mapping[str, History],
    ax: Axes | None = None,
    logy: bool = True,
    smooth: int | None = None,
) -> Axes:
    """Loss against step for one History, or several: a dict name -> History.

    One line each. smooth: also draw the mean over that many logged losses, over
    the raw curve made faint.
    """
    check_optional(check_instance, "ax", ax, Axes, "a matplotlib Axes")
    logy = check_bool("logy", logy)
    smooth = check_optional(check_int, "smooth", smooth)
    runs = {"loss": history} if isinstance(history, History) else history
    check_instance("history", runs, Mapping, "a History or a dict name -> History")
    if not runs:
        raise ValueError(
            "history must be a History or a non-empty dict of them, got an empty "
            "dict"
        )
    for name, run in runs.items():
        check_instance(f"history[{name!r}]", run, History, "a History")
        if not run.losses:
            raise ValueError(f"{name!r}: the history holds no logged loss yet")
        if logy and min(run.losses) <= 0:
            raise ValueError(
                f"{name!r}: losses reach {min(run.losses):.3g}, which a log scale "
                "cannot show; pass logy=False"
            )
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
    for name, run in runs.items():
        if smooth is None:
            ax.plot(run.steps, run.losses, label=name)
        else:
            (raw,) = ax.plot(run.steps, run.losses, alpha=0.3)
            label = f"{name} (mean of {smooth})"
            ax.plot(
                run.steps, run.smoothed(smooth), color=raw.get_color(), label=label
            )
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    return ax
