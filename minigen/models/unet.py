"""The diffusion U-Net: residual blocks, a sinusoidal time embedding,
self-attention, and conditioning on class labels or on an embedding.

Implements
- the U-Net of J. Ho, A. Jain, P. Abbeel, "Denoising Diffusion Probabilistic
  Models", NeurIPS 2020: residual blocks with GroupNorm and SiLU that the time
  embedding conditions, self-attention at the low resolutions (16x16 in the paper),
  zero-initialised last convolutions so that a fresh network is close to the
  identity on its skip paths;
- the encoder-decoder with skip connections from each encoder resolution to the
  decoder's, O. Ronneberger, P. Fischer, T. Brox, "U-Net: Convolutional Networks for
  Biomedical Image Segmentation", MICCAI 2015;
- the scale-shift conditioning of each block, GroupNorm(h) (1 + scale) + shift, of
  A. Nichol, P. Dhariwal, "Improved Denoising Diffusion Probabilistic Models", ICML
  2021;
- conditioning with a learned NULL condition (a NULL label per attribute, or a NULL
  embedding), so that one network predicts both the conditional and the
  unconditional output, the ingredient of J. Ho, T. Salimans, "Classifier-Free
  Diffusion Guidance", arXiv:2207.12598 (2022); an embedding (e.g. CLIP's) is
  projected and added to the time embedding as in the decoder of A. Ramesh et al.,
  "Hierarchical Text-Conditional Image Generation with CLIP Latents" (DALL-E 2),
  2022;
- conditioning on text by cross-attention: with context_dim, every attention layer
  is a SpatialTransformer reading the token states of a text encoder, the U-Net of
  R. Rombach et al., "High-Resolution Image Synthesis with Latent Diffusion Models"
  (Stable Diffusion), CVPR 2022.

The network maps noisy images (B, C, S, S), timesteps (B,) and an optional condition
to (B, C, S, S); what the output means (the noise eps, the clean image x0 or the
velocity v) is the training loss's choice.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from minigen.core.validators import (
    check_bool,
    check_float,
    check_instance,
    check_int,
    check_ints,
    check_optional,
    check_probability,
    check_tensor,
    describe,
)
from minigen.nn.attention import SelfAttention2d
from minigen.nn.embeddings import (
    Condition,
    EmbeddingProjection,
    LabelEmbedding,
    TimestepEmbedding,
    TokenStates,
)
from minigen.nn.layers import CheckedModule, downsample, norm_act, zero_init
from minigen.nn.resample import ResizeConvUp
from minigen.nn.residual import ResidualBlock
from minigen.nn.transformer import SpatialTransformer

MAX_LEVELS = 8  # a 2^7 = 128-fold halving is already more than any image here needs


class _AttentiveResidualBlock(nn.Module):
    """A ResidualBlock, followed by SelfAttention2d when `attend` (to the positions
    and, with context_dim, to context tokens) or, with text_dim, a
    SpatialTransformer: one unit of a level."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        emb_dim: int,
        dropout: float,
        attend: bool,
        heads: int,
        context_dim: int | None = None,
        text_dim: int | None = None,
    ):
        super().__init__()
        self.residual = ResidualBlock(c_in, c_out, emb_dim, dropout)
        self.attention = (
            _attention(c_out, heads, context_dim, text_dim) if attend else None
        )

    def forward(
        self, x: Tensor, emb: Tensor, context: Tensor | TokenStates | None
    ) -> Tensor:
        h = self.residual(x, emb)  # (B, c_out, H, W)
        return h if self.attention is None else self.attention(h, context)


