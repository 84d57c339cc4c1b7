"""Sample-quality metrics: PSNR, total variation, and the Fréchet distance between
feature statistics, on the chapter-1 oracle's features.

The Fréchet (2-Wasserstein) distance between N(m1, C1) and N(m2, C2) is
    |m1 - m2|^2 + tr(C1) + tr(C2) - 2 tr((C1^{1/2} C2 C1^{1/2})^{1/2}),
D. C. Dowson, B. V. Landau, J. Multivariate Analysis 12 (1982). FID applies it to
Inception features of real and generated images (M. Heusel et al., "GANs Trained by
a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium", NeurIPS 2017).
Inception weights cannot be downloaded here, and would not know the shapes world
anyway, so this book uses the features of its own oracle (chapter 1), which was
trained to tell every shape, colour, size and cell apart: a Fréchet *oracle*
distance. Its numbers are not comparable with published FIDs; compare them with the
floor measured between two sets of real scenes.

A Fréchet distance from a few hundred samples is itself a random number: its two
terms (`frechet_terms`) say whether the means or the spreads differ, and a bootstrap
(`frechet_interval`; B. Efron, "Bootstrap Methods", Ann. Statist. 7, 1979) says how
much it would move with other samples. Shares such as "valid scenes" carry the
Wilson score interval (E. B. Wilson, JASA 22, 1927).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from minigen.core.runtime import eval_mode
from minigen.core.validators import (
    check_choice,
    check_float,
    check_instance,
    check_int,
    check_module,
    check_positive,
    check_same_shape,
    check_tensor,
)
from minigen.models.oracle import Oracle

POOLINGS: tuple[str, ...] = ("mean", "cells")


def gaussian_stats(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean (D,) and unbiased covariance (D, D) of features (N, D), in float64."""
    check_tensor("features", features, dims=2, finite=True, shape="(N, D)")
    if len(features) < 2:
        raise ValueError(
            f"features must hold N >= 2 rows, got shape {tuple(features.shape)}"
        )
    features = features.double()
    mean = features.mean(0)
    centred = features - mean
    covariance = (
        centred.T @ centred / (len(features) - 1)
    )  # C = X_c^T X_c / (N - 1)
    return mean, covariance


def _sqrt_psd(matrix: Tensor) -> Tensor:
    """The symmetric square root of a symmetric positive semi-definite matrix (tiny
    negative eigenvalues -> 0)."""
    eigenvalues, eigenvectors = torch.linalg.eigh(matrix)  # M = V diag(e) V^T
    root = torch.diag(eigenvalues.clamp(min=0).sqrt())
    return eigenvectors @ root @ eigenvectors.T  # M^1/2 = V diag(sqrt e) V^T


def frechet_distance(
    mean1: Tensor, cov1: Tensor, mean2: Tensor, cov2: Tensor
) -> float:
    """The Fréchet distance between N(mean1, cov1) and N(mean2, cov2) (see the
    module docstring)."""
    _check_gaussians(mean1, cov1, mean2, cov2)
    mean1, cov1, mean2, cov2 = (v.double() for v in (mean1, cov1, mean2, cov2))
    root1 = _sqrt_psd(cov1)
    cross = _sqrt_psd(root1 @ cov2 @ root1)  # (C1^1/2 C2 C1^1/2)^1/2
    mean_term = (mean1 - mean2).square().sum()  # |m1 - m2|^2
    distance = mean_term + cov1.trace() + cov2.trace() - 2 * cross.trace()
    return max(distance.item(), 0.0)  # rounding can leave -1e-12


