"""The engine behind every exercise: run the reader's function, judge each answer.

An exercise is three pieces, kept together in its chapter's module: the checker
(``check_*``, what the reader calls), the reference (what torch itself computes) and
the cases (the error-prone corners first, then seeded random ones). The checker
hands them to :func:`run` with one of the judges below, which compares one answer
with the reference and says what is wrong with it. :func:`run` keeps the first
counterexample and never raises on the reader's behalf: a wrong value, a wrong type
or an exception in the reader's code all end as a :class:`CheckResult`.
"""

from __future__ import annotations

import copy
import numbers
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from minigen.core.text import BOOK_COLUMN
from minigen.core.validators import (
    check_instance,
    check_int,
    check_optional,
    check_tensor,
)

# one call's arguments, by name, in the order of the signature
Case = dict[str, Any]


@dataclass(repr=False)
class CheckResult:
    """A checker's verdict; it displays as one line, e.g.
    ``✅ conv_output_size: passed 500 cases``."""

    name: str
    passed: bool
    cases: int  # cases run, up to and including the one the verdict is about
    counterexample: Case | None = None
    expected: Any = None
    got: Any = None
    message: str = ""
    # False while the reader's function still raises NotImplementedError
    attempted: bool = True

    def __repr__(self) -> str:
        icon = "✅" if self.passed else "❌" if self.attempted else "⏳"
        lines = f"{icon} {self.name}: {self.message}".splitlines()
        return "\n".join(  # long lines wrapped to the book's column
            textwrap.fill(line, BOOK_COLUMN, subsequent_indent="    ")
            if len(line) > BOOK_COLUMN
            else line
            for line in lines
        )


@dataclass(frozen=True)
class Mismatch:
    """Why one answer is wrong; ``value_is_right`` marks the right value in the
    wrong type (a size as a float, a tensor in another dtype)."""

    text: str
    value_is_right: bool = False


Judge = Callable[[Any, Any], Mismatch | None]  # (expected, got) -> what is wrong


def run(
    name: str,
    fn: Callable[..., Any],
    cases: list[Case],
    reference: Callable[..., Any],
    judge: Judge,
    *,
    wrap: Callable[[Callable[..., Any]], Callable[..., Any]] | None = None,
) -> CheckResult:
    """Call ``fn`` (through ``wrap`` if given) on each case and judge its answer.

    A wrong value ends the check; the right value in a wrong type is reported only
    at the end, so that a wrong value in a later case is the verdict. Raises
    TypeError only when ``fn`` is not a function (the reader passed its result).
    """
    check_instance(
        f"the argument of check_{name}",
        fn,
        Callable,
        f"your function itself, e.g. check_{name}(my_{name}) (pass it without "
        "calling it)",
    )
    _check_exercise(name, cases, reference, judge, wrap)
    call = fn if wrap is None else wrap(fn)
    wrong_type: CheckResult | None = None
    for number, case in enumerate(cases, start=1):
        expected = reference(**case)
        try:
            # a copy: the reader's code may modify its inputs
            got = call(*copy.deepcopy(list(case.values())))
        except NotImplementedError:
            return _not_attempted(name, number)
        except Exception as error:  # the reader's bug is reported, never raised
            text = (
                f"expected {_show(expected)}, but your function raised "
                f"{type(error).__name__}: {error}"
            )
            return _failure(name, number, case, expected, error, text)
        mismatch = (
            _returned_nothing(expected) if got is None else judge(expected, got)
        )
        if mismatch is None:
            continue
        failure = _failure(name, number, case, expected, got, mismatch.text)
        if not mismatch.value_is_right:
            return failure
        wrong_type = wrong_type or failure
    return wrong_type or CheckResult(
        name=name,
        passed=True,
        cases=len(cases),
        message=f"passed {len(cases)} cases",
    )


def _not_attempted(name: str, number: int) -> CheckResult:
    message = "not attempted yet: your function raised NotImplementedError"
    return CheckResult(
        name, passed=False, cases=number, attempted=False, message=message
    )


def _failure(
    name: str, number: int, case: Case, expected: Any, got: Any, text: str
) -> CheckResult:
    return CheckResult(
        name=name,
        passed=False,
        cases=number,
        counterexample=case,
        expected=expected,
        got=got,
        message=f"{_describe(case)} → {text}",
    )


def _returned_nothing(expected: Any) -> Mismatch:
    return Mismatch(
        f"expected {_show(expected)}, got None: does your function return it?"
    )


# ---------------------------------------------------------------------------------
# Judges: (expected, got) -> None when the answer is right, else a Mismatch.


