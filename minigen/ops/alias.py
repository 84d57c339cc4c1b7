"""Aliasing, and downsampling that avoids it: test images, spectra, downsamplers.

Sampling theorem (Nyquist–Shannon): keeping every `factor`-th pixel can represent
frequencies up to 0.5 / factor cycles per original pixel; anything above folds back
("aliases") onto a lower one. Plain subsampling and strided convolutions let it
fold; blurring first (a low-pass filter) removes it. The blur-then-subsample
downsampler is R. Zhang's BlurPool, "Making convolutional networks shift-invariant
again", ICML 2019 (binomial filters [1, 2, 1]/4, [1, 4, 6, 4, 1]/16, ...).

Frequencies are in cycles per pixel, in [-0.5, 0.5). Spectra use the orthonormal
2-D DFT, so Parseval holds as sum |X|^2 = sum |x|^2. The DFT sees the image as
periodic, so its borders meet.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from einops import rearrange, reduce

from minigen.core.validators import (
    MAX_SIZE,
    check_float,
    check_int,
    check_positive,
    check_tensor,
)
from minigen.ops.conv import avg_pool2d, conv2d

# fn(x, factor=...): (B, C, H, W) -> (B, C, H/factor, W/factor)
Downsampler = Callable[..., torch.Tensor]
# the largest square made here (image, kernel): 128 MB float64
MAX_IMAGE_SIDE = 4096


# --- test images ------------------------------------------------------------------


def chirp_1d(n: int, k: float | None = None) -> torch.Tensor:
    """A 1-D chirp in [0, 1], shape (n,): 0.5 + 0.5 cos(pi k t^2) for t = 0 .. n-1.

    Its phase pi k t^2 has derivative 2 pi k t, so the local frequency is k t cycles
    per pixel: it sweeps from 0 up to k (n - 1). The default k = 0.5 / (n - 1) ends
    exactly at Nyquist (0.5).
    """
    n = check_int("n", n, 2)
    k = 0.5 / (n - 1) if k is None else check_positive("k", k)
    t = torch.arange(n, dtype=torch.float64)
    chirp = 0.5 + 0.5 * torch.cos(math.pi * k * t**2)  # local frequency k t
    return chirp.float()


def zone_plate(size: int, k: float | None = None) -> torch.Tensor:
    """A circular zone plate in [0, 1]: 0.5 + 0.5 cos(pi k r^2), (1, 1, size, size).

    r^2 = x^2 + y^2 with x, y = -size/2 .. size/2 - 1 pixels from the centre. The
    local frequency is the gradient of the phase over 2 pi: (fx, fy) = (k x, k y)
    cycles per pixel, so it grows linearly from the centre. The default k = 1 / size
    makes max(|fx|, |fy|) reach Nyquist (0.5) at the left and top edges: every
    frequency is representable, and halving the resolution puts three quarters of
    the image (where max(|x|, |y|) > size/4) above the new Nyquist.
    """
    size = check_int("size", size, 2, MAX_IMAGE_SIDE)
    k = 1.0 / size if k is None else check_positive("k", k)
    offsets = torch.arange(size, dtype=torch.float64) - size / 2  # centre at 0
    r2 = offsets[:, None] ** 2 + offsets[None, :] ** 2  # (H, W)
    plate = 0.5 + 0.5 * torch.cos(math.pi * k * r2)  # local frequency (k x, k y)
    return rearrange(plate.float(), "h w -> 1 1 h w")


# --- spectra ----------------------------------------------------------------------


def _check_images(x: torch.Tensor) -> torch.Tensor:
    """x as a non-empty, floating-point (B, C, H, W) tensor."""
    check_tensor("x", x, dims=4, floating=True, shape="(B, C, H, W)")
    if x.numel() == 0:
        raise ValueError(
            f"x must hold at least one image, got shape {tuple(x.shape)}"
        )
    return x


def frequency_grid(height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Centred DFT frequencies (fy, fx), each (H, W), in cycles per pixel.

    They match power_spectrum: the zero frequency sits at (H // 2, W // 2); the
    radial frequency is torch.hypot(fy, fx).
    """
    height, width = check_int("height", height), check_int("width", width)
    fy = torch.fft.fftshift(torch.fft.fftfreq(height, dtype=torch.float64))  # (H,)
    fx = torch.fft.fftshift(torch.fft.fftfreq(width, dtype=torch.float64))  # (W,)
    return torch.meshgrid(fy, fx, indexing="ij")


