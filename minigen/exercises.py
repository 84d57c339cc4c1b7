"""Exercises of chapters 1 to 5, checked automatically.

The reader writes a function; a checker runs it on deterministic cases (hand-picked corners
first, then seeded random ones) and compares every answer with what torch itself does: the
real output shape of ``F.conv2d`` and ``F.conv_transpose2d``, the values of ``F.max_pool2d``,
the gradient footprint of a stack of convolutions, the weights ``F.interpolate`` gives each
input pixel, the values of ``F.pixel_shuffle``, the mean squared error of ``F.mse_loss``, the KL
divergence of ``torch.distributions`` and the affine transform (with its gradient) of
``torch.distributions.transforms.AffineTransform``. So a checker never trusts the code it
teaches, and its source gives no formula away. Whatever the reader's code does (a wrong
answer, an exception), a checker does not raise: it returns a :class:`CheckResult` that shows
the first counterexample.

References: V. Dumoulin and F. Visin, "A guide to convolution arithmetic for deep learning",
arXiv:1603.07285 (2016); A. Araujo, W. Norris and J. Sim, "Computing receptive fields of
convolutional neural networks", Distill (2019); W. Shi et al., "Real-time single image and video
super-resolution using an efficient sub-pixel convolutional neural network", CVPR (2016);
D. P. Kingma and M. Welling, "Auto-Encoding Variational Bayes", ICLR (2014); J. Ho, A. Jain and
P. Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS (2020); J. Song, C. Meng and S. Ermon,
"Denoising Diffusion Implicit Models", ICLR (2021).
"""
from __future__ import annotations

import copy
import math
import numbers
import random
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Normal, kl_divergence
from torch.distributions.transforms import AffineTransform

Case = dict[str, Any]


@dataclass(repr=False)
class CheckResult:
    """A checker's verdict; it displays as one line, e.g. ``✅ conv_output_size: passed 500 cases``."""

    name: str
    passed: bool
    cases: int  # cases run, up to and including the one the verdict is about
    counterexample: Case | None = None
    expected: Any = None
    got: Any = None
    message: str = ""
    attempted: bool = True  # False while the reader's function still raises NotImplementedError

    def __repr__(self) -> str:
        icon = "✅" if self.passed else "❌" if self.attempted else "⏳"
        return f"{icon} {self.name}: {self.message}"


def check_conv_output_size(fn: Callable[[int, int, int, int, int], int]) -> CheckResult:
    """Check ``fn(i, k, s, p, d) -> int``, the output size of a convolution along one axis.

    i: input size, k: kernel size, s: stride, p: zero padding on each side, d: dilation.
    Answers are compared with the output height of a real ``F.conv2d``.
    """
    return _run("conv_output_size", fn, _conv_cases(), _torch_conv_output_size, _judge_size)


def check_transposed_output_size(fn: Callable[[int, int, int, int, int], int]) -> CheckResult:
    """Check ``fn(i, k, s, p, output_padding) -> int``, the output size of a transposed convolution.

    Answers are compared with the output height of a real ``F.conv_transpose2d``.
    """
    return _run(
        "transposed_output_size", fn, _transposed_cases(), _torch_transposed_output_size, _judge_size
    )


def check_max_pool2d(fn: Callable[[Tensor, int, int], Tensor]) -> CheckResult:
    """Check ``fn(x, k, s) -> Tensor``: k×k max pooling with stride s, no padding, of x (B, C, H, W).

    Answers are compared with ``F.max_pool2d``: first the shape, then every value.
    """
    return _run("max_pool2d", fn, _max_pool_cases(), _torch_max_pool2d, _judge_tensor)


def check_receptive_field(fn: Callable[[list[tuple[int, int]]], int]) -> CheckResult:
    """Check ``fn(layers) -> int``, the receptive-field size of one output of a stack of layers.

    ``layers`` lists (kernel, stride) pairs, input side first. Answers are compared with the
    span of input pixels that one output's gradient reaches through real ``F.conv1d`` layers.
    """
    return _run("receptive_field", fn, _receptive_field_cases(), _brute_force_receptive_field, _judge_size)


