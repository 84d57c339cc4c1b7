"""Chapter 2 exercises (minigen.exercises.ch02_upsampling): bilinear weights and pixel
shuffle; right answers pass, classic mistakes are caught, the cases cover the corners."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from minigen.exercises import ch02_upsampling as ch02
from minigen.exercises import check_bilinear_weights, check_pixel_shuffle


def linear_weights(in_size, out_size, align_corners):
    """The closed form, written here: each output pixel's source coordinate, split between two neighbours."""
    weights = torch.zeros(out_size, in_size, dtype=torch.float64)
    for o in range(out_size):
        if align_corners:
            source = o * (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
        else:
            source = max(
                (o + 0.5) * in_size / out_size - 0.5, 0.0
            )  # half-pixel centres, clamped at 0
        left = min(int(source), in_size - 1)
        right = min(left + 1, in_size - 1)
        fraction = source - left
        weights[o, left] += 1 - fraction
        weights[o, right] += fraction
    return weights


def einops_pixel_shuffle(x, r):
    from einops import rearrange

    return rearrange(x, "b (c r1 r2) h w -> b c (h r1) (w r2)", r1=r, r2=r)


def test_chapter_2_right_answers_pass():
    assert check_bilinear_weights(linear_weights).passed
    assert check_bilinear_weights(
        lambda i, o, a: linear_weights(i, o, a).numpy()
    ).passed  # NumPy is fine
    assert check_pixel_shuffle(einops_pixel_shuffle).passed
    assert check_pixel_shuffle(lambda x, r: F.pixel_shuffle(x, r)).passed


@pytest.mark.parametrize(
    "wrong",
    [
        lambda i, o, a: linear_weights(i, o, not a),  # align_corners swapped
        lambda i, o, a: linear_weights(i, o, True),  # align_corners ignored
    ],
)
def test_align_corners_mistakes_are_caught(wrong):
    result = check_bilinear_weights(wrong)
    assert_caught_weights(result, wrong)
    assert "values differ: W[" in result.message


def test_a_missing_clamp_at_the_edge_is_caught_at_the_first_output_pixel():
    def wrong(in_size, out_size, align_corners):
        if align_corners or out_size <= in_size:
            return linear_weights(in_size, out_size, align_corners)
        weights = torch.zeros(out_size, in_size, dtype=torch.float64)
        for o in range(out_size):
            source = (
                o + 0.5
            ) * in_size / out_size - 0.5  # may be negative: the bug
            left = min(
                max(int(source), 0), in_size - 1
            )  # int() truncates towards 0
            fraction = source - left
            weights[o, left] += 1 - fraction
            weights[o, min(left + 1, in_size - 1)] += fraction
        return weights

    result = check_bilinear_weights(wrong)
    assert_caught_weights(result, wrong)
    assert result.counterexample == dict(in_size=4, out_size=8, align_corners=False)
    assert "W[0, 0]" in result.message


def test_a_transposed_weight_matrix_is_a_shape_problem_with_a_hint():
    result = check_bilinear_weights(lambda i, o, a: linear_weights(i, o, a).T)
    assert not result.passed
    assert result.message.endswith(
        "shape mismatch: expected (8, 4), got (4, 8) (rows are output pixels, columns input pixels)"
    )


def test_one_output_pixel_with_align_corners_is_a_case():
    def wrong(in_size, out_size, align_corners):  # divides by out_size - 1
        if align_corners:
            step = (
                1 / (out_size - 1)
            )  # output pixels sit 1 / (out_size - 1) apart: the bug when out_size = 1
            return linear_weights(in_size, out_size, True) * step * (out_size - 1)
        return linear_weights(in_size, out_size, False)

    result = check_bilinear_weights(wrong)
    assert isinstance(result.got, ZeroDivisionError)
    assert result.counterexample == dict(in_size=6, out_size=1, align_corners=True)


def assert_caught_weights(result, wrong):
    assert not result.passed and result.attempted
    case = list(result.counterexample.values())
    expected = linear_weights(*case)
    assert torch.allclose(result.expected, expected)
    assert not torch.allclose(torch.as_tensor(wrong(*case)), expected)
    assert repr(result).startswith("❌ bilinear_weights: ")


@pytest.mark.parametrize(
    "wrong",
    [
        lambda x, r: einops_pixel_shuffle_order(
            x, r, "b (r1 r2 c) h w -> b c (h r1) (w r2)"
        ),  # channel last
        lambda x, r: einops_pixel_shuffle_order(
            x, r, "b (c r2 r1) h w -> b c (h r1) (w r2)"
        ),  # r1, r2 swapped
        lambda x, r: einops_pixel_shuffle_order(
            x, r, "b (c r1 r2) h w -> b c (r1 h) (r2 w)"
        ),  # blocks, not pixels
    ],
)
def test_pixel_shuffle_order_mistakes_are_caught(wrong):
    result = check_pixel_shuffle(wrong)
    assert not result.passed and result.attempted
    case = list(result.counterexample.values())
    assert torch.equal(result.expected, einops_pixel_shuffle(*case))
    assert not torch.equal(wrong(*case), result.expected)
    assert "values differ" in result.message


def einops_pixel_shuffle_order(x, r, pattern):
    from einops import rearrange

    return rearrange(x, pattern, r1=r, r2=r)


def test_the_channel_order_mistake_needs_several_output_channels():
    """With one output channel, (c r1 r2) and (r1 r2 c) agree: the checker's second case has three."""

    def wrong(x, r):
        return einops_pixel_shuffle_order(
            x, r, "b (r1 r2 c) h w -> b c (h r1) (w r2)"
        )

    result = check_pixel_shuffle(wrong)
    assert result.cases == 2 and result.counterexample["x"].shape[1] == 12


def test_pixel_shuffle_shape_mistake_is_reported_as_a_shape():
    result = check_pixel_shuffle(
        lambda x, r: x.repeat_interleave(r, dim=2).repeat_interleave(r, dim=3)
    )  # a resize
    assert not result.passed and result.message.endswith(
        "shape mismatch: expected (1, 1, 4, 4), got (1, 4, 4, 4)"
    )


def test_chapter_2_cases_are_deterministic_and_cover_the_corners():
    assert ch02._bilinear_weights_cases() == ch02._bilinear_weights_cases()
    for a, b in zip(
        ch02._pixel_shuffle_cases(), ch02._pixel_shuffle_cases(), strict=True
    ):
        assert torch.equal(a["x"], b["x"]) and a["r"] == b["r"]
    cases = ch02._bilinear_weights_cases()
    assert any(c["out_size"] < c["in_size"] for c in cases) and any(
        c["out_size"] % c["in_size"] for c in cases
    )
    assert {c["align_corners"] for c in cases} == {True, False}
    shuffles = ch02._pixel_shuffle_cases()
    assert {c["r"] for c in shuffles} >= {1, 2, 3, 4}
    assert any(
        c["x"].shape[1] > c["r"] ** 2 for c in shuffles
    )  # several output channels


@settings(max_examples=60, deadline=None)
@given(
    in_size=st.integers(1, 20),
    out_size=st.integers(1, 40),
    align_corners=st.booleans(),
)
def test_torch_linear_weights_match_the_closed_form(
    in_size, out_size, align_corners
):
    expected = linear_weights(in_size, out_size, align_corners)
    assert torch.allclose(
        ch02._torch_linear_weights(in_size, out_size, align_corners),
        expected,
        atol=1e-12,
    )


def test_minigen_chapter_2_code_passes_its_own_exercises():
    from minigen.ops import interp, upsample

    assert check_bilinear_weights(
        lambda i, o, a: interp.resample_matrix(i, o, "bilinear", align_corners=a)
    ).passed
    assert check_pixel_shuffle(upsample.pixel_shuffle).passed