def judge_size(expected: int, got: Any) -> Mismatch | None:
    """A size must be the right value and an int (a float 2.0 is a type problem)."""
    check_int("expected", expected, minimum=0, maximum=None)
    if not _equal(got, expected):
        return Mismatch(f"expected {expected}, got {got!r}")
    if isinstance(got, bool) or not isinstance(got, numbers.Integral):
        return Mismatch(
            f"got {got!r} (a {type(got).__name__}): the right value, but a size "
            "counts positions, so return an int (// floors and keeps ints)",
            value_is_right=True,
        )
    return None


def judge_tensor(expected: Tensor, got: Any) -> Mismatch | None:
    """An output that copies input values (pooling, shuffling) must have the right
    shape, then exactly the right values, then the input's dtype."""
    check_tensor("expected", expected)
    shape_problem = _shape_mismatch(expected, got)
    if shape_problem is not None:
        return shape_problem
    got = got.detach().cpu()
    # the values are copies of input values: equality is exact
    agrees = got.to(expected.dtype) == expected
    if not agrees.all():
        return _value_mismatch(expected, got, agrees, ".4g")
    if got.dtype != expected.dtype:
        return Mismatch(
            f"right values but dtype {got.dtype}; keep the input dtype "
            f"{expected.dtype}",
            value_is_right=True,
        )
    return None


def judge_weights(expected: Tensor, got: Any) -> Mismatch | None:
    """A weight matrix (a tensor or a NumPy array) must be (out_size, in_size), then
    equal torch's weights to float tolerance."""
    check_tensor("expected", expected, dims=2, shape="(out_size, in_size)")
    if isinstance(got, np.ndarray):
        got = torch.as_tensor(got)
    transposed = isinstance(got, Tensor) and got.shape == expected.T.shape
    hint = " (rows are output pixels, columns input pixels)" if transposed else ""
    shape_problem = _shape_mismatch(expected, got, hint)
    if shape_problem is not None:
        return shape_problem
    got = got.detach().cpu()
    agrees = torch.isclose(got.to(expected.dtype), expected, rtol=0.0, atol=1e-5)
    if not agrees.all():
        # the first wrong weight
        row, col = agrees.logical_not().nonzero()[0].tolist()
        return Mismatch(
            f"values differ: W[{row}, {col}] "
            f"(output pixel {row}, input pixel {col}) "
            f"should be {expected[row, col].item():.4g}, "
            f"got {got[row, col].item():.4g}"
        )
    return None


def judge_close(expected: Tensor, got: Any) -> Mismatch | None:
    """A computed value (not a copy) must have the right shape and agree to float64
    rounding."""
    check_tensor("expected", expected)
    wrong_rank = isinstance(got, Tensor) and got.dim() != expected.dim()
    hint = " (one value per image or row: reduce over every other axis)"
    shape_problem = _shape_mismatch(expected, got, hint if wrong_rank else "")
    if shape_problem is not None:
        return shape_problem
    got = got.detach().cpu().to(expected.dtype)
    agrees = torch.isclose(got, expected, rtol=1e-6, atol=1e-8, equal_nan=True)
    if not agrees.all():
        return _value_mismatch(expected, got, agrees, ".6g")
    return None


def judge_sample_and_gradients(
    expected: tuple[Tensor, Tensor, Tensor], got: Any
) -> Mismatch | None:
    """``got`` comes from :func:`with_gradients`: z must equal the reference sample,
    then its gradients w.r.t. mu and logvar must equal the reference ones."""
    _check_tensors(
        "expected", expected, ("z", "d(sum z)/d mu", "d(sum z)/d logvar")
    )
    z_expected, grad_mu_expected, grad_logvar_expected = expected
    # z came back alone: a wrong type or shape, or no gradient
    if not isinstance(got, tuple):
        if isinstance(got, Tensor) and got.shape == z_expected.shape:
            return Mismatch(
                "z carries no gradient: build it from mu and logvar with "
                "differentiable torch operations (no .detach(), torch.no_grad() or "
                "torch.normal(mu, sigma))"
            )
        return judge_close(z_expected, got)
    z, grad_mu, grad_logvar = got
    mismatch = judge_close(z_expected, z)
    if mismatch is not None:
        return mismatch
    gradients = (
        ("mu", grad_mu_expected, grad_mu),
        ("logvar", grad_logvar_expected, grad_logvar),
    )
    for name, expected_grad, got_grad in gradients:
        if got_grad is None:
            return Mismatch(f"z does not depend on {name} in the autograd graph")
        mismatch = judge_close(expected_grad, got_grad)
        if mismatch is not None:
            return Mismatch(
                f"the right z, but d(sum z)/d {name} is wrong: {mismatch.text}"
            )
    return None


