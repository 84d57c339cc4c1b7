"""Small layers that every network of the book is built from.

- GroupNorm, Y. Wu, K. He, "Group Normalization", ECCV 2018, with SiLU(x) = x sigmoid(x),
  S. Elfwing et al. 2018 ("Swish", P. Ramachandran et al. 2017): the pairing of DDPM-style
  U-Nets. GroupNorm normalises each image on its own, so a model behaves the same in train and
  eval mode and on a batch of one, which generators need.
- Zero initialisation of a branch's last layer, so that a fresh residual block is the identity
  (the DDPM U-Net of J. Ho et al. 2020; "Fixup", H. Zhang et al., ICLR 2019).
- Halving the resolution with a stride-2 3x3 convolution, the downsampling of the
  all-convolutional net, J. T. Springenberg et al., "Striving for Simplicity", ICLR-W 2015.
"""
from __future__ import annotations

import math

from torch import nn

from minigen.core.validators import check_int

MAX_GROUPS = 8   # GroupNorm uses gcd(8, channels) groups: any width works, 8 or more gets 8


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm over `channels` with gcd(MAX_GROUPS, channels) groups."""
    channels = check_int("channels", channels)
    return nn.GroupNorm(math.gcd(MAX_GROUPS, channels), channels)


def norm_act(channels: int) -> nn.Sequential:
    """group_norm(channels), then SiLU."""
    return nn.Sequential(group_norm(channels), nn.SiLU())


def zero_init(module: nn.Module) -> nn.Module:
    """Set every parameter of `module` to 0 and return it: the branch it ends outputs 0."""
    for parameter in module.parameters():
        nn.init.zeros_(parameter)
    return module


def downsample(c_in: int, c_out: int | None = None) -> nn.Conv2d:
    """A stride-2 3x3 convolution: (B, c_in, H, W) -> (B, c_out, H/2, W/2) for even H, W.

    o = floor((i + 2p - k) / s) + 1 = i / 2 for k = 3, p = 1, s = 2 and even i.
    """
    c_in = check_int("c_in", c_in)
    c_out = c_in if c_out is None else check_int("c_out", c_out)
    return nn.Conv2d(c_in, c_out, 3, stride=2, padding=1)
