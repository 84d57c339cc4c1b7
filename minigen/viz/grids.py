"""Pictures of tensors and of training, drawn with matplotlib: image grids and loss curves.

Images follow torch's layout, (C, H, W) with C = 1 or 3 and values in [0, 1]. Values outside that
range are an error, never silently clipped: a generated image that leaves [0, 1] is worth seeing.
Pixels are drawn as blocks (nearest), so small images are shown as they are, not blurred.
"""
from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from einops import rearrange
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from minigen.core.train import History

ImageLike = torch.Tensor | np.ndarray
TOLERANCE = 1e-3   # rounding slack around [0, 1]; only values within it are clipped


def to_numpy_image(image: ImageLike, normalize: bool = False) -> np.ndarray:
    """(C, H, W) with C = 1 or 3, or (H, W) -> float32 (H, W, 3) or (H, W), what `imshow` takes.

    normalize=True rescales this image's min..max to 0..1 (a constant image becomes all 0);
    otherwise values must lie in [0, 1].
    """
    if isinstance(image, torch.Tensor):
        array = image.detach().float().cpu().numpy()
    elif isinstance(image, np.ndarray):
        array = image.astype(np.float32)
    else:
        raise TypeError(f"an image must be a torch.Tensor or numpy array, got {type(image).__name__}")
    shape = tuple(array.shape)
    if array.ndim == 3 and shape[0] in (1, 3):
        array = array[0] if shape[0] == 1 else rearrange(array, "c h w -> h w c")
    elif array.ndim != 2:
        channels_last = array.ndim == 3 and shape[-1] in (1, 3)
        hint = "; channels last? use einops.rearrange(x, 'h w c -> c h w')" if channels_last else ""
        raise ValueError(f"an image must be (C, H, W) with C = 1 or 3, or (H, W); got shape {shape}{hint}")
    if array.size == 0:
        raise ValueError(f"the image is empty: shape {shape}")
    if not np.isfinite(array).all():
        raise ValueError("the image holds NaN or inf values")
    low, high = float(array.min()), float(array.max())
    if normalize:
        return (array - low) / (high - low) if high > low else np.zeros_like(array)   # x <- (x - min) / (max - min)
    if low < -TOLERANCE or high > 1 + TOLERANCE:
        raise ValueError(f"image values span [{low:.3g}, {high:.3g}], outside [0, 1]; map them into [0, 1] first "
                         "((x + 1) / 2 for data in [-1, 1], or x.clamp(0, 1)) or pass normalize=True")
    return np.clip(array, 0.0, 1.0)


def _as_image_list(images: ImageLike | Sequence[ImageLike]) -> list[ImageLike]:
    if isinstance(images, (torch.Tensor, np.ndarray)):
        if images.ndim != 4:
            raise ValueError(f"a batch of images must be (N, C, H, W), got shape {tuple(images.shape)}; "
                             "for a single image pass [image]")
        images = list(images)
    if not isinstance(images, Sequence):
        raise TypeError(f"images must be an (N, C, H, W) tensor or array, or a list of images; "
                        f"got {type(images).__name__}")
    if len(images) == 0:
        raise ValueError("there are no images to show")
    return list(images)


def _wrap(title: str, width: int) -> str:
    """Wrap each line of `title` to `width` characters, keeping the line breaks it has."""
    return "\n".join(textwrap.fill(line, width) for line in title.splitlines())


def image_grid(images: ImageLike | Sequence[ImageLike], titles: Sequence[str] | None = None, ncols: int = 8,
               scale: float = 1.5, suptitle: str | None = None, title_fontsize: float = 8,
               cmap: str = "gray", normalize: bool = False) -> Figure:
    """Images in rows of `ncols`, each `scale` inches wide, with optional titles wrapped to that width.

    images: an (N, C, H, W) tensor or array, or a list of (C, H, W) / (H, W) images.
    cmap: colour map for one-channel images (drawn on a fixed 0..1 scale).
    normalize: rescale each image's own min..max to 0..1 (see `to_numpy_image`).
    """
    pictures = [to_numpy_image(image, normalize) for image in _as_image_list(images)]
    if isinstance(titles, str):
        raise TypeError("titles must be a list of strings, one per image, not a single string")
    if titles is not None and len(titles) != len(pictures):
        raise ValueError(f"got {len(titles)} titles for {len(pictures)} images")
    if not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"ncols must be a positive int, got {ncols!r}")
    if not scale > 0:
        raise ValueError(f"scale (inches per image) must be positive, got {scale}")
    chars_per_line = max(8, int(scale * 72 / (0.6 * title_fontsize)))   # 72 points per inch, ~0.6 em per char
    wrapped = [_wrap(title, chars_per_line) for title in titles] if titles is not None else []
    title_lines = max((text.count("\n") + 1 for text in wrapped), default=0)
    ncols = min(ncols, len(pictures))
    nrows = math.ceil(len(pictures) / ncols)
    row_height = scale + title_lines * title_fontsize * 1.3 / 72                    # inches
    fig, axes = plt.subplots(nrows, ncols, figsize=(scale * ncols, row_height * nrows + (0.4 if suptitle else 0)),
                             squeeze=False, layout="constrained")
    for index, ax in enumerate(axes.flat):
        if index >= len(pictures):
            fig.delaxes(ax)   # the unused cells of the last row
            continue
        picture = pictures[index]
        if picture.ndim == 2:
            ax.imshow(picture, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
        else:
            ax.imshow(picture, interpolation="nearest")
        ax.set_axis_off()
        if wrapped:
            ax.set_title(wrapped[index], fontsize=title_fontsize)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def plot_history(history: History | Mapping[str, History], ax: Axes | None = None, logy: bool = True,
                 smooth: int | None = None) -> Axes:
    """Loss against step for one History or several (a dict name -> History, one line each).

    smooth: also draw the mean over that many logged losses, over the raw curve made faint.
    """
    runs = {"loss": history} if isinstance(history, History) else history
    if not isinstance(runs, Mapping) or not runs:
        raise TypeError(f"history must be a History or a non-empty dict of them, got {history!r}")
    for name, run in runs.items():
        if not isinstance(run, History):
            raise TypeError(f"{name!r} maps to {type(run).__name__}, not a History")
        if not run.losses:
            raise ValueError(f"{name!r}: the history holds no logged loss yet")
        if logy and min(run.losses) <= 0:
            raise ValueError(f"{name!r}: losses reach {min(run.losses):.3g}, which a log scale cannot show; "
                             "pass logy=False")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
    for name, run in runs.items():
        if smooth is None:
            ax.plot(run.steps, run.losses, label=name)
        else:
            (raw,) = ax.plot(run.steps, run.losses, alpha=0.3)
            ax.plot(run.steps, run.smoothed(smooth), color=raw.get_color(), label=f"{name} (mean of {smooth})")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    return ax
