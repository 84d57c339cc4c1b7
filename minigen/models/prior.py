"""DALL·E 2's priors: from a caption's CLIP text embedding to a CLIP image embedding
that the decoder turns into pixels; and the interpolation that moves between
embeddings.

- A. Ramesh et al., "Hierarchical Text-Conditional Image Generation with CLIP
  Latents", arXiv:2204.06125, 2022 (unCLIP): the diffusion prior, a causal
  transformer over the caption's tokens, its text embedding, the timestep, the
  noised image embedding and a final query, predicting the clean image embedding;
  the autoregressive prior over PCA-reduced, quantised image embeddings; slerp
  between image embeddings.
- lucidrains/DALLE2-pytorch: embeddings scaled by sqrt(dim) before diffusion (unit
  vectors have per-coordinate variance 1 / dim, far below the unit variance a
  noise schedule assumes).
- K. Shoemake, "Animating Rotation with Quaternion Curves", SIGGRAPH 1985: slerp.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from minigen.core.validators import check_instance, check_int, check_tensor
from minigen.nn.embeddings import LearnedPositions, TokenStates, timestep_embedding
from minigen.nn.layers import CheckedModule
from minigen.nn.transformer import TransformerBlock


def slerp(a: Tensor, b: Tensor, t: float | Tensor) -> Tensor:
    """Spherical interpolation from a to b (..., E) at t in [0, 1]: along the great
    circle when both have unit length, sin((1 - t) w) / sin(w) a + sin(t w) / sin(w)
    b with w the angle between them; the straight line where they are (nearly)
    parallel, where sin(w) vanishes."""
    check_tensor("a", a, floating=True, finite=True)
    check_tensor("b", b, floating=True, finite=True)
    if a.shape != b.shape:
        raise ValueError(
            f"a and b must have one shape, got {tuple(a.shape)} and "
            f"{tuple(b.shape)}"
        )
    t = torch.as_tensor(t, dtype=a.dtype, device=a.device)
    if ((t < 0) | (t > 1)).any():
        raise ValueError(f"t must lie in [0, 1], got {t.tolist()}")
    t = t[..., None] if t.ndim else t
    unit_a = a / a.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    unit_b = b / b.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    cos = (unit_a * unit_b).sum(-1, keepdim=True).clamp(-1, 1)
    angle = torch.arccos(cos)  # w, (..., 1)
    sin = torch.sin(angle)
    parallel = sin < 1e-6
    safe = torch.where(parallel, torch.ones_like(sin), sin)
    weight_a = torch.where(parallel, 1 - t, torch.sin((1 - t) * angle) / safe)
    weight_b = torch.where(parallel, t, torch.sin(t * angle) / safe)
    return weight_a * a + weight_b * b


class PCAQuantizer:
    """The autoregressive prior's view of an image embedding: its coordinates on the
    `dims` principal axes of the training embeddings, each cut into `buckets`
    intervals holding equal shares of the training values (quantiles), so that a
    transformer can predict them as tokens. decode maps a code to its interval's
    median and back to the embedding space."""

    def __init__(self, embeddings: Tensor, dims: int, buckets: int):
        check_tensor("embeddings", embeddings, dims=2, floating=True, finite=True)
        n, width = embeddings.shape
        self.dims = check_int("dims", dims, 1, min(n, width))
        self.buckets = check_int("buckets", buckets, minimum=2)
        x = embeddings.double()
        self.mean = x.mean(dim=0)  # (E,)
        _, singular, axes = torch.linalg.svd(x - self.mean, full_matrices=False)
        variance = singular.square()
        self.explained = (variance.cumsum(0) / variance.sum()).float()  # (E,)
        self.axes = axes[: self.dims]  # (dims, E), orthonormal rows
        coordinates = (x - self.mean) @ self.axes.T  # (N, dims)
        levels = torch.linspace(0, 1, 2 * self.buckets + 1, dtype=torch.float64)
        quantiles = torch.quantile(coordinates, levels, dim=0)  # (2K + 1, dims)
        self.edges = quantiles[2:-1:2].T.contiguous()  # (dims, K - 1) inner edges
        self.centres = quantiles[1::2].T.contiguous()  # (dims, K) medians

    def state_dict(self) -> dict[str, Tensor]:
        """The fitted tensors, to save; `from_state_dict` restores the quantizer."""
        names = ("mean", "axes", "edges", "centres", "explained")
        return {name: getattr(self, name) for name in names}

    @classmethod
    def from_state_dict(cls, state: dict[str, Tensor]) -> PCAQuantizer:
        quantizer = cls.__new__(cls)
        for name, value in state.items():
            setattr(quantizer, name, value)
        quantizer.dims, quantizer.buckets = (
            len(state["axes"]),
            len(state["centres"][0]),
        )
        return quantizer

    def project(self, embeddings: Tensor) -> Tensor:
        """(N, E) -> (N, dims): coordinates on the principal axes."""
        self._check(embeddings)
        return (embeddings.double() - self.mean) @ self.axes.T

    def encode(self, embeddings: Tensor) -> Tensor:
        """(N, E) -> (N, dims) int64 codes in [0, buckets)."""
        coordinates = self.project(embeddings).T.contiguous()  # (dims, N)
        return torch.searchsorted(self.edges, coordinates).T  # edge < x <= edge

    def decode(self, codes: Tensor) -> Tensor:
        """(N, dims) codes -> (N, E) float32 embeddings."""
        check_tensor("codes", codes, dims=2)
        if codes.shape[1] != self.dims or codes.dtype != torch.long:
            raise ValueError(
                f"codes must be (N, {self.dims}) int64, got {tuple(codes.shape)} "
                f"{codes.dtype}"
            )
        if codes.numel() and not 0 <= codes.min() <= codes.max() < self.buckets:
            raise ValueError(f"codes must lie in [0, {self.buckets})")
        coordinates = self.centres[torch.arange(self.dims), codes]  # (N, dims)
        return (coordinates @ self.axes + self.mean).float()

    def _check(self, embeddings: Tensor) -> None:
        check_tensor("embeddings", embeddings, dims=2, floating=True)
        if embeddings.shape[1] != len(self.mean):
            raise ValueError(
                f"embeddings must be (N, {len(self.mean)}), got "
                f"{tuple(embeddings.shape)}"
            )


class MLPPrior(CheckedModule):
    """The deterministic baseline: text embedding (B, E) -> image embedding
    (B, E), a two-layer MLP with a residual from its input, trained by MSE."""

    def __init__(self, embed_dim: int = 128, hidden: int = 512):
        super().__init__()
        self.embed_dim = check_int("embed_dim", embed_dim)
        self.net = nn.Sequential(
            nn.Linear(embed_dim, check_int("hidden", hidden)),
            nn.GELU(),
            nn.Linear(hidden, embed_dim),
        )

    def forward(self, text_embedding: Tensor) -> Tensor:
        return text_embedding + self.net(text_embedding)  # (B, E)

    def check_inputs(self, text_embedding: Tensor) -> None:
        check_tensor("text_embedding", text_embedding, dims=2, floating=True)
        if text_embedding.shape[1] != self.embed_dim:
            raise ValueError(
                f"text_embedding must be (B, {self.embed_dim}), got "
                f"{tuple(text_embedding.shape)}"
            )


def prior_condition(
    token_states: Tensor, token_mask: Tensor, text_embedding: Tensor
) -> TokenStates:
    """What the diffusion prior reads: the caption's token states (B, L, D) with
    the text embedding (B, D) appended as one more real token (B, L + 1, D), so that
    the prior's condition is one `TokenStates`, as the samplers pass it."""
    check_tensor("text_embedding", text_embedding, dims=2, floating=True)
    cond = TokenStates(token_states, token_mask)
    if text_embedding.shape != (len(cond), token_states.shape[2]):
        raise ValueError(
            f"text_embedding must be {(len(cond), token_states.shape[2])} to join "
            f"token states {tuple(token_states.shape)}, got "
            f"{tuple(text_embedding.shape)}"
        )
    states = torch.cat([token_states, text_embedding[:, None]], dim=1)
    real = torch.ones_like(token_mask[:, :1])
    return TokenStates(states, torch.cat([token_mask, real], dim=1))