class UNet(CheckedModule):
    """eps / x0 / v predictor for diffusion: (B, C, S, S) noisy images, (B,)
    timesteps and an optional condition -> (B, out_channels, S, S), out_channels
    = C unless given (e.g. an upsampler reads its low-resolution condition as extra
    input channels).

    Level i works at base_channels * channel_mults[i] channels and side image_size /
    2^i. The encoder runs blocks_per_level residual blocks per level (each followed
    by self-attention at the levels listed in attention_levels) and halves the side
    between levels with a stride-2 3x3 convolution; the middle is residual block,
    attention, residual block at the lowest resolution; the decoder mirrors the
    encoder with blocks_per_level + 1 blocks per level, each reading the
    concatenation of its input with one encoder activation (the skip connections),
    and doubles the side with resize-convolution. The last convolution starts at
    zero, so a fresh model predicts 0.

    The timestep t goes through timestep_embedding(t, base_channels) and a 2-layer
    MLP to emb_dim = 4 * base_channels. The condition's embedding is added to it:
    - class_counts, e.g. (5, 6) for (shape, colour): cond is labels (B, K) long,
      embedded by a LabelEmbedding whose row class_counts[k] of attribute k is the
      NULL label;
    - cond_dim: cond is an embedding (B, cond_dim) float, e.g. a CLIP image
      embedding, projected by an EmbeddingProjection with a learned NULL vector;
      with cond_tokens = K > 0 it is also projected to K tokens of emb_dim that
      every attention layer attends to besides the positions (DALL-E 2's decoder).
    - text_dim: cond is TokenStates (B, L, text_dim), a text encoder's token
      states with their padding mask; every attention layer is then a
      SpatialTransformer that cross-attends to them (Stable Diffusion). The NULL
      condition is the text encoder's, the states of an empty caption: the
      wrapper that owns the encoder provides it.
    cond=None means the NULL condition; `null_cond(B)` returns it. Without a
    condition, the model is unconditional.

    coordinates: append each pixel's x and y (from -1 to 1) to the input as two
    more channels (CoordConv), so that a condition can say *where* to draw: a
    convolution alone only knows where it is from the padding at the borders.
    """

    def __init__(
        self,
        in_channels: int = 3,
        base_channels: int = 32,
        channel_mults: Sequence[int] = (1, 2, 2),
        blocks_per_level: int = 1,
        attention_levels: Sequence[int] = (2,),
        dropout: float = 0.0,
        image_size: int = 32,
        class_counts: Sequence[int] | None = None,
        heads: int = 4,
        cond_dim: int | None = None,
        cond_tokens: int = 0,
        out_channels: int | None = None,
        coordinates: bool = False,
        text_dim: int | None = None,
    ):
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels, maximum=1024)
        out_channels = in_channels if out_channels is None else out_channels
        check_int("out_channels", out_channels, maximum=1024)
        self.base_channels = check_int("base_channels", base_channels, maximum=4096)
        self.image_size = check_int("image_size", image_size, maximum=4096)
        blocks_per_level = check_int(
            "blocks_per_level", blocks_per_level, maximum=32
        )
        heads = check_int("heads", heads, maximum=256)
        check_probability("dropout", dropout)
        if base_channels % 2:
            raise ValueError(
                "base_channels is the time embedding's size and must be even, "
                f"got {base_channels}"
            )
        channel_mults = check_ints("channel_mults", channel_mults)
        attention_levels = check_ints(
            "attention_levels", attention_levels, minimum=0, allow_empty=True
        )
        levels = _check_levels(channel_mults, attention_levels, image_size)
        emb_dim = 4 * base_channels
        self.time_embedding = TimestepEmbedding(base_channels, emb_dim)
        self.cond_embedding = _condition_embedding(class_counts, cond_dim, emb_dim)
        self.class_counts = getattr(self.cond_embedding, "class_counts", None)
        self.cond_dim = getattr(self.cond_embedding, "cond_dim", None)
        self.cond_tokens = _check_cond_tokens(cond_tokens, self.cond_dim)
        context_dim = emb_dim if self.cond_tokens else None
        self.text_dim = _check_text_dim(text_dim, class_counts, cond_dim)
        if self.cond_tokens:  # (B, cond_dim) -> (B, K * emb_dim)
            self.token_projection = nn.Linear(cond_dim, cond_tokens * emb_dim)

        def unit(c_in: int, c_out: int, level: int) -> _AttentiveResidualBlock:
            attend = level in attention_levels
            block = _AttentiveResidualBlock
            return block(
                c_in, c_out, emb_dim, dropout, attend, heads, context_dim, text_dim
            )

        widths = [base_channels * mult for mult in channel_mults]
        self.coordinates = check_bool("coordinates", coordinates)
        stem_in = in_channels + 2 * coordinates  # + x and y channels (CoordConv)
        self.stem = nn.Conv2d(stem_in, base_channels, 3, padding=1)
        # the channels of every tensor the encoder keeps for the decoder
        skip_channels, channels = [base_channels], base_channels
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
        self.middle_attention = _attention(channels, heads, context_dim, text_dim)
        self.middle_out = ResidualBlock(channels, channels, emb_dim, dropout)

        # the decoder, coarsest level first
        self.up_levels, self.upsamples = nn.ModuleList(), nn.ModuleList()
        for level in reversed(range(levels)):
            blocks = nn.ModuleList()
            for _ in range(blocks_per_level + 1):
                c_in = channels + skip_channels.pop()  # concatenated with one skip
                blocks.append(unit(c_in, widths[level], level))
                channels = widths[level]
            self.up_levels.append(blocks)
            if level > 0:
                self.upsamples.append(ResizeConvUp(channels))  # nearest x2, conv
        self.out = nn.Sequential(
            norm_act(channels),
            zero_init(nn.Conv2d(channels, out_channels, 3, padding=1)),
        )

    def null_cond(
        self, batch: int, device: torch.device | str | None = None
    ) -> Tensor:
        """The NULL condition for `batch` images: the NULL labels (batch, K) or the
        learned NULL embedding (batch, cond_dim)."""
        if self.text_dim:
            raise ValueError(
                "this UNet reads text (text_dim): its NULL condition is the text "
                "encoder's states of an empty caption, which the model owning the "
                "encoder provides (e.g. minigen.pipelines.latent.TextToImageUNet)"
            )
        if self.cond_embedding is None:
            raise ValueError(
                "this UNet is unconditional (class_counts=None, cond_dim=None): it "
                "has no NULL condition; sample it with cond=None and guidance=None"
            )
        return self.cond_embedding.null(batch, device)

    def block_names(self) -> list[str]:
        """The names of the blocks in the order forward calls them, "stem" to "out",
        e.g. for `layer_shapes(model, x, t, names=model.block_names())`."""
        names = ["stem"]
        for level, blocks in enumerate(self.down_levels):
            names += [f"down_levels.{level}.{i}" for i in range(len(blocks))]
            names += (
                [f"downsamples.{level}"] if level < len(self.downsamples) else []
            )
        names += ["middle_in", "middle_attention", "middle_out"]
        for level, blocks in enumerate(self.up_levels):
            names += [f"up_levels.{level}.{i}" for i in range(len(blocks))]
            names += [f"upsamples.{level}"] if level < len(self.upsamples) else []
        return names + ["out"]

    def embed(self, t: Tensor, cond: Condition | None = None) -> Tensor:
        """The vector every block is conditioned on, (B, 4 * base_channels):
        MLP(timestep_embedding(t)) + the condition's embedding (NULL for None)."""
        check_optional(check_instance, "cond", cond, (Tensor, TokenStates))
        emb = self.time_embedding(t)  # (B, emb_dim)
        if self.cond_embedding is None:
            return emb
        if cond is None:
            cond = self.null_cond(len(t), t.device)
        return self.cond_embedding(emb, cond.to(t.device))  # emb + cond's embedding

    def context(self, cond: Tensor | None, batch: int) -> Tensor | None:
        """The cond_tokens tokens (B, K, emb_dim) projected from the embedding
        cond (NULL for None); None without cond_tokens."""
        if not self.cond_tokens:
            return None
        if cond is None:
            cond = self.null_cond(batch, self.token_projection.weight.device)
        tokens = self.token_projection(cond)  # (B, K * emb_dim)
        return tokens.view(batch, self.cond_tokens, -1)  # (B, K, emb_dim)

    def forward(
        self, x: Tensor, t: Tensor | int | float, cond: Condition | None = None
    ) -> Tensor:
        """x (B, C, S, S), t (B,) or a number for all, cond or None ->
        (B, out_channels, S, S)."""
        t = torch.as_tensor(t, device=x.device).expand(len(x))  # one per image
        emb = self.embed(t, cond)  # (B, emb_dim)
        # the text's TokenStates, or the (B, K, emb_dim) tokens of an embedding
        context = cond if self.text_dim else self.context(cond, len(x))
        h = self.stem(
            with_coordinates(x) if self.coordinates else x
        )  # (B, base, S, S)
        skips = [h]
        for level, blocks in enumerate(self.down_levels):
            for block in blocks:
                h = block(h, emb, context)  # (B, width_level, S / 2^l, S / 2^l)
                skips.append(h)
            if level < len(self.downsamples):
                h = self.downsamples[level](h)  # (B, width_level, H / 2, W / 2)
                skips.append(h)
        h = self.middle_attention(self.middle_in(h, emb), context)
        h = self.middle_out(h, emb)
        for level, blocks in enumerate(self.up_levels):
            for block in blocks:
                # concatenate the mirrored encoder activation (the skip connection)
                h = block(torch.cat([h, skips.pop()], dim=1), emb, context)
            if level < len(self.upsamples):
                h = self.upsamples[level](h)  # (B, width, 2H, 2W)
        return self.out(h)  # (B, out_channels, S, S)

    def check_inputs(
        self, x: Tensor, t: Tensor | int | float, cond: Condition | None = None
    ) -> None:
        side, channels = self.image_size, self.in_channels
        check_tensor(
            "x", x, floating=True, shape=f"(B, {channels}, {side}, {side})"
        )
        if x.dim() != 4 or tuple(x.shape[1:]) != (channels, side, side):
            raise ValueError(
                f"UNet expects images (B, {channels}, {side}, {side}), got "
                f"{tuple(x.shape)}"
            )
        _check_timesteps(t, len(x))
        if self.text_dim:
            _check_text(cond, self.text_dim, len(x))
            return
        if cond is None:
            return
        if self.cond_embedding is None:
            raise ValueError(
                "this UNet is unconditional (class_counts=None, cond_dim=None) and "
                f"takes no cond; got {describe(cond)}"
            )
        check_instance("cond", cond, (Tensor, TokenStates))
        if isinstance(cond, Tensor) and cond.dim() == 0:
            raise ValueError(
                "cond must hold one condition per image, got a 0-d tensor"
            )
        if len(cond) != len(x):
            raise ValueError(
                f"cond must hold one condition per image: {len(x)}, got {len(cond)}"
            )


