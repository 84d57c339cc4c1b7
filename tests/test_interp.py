import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from minigen.data.photo import grace_hopper
from minigen.ops.interp import (
    cubic_kernel,
    explain_pil_difference,
    interpolate,
    linear_kernel,
    pil_resize,
    resample_matrix,
    source_coordinates,
)

sizes = st.integers(1, 12)
out_sizes = st.integers(1, 25)


@st.composite
def resize_options(draw: st.DrawFn) -> dict:
    """A mode with the options that F.interpolate accepts for it."""
    mode = draw(
        st.sampled_from(["nearest", "nearest-exact", "bilinear", "bicubic"])
    )
    if mode.startswith("nearest"):
        return dict(mode=mode)
    return dict(
        mode=mode, align_corners=draw(st.booleans()), antialias=draw(st.booleans())
    )


def torch_aa_width_one_bug(
    options: dict, in_height: int, out_height: int, out_width: int
) -> bool:
    """torch 2.x CPU antialias copies the first output row to all rows when the output width is 1."""
    return (
        options.get("antialias", False)
        and out_width == 1
        and out_height != in_height
    )


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 2), sizes, sizes, out_sizes, out_sizes, resize_options())
def test_interpolate_matches_torch_for_sizes(
    batch, height, width, out_height, out_width, options
):
    assume(not torch_aa_width_one_bug(options, height, out_height, out_width))
    x = torch.rand(batch, 2, height, width, dtype=torch.float64)
    expected = F.interpolate(x, size=(out_height, out_width), **options)
    torch.testing.assert_close(
        interpolate(x, (out_height, out_width), **options),
        expected,
        rtol=0,
        atol=1e-12,
    )


@settings(max_examples=300, deadline=None)
@given(
    sizes,
    sizes,
    st.floats(0.2, 4.0),
    st.floats(0.2, 4.0),
    st.booleans(),
    resize_options(),
)
def test_interpolate_matches_torch_for_scale_factors(
    height, width, scale_h, scale_w, recompute, options
):
    out_height, out_width = (
        math.floor(height * scale_h),
        math.floor(width * scale_w),
    )
    assume(out_height >= 1 and out_width >= 1)
    assume(not torch_aa_width_one_bug(options, height, out_height, out_width))
    x = torch.rand(1, 2, height, width, dtype=torch.float64)
    kwargs = dict(
        scale_factor=(scale_h, scale_w), recompute_scale_factor=recompute, **options
    )
    expected = F.interpolate(x, **kwargs)
    torch.testing.assert_close(
        interpolate(x, **kwargs), expected, rtol=0, atol=1e-12
    )


def test_interpolate_float32_and_plain_scale_factor():
    x = torch.rand(2, 3, 9, 7)
    for mode in ("bilinear", "bicubic"):
        torch.testing.assert_close(
            interpolate(x, scale_factor=2.5, mode=mode),
            F.interpolate(x, scale_factor=2.5, mode=mode),
        )
    torch.testing.assert_close(
        interpolate(x, size=4, mode="nearest"),
        F.interpolate(x, size=4, mode="nearest"),
    )


@settings(max_examples=200, deadline=None)
@given(sizes, out_sizes, resize_options())
def test_resample_matrix_rows(in_size, out_size, options):
    matrix = resample_matrix(in_size, out_size, **options)
    assert matrix.shape == (out_size, in_size)
    if options["mode"].startswith("nearest"):
        assert torch.equal(
            (matrix == 1).sum(dim=1), torch.ones(out_size, dtype=torch.long)
        )
        assert torch.equal(
            (matrix == 0).sum(dim=1), torch.full((out_size,), in_size - 1)
        )
    else:  # every output is a weighted average: the weights sum to 1
        torch.testing.assert_close(
            matrix.sum(dim=1), torch.ones(out_size, dtype=torch.float64)
        )


def test_bicubic_upscale_interior_uses_four_keys_weights():
    matrix = resample_matrix(
        8, 16, "bicubic"
    )  # half-pixel: output 7 sits at 7.5 / 2 - 0.5 = 3.25
    expected = cubic_kernel(
        torch.tensor([1.25, 0.25, -0.75, -1.75], dtype=torch.float64), a=-0.75
    )
    torch.testing.assert_close(matrix[7, 2:6], expected)
    assert matrix[7, :2].abs().sum() == 0 and matrix[7, 6:].abs().sum() == 0


