"""Argument checks for minigen's public entry points: one place, one style.

A wrong *type* raises TypeError, a wrong *value* raises ValueError, and every
message says what was given and what would be right: "steps must be an int >= 1, got
0". The checks run at the entry points (constructors, public functions, trainers),
never in the middle of a `forward` that the book displays, so the code a reader sees
is the math.

Each `check_*` returns the value it accepted (converted where that is lossless, e.g.
a NumPy integer to `int`), so a call reads `steps = check_int("steps", steps)`. NaN
and infinities never pass a range check, and a bool is never taken for a number.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

T = TypeVar("T")

# sizes, counts and widths above this are mistakes here: fail before a hang
MAX_SIZE = 1_000_000


def describe(value: Any) -> str:
    """A short description of `value` for messages: a tensor's shape, else its
    repr."""
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    if isinstance(value, type):
        return f"the class {value.__name__}"
    text = str(value) if isinstance(value, np.generic) else repr(value)
    return (
        f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"
    )


def check_bool(name: str, value: Any) -> bool:
    """True or False (a NumPy bool too): a truthy string such as "no" is a
    mistake."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {describe(value)}")
    return bool(value)


def check_int(
    name: str, value: Any, minimum: int | None = 1, maximum: int | None = MAX_SIZE
) -> int:
    """An int (not a bool) in [minimum, maximum]; None for either bound leaves it
    open."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, numbers.Integral
    ):
        raise TypeError(f"{name} must be an int, got {describe(value)}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be an int <= {maximum:,}, got {value:,}")
    return value


def check_float(
    name: str,
    value: Any,
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    open_min: bool = False,
    open_max: bool = False,
) -> float:
    """A finite real number (int or float, not bool) in the interval; NaN never
    passes."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {describe(value)}")
    try:
        value = float(value)
    except OverflowError:  # an int past float's range, e.g. 10**400
        value = math.inf
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    low_ok = minimum is None or (value > minimum if open_min else value >= minimum)
    high_ok = maximum is None or (value < maximum if open_max else value <= maximum)
    if not (low_ok and high_ok):
        low = (
            "(-inf"
            if minimum is None
            else ("(" if open_min else "[") + f"{minimum:g}"
        )
        high = (
            "inf)"
            if maximum is None
            else f"{maximum:g}" + (")" if open_max else "]")
        )
        raise ValueError(f"{name} must lie in {low}, {high}, got {value:g}")
    return value


def check_positive(name: str, value: Any) -> float:
    """A finite number > 0."""
    return check_float(name, value, 0.0, open_min=True)


def check_probability(name: str, value: Any, *, allow_one: bool = False) -> float:
    """A number in [0, 1) (or [0, 1] with allow_one)."""
    return check_float(name, value, 0.0, 1.0, open_max=not allow_one)


def check_optional(
    check: Any, name: str, value: Any, *args: Any, **kwargs: Any
) -> Any:
    """None, or whatever `check(name, value, ...)` accepts."""
    return None if value is None else check(name, value, *args, **kwargs)


def check_choice(name: str, value: Any, choices: Sequence[T]) -> T:
    """One of `choices` (compared with ==; True is not taken for 1)."""
    valid = isinstance(value, (str, int, float)) and value in choices
    if isinstance(value, bool):
        valid = any(choice is value for choice in choices)
    if not valid:
        listed = ", ".join(map(repr, choices))
        raise ValueError(f"{name} must be one of {listed}, got {describe(value)}")
    return value


def check_instance(
    name: str, value: Any, kind: type | tuple[type, ...], what: str = ""
) -> Any:
    """An instance of `kind`; `what` names it for the message (default: the type
    names)."""
    if not isinstance(value, kind):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        expected = what or " or ".join(k.__name__ for k in kinds)
        raise TypeError(f"{name} must be {expected}, got {describe(value)}")
    return value


def check_ints(
    name: str,
    values: Any,
    minimum: int | None = 1,
    *,
    allow_empty: bool = False,
    maximum: int | None = MAX_SIZE,
) -> tuple[int, ...]:
    """A list or tuple of ints in [minimum, maximum], returned as a tuple."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(
            f"{name} must be a sequence of ints, got {describe(values)}"
        )
    if not values and not allow_empty:
        raise ValueError(f"{name} must hold at least one int, got {values!r}")
    entry = f"every entry of {name}"
    return tuple(check_int(entry, value, minimum, maximum) for value in values)


def check_tensor(
    name: str,
    value: Any,
    *,
    dims: int | tuple[int, ...] | None = None,
    floating: bool = False,
    finite: bool = False,
    shape: str = "",
) -> torch.Tensor:
    """A torch.Tensor with `dims` dimensions (one count or several), floating point
    if asked, free of NaN and inf if asked. `shape` describes the expected layout,
    e.g. "(B, C, H, W)"."""
    layout = f" {shape}" if shape else ""
    if not isinstance(value, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor{layout}, got {describe(value)}"
        )
    allowed = (dims,) if isinstance(dims, int) else dims
    if allowed is not None and value.dim() not in allowed:
        counts = " or ".join(map(str, allowed))
        raise ValueError(
            f"{name} must be a {counts}-d tensor{layout}, "
            f"got shape {tuple(value.shape)}"
        )
    if floating and not value.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor, got {value.dtype}; "
            "convert it with .float()"
        )
    if finite and value.is_floating_point() and not torch.isfinite(value).all():
        bad = (~torch.isfinite(value)).sum().item()
        raise ValueError(f"{name} holds {bad} NaN or infinite values")
    return value


def check_same_shape(
    name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor
) -> None:
    """Two tensors of one shape (no broadcasting)."""
    check_tensor(name_a, a)
    check_tensor(name_b, b)
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, got {tuple(a.shape)} "
            f"and {tuple(b.shape)}"
        )


def check_module(name: str, value: Any) -> torch.nn.Module:
    """An nn.Module (a model, not its class or its output)."""
    if isinstance(value, type) and issubclass(value, torch.nn.Module):
        raise TypeError(
            f"{name} must be a model instance, got the class {value.__name__}; "
            f"create one first, e.g. {value.__name__}()"
        )
    return check_instance(name, value, torch.nn.Module, "an nn.Module")


def check_path(name: str, value: Any) -> Path:
    """A non-empty str or os.PathLike, returned as a Path."""
    if not isinstance(value, (str, Path)) and not hasattr(value, "__fspath__"):
        raise TypeError(
            f"{name} must be a file path (str or Path), got {describe(value)}"
        )
    if str(value).strip() == "":
        raise ValueError(f"{name} must be a file path, got an empty string")
    return Path(value)
