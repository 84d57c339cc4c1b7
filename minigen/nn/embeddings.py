"""Embeddings of timesteps, positions and conditions, each condition with its NULL.

- Sinusoidal embeddings, A. Vaswani et al., "Attention Is All You Need", NeurIPS
  2017: of token positions (sines and cosines interleaved, as in the paper) and of
  diffusion timesteps (cosines, then sines, the layout of the DDPM code of J. Ho
  et al., NeurIPS 2020), followed by an MLP; learned positions as in GPT-2 and CLIP
  (A. Radford et al. 2019, 2021).
- Class labels with one extra NULL row per attribute, and an embedding (a CLIP
  image embedding) projected and added to the time embedding with a learned NULL
  vector, as the decoder of A. Ramesh et al., "Hierarchical Text-Conditional Image
  Generation with CLIP Latents" (DALL-E 2), 2022. The NULL condition is what
  classifier-free guidance contrasts with: J. Ho, T. Salimans, "Classifier-Free
  Diffusion Guidance", 2022.
- Token states with a padding mask, what a text encoder hands to cross-attention:
  R. Rombach et al., "High-Resolution Image Synthesis with Latent Diffusion
  Models", CVPR 2022.

A condition is class labels (B, K) long, an embedding (B, D) float or TokenStates;
`cat_conditions` and `where_condition` batch and mix conditions of each kind.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minigen.core.runtime import as_device
from minigen.core.validators import (
    check_float,
    check_instance,
    check_int,
    check_ints,
    check_tensor,
    describe,
)
from minigen.nn.layers import CheckedModule

MAX_CLASSES = 100_000  # rows of one label table; more is a mistake here


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Sinusoidal embedding of (B,) timesteps (int or float) -> (B, dim) float32.

    With half = dim / 2 and w_i = max_period^(-i / half), i = 0..half-1, the first
    half is cos(t w_i) and the second half sin(t w_i): the frequencies run
    geometrically from 1 down to about 1 / max_period, so that nearby timesteps
    differ in the fast coordinates and distant ones in the slow coordinates.
    dim must be even.
    """
    _check_timesteps(t)
    _check_sinusoid_args(dim, max_period)
    half = dim // 2
    steps = torch.arange(half, dtype=torch.float32, device=t.device) / half
    frequencies = torch.exp(-math.log(max_period) * steps)  # w_i, steps = i / half
    angles = t.float()[:, None] * frequencies[None, :]  # (B, half), t w_i
    return torch.cat([angles.cos(), angles.sin()], dim=1)  # (B, dim)


def sinusoidal_positions(
    length: int, dim: int, max_period: float = 10_000.0
) -> Tensor:
    """Vaswani et al.'s encoding (length, dim) float32 of positions 0..length-1:
    PE[p, 2i] = sin(p w_i), PE[p, 2i + 1] = cos(p w_i), w_i = max_period^(-2i/dim).
    """
    length = check_int("length", length)
    _check_sinusoid_args(dim, max_period)
    positions = torch.arange(length, dtype=torch.float32)[:, None]  # (L, 1)
    exponents = torch.arange(0, dim, 2, dtype=torch.float32) / dim  # 2i / dim
    angles = positions * torch.exp(-math.log(max_period) * exponents)  # (L, dim/2)
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)  # (L, dim)


def _check_sinusoid_args(dim: int, max_period: float) -> None:
    check_int("dim", dim)
    if dim % 2:
        raise ValueError(f"dim must be even (half cosines, half sines), got {dim}")
    check_float("max_period", max_period, 1.0, open_min=True)


def _check_timesteps(t: Tensor) -> None:
    """(B,) finite integer or real timesteps."""
    check_tensor("t", t, dims=1, shape="(B,) of timesteps")
    if t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"t must hold integer or real timesteps, got {t.dtype}")
    _check_finite("t", t)


def _check_finite(name: str, value: Tensor) -> None:
    """No NaN or inf in `value`; a meta tensor (a shape without data) passes."""
    if not value.is_meta:
        check_tensor(name, value, finite=True)