def with_gradients(
    fn: Callable[[Tensor, Tensor, Tensor], Tensor],
) -> Callable[[Tensor, Tensor, Tensor], Any]:
    """Wrap the reader's ``fn(mu, logvar, eps) -> z``: call it on leaf tensors and
    return (z, d(sum z)/d mu, d(sum z)/d logvar), or z alone when no gradient can
    flow (for :func:`judge_sample_and_gradients` to explain)."""
    check_instance("fn", fn, Callable, "a function (mu, logvar, eps) -> z")

    def call_with_gradients(mu: Tensor, logvar: Tensor, eps: Tensor) -> Any:
        mu, logvar = mu.clone().requires_grad_(), logvar.clone().requires_grad_()
        z = fn(mu, logvar, eps)
        if not isinstance(z, Tensor) or not z.requires_grad or z.shape != mu.shape:
            return z
        grads = torch.autograd.grad(z.sum(), (mu, logvar), allow_unused=True)
        return z.detach(), *grads

    return call_with_gradients


# ---------------------------------------------------------------------------------
# Helpers shared by the judges, and by the cases of the chapter modules.


def seeded(draw: Callable[..., Tensor], seed: int) -> Callable[..., Tensor]:
    """``draw`` (torch.randn or torch.rand) in float64 from a generator of its own:
    the same tensors on every run, whatever else uses torch's global generator."""
    check_instance("draw", draw, Callable, "a sampler such as torch.randn")
    seed = check_int("seed", seed, minimum=0, maximum=2**64 - 1)
    generator = torch.Generator().manual_seed(seed)

    def sample(*shape: int) -> Tensor:
        return draw(shape, generator=generator, dtype=torch.float64)

    return sample


def _check_exercise(
    name: Any, cases: Any, reference: Any, judge: Any, wrap: Any
) -> None:
    """run's arguments other than the reader's function: the exercise itself."""
    check_instance("name", name, str)
    check_instance("cases", cases, list, "a list of cases (dicts of arguments)")
    for case in cases:
        check_instance("every case", case, dict, "a dict of arguments by name")
    check_instance("reference", reference, Callable, "a function")
    check_instance("judge", judge, Callable, "a judge (expected, got)")
    check_optional(check_instance, "wrap", wrap, Callable, "a function wrapper")


def _check_tensors(name: str, values: Any, parts: tuple[str, ...]) -> None:
    """A tuple of tensors, one for each of `parts`."""
    layout = f"({', '.join(parts)})"
    check_instance(name, values, tuple, f"a tuple of tensors {layout}")
    if len(values) != len(parts):
        raise ValueError(
            f"{name} must be a tuple of {len(parts)} tensors {layout}, got "
            f"{len(values)} values"
        )
    for part, value in zip(parts, values):
        check_tensor(f"{name}'s {part}", value)


def _shape_mismatch(expected: Tensor, got: Any, hint: str = "") -> Mismatch | None:
    """A tensor of the expected shape, else why not (``hint`` guesses a cause)."""
    shape = tuple(expected.shape)
    if not isinstance(got, Tensor):
        return Mismatch(
            f"expected a tensor of shape {shape}, got a {type(got).__name__}"
        )
    if got.shape != expected.shape:
        return Mismatch(
            f"shape mismatch: expected {shape}, got {tuple(got.shape)}{hint}"
        )
    return None


def _value_mismatch(
    expected: Tensor, got: Tensor, agrees: Tensor, spec: str
) -> Mismatch:
    """Point at the first wrong entry, e.g. ``out[0, 1, 2, 3] should be 0.5``."""
    where = tuple(agrees.logical_not().nonzero()[0].tolist())
    index = ", ".join(map(str, where))
    return Mismatch(
        f"values differ: out[{index}] should be {expected[where].item():{spec}}, "
        f"got {got[where].item():{spec}}"
    )


def _equal(got: Any, expected: Any) -> bool:
    """``got == expected`` for any object the reader returns (a comparison that
    fails means unequal)."""
    try:
        return bool(got == expected)
    except Exception:
        return False


def _describe(case: Case) -> str:
    """A case as the call's arguments, e.g. ``i=6, k=3, s=2, p=0, d=1``."""
    return ", ".join(f"{name}={_show(value)}" for name, value in case.items())


def _show(value: Any) -> str:
    if isinstance(value, Tensor):
        negative = value.numel() and bool((value < 0).all())
        sign = ", all negative" if negative else ""
        return f"<tensor of shape {tuple(value.shape)}{sign}>"
    return repr(value)