def check_bilinear_weights(fn: Callable[[int, int, bool], Tensor]) -> CheckResult:
    """Check ``fn(in_size, out_size, align_corners) -> Tensor``, the weights of 1-D linear resizing.

    Row ``o`` of the (out_size, in_size) answer holds the weight each input pixel gets in output
    pixel ``o``; a NumPy array is accepted too. Answers are compared with ``F.interpolate(mode="linear")``
    applied to one-hot inputs: input pixel ``j`` alone lights up column ``j``.
    """
    return _run("bilinear_weights", fn, _bilinear_cases(), _torch_linear_weights, _judge_weights)


def check_pixel_shuffle(fn: Callable[[Tensor, int], Tensor]) -> CheckResult:
    """Check ``fn(x, r) -> Tensor``: x (B, C·r², H, W) rearranged into (B, C, H·r, W·r).

    Answers are compared with ``F.pixel_shuffle``: first the shape, then every value.
    """
    return _run("pixel_shuffle", fn, _pixel_shuffle_cases(), _torch_pixel_shuffle, _judge_tensor)


def check_psnr(fn: Callable[[Tensor, Tensor], Tensor]) -> CheckResult:
    """Check ``fn(prediction, target) -> Tensor``: the PSNR of each image in dB, for intensities in [0, 1].

    prediction and target are (N, C, H, W); the answer is (N,), one value per image. Answers are
    compared with 10 log10(1 / MSE) where the MSE comes from ``F.mse_loss`` over each image.
    """
    return _run("psnr", fn, _psnr_cases(), _torch_psnr, _judge_close)


def check_gaussian_kl(fn: Callable[[Tensor, Tensor], Tensor]) -> CheckResult:
    """Check ``fn(mu, logvar) -> Tensor``: KL(N(mu, diag exp(logvar)) || N(0, I)) in nats, one value per row.

    mu and logvar are (B, L); the answer is (B,). Answers are compared with
    ``torch.distributions.kl_divergence`` between two ``Normal`` distributions, summed over the L axis.
    """
    return _run("gaussian_kl", fn, _kl_cases(), _torch_gaussian_kl, _judge_close)


def check_reparameterize(fn: Callable[[Tensor, Tensor, Tensor], Tensor]) -> CheckResult:
    """Check ``fn(mu, logvar, eps) -> z``: a sample of N(mu, diag exp(logvar)) made from the noise eps ~ N(0, I).

    The answer must equal ``AffineTransform(loc=mu, scale=sigma)(eps)`` and, what makes it a trick,
    gradients must flow through it: d(sum z)/d mu and d(sum z)/d logvar are compared with autograd
    through that transform.
    """
    return _run("reparameterize", _with_gradients(fn), _reparameterize_cases(), _torch_reparameterize,
                _judge_sample_and_gradients)


def check_q_sample(fn: Callable[[Tensor, Tensor, float], Tensor]) -> CheckResult:
    """Check ``fn(x0, noise, alpha_bar) -> x_t``: a sample of q(x_t | x_0) made from the standard normal ``noise``.

    alpha_bar is the signal level of step t, a float in (0, 1]. Answers are compared with
    ``AffineTransform(loc=sqrt(alpha_bar) x0, scale=sqrt(1 - alpha_bar))`` applied to the noise.
    """
    return _run("q_sample", fn, _q_sample_cases(), _torch_q_sample, _judge_close)


def check_ddim_step(fn: Callable[[Tensor, Tensor, float, float], Tensor]) -> CheckResult:
    """Check ``fn(x_t, eps, alpha_bar_t, alpha_bar_prev) -> x_prev``: one deterministic DDIM step (eta = 0).

    eps is the model's noise prediction at x_t; alpha_bar_prev = 1 means the step to the clean image.
    Answers are compared with the step written as x_prev = c_x x_t + c_eps eps, its coefficients
    worked out in the checker.
    """
    return _run("ddim_step", fn, _ddim_cases(), _linear_ddim_step, _judge_close)

