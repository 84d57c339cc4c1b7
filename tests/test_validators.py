"""Tests of minigen.core.validators: each check accepts what it should (converted
losslessly), and rejects the rest with TypeError for a wrong type or ValueError for a
wrong value, in messages of one style: "NAME must be ..., got ..."."""

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from minigen.core.validators import (
    MAX_SIZE,
    check_bool,
    check_choice,
    check_float,
    check_instance,
    check_int,
    check_ints,
    check_module,
    check_optional,
    check_path,
    check_positive,
    check_probability,
    check_same_shape,
    check_tensor,
    describe,
)

NAN, INF = float("nan"), float("inf")


# --- describe ---------------------------------------------------------------------------------


def test_describe_names_the_type_and_shortens_long_values():
    assert (
        describe(torch.zeros(2, 3, dtype=torch.int64))
        == "a torch.int64 tensor of shape (2, 3)"
    )
    assert describe("no") == "str 'no'"
    assert describe(None) == "NoneType None"
    assert describe(nn.Linear) == "the class Linear"
    assert (
        describe(np.int64(3)) == "int64 3"
        and describe(np.bool_(True)) == "bool True"
    )
    long = describe("x" * 100)
    assert (
        long.startswith("str 'xxx")
        and long.endswith("...")
        and len(long) == len("str ") + 60
    )


# --- bool ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [True, False, np.bool_(True), np.bool_(False)])
def test_check_bool_accepts_true_and_false(value):
    result = check_bool("flag", value)
    assert result is bool(value) and type(result) is bool


@pytest.mark.parametrize(
    "value, shown",
    [
        ("no", "str 'no'"),
        ("", "str ''"),
        (1, "int 1"),
        (0, "int 0"),
        (None, "NoneType None"),
        (1.0, "float 1.0"),
        (np.int64(1), "int64 1"),
    ],
)
def test_check_bool_rejects_truthy_and_falsy_lookalikes(value, shown):
    with pytest.raises(
        TypeError, match=f"^flag must be True or False, got {shown}$"
    ):
        check_bool("flag", value)
    with pytest.raises(
        TypeError, match="flag must be True or False, got a torch.bool tensor"
    ):
        check_bool("flag", torch.tensor(True))


# --- int ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", [1, 7, np.int64(7), np.int8(7), np.uint16(7), MAX_SIZE]
)
def test_check_int_accepts_python_and_numpy_ints_and_returns_an_int(value):
    result = check_int("n", value)
    assert result == value and type(result) is int


@pytest.mark.parametrize(
    "value, shown",
    [
        (True, "bool True"),
        (np.bool_(True), "bool True"),
        (3.0, "float 3.0"),
        ("3", "str '3'"),
        (None, "NoneType None"),
        ([3], r"list \[3\]"),
        (NAN, "float nan"),
    ],
)
def test_check_int_rejects_other_types(value, shown):
    with pytest.raises(TypeError, match=f"^n must be an int, got {shown}$"):
        check_int("n", value)
    with pytest.raises(
        TypeError, match="n must be an int, got a torch.int64 tensor of shape"
    ):
        check_int("n", torch.tensor(3))


def test_check_int_bounds_are_closed_and_default_to_one_and_max_size():
    assert check_int("n", 1) == 1 and check_int("n", MAX_SIZE) == MAX_SIZE
    with pytest.raises(ValueError, match="^n must be an int >= 1, got 0$"):
        check_int("n", 0)
    with pytest.raises(
        ValueError, match="^n must be an int <= 1,000,000, got 1,000,001$"
    ):
        check_int("n", MAX_SIZE + 1)
    with pytest.raises(
        ValueError, match="^n must be an int <= 1,000,000, got 1,000,000,000$"
    ):
        check_int("n", 10**9)
    assert check_int("n", -5, minimum=-5, maximum=-5) == -5
    with pytest.raises(ValueError, match="n must be an int >= -5, got -6"):
        check_int("n", -6, minimum=-5)
    # both bounds open
    assert check_int("n", -(10**30), minimum=None, maximum=None) == -(10**30)
    with pytest.raises(ValueError, match="n must be an int <= 3, got 4"):
        check_int("n", np.int64(4), maximum=3)


# --- float --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", [0.5, 2, np.float32(0.5), np.float64(0.5), np.int32(2), -1e300]
)
def test_check_float_accepts_real_numbers_and_returns_a_float(value):
    result = check_float("x", value)
    assert result == pytest.approx(float(value)) and type(result) is float


@pytest.mark.parametrize(
    "value, shown",
    [
        (True, "bool True"),
        ("0.5", "str '0.5'"),
        (None, "NoneType None"),
        (1j, r"complex 1j"),
        ([0.5], r"list \[0.5\]"),
    ],
)
def test_check_float_rejects_other_types(value, shown):
    with pytest.raises(TypeError, match=f"^x must be a number, got {shown}$"):
        check_float("x", value)