@pytest.mark.parametrize("a", [-0.5, -0.75, -1.0])
def test_cubic_kernel_closed_form_properties(a):
    assert cubic_kernel(torch.tensor(0.0), a) == 1
    for knot in (-2.0, -1.0, 1.0, 2.0, 2.5, -3.0):
        assert cubic_kernel(torch.tensor(knot), a) == 0
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    taps = torch.arange(
        -2, 4, dtype=torch.float64
    )  # enough integer neighbours to cover |t - k| < 2
    weights = cubic_kernel(t[:, None] - taps, a)  # (101, 6)
    torch.testing.assert_close(
        weights.sum(dim=1), torch.ones_like(t)
    )  # partition of unity
    torch.testing.assert_close(cubic_kernel(-t, a), cubic_kernel(t, a))  # symmetric
    line_error = (weights @ taps - t).abs().max()
    quadratic_error = (weights @ taps**2 - t**2).abs().max()
    # Keys (1981): only a = -1/2 reproduces lines and parabolas (third-order accurate); others only constants
    assert bool(line_error < 1e-12) is bool(quadratic_error < 1e-12) is (a == -0.5)


def test_linear_kernel_closed_form():
    t = torch.tensor([-1.5, -1.0, -0.25, 0.0, 0.5, 1.0, 3.0])
    torch.testing.assert_close(
        linear_kernel(t), torch.tensor([0.0, 0.0, 0.75, 1.0, 0.5, 0.0, 0.0])
    )
    s = torch.linspace(0, 1, 11)
    torch.testing.assert_close(
        linear_kernel(s[:, None] - torch.arange(-1.0, 3.0)).sum(dim=1),
        torch.ones(11),
    )


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 30), st.integers(2, 30))
def test_source_coordinates(in_size, out_size):
    corners = source_coordinates(in_size, out_size, align_corners=True)
    torch.testing.assert_close(
        corners[[0, -1]], torch.tensor([0.0, in_size - 1], dtype=torch.float64)
    )
    centres = source_coordinates(
        in_size, out_size, align_corners=False
    )  # symmetric about the image centre
    torch.testing.assert_close(
        centres + centres.flip(0), torch.full_like(centres, in_size - 1)
    )
    torch.testing.assert_close(
        source_coordinates(4, 10, False, scale=2.5),
        (torch.arange(10.0).double() + 0.5) / 2.5 - 0.5,
    )


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    return grace_hopper()[
        :, ::2, ::2
    ].contiguous()  # (3, 300, 256): half size keeps the test fast


@pytest.mark.parametrize("size", [(97, 80), (410, 333)])  # down- and upscaling
def test_pil_bicubic_is_antialiased_keys_with_a_minus_half(photo, size):
    ours = interpolate(photo[None], size, mode="bicubic", a=-0.5, antialias=True)[0]
    torch.testing.assert_close(
        ours.float(),
        pil_resize(photo, size, "bicubic", as_uint8=False),
        rtol=0,
        atol=1e-5,
    )
    gap = (
        ours.clamp(0, 1) - pil_resize(photo, size, "bicubic")
    ).abs() * 255  # in 8-bit levels
    # Measured: mean 0.27-0.29 levels, max 4-16 levels (PIL rounds and clips to uint8 after each axis).
    assert gap.mean() < 0.4 and gap.max() < 20


def test_explain_pil_difference_isolates_the_causes(photo):
    table = explain_pil_difference(photo, (97, 80), "bicubic")
    means = [row["mean"] for row in table.values()]
    assert (
        means[0] > means[1] > 10 * means[2]
    )  # a = -0.5 helps, antialias accounts for most of the gap
    assert list(table.values())[-1]["max"] < 1e-5  # nothing left but uint8 rounding


