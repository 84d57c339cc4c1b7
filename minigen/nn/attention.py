"""Scaled dot-product attention with masks, multi-head self- and cross-attention,
and their 2-D forms for feature maps.

- Scaled dot-product attention softmax(q k^T / sqrt(d)) v, multi-head attention, the
  causal mask of a decoder and the padding mask: A. Vaswani et al., "Attention Is
  All You Need", NeurIPS 2017.
- Self-attention over the H*W positions of a feature map, after a GroupNorm, with a
  zero-initialised output projection and a residual: the U-Net of J. Ho, A. Jain, P.
  Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020.
- Cross-attention from a feature map's positions (queries) to context tokens such as
  text states (keys and values): R. Rombach et al., "High-Resolution Image Synthesis
  with Latent Diffusion Models", CVPR 2022.

Masks are boolean, True = may attend, and broadcast to (B, heads, Lq, Lk). A query
whose keys are all masked (an empty text, say) attends to nothing and outputs 0: its
softmax would be 0 / 0, and we set its weights to 0, as torch's
scaled_dot_product_attention does.
"""

from __future__ import annotations

import math
from functools import reduce

import torch
from einops import rearrange
from torch import Tensor, nn

from minigen.core.runtime import as_device
from minigen.core.validators import (
    MAX_SIZE,
    check_bool,
    check_int,
    check_tensor,
    describe,
)
from minigen.nn.layers import CheckedModule, group_norm, zero_init


def attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None
) -> Tensor:
    """softmax(q k^T / sqrt(d)) v: queries q (B, heads, Lq, d), keys k
    (B, heads, Lk, d) and values v (B, heads, Lk, d_v) -> (B, heads, Lq, d_v).

    mask: boolean, True = may attend, broadcastable to (B, heads, Lq, Lk). The
    scores and the softmax run in float32 (float64 stays float64), so bf16 autocast
    cannot round the weights away. A query whose keys are all masked outputs 0.
    """
    _check_attention_inputs(q, k, v, mask)
    d = q.shape[-1]
    precision = torch.promote_types(q.dtype, torch.float32)  # float32 at least
    scores = (q @ k.transpose(-2, -1)).to(precision) / d**0.5  # q k^T / sqrt(d)
    if mask is not None:
        scores = scores.masked_fill(~mask, -math.inf)  # e^-inf = 0: no weight
    weights = scores.softmax(dim=-1)  # (B, heads, Lq, Lk), each row sums to 1
    if mask is not None:
        weights = weights.masked_fill(~mask, 0.0)  # no key at all: 0 / 0 -> 0
    return weights.to(v.dtype) @ v  # (B, heads, Lq, d_v)


def causal_mask(length: int, device: torch.device | str | None = None) -> Tensor:
    """(L, L) booleans, True where key j <= query i: each token sees itself and
    the tokens before it."""
    length = check_int("length", length)
    device = None if device is None else as_device(device)
    return torch.ones(length, length, dtype=torch.bool, device=device).tril()


def padding_mask(valid: Tensor, length: int | None = None) -> Tensor:
    """The key padding mask (B, 1, 1, Lk): each head and query sees the same keys.

    valid: (B, Lk) booleans, True for a real token and False for padding; or (B,)
    integer lengths: the first lengths[b] of the `length` tokens of sequence b are
    real (default length: max(lengths)).
    """
    length = _check_padding_inputs(valid, length)
    # lengths: key j of sequence b is real when j < lengths[b]
    if valid.dtype != torch.bool:
        positions = torch.arange(length, device=valid.device)  # (Lk,)
        valid = positions[None, :] < valid[:, None]  # (B, Lk)
    return valid[:, None, None, :]  # (B, 1, 1, Lk)


def combine_masks(*masks: Tensor | None) -> Tensor | None:
    """What every given mask allows (logical and, broadcast); None if none given."""
    given = [mask for mask in masks if mask is not None]
    _check_combinable(given)
    return reduce(torch.logical_and, given) if given else None


