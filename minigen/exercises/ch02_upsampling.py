"""Chapter 2 exercises: the weights of linear resizing, and pixel shuffle.

The answers are compared with what torch does: the weights ``F.interpolate`` gives
each input pixel (read off one-hot inputs) and every value of ``F.pixel_shuffle``.
The chapter's transposed-convolution exercise is chapter 1's
(:func:`~minigen.exercises.ch01_convolution.check_transposed_output_size`).

Reference: W. Shi et al., "Real-time single image and video super-resolution using
an efficient sub-pixel convolutional neural network", CVPR (2016).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from minigen.exercises.engine import (
    Case,
    CheckResult,
    judge_tensor,
    judge_weights,
    run,
)

# ---------------------------------------------------------------------------------
# The weights of linear resizing


def check_bilinear_weights(fn: Callable[[int, int, bool], Tensor]) -> CheckResult:
    """Check ``fn(in_size, out_size, align_corners) -> Tensor``, the weights of 1-D
    linear resizing.

    Row ``o`` of the (out_size, in_size) answer holds the weight each input pixel
    gets in output pixel ``o``; a NumPy array is accepted too. Answers are compared
    with ``F.interpolate(mode="linear")`` applied to one-hot inputs: input pixel
    ``j`` alone lights up column ``j``.
    """
    return run(
        "bilinear_weights",
        fn,
        _bilinear_weights_cases(),
        _torch_linear_weights,
        judge_weights,
    )


def _torch_linear_weights(
    in_size: int, out_size: int, align_corners: bool
) -> Tensor:
    # (in_size, 1, in_size): one input pixel lit in each
    one_hots = torch.eye(in_size, dtype=torch.float64).unsqueeze(1)
    resized = F.interpolate(
        one_hots, size=out_size, mode="linear", align_corners=align_corners
    )  # (in_size, 1, out_size)
    # (out_size, in_size): W[o, j] = output o of the image where only pixel j is 1
    return resized[:, 0, :].T


def _bilinear_weights_cases(count: int = 200, seed: int = 0) -> list[Case]:
    corners = [
        # ×2: half-pixel centres, clamped at the edges
        dict(in_size=4, out_size=8, align_corners=False),
        # ×2 with the corner pixels pinned
        dict(in_size=4, out_size=8, align_corners=True),
        # a ratio that is not an integer
        dict(in_size=3, out_size=7, align_corners=False),
        dict(in_size=3, out_size=7, align_corners=True),
        # shrinking (no antialiasing: 2 taps per output)
        dict(in_size=8, out_size=3, align_corners=False),
        dict(in_size=8, out_size=3, align_corners=True),
        # the same size: the identity
        dict(in_size=5, out_size=5, align_corners=False),
        # one input pixel: copied everywhere
        dict(in_size=1, out_size=4, align_corners=False),
        dict(in_size=1, out_size=4, align_corners=True),
        # one output pixel: the centre of the input
        dict(in_size=6, out_size=1, align_corners=False),
        # one output pixel, corners pinned: input pixel 0
        dict(in_size=6, out_size=1, align_corners=True),
    ]
    rng = random.Random(seed)
    cases = list(corners)
    while len(cases) < count:
        in_size, out_size = rng.randint(1, 16), rng.randint(1, 32)
        align_corners = rng.random() < 0.5
        cases.append(
            dict(in_size=in_size, out_size=out_size, align_corners=align_corners)
        )
    return cases


# ---------------------------------------------------------------------------------
# Pixel shuffle


def check_pixel_shuffle(fn: Callable[[Tensor, int], Tensor]) -> CheckResult:
    """Check ``fn(x, r) -> Tensor``: x (B, C·r², H, W) rearranged into
    (B, C, H·r, W·r).

    Answers are compared with ``F.pixel_shuffle``: first the shape, then every
    value.
    """
    return run(
        "pixel_shuffle",
        fn,
        _pixel_shuffle_cases(),
        _torch_pixel_shuffle,
        judge_tensor,
    )


def _torch_pixel_shuffle(x: Tensor, r: int) -> Tensor:
    return F.pixel_shuffle(x, r)  # (B, C, H·r, W·r)


def _pixel_shuffle_cases(count: int = 60, seed: int = 0) -> list[Case]:
    generator = torch.Generator().manual_seed(seed)

    def numbered(*shape: int) -> Tensor:  # distinct values: a misplaced one shows
        values = torch.randperm(math.prod(shape), generator=generator)
        return values.float().reshape(shape)

    corners = [
        # one output channel: the plain case
        dict(x=torch.arange(16.0).reshape(1, 4, 2, 2), r=2),
        # three output channels: which input channels go together
        dict(x=numbered(1, 12, 2, 2), r=2),
        dict(x=numbered(1, 9, 3, 3), r=3),  # r = 3
        dict(x=numbered(1, 8, 2, 3), r=2),  # not square
        dict(x=numbered(2, 8, 3, 2), r=2),  # images of a batch shuffled separately
        dict(x=numbered(1, 3, 4, 4), r=1),  # r = 1 changes nothing
    ]
    rng = random.Random(seed)
    cases = list(corners)
    while len(cases) < count:
        r = rng.randint(1, 4)
        batch, channels = rng.randint(1, 2), rng.randint(1, 3) * r * r
        height, width = rng.randint(1, 5), rng.randint(1, 5)
        cases.append(dict(x=numbered(batch, channels, height, width), r=r))
    return cases