def test_pil_nearest_is_nearest_exact_up_to_ties():
    x = torch.rand(
        1, 10, 12
    )  # 10 -> 4 and 12 -> 8 put no output centre on a cell edge (a tie)
    same = (
        pil_resize(x, (4, 8), "nearest", as_uint8=False)
        == interpolate(x[None], (4, 8), mode="nearest-exact")[0]
    )
    assert same.all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(), "exactly one of size and scale_factor"),
        (dict(size=4, scale_factor=2.0), "exactly one of size and scale_factor"),
        (
            dict(size=4, mode="area"),
            r"^mode must be one of 'nearest', 'nearest-exact', 'bilinear', 'bicubic' \(or 'linear', 'cubic'\), got 'area'",
        ),
        (
            dict(size=4, mode="nearest", align_corners=False),
            "align_corners only applies",
        ),
        (dict(size=4, mode="bilinear", a=-0.5), "only applies to bicubic"),
        (dict(size=0), "size \\(height\\) must be an int >= 1"),
        (dict(size=(4, 0)), r"^size \(width\) must be an int >= 1, got 0"),
        (dict(size=10**9), r"^size \(height\) must be an int <= 1,000,000"),
        (
            dict(size=(10**5, 10**5)),
            r"^an output of 100000x100000 pixels is more than 100,000,000 per channel",
        ),
        (
            dict(scale_factor=10**7),
            r"^an output of 50000000x50000000 pixels is more than",
        ),
        (dict(scale_factor=0.1), "empty output"),
        (dict(scale_factor=-2.0), r"^scale_factor must lie in \(0, inf\), got -2"),
        (
            dict(scale_factor=float("nan")),
            "^scale_factor must be a finite number, got nan",
        ),
        (
            dict(scale_factor=(2.0, float("inf"))),
            "^scale_factor must be a finite number, got inf",
        ),
        (dict(size=(2, 3, 4)), "pair \\(height, width\\)"),
    ],
)
def test_interpolate_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        interpolate(torch.rand(1, 1, 5, 5), **kwargs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(size=4, mode="bilinear", align_corners="no"),
            "^align_corners must be True or False, got str 'no'",
        ),
        (
            dict(size=4, mode="bilinear", align_corners=0),
            "^align_corners must be True or False, got int 0",
        ),
        (
            dict(size=4, mode="bicubic", antialias="yes"),
            "^antialias must be True or False, got str 'yes'",
        ),
        (
            dict(size=4, mode="nearest", antialias=1),
            "^antialias must be True or False, got int 1",
        ),
        (
            dict(scale_factor=2.0, recompute_scale_factor=None),
            "^recompute_scale_factor must be True or False",
        ),
        (dict(size=4, mode=None), "^mode must be str, got NoneType"),
        (dict(size=4, mode=["bilinear"]), "^mode must be str, got list"),
        (dict(size=4.0), r"^size \(height\) must be an int, got float 4.0"),
        (dict(size=(4, "4")), r"^size \(width\) must be an int, got str '4'"),
        (dict(scale_factor="2"), "^scale_factor must be a number, got str '2'"),
        (dict(size=4, mode="bicubic", a="-0.5"), "^a must be a number, got str"),
    ],
)
def test_interpolate_rejects_wrong_types(kwargs, message):
    with pytest.raises(TypeError, match=message):
        interpolate(torch.rand(1, 1, 5, 5), **kwargs)


def test_interpolate_rejects_a_non_finite_cubic_parameter():
    with pytest.raises(ValueError, match="^a must be a finite number, got nan"):
        interpolate(torch.rand(1, 1, 5, 5), 4, mode="bicubic", a=float("nan"))