def power_spectrum(x: torch.Tensor) -> torch.Tensor:
    """Centred power spectrum |X|^2 of each image, averaged over channels.

    (B, C, H, W) -> (B, H, W). Orthonormal DFT, so power_spectrum(x).sum((-2, -1))
    equals the channel mean of sum x^2 (Parseval).
    """
    _check_images(x)
    spectrum = torch.fft.fft2(x, norm="ortho")  # (B, C, H, W) complex
    spectrum = torch.fft.fftshift(spectrum, dim=(-2, -1))  # zero frequency centred
    return reduce(spectrum.abs() ** 2, "b c h w -> b h w", "mean")  # |X(fy, fx)|^2


def _check_cutoff(cutoff: float) -> float:
    """A frequency in [0, 0.5] cycles per pixel."""
    cutoff = check_float("cutoff", cutoff)
    if not 0.0 <= cutoff <= 0.5:
        raise ValueError(
            "cutoff must be a frequency in [0, 0.5] cycles per pixel (0.5 is "
            f"Nyquist), got {cutoff}"
        )
    return cutoff


def _above(height: int, width: int, cutoff: float) -> torch.Tensor:
    """(H, W) mask of the centred frequencies with max(|fx|, |fy|) > cutoff."""
    fy, fx = frequency_grid(height, width)
    return torch.maximum(fy.abs(), fx.abs()) > cutoff