@pytest.mark.parametrize("value", [NAN, INF, -INF, np.float32("nan"), 10**400])
def test_nan_and_infinities_never_pass_even_without_bounds(value):
    with pytest.raises(
        ValueError, match="^x must be a finite number, got (nan|inf|-inf)$"
    ):
        check_float("x", value)
    with pytest.raises(ValueError, match="finite"):
        check_float("x", value, 0.0, 1.0)


def test_check_float_closed_and_open_bounds():
    assert (
        check_float("x", 0.0, 0.0, 1.0) == 0.0
        and check_float("x", 1.0, 0.0, 1.0) == 1.0
    )
    with pytest.raises(ValueError, match=r"^x must lie in \(0, 1\], got 0$"):
        check_float("x", 0.0, 0.0, 1.0, open_min=True)
    with pytest.raises(ValueError, match=r"^x must lie in \[0, 1\), got 1$"):
        check_float("x", 1.0, 0.0, 1.0, open_max=True)
    with pytest.raises(ValueError, match=r"^x must lie in \[0, inf\), got -0.5$"):
        check_float("x", -0.5, 0.0)
    with pytest.raises(ValueError, match=r"^x must lie in \(-inf, 2\], got 3$"):
        check_float("x", 3, maximum=2.0)
    assert check_float("x", math.nextafter(0.0, 1.0), 0.0, open_min=True) > 0


def test_check_positive_and_check_probability():
    assert check_positive("lr", 1e-300) == 1e-300
    for bad in (0, -1.0, NAN, INF):
        with pytest.raises(ValueError, match="lr must"):
            check_positive("lr", bad)
    assert (
        check_probability("p", 0.0) == 0.0
        and check_probability("p", 1.0, allow_one=True) == 1.0
    )
    with pytest.raises(ValueError, match=r"^p must lie in \[0, 1\), got 1$"):
        check_probability("p", 1.0)
    for bad in (-0.1, 1.5, NAN):
        with pytest.raises(ValueError, match="p must"):
            check_probability("p", bad, allow_one=True)
    with pytest.raises(TypeError, match="p must be a number, got bool True"):
        check_probability("p", True, allow_one=True)


# --- optional, choice, instance -----------------------------------------------------------------


def test_check_optional_passes_none_through_and_checks_the_rest_with_its_arguments():
    assert check_optional(check_int, "n", None) is None
    assert check_optional(check_int, "n", np.int64(5), 0) == 5
    with pytest.raises(ValueError, match="n must be an int >= 10, got 5"):
        check_optional(check_int, "n", 5, 10)
    with pytest.raises(TypeError, match="n must be an int"):
        check_optional(check_int, "n", "5")


def test_check_choice():
    assert check_choice("mode", "b", ("a", "b")) == "b"
    assert check_choice("k", 2, (1, 2)) == 2
    with pytest.raises(
        ValueError, match="^mode must be one of 'a', 'b', got str 'c'$"
    ):
        check_choice("mode", "c", ("a", "b"))
    with pytest.raises(
        ValueError, match="mode must be one of 'a', 'b', got NoneType None"
    ):
        check_choice("mode", None, ("a", "b"))
    with pytest.raises(ValueError, match=r"got list \['a'\]"):
        check_choice("mode", ["a"], ("a", "b"))  # unhashable: no crash
    with pytest.raises(ValueError, match="k must be one of 1, 2, got bool True"):
        check_choice("k", True, (1, 2))  # True == 1, but it is no choice here
    assert check_choice("flag", True, (True, False)) is True
    with pytest.raises(ValueError, match="got float nan"):
        check_choice("x", NAN, (1.0, 2.0))


def test_check_instance():
    assert check_instance("n", 3, (int, float)) == 3
    with pytest.raises(TypeError, match="^n must be int or float, got str '3'$"):
        check_instance("n", "3", (int, float))
    with pytest.raises(
        TypeError, match="^labels must be SceneLabels, got the class int$"
    ):
        check_instance("labels", int, dict, "SceneLabels")


def test_check_module():
    model = nn.Linear(2, 2)
    assert check_module("model", model) is model
    with pytest.raises(
        TypeError,
        match=r"model must be a model instance, got the class Linear; create one first, e.g. Linear\(\)",
    ):
        check_module("model", nn.Linear)
    with pytest.raises(
        TypeError,
        match="^model must be an nn.Module, got a torch.float32 tensor of shape",
    ):
        # a model's output, not the model
        check_module("model", model(torch.zeros(1, 2)))


# --- sequences of ints --------------------------------------------------------------------------