@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda: resample_matrix(4, 8, "bilinear", align_corners="no"),
            TypeError,
            "^align_corners must be True or False",
        ),
        (
            lambda: resample_matrix(4, 8, "bilinear", antialias=None),
            TypeError,
            "^antialias must be True or False",
        ),
        (
            lambda: resample_matrix(4.0, 8, "bilinear"),
            TypeError,
            "^in_size must be an int, got float 4.0",
        ),
        (
            lambda: resample_matrix(4, 10**9, "nearest"),
            ValueError,
            "^out_size must be an int <= 1,000,000",
        ),
        (
            lambda: resample_matrix(10**6, 10**6, "bilinear"),
            ValueError,
            "^a 1000000x1000000 resampling matrix has more than",
        ),
        (
            lambda: resample_matrix(4, 8, "bilinear", scale=float("inf")),
            ValueError,
            "^scale must be a finite number",
        ),
        (
            lambda: resample_matrix(4, 8, "bilinear", scale=0.0),
            ValueError,
            r"^scale must lie in \(0, inf\), got 0",
        ),
        (
            lambda: source_coordinates(4, 8, align_corners="yes"),
            TypeError,
            "^align_corners must be True or False",
        ),
        (
            lambda: source_coordinates(4, 0, align_corners=False),
            ValueError,
            "^out_size must be an int >= 1, got 0",
        ),
        (
            lambda: cubic_kernel([0.5]),
            TypeError,
            "^t must be a torch.Tensor, got list",
        ),
        (
            lambda: cubic_kernel(torch.zeros(3), a=float("inf")),
            ValueError,
            "^a must be a finite number",
        ),
        (
            lambda: linear_kernel(0.5),
            TypeError,
            "^t must be a torch.Tensor, got float",
        ),
        (
            lambda: interpolate(torch.rand(5, 5).tolist(), 4),
            TypeError,
            r"^x must be a torch.Tensor \(B, C, H, W\), got list",
        ),
        (
            lambda: pil_resize(torch.rand(3, 4, 4), (8, 8), as_uint8="no"),
            TypeError,
            "^as_uint8 must be True or False",
        ),
        (
            lambda: pil_resize(torch.rand(3, 4, 4), (8, 8.5)),
            TypeError,
            r"^size \(width\) must be an int, got float",
        ),
        (
            lambda: pil_resize(torch.full((3, 4, 4), float("nan")), (8, 8)),
            ValueError,
            "^x holds 48 NaN or infinite values",
        ),
        (
            lambda: pil_resize(torch.rand(1, 3, 4, 4), (8, 8)),
            ValueError,
            r"^x must be a 3-d tensor \(C, H, W\)",
        ),
        (
            lambda: pil_resize(torch.rand(0, 4, 4), (8, 8)),
            ValueError,
            r"^x must hold at least one pixel, got shape \(0, 4, 4\)",
        ),
        (
            lambda: pil_resize(torch.rand(3, 4, 4), (10**5, 10**4)),
            ValueError,
            "^an output of 100000x10000 pixels is more than",
        ),
        (
            lambda: explain_pil_difference(torch.rand(3, 4, 4).numpy(), (8, 8)),
            TypeError,
            "^x must be a torch.Tensor",
        ),
        (
            lambda: explain_pil_difference(torch.rand(3, 4, 4), (8, 8), "nearest"),
            ValueError,
            "^mode must be 'bilinear' or 'bicubic'",
        ),
    ],
)
def test_public_functions_check_their_arguments(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_bad_inputs_fail_clearly():
    with pytest.raises(TypeError, match="floating-point"):
        interpolate(torch.ones(1, 1, 4, 4, dtype=torch.uint8), size=8)
    with pytest.raises(
        ValueError,
        match=r"^x must be a 4-d tensor \(B, C, H, W\), got shape \(4, 4\)",
    ):
        interpolate(torch.rand(4, 4), size=8)
    with pytest.raises(ValueError, match="only apply to bilinear and bicubic"):
        resample_matrix(4, 8, "nearest", antialias=True)
    with pytest.raises(ValueError, match="PIL has no 'nearest-exact'"):
        pil_resize(torch.rand(3, 4, 4), (8, 8), "nearest-exact")
    with pytest.raises(ValueError, match=r"lie in \[0, 1\]"):
        pil_resize(torch.rand(3, 4, 4) + 1, (8, 8))


@pytest.mark.parametrize("mode", ["nearest", "bilinear", "bicubic"])
def test_unchanged_size_with_scale_factor_follows_torch(mode):
    x = torch.rand(
        1, 1, 5, 5, dtype=torch.float64
    )  # 5 * 1.1 -> 5: torch copies nearest/bilinear, shifts bicubic
    ours = interpolate(x, scale_factor=1.1, mode=mode)
    torch.testing.assert_close(ours, F.interpolate(x, scale_factor=1.1, mode=mode))
    assert torch.equal(ours, x) == (mode != "bicubic")
