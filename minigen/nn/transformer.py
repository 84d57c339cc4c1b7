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
"""

from __future__ import annotations

from torch import Tensor, nn

from minigen.core.validators import (
    check_int,
    check_positive,
    check_probability,
    check_tensor,
)
from minigen.nn.attention import MultiHeadAttention
from minigen.nn.layers import CheckedModule


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


def _hidden_width(dim: int, mlp_ratio: float) -> int:
    """The MLP's hidden width, round(mlp_ratio * dim), at least 1."""
    hidden = round(check_positive("mlp_ratio", mlp_ratio) * dim)
    return check_int("mlp_ratio * dim (the MLP's hidden width)", hidden)
