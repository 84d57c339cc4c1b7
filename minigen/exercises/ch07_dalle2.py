"""Chapter 7 exercises: spherical interpolation between embeddings, one
deterministic DDIM step of the diffusion prior, and the reranking of its samples.

The answers are compared with a rotation by t θ in the plane of the two vectors,
its basis built by Gram–Schmidt and its angle given by atan2 (for slerp), with the
DDIM step written as x_prev = c_x x_t + c_0 x0_pred, its two coefficients worked
out here (for the prior's step), and with plain loops over captions and candidates
(for the reranking), never with the code the chapter teaches.

References: A. Ramesh et al., "Hierarchical Text-Conditional Image Generation with
CLIP Latents", arXiv:2204.06125 (2022) (unCLIP: the diffusion prior, its x0
objective, the reranking of its samples); K. Shoemake, "Animating Rotation with
Quaternion Curves", SIGGRAPH (1985) (slerp); J. Song, C. Meng and S. Ermon,
"Denoising Diffusion Implicit Models", ICLR (2021) (DDIM).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from minigen.exercises.engine import (
    Case,
    CheckResult,
    Mismatch,
    judge_close,
    judge_tensor,
    run,
    seeded,
)

# ---------------------------------------------------------------------------------
# Spherical linear interpolation (slerp)


def check_slerp(fn: Callable[[Tensor, Tensor, float], Tensor]) -> CheckResult:
    """Check ``fn(a, b, t) -> Tensor``: the spherical linear interpolation (slerp)
    from a to b at t.

    a and b are unit vectors of one shape, (E,) or a batch (B, E) of B pairs, one
    pair per row; t is a float in [0, 1]. The answer, of a's shape, is
    sin((1 - t) θ) / sin θ · a + sin(t θ) / sin θ · b with θ = arccos(a · b) the
    angle between a and b (row by row): a at t = 0, b at t = 1 and in between a
    unit vector moving at constant speed along the great circle from a to b.
    Where a and b are parallel, or nearly (θ below about 1e-3), sin θ vanishes:
    there return the straight line (1 - t) a + t b; a · b may also round above 1,
    where arccos is nan, so clamp it to [-1, 1]. Nearly opposite vectors, whose
    sin θ is small too, still follow the great circle. Answers are compared, to a
    relative 1e-6, with a rotation of a by t θ in the plane of a and b, built by
    Gram–Schmidt.
    """
    return run("slerp", fn, _slerp_cases(), _rotation_slerp, _judge_same_shape)


def _rotation_slerp(a: Tensor, b: Tensor, t: float) -> Tensor:
    rows = []
    for x, y in zip(a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])):
        cos = (x @ y).item()
        # Gram–Schmidt: u, the part of y orthogonal to x; x and u / |u| span the
        # plane of the great circle, and y = cos x + u
        u = y - cos * x
        sin = u.norm().item()
        angle = math.atan2(sin, cos)  # θ, even where cos rounds above 1
        # the point at angle t θ from x: cos(t θ) x + sin(t θ) u / |u|, where
        # sin(t θ) / |u| tends to t as u vanishes (x + t u: the straight line)
        along = math.sin(t * angle) / sin if sin > 0 else t
        rows.append(math.cos(t * angle) * x + along * u)
    return torch.stack(rows).reshape(a.shape)


def _judge_same_shape(expected: Tensor, got: Any) -> Mismatch | None:
    """The shape of the inputs (not a reduction of them), then ``judge_close``."""
    if isinstance(got, Tensor) and got.shape != expected.shape:
        return Mismatch(
            f"shape mismatch: expected {tuple(expected.shape)}, got "
            f"{tuple(got.shape)} (the answer has the shape of the inputs)"
        )
    return judge_close(expected, got)


def _slerp_cases(count: int = 40, seed: int = 0) -> list[Case]:
    randn = seeded(torch.randn, seed)

    def at_angle(angle: float, dims: int) -> tuple[Tensor, Tensor]:
        """Unit vectors (dims,) at `angle` (radians) from each other, in a random
        plane."""
        a = _unit(randn(dims))
        w = randn(dims)
        w = _unit(w - (w @ a) * a)  # orthogonal to a
        return a, _unit(math.cos(angle) * a + math.sin(angle) * w)

    def batch(angles: list[float], dims: int) -> tuple[Tensor, Tensor]:
        pairs = [at_angle(angle, dims) for angle in angles]
        return torch.stack([a for a, _ in pairs]), torch.stack(
            [b for _, b in pairs]
        )

    def case(pair: tuple[Tensor, Tensor], t: float) -> Case:
        return dict(a=pair[0], b=pair[1], t=t)

    basis = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    root_half = torch.full((2,), math.sqrt(0.5), dtype=torch.float64)
    rows_a, rows_b = batch([0.5, 2.0, 1.0], 4)
    rows_b[1] = rows_a[1]  # the second row: a and b equal
    corners = [
        case(at_angle(1.0, 4), 0.0),  # a
        case(at_angle(1.0, 4), 1.0),  # b
        case(at_angle(math.pi / 2, 3), 0.5),  # orthogonal, halfway
        case(at_angle(math.pi / 2, 2), 0.25),  # orthogonal, not halfway
        case(at_angle(2.5, 5), 0.3),  # an obtuse angle
        case(at_angle(math.pi - 1e-3, 5), 0.5),  # nearly opposite
        case((basis, basis.clone()), 0.3),  # a · b = 1 exactly: sin θ = 0
        case((root_half, root_half.clone()), 0.6),  # a · b rounds above 1
        case(at_angle(1e-4, 6), 0.7),  # nearly parallel
        case(batch([0.3, 1.5, 3.0], 8), 0.4),  # a batch, one angle per row
        case((rows_a, rows_b), 0.8),  # a batch with one parallel row
    ]
    cases = list(corners)
    rng = random.Random(seed)
    while len(cases) < count:
        dims = rng.randint(2, 16)
        rows = rng.choice([None, 1, rng.randint(2, 6)])  # (E,) or (B, E)
        if rng.random() < 0.5:  # independent directions
            shape = (dims,) if rows is None else (rows, dims)
            pair = _unit(randn(*shape)), _unit(randn(*shape))
        else:  # angles from 1e-3 to pi - 1e-3, small ones as often as large
            angles = [
                math.exp(rng.uniform(math.log(1e-3), math.log(math.pi - 1e-3)))
                for _ in range(rows or 1)
            ]
            pair = (
                at_angle(angles[0], dims) if rows is None else batch(angles, dims)
            )
        cases.append(case(pair, rng.random()))
    return cases


def _unit(x: Tensor) -> Tensor:
    """x divided by its length, row by row."""
    return x / x.norm(dim=-1, keepdim=True)


# ---------------------------------------------------------------------------------
# One deterministic DDIM step of the diffusion prior


def check_prior_ddim_step(
    fn: Callable[[Tensor, Tensor, float, float], Tensor],
) -> CheckResult:
    """Check ``fn(x_t, x0_pred, alpha_bar_t, alpha_bar_prev) -> x_prev``: one
    deterministic DDIM step (eta = 0) of the diffusion prior, whose network predicts
    the clean image embedding (the "x0" objective), not the noise.

    x_t is a batch of noised image embeddings (B, E) at the noise level
    alpha_bar_t, x0_pred the network's prediction of the clean embeddings (B, E),
    both float64 tensors (embeddings scaled to length sqrt(E), as the prior
    diffuses them); alpha_bar_t and alpha_bar_prev are floats with
    0 < alpha_bar_t < alpha_bar_prev <= 1, and alpha_bar_prev = 1 means the step to
    the clean embedding. Read the noise off x_t,
    eps = (x_t - sqrt(alpha_bar_t) x0_pred) / sqrt(1 - alpha_bar_t), and return
    x_prev = sqrt(alpha_bar_prev) x0_pred + sqrt(1 - alpha_bar_prev) eps (B, E),
    with no fresh noise. Answers are compared, to a relative 1e-6, with the step
    written as x_prev = c_x x_t + c_0 x0_pred, its coefficients worked out in the
    checker.
    """
    return run(
        "prior_ddim_step",
        fn,
        _prior_ddim_step_cases(),
        _linear_prior_ddim_step,
        _judge_same_shape,
    )


def _linear_prior_ddim_step(
    x_t: Tensor, x0_pred: Tensor, alpha_bar_t: float, alpha_bar_prev: float
) -> Tensor:
    # x_prev keeps the share c_x of the noise in x_t: the noise's scale goes from
    # sqrt(1 - ab) to sqrt(1 - ab'), and the signal's from sqrt(ab) to sqrt(ab');
    # x_t brings c_x sqrt(ab) of it, x0_pred the rest
    coefficient_x = math.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t))
    coefficient_0 = math.sqrt(alpha_bar_prev) - coefficient_x * math.sqrt(
        alpha_bar_t
    )
    return coefficient_x * x_t + coefficient_0 * x0_pred


def _prior_ddim_step_cases(count: int = 30, seed: int = 0) -> list[Case]:
    randn = seeded(torch.randn, seed)

    def case(
        rows: int, dims: int, alpha_bar_t: float, alpha_bar_prev: float
    ) -> Case:
        scale = math.sqrt(dims)  # the prior's embeddings have length sqrt(E)
        x0 = scale * _unit(randn(rows, dims))  # the embedding x_t was made from
        noise = randn(rows, dims)
        x_t = math.sqrt(alpha_bar_t) * x0 + math.sqrt(1 - alpha_bar_t) * noise
        x0_pred = scale * _unit(x0 + randn(rows, dims))  # a prediction, not x0
        return dict(
            x_t=x_t,
            x0_pred=x0_pred,
            alpha_bar_t=alpha_bar_t,
            alpha_bar_prev=alpha_bar_prev,
        )

    corners = [
        case(4, 8, 0.5, 0.7),
        case(3, 16, 0.8, 1.0),  # to the clean embedding: x0_pred itself
        case(2, 8, 0.001, 0.5),  # a long jump from almost pure noise
        case(1, 32, 0.95, 0.96),  # a short step, one embedding
        case(5, 1, 0.2, 0.9),  # embeddings of one coordinate
    ]
    cases = list(corners)
    rng = random.Random(seed)
    while len(cases) < count:
        rows, dims = rng.randint(1, 6), rng.randint(2, 64)
        alpha_bar_t = rng.uniform(0.001, 0.99)
        # a step towards the embedding, some of them the last one
        alpha_bar_prev = rng.choice([1.0, rng.uniform(alpha_bar_t, 1.0)])
        cases.append(case(rows, dims, alpha_bar_t, alpha_bar_prev))
    return cases


# ---------------------------------------------------------------------------------
# Reranking the prior's samples


def check_rerank(fn: Callable[[Tensor, Tensor], Tensor]) -> CheckResult:
    """Check ``fn(candidates, text_embedding) -> Tensor``: of K image embeddings
    sampled from the prior for each caption, the one unCLIP keeps.

    candidates is (K, B, E), K samples for each of B captions; text_embedding is
    (B, E), the captions' CLIP text embeddings; none is of unit length. For each
    caption b, keep the candidate k with the largest dot product
    candidates[k, b] · text_embedding[b]: the dot product, not the cosine, so a
    longer embedding can win. The answer is (B, E), the kept candidates themselves
    (their values and dtype, not their indices). Answers are compared with plain
    loops over captions and candidates; no case has a tie.
    """
    return run("rerank", fn, _rerank_cases(), _loop_rerank, _judge_kept)


def _loop_rerank(candidates: Tensor, text_embedding: Tensor) -> Tensor:
    scores = _loop_dot_products(candidates, text_embedding)
    kept = []
    for b, row in enumerate(scores):
        best = 0
        for k, score in enumerate(row):
            if score > row[best]:
                best = k
        kept.append(candidates[best, b])
    return torch.stack(kept)


def _loop_dot_products(
    candidates: Tensor, text_embedding: Tensor
) -> list[list[float]]:
    """(B, K) dot products of each caption's candidates with its text embedding,
    as nested lists."""
    return [
        [
            sum(c * x for c, x in zip(candidate, text))
            for candidate in candidates[:, b].tolist()
        ]
        for b, text in enumerate(text_embedding.tolist())
    ]


def _judge_kept(expected: Tensor, got: Any) -> Mismatch | None:
    """Indices instead of embeddings, then ``judge_tensor``; a value in another
    dtype is no copy of a candidate."""
    rows, dims = expected.shape
    if (
        isinstance(got, Tensor)
        and got.shape == (rows,)
        and not got.is_floating_point()
    ):
        return Mismatch(
            f"expected the kept embeddings, a tensor of shape {(rows, dims)}, got "
            f"indices of shape {(rows,)}: return the candidates themselves"
        )
    if (
        isinstance(got, Tensor)
        and got.shape == expected.shape
        and got.dtype != expected.dtype
    ):
        return Mismatch(
            f"dtype {got.dtype}: return the kept candidates themselves, in their "
            f"dtype {expected.dtype}"
        )
    return judge_tensor(expected, got)


def _rerank_margin(candidates: Tensor, text_embedding: Tensor) -> float:
    """The smallest gap between a caption's best and second-best dot product."""
    gaps = [
        sorted(row)[-1] - sorted(row)[-2] if len(row) > 1 else math.inf
        for row in _loop_dot_products(candidates, text_embedding)
    ]
    return min(gaps)


