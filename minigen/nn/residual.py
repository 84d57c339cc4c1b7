"""The diffusion U-Net's residual block, conditioned on an embedding by scale-shift.

- Residual learning, y = x + F(x): K. He et al., "Deep Residual Learning for Image
  Recognition", CVPR 2016.
- The block of the DDPM U-Net (GroupNorm, SiLU, two 3x3 convolutions, the last one
  zero-initialised so that a fresh block is its skip path): J. Ho, A. Jain,
  P. Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020.
- The scale-shift conditioning GroupNorm(h) (1 + scale) + shift: A. Nichol,
  P. Dhariwal, "Improved Denoising Diffusion Probabilistic Models", ICML 2021.
"""

from __future__ import annotations

import torch
from torch import nn

from minigen.core.validators import check_int, check_probability, check_tensor
from minigen.nn.layers import CheckedModule, group_norm, norm_act, zero_init


class ResidualBlock(CheckedModule):
    """x -> norm_act -> conv3x3 -> GroupNorm, scaled and shifted by the embedding ->
    SiLU -> dropout -> conv3x3, plus the skip.

    The embedding enters as h = GroupNorm(h) * (1 + scale) + shift with (scale,
    shift) = Linear(SiLU(emb)) per channel, the "scale-shift norm" of Nichol and
    Dhariwal (2021). Adding the embedding *before* a GroupNorm, as the first DDPM
    did, lets the norm subtract most of it again (all of it when a group holds one
    channel); after the norm it always acts. The skip is the identity, or a 1x1
    convolution when c_in != c_out. The second 3x3 convolution starts at zero, so a
    fresh block returns its skip path exactly: deep stacks start near the identity.
    """

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float = 0.0):
        super().__init__()
        self.c_in, c_out = check_int("c_in", c_in), check_int("c_out", c_out)
        self.emb_dim = check_int("emb_dim", emb_dim)
        check_probability("dropout", dropout)
        self.in_layers = nn.Sequential(
            norm_act(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        )
        # scale and shift, one of each per output channel
        self.emb_projection = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_dim, 2 * c_out)
        )
        self.out_norm = group_norm(c_out)
        self.out_layers = nn.Sequential(
            nn.SiLU(),
            nn.Dropout(dropout),
            zero_init(nn.Conv2d(c_out, c_out, 3, padding=1)),
        )
        self.skip = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)  # (B, c_out, H, W)
        # (B, c_out, 1, 1) each: the same scale and shift at every position
        scale, shift = self.emb_projection(emb)[:, :, None, None].chunk(2, dim=1)
        h = (
            self.out_norm(h) * (1 + scale) + shift
        )  # GroupNorm(h) (1 + scale) + shift
        return self.skip(x) + self.out_layers(h)  # (B, c_out, H, W)

    def check_inputs(self, x: torch.Tensor, emb: torch.Tensor) -> None:
        check_tensor("x", x, dims=4, floating=True, shape=f"(B, {self.c_in}, H, W)")
        if x.shape[1] != self.c_in:
            raise ValueError(
                f"ResidualBlock expects x (B, {self.c_in}, H, W), got "
                f"{tuple(x.shape)}"
            )
        check_tensor(
            "emb", emb, dims=2, floating=True, shape=f"(B, {self.emb_dim})"
        )
        if emb.shape != (x.shape[0], self.emb_dim):
            raise ValueError(
                f"ResidualBlock expects emb ({x.shape[0]}, {self.emb_dim}), one "
                f"row per image of x, got {tuple(emb.shape)}"
            )
