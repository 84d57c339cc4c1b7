"""Chapter 1 exercises: convolution arithmetic, max pooling, receptive fields.

The answers are compared with what torch does: the output height of a real
``F.conv2d`` and ``F.conv_transpose2d``, every value of ``F.max_pool2d``, and the
span of input pixels that one output's gradient reaches through a stack of real
``F.conv1d`` layers.

References: V. Dumoulin and F. Visin, "A guide to convolution arithmetic for deep
learning", arXiv:1603.07285 (2016); A. Araujo, W. Norris and J. Sim, "Computing
receptive fields of convolutional neural networks", Distill (2019).
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
    judge_size,
    judge_tensor,
    run,
)

# ---------------------------------------------------------------------------------
# The output size of a convolution


def check_conv_output_size(
    fn: Callable[[int, int, int, int, int], int],
) -> CheckResult:
    """Check ``fn(i, k, s, p, d) -> int``, the output size of a convolution along
    one axis.

    i: input size, k: kernel size, s: stride, p: zero padding on each side,
    d: dilation. Answers are compared with the output height of a real ``F.conv2d``.
    """
    return run(
        "conv_output_size",
        fn,
        _conv_output_size_cases(),
        _torch_conv_output_size,
        judge_size,
    )


def _torch_conv_output_size(i: int, k: int, s: int, p: int, d: int) -> int:
    image = torch.zeros(1, 1, i, i)  # (B, C, H, W)
    kernel = torch.zeros(1, 1, k, k)  # (C_out, C_in, k, k)
    return F.conv2d(image, kernel, stride=s, padding=p, dilation=d).shape[-2]


def _conv_output_size_cases(count: int = 500, seed: int = 0) -> list[Case]:
    corners = [
        dict(i=5, k=3, s=1, p=0, d=1),  # the plain case
        dict(i=6, k=3, s=2, p=0, d=1),  # the kernel fits 1.5 strides: floor
        # the kernel exactly as large as the padded input
        dict(i=5, k=7, s=1, p=1, d=1),
        dict(i=5, k=3, s=4, p=0, d=1),  # stride longer than the kernel can slide
        dict(i=4, k=2, s=9, p=1, d=1),
        dict(i=7, k=3, s=1, p=0, d=2),  # dilation spreads the kernel over 5 pixels
        dict(i=10, k=3, s=2, p=2, d=3),
        dict(i=5, k=3, s=1, p=1, d=1),  # half ('same') padding
        dict(i=5, k=3, s=1, p=2, d=1),  # full padding
        dict(i=4, k=1, s=1, p=0, d=1),  # 1×1 kernel
        dict(i=1, k=1, s=3, p=0, d=5),  # a one-pixel kernel: nothing to dilate
        dict(i=3, k=5, s=2, p=3, d=1),  # padding more than half the kernel
    ]
    rng = random.Random(seed)
    cases = list(corners)
    while len(cases) < count:
        k, s = rng.randint(1, 7), rng.randint(1, 5)
        p, d = rng.randint(0, 4), rng.randint(1, 4)
        # the dilated kernel must fit in the padded input
        smallest = max(1, d * (k - 1) + 1 - 2 * p)
        i = rng.randint(smallest, smallest + 40)
        cases.append(dict(i=i, k=k, s=s, p=p, d=d))
    return cases


# ---------------------------------------------------------------------------------
# The output size of a transposed convolution


def check_transposed_output_size(
    fn: Callable[[int, int, int, int, int], int],
) -> CheckResult:
    """Check ``fn(i, k, s, p, output_padding) -> int``, the output size of a
    transposed convolution along one axis.

    Answers are compared with the output height of a real ``F.conv_transpose2d``.
    """
    return run(
        "transposed_output_size",
        fn,
        _transposed_output_size_cases(),
        _torch_transposed_output_size,
        judge_size,
    )


def _torch_transposed_output_size(
    i: int, k: int, s: int, p: int, output_padding: int
) -> int:
    image = torch.zeros(1, 1, i, i)  # (B, C, H, W)
    kernel = torch.zeros(1, 1, k, k)  # (C_in, C_out, k, k)
    out = F.conv_transpose2d(
        image, kernel, stride=s, padding=p, output_padding=output_padding
    )
    return out.shape[-2]


def _transposed_output_size_cases(count: int = 300, seed: int = 0) -> list[Case]:
    corners = [
        # stride 1, no padding
        dict(i=2, k=3, s=1, p=0, output_padding=0),
        # stride 2 spreads the input apart
        dict(i=3, k=3, s=2, p=0, output_padding=0),
        # the DCGAN layer that doubles the size
        dict(i=4, k=4, s=2, p=1, output_padding=0),
        # output_padding adds a row on one side
        dict(i=3, k=3, s=2, p=1, output_padding=1),
        # a single input pixel
        dict(i=1, k=5, s=3, p=0, output_padding=2),
        # padding crops the output down to 1
        dict(i=3, k=3, s=1, p=2, output_padding=0),
        dict(i=4, k=3, s=2, p=3, output_padding=1),
        # 1×1 kernel, stride longer than the kernel
        dict(i=5, k=1, s=4, p=0, output_padding=3),
    ]
    rng = random.Random(seed)
    cases = list(corners)
    while len(cases) < count:
        k, s = rng.randint(1, 7), rng.randint(1, 4)
        # cropping less than half a kernel leaves an output
        p = rng.randint(0, (k - 1) // 2)
        output_padding = rng.randint(0, s - 1)  # torch needs output_padding < s
        i = rng.randint(1, 16)
        cases.append(dict(i=i, k=k, s=s, p=p, output_padding=output_padding))
    return cases


# ---------------------------------------------------------------------------------
# Max pooling


def check_max_pool2d(fn: Callable[[Tensor, int, int], Tensor]) -> CheckResult:
    """Check ``fn(x, k, s) -> Tensor``: k×k max pooling with stride s, no padding,
    of x (B, C, H, W).

    Answers are compared with ``F.max_pool2d``: first the shape, then every value.
    """
    return run(
        "max_pool2d", fn, _max_pool2d_cases(), _torch_max_pool2d, judge_tensor
    )


def _torch_max_pool2d(x: Tensor, k: int, s: int) -> Tensor:
    return F.max_pool2d(x, k, s)  # (B, C, H_out, W_out)


def _max_pool2d_cases(count: int = 100, seed: int = 0) -> list[Case]:
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> Tensor:
        return torch.randn(shape, generator=generator)

    negative = -1 - torch.rand((1, 1, 4, 4), generator=generator)
    corners = [
        dict(x=torch.arange(16.0).reshape(1, 1, 4, 4), k=2, s=2),  # the plain case
        dict(x=negative, k=2, s=2),  # all negative
        dict(x=randn(1, 1, 4, 6), k=2, s=2),  # not square
        # the last row and column fit no window
        dict(x=randn(1, 1, 5, 7), k=2, s=2),
        dict(x=randn(1, 1, 5, 5), k=3, s=1),  # overlapping windows
        dict(x=randn(1, 1, 7, 8), k=2, s=3),  # gaps between windows
        # images and channels are pooled separately
        dict(x=randn(2, 3, 6, 5), k=3, s=2),
        # one window covers the image: a global max
        dict(x=randn(1, 2, 4, 4), k=4, s=4),
        dict(x=randn(1, 1, 3, 3), k=3, s=5),  # stride longer than the image
    ]
    rng = random.Random(seed)
    cases = list(corners)
    while len(cases) < count:
        k, s = rng.randint(1, 4), rng.randint(1, 4)
        batch, channels = rng.randint(1, 2), rng.randint(1, 3)
        height, width = rng.randint(k, 12), rng.randint(k, 12)
        # half the images are (almost) all negative
        offset = rng.choice([0.0, -3.0])
        x = randn(batch, channels, height, width) + offset
        cases.append(dict(x=x, k=k, s=s))
    return cases


# ---------------------------------------------------------------------------------
# The receptive field of a stack of layers


def check_receptive_field(
    fn: Callable[[list[tuple[int, int]]], int],
) -> CheckResult:
    """Check ``fn(layers) -> int``, the receptive-field size of one output of a
    stack of layers.

    ``layers`` lists (kernel, stride) pairs, input side first. Answers are compared
    with the span of input pixels that one output's gradient reaches through real
    ``F.conv1d`` layers.
    """
    return run(
        "receptive_field",
        fn,
        _receptive_field_cases(),
        _brute_force_receptive_field,
        judge_size,
    )


def _brute_force_receptive_field(layers: list[tuple[int, int]]) -> int:
    """The span of input pixels that output 0 depends on, read off its gradient
    through real convolutions.

    All-ones kernels leave no cancellation, so every pixel on a path to the output
    gets a non-zero gradient. A stride larger than a kernel leaves holes inside the
    field: the span counts them.
    """
    # Σ kernel · Π stride input pixels are more than enough for one output
    length = max(1, sum(k for k, _ in layers) * math.prod(s for _, s in layers))
    # (B, C, L)
    x = torch.ones(1, 1, length, dtype=torch.float64, requires_grad=True)
    y = x
    for kernel, stride in layers:
        weight = torch.ones(1, 1, kernel, dtype=torch.float64)
        y = F.conv1d(y, weight, stride=stride)  # (B, C, L_out)
    y[0, 0, 0].backward()
    # the input positions that output 0 depends on
    reached = x.grad[0, 0].nonzero().flatten()
    return int(reached[-1] - reached[0]) + 1


def _receptive_field_cases(count: int = 200, seed: int = 0) -> list[Case]:
    corners = [
        [(3, 1)],  # one layer sees its kernel
        [(3, 1), (3, 1)],  # two stacked 3×3 layers
        [(2, 2), (2, 2)],  # windows that tile without overlap
        [(3, 2), (3, 2)],  # the second layer steps 2 input pixels at a time
        [(7, 2), (3, 2), (3, 1)],  # a ResNet-like stem: conv, pool, conv
        [(3, 1), (1, 4)],  # the last stride widens nothing
        [(1, 2), (2, 1)],  # stride larger than kernel: a field with holes
        [(5, 1)] * 4,
        [(2, 2)] * 5,
    ]
    rng = random.Random(seed)
    cases = [dict(layers=layers) for layers in corners]
    while len(cases) < count:
        depth = rng.randint(1, 6)
        layers = [(rng.randint(1, 7), rng.randint(1, 3)) for _ in range(depth)]
        cases.append(dict(layers=layers))
    return cases
