"""minigen.alias: spectra on sinusoids (closed forms), Parseval, downsamplers against torch and each other."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from minigen.ops.alias import (
    DOWNSAMPLERS,
    aliasing_report,
    avg_pool,
    bilinear_antialias,
    binomial_taps,
    blur_subsample,
    box_kernel,
    chirp_1d,
    energy_above,
    frequency_grid,
    gaussian_taps,
    ideal_downsample,
    ideal_lowpass,
    power_spectrum,
    strided_conv,
    subsample,
    zone_plate,
)

SWEEP = settings(max_examples=40, deadline=None)
f64 = torch.float64


def cosine(height: int, width: int, u: int, v: int) -> torch.Tensor:
    """cos(2 pi (u h / H + v w / W)), (1, 1, H, W): frequency (u/H, v/W) cycles per pixel."""
    h = torch.arange(height, dtype=f64)[:, None]
    w = torch.arange(width, dtype=f64)[None, :]
    return torch.cos(2 * math.pi * (u * h / height + v * w / width))[None, None]


even_sizes = st.integers(2, 16).map(lambda n: 2 * n)


# --- test images ---


def test_zone_plate_local_frequency_reaches_nyquist_at_the_edge():
    plate = zone_plate(64)[0, 0].double()
    assert plate.shape == (64, 64) and plate.min() >= 0 and plate.max() <= 1
    # Along the centre row the phase is pi k x^2 with k = 1/64: near x = -32 it steps by about pi
    # per pixel (local frequency k |x| = 0.5, Nyquist), so the samples alternate between 1 and 0.
    torch.testing.assert_close(
        plate[32, :3], torch.tensor([1.0, 0.0, 1.0], dtype=f64), atol=0.02, rtol=0
    )
    assert plate[32, 32] == 1.0  # the centre: phase 0
    assert (
        plate[32, 30:35] > 0.9
    ).all()  # and near it the frequency is low: no oscillation


def test_zone_plate_puts_three_quarters_of_its_energy_above_half_nyquist():
    # Local frequency (k x, k y) exceeds 0.25 where max(|x|, |y|) > size/4: 3/4 of the area.
    assert energy_above(zone_plate(128), 0.25).item() == pytest.approx(
        0.75, abs=0.03
    )
    assert energy_above(zone_plate(128), 0.5).item() == 0.0


def test_chirp_frequency_sweeps_to_nyquist():
    chirp = chirp_1d(256)
    assert chirp.shape == (256,) and chirp[0] == 1.0
    first_half, second_half = chirp[:128] - chirp.mean(), chirp[128:] - chirp.mean()

    # Frequency k t grows, so the second half oscillates more: more sign changes.
    def changes(s):
        return (s[1:] * s[:-1] < 0).sum()

    assert changes(second_half) > 2 * changes(first_half)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: zone_plate(1), ValueError, "^size must be an int >= 2, got 1"),
        (lambda: zone_plate(0), ValueError, "^size must be an int >= 2, got 0"),
        (
            lambda: zone_plate(10**9),
            ValueError,
            "^size must be an int <= 4,096, got 1,000,000,000",
        ),
        (lambda: zone_plate(2.5), TypeError, "^size must be an int, got float 2.5"),
        (
            lambda: zone_plate(True),
            TypeError,
            "^size must be an int, got bool True",
        ),
        (
            lambda: zone_plate(16, k=float("nan")),
            ValueError,
            "^k must be a finite number, got nan",
        ),
        (
            lambda: zone_plate(16, k=-0.1),
            ValueError,
            r"^k must lie in \(0, inf\), got -0.1",
        ),
        (lambda: chirp_1d(1), ValueError, "^n must be an int >= 2, got 1"),
        (lambda: chirp_1d(10**9), ValueError, "^n must be an int <= 1,000,000"),
        (
            lambda: chirp_1d(16, k=float("inf")),
            ValueError,
            "^k must be a finite number, got inf",
        ),
        (lambda: chirp_1d(16, k="0.1"), TypeError, "^k must be a number, got str"),
        (
            lambda: frequency_grid(8, 0),
            ValueError,
            "^width must be an int >= 1, got 0",
        ),
        (
            lambda: frequency_grid(8.0, 8),
            TypeError,
            "^height must be an int, got float",
        ),
        (lambda: box_kernel(10**9), ValueError, "^size must be an int <= 4,096"),
        (lambda: box_kernel(0), ValueError, "^size must be an int >= 1, got 0"),
        (
            lambda: binomial_taps(10**9),
            ValueError,
            "^n must be an int <= 64, got 1,000,000,000",
        ),
        (lambda: binomial_taps(65), ValueError, "^n must be an int <= 64, got 65"),
        (lambda: binomial_taps(3.0), TypeError, "^n must be an int, got float 3.0"),
        (
            lambda: gaussian_taps(float("nan")),
            ValueError,
            "^sigma must be a finite number, got nan",
        ),
        (
            lambda: gaussian_taps(float("inf")),
            ValueError,
            "^sigma must be a finite number, got inf",
        ),
        (
            lambda: gaussian_taps(0.0),
            ValueError,
            r"^sigma must lie in \(0, 333333\], got 0",
        ),
        (
            lambda: gaussian_taps(1e9),
            ValueError,
            r"^sigma must lie in \(0, 333333\], got 1e\+09",
        ),
        (
            lambda: gaussian_taps("1"),
            TypeError,
            "^sigma must be a number, got str '1'",
        ),
        (
            lambda: gaussian_taps(1.0, radius=-1),
            ValueError,
            "^radius must be an int >= 0, got -1",
        ),
        (
            lambda: gaussian_taps(1.0, radius=10**9),
            ValueError,
            "^radius must be an int <= 1,000,000",
        ),
    ],
)
def test_test_images_and_filters_reject_bad_arguments(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_binomial_taps_up_to_the_limit_are_exact():
    taps = binomial_taps(
        64
    ).double()  # C(63, i) / 2^63: every coefficient below 2^63
    expected = (
        torch.tensor([math.comb(63, i) for i in range(64)], dtype=f64) / 2.0**63
    )
    torch.testing.assert_close(taps, expected.float().double())
    assert taps.sum().item() == pytest.approx(1.0)


# --- spectra ---


@given(height=st.integers(4, 20), width=st.integers(4, 20), data=st.data())
@SWEEP
def test_a_cosine_peaks_at_its_two_bins(height, width, data):
    u = data.draw(st.integers(1, (height - 1) // 2))
    v = data.draw(st.integers(0, (width - 1) // 2))
    power = power_spectrum(cosine(height, width, u, v))[0]
    fy, fx = frequency_grid(height, width)
    peaks = power > 1e-9 * power.max()
    assert peaks.sum() == 2
    rows, cols = height // 2, width // 2  # the zero frequency's bin
    assert set(map(tuple, peaks.nonzero().tolist())) == {
        (rows + u, cols + v),
        (rows - u, cols - v),
    }
    torch.testing.assert_close(
        fy[rows + u, cols + v], torch.tensor(u / height, dtype=f64)
    )
    torch.testing.assert_close(
        fx[rows + u, cols + v], torch.tensor(v / width, dtype=f64)
    )
    # Each peak holds half the energy: sum cos^2 = HW / 2.
    torch.testing.assert_close(
        power[peaks], torch.full((2,), height * width / 4, dtype=f64)
    )


def test_frequency_grid_has_zero_at_the_centre_and_nyquist_first():
    fy, fx = frequency_grid(8, 5)
    assert fy[4, 2] == 0 and fx[4, 2] == 0
    assert fy[0, 0] == -0.5 and fx[0, 0] == -0.4
    assert fx[0].tolist() == [-0.4, -0.2, 0.0, 0.2, 0.4]


@given(
    batch=st.integers(1, 3),
    channels=st.integers(1, 3),
    height=st.integers(1, 12),
    width=st.integers(1, 12),
)
@SWEEP
def test_parseval(batch, channels, height, width):
    x = torch.randn(batch, channels, height, width, dtype=f64)
    torch.testing.assert_close(
        power_spectrum(x).sum(dim=(-2, -1)), x.pow(2).sum(dim=(-2, -1)).mean(dim=1)
    )


def test_energy_above_on_pure_sinusoids():
    high = cosine(
        32, 32, 12, 0
    )  # 0.375 cycles/pixel: above a x2 downsample's Nyquist
    low = cosine(32, 32, 4, 4)  # 0.125: below
    both = high + low
    assert energy_above(high, 0.25).item() == pytest.approx(1.0)
    assert energy_above(low, 0.25).item() == pytest.approx(0.0, abs=1e-12)
    assert energy_above(both, 0.25).item() == pytest.approx(0.5)
    assert energy_above(torch.cat([high, low]), 0.25).tolist() == pytest.approx(
        [1.0, 0.0], abs=1e-12
    )


def test_energy_above_ignores_the_mean():
    assert energy_above(cosine(16, 16, 6, 0) + 10.0, 0.25).item() == pytest.approx(
        1.0
    )


@given(
    height=st.integers(4, 24),
    width=st.integers(4, 24),
    cutoff=st.floats(0.05, 0.45),
)
@SWEEP
def test_band_limited_noise_has_no_energy_above_the_cutoff(height, width, cutoff):
    assume(cutoff >= 1 / min(height, width))  # some frequency besides DC survives
    noise = torch.randn(2, 3, height, width, dtype=f64)
    band_limited = ideal_lowpass(noise, cutoff)
    assert energy_above(band_limited, cutoff).max().item() < 1e-12
    torch.testing.assert_close(
        ideal_lowpass(noise, 0.5), noise
    )  # 0.5 is Nyquist: nothing removed


def test_energy_above_rejects_bad_input():
    with pytest.raises(ValueError, match="cutoff must be a frequency in"):
        energy_above(torch.randn(1, 1, 4, 4), 0.6)
    with pytest.raises(
        ValueError, match="^cutoff must be a finite number, got nan"
    ):
        energy_above(torch.randn(1, 1, 4, 4), float("nan"))
    with pytest.raises(TypeError, match="^cutoff must be a number, got NoneType"):
        energy_above(torch.randn(1, 1, 4, 4), None)
    with pytest.raises(
        ValueError, match="^cutoff must be a finite number, got inf"
    ):
        ideal_lowpass(torch.randn(1, 1, 4, 4), float("inf"))
    with pytest.raises(ValueError, match="constant"):
        energy_above(torch.ones(1, 1, 4, 4), 0.25)
    with pytest.raises(ValueError, match=r"^x must be a 4-d tensor \(B, C, H, W\)"):
        power_spectrum(torch.randn(4, 4))
    with pytest.raises(TypeError, match="^x must be a torch.Tensor"):
        energy_above([[0.0, 1.0]], 0.25)
    with pytest.raises(TypeError, match="floating-point"):
        power_spectrum(torch.ones(1, 1, 4, 4, dtype=torch.int64))
    with pytest.raises(
        ValueError,
        match=r"^x must hold at least one image, got shape \(0, 1, 4, 4\)",
    ):
        power_spectrum(torch.ones(0, 1, 4, 4))


# --- downsamplers ---


@given(
    batch=st.integers(1, 2),
    channels=st.integers(1, 3),
    height=even_sizes,
    width=even_sizes,
)
@SWEEP
def test_every_downsampler_halves_the_size(batch, channels, height, width):
    x = torch.randn(batch, channels, height, width)
    for name, downsample in {
        **DOWNSAMPLERS,
        "ideal": ideal_downsample,
        "torch": bilinear_antialias,
    }.items():
        assert downsample(x, factor=2).shape == (
            batch,
            channels,
            height // 2,
            width // 2,
        ), name


@given(factor=st.integers(2, 4), height=st.integers(2, 5), width=st.integers(2, 5))
@SWEEP
def test_other_factors(factor, height, width):
    x = torch.randn(1, 2, factor * height, factor * width, dtype=f64)
    for downsample in DOWNSAMPLERS.values():
        assert downsample(x, factor=factor).shape == (1, 2, height, width)
    torch.testing.assert_close(avg_pool(x, factor), F.avg_pool2d(x, factor))


@pytest.mark.parametrize(
    "downsample", [*DOWNSAMPLERS.values(), ideal_downsample, bilinear_antialias]
)
def test_odd_sizes_are_refused(downsample):
    with pytest.raises(
        ValueError, match="divisible by 2, got 7x8; crop or pad to 6x8"
    ):
        downsample(torch.randn(1, 1, 7, 8), factor=2)


@given(
    batch=st.integers(1, 2),
    channels=st.integers(1, 3),
    height=even_sizes,
    width=even_sizes,
)
@SWEEP
def test_avg_pool_equals_torch_and_the_two_tap_blur_and_a_2x2_box_conv(
    batch, channels, height, width
):
    x = torch.randn(batch, channels, height, width, dtype=f64)
    expected = F.avg_pool2d(x, 2)
    torch.testing.assert_close(avg_pool(x), expected)
    torch.testing.assert_close(
        blur_subsample(x, binomial_taps(2).double()), expected
    )  # [1, 1]/2 is the box
    torch.testing.assert_close(strided_conv(x, box_kernel(2).double()), expected)


@given(
    channels=st.integers(1, 3),
    height=st.integers(3, 8),
    width=st.integers(3, 8),
    n=st.sampled_from([1, 3, 5]),
)
@SWEEP
def test_blur_subsample_equals_a_2d_blur_with_reflect_padding_then_subsampling(
    channels, height, width, n
):
    x = torch.randn(1, channels, 2 * height, 2 * width, dtype=f64)
    taps = binomial_taps(n).double()
    kernel = torch.outer(taps, taps).expand(
        channels, 1, n, n
    )  # the separable filter as one 2-D kernel
    pad = (n - 1) // 2
    blurred = F.conv2d(
        F.pad(x, (pad,) * 4, mode="reflect"), kernel, groups=channels
    )  # same size as x
    torch.testing.assert_close(blur_subsample(x, taps), blurred[..., ::2, ::2])


def test_strided_conv_equals_torch_conv2d():
    x, kernel = torch.randn(2, 3, 10, 12, dtype=f64), torch.randn(3, 3, dtype=f64)
    expected = F.conv2d(x, kernel.expand(3, 1, 3, 3), stride=2, padding=1, groups=3)
    torch.testing.assert_close(strided_conv(x, kernel), expected)


def test_blur_keeps_a_constant_image():
    x = torch.full((1, 2, 8, 8), 0.7, dtype=f64)
    torch.testing.assert_close(blur_subsample(x), x[..., ::2, ::2])
    torch.testing.assert_close(blur_subsample(x, sigma=1.0), x[..., ::2, ::2])


def test_filter_taps():
    assert binomial_taps(3).tolist() == [0.25, 0.5, 0.25]
    assert (binomial_taps(5) * 16).tolist() == [1, 4, 6, 4, 1]
    g = gaussian_taps(1.0)
    assert (
        g.numel() == 7
        and g.sum().item() == pytest.approx(1.0)
        and torch.equal(g, g.flip(0))
    )


def test_blur_subsample_rejects_bad_filters():
    x = torch.randn(1, 1, 8, 8)
    with pytest.raises(ValueError, match="sum to 1"):
        blur_subsample(x, torch.tensor([1.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match="either taps or sigma"):
        blur_subsample(x, binomial_taps(3), sigma=1.0)
    with pytest.raises(
        ValueError, match=r"^taps must be a 1-d tensor \(n,\), got shape \(3, 3\)"
    ):
        blur_subsample(x, torch.ones(3, 3) / 9)
    with pytest.raises(
        TypeError, match=r"^taps must be a torch.Tensor \(n,\), got list"
    ):
        blur_subsample(x, [0.25, 0.5, 0.25])
    with pytest.raises(ValueError, match="^taps holds 1 NaN or infinite values"):
        blur_subsample(x, torch.tensor([0.5, float("nan"), 0.5]))
    with pytest.raises(ValueError, match="^sigma must be a finite number"):
        blur_subsample(x, sigma=float("nan"))
    with pytest.raises(ValueError, match="reflect padding"):
        blur_subsample(torch.randn(1, 1, 2, 2), gaussian_taps(2.0))
    with pytest.raises(ValueError, match=r"^kernel must be a 2-d tensor \(k, k\)"):
        strided_conv(x, torch.ones(3))
    with pytest.raises(
        ValueError,
        match=r"^kernel must be a square 2-D tensor \(k, k\), got shape \(3, 2\)",
    ):
        strided_conv(x, torch.ones(3, 2) / 6)
    with pytest.raises(TypeError, match="^kernel must be a torch.Tensor"):
        strided_conv(x, 1.0)


@pytest.mark.parametrize(
    "downsample", [*DOWNSAMPLERS.values(), ideal_downsample, bilinear_antialias]
)
def test_downsamplers_check_the_factor(downsample):
    x = torch.randn(1, 1, 8, 8)
    with pytest.raises(TypeError, match="^factor must be an int, got float 2.0"):
        downsample(x, factor=2.0)
    with pytest.raises(ValueError, match="^factor must be an int >= 2, got 1"):
        downsample(x, factor=1)
    with pytest.raises(ValueError, match="^factor must be an int <= 1,000,000"):
        downsample(x, factor=10**9)
    with pytest.raises(
        TypeError, match=r"^x must be a torch.Tensor \(B, C, H, W\), got list"
    ):
        downsample(x.tolist(), factor=2)


# --- aliasing ---


def test_subsampling_folds_a_high_frequency_onto_a_low_one():
    # 0.375 cycles/pixel subsampled by 2 is 0.75 cycles per new pixel, which aliases to -0.25.
    folded = power_spectrum(subsample(cosine(32, 32, 12, 0)))[0]
    fy, fx = frequency_grid(16, 16)
    peaks = folded > 1e-9 * folded.max()
    assert (
        sorted(fy[peaks].tolist()) == [-0.25, 0.25] and fx[peaks].abs().max() == 0
    )


def test_subsampling_a_band_limited_image_is_the_ideal_downsample():
    x = torch.randn(2, 3, 16, 20, dtype=f64)
    band_limited = ideal_lowpass(x, 0.25)
    torch.testing.assert_close(subsample(band_limited), ideal_downsample(x))
    report = aliasing_report(band_limited)
    assert (
        report["subsample"]["after"] < 1e-20
        and report["subsample"]["before"] < 1e-20
    )


def test_blur_subsample_of_a_zone_plate_aliases_far_less_than_subsampling():
    report = aliasing_report(zone_plate(128))
    assert set(report) == {*DOWNSAMPLERS, "bilinear antialias (torch)"}
    assert report["subsample"]["before"] == pytest.approx(0.75, abs=0.03)
    blur = report["blur + subsample [1,4,6,4,1]/16"]
    assert blur["aliased"] < 0.01 * report["subsample"]["aliased"]
    assert blur["after"] < 0.2 * report["subsample"]["after"]
    assert (
        report["bilinear antialias (torch)"]["aliased"]
        < 0.05 * report["subsample"]["aliased"]
    )
    # Plain subsampling keeps exactly the ideal's in-band part, so all its error is alias.
    assert report["subsample"]["after"] == pytest.approx(
        report["subsample"]["aliased"]
    )


def test_aliasing_report_rejects_a_constant_image():
    with pytest.raises(ValueError, match="constant"):
        aliasing_report(torch.ones(1, 1, 8, 8))