def _rerank_cases(count: int = 30, seed: int = 0) -> list[Case]:
    randn = seeded(torch.randn, seed)

    def case(candidates: Any, text_embedding: Any) -> Case:
        return dict(
            candidates=torch.as_tensor(candidates, dtype=torch.float64),
            text_embedding=torch.as_tensor(text_embedding, dtype=torch.float64),
        )

    # the caption b's winner is candidate (b + 1) % 3: a different one for each
    texts = randn(3, 4)
    weights = torch.tensor([[1.0, 2.0, 3.0], [3.0, 1.0, 2.0], [2.0, 3.0, 1.0]])
    winners = weights[:, :, None] * texts + 0.1 * randn(3, 3, 4)  # (K, B, E)
    corners = [
        # the longer candidate wins the dot product, the aligned one the cosine
        case([[[1.0, 0.0]], [[3.0, 3.0]]], [[1.0, 0.0]]),
        # every dot product negative: the least negative wins
        case([[[-1.0, 0.2]], [[-3.0, 0.0]], [[-0.5, -2.0]]], [[1.0, 0.0]]),
        case(randn(1, 3, 5), randn(3, 5)),  # one candidate: nothing to choose
        case(winners, texts),
    ]
    cases = list(corners)
    rng = random.Random(seed)
    while len(cases) < count:
        k, rows, dims = rng.randint(1, 5), rng.randint(1, 6), rng.randint(2, 16)
        # lengths between about 0.1 and 10
        candidates = randn(k, rows, dims) * torch.exp(randn(k, rows, 1))
        text_embedding = randn(rows, dims)
        if _rerank_margin(candidates, text_embedding) > 1e-6:  # else redraw
            cases.append(case(candidates, text_embedding))
    return cases
