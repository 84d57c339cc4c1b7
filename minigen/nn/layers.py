"""The diffusion U-Net: residual blocks, a sinusoidal time embedding, self-attention and class conditioning.

Implements
- the U-Net of J. Ho, A. Jain, P. Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020: residual
  blocks with GroupNorm and SiLU that the time embedding conditions, self-attention at the low
  resolutions (16x16 in the paper), zero-initialised last convolutions so that a fresh network is close to
  the identity on its skip paths;
- the encoder-decoder with skip connections from each encoder resolution to the decoder's, O. Ronneberger,
  P. Fischer, T. Brox, "U-Net: Convolutional Networks for Biomedical Image Segmentation", MICCAI 2015;
- the scale-shift conditioning of each block, GroupNorm(h) (1 + scale) + shift, of A. Nichol, P. Dhariwal,
  "Improved Denoising Diffusion Probabilistic Models", ICML 2021;
- the sinusoidal embedding and scaled dot-product multi-head attention of A. Vaswani et al., "Attention Is
  All You Need", NeurIPS 2017;
- class conditioning with a learned NULL label per attribute, so that one network predicts both the
  conditional and the unconditional output, the ingredient of J. Ho, T. Salimans, "Classifier-Free
  Diffusion Guidance", arXiv:2207.12598 (2022).

The network maps noisy images (B, C, S, S), timesteps (B,) and optional labels (B, K) to (B, C, S, S); what
the output means (the noise eps, the clean image x0 or the velocity v) is the training loss's choice.
"""
from __future__ import annotations

import math

from torch import nn



def zero_init(module: nn.Module) -> nn.Module:
    """Set every parameter of `module` to 0 and return it; a zero last layer makes its branch output 0."""
    for parameter in module.parameters():
        nn.init.zeros_(parameter)
    return module

MAX_GROUPS = 8  # GroupNorm uses gcd(8, channels) groups, so that any width works (a width of 8 or more gets 8)


def norm_act(channels: int) -> nn.Sequential:
    """GroupNorm with gcd(MAX_GROUPS, channels) groups, then SiLU(x) = x sigmoid(x)."""
    return nn.Sequential(nn.GroupNorm(math.gcd(MAX_GROUPS, channels), channels), nn.SiLU())
