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

import torch

from minigen.nn.conv import _check_int


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of (B,) timesteps (int or float) -> (B, dim) float32.

    With half = dim / 2 and w_i = max_period^(-i / half), i = 0..half-1, the first half is cos(t w_i) and the
    second half sin(t w_i): the frequencies run geometrically from 1 down to about 1 / max_period, so that
    nearby timesteps differ in the fast coordinates and distant ones in the slow coordinates. dim must be even.
    """
    _check_int("dim", dim)
    if dim % 2:
        raise ValueError(f"dim must be even (half cosines, half sines), got {dim}")
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"t must be a tensor of timesteps (B,), got {type(t).__name__}")
    if t.dim() != 1:
        raise ValueError(f"t must be a 1-d tensor of timesteps (B,), got shape {tuple(t.shape)}")
    if t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"t must hold integer or real timesteps, got {t.dtype}")
    half = dim // 2
    steps = torch.arange(half, dtype=torch.float32, device=t.device) / half  # (half,), i / half
    frequencies = torch.exp(-math.log(max_period) * steps)  # w_i = max_period^(-i / half)
    angles = t.float()[:, None] * frequencies[None, :]  # (B, half), t w_i
    return torch.cat([angles.cos(), angles.sin()], dim=1)  # (B, dim)