def _with_gradients(fn: Callable[[Tensor, Tensor, Tensor], Tensor]) -> Callable[[Tensor, Tensor, Tensor], Any]:
    """Call the reader's fn on leaf tensors and return (z, dz/dmu, dz/dlogvar), or z alone if no gradient flows."""
    if not callable(fn):
        return fn  # _run reports it

    def with_gradients(mu: Tensor, logvar: Tensor, eps: Tensor) -> Any:
        mu, logvar = mu.clone().requires_grad_(), logvar.clone().requires_grad_()
        z = fn(mu, logvar, eps)
        if not isinstance(z, Tensor) or not z.requires_grad or z.shape != mu.shape:
            return z  # the judge explains what is wrong with it
        grad_mu, grad_logvar = torch.autograd.grad(z.sum(), (mu, logvar), allow_unused=True)
        return z.detach(), grad_mu, grad_logvar

    with_gradients.__name__ = getattr(fn, "__name__", "reparameterize")
    return with_gradients


# ---------------------------------------------------------------------------------------------
# The engine: run every case, keep the first counterexample.


@dataclass(frozen=True)
class _Mismatch:
    """Why one answer is wrong; ``value_is_right`` marks the right value in the wrong type."""

    text: str
    value_is_right: bool = False


def _run(
    name: str,
    fn: Callable[..., Any],
    cases: list[Case],
    reference: Callable[..., Any],
    judge: Callable[[Any, Any], _Mismatch | None],
) -> CheckResult:
    """Call ``fn`` on each case; a wrong value ends the check, a wrong type is reported only at the end."""
    if not callable(fn):
        raise TypeError(
            f"check_{name} expects your function itself, e.g. check_{name}(my_{name}); "
            f"got {fn!r} of type {type(fn).__name__} (pass the function without calling it)"
        )
    wrong_type: CheckResult | None = None
    for number, case in enumerate(cases, start=1):
        expected = reference(**case)
        try:
            got = fn(*copy.deepcopy(list(case.values())))  # a copy: the reader's code may modify its inputs
        except NotImplementedError:
            return CheckResult(
                name=name, passed=False, cases=number, attempted=False,
                message="not attempted yet: your function raised NotImplementedError",
            )
        except Exception as error:  # the reader's bug is reported, never raised
            return CheckResult(
                name=name, passed=False, cases=number, counterexample=case, expected=expected, got=error,
                message=f"{_describe(case)} → expected {_show(expected)}, "
                f"but your function raised {type(error).__name__}: {error}",
            )
        if got is None:
            mismatch = _Mismatch(f"expected {_show(expected)}, got None: does your function return it?")
        else:
            mismatch = judge(expected, got)
        if mismatch is None:
            continue
        failure = CheckResult(
            name=name, passed=False, cases=number, counterexample=case, expected=expected, got=got,
            message=f"{_describe(case)} → {mismatch.text}",
        )
        if not mismatch.value_is_right:
            return failure
        wrong_type = wrong_type or failure
    passed = CheckResult(name=name, passed=True, cases=len(cases), message=f"passed {len(cases)} cases")
    return wrong_type or passed


def _judge_size(expected: int, got: Any) -> _Mismatch | None:
    """A size must be the right value and an int (a float 2.0 is a type problem)."""
    if not _equal(got, expected):
        return _Mismatch(f"expected {expected}, got {got!r}")
    if isinstance(got, bool) or not isinstance(got, numbers.Integral):
        return _Mismatch(
            f"got {got!r} (a {type(got).__name__}): the right value, but a size counts positions, "
            "so return an int (// floors and keeps ints)",
            value_is_right=True,
        )
    return None


def _judge_tensor(expected: Tensor, got: Any) -> _Mismatch | None:
    """An output that copies input values (pooling, shuffling) must have the right shape, values, dtype."""
    if not isinstance(got, Tensor):
        return _Mismatch(f"expected a tensor of shape {tuple(expected.shape)}, got a {type(got).__name__}")
    if got.shape != expected.shape:
        return _Mismatch(f"shape mismatch: expected {tuple(expected.shape)}, got {tuple(got.shape)}")
    got = got.detach().cpu()
    agrees = got.to(expected.dtype) == expected  # the values are copies of input values: equality is exact
    if not agrees.all():
        where = tuple(agrees.logical_not().nonzero()[0].tolist())  # the first wrong output, (b, c, h, w)
        return _Mismatch(
            f"values differ: out[{', '.join(map(str, where))}] should be "
            f"{expected[where].item():.4g}, got {got[where].item():.4g}"
        )
    if got.dtype != expected.dtype:
        return _Mismatch(
            f"right values but dtype {got.dtype}; keep the input dtype {expected.dtype}",
            value_is_right=True,
        )
    return None