class DiffusionPriorNet(CheckedModule):
    """The diffusion prior's network, model(x_t, t, cond): a causal transformer over
    [the condition's tokens (the caption's token states and its text embedding,
    `prior_condition`), the timestep, the noised image embedding x_t, a query], each
    projected to `width`; its output at the query is the prediction (B, E), the
    clean embedding with the "x0" objective. Masked tokens are never attended to;
    the NULL condition (`null_cond`, for classifier-free guidance) is one masked
    token."""

    def __init__(
        self,
        embed_dim: int = 128,
        token_dim: int = 128,
        context_length: int = 41,
        width: int = 256,
        layers: int = 4,
        heads: int = 4,
    ):
        super().__init__()
        self.embed_dim = check_int("embed_dim", embed_dim)
        self.token_dim = check_int("token_dim", token_dim)
        self.width = check_int("width", width)
        self.tokens_in = nn.Linear(token_dim, width)
        self.time_in = nn.Sequential(nn.Linear(width, width), nn.SiLU())
        self.image_in = nn.Linear(embed_dim, width)
        self.query = nn.Parameter(torch.randn(width) * width**-0.5)
        length = check_int("context_length", context_length)
        self.positions = LearnedPositions(length + 3, width)  # tokens + 3 slots
        self.blocks = nn.ModuleList(
            TransformerBlock(width, heads)
            for _ in range(check_int("layers", layers))
        )
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, embed_dim)

    def forward(self, x_t: Tensor, t: Tensor, cond: TokenStates) -> Tensor:
        batch = len(x_t)
        time = self.time_in(timestep_embedding(t, self.width).to(x_t.dtype))
        sequence = torch.cat(
            [
                self.tokens_in(cond.states.to(x_t.dtype)),  # (B, L, w)
                time[:, None],  # (B, 1, w)
                self.image_in(x_t)[:, None],  # (B, 1, w)
                self.query.expand(batch, 1, -1).to(x_t.dtype),
            ],
            dim=1,
        )  # (B, L + 3, w)
        x = self.positions(sequence)
        slots = torch.ones(batch, 3, dtype=torch.bool, device=x.device)
        key_mask = torch.cat([cond.mask, slots], dim=1)  # (B, L + 3)
        for block in self.blocks:
            x = block(x, key_mask=key_mask, causal=True)
        return self.out(self.norm(x[:, -1]))  # (B, E) at the query

    def null_cond(
        self, batch: int, device: torch.device | str = "cpu"
    ) -> TokenStates:
        """No caption: one token, masked out."""
        states = torch.zeros(batch, 1, self.token_dim, device=device)
        return TokenStates(
            states, torch.zeros(batch, 1, dtype=torch.bool, device=device)
        )

    def check_inputs(self, x_t: Tensor, t: Tensor, cond: TokenStates) -> None:
        check_tensor("x_t", x_t, dims=2, floating=True)
        if x_t.shape[1] != self.embed_dim:
            raise ValueError(
                f"x_t must be (B, {self.embed_dim}), got {tuple(x_t.shape)}"
            )
        check_tensor("t", t, dims=1)
        check_instance("cond", cond, TokenStates, "TokenStates (prior_condition)")
        if len(cond) != len(x_t) or cond.states.shape[2] != self.token_dim:
            raise ValueError(
                f"cond must hold ({len(x_t)}, L, {self.token_dim}) token states, "
                f"got {tuple(cond.states.shape)}"
            )