class MultiHeadAttention(CheckedModule):
    """Multi-head attention of x (B, Lq, dim) to itself, or to a context (B, Lk,
    context_dim) -> (B, Lq, dim).

    Queries are projected from x, keys and values from the context (from x when
    context is None: self-attention); each of the `heads` heads has d = dim / heads
    channels, and an output projection mixes the heads. key_mask (B, Lk), True for a
    real token, hides padding keys; causal=True lets query i see keys j <= i only
    (self-attention only).
    """

    def __init__(self, dim: int, heads: int, context_dim: int | None = None):
        super().__init__()
        self.dim, self.heads = _check_heads("dim", dim, heads)
        self.context_dim = (
            dim if context_dim is None else check_int("context_dim", context_dim)
        )
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(self.context_dim, dim)
        self.to_v = nn.Linear(self.context_dim, dim)
        self.to_out = nn.Linear(dim, dim)

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        key_mask: Tensor | None = None,
        causal: bool = False,
    ) -> Tensor:
        # self-attention when there is no context: keys and values from x itself
        context = x if context is None else context
        q, k, v = (
            rearrange(z, "b l (n d) -> b n l d", n=self.heads)  # (B, n, L, d)
            for z in (self.to_q(x), self.to_k(context), self.to_v(context))
        )
        mask = combine_masks(
            None if key_mask is None else padding_mask(key_mask),  # (B, 1, 1, Lk)
            causal_mask(x.shape[1], x.device) if causal else None,  # (Lq, Lq)
        )
        out = attention(q, k, v, mask)  # (B, heads, Lq, d)
        return self.to_out(rearrange(out, "b n l d -> b l (n d)"))  # (B, Lq, dim)

    def check_inputs(
        self,
        x: Tensor,
        context: Tensor | None = None,
        key_mask: Tensor | None = None,
        causal: bool = False,
    ) -> None:
        _check_tokens("x", x, self.dim)
        check_bool("causal", causal)
        if context is None and self.context_dim != self.dim:
            raise ValueError(
                "this MultiHeadAttention attends to a context of "
                f"{self.context_dim} features: pass context (B, Lk, context_dim)"
            )
        if context is not None:
            _check_tokens("context", context, self.context_dim, batch=x.shape[0])
            if causal:
                raise ValueError(
                    "causal=True applies to self-attention only (context=None): a "
                    "context has no order relative to the queries"
                )
        keys = x if context is None else context
        if key_mask is not None:
            _check_key_mask("key_mask", key_mask, keys.shape[:2])


class SelfAttention2d(CheckedModule):
    """Multi-head self-attention over the H*W positions of a feature map, added as a
    residual.

    GroupNorm, a 1x1 convolution to queries, keys and values, `heads` heads of
    d = C / heads channels each attending over all H*W positions, then a 1x1 output
    convolution that starts at zero (a fresh layer is the identity).

    With context_dim, a few context tokens (B, Lc, context_dim) join the keys and
    values (projected by a Linear to both): each position attends to the other
    positions and to the tokens, the extra tokens of GLIDE and DALL-E 2's decoder.
    """

    def __init__(
        self, channels: int, heads: int = 4, context_dim: int | None = None
    ):
        super().__init__()
        self.channels, self.heads = _check_heads("channels", channels, heads)
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.context_dim = context_dim
        if context_dim is not None:
            context_dim = check_int("context_dim", context_dim)
            self.context_kv = nn.Linear(context_dim, 2 * channels)
        self.proj_out = zero_init(nn.Conv2d(channels, channels, 1))

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        height = x.shape[2]
        q, k, v = (
            rearrange(z, "b (n d) h w -> b n (h w) d", n=self.heads)
            for z in self.qkv(self.norm(x)).chunk(3, dim=1)
        )  # each (B, n, HW, d)
        if context is not None:  # keys and values of the tokens come first
            k_c, v_c = (
                rearrange(z, "b l (n d) -> b n l d", n=self.heads)
                for z in self.context_kv(context).chunk(2, dim=-1)
            )  # each (B, n, Lc, d)
            k, v = torch.cat([k_c, k], dim=2), torch.cat([v_c, v], dim=2)
        out = rearrange(attention(q, k, v), "b n (h w) d -> b (n d) h w", h=height)
        return x + self.proj_out(out)  # (B, C, H, W)

    def check_inputs(self, x: Tensor, context: Tensor | None = None) -> None:
        _check_feature_map(x, self.channels)
        if (context is None) != (self.context_dim is None):
            raise ValueError(
                "context (B, Lc, context_dim) is needed exactly when the layer has "
                f"a context_dim; context_dim={self.context_dim}, context "
                f"{describe(context)}"
            )
        if context is not None:
            _check_tokens("context", context, self.context_dim, batch=x.shape[0])