def _judge_weights(expected: Tensor, got: Any) -> _Mismatch | None:
    """A weight matrix must be (out_size, in_size), then equal torch's weights to float tolerance."""
    if not isinstance(got, (Tensor, np.ndarray)):
        return _Mismatch(f"expected a tensor of shape {tuple(expected.shape)}, got a {type(got).__name__}")
    got = torch.as_tensor(got).detach().cpu()
    if got.shape != expected.shape:
        hint = " (rows are output pixels, columns input pixels)" if got.shape == expected.T.shape else ""
        return _Mismatch(f"shape mismatch: expected {tuple(expected.shape)}, got {tuple(got.shape)}{hint}")
    agrees = torch.isclose(got.to(expected.dtype), expected, rtol=0.0, atol=1e-5)
    if not agrees.all():
        row, col = agrees.logical_not().nonzero()[0].tolist()  # the first wrong weight
        return _Mismatch(
            f"values differ: W[{row}, {col}] (output pixel {row}, input pixel {col}) should be "
            f"{expected[row, col].item():.4g}, got {got[row, col].item():.4g}"
        )
    return None


def _judge_close(expected: Tensor, got: Any) -> _Mismatch | None:
    """A computed value (not a copy) must have the right shape and agree to float64 rounding."""
    if not isinstance(got, Tensor):
        return _Mismatch(f"expected a tensor of shape {tuple(expected.shape)}, got a {type(got).__name__}")
    if got.shape != expected.shape:
        hint = " (one value per image or row: reduce over every other axis)" if got.dim() != expected.dim() else ""
        return _Mismatch(f"shape mismatch: expected {tuple(expected.shape)}, got {tuple(got.shape)}{hint}")
    got = got.detach().cpu().to(expected.dtype)
    agrees = torch.isclose(got, expected, rtol=1e-6, atol=1e-8, equal_nan=True)
    if not agrees.all():
        where = tuple(agrees.logical_not().nonzero()[0].tolist())
        index = ", ".join(map(str, where))
        return _Mismatch(f"values differ: out[{index}] should be {expected[where].item():.6g}, "
                         f"got {got[where].item():.6g}")
    return None


def _judge_sample_and_gradients(expected: tuple[Tensor, Tensor, Tensor], got: Any) -> _Mismatch | None:
    """z must equal the reference sample; then its gradients w.r.t. mu and logvar must equal the reference ones."""
    z_expected, grad_mu_expected, grad_logvar_expected = expected
    if not isinstance(got, tuple):  # the reader's z came back alone: wrong type, shape, or no gradient
        if isinstance(got, Tensor) and got.shape == z_expected.shape and not got.requires_grad:
            return _Mismatch("z carries no gradient: build it from mu and logvar with differentiable torch "
                             "operations (no .detach(), torch.no_grad() or torch.normal(mu, sigma))")
        return _judge_close(z_expected, got)
    z, grad_mu, grad_logvar = got
    mismatch = _judge_close(z_expected, z)
    if mismatch is not None:
        return mismatch
    for name, expected_grad, got_grad in (("mu", grad_mu_expected, grad_mu),
                                          ("logvar", grad_logvar_expected, grad_logvar)):
        if got_grad is None:
            return _Mismatch(f"z does not depend on {name} in the autograd graph")
        mismatch = _judge_close(expected_grad, got_grad)
        if mismatch is not None:
            return _Mismatch(f"the right z, but d(sum z)/d {name} is wrong: {mismatch.text}")
    return None


def _equal(got: Any, expected: Any) -> bool:
    """``got == expected`` for any object the reader returns (a comparison that fails means unequal)."""
    try:
        return bool(got == expected)
    except Exception:
        return False


def _describe(case: Case) -> str:
    return ", ".join(f"{name}={_show(value)}" for name, value in case.items())


def _show(value: Any) -> str:
    if isinstance(value, Tensor):
        sign = ", all negative" if value.numel() and bool((value < 0).all()) else ""
        return f"<tensor of shape {tuple(value.shape)}{sign}>"
    return repr(value)


# ---------------------------------------------------------------------------------------------
# References: what torch does.


