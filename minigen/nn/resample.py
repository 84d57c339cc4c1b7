"""Upsampling by 2: transposed convolution, pixel shuffle, resize-convolution.

Implements
- transposed convolution, after V. Dumoulin, F. Visin, "A guide to convolution
  arithmetic for deep learning", arXiv:1603.07285 (2016), with the conventions of
  torch.nn.functional.conv_transpose2d;
- pixel shuffle, W. Shi et al., "Real-Time Single Image and Video Super-Resolution
  Using an Efficient Sub-Pixel Convolutional Neural Network", CVPR 2016, and its
  ICNR initialisation, A. Aitken et al., "Checkerboard artifact free sub-pixel
  convolution", arXiv:1707.02937 (2017);
- resize-convolution, which avoids the checkerboard artifacts of transposed
  convolution, A. Odena, V. Dumoulin, C. Olah, "Deconvolution and Checkerboard
  Artifacts", Distill (2016) (chapter 2 measures them with
  `minigen.ops.upsample.checkerboard_score`).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from einops import repeat
from torch import nn

from minigen.core.validators import (
    check_bool,
    check_choice,
    check_int,
    check_tensor,
)
from minigen.nn.layers import CheckedModule
from minigen.ops.upsample import pixel_shuffle

UPSAMPLERS: tuple[str, ...] = (
    "transposed k3s2",
    "transposed k4s2",
    "resize-conv nearest",
    "resize-conv bilinear",
    "pixel shuffle",
)


class _Upsampler(CheckedModule):
    """An x2 upsampler of `channels` channels; its input must be (B, C, H, W)."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = check_int("channels", channels)

    def check_inputs(self, x: torch.Tensor) -> None:
        layout = f"(B, {self.channels}, H, W)"
        check_tensor("x", x, dims=4, floating=True, shape=layout)
        if x.shape[1] != self.channels:
            raise ValueError(f"x must have shape {layout}, got {tuple(x.shape)}")


class TransposedConvUp(_Upsampler):
    """Transposed convolution, stride 2: kernel 3 (padding 1, output_padding 1) or
    kernel 4 (padding 1).

    Kernel 3 is not divisible by the stride, so output pixels receive 1, 2 or 4
    stamps: checkerboards.
    """

    def __init__(self, channels: int, kernel: int = 3):
        super().__init__(channels)
        kernel = check_choice("kernel", check_int("kernel", kernel), (3, 4))
        # o = 2(i - 1) - 2p + (k - 1) + a + 1 = 2i for p = 1 and a = 4 - k
        output_padding = 1 if kernel == 3 else 0
        self.conv = nn.ConvTranspose2d(
            channels,
            channels,
            kernel,
            stride=2,
            padding=1,
            output_padding=output_padding,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)  # (B, C, 2H, 2W)


class ResizeConvUp(_Upsampler):
    """Resize by 2 (nearest or bilinear), then a 3x3 convolution (Odena et al.)."""

    def __init__(self, channels: int, mode: str = "nearest"):
        super().__init__(channels)
        self.mode = check_choice("mode", mode, ("nearest", "bilinear"))
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        align = False if self.mode == "bilinear" else None  # for bilinear only
        x = F.interpolate(x, scale_factor=2, mode=self.mode, align_corners=align)
        return self.conv(x)  # (B, C, 2H, 2W)


class PixelShuffleUp(_Upsampler):
    """A 3x3 convolution to 4C channels, then pixel_shuffle(2) (Shi et al. 2016).

    icnr: initialise the four sub-pixel kernels of each output channel identically
    (Aitken et al. 2017), so that at initialisation the layer equals a convolution
    followed by nearest upsampling.
    """

    def __init__(self, channels: int, icnr: bool = False):
        super().__init__(channels)
        icnr = check_bool("icnr", icnr)
        self.conv = nn.Conv2d(channels, 4 * channels, 3, padding=1)
        if icnr:  # channels 4c..4c+3 become output channel c: give them one kernel
            with torch.no_grad():
                weight, bias = self.conv.weight[::4], self.conv.bias[::4]
                self.conv.weight.copy_(
                    repeat(weight, "c i h w -> (c r) i h w", r=4)
                )
                self.conv.bias.copy_(repeat(bias, "c -> (c r)", r=4))

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
    """A fresh x2 upsampler, `channels` in and out; `name` is one of UPSAMPLERS."""
    if not isinstance(name, str) or name not in _FACTORIES:
        raise ValueError(
            f"unknown upsampler {name!r}; valid names: {', '.join(UPSAMPLERS)}"
        )
    return _FACTORIES[name](channels)