def energy_above(x: torch.Tensor, cutoff: float) -> torch.Tensor:
    """Fraction of each image's non-DC spectral energy at max(|fx|, |fy|) > cutoff.

    (B, C, H, W) -> (B,). For a x2 downsample the cutoff is its new Nyquist, 0.25
    cycles per original pixel: this is the energy that would alias. The DC term (the
    mean) is left out of both numerator and denominator.
    """
    cutoff = _check_cutoff(cutoff)
    power = power_spectrum(x)  # (B, H, W)
    height, width = x.shape[-2:]
    with_dc = power.sum(dim=(-2, -1))  # (B,)
    power[:, height // 2, width // 2] = 0.0  # drop DC
    total = power.sum(dim=(-2, -1))  # (B,)
    if (total <= torch.finfo(power.dtype).eps * with_dc).any():  # 0 up to rounding
        raise ValueError(
            "an image in x is constant: it has no energy besides its mean, so the "
            "fraction is undefined"
        )
    # E(|f| > cutoff) / E(f != 0)
    return power[:, _above(height, width, cutoff)].sum(dim=-1) / total


# --- downsamplers -----------------------------------------------------------------


def _check_divisible(x: torch.Tensor, factor: int) -> None:
    """x is (B, C, H, W) with H and W divisible by an int factor >= 2."""
    _check_images(x)
    check_int("factor", factor, 2)
    height, width = x.shape[-2:]
    if height % factor or width % factor:
        raise ValueError(
            f"downsampling by {factor} needs height and width divisible by "
            f"{factor}, got {height}x{width}; crop or pad to "
            f"{height - height % factor}x{width - width % factor} first"
        )


def subsample(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Keep every factor-th pixel, no filtering (it aliases).

    (B, C, H, W) -> (B, C, H/factor, W/factor).
    """
    _check_divisible(x, factor)
    return x[..., ::factor, ::factor]  # y[h, w] = x[f h, f w]


def avg_pool(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Mean of each factor x factor block: a box filter, then subsampling.

    minigen.ops.conv.avg_pool2d with kernel and stride `factor`.
    """
    _check_divisible(x, factor)
    # y[h, w] = mean of x[f h + i, f w + j]
    return avg_pool2d(x, kernel_size=factor, stride=factor)


def strided_conv(
    x: torch.Tensor, kernel: torch.Tensor, factor: int = 2
) -> torch.Tensor:
    """The (k, k) kernel applied to every channel with stride `factor`.

    Zero padding (k - 1) // 2. A strided convolution layer filters and subsamples in
    one step; whether it aliases depends on its kernel. (B, C, H, W) ->
    (B, C, H/factor, W/factor) for any kernel size.
    """
    _check_divisible(x, factor)
    check_tensor("kernel", kernel, dims=2, shape="(k, k)")
    if kernel.shape[0] != kernel.shape[1]:
        raise ValueError(
            "kernel must be a square 2-D tensor (k, k), got shape "
            f"{tuple(kernel.shape)}"
        )
    channels, size = x.shape[1], kernel.shape[0]
    weight = kernel.to(x.dtype).expand(channels, 1, size, size)  # one per channel
    padding = (size - 1) // 2
    return conv2d(x, weight, stride=factor, padding=padding, groups=channels)


def box_kernel(size: int = 3) -> torch.Tensor:
    """The (size, size) mean filter, all entries 1 / size^2."""
    size = check_int("size", size, 1, MAX_IMAGE_SIDE)
    return torch.full((size, size), 1.0 / size**2)


def binomial_taps(n: int = 5) -> torch.Tensor:
    """The n binomial coefficients C(n-1, i) / 2^(n-1), e.g. [1, 2, 1]/4.

    [1, 4, 6, 4, 1]/16 for n = 5. They approximate a Gaussian of variance
    (n - 1) / 4; n = 2 gives the box [1, 1]/2. n is at most 64: beyond, C(n - 1, i)
    overflows int64.
    """
    n = check_int("n", n, 1, 64)
    coefficients = [math.comb(n - 1, i) for i in range(n)]
    return torch.tensor(coefficients, dtype=torch.float32) / 2 ** (n - 1)


def gaussian_taps(sigma: float, radius: int | None = None) -> torch.Tensor:
    """Normalised samples of exp(-t^2 / (2 sigma^2)) for t = -radius .. radius.

    The default radius is ceil(3 sigma), which keeps all but ~0.3 % of the
    Gaussian's mass.
    """
    sigma = check_float("sigma", sigma, 0.0, MAX_SIZE / 3, open_min=True)
    if radius is None:
        radius = math.ceil(3 * sigma)
    radius = check_int("radius", radius, 0)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    taps = torch.exp(-(t**2) / (2 * sigma**2))  # g(t) = exp(-t^2 / 2 sigma^2)
    return (taps / taps.sum()).float()


def _blur_taps(taps: torch.Tensor | None, sigma: float | None) -> torch.Tensor:
    """blur_subsample's filter: taps, gaussian_taps(sigma) or binomial_taps(5)."""
    if taps is not None and sigma is not None:
        raise ValueError("give either taps or sigma, not both")
    if sigma is not None:
        return gaussian_taps(sigma)
    if taps is None:
        return binomial_taps(5)
    check_tensor("taps", taps, dims=1, finite=True, shape="(n,)")
    if taps.numel() == 0:
        raise ValueError("taps must hold at least one value, got an empty tensor")
    if not math.isclose(taps.sum().item(), 1.0, abs_tol=1e-6):
        raise ValueError(
            "taps must sum to 1 so the blur keeps the mean, got sum "
            f"{taps.sum().item():.6g}; divide by it"
        )
    return taps


def blur_subsample(
    x: torch.Tensor,
    taps: torch.Tensor | None = None,
    factor: int = 2,
    sigma: float | None = None,
) -> torch.Tensor:
    """Anti-aliased downsampling (BlurPool): a separable blur, then subsampling.

    The blur is taps (default binomial_taps(5) = [1, 4, 6, 4, 1]/16) or
    gaussian_taps(sigma), run down the columns and then along the rows, with
    reflect padding so borders are not darkened. Only the kept pixels are computed:
    blur + subsample = a convolution with stride `factor`.
    (B, C, H, W) -> (B, C, H/factor, W/factor).
    """
    _check_divisible(x, factor)
    taps = _blur_taps(taps, sigma).to(x.dtype)
    n = taps.numel()
    before, after = (n - 1) // 2, n // 2  # even n leans right, like avg_pool
    height, width = x.shape[-2:]
    if max(before, after) >= min(height, width):
        raise ValueError(
            f"reflect padding of {max(before, after)} needs height and width above "
            f"it, got {height}x{width}"
        )
    channels = x.shape[1]
    # (C, 1, n, 1) and (C, 1, 1, n): one copy of the filter per channel
    column_filter = rearrange(taps, "n -> 1 1 n 1").expand(channels, 1, n, 1)
    row_filter = rearrange(taps, "n -> 1 1 1 n").expand(channels, 1, 1, n)
    # (B, C, H + n - 1, W + n - 1)
    x = F.pad(x, (before, after, before, after), mode="reflect")
    # sum_i g[i] x[f h + i, w]
    x = conv2d(x, column_filter, stride=(factor, 1), groups=channels)
    # sum_j g[j] (.)[h, f w + j]
    return conv2d(x, row_filter, stride=(1, factor), groups=channels)


def ideal_lowpass(x: torch.Tensor, cutoff: float) -> torch.Tensor:
    """x with every DFT frequency at max(|fx|, |fy|) > cutoff set to zero.

    (B, C, H, W) -> same shape.
    """
    _check_images(x)
    cutoff = _check_cutoff(cutoff)
    height, width = x.shape[-2:]
    # (H, W), in fft2's uncentred order
    keep = torch.fft.ifftshift(~_above(height, width, cutoff))
    # X(f) 1[max|f| <= cutoff]; keep is symmetric
    spectrum = torch.fft.fft2(x, norm="ortho") * keep
    return torch.fft.ifft2(spectrum, norm="ortho").real.to(x.dtype)


def ideal_downsample(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """The alias-free reference: an ideal low-pass at 0.5 / factor, then subsample.

    Zeroes every frequency with max(|fx|, |fy|) > 0.5 / factor: a brick-wall
    low-pass in the DFT domain, so it treats the image as periodic.
    """
    _check_divisible(x, factor)
    return subsample(ideal_lowpass(x, 0.5 / factor), factor)


def bilinear_antialias(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """torch's own anti-aliased resize to 1/factor size.

    F.interpolate(mode="bilinear", antialias=True): when shrinking, torch widens the
    triangle (bilinear) kernel by the scale, as PIL does.
    """
    _check_divisible(x, factor)
    size = (x.shape[-2] // factor, x.shape[-1] // factor)
    return F.interpolate(x, size=size, mode="bilinear", antialias=True)


DOWNSAMPLERS: dict[str, Downsampler] = {
    "subsample": subsample,
    "avg pool": avg_pool,
    "strided conv (3x3 box)": partial(strided_conv, kernel=box_kernel(3)),
    "blur + subsample [1,2,1]/4": partial(blur_subsample, taps=binomial_taps(3)),
    "blur + subsample [1,4,6,4,1]/16": partial(
        blur_subsample, taps=binomial_taps(5)
    ),
}
"""The from-scratch downsamplers, name -> fn(x, factor=...); pass factor by name."""


# --- the report -------------------------------------------------------------------


def _relative_energy(part: torch.Tensor, reference: torch.Tensor) -> float:
    """sum part^2 / sum (reference - its per-channel mean)^2, over the whole batch.

    The denominator is the reference's non-DC energy.
    """
    centred = reference - reference.mean(dim=(-2, -1), keepdim=True)
    return (part.double().pow(2).sum() / centred.double().pow(2).sum()).item()


def aliasing_report(
    x: torch.Tensor, factor: int = 2
) -> dict[str, dict[str, float]]:
    """How much each downsampler aliases x: name -> {"before", "after", "aliased"}.

    With cutoff = 0.5 / factor (the new Nyquist) and
    ideal = ideal_downsample(x, factor):

    - before: fraction of x's non-DC energy above the cutoff (energy_above, pooled
      over the batch), what any downsampler must remove or let alias; the same for
      every downsampler.
    - after: ||down(x) - ideal||^2 / ||ideal - mean||^2, the departure from the
      ideal downsample (by Parseval, also the relative energy of their spectral
      difference). It counts both the aliased energy and the in-band detail that
      the downsampler's blur removed.
    - aliased: ||down(x_high)||^2 / ||ideal - mean||^2 with
      x_high = x - ideal_lowpass(x, cutoff): since every downsampler here is
      linear, down(x_high) is exactly the part of the output that came from
      frequencies above the cutoff, i.e. the alias alone.

    Includes torch's F.interpolate(bilinear, antialias=True) as
    "bilinear antialias (torch)".
    """
    _check_divisible(x, factor)
    if (x == x[..., :1, :1]).all():
        raise ValueError(
            "x is constant: it has no energy besides its mean, so nothing can alias"
        )
    cutoff = 0.5 / factor
    low = ideal_lowpass(x, cutoff)  # (B, C, H, W), what an alias-free one keeps
    high = x - low  # (B, C, H, W), what would alias
    ideal = subsample(low, factor)  # (B, C, H/f, W/f)
    before = _relative_energy(high, x)  # energy above the new Nyquist / non-DC
    downsamplers = {
        **DOWNSAMPLERS,
        "bilinear antialias (torch)": bilinear_antialias,
    }
    report = {}
    for name, downsample in downsamplers.items():
        report[name] = {
            "before": before,
            "after": _relative_energy(downsample(x, factor=factor) - ideal, ideal),
            "aliased": _relative_energy(downsample(high, factor=factor), ideal),
        }
    return report
