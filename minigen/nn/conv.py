"""Convolutional building blocks: the classifiers' conv block (chapter 1's oracle,
the digit classifier) and the encoder and decoder of the autoencoder and the VAE.

- conv_block: two 3x3 convolutions with BatchNorm and ReLU, then 2x2 max pooling,
  the VGG pattern (K. Simonyan, A. Zisserman, "Very Deep Convolutional Networks for
  Large-Scale Image Recognition", ICLR 2015).

- The encoder halves the resolution with stride-2 3x3 convolutions, the downsampling
  of the all-convolutional net, J. T. Springenberg et al., "Striving for Simplicity:
  The All Convolutional Net", ICLR workshop 2015.
- The decoder doubles it with an upsampler of `minigen.nn.resample`; the default,
  resize-convolution with nearest-neighbour resizing, is the one chapter 2 measured
  free of checkerboard artifacts (A. Odena, V. Dumoulin, C. Olah, "Deconvolution and
  Checkerboard Artifacts", Distill 2016).
- Normalisation: GroupNorm (Y. Wu, K. He, "Group Normalization", ECCV 2018) with the
  SiLU activation (S. Elfwing et al. 2018; "Swish", P. Ramachandran et al. 2017),
  the pairing of DDPM-style U-Nets. We pick it over BatchNorm/ReLU because GroupNorm
  normalises each image on its own: a model behaves the same in train and eval mode
  and on a batch of one decoded sample, which generators need.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from minigen.core.validators import (
    check_choice,
    check_int,
    check_ints,
    check_tensor,
)
from minigen.nn.layers import CheckedModule, downsample, norm_act
from minigen.nn.resample import UPSAMPLERS, make_upsampler


def _smallest_size(image_size: int, levels: int) -> int:
    """The side of the coarsest feature map, image_size / 2^levels (exactly)."""
    image_size = check_int("image_size", image_size)
    factor = 2**levels
    if image_size % factor:
        raise ValueError(
            f"image_size {image_size} must be divisible by 2^{levels} = {factor} "
            f"({levels} widths means {levels} halvings)"
        )
    return image_size // factor


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    """Two 3x3 'same' convolutions with batch norm and ReLU, then 2x2 max pooling
    (halves H and W)."""
    c_in, c_out = check_int("c_in", c_in), check_int("c_out", c_out)
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class ConvEncoder(CheckedModule):
    """(B, C_in, S, S) -> (B, out_features): stride-2 3x3 convolutions (each +
    GroupNorm + SiLU), then a linear head.

    widths[i] is the number of channels after the i-th halving, so the last feature
    map is (B, widths[-1], S / 2^n, S / 2^n) with n = len(widths).
    """

    def __init__(
        self,
        in_channels: int = 3,
        widths: Sequence[int] = (32, 64, 128),
        out_features: int = 64,
        image_size: int = 32,
    ):
        super().__init__()
        in_channels = check_int("in_channels", in_channels)
        out_features = check_int("out_features", out_features)
        widths = check_ints("widths", widths)
        self.in_channels, self.image_size = in_channels, image_size
        side = _smallest_size(image_size, len(widths))
        layers: list[nn.Module] = []
        for c_in, c_out in zip((in_channels, *widths[:-1]), widths):
            # (B, c_out, H/2, W/2)
            layers += [downsample(c_in, c_out), norm_act(c_out)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(widths[-1] * side * side, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.features(x)  # (B, widths[-1], S / 2^n, S / 2^n)
        return self.head(features.flatten(1))  # (B, out_features)

    def check_inputs(self, x: torch.Tensor) -> None:
        expected = (self.in_channels, self.image_size, self.image_size)
        layout = f"(B, {', '.join(map(str, expected))})"
        check_tensor("x", x, dims=4, floating=True, shape=layout)
        if tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"ConvEncoder expects images {layout}, got {tuple(x.shape)}"
            )


class ConvDecoder(CheckedModule):
    """(B, in_features) -> (B, out_channels, S, S) logits.

    A linear layer to a (widths[0], S / 2^n, S / 2^n) map, then n stages of [x2
    upsampler, 3x3 convolution to the next width, GroupNorm, SiLU], then a 3x3
    convolution to out_channels with no activation (the loss decides: sigmoid for
    [0, 1] images, none for a Gaussian mean).
    """

    def __init__(
        self,
        in_features: int = 64,
        widths: Sequence[int] = (128, 64, 32),
        out_channels: int = 3,
        upsampler: str = "resize-conv nearest",
        image_size: int = 32,
    ):
        super().__init__()
        in_features = check_int("in_features", in_features)
        out_channels = check_int("out_channels", out_channels)
        widths = check_ints("widths", widths)
        check_choice("upsampler", upsampler, UPSAMPLERS)
        self.in_features = in_features
        self.side = _smallest_size(image_size, len(widths))
        self.start = nn.Linear(in_features, widths[0] * self.side * self.side)
        self.start_act = norm_act(widths[0])
        stages = []
        for c_in, c_out in zip(widths, (*widths[1:], widths[-1])):
            stage = nn.Sequential(
                make_upsampler(upsampler, c_in),  # (B, c_in, 2H, 2W)
                nn.Conv2d(c_in, c_out, 3, padding=1),  # (B, c_out, 2H, 2W)
                norm_act(c_out),
            )
            stages.append(stage)
        self.stages = nn.Sequential(*stages)
        self.to_image = nn.Conv2d(widths[-1], out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.start(z).unflatten(1, (-1, self.side, self.side))  # (B, C, s, s)
        x = self.stages(self.start_act(x))  # (B, widths[-1], S, S)
        return self.to_image(x)  # (B, out_channels, S, S) logits

    def check_inputs(self, z: torch.Tensor) -> None:
        layout = f"(B, {self.in_features})"
        check_tensor("z", z, dims=2, floating=True, shape=layout)
        if z.shape[1] != self.in_features:
            raise ValueError(
                f"ConvDecoder expects codes {layout}, got {tuple(z.shape)}"
            )
