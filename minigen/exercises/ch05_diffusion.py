"""Chapter 5 exercises: sampling q(x_t | x_0), and one deterministic DDIM step.

The answers are compared with ``AffineTransform`` applied to the noise (for q) and
with the DDIM step expanded into its two coefficients, x_prev = c_x x_t + c_eps eps,
worked out here rather than through the predicted clean image the chapter teaches.

References: J. Ho, A. Jain and P. Abbeel, "Denoising Diffusion Probabilistic
Models", NeurIPS (2020); J. Song, C. Meng and S. Ermon, "Denoising Diffusion
Implicit Models", ICLR (2021).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import torch
from torch import Tensor
from torch.distributions.transforms import AffineTransform

from minigen.exercises.engine import Case, CheckResult, judge_close, run, seeded

# ---------------------------------------------------------------------------------
# Sampling q(x_t | x_0)


def check_q_sample(fn: Callable[[Tensor, Tensor, float], Tensor]) -> CheckResult:
    """Check ``fn(x0, noise, alpha_bar) -> x_t``: a sample of q(x_t | x_0) made from
    the standard normal ``noise``.

    alpha_bar is the signal level of step t, a float in (0, 1]. Answers are compared
    with ``AffineTransform(loc=sqrt(alpha_bar) x0, scale=sqrt(1 - alpha_bar))``
    applied to the noise.
    """
    return run("q_sample", fn, _q_sample_cases(), _torch_q_sample, judge_close)


def _torch_q_sample(x0: Tensor, noise: Tensor, alpha_bar: float) -> Tensor:
    # x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) noise
    loc, scale = math.sqrt(alpha_bar) * x0, math.sqrt(1 - alpha_bar)
    return AffineTransform(loc=loc, scale=scale)(noise)


def _q_sample_cases(count: int = 30, seed: int = 0) -> list[Case]:
    randn = seeded(torch.randn, seed)

    def case(shape: tuple[int, ...], alpha_bar: float) -> Case:
        x0, noise = randn(*shape), randn(*shape)  # (B, C, H, W) each
        return dict(x0=x0, noise=noise, alpha_bar=alpha_bar)

    corners = [
        case((2, 3, 4, 4), 1.0),  # no noise yet: x_t = x0
        case((2, 3, 4, 4), 0.25),  # sqrt(alpha_bar) = 0.5, not 0.25
        case((1, 1, 2, 2), 1e-4),  # almost pure noise
    ]
    cases = list(corners)
    rng = random.Random(seed)
    while len(cases) < count:
        shape = _random_image_shape(rng)
        cases.append(case(shape, alpha_bar=rng.uniform(0.001, 0.999)))
    return cases


# ---------------------------------------------------------------------------------
# One deterministic DDIM step


def check_ddim_step(
    fn: Callable[[Tensor, Tensor, float, float], Tensor],
) -> CheckResult:
    """Check ``fn(x_t, eps, alpha_bar_t, alpha_bar_prev) -> x_prev``: one
    deterministic DDIM step (eta = 0).

    eps is the model's noise prediction at x_t; alpha_bar_prev = 1 means the step to
    the clean image. Answers are compared with the step written as
    x_prev = c_x x_t + c_eps eps, its coefficients worked out in the checker.
    """
    return run("ddim_step", fn, _ddim_step_cases(), _linear_ddim_step, judge_close)


def _linear_ddim_step(
    x_t: Tensor, eps: Tensor, alpha_bar_t: float, alpha_bar_prev: float
) -> Tensor:
    # x_prev = sqrt(ab') x0_hat + sqrt(1 - ab') eps
    #   with x0_hat = (x_t - sqrt(1 - ab) eps) / sqrt(ab), expanded:
    # x_prev = sqrt(ab' / ab) x_t + (sqrt(1 - ab') - sqrt(ab' (1 - ab) / ab)) eps
    coefficient_x = math.sqrt(alpha_bar_prev / alpha_bar_t)
    shrink = math.sqrt(alpha_bar_prev * (1 - alpha_bar_t) / alpha_bar_t)
    coefficient_eps = math.sqrt(1 - alpha_bar_prev) - shrink
    return coefficient_x * x_t + coefficient_eps * eps


def _ddim_step_cases(count: int = 30, seed: int = 0) -> list[Case]:
    randn = seeded(torch.randn, seed)

    def case(
        shape: tuple[int, ...], alpha_bar_t: float, alpha_bar_prev: float
    ) -> Case:
        x_t, eps = randn(*shape), randn(*shape)  # (B, C, H, W) each
        return dict(
            x_t=x_t, eps=eps, alpha_bar_t=alpha_bar_t, alpha_bar_prev=alpha_bar_prev
        )

    corners = [
        case((2, 3, 4, 4), 0.5, 0.6),
        case((2, 3, 4, 4), 0.9, 1.0),  # to the clean image
        case((1, 1, 3, 3), 0.01, 0.5),  # a long jump
    ]
    cases = list(corners)
    rng = random.Random(seed)
    while len(cases) < count:
        shape = _random_image_shape(rng)
        alpha_bar_t = rng.uniform(0.001, 0.99)
        alpha_bar_prev = rng.uniform(alpha_bar_t, 1.0)  # a step towards the image
        cases.append(case(shape, alpha_bar_t, alpha_bar_prev))
    return cases


def _random_image_shape(rng: random.Random) -> tuple[int, int, int, int]:
    """A small (B, C, H, W) for the random cases of both exercises."""
    batch, channels = rng.randint(1, 3), rng.randint(1, 3)
    return batch, channels, rng.randint(1, 6), rng.randint(1, 6)
