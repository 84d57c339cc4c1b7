"""The pre-LN transformer block: causal and padding masks, optional cross-attention.

- The block (multi-head self-attention and a position-wise MLP, each added back as a
  residual): A. Vaswani et al., "Attention Is All You Need", NeurIPS 2017.
- Pre-LN, x + f(LayerNorm(x)), which keeps the residual stream un-normalised and
  trains deep stacks without a learning-rate warm-up: R. Xiong et al., "On Layer
  Normalization in the Transformer Architecture", ICML 2020; used by GPT-2
  (A. Radford et al. 2019), the ViT (A. Dosovitskiy et al., ICLR 2021), CLIP
  (A. Radford et al., ICML 2021; its text encoder is causal) and the DALL-E 2 prior
  (A. Ramesh et al., arXiv:2204.06125, 2022; causal).
- The GELU of the MLP: D. Hendrycks, K. Gimpel, "Gaussian Error Linear Units",
  arXiv:1606.08415 (2016).
- A cross-attention sublayer between the two, keys and values from a context such as
  text states: the transformer block of latent diffusion, R. Rombach et al.,
  CVPR 2022.
- The SpatialTransformer of latent diffusion (CompVis/latent-diffusion): a feature
  map's positions as tokens through such a block (self-attention, cross-attention
  to text, a GEGLU feed-forward, N. Shazeer, "GLU Variants Improve Transformer",
  arXiv:2002.05202, 2020), between a 1x1 projection in and a zero-initialised 1x1
  projection out, added to the map as a residual.
"""

from __future__ import annotations

import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from minigen.core.validators import (
    check_instance,
    check_int,
    check_positive,
    check_probability,
    check_tensor,
)
from minigen.nn.attention import MultiHeadAttention
from minigen.nn.embeddings import TokenStates
from minigen.nn.layers import CheckedModule, group_norm, zero_init