class CrossAttention2d(CheckedModule):
    """Cross-attention from the H*W positions of a feature map (queries) to context
    tokens (B, Lk, context_dim) (keys and values), added as a residual.

    GroupNorm, then MultiHeadAttention(channels, heads, context_dim) over the
    positions as tokens, whose output projection starts at zero (a fresh layer is
    the identity). key_mask (B, Lk), True for a real token, hides the context's
    padding.
    """

    def __init__(self, channels: int, context_dim: int, heads: int = 4):
        super().__init__()
        self.channels, heads = _check_heads("channels", channels, heads)
        context_dim = check_int("context_dim", context_dim)
        self.norm = group_norm(channels)
        self.attention = MultiHeadAttention(channels, heads, context_dim)
        zero_init(self.attention.to_out)

    def forward(
        self, x: Tensor, context: Tensor, key_mask: Tensor | None = None
    ) -> Tensor:
        height = x.shape[2]
        queries = rearrange(self.norm(x), "b c h w -> b (h w) c")  # (B, HW, C)
        out = self.attention(queries, context, key_mask)  # (B, HW, C)
        return x + rearrange(out, "b (h w) c -> b c h w", h=height)  # (B, C, H, W)

    def check_inputs(
        self, x: Tensor, context: Tensor, key_mask: Tensor | None = None
    ) -> None:
        _check_feature_map(x, self.channels)
        # the context and its mask are checked by self.attention
        if context is None:
            raise ValueError(
                "CrossAttention2d needs a context (B, Lk, context_dim), got None"
            )


def _check_heads(name: str, dim: int, heads: int) -> tuple[int, int]:
    dim, heads = check_int(name, dim), check_int("heads", heads)
    if dim % heads:
        raise ValueError(
            f"{name} must be divisible by heads (each head gets {name} / heads "
            f"channels), got {name} {dim} and heads {heads}"
        )
    return dim, heads


def _check_tokens(name: str, x: Tensor, dim: int, batch: int | None = None) -> None:
    check_tensor(name, x, dims=3, floating=True, shape=f"(B, L, {dim})")
    if x.shape[-1] != dim or (batch is not None and x.shape[0] != batch):
        rows = "B" if batch is None else str(batch)
        raise ValueError(
            f"{name} must have shape ({rows}, L, {dim}), got {tuple(x.shape)}"
        )


def _check_feature_map(x: Tensor, channels: int) -> None:
    check_tensor("x", x, dims=4, floating=True, shape=f"(B, {channels}, H, W)")
    if x.shape[1] != channels:
        raise ValueError(
            f"x must have shape (B, {channels}, H, W), got {tuple(x.shape)}"
        )


