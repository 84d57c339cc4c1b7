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


import torch
from torch import nn

from minigen.nn.layers import norm_act
from minigen.nn.conv import _check_int
from minigen.nn.layers import group_norm, zero_init


def _check_dropout(dropout: float) -> None:
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be a probability in [0, 1), got {dropout!r}")


class ResidualBlock(nn.Module):
    """x -> norm_act -> conv3x3 -> GroupNorm, scaled and shifted by the embedding -> SiLU -> dropout -> conv3x3,
    plus the skip.

    The embedding enters as h = GroupNorm(h) * (1 + scale) + shift with (scale, shift) = Linear(SiLU(emb)) per
    channel, the "scale-shift norm" of A. Nichol, P. Dhariwal, "Improved Denoising Diffusion Probabilistic
    Models", ICML 2021. Adding the embedding *before* a GroupNorm, as the first DDPM did, lets the norm
    subtract most of it again (all of it when a group holds one channel); after the norm it always acts.
    The skip is the identity, or a 1x1 convolution when c_in != c_out. The second 3x3 convolution starts at
    zero, so a fresh block returns its skip path exactly: deep stacks start near the identity.
    """

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float = 0.0):
        super().__init__()
        for name, value in (("c_in", c_in), ("c_out", c_out), ("emb_dim", emb_dim)):
            _check_int(name, value)
        _check_dropout(dropout)
        self.c_in, self.emb_dim = c_in, emb_dim
        self.in_layers = nn.Sequential(norm_act(c_in), nn.Conv2d(c_in, c_out, 3, padding=1))
        self.emb_projection = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, 2 * c_out))   # scale and shift
        self.out_norm = group_norm(c_out)
        self.out_layers = nn.Sequential(nn.SiLU(), nn.Dropout(dropout),
                                        zero_init(nn.Conv2d(c_out, c_out, 3, padding=1)))
        self.skip = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.c_in:
            raise ValueError(f"ResidualBlock expects x (B, {self.c_in}, H, W), got {tuple(x.shape)}")
        if emb.shape != (x.shape[0], self.emb_dim):
            raise ValueError(f"ResidualBlock expects emb ({x.shape[0]}, {self.emb_dim}), got {tuple(emb.shape)}")
        h = self.in_layers(x)  # (B, c_out, H, W)
        scale, shift = self.emb_projection(emb)[:, :, None, None].chunk(2, dim=1)  # (B, c_out, 1, 1) each
        h = self.out_norm(h) * (1 + scale) + shift  # GroupNorm(h) (1 + scale) + shift, the same at every position
        return self.skip(x) + self.out_layers(h)  # (B, c_out, H, W)