def with_coordinates(x: Tensor) -> Tensor:
    """x (B, C, H, W) with two more channels holding each pixel's column and row,
    from -1 to 1 (R. Liu et al., "An intriguing failing of convolutional neural
    networks and the CoordConv solution", NeurIPS 2018): (B, C + 2, H, W)."""
    batch, _, height, width = x.shape
    rows = torch.linspace(-1, 1, height, device=x.device, dtype=x.dtype)
    columns = torch.linspace(-1, 1, width, device=x.device, dtype=x.dtype)
    grid = torch.stack(torch.meshgrid(columns, rows, indexing="xy"))  # (2, H, W)
    return torch.cat([x, grid.expand(batch, -1, -1, -1)], dim=1)


def _attention(
    channels: int, heads: int, context_dim: int | None, text_dim: int | None
) -> SelfAttention2d | SpatialTransformer:
    if text_dim is not None:
        return SpatialTransformer(channels, text_dim, heads)
    return SelfAttention2d(channels, heads, context_dim)


def _check_text_dim(
    text_dim: int | None, class_counts: Sequence[int] | None, cond_dim: int | None
) -> int | None:
    text_dim = check_optional(check_int, "text_dim", text_dim, maximum=65_536)
    if text_dim is not None and (class_counts is not None or cond_dim is not None):
        raise ValueError(
            "a UNet is conditioned on text (text_dim), class labels (class_counts) "
            f"or an embedding (cond_dim), one of them; got text_dim={text_dim}, "
            f"class_counts={class_counts}, cond_dim={cond_dim}"
        )
    return text_dim