def _check_key_mask(name: str, mask: Tensor, shape: tuple[int, ...]) -> None:
    check_tensor(name, mask, dims=2, shape="(B, Lk)")
    if mask.dtype != torch.bool:
        raise TypeError(
            f"{name} must be a bool tensor (True = a real token), got {mask.dtype}"
        )
    if mask.shape != shape:
        raise ValueError(
            f"{name} must have shape {tuple(shape)} (B, Lk) to match the keys, "
            f"got {tuple(mask.shape)}"
        )


def _check_attention_inputs(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None
) -> None:
    for name, x, shape in (
        ("q", q, "(B, heads, Lq, d)"),
        ("k", k, "(B, heads, Lk, d)"),
        ("v", v, "(B, heads, Lk, d_v)"),
    ):
        check_tensor(name, x, dims=4, floating=True, shape=shape)
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(
            f"q, k, v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}"
        )
    same_heads = q.shape[:2] == k.shape[:2] == v.shape[:2]
    if not same_heads or q.shape[3] != k.shape[3] or k.shape[2] != v.shape[2]:
        raise ValueError(
            "q, k, v must have shapes (B, heads, Lq, d), (B, heads, Lk, d) and "
            f"(B, heads, Lk, d_v), got {tuple(q.shape)}, {tuple(k.shape)}, "
            f"{tuple(v.shape)}"
        )
    if mask is not None:
        scores = (*q.shape[:3], k.shape[2])  # (B, heads, Lq, Lk)
        _check_broadcast_mask(mask, scores)


def _check_broadcast_mask(mask: Tensor, scores: tuple[int, ...]) -> None:
    check_tensor("mask", mask, shape="broadcastable to (B, heads, Lq, Lk)")
    if mask.dtype != torch.bool:
        raise TypeError(
            f"mask must be a bool tensor (True = may attend), got {mask.dtype}; "
            "for 0/1 values use mask.bool()"
        )
    fits = mask.dim() <= 4 and all(
        size in (1, target)
        for size, target in zip(reversed(mask.shape), reversed(scores))
    )
    if not fits:
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not broadcast to "
            f"(B, heads, Lq, Lk) = {scores}"
        )


def _check_combinable(masks: list[Tensor]) -> None:
    """Bool tensors that broadcast together."""
    for index, mask in enumerate(masks):
        check_tensor(f"masks[{index}]", mask, shape="of bools")
        if mask.dtype != torch.bool:
            raise TypeError(
                f"masks[{index}] must be a bool tensor (True = may attend), got "
                f"{mask.dtype}"
            )
    try:
        torch.broadcast_shapes(*(mask.shape for mask in masks))
    except RuntimeError as error:
        shapes = ", ".join(str(tuple(mask.shape)) for mask in masks)
        raise ValueError(
            f"masks of shapes {shapes} do not broadcast together"
        ) from error


def _check_padding_inputs(valid: Tensor, length: int | None) -> int:
    """Lk, after checking `valid`: (B, Lk) bools or (B,) integer lengths."""
    check_tensor("valid", valid, dims=(1, 2), shape="(B, Lk) bool or (B,) lengths")
    if valid.dtype == torch.bool:
        if valid.dim() != 2 or length is not None:
            raise ValueError(
                "a bool padding mask must be (B, Lk) and comes without length, got "
                f"shape {tuple(valid.shape)} and length {length!r}"
            )
        return valid.shape[1]
    if valid.dim() != 1 or valid.is_floating_point() or valid.is_complex():
        raise TypeError(
            "valid must be (B, Lk) bools or (B,) integer lengths, got a "
            f"{valid.dtype} tensor of shape {tuple(valid.shape)}"
        )
    shortest, longest = (
        (int(valid.min()), int(valid.max())) if valid.numel() else (0, 0)
    )
    limit = MAX_SIZE if length is None else check_int("length", length, minimum=0)
    if shortest < 0 or longest > limit:
        raise ValueError(
            f"lengths must lie in [0, {limit}], got lengths from {shortest} to "
            f"{longest}"
        )
    return longest if length is None else length
