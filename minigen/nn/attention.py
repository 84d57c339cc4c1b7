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
from einops import rearrange
from torch import nn

from minigen.nn.conv import _check_int
from minigen.nn.layers import group_norm, zero_init


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v for (B, heads, N, d) queries, keys and values -> (B, heads, N, d).

    The scores and the softmax are computed in float32, so bf16 autocast cannot round the weights away.
    """
    scores = (q @ k.transpose(-2, -1)).float() / math.sqrt(q.shape[-1])  # (B, heads, N, N), q k^T / sqrt(d)
    weights = scores.softmax(dim=-1).to(v.dtype)  # each row sums to 1 over the N keys
    return weights @ v  # (B, heads, N, d)


class SelfAttention2d(nn.Module):
    """Multi-head self-attention over the H*W positions of a feature map, added to it as a residual.

    GroupNorm, a 1x1 convolution to queries, keys and values, `heads` heads of d = C / heads channels each
    attending over all H*W positions, then a 1x1 output convolution that starts at zero (a fresh layer is
    the identity).
    """

    def __init__(self, channels: int, heads: int = 4):
        super().__init__()
        _check_int("channels", channels)
        _check_int("heads", heads)
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be divisible by heads ({heads})")
        self.channels, self.heads = channels, heads
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj_out = zero_init(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"SelfAttention2d expects x (B, {self.channels}, H, W), got {tuple(x.shape)}")
        height = x.shape[2]
        q, k, v = self.qkv(self.norm(x)).chunk(3, dim=1)  # each (B, C, H, W)
        q, k, v = (rearrange(z, "b (n d) h w -> b n (h w) d", n=self.heads) for z in (q, k, v))  # (B, heads, HW, d)
        out = rearrange(attention(q, k, v), "b n (h w) d -> b (n d) h w", h=height)  # (B, C, H, W)
        return x + self.proj_out(out)