def _check_text(cond: Condition | None, text_dim: int, batch: int) -> None:
    if not isinstance(cond, TokenStates):
        raise TypeError(
            f"this UNet reads text (text_dim={text_dim}): cond must be TokenStates "
            f"(B, L, {text_dim}), the NULL one for an empty caption, got "
            f"{describe(cond)}"
        )
    if len(cond) != batch or cond.states.shape[-1] != text_dim:
        raise ValueError(
            f"cond must hold TokenStates ({batch}, L, {text_dim}), one per image, "
            f"got {tuple(cond.states.shape)}"
        )


def _condition_embedding(
    class_counts: Sequence[int] | None, cond_dim: int | None, emb_dim: int
) -> LabelEmbedding | EmbeddingProjection | None:
    if class_counts is not None and cond_dim is not None:
        raise ValueError(
            "a UNet is conditioned on class labels (class_counts) or on an "
            f"embedding (cond_dim), not both; got class_counts={class_counts}, "
            f"cond_dim={cond_dim}"
        )
    if class_counts is not None:
        return LabelEmbedding(class_counts, emb_dim)
    cond_dim = check_optional(check_int, "cond_dim", cond_dim, maximum=65_536)
    return None if cond_dim is None else EmbeddingProjection(cond_dim, emb_dim)