def _check_gaussians(
    mean1: Tensor, cov1: Tensor, mean2: Tensor, cov2: Tensor
) -> None:
    dims = check_tensor("mean1", mean1, dims=1, finite=True, shape="(D,)").shape[0]
    expected = (
        ("mean2", mean2, (dims,)),
        ("cov1", cov1, (dims, dims)),
        ("cov2", cov2, (dims, dims)),
    )
    for name, value, shape in expected:
        check_tensor(name, value, dims=len(shape), finite=True)
        if tuple(value.shape) != shape:
            raise ValueError(
                f"{name} must have shape {shape}, got {tuple(value.shape)}"
            )


def frechet_distance_of(features_a: Tensor, features_b: Tensor) -> float:
    """The Fréchet distance between Gaussians fitted to two feature sets (N_a, D)
    and (N_b, D)."""
    _check_feature_pair(features_a, features_b)
    mean_a, cov_a = gaussian_stats(features_a)
    mean_b, cov_b = gaussian_stats(features_b)
    return frechet_distance(mean_a, cov_a, mean_b, cov_b)


def _check_feature_pair(features_a: Tensor, features_b: Tensor) -> None:
    check_tensor("features_a", features_a, dims=2, shape="(N_a, D)")
    check_tensor("features_b", features_b, dims=2, shape="(N_b, D)")
    if features_a.shape[1] != features_b.shape[1]:
        raise ValueError(
            "features must be (N, D) with one D, "
            f"got {tuple(features_a.shape)} and {tuple(features_b.shape)}"
        )


def frechet_terms(features_a: Tensor, features_b: Tensor) -> dict[str, float]:
    """The Fréchet distance of two feature sets split into its two terms: "mean",
    |m_a - m_b|^2 (the sets differ on average), and "covariance", the rest (they
    differ in spread or correlation); "total" is their sum."""
    _check_feature_pair(features_a, features_b)
    mean_a, cov_a = gaussian_stats(features_a)
    mean_b, cov_b = gaussian_stats(features_b)
    total = frechet_distance(mean_a, cov_a, mean_b, cov_b)
    mean_term = (mean_a - mean_b).square().sum().item()
    return {"mean": mean_term, "covariance": total - mean_term, "total": total}


def frechet_interval(
    features_a: Tensor,
    features_b: Tensor,
    draws: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """A bootstrap interval of the Fréchet distance d of two feature sets: how far
    d moves with other samples of the same size. Both sets are redrawn with
    replacement `draws` times (B. Efron, 1979), giving distances d*; the interval
    is d - (m* - q_low), d + (q_high - m*), with m* the median of d* and q the
    quantiles that hold its central `confidence` share. Redrawn sets repeat rows,
    which shifts every d* upwards; measuring from m* instead of d leaves that
    shift out, so the interval always holds d. The distance itself has a positive
    bias that shrinks as 1/N: compare distances at one N."""
    _check_feature_pair(features_a, features_b)
    check_int("draws", draws, minimum=2)
    confidence = check_float(
        "confidence", confidence, 0.0, 1.0, open_min=True, open_max=True
    )
    generator = torch.Generator().manual_seed(check_int("seed", seed, minimum=0))
    distances = []
    for _ in range(draws):
        a = torch.randint(len(features_a), (len(features_a),), generator=generator)
        b = torch.randint(len(features_b), (len(features_b),), generator=generator)
        distances.append(frechet_distance_of(features_a[a], features_b[b]))
    tail = (1 - confidence) / 2
    levels = torch.tensor([tail, 0.5, 1 - tail], dtype=torch.float64)
    redrawn = torch.tensor(distances, dtype=torch.float64)
    low, median, high = redrawn.quantile(levels).tolist()
    distance = frechet_distance_of(features_a, features_b)
    return max(distance - (median - low), 0.0), distance + (high - median)


def wilson_interval(
    successes: int, n: int, confidence: float = 0.95
) -> tuple[float, float]:
    """The Wilson score interval of a share successes / n: the shares p for which
    |successes / n - p| <= z sqrt(p (1 - p) / n), z the normal quantile of the
    confidence. Unlike p +- z sqrt(p (1 - p) / n) it stays in [0, 1] and does not
    shrink to a point at 0 or n successes."""
    n = check_int("n", n)
    successes = check_int("successes", successes, minimum=0, maximum=n)
    confidence = check_float(
        "confidence", confidence, 0.0, 1.0, open_min=True, open_max=True
    )
    normal = torch.distributions.Normal(0.0, 1.0)
    z = normal.icdf(torch.tensor(0.5 + confidence / 2, dtype=torch.float64)).item()
    share = successes / n
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    half /= 1 + z * z / n
    # at 0 or n successes an end is 0 or 1 exactly; rounding would miss it
    low = 0.0 if successes == 0 else centre - half
    high = 1.0 if successes == n else centre + half
    return low, high


@torch.no_grad()
def oracle_features(
    oracle: Oracle, images: Tensor, pool: str = "mean", batch_size: int = 500
) -> Tensor:
    """The oracle's per-cell features of images (N, 3, H, W): averaged over the
    cells (N, C) with pool="mean", or all cells side by side (N, C * G * G) with
    pool="cells" (needs many more images for a full covariance)."""
    _check_feature_args(oracle, images, pool, batch_size)
    device = next(oracle.parameters()).device
    chunks = []
    with eval_mode(oracle):
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size].to(device)
            cells = oracle.cell_features(batch).float()  # (B, C, G, G)
            pooled = cells.mean(dim=(2, 3)) if pool == "mean" else cells.flatten(1)
            chunks.append(pooled.cpu())  # (B, C) or (B, C * G * G)
    return torch.cat(chunks)


