"""Chapter 3 exercise: the PSNR of a reconstruction.

PSNR = 10 log10(MAX² / MSE) in decibels, with MAX = 1 for intensities in [0, 1]: the
classic measure of how close a reconstruction is to its target, one value per image.
The answers are compared with 10 log10(1 / MSE) where the MSE of each image comes
from ``F.mse_loss``.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from minigen.exercises.engine import Case, CheckResult, judge_close, run, seeded


def check_psnr(fn: Callable[[Tensor, Tensor], Tensor]) -> CheckResult:
    """Check ``fn(prediction, target) -> Tensor``: the PSNR of each image in dB, for
    intensities in [0, 1].

    prediction and target are (N, C, H, W); the answer is (N,), one value per image.
    Answers are compared with 10 log10(1 / MSE) where the MSE comes from
    ``F.mse_loss`` over each image.
    """
    return run("psnr", fn, _psnr_cases(), _torch_psnr, judge_close)


def _torch_psnr(prediction: Tensor, target: Tensor) -> Tensor:
    errors = F.mse_loss(prediction, target, reduction="none")  # (N, C, H, W)
    mse = errors.flatten(1).mean(dim=1)  # (N,)
    return 10 * torch.log10(1.0 / mse)  # PSNR = 10 log10(MAX² / MSE), MAX = 1


def _psnr_cases(count: int = 40, seed: int = 0) -> list[Case]:
    rand = seeded(torch.rand, seed)
    target = rand(2, 3, 4, 4)
    half = torch.full((1, 1, 2, 2), 0.5, dtype=torch.float64)
    zeros = torch.zeros(1, 1, 2, 2, dtype=torch.float64)
    each_its_own = torch.cat([target[:1] + 0.01, target[1:] + 0.3])
    corners = [
        dict(prediction=half, target=zeros),  # MSE 0.25: 6.02 dB
        # the same error everywhere: 20 dB for every image
        dict(prediction=target + 0.1, target=target),
        # one channel, not square
        dict(prediction=rand(3, 1, 5, 7), target=rand(3, 1, 5, 7)),
        dict(prediction=each_its_own, target=target),  # one PSNR per image
    ]
    cases = list(corners)
    rng = random.Random(seed)
    while len(cases) < count:
        batch, channels = rng.randint(1, 4), rng.randint(1, 3)
        shape = (batch, channels, rng.randint(1, 8), rng.randint(1, 8))
        cases.append(dict(prediction=rand(*shape), target=rand(*shape)))
    return cases
