"""Convolutional encoder and decoder blocks shared by the autoencoder, the VAE and later decoders.

- The encoder halves the resolution with stride-2 3x3 convolutions, the downsampling of the all-convolutional
  net, J. T. Springenberg et al., "Striving for Simplicity: The All Convolutional Net", ICLR workshop 2015.
- The decoder doubles it with an upsampler of `minigen.upsample`; the default, resize-convolution with
  nearest-neighbour resizing, is the one chapter 2 measured free of checkerboard artifacts (A. Odena,
  V. Dumoulin, C. Olah, "Deconvolution and Checkerboard Artifacts", Distill 2016).
- Normalisation: GroupNorm (Y. Wu, K. He, "Group Normalization", ECCV 2018) with the SiLU activation
  (S. Elfwing et al. 2018; "Swish", P. Ramachandran et al. 2017), the pairing of DDPM-style U-Nets. We
  pick it over BatchNorm/ReLU because GroupNorm normalises each image on its own: a model behaves the same
  in train and eval mode and on a batch of one decoded sample, which generators need.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from minigen.nn.resample import UPSAMPLERS, make_upsampler
from minigen.nn.layers import downsample, norm_act


def _check_int(name: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")


def _check_widths(widths: Sequence[int]) -> tuple[int, ...]:
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence) or len(widths) == 0:
        raise ValueError(f"widths must be a non-empty sequence of channel counts, e.g. (32, 64, 128), got {widths!r}")
    for width in widths:
        _check_int("every width", width)
    return tuple(widths)


def _smallest_size(image_size: int, levels: int) -> int:
    """The side of the coarsest feature map, image_size / 2^levels; the division must be exact."""
    _check_int("image_size", image_size)
    factor = 2**levels
    if image_size % factor:
        raise ValueError(f"image_size {image_size} must be divisible by 2^{levels} = {factor} "
                         f"({levels} widths means {levels} halvings)")
    return image_size // factor


class ConvEncoder(nn.Module):
    """(B, C_in, S, S) -> (B, out_features): stride-2 3x3 convolutions (each + GroupNorm + SiLU), then a linear head.

    widths[i] is the number of channels after the i-th halving, so the last feature map is
    (B, widths[-1], S / 2^n, S / 2^n) with n = len(widths).
    """

    def __init__(self, in_channels: int = 3, widths: Sequence[int] = (32, 64, 128), out_features: int = 64,
                 image_size: int = 32):
        super().__init__()
        _check_int("in_channels", in_channels)
        _check_int("out_features", out_features)
        widths = _check_widths(widths)
        self.in_channels, self.image_size = in_channels, image_size
        side = _smallest_size(image_size, len(widths))
        layers: list[nn.Module] = []
        for c_in, c_out in zip((in_channels, *widths[:-1]), widths):
            layers += [downsample(c_in, c_out), norm_act(c_out)]  # (B, c_out, H/2, W/2)
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(widths[-1] * side * side, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        expected = (self.in_channels, self.image_size, self.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"ConvEncoder expects images (B, {', '.join(map(str, expected))}), got {tuple(x.shape)}")
        features = self.features(x)  # (B, widths[-1], S / 2^n, S / 2^n)
        return self.head(features.flatten(1))  # (B, out_features)


class ConvDecoder(nn.Module):
    """(B, in_features) -> (B, out_channels, S, S) logits: a linear layer to a (widths[0], S / 2^n, S / 2^n) map,
    then n stages of [x2 upsampler, 3x3 convolution to the next width, GroupNorm, SiLU], then a 3x3 convolution
    to out_channels with no activation (the loss decides: sigmoid for [0, 1] images, none for a Gaussian mean).
    """

    def __init__(self, in_features: int = 64, widths: Sequence[int] = (128, 64, 32), out_channels: int = 3,
                 upsampler: str = "resize-conv nearest", image_size: int = 32):
        super().__init__()
        _check_int("in_features", in_features)
        _check_int("out_channels", out_channels)
        widths = _check_widths(widths)
        if upsampler not in UPSAMPLERS:
            raise ValueError(f"unknown upsampler {upsampler!r}; valid names: {', '.join(UPSAMPLERS)}")
        self.in_features, self.side = in_features, _smallest_size(image_size, len(widths))
        self.start = nn.Linear(in_features, widths[0] * self.side * self.side)
        self.start_act = norm_act(widths[0])
        stages = []
        for c_in, c_out in zip(widths, (*widths[1:], widths[-1])):
            stages.append(nn.Sequential(
                make_upsampler(upsampler, c_in),  # (B, c_in, 2H, 2W)
                nn.Conv2d(c_in, c_out, 3, padding=1),  # (B, c_out, 2H, 2W)
                norm_act(c_out),
            ))
        self.stages = nn.Sequential(*stages)
        self.to_image = nn.Conv2d(widths[-1], out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.in_features:
            raise ValueError(f"ConvDecoder expects codes (B, {self.in_features}), got {tuple(z.shape)}")
        x = self.start(z).unflatten(1, (-1, self.side, self.side))  # (B, widths[0], S / 2^n, S / 2^n)
        x = self.stages(self.start_act(x))  # (B, widths[-1], S, S)
        return self.to_image(x)  # (B, out_channels, S, S) logits