def _check_feature_args(
    oracle: Oracle, images: Tensor, pool: str, batch_size: int
) -> None:
    check_instance("oracle", check_module("oracle", oracle), Oracle, "an Oracle")
    check_tensor(
        "images", images, dims=4, floating=True, finite=True, shape="(N, 3, H, W)"
    )
    if len(images) == 0:
        raise ValueError("images must hold at least one image, got shape (0, ...)")
    check_choice("pool", pool, POOLINGS)
    check_int("batch_size", batch_size)


def frechet_oracle_distance(
    oracle: Oracle, images_a: Tensor, images_b: Tensor, pool: str = "mean"
) -> float:
    """Fréchet distance between the oracle features of two image sets (e.g. real
    scenes and samples)."""
    features_a = oracle_features(oracle, images_a, pool)
    return frechet_distance_of(features_a, oracle_features(oracle, images_b, pool))


def psnr(pred: Tensor, target: Tensor, max_value: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio in dB of each image: (B, ...) -> (B,). Identical
    images give inf.

    PSNR = 10 log10(max_value^2 / MSE).
    """
    check_tensor("pred", pred, shape="(B, ...)")
    check_tensor("target", target, shape="(B, ...)")
    check_same_shape("pred", pred, "target", target)
    if pred.dim() < 2:
        raise ValueError(
            "pred must have a batch axis and at least one more, "
            f"got shape {tuple(pred.shape)}"
        )
    max_value = check_positive("max_value", max_value)
    mse = (pred.float() - target.float()).square().flatten(1).mean(dim=1)  # (B,)
    return 10 * torch.log10(max_value**2 / mse)


def total_variation(p: Tensor, q: Tensor) -> float:
    """Total variation distance 1/2 sum |p - q| between two distributions over the
    same classes, in [0, 1]."""
    for name, value in (("p", p), ("q", q)):
        check_tensor(name, value, dims=1, finite=True, shape="(classes,)")
        if (value < 0).any():
            raise ValueError(
                f"{name} must hold frequencies >= 0, "
                f"got a minimum of {value.min().item():g}"
            )
    if p.shape != q.shape:
        raise ValueError(
            "p and q must be vectors of one length, "
            f"got shapes {tuple(p.shape)} and {tuple(q.shape)}"
        )
    return 0.5 * (p.double() - q.double()).abs().sum().item()
