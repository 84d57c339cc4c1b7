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

from typing import Sequence

import torch
from torch import nn

from minigen.nn.layers import norm_act
from minigen.nn.conv import _check_int
from minigen.nn.resample import ResizeConvUp
from minigen.nn.attention import SelfAttention2d
from minigen.nn.embeddings import timestep_embedding
from minigen.nn.layers import downsample, zero_init
from minigen.nn.residual import ResidualBlock, _check_dropout


class _AttentiveResidualBlock(nn.Module):
    """A ResidualBlock, followed by SelfAttention2d when `attend`: one unit of a U-Net level."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float, attend: bool, heads: int):
        super().__init__()
        self.residual = ResidualBlock(c_in, c_out, emb_dim, dropout)
        self.attention = SelfAttention2d(c_out, heads) if attend else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return self.attention(self.residual(x, emb))  # (B, c_out, H, W)


def _check_positive_ints(name: str, values: Sequence[int], allow_empty: bool = False) -> tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or (len(values) == 0 and not allow_empty):
        raise ValueError(f"{name} must be a {'' if allow_empty else 'non-empty '}sequence of ints, got {values!r}")
    for value in values:
        _check_int(f"every entry of {name}", value, minimum=0 if allow_empty else 1)
    return tuple(values)


class UNet(nn.Module):
    """eps / x0 / v predictor for diffusion: (B, C, S, S) noisy images, (B,) timesteps, optional (B, K) labels
    -> (B, C, S, S).

    Level i works at base_channels * channel_mults[i] channels and side image_size / 2^i. The encoder runs
    blocks_per_level residual blocks per level (each followed by self-attention at the levels listed in
    attention_levels) and halves the side between levels with a stride-2 3x3 convolution; the middle is
    residual block, attention, residual block at the lowest resolution; the decoder mirrors the encoder with
    blocks_per_level + 1 blocks per level, each reading the concatenation of its input with one encoder
    activation (the skip connections), and doubles the side with resize-convolution. The last convolution
    starts at zero, so a fresh model predicts 0.

    The timestep t goes through timestep_embedding(t, base_channels) and a 2-layer MLP to emb_dim =
    4 * base_channels. With class_counts, e.g. (5, 6) for (shape, colour), each attribute k has an
    nn.Embedding of class_counts[k] + 1 rows added to the time embedding; row class_counts[k] is the NULL
    label (unconditional), which labels=None selects for every attribute.
    """

    def __init__(self, in_channels: int = 3, base_channels: int = 32, channel_mults: Sequence[int] = (1, 2, 2),
                 blocks_per_level: int = 1, attention_levels: Sequence[int] = (2,), dropout: float = 0.0,
                 image_size: int = 32, class_counts: Sequence[int] | None = None, heads: int = 4):
        super().__init__()
        for name, value in (("in_channels", in_channels), ("base_channels", base_channels),
                            ("blocks_per_level", blocks_per_level), ("image_size", image_size), ("heads", heads)):
            _check_int(name, value)
        if base_channels % 2:
            raise ValueError(f"base_channels is the time embedding's size and must be even, got {base_channels}")
        channel_mults = _check_positive_ints("channel_mults", channel_mults)
        attention_levels = _check_positive_ints("attention_levels", attention_levels, allow_empty=True)
        levels = len(channel_mults)
        if any(level >= levels for level in attention_levels):
            raise ValueError(f"attention_levels {attention_levels} must be level indices in [0, {levels})")
        _check_dropout(dropout)
        factor = 2 ** (levels - 1)
        if image_size % factor:
            raise ValueError(f"image_size {image_size} must be divisible by 2^{levels - 1} = {factor} "
                             f"({levels} levels means {levels - 1} halvings)")
        self.in_channels, self.image_size, self.base_channels = in_channels, image_size, base_channels
        self.class_counts = None if class_counts is None else _check_positive_ints("class_counts", class_counts)
        emb_dim = 4 * base_channels
        self.time_mlp = nn.Sequential(nn.Linear(base_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.label_embeddings = None if self.class_counts is None else nn.ModuleList(
            nn.Embedding(count + 1, emb_dim) for count in self.class_counts)  # row `count` is the NULL label

        def unit(c_in: int, c_out: int, level: int) -> _AttentiveResidualBlock:
            return _AttentiveResidualBlock(c_in, c_out, emb_dim, dropout, level in attention_levels, heads)

        widths = [base_channels * mult for mult in channel_mults]
        self.stem = nn.Conv2d(in_channels, base_channels, 3, padding=1)
        skip_channels, channels = [base_channels], base_channels  # channels of every tensor the encoder keeps
        self.down_levels, self.downsamples = nn.ModuleList(), nn.ModuleList()
        for level, width in enumerate(widths):
            blocks = nn.ModuleList()
            for _ in range(blocks_per_level):
                blocks.append(unit(channels, width, level))
                channels = width
                skip_channels.append(channels)
            self.down_levels.append(blocks)
            if level < levels - 1:
                self.downsamples.append(downsample(channels))  # (B, C, H/2, W/2)
                skip_channels.append(channels)

        self.middle_in = ResidualBlock(channels, channels, emb_dim, dropout)
        self.middle_attention = SelfAttention2d(channels, heads)
        self.middle_out = ResidualBlock(channels, channels, emb_dim, dropout)

        self.up_levels, self.upsamples = nn.ModuleList(), nn.ModuleList()  # coarsest level first
        for level in reversed(range(levels)):
            blocks = nn.ModuleList()
            for _ in range(blocks_per_level + 1):
                blocks.append(unit(channels + skip_channels.pop(), widths[level], level))  # input: concat with skip
                channels = widths[level]
            self.up_levels.append(blocks)
            if level > 0:
                self.upsamples.append(ResizeConvUp(channels))  # nearest x2, then 3x3 conv
        self.out = nn.Sequential(norm_act(channels), zero_init(nn.Conv2d(channels, in_channels, 3, padding=1)))

    def null_labels(self, batch: int, device: torch.device | str | None = None) -> torch.Tensor:
        """The all-NULL labels (batch, K): row k holds class_counts[k], the "no label" index of attribute k."""
        if self.class_counts is None:
            raise ValueError("this UNet is unconditional (class_counts=None): it has no labels, NULL or otherwise")
        _check_int("batch", batch, minimum=0)
        return torch.tensor(self.class_counts, dtype=torch.long, device=device).expand(batch, -1).clone()

    def _check_images(self, x: torch.Tensor) -> None:
        expected = (self.in_channels, self.image_size, self.image_size)
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a tensor, got {type(x).__name__}")
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"UNet expects images (B, {', '.join(map(str, expected))}), got {tuple(x.shape)}")

    @staticmethod
    def _batch_timesteps(t: torch.Tensor | int | float, batch: int, device: torch.device) -> torch.Tensor:
        """t as a (batch,) tensor: a Python number or a 0-d tensor is the same timestep for every image."""
        if isinstance(t, (int, float)) and not isinstance(t, bool):
            t = torch.tensor(t, device=device)
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"t must be a tensor of timesteps (B,) or a number, got {type(t).__name__}")
        if t.dim() == 0:
            t = t.expand(batch)
        if t.shape != (batch,):
            raise ValueError(f"t must have shape ({batch},), one timestep per image, got {tuple(t.shape)}")
        return t.to(device)

    def _check_labels(self, labels: torch.Tensor | None, batch: int, device: torch.device) -> torch.Tensor | None:
        """The labels to embed: None for an unconditional UNet, the NULL labels for labels=None."""
        if self.class_counts is None:
            if labels is not None:
                raise ValueError("this UNet is unconditional (class_counts=None) and takes no labels; got labels")
            return None
        if labels is None:
            return self.null_labels(batch, device)
        if not isinstance(labels, torch.Tensor) or labels.dtype == torch.bool or labels.is_floating_point() \
                or labels.is_complex():
            raise TypeError(f"labels must be an integer tensor (B, K) of class indices, got "
                            f"{labels.dtype if isinstance(labels, torch.Tensor) else type(labels).__name__}")
        k = len(self.class_counts)
        if labels.shape != (batch, k):
            raise ValueError(f"labels must have shape ({batch}, {k}), one column per attribute of class_counts "
                             f"{self.class_counts}, got {tuple(labels.shape)}")
        counts = torch.tensor(self.class_counts, device=labels.device)  # (K,), also the NULL indices
        if (labels < 0).any() or (labels > counts).any():
            raise ValueError(f"labels[:, k] must lie in [0, class_counts[k]] = [0, {list(self.class_counts)}] "
                             f"(class_counts[k] is NULL), got column minima {labels.amin(0).tolist()} and "
                             f"maxima {labels.amax(0).tolist()}")
        return labels.to(device)

    def embed(self, t: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """The conditioning vector (B, 4 * base_channels): MLP(timestep_embedding(t)) + sum_k E_k[labels[:, k]]."""
        emb = self.time_mlp(timestep_embedding(t, self.base_channels))  # (B, emb_dim)
        if labels is not None:
            for k, embedding in enumerate(self.label_embeddings):
                emb = emb + embedding(labels[:, k])  # (B, emb_dim)
        return emb

    def forward(self, x: torch.Tensor, t: torch.Tensor | int | float,
                labels: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C, S, S), t (B,) (or one number / 0-d tensor for all), labels (B, K) or None -> (B, C, S, S)."""
        self._check_images(x)
        batch = x.shape[0]
        t = self._batch_timesteps(t, batch, x.device)
        emb = self.embed(t, self._check_labels(labels, batch, x.device))  # (B, emb_dim)
        h = self.stem(x)  # (B, base, S, S)
        skips = [h]
        for level, blocks in enumerate(self.down_levels):
            for block in blocks:
                h = block(h, emb)  # (B, width_level, S / 2^level, S / 2^level)
                skips.append(h)
            if level < len(self.downsamples):
                h = self.downsamples[level](h)  # (B, width_level, S / 2^(level+1), S / 2^(level+1))
                skips.append(h)
        h = self.middle_out(self.middle_attention(self.middle_in(h, emb)), emb)  # lowest resolution
        for level, blocks in enumerate(self.up_levels):
            for block in blocks:
                h = block(torch.cat([h, skips.pop()], dim=1), emb)  # concat the mirrored encoder activation
            if level < len(self.upsamples):
                h = self.upsamples[level](h)  # (B, width, 2H, 2W)
        return self.out(h)  # (B, C, S, S)
