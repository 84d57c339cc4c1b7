"""Upsampling by 2: transposed convolution, pixel shuffle, resize-convolution, and their checkerboards.

Implements
- transposed convolution as zero insertion followed by an ordinary convolution, and as a scatter-add,
  after V. Dumoulin, F. Visin, "A guide to convolution arithmetic for deep learning", arXiv:1603.07285
  (2016), with the conventions of torch.nn.functional.conv_transpose2d;
- pixel shuffle, W. Shi et al., "Real-Time Single Image and Video Super-Resolution Using an Efficient
  Sub-Pixel Convolutional Neural Network", CVPR 2016, and its ICNR initialisation, A. Aitken et al.,
  "Checkerboard artifact free sub-pixel convolution", arXiv:1707.02937 (2017);
- resize-convolution and the checkerboard artifacts of transposed convolution, A. Odena, V. Dumoulin,
  C. Olah, "Deconvolution and Checkerboard Artifacts", Distill (2016), measured by `checkerboard_score`.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from einops import repeat
from torch import nn
from minigen.ops.upsample import pixel_shuffle


UPSAMPLERS: tuple[str, ...] = (
    "transposed k3s2",
    "transposed k4s2",
    "resize-conv nearest",
    "resize-conv bilinear",
    "pixel shuffle",
)


# ---------------------------------------------------------------------------------------------
# Upsampler modules: (B, C, H, W) -> (B, C, 2H, 2W)
# ---------------------------------------------------------------------------------------------


def _check_channels(channels: int) -> None:
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(f"channels must be an int >= 1, got {channels!r}")


class TransposedConvUp(nn.Module):
    """Transposed convolution, stride 2: kernel 3 (padding 1, output_padding 1) or 4 (padding 1).

    Kernel 3 is not divisible by the stride, so output pixels receive 1, 2 or 4 stamps: checkerboards.
    """

    def __init__(self, channels: int, kernel: int = 3):
        super().__init__()
        _check_channels(channels)
        if kernel not in (3, 4):
            raise ValueError(f"kernel must be 3 or 4 (the two common x2 layers), got {kernel!r}")
        output_padding = 1 if kernel == 3 else 0  # o = 2(i - 1) - 2 + (k - 1) + a + 1 = 2i
        self.conv = nn.ConvTranspose2d(channels, channels, kernel, stride=2, padding=1, output_padding=output_padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)  # (B, C, 2H, 2W)


class ResizeConvUp(nn.Module):
    """Resize by 2 (nearest or bilinear), then a 3x3 convolution (Odena et al. 2016)."""

    def __init__(self, channels: int, mode: str = "nearest"):
        super().__init__()
        _check_channels(channels)
        if mode not in ("nearest", "bilinear"):
            raise ValueError(f"mode must be 'nearest' or 'bilinear', got {mode!r}")
        self.mode = mode
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        align = False if self.mode == "bilinear" else None  # align_corners applies to bilinear only
        x = F.interpolate(x, scale_factor=2, mode=self.mode, align_corners=align)  # (B, C, 2H, 2W)
        return self.conv(x)


class PixelShuffleUp(nn.Module):
    """A 3x3 convolution to 4C channels, then pixel_shuffle(2) (Shi et al. 2016).

    icnr: initialise the four sub-pixel kernels of each output channel identically (Aitken et al. 2017),
    so that at initialisation the layer equals a convolution followed by nearest upsampling.
    """

    def __init__(self, channels: int, icnr: bool = False):
        super().__init__()
        _check_channels(channels)
        if not isinstance(icnr, bool):
            raise TypeError(f"icnr must be True or False, got {icnr!r}")
        self.conv = nn.Conv2d(channels, 4 * channels, 3, padding=1)
        if icnr:
            with torch.no_grad():  # channels 4c..4c+3 become output channel c: give them one kernel
                self.conv.weight.copy_(repeat(self.conv.weight[::4], "c i h w -> (c r) i h w", r=4))
                self.conv.bias.copy_(repeat(self.conv.bias[::4], "c -> (c r)", r=4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pixel_shuffle(self.conv(x), 2)  # (B, 4C, H, W) -> (B, C, 2H, 2W)


_FACTORIES: dict[str, Callable[[int], nn.Module]] = {
    "transposed k3s2": lambda c: TransposedConvUp(c, kernel=3),
    "transposed k4s2": lambda c: TransposedConvUp(c, kernel=4),
    "resize-conv nearest": lambda c: ResizeConvUp(c, mode="nearest"),
    "resize-conv bilinear": lambda c: ResizeConvUp(c, mode="bilinear"),
    "pixel shuffle": lambda c: PixelShuffleUp(c),
}


def make_upsampler(name: str, channels: int) -> nn.Module:
    """A freshly initialised x2 upsampler with `channels` in and out; `name` is one of UPSAMPLERS."""
    if name not in _FACTORIES:
        raise ValueError(f"unknown upsampler {name!r}; valid names: {', '.join(UPSAMPLERS)}")
    return _FACTORIES[name](channels)