def _check_cond_tokens(cond_tokens: int, cond_dim: int | None) -> int:
    cond_tokens = check_int("cond_tokens", cond_tokens, minimum=0, maximum=256)
    if cond_tokens and cond_dim is None:
        raise ValueError(
            "cond_tokens are projected from an embedding: they need cond_dim, got "
            f"cond_tokens={cond_tokens} and cond_dim=None"
        )
    return cond_tokens


def _check_levels(
    channel_mults: tuple[int, ...],
    attention_levels: tuple[int, ...],
    image_size: int,
) -> int:
    levels = len(channel_mults)
    if levels > MAX_LEVELS or max(channel_mults) > 64:
        raise ValueError(
            f"channel_mults must hold at most {MAX_LEVELS} multipliers of at most "
            f"64, got {channel_mults}"
        )
    if any(level >= levels for level in attention_levels):
        raise ValueError(
            f"attention_levels {attention_levels} must be level indices in "
            f"[0, {levels})"
        )
    factor = 2 ** (levels - 1)
    if image_size % factor:
        raise ValueError(
            f"image_size {image_size} must be divisible by 2^{levels - 1} = "
            f"{factor} ({levels} levels means {levels - 1} halvings)"
        )
    return levels


def _check_timesteps(t: Tensor | int | float, batch: int) -> None:
    if isinstance(t, bool) or not isinstance(t, (Tensor, int, float)):
        raise TypeError(
            f"t must be a tensor of timesteps (B,) or a number, got {describe(t)}"
        )
    if isinstance(t, float):
        check_float("t", t)  # NaN and infinities would make the output NaN
    if isinstance(t, Tensor):
        check_tensor("t", t, finite=True)
        if t.dtype == torch.bool or t.is_complex():
            raise TypeError(f"t must hold integer or real timesteps, got {t.dtype}")
        if t.dim() != 0 and t.shape != (batch,):
            raise ValueError(
                f"t must have shape ({batch},), one timestep per image, got "
                f"{tuple(t.shape)}"
            )