def test_check_ints():
    assert check_ints("widths", [8, np.int64(16)]) == (8, 16)
    assert type(check_ints("widths", (8,))[0]) is int
    assert check_ints("levels", [], allow_empty=True) == ()
    assert check_ints("levels", [0, 2], minimum=0) == (0, 2)
    with pytest.raises(
        ValueError, match=r"^widths must hold at least one int, got \[\]$"
    ):
        check_ints("widths", [])
    with pytest.raises(
        ValueError, match="^every entry of widths must be an int >= 1, got 0$"
    ):
        check_ints("widths", [8, 0])
    with pytest.raises(
        ValueError, match="every entry of widths must be an int <= 64, got 65"
    ):
        check_ints("widths", [65], maximum=64)
    with pytest.raises(
        ValueError, match="every entry of widths must be an int <= 1,000,000"
    ):
        check_ints("widths", [10**9])
    for bad, shown in (
        ("16", "str '16'"),
        (16, "int 16"),
        (None, "NoneType None"),
        (torch.tensor([8]), "a torch.int64"),
    ):
        with pytest.raises(
            TypeError, match=f"^widths must be a sequence of ints, got {shown}"
        ):
            check_ints("widths", bad)
    for bad, shown in (([True], "bool True"), ([8.0], "float 8.0")):
        with pytest.raises(
            TypeError, match=f"^every entry of widths must be an int, got {shown}$"
        ):
            check_ints("widths", bad)


# --- tensors ------------------------------------------------------------------------------------


def test_check_tensor_accepts_and_returns_the_same_tensor():
    x = torch.zeros(2, 3)
    assert check_tensor("x", x, dims=2, floating=True, finite=True) is x
    assert check_tensor("x", x, dims=(1, 2)) is x
    ints = torch.tensor([1, 2])
    # integers are always finite
    assert check_tensor("t", ints, finite=True) is ints


def test_check_tensor_rejections():
    with pytest.raises(
        TypeError,
        match=r"^x must be a torch.Tensor \(B, C\), got list \[\[0.0\]\]$",
    ):
        check_tensor("x", [[0.0]], shape="(B, C)")
    with pytest.raises(TypeError, match="x must be a torch.Tensor, got ndarray"):
        check_tensor("x", np.zeros(2))
    with pytest.raises(
        ValueError,
        match=r"^x must be a 4-d tensor \(B, C, H, W\), got shape \(3, 8, 8\)$",
    ):
        check_tensor("x", torch.zeros(3, 8, 8), dims=4, shape="(B, C, H, W)")
    with pytest.raises(
        ValueError, match=r"x must be a 1 or 2-d tensor, got shape \(\)"
    ):
        check_tensor("x", torch.tensor(1.0), dims=(1, 2))
    with pytest.raises(
        TypeError,
        match=r"x must be a floating-point tensor, got torch.int64; convert it with .float\(\)",
    ):
        check_tensor("x", torch.zeros(2, dtype=torch.long), floating=True)
    with pytest.raises(TypeError, match="floating-point"):
        check_tensor("x", torch.zeros(2, dtype=torch.bool), floating=True)
    bad = torch.tensor([0.0, NAN, INF, -INF, 1.0])
    with pytest.raises(ValueError, match="^x holds 3 NaN or infinite values$"):
        check_tensor("x", bad, finite=True)
    with pytest.raises(ValueError, match="holds 1 NaN"):
        check_tensor("x", torch.tensor([NAN], dtype=torch.bfloat16), finite=True)
    assert check_tensor("x", bad) is bad  # NaN is checked only when asked


def test_check_same_shape_does_not_broadcast():
    check_same_shape("a", torch.zeros(2, 3), "b", torch.ones(2, 3))
    with pytest.raises(
        ValueError,
        match=r"^a and b must have the same shape, got \(2, 3\) and \(1, 3\)$",
    ):
        check_same_shape("a", torch.zeros(2, 3), "b", torch.zeros(1, 3))
    with pytest.raises(
        TypeError, match="^b must be a torch.Tensor, got NoneType None$"
    ):
        check_same_shape("a", torch.zeros(2, 3), "b", None)


# --- paths --------------------------------------------------------------------------------------


class Fspath:
    def __fspath__(self) -> str:
        return "/tmp/model.pt"


def test_check_path():
    assert check_path("path", "model.pt") == Path("model.pt")
    assert check_path("path", Path("/tmp/x.pt")) == Path("/tmp/x.pt")
    assert check_path("path", Fspath()) == Path(os.fspath(Fspath()))
    for empty in ("", "   "):
        with pytest.raises(
            ValueError, match="^path must be a file path, got an empty string$"
        ):
            check_path("path", empty)
    for bad, shown in (
        (None, "NoneType None"),
        (3, "int 3"),
        (b"x.pt", "bytes b'x.pt'"),
    ):
        with pytest.raises(
            TypeError,
            match=rf"^path must be a file path \(str or Path\), got {shown}$",
        ):
            check_path("path", bad)
