"""Chapter 1 exercises (minigen.exercises.ch01_convolution): right answers pass, classic
mistakes are caught with a true counterexample, the cases cover the corners and the torch
references agree with the closed forms."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from minigen.exercises import (
    CheckResult,
    check_conv_output_size,
    check_max_pool2d,
    check_receptive_field,
    check_transposed_output_size,
)
from minigen.exercises import ch01_convolution as ch01
from minigen.ops import arith
from minigen.ops import conv as ops

# --- right answers, written here from the closed forms (independent of the checkers' torch references)


def conv_size(i, k, s, p, d):
    return (i + 2 * p - d * (k - 1) - 1) // s + 1


def transposed_size(i, k, s, p, output_padding):
    return s * (i - 1) + output_padding + k - 2 * p


def unfold_max_pool(x, k, s):
    return (
        x.unfold(2, k, s).unfold(3, k, s).amax(dim=(-2, -1))
    )  # (B, C, H_out, W_out, k, k) -> max


def receptive_field_size(layers):
    size, jump = 1, 1
    for kernel, stride in layers:
        size, jump = size + (kernel - 1) * jump, jump * stride
    return size


def loop_max_pool(x, k, s, start=None):
    """A textbook loop; `start` set to 0.0 reproduces the zero-initialised-max bug."""
    batch, channels, height, width = x.shape
    out = torch.empty(
        batch, channels, (height - k) // s + 1, (width - k) // s + 1, dtype=x.dtype
    )
    for row in range(out.shape[2]):
        for col in range(out.shape[3]):
            window = x[:, :, row * s : row * s + k, col * s : col * s + k]
            best = window.amax(dim=(-2, -1))
            out[:, :, row, col] = best if start is None else best.clamp(min=start)
    return out


def assert_caught(result, wrong, right):
    """The check failed, and its counterexample really separates the wrong function from the right one."""
    assert isinstance(result, CheckResult)
    assert not result.passed and result.attempted
    case = list(result.counterexample.values())
    expected = right(*case)
    if torch.is_tensor(expected):
        assert torch.equal(result.expected, expected)
    else:
        assert result.expected == expected
    got = wrong(*case)
    if torch.is_tensor(got):
        assert got.shape != expected.shape or not torch.equal(got, expected)
    else:
        assert got != expected or type(got) is not int
    assert repr(result).startswith("❌ ")


# --- right answers pass


@pytest.mark.parametrize(
    ("check", "right"),
    [
        (check_conv_output_size, conv_size),
        (check_transposed_output_size, transposed_size),
        (check_max_pool2d, unfold_max_pool),
        (check_max_pool2d, loop_max_pool),
        (check_max_pool2d, lambda x, k, s: F.max_pool2d(x, k, s)),
        (check_receptive_field, receptive_field_size),
    ],
)
def test_right_answers_pass(check, right):
    result = check(right)
    assert result.passed, result
    assert result.counterexample is None
    assert repr(result) == f"✅ {result.name}: passed {result.cases} cases"


def test_minigen_arith_passes_its_own_exercises():
    assert check_conv_output_size(arith.conv_output_size).passed

    def transposed(i, k, s, p, output_padding):
        return arith.transposed_output_size(
            i, k, s, p, output_padding=output_padding
        )

    def field_size(layers):
        return arith.receptive_field(
            [arith.Layer(kernel, stride) for kernel, stride in layers]
        )[-1].size

    assert check_transposed_output_size(transposed).passed
    assert check_receptive_field(field_size).passed


def test_minigen_ops_max_pool2d_passes():
    assert check_max_pool2d(lambda x, k, s: ops.max_pool2d(x, k, s)).passed


def test_conv_check_runs_500_cases():
    assert (
        repr(check_conv_output_size(conv_size))
        == "✅ conv_output_size: passed 500 cases"
    )


# --- classic mistakes are caught


def test_forgetting_the_floor_is_caught_at_a_fractional_case():
    def wrong(i, k, s, p, d):
        return (i + 2 * p - d * (k - 1) - 1) / s + 1  # / where // belongs

    result = check_conv_output_size(wrong)
    assert_caught(result, wrong, conv_size)
    assert result.counterexample == dict(i=6, k=3, s=2, p=0, d=1)
    assert (result.expected, result.got) == (2, 2.5)
    assert (
        repr(result)
        == "❌ conv_output_size: i=6, k=3, s=2, p=0, d=1 → expected 2, got 2.5"
    )


@pytest.mark.parametrize(
    "wrong",
    [
        lambda i, k, s, p, d: (i + 2 * p - d * (k - 1) - 1) // s,  # forgot + 1
        lambda i, k, s, p, d: (
            (i + 2 * p - d * (k - 1)) // s + 1
        ),  # off by one inside
        lambda i, k, s, p, d: (
            (i + p - d * (k - 1) - 1) // s + 1
        ),  # padding on one side only
        lambda i, k, s, p, d: (
            -(-(i + 2 * p - d * (k - 1) - 1) // s) + 1
        ),  # ceil instead of floor
    ],
)
def test_conv_mistakes_are_caught(wrong):
    assert_caught(check_conv_output_size(wrong), wrong, conv_size)


def test_ignoring_dilation_is_caught_at_a_dilated_case():
    def wrong(i, k, s, p, d):
        return (i + 2 * p - k) // s + 1

    result = check_conv_output_size(wrong)
    assert_caught(result, wrong, conv_size)
    assert result.counterexample["d"] > 1


def test_a_right_value_as_float_is_a_type_problem():
    def wrong(i, k, s, p, d):
        return float(conv_size(i, k, s, p, d))

    result = check_conv_output_size(wrong)
    assert_caught(result, wrong, conv_size)
    assert result.got == result.expected and isinstance(result.got, float)
    assert "int" in result.message and "float" in result.message


def test_a_wrong_value_is_reported_before_a_type_problem():
    """The first case gives 3.0 (right value, float); the wrong 2.5 of the second case is the verdict."""
    result = check_conv_output_size(
        lambda i, k, s, p, d: (i + 2 * p - d * (k - 1) - 1) / s + 1
    )
    assert result.got == 2.5 and result.cases == 2


@pytest.mark.parametrize(
    "wrong",
    [
        lambda i, k, s, p, a: s * i + a + k - 2 * p,  # s·i instead of s·(i - 1)
        lambda i, k, s, p, a: (
            (i - 1) // s + k - 2 * p + a
        ),  # the convolution's division, not a product
    ],
)
def test_transposed_mistakes_are_caught(wrong):
    assert_caught(check_transposed_output_size(wrong), wrong, transposed_size)


@pytest.mark.parametrize(
    ("wrong", "ignored"),
    [
        (lambda i, k, s, p, a: s * (i - 1) + k - 2 * p, "output_padding"),
        (lambda i, k, s, p, a: s * (i - 1) + a + k - p, "p"),  # crops one side only
    ],
)
def test_an_ignored_transposed_parameter_is_caught_where_it_matters(wrong, ignored):
    result = check_transposed_output_size(wrong)
    assert_caught(result, wrong, transposed_size)
    assert result.counterexample[ignored] > 0


def test_a_zero_initialised_max_is_caught_on_negative_input():
    def wrong(x, k, s):
        return loop_max_pool(x, k, s, start=0.0)

    result = check_max_pool2d(wrong)
    assert_caught(result, wrong, unfold_max_pool)
    assert (result.counterexample["x"] < 0).all()
    assert "values differ" in result.message and "all negative" in result.message


@pytest.mark.parametrize(
    "wrong",
    [
        lambda x, k, s: F.max_pool2d(
            x, k, s, ceil_mode=True
        ),  # keeps the partial last window
        lambda x, k, s: F.max_pool2d(
            x[..., : x.shape[2]], k, s
        ),  # the height used for both sides
        lambda x, k, s: F.max_pool2d(x, k, k),  # ignores the stride
    ],
)
def test_max_pool_shape_mistakes_are_reported_as_shapes(wrong):
    result = check_max_pool2d(wrong)
    assert_caught(result, wrong, unfold_max_pool)
    assert result.message.split("→ ")[1].startswith("shape mismatch")


@pytest.mark.parametrize(
    "wrong",
    [
        lambda x, k, s: F.avg_pool2d(x, k, s),  # the mean, not the max
        lambda x, k, s: -F.max_pool2d(-x, k, s),  # the min
        lambda x, k, s: F.max_pool2d(
            x[:, :1].expand_as(x), k, s
        ),  # pools channel 0 everywhere
    ],
)
def test_max_pool_value_mistakes_are_reported_as_values(wrong):
    result = check_max_pool2d(wrong)
    assert_caught(result, wrong, unfold_max_pool)
    assert "values differ" in result.message


def test_max_pool_in_another_dtype_is_a_type_problem():
    result = check_max_pool2d(lambda x, k, s: F.max_pool2d(x.double(), k, s))
    assert not result.passed and result.attempted
    assert "dtype" in result.message


def test_max_pool_returning_a_list_is_reported():
    result = check_max_pool2d(lambda x, k, s: F.max_pool2d(x, k, s).tolist())
    assert not result.passed and "got a list" in result.message


@pytest.mark.parametrize(
    "wrong",
    [
        lambda layers: 1 + sum(k - 1 for k, _ in layers),  # ignores the strides
        lambda layers: sum(k for k, _ in layers),  # adds kernels
        lambda layers: receptive_field_size(
            [(k, s) for k, s in layers[::-1]]
        ),  # output side first
    ],
)
def test_receptive_field_mistakes_are_caught(wrong):
    assert_caught(check_receptive_field(wrong), wrong, receptive_field_size)


def test_a_jump_that_includes_the_current_stride_is_caught():
    def wrong(layers):
        size, jump = 1, 1
        for kernel, stride in layers:
            jump *= stride
            size += (kernel - 1) * jump
        return size

    assert_caught(check_receptive_field(wrong), wrong, receptive_field_size)


# --- crashing and misused (the engine, seen through chapter 1's checkers)


def test_an_exception_in_the_readers_code_is_reported_with_its_case():
    result = check_conv_output_size(lambda i, k, s, p, d: i // (d - 1))
    assert not result.passed and result.attempted
    assert isinstance(result.got, ZeroDivisionError)
    assert result.counterexample == dict(i=5, k=3, s=1, p=0, d=1)
    assert (
        "i=5, k=3, s=1, p=0, d=1 → expected 3, but your function raised ZeroDivisionError"
        in " ".join(str(result).split())  # the message wraps at the book's column
    )


def test_a_wrong_signature_is_reported_not_raised():
    result = check_max_pool2d(lambda x, k: F.max_pool2d(x, k))
    assert not result.passed and "TypeError" in result.message


def test_modifying_the_input_does_not_fool_the_checker():
    def pool_then_clobber(x, k, s):
        out = F.max_pool2d(x, k, s)
        x.zero_()
        return out

    assert check_max_pool2d(pool_then_clobber).passed


# --- cases and references


def test_cases_are_deterministic():
    assert ch01._conv_output_size_cases() == ch01._conv_output_size_cases()
    assert (
        ch01._transposed_output_size_cases() == ch01._transposed_output_size_cases()
    )
    assert ch01._receptive_field_cases() == ch01._receptive_field_cases()
    first, second = ch01._max_pool2d_cases(), ch01._max_pool2d_cases()
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a["x"], b["x"]) and (a["k"], a["s"]) == (b["k"], b["s"])


def test_conv_cases_cover_the_corners():
    cases = ch01._conv_output_size_cases()
    effective = [c["d"] * (c["k"] - 1) + 1 for c in cases]
    assert any(
        e == c["i"] + 2 * c["p"] for e, c in zip(effective, cases)
    )  # kernel = padded input
    assert any(
        c["s"] > c["i"] + 2 * c["p"] - e for e, c in zip(effective, cases)
    )  # stride past the range
    assert any(c["d"] > 1 and c["p"] > 0 and c["s"] > 1 for c in cases)
    assert any(
        (c["i"] + 2 * c["p"] - e) % c["s"] for e, c in zip(effective, cases)
    )  # the floor matters
    assert all(conv_size(**c) >= 1 for c in cases)


def test_max_pool_cases_cover_the_corners():
    cases = ch01._max_pool2d_cases()
    assert any((c["x"] < 0).all() for c in cases)
    assert any(c["x"].shape[2] != c["x"].shape[3] for c in cases)
    assert any(c["s"] < c["k"] for c in cases) and any(
        c["s"] > c["k"] for c in cases
    )
    assert any(
        (c["x"].shape[2] - c["k"]) % c["s"] for c in cases
    )  # rows that fit no window
    assert any(c["x"].shape[0] > 1 and c["x"].shape[1] > 1 for c in cases)


@settings(max_examples=60, deadline=None)
@given(
    layers=st.lists(
        st.tuples(st.integers(1, 7), st.integers(1, 4)), min_size=1, max_size=6
    ),
)
def test_brute_force_receptive_field_matches_the_closed_form(layers):
    assert ch01._brute_force_receptive_field(layers) == receptive_field_size(layers)


@settings(max_examples=100, deadline=None)
@given(
    k=st.integers(1, 7),
    s=st.integers(1, 5),
    p=st.integers(0, 4),
    d=st.integers(1, 4),
    extra=st.integers(0, 20),
)
def test_torch_conv_reference_matches_the_closed_form(k, s, p, d, extra):
    i = max(1, d * (k - 1) + 1 - 2 * p) + extra
    assert ch01._torch_conv_output_size(i, k, s, p, d) == conv_size(i, k, s, p, d)


@settings(max_examples=100, deadline=None)
@given(
    i=st.integers(1, 16), k=st.integers(1, 7), s=st.integers(1, 4), data=st.data()
)
def test_torch_transposed_reference_matches_the_closed_form(i, k, s, data):
    p = data.draw(st.integers(0, (k - 1) // 2))
    output_padding = data.draw(st.integers(0, s - 1))
    expected = transposed_size(i, k, s, p, output_padding)
    assert (
        ch01._torch_transposed_output_size(i, k, s, p, output_padding) == expected
    )


@settings(max_examples=15, deadline=None)
@given(st.data())
def test_a_mistake_in_any_single_case_is_found_exactly_there(data):
    """Every case is really checked: a function wrong on one case alone fails on that case."""
    cases = ch01._conv_output_size_cases()
    target = data.draw(st.sampled_from(cases))

    def wrong_once(i, k, s, p, d):
        right = conv_size(i, k, s, p, d)
        return right + 1 if dict(i=i, k=k, s=s, p=p, d=d) == target else right

    result = check_conv_output_size(wrong_once)
    assert not result.passed
    assert result.counterexample == target
    assert result.cases == cases.index(target) + 1


def test_forgetting_to_return_is_pointed_out():
    result = check_receptive_field(lambda layers: None)
    assert not result.passed and result.attempted
    assert "does your function return it?" in result.message