def _torch_conv_output_size(i: int, k: int, s: int, p: int, d: int) -> int:
    image, kernel = torch.zeros(1, 1, i, i), torch.zeros(1, 1, k, k)  # (B, C, H, W), (C_out, C_in, k, k)
    return F.conv2d(image, kernel, stride=s, padding=p, dilation=d).shape[-2]


def _torch_transposed_output_size(i: int, k: int, s: int, p: int, output_padding: int) -> int:
    image, kernel = torch.zeros(1, 1, i, i), torch.zeros(1, 1, k, k)  # (B, C, H, W), (C_in, C_out, k, k)
    out = F.conv_transpose2d(image, kernel, stride=s, padding=p, output_padding=output_padding)
    return out.shape[-2]


def _torch_max_pool2d(x: Tensor, k: int, s: int) -> Tensor:
    return F.max_pool2d(x, k, s)  # (B, C, H_out, W_out)


def _torch_linear_weights(in_size: int, out_size: int, align_corners: bool) -> Tensor:
    one_hots = torch.eye(in_size, dtype=torch.float64).unsqueeze(1)  # (in_size, 1, in_size): one input pixel lit each
    resized = F.interpolate(one_hots, size=out_size, mode="linear", align_corners=align_corners)  # (in, 1, out)
    return resized[:, 0, :].T  # (out_size, in_size): W[o, j] = output o of the image where only pixel j is 1


def _torch_pixel_shuffle(x: Tensor, r: int) -> Tensor:
    return F.pixel_shuffle(x, r)  # (B, C, H·r, W·r)


def _torch_psnr(prediction: Tensor, target: Tensor) -> Tensor:
    mse = F.mse_loss(prediction, target, reduction="none").flatten(1).mean(dim=1)  # (N,)
    return 10 * torch.log10(1.0 / mse)


def _torch_gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    posterior = Normal(mu, torch.exp(0.5 * logvar))
    prior = Normal(torch.zeros_like(mu), torch.ones_like(mu))
    return kl_divergence(posterior, prior).sum(dim=-1)  # (B,)