class TimestepEmbedding(nn.Module):
    """t (B,) -> timestep_embedding(t, dim) -> Linear, SiLU, Linear -> (B, emb)."""

    def __init__(self, dim: int, emb_dim: int):
        super().__init__()
        self.dim = check_int("dim", dim)
        emb_dim = check_int("emb_dim", emb_dim)
        if dim % 2:
            raise ValueError(f"dim is the sinusoid's size, must be even, got {dim}")
        self.mlp = nn.Sequential(
            nn.Linear(dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )

    def forward(self, t: Tensor) -> Tensor:
        return self.mlp(timestep_embedding(t, self.dim))  # (B, emb_dim)


class LearnedPositions(CheckedModule):
    """x (B, L, dim) -> x + P[:L]: one learned vector per position, N(0, 0.01^2)
    at first."""

    def __init__(self, max_length: int, dim: int):
        super().__init__()
        self.max_length = check_int("max_length", max_length)
        self.dim = check_int("dim", dim)
        self.table = nn.Parameter(
            torch.randn(max_length, dim) * 0.01
        )  # (L_max, dim)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.table[: x.shape[1]]  # (B, L, dim)

    def check_inputs(self, x: Tensor) -> None:
        check_tensor("x", x, dims=3, floating=True, shape="(B, L, dim)")
        if x.shape[1] > self.max_length or x.shape[2] != self.dim:
            raise ValueError(
                f"x must be (B, L <= {self.max_length}, {self.dim}), got "
                f"{tuple(x.shape)}"
            )


# ----------------------------------------------------------------------------------
# Conditions and their NULL
# ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenStates:
    """A batch of token sequences: what cross-attention reads keys and values from.

    states: (B, L, D) float, one vector per token; mask: (B, L) bool, True at real
    tokens and False at padding, which attention must not look at: cross-attention
    reads them as `CrossAttention2d(x, cond.states, cond.mask)`.
    """

    states: Tensor  # (B, L, D)
    mask: Tensor  # (B, L) bool

    def __post_init__(self) -> None:
        check_tensor(
            "states", self.states, dims=3, floating=True, shape="(B, L, D)"
        )
        _check_finite("states", self.states)
        check_tensor("mask", self.mask, dims=2, shape="(B, L)")
        if self.mask.dtype != torch.bool:
            raise TypeError(f"mask must be a bool tensor, got {self.mask.dtype}")
        if self.mask.shape != self.states.shape[:2]:
            raise ValueError(
                f"mask must be (B, L) = {tuple(self.states.shape[:2])} for states "
                f"{tuple(self.states.shape)}, got {tuple(self.mask.shape)}"
            )

    def __len__(self) -> int:
        return self.states.shape[0]

    def __getitem__(self, rows: int | slice | Tensor) -> TokenStates:
        """The sequences `rows` (an int, a slice, indices or a boolean mask)."""
        rows = slice(rows, rows + 1) if isinstance(rows, int) else rows
        return TokenStates(self.states[rows], self.mask[rows])

    def to(self, device: torch.device | str) -> TokenStates:
        """The same sequences on `device`."""
        device = as_device(device)
        return TokenStates(self.states.to(device), self.mask.to(device))

    def pad_to(self, length: int) -> TokenStates:
        """The same sequences padded to `length` tokens: zero states, False mask."""
        length = check_int("length", length, minimum=self.states.shape[1])
        extra = length - self.states.shape[1]
        states = F.pad(self.states, (0, 0, 0, extra))  # (B, length, D)
        return TokenStates(states, F.pad(self.mask, (0, extra), value=False))


Condition = Union[Tensor, TokenStates]


def cat_conditions(conditions: Sequence[Condition]) -> Condition:
    """Conditions of one kind stacked along the batch (token states padded)."""
    if isinstance(conditions, (Tensor, TokenStates)) or not conditions:
        raise TypeError(
            f"conditions must be a non-empty list, got {describe(conditions)}"
        )
    if all(isinstance(cond, TokenStates) for cond in conditions):
        length = max(cond.states.shape[1] for cond in conditions)
        padded = [cond.pad_to(length) for cond in conditions]
        states = torch.cat([cond.states for cond in padded])  # (sum B, length, D)
        return TokenStates(states, torch.cat([cond.mask for cond in padded]))
    for cond in conditions:
        check_tensor("every condition", cond, dims=(2, 3), shape="(B, ...)")
    return torch.cat(list(conditions))


def where_condition(
    choose: Tensor, if_true: Condition, if_false: Condition
) -> Condition:
    """Row b of `if_true` where choose (B,) bool is True, else row b of `if_false`
    (conditions of one kind): condition dropout is where_condition(drop, null, c).
    """
    _check_choice(choose, if_true, if_false)
    if isinstance(if_true, TokenStates):
        length = max(if_true.states.shape[1], if_false.states.shape[1])
        a, b = if_true.pad_to(length), if_false.pad_to(length)
        states = torch.where(choose[:, None, None], a.states, b.states)  # (B, L, D)
        return TokenStates(states, torch.where(choose[:, None], a.mask, b.mask))
    rows = choose.view(-1, *[1] * (if_false.dim() - 1))  # (B, 1, ...)
    return torch.where(rows, if_true, if_false)


def _check_choice(choose: Tensor, if_true: Condition, if_false: Condition) -> None:
    check_tensor("choose", choose, dims=1, shape="(B,) bool")
    if choose.dtype != torch.bool:
        raise TypeError(f"choose must be a bool tensor (B,), got {choose.dtype}")
    kind = TokenStates if isinstance(if_true, TokenStates) else Tensor
    for name, cond in (("if_true", if_true), ("if_false", if_false)):
        check_instance(name, cond, kind, f"a {kind.__name__}, as both must be")
        scalar = isinstance(cond, Tensor) and cond.dim() == 0
        if scalar or len(cond) != len(choose):
            raise ValueError(
                f"{name} must hold one row per entry of choose: {len(choose)}, got "
                f"{describe(cond)}"
            )


class LabelEmbedding(CheckedModule):
    """Adds class labels to an embedding: emb (B, dim), labels (B, K) ->
    emb + sum_k E_k[labels[:, k]], with a table E_k per attribute.

    Table k has class_counts[k] + 1 rows: row class_counts[k] is the NULL label
    ("no condition"), which `null` returns for every attribute.
    """

    def __init__(self, class_counts: Sequence[int], dim: int):
        super().__init__()
        self.class_counts = check_ints("class_counts", class_counts)
        for count in self.class_counts:
            check_int("every class count", count, maximum=MAX_CLASSES)
        dim = check_int("dim", dim)
        # row `count` of each table is the NULL label
        tables = [nn.Embedding(count + 1, dim) for count in self.class_counts]
        self.tables = nn.ModuleList(tables)

    def null(self, batch: int, device: torch.device | str | None = None) -> Tensor:
        """The all-NULL labels (batch, K): column k holds class_counts[k]."""
        batch = check_int("batch", batch, minimum=0)
        device = _optional_device(device)
        counts = torch.tensor(self.class_counts, dtype=torch.long, device=device)
        return counts.expand(batch, -1).clone()  # (batch, K)

    def forward(self, emb: Tensor, labels: Tensor) -> Tensor:
        for k, table in enumerate(self.tables):
            emb = emb + table(labels[:, k])  # (B, dim)
        return emb

    def check_inputs(self, emb: Tensor, labels: Tensor) -> None:
        k = len(self.class_counts)
        check_tensor("labels", labels, dims=2, shape=f"(B, {k}) of class indices")
        floating = labels.is_floating_point() or labels.is_complex()
        if floating or labels.dtype == torch.bool:
            raise TypeError(
                f"labels must be an integer tensor (B, {k}), got {labels.dtype}"
            )
        if labels.shape[1] != k:
            raise ValueError(
                f"labels must be (B, {k}), one column per attribute of "
                f"class_counts {self.class_counts}, got {tuple(labels.shape)}"
            )
        counts = torch.tensor(self.class_counts, device=labels.device)  # the NULLs
        if (labels < 0).any() or (labels > counts).any():
            raise ValueError(
                "labels[:, k] must lie in [0, class_counts[k]] for class_counts "
                f"{list(self.class_counts)} (class_counts[k] is NULL), got column "
                f"minima {labels.amin(0).tolist()} and maxima "
                f"{labels.amax(0).tolist()}"
            )
        _check_base_embedding(emb, len(labels), self.tables[0].embedding_dim)


class EmbeddingProjection(CheckedModule):
    """Adds a projected embedding to an embedding: emb (B, dim), cond (B, cond_dim)
    -> emb + Linear(cond); cond is e.g. a CLIP image embedding, added to the time
    embedding as in DALL-E 2's decoder.

    `null` is a learned vector (cond_dim,) in the input space, zero at first (the
    "zero embedding" of DALL-E 2): the NULL condition is a condition like others.
    """

    def __init__(self, cond_dim: int, dim: int):
        super().__init__()
        self.cond_dim = check_int("cond_dim", cond_dim)
        self.null_vector = nn.Parameter(torch.zeros(cond_dim))  # (cond_dim,)
        self.projection = nn.Linear(cond_dim, check_int("dim", dim))

    def null(self, batch: int, device: torch.device | str | None = None) -> Tensor:
        """The NULL embedding (batch, cond_dim): the learned vector in every row."""
        batch = check_int("batch", batch, minimum=0)
        device = _optional_device(device)
        vector = self.null_vector if device is None else self.null_vector.to(device)
        return vector.expand(batch, -1)  # (batch, cond_dim)

    def forward(self, emb: Tensor, cond: Tensor) -> Tensor:
        return emb + self.projection(cond)  # (B, dim)

    def check_inputs(self, emb: Tensor, cond: Tensor) -> None:
        check_tensor("cond", cond, dims=2, floating=True, shape="(B, cond_dim)")
        if cond.shape[1] != self.cond_dim:
            raise ValueError(
                f"cond must be (B, {self.cond_dim}), got {tuple(cond.shape)}"
            )
        _check_base_embedding(emb, len(cond), self.projection.out_features)


def _optional_device(device: torch.device | str | None) -> torch.device | None:
    return None if device is None else as_device(device)


def _check_base_embedding(emb: Tensor, batch: int, dim: int) -> None:
    check_tensor("emb", emb, dims=2, floating=True, shape=f"(B, {dim})")
    if emb.shape != (batch, dim):
        raise ValueError(
            f"emb must be ({batch}, {dim}), one row per condition, got "
            f"{tuple(emb.shape)}"
        )