class ARPrior(CheckedModule):
    """The autoregressive prior: the codes of `PCAQuantizer` (B, dims) predicted one
    after the other by a causal transformer whose first token is the projected text
    embedding: logits (B, dims, buckets), position i read before code i is seen."""

    def __init__(
        self,
        embed_dim: int = 128,
        dims: int = 32,
        buckets: int = 64,
        width: int = 128,
        layers: int = 2,
        heads: int = 4,
    ):
        super().__init__()
        self.embed_dim = check_int("embed_dim", embed_dim)
        self.dims = check_int("dims", dims)
        self.buckets = check_int("buckets", buckets, minimum=2)
        self.text_in = nn.Linear(embed_dim, width)
        self.code_embedding = nn.Embedding(buckets, width)
        self.positions = LearnedPositions(dims, width)
        self.blocks = nn.ModuleList(
            TransformerBlock(width, heads)
            for _ in range(check_int("layers", layers))
        )
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, buckets)

    def forward(self, text_embedding: Tensor, codes: Tensor) -> Tensor:
        """text_embedding (B, E), codes (B, n <= dims) -> logits (B, n, buckets) of
        codes 0 .. n - 1, each from the text and the codes before it."""
        prefix = self.text_in(text_embedding)[:, None]  # (B, 1, w)
        before = self.code_embedding(codes[:, :-1])  # (B, n - 1, w): shifted right
        x = self.positions(torch.cat([prefix, before], dim=1))  # (B, n, w)
        for block in self.blocks:
            x = block(x, causal=True)
        return self.out(self.norm(x))

    @torch.no_grad()
    def sample(
        self, text_embedding: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """(B, E) -> (B, dims) codes, each drawn from the softmax given the ones
        before it."""
        codes = torch.zeros(
            len(text_embedding), self.dims, dtype=torch.long,
            device=text_embedding.device,
        )  # fmt: skip
        for i in range(self.dims):  # logits i read the codes before i only
            logits = self(text_embedding, codes[:, : i + 1])[:, i]
            drawn = torch.multinomial(
                logits.float().softmax(-1).cpu(), 1, generator=generator
            )
            codes[:, i] = drawn[:, 0].to(codes.device)
        return codes

    def check_inputs(self, text_embedding: Tensor, codes: Tensor) -> None:
        check_tensor("text_embedding", text_embedding, dims=2, floating=True)
        check_tensor("codes", codes, dims=2)
        if text_embedding.shape[1] != self.embed_dim or len(codes) != len(
            text_embedding
        ):
            raise ValueError(
                f"text_embedding must be (B, {self.embed_dim}) and codes (B, n), "
                f"got {tuple(text_embedding.shape)} and {tuple(codes.shape)}"
            )
        if codes.dtype != torch.long or not 1 <= codes.shape[1] <= self.dims:
            raise ValueError(
                f"codes must be int64 (B, 1 .. {self.dims}), got {codes.dtype} "
                f"{tuple(codes.shape)}"
            )
        if not 0 <= codes.min() <= codes.max() < self.buckets:
            raise ValueError(f"codes must lie in [0, {self.buckets})")


def rerank(candidates: Tensor, text_embedding: Tensor) -> Tensor:
    """Of K sampled image embeddings per caption, candidates (K, B, E), the one with
    the largest dot product with the caption's text embedding (B, E): unCLIP draws
    two samples from its diffusion prior and keeps that one. Returns (B, E)."""
    check_tensor("candidates", candidates, dims=3, floating=True)
    check_tensor("text_embedding", text_embedding, dims=2, floating=True)
    if candidates.shape[1:] != text_embedding.shape:
        raise ValueError(
            f"candidates must be (K, {', '.join(map(str, text_embedding.shape))}) "
            f"for text_embedding {tuple(text_embedding.shape)}, got "
            f"{tuple(candidates.shape)}"
        )
    scores = (candidates * text_embedding).sum(dim=-1)  # (K, B)
    best = scores.argmax(dim=0)  # (B,)
    return candidates[best, torch.arange(candidates.shape[1])]


def embedding_scale(embed_dim: int) -> float:
    """sqrt(embed_dim): multiplies unit-length embeddings so that each coordinate
    has about unit variance before noise is added (DALLE2-pytorch)."""
    return check_int("embed_dim", embed_dim) ** 0.5