def _torch_reparameterize(mu: Tensor, logvar: Tensor, eps: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    mu, logvar = mu.clone().requires_grad_(), logvar.clone().requires_grad_()
    z = AffineTransform(loc=mu, scale=torch.exp(0.5 * logvar))(eps)
    grad_mu, grad_logvar = torch.autograd.grad(z.sum(), (mu, logvar))
    return z.detach(), grad_mu, grad_logvar

def _torch_q_sample(x0: Tensor, noise: Tensor, alpha_bar: float) -> Tensor:
    return AffineTransform(loc=math.sqrt(alpha_bar) * x0, scale=math.sqrt(1 - alpha_bar))(noise)


def _linear_ddim_step(x_t: Tensor, eps: Tensor, alpha_bar_t: float, alpha_bar_prev: float) -> Tensor:
    # x_prev = sqrt(ab') x0_hat + sqrt(1 - ab') eps with x0_hat = (x_t - sqrt(1 - ab) eps) / sqrt(ab), expanded
    coefficient_x = math.sqrt(alpha_bar_prev / alpha_bar_t)
    coefficient_eps = math.sqrt(1 - alpha_bar_prev) - math.sqrt(alpha_bar_prev * (1 - alpha_bar_t) / alpha_bar_t)
    return coefficient_x * x_t + coefficient_eps * eps

def _brute_force_receptive_field(layers: list[tuple[int, int]]) -> int:
    """The span of input pixels that output 0 depends on, read off its gradient through real convolutions.

    All-ones kernels leave no cancellation, so every pixel on a path to the output gets a non-zero
    gradient. A stride larger than a kernel leaves holes inside the field: the span counts them.
    """
    # Σ kernel · Π stride input pixels are more than enough for one output
    length = max(1, sum(k for k, _ in layers) * math.prod(s for _, s in layers))
    x = torch.ones(1, 1, length, dtype=torch.float64, requires_grad=True)  # (B, C, L)
    y = x
    for kernel, stride in layers:
        y = F.conv1d(y, torch.ones(1, 1, kernel, dtype=torch.float64), stride=stride)  # (B, C, L_out)
    y[0, 0, 0].backward()
    reached = x.grad[0, 0].nonzero().flatten()  # input positions output 0 depends on
    return int(reached[-1] - reached[0]) + 1


# ---------------------------------------------------------------------------------------------
# Cases: the error-prone corners first, then seeded random ones (the same on every run).


def _conv_cases(count: int = 500, seed: int = 0) -> list[Case]:
    corners = [
        dict(i=5, k=3, s=1, p=0, d=1),  # the plain case
        dict(i=6, k=3, s=2, p=0, d=1),  # the kernel fits 1.5 strides: floor
        dict(i=5, k=7, s=1, p=1, d=1),  # kernel exactly as large as the padded input
        dict(i=5, k=3, s=4, p=0, d=1),  # stride longer than the range the kernel can slide
        dict(i=4, k=2, s=9, p=1, d=1),
        dict(i=7, k=3, s=1, p=0, d=2),  # dilation spreads the kernel over 5 pixels
        dict(i=10, k=3, s=2, p=2, d=3),
        dict(i=5, k=3, s=1, p=1, d=1),  # half ('same') padding
        dict(i=5, k=3, s=1, p=2, d=1),  # full padding
        dict(i=4, k=1, s=1, p=0, d=1),  # 1×1 kernel
        dict(i=1, k=1, s=3, p=0, d=5),  # a one-pixel kernel: dilation has nothing to spread
        dict(i=3, k=5, s=2, p=3, d=1),  # padding more than half the kernel
    ]
    rng = random.Random(seed)
    cases = list(corners)
    while len(cases) < count:
        k, s, p, d = rng.randint(1, 7), rng.randint(1, 5), rng.randint(0, 4), rng.randint(1, 4)
        smallest = max(1, d * (k - 1) + 1 - 2 * p)  # the dilated kernel must fit in the padded input
        cases.append(dict(i=rng.randint(smallest, smallest + 40), k=k, s=s, p=p, d=d))
    return cases


def _transposed_cases(count: int = 300, seed: int = 0) -> list[Case]:
    corners = [
        dict(i=2, k=3, s=1, p=0, output_padding=0),  # stride 1, no padding
        dict(i=3, k=3, s=2, p=0, output_padding=0),  # stride 2 spreads the input apart
        dict(i=4, k=4, s=2, p=1, output_padding=0),  # the DCGAN layer that doubles the size
        dict(i=3, k=3, s=2, p=1, output_padding=1),  # output_padding adds a row on one side
        dict(i=1, k=5, s=3, p=0, output_padding=2),  # a single input pixel
        dict(i=3, k=3, s=1, p=2, output_padding=0),  # padding crops the output down to 1
        dict(i=4, k=3, s=2, p=3, output_padding=1),
        dict(i=5, k=1, s=4, p=0, output_padding=3),  # 1×1 kernel, stride longer than the kernel
    ]
    rng = random.Random(seed)
    cases = list(corners)
    while len(cases) < count:
        k, s = rng.randint(1, 7), rng.randint(1, 4)
        p = rng.randint(0, (k - 1) // 2)  # cropping less than half a kernel leaves an output
        output_padding = rng.randint(0, s - 1)  # torch allows output_padding < stride
        cases.append(dict(i=rng.randint(1, 16), k=k, s=s, p=p, output_padding=output_padding))
    return cases


def _max_pool_cases(count: int = 100, seed: int = 0) -> list[Case]:
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> Tensor:
        return torch.randn(shape, generator=generator)

    corners = [
        dict(x=torch.arange(16.0).reshape(1, 1, 4, 4), k=2, s=2),  # the plain case
        dict(x=-1 - torch.rand((1, 1, 4, 4), generator=generator), k=2, s=2),  # all negative
        dict(x=randn(1, 1, 4, 6), k=2, s=2),  # not square
        dict(x=randn(1, 1, 5, 7), k=2, s=2),  # the last row and column fit no window
        dict(x=randn(1, 1, 5, 5), k=3, s=1),  # overlapping windows
        dict(x=randn(1, 1, 7, 8), k=2, s=3),  # gaps between windows
        dict(x=randn(2, 3, 6, 5), k=3, s=2),  # images and channels are pooled separately
        dict(x=randn(1, 2, 4, 4), k=4, s=4),  # one window covers the image: a global max
        dict(x=randn(1, 1, 3, 3), k=3, s=5),  # stride longer than the image
    ]
    rng = random.Random(seed)
    cases = list(corners)
    while len(cases) < count:
        k, s = rng.randint(1, 4), rng.randint(1, 4)
        shape = (rng.randint(1, 2), rng.randint(1, 3), rng.randint(k, 12), rng.randint(k, 12))
        offset = rng.choice([0.0, -3.0])  # half the images are (almost) all negative
        cases.append(dict(x=randn(*shape) + offset, k=k, s=s))
    return cases


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
        cases.append(dict(layers=[(rng.randint(1, 7), rng.randint(1, 3)) for _ in range(depth)]))
    return cases


def _bilinear_cases(count: int = 200, seed: int = 0) -> list[Case]:
    corners = [
        dict(in_size=4, out_size=8, align_corners=False),  # ×2: half-pixel centres, clamped at the edges
        dict(in_size=4, out_size=8, align_corners=True),  # ×2 with the corner pixels pinned
        dict(in_size=3, out_size=7, align_corners=False),  # a ratio that is not an integer
        dict(in_size=3, out_size=7, align_corners=True),
        dict(in_size=8, out_size=3, align_corners=False),  # shrinking (no antialiasing: 2 taps per output)
        dict(in_size=8, out_size=3, align_corners=True),
        dict(in_size=5, out_size=5, align_corners=False),  # the same size: the identity
        dict(in_size=1, out_size=4, align_corners=False),  # one input pixel: copied everywhere
        dict(in_size=1, out_size=4, align_corners=True),
        dict(in_size=6, out_size=1, align_corners=False),  # one output pixel: the centre of the input
        dict(in_size=6, out_size=1, align_corners=True),  # one output pixel, corners pinned: input pixel 0
    ]
    rng = random.Random(seed)
    cases = list(corners)
    while len(cases) < count:
        cases.append(dict(in_size=rng.randint(1, 16), out_size=rng.randint(1, 32), align_corners=rng.random() < 0.5))
    return cases


def _pixel_shuffle_cases(count: int = 60, seed: int = 0) -> list[Case]:
    generator = torch.Generator().manual_seed(seed)

    def numbered(*shape: int) -> Tensor:  # distinct values, so any misplaced value is seen
        return torch.randperm(math.prod(shape), generator=generator).float().reshape(shape)

    corners = [
        dict(x=torch.arange(16.0).reshape(1, 4, 2, 2), r=2),  # one output channel: the plain case
        dict(x=numbered(1, 12, 2, 2), r=2),  # three output channels: which input channels go together
        dict(x=numbered(1, 9, 3, 3), r=3),  # r = 3
        dict(x=numbered(1, 8, 2, 3), r=2),  # not square
        dict(x=numbered(2, 8, 3, 2), r=2),  # images of a batch are shuffled separately
        dict(x=numbered(1, 3, 4, 4), r=1),  # r = 1 changes nothing
    ]
    rng = random.Random(seed)
    cases = list(corners)
    while len(cases) < count:
        r = rng.randint(1, 4)
        shape = (rng.randint(1, 2), rng.randint(1, 3) * r * r, rng.randint(1, 5), rng.randint(1, 5))
        cases.append(dict(x=numbered(*shape), r=r))
    return cases


def _psnr_cases(count: int = 40, seed: int = 0) -> list[Case]:
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> Tensor:
        return torch.rand(shape, generator=generator, dtype=torch.float64)

    target = rand(2, 3, 4, 4)
    corners = [
        dict(prediction=torch.full((1, 1, 2, 2), 0.5, dtype=torch.float64),
             target=torch.zeros(1, 1, 2, 2, dtype=torch.float64)),  # MSE 0.25: 6.02 dB
        dict(prediction=target + 0.1, target=target),  # the same error everywhere: 20 dB for every image
        dict(prediction=rand(3, 1, 5, 7), target=rand(3, 1, 5, 7)),  # one channel, not square
        dict(prediction=torch.cat([target[:1] + 0.01, target[1:] + 0.3]), target=target),  # one PSNR per image
    ]
    cases = list(corners)
    rng = random.Random(seed)
    while len(cases) < count:
        shape = (rng.randint(1, 4), rng.randint(1, 3), rng.randint(1, 8), rng.randint(1, 8))
        cases.append(dict(prediction=rand(*shape), target=rand(*shape)))
    return cases


def _kl_cases(count: int = 40, seed: int = 0) -> list[Case]:
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> Tensor:
        return torch.randn(shape, generator=generator, dtype=torch.float64)

    zeros = torch.zeros(2, 3, dtype=torch.float64)
    corners = [
        dict(mu=zeros, logvar=zeros),  # the posterior is the prior: KL = 0
        dict(mu=zeros + 1.0, logvar=zeros),  # only the means differ: 1/2 per dim
        dict(mu=zeros, logvar=zeros - 2.0),  # only the variances differ: logvar, not log sigma
        dict(mu=randn(4, 1), logvar=randn(4, 1)),  # one latent dim
        dict(mu=randn(1, 16), logvar=randn(1, 16)),  # sum over L, one row
    ]
    cases = list(corners)
    rng = random.Random(seed)
    while len(cases) < count:
        shape = (rng.randint(1, 5), rng.randint(1, 20))
        cases.append(dict(mu=2 * randn(*shape), logvar=randn(*shape)))
    return cases


def _reparameterize_cases(count: int = 30, seed: int = 0) -> list[Case]:
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> Tensor:
        return torch.randn(shape, generator=generator, dtype=torch.float64)

    zeros = torch.zeros(2, 3, dtype=torch.float64)
    corners = [
        dict(mu=zeros, logvar=zeros, eps=randn(2, 3)),  # the standard normal: z = eps
        dict(mu=zeros + 3.0, logvar=zeros, eps=randn(2, 3)),  # a shift
        dict(mu=zeros, logvar=zeros + math.log(4.0), eps=randn(2, 3)),  # variance 4: sigma = 2, not 4
    ]
    cases = list(corners)
    rng = random.Random(seed)
    while len(cases) < count:
        shape = (rng.randint(1, 4), rng.randint(1, 10))
        cases.append(dict(mu=randn(*shape), logvar=randn(*shape), eps=randn(*shape)))
    return cases


def _q_sample_cases(count: int = 30, seed: int = 0) -> list[Case]:
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> Tensor:
        return torch.randn(shape, generator=generator, dtype=torch.float64)

    corners = [
        dict(x0=randn(2, 3, 4, 4), noise=randn(2, 3, 4, 4), alpha_bar=1.0),     # no noise yet: x_t = x0
        dict(x0=randn(2, 3, 4, 4), noise=randn(2, 3, 4, 4), alpha_bar=0.25),    # sqrt(abar) = 0.5, not 0.25
        dict(x0=randn(1, 1, 2, 2), noise=randn(1, 1, 2, 2), alpha_bar=1e-4),    # almost pure noise
    ]
    cases = list(corners)
    rng = random.Random(seed)
    while len(cases) < count:
        shape = (rng.randint(1, 3), rng.randint(1, 3), rng.randint(1, 6), rng.randint(1, 6))
        cases.append(dict(x0=randn(*shape), noise=randn(*shape), alpha_bar=rng.uniform(0.001, 0.999)))
    return cases


def _ddim_cases(count: int = 30, seed: int = 0) -> list[Case]:
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> Tensor:
        return torch.randn(shape, generator=generator, dtype=torch.float64)

    corners = [
        dict(x_t=randn(2, 3, 4, 4), eps=randn(2, 3, 4, 4), alpha_bar_t=0.5, alpha_bar_prev=0.6),
        dict(x_t=randn(2, 3, 4, 4), eps=randn(2, 3, 4, 4), alpha_bar_t=0.9, alpha_bar_prev=1.0),   # to the clean image
        dict(x_t=randn(1, 1, 3, 3), eps=randn(1, 1, 3, 3), alpha_bar_t=0.01, alpha_bar_prev=0.5),  # a long jump
    ]
    cases = list(corners)
    rng = random.Random(seed)
    while len(cases) < count:
        shape = (rng.randint(1, 3), rng.randint(1, 3), rng.randint(1, 6), rng.randint(1, 6))
        alpha_bar_t = rng.uniform(0.001, 0.99)
        cases.append(dict(x_t=randn(*shape), eps=randn(*shape), alpha_bar_t=alpha_bar_t,
                          alpha_bar_prev=rng.uniform(alpha_bar_t, 1.0)))
    return cases