class TransformerBlock(CheckedModule):
    """x (B, L, dim) -> (B, L, dim) by x + attn(LN(x)), optionally
    x + cross_attn(LN(x), context), then x + MLP(LN(x)).

    The MLP is Linear(dim, mlp_ratio * dim), GELU, Linear back to dim; dropout acts
    on each sublayer's output before it is added. key_mask (B, L), True for a real
    token, hides x's padding; causal=True lets token i see tokens j <= i only. With
    context_dim, the block also attends to a context (B, Lk, context_dim) whose
    padding context_mask (B, Lk) hides.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        mlp_ratio: float = 4,
        context_dim: int | None = None,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.dim = check_int("dim", dim)
        hidden = _hidden_width(dim, mlp_ratio)
        self.attention_norm = nn.LayerNorm(dim)
        self.attention = MultiHeadAttention(dim, heads)
        self.cross_norm, self.cross_attention = None, None
        if context_dim is not None:
            self.cross_norm = nn.LayerNorm(dim)
            self.cross_attention = MultiHeadAttention(dim, heads, context_dim)
        self.mlp_norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)
        )
        self.dropout = nn.Dropout(check_probability("dropout", dropout))

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        key_mask: Tensor | None = None,
        context_mask: Tensor | None = None,
        causal: bool = False,
    ) -> Tensor:
        h = self.attention(self.attention_norm(x), key_mask=key_mask, causal=causal)
        x = x + self.dropout(h)  # x + attn(LN(x))
        if self.cross_attention is not None:
            h = self.cross_attention(self.cross_norm(x), context, context_mask)
            x = x + self.dropout(h)  # x + cross_attn(LN(x), context)
        h = self.mlp(self.mlp_norm(x))
        return x + self.dropout(h)  # x + MLP(LN(x)), (B, L, dim)

    def check_inputs(
        self,
        x: Tensor,
        context: Tensor | None = None,
        key_mask: Tensor | None = None,
        context_mask: Tensor | None = None,
        causal: bool = False,
    ) -> None:
        # shapes of masks and context are checked by the attention sublayers
        check_tensor("x", x, dims=3, floating=True, shape=f"(B, L, {self.dim})")
        if x.shape[-1] != self.dim:
            raise ValueError(
                f"x must have shape (B, L, {self.dim}), got {tuple(x.shape)}"
            )
        if self.cross_attention is None and (
            context is not None or context_mask is not None
        ):
            raise ValueError(
                "this TransformerBlock has no cross-attention (context_dim=None): "
                "it takes no context or context_mask"
            )
        if self.cross_attention is not None and context is None:
            context_dim = self.cross_attention.context_dim
            raise ValueError(
                f"this TransformerBlock cross-attends (context_dim={context_dim}): "
                "pass context (B, Lk, context_dim)"
            )


class GEGLU(nn.Module):
    """The gated feed-forward of latent diffusion, x (..., dim) -> (..., dim):
    Linear(dim, 2 hidden) split into (a, gate), a * GELU(gate), Linear(hidden, dim)
    (Shazeer 2020)."""

    def __init__(self, dim: int, mlp_ratio: float = 4):
        super().__init__()
        hidden = _hidden_width(check_int("dim", dim), mlp_ratio)
        self.project_in = nn.Linear(dim, 2 * hidden)
        self.project_out = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        a, gate = self.project_in(x).chunk(2, dim=-1)  # (..., hidden) each
        return self.project_out(a * F.gelu(gate))  # (..., dim)


class SpatialTransformer(CheckedModule):
    """Text conditioning of a feature map x (B, C, H, W) by the token states of a
    text encoder, TokenStates (B, L, context_dim) with their padding mask:

        h = proj_in(GroupNorm(x))                 1x1 convolution, HW tokens of C
        h = h + self_attn(LN(h))                  positions attend to positions
        h = h + cross_attn(LN(h), text, mask)     ... and to the real text tokens
        h = h + GEGLU(LN(h))
        x + proj_out(h)                           proj_out starts at zero

    A fresh layer is the identity; padding tokens get no weight.
    """

    def __init__(self, channels: int, context_dim: int, heads: int = 4):
        super().__init__()
        self.channels = check_int("channels", channels)
        self.context_dim = check_int("context_dim", context_dim)
        self.norm = group_norm(channels)
        self.proj_in = nn.Conv2d(channels, channels, 1)
        self.self_norm = nn.LayerNorm(channels)
        self.self_attention = MultiHeadAttention(channels, heads)
        self.cross_norm = nn.LayerNorm(channels)
        self.cross_attention = MultiHeadAttention(channels, heads, context_dim)
        self.feed_forward_norm = nn.LayerNorm(channels)
        self.feed_forward = GEGLU(channels)
        self.proj_out = zero_init(nn.Conv2d(channels, channels, 1))

    def forward(self, x: Tensor, text: TokenStates) -> Tensor:
        height = x.shape[2]
        h = rearrange(self.proj_in(self.norm(x)), "b c h w -> b (h w) c")
        h = h + self.self_attention(self.self_norm(h))  # (B, HW, C)
        h = h + self.cross_attention(self.cross_norm(h), text.states, text.mask)
        h = h + self.feed_forward(self.feed_forward_norm(h))
        h = rearrange(h, "b (h w) c -> b c h w", h=height)
        return x + self.proj_out(h)  # (B, C, H, W)

    def check_inputs(self, x: Tensor, text: TokenStates) -> None:
        check_tensor(
            "x", x, dims=4, floating=True, shape=f"(B, {self.channels}, H, W)"
        )
        if x.shape[1] != self.channels:
            raise ValueError(
                f"x must be (B, {self.channels}, H, W), got {tuple(x.shape)}"
            )
        check_instance("text", text, TokenStates, "TokenStates (the text's states)")
        # the states' shape and mask are checked by self.cross_attention


def _hidden_width(dim: int, mlp_ratio: float) -> int:
    """The MLP's hidden width, round(mlp_ratio * dim), at least 1."""
    hidden = round(check_positive("mlp_ratio", mlp_ratio) * dim)
    return check_int("mlp_ratio * dim (the MLP's hidden width)", hidden)
