"""Sample-quality metrics: the Fréchet distance between feature statistics, on the chapter-1 oracle's features.

The Fréchet (2-Wasserstein) distance between N(m1, C1) and N(m2, C2) is
    |m1 - m2|^2 + tr(C1) + tr(C2) - 2 tr((C1^{1/2} C2 C1^{1/2})^{1/2}),
D. C. Dowson, B. V. Landau, J. Multivariate Analysis 12 (1982). FID applies it to Inception features of real
and generated images (M. Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
Equilibrium", NeurIPS 2017). Inception weights cannot be downloaded here, and would not know the shapes world
anyway, so this book uses the features of its own oracle (chapter 1), which was trained to tell every shape,
colour, size and cell apart: a Fréchet *oracle* distance. Its numbers are not comparable with published FIDs;
compare them with the floor measured between two sets of real scenes.
"""
from __future__ import annotations

import torch
from torch import Tensor

from minigen.models.oracle import Oracle

POOLINGS: tuple[str, ...] = ("mean", "cells")


def gaussian_stats(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean (D,) and unbiased covariance (D, D) of features (N, D), in float64."""
    if features.dim() != 2 or len(features) < 2:
        raise ValueError(f"features must be (N, D) with N >= 2, got shape {tuple(features.shape)}")
    features = features.double()
    mean = features.mean(0)
    centred = features - mean
    return mean, centred.T @ centred / (len(features) - 1)                   # C = X_c^T X_c / (N - 1)


def _sqrt_psd(matrix: Tensor) -> Tensor:
    """The symmetric square root of a symmetric positive semi-definite matrix (tiny negative eigenvalues -> 0)."""
    eigenvalues, eigenvectors = torch.linalg.eigh(matrix)
    return eigenvectors @ torch.diag(eigenvalues.clamp(min=0).sqrt()) @ eigenvectors.T


def frechet_distance(mean1: Tensor, cov1: Tensor, mean2: Tensor, cov2: Tensor) -> float:
    """The Fréchet distance between N(mean1, cov1) and N(mean2, cov2) (see the module docstring)."""
    dims = mean1.shape[0]
    for name, value, shape in (("mean1", mean1, (dims,)), ("mean2", mean2, (dims,)), ("cov1", cov1, (dims, dims)),
                               ("cov2", cov2, (dims, dims))):
        if tuple(value.shape) != shape:
            raise ValueError(f"{name} must have shape {shape}, got {tuple(value.shape)}")
    mean1, cov1, mean2, cov2 = (v.double() for v in (mean1, cov1, mean2, cov2))
    root1 = _sqrt_psd(cov1)
    cross = _sqrt_psd(root1 @ cov2 @ root1)                                 # (C1^1/2 C2 C1^1/2)^1/2
    distance = (mean1 - mean2).square().sum() + cov1.trace() + cov2.trace() - 2 * cross.trace()
    return max(distance.item(), 0.0)                                        # rounding can leave -1e-12


def frechet_distance_of(features_a: Tensor, features_b: Tensor) -> float:
    """The Fréchet distance between Gaussians fitted to two feature sets (N_a, D) and (N_b, D)."""
    if features_a.dim() != 2 or features_b.dim() != 2 or features_a.shape[1] != features_b.shape[1]:
        raise ValueError(f"features must be (N, D) with one D, got {tuple(features_a.shape)} and {tuple(features_b.shape)}")
    return frechet_distance(*gaussian_stats(features_a), *gaussian_stats(features_b))


@torch.no_grad()
def oracle_features(oracle: Oracle, images: Tensor, pool: str = "mean", batch_size: int = 500) -> Tensor:
    """The oracle's per-cell features of images (N, 3, H, W): averaged over the cells (N, C) with pool="mean",
    or all cells side by side (N, C * G * G) with pool="cells" (needs many more images for a full covariance)."""
    if pool not in POOLINGS:
        raise ValueError(f"unknown pool {pool!r}; valid ones: {', '.join(POOLINGS)}")
    was_training = oracle.training
    oracle.eval()
    device = next(oracle.parameters()).device
    chunks = []
    for start in range(0, len(images), batch_size):
        cells = oracle.cell_features(images[start:start + batch_size].to(device)).float()   # (B, C, G, G)
        chunks.append((cells.mean(dim=(2, 3)) if pool == "mean" else cells.flatten(1)).cpu())
    oracle.train(was_training)
    return torch.cat(chunks)


def frechet_oracle_distance(oracle: Oracle, images_a: Tensor, images_b: Tensor, pool: str = "mean") -> float:
    """Fréchet distance between the oracle features of two image sets (e.g. real scenes and samples)."""
    return frechet_distance_of(oracle_features(oracle, images_a, pool), oracle_features(oracle, images_b, pool))


def psnr(pred: torch.Tensor, target: torch.Tensor, max_value: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB of each image: (B, ...) -> (B,). Identical images give inf.

    PSNR = 10 log10(max_value^2 / MSE).
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    if pred.dim() < 2:
        raise ValueError(f"pred must have a batch axis and at least one more, got shape {tuple(pred.shape)}")
    mse = (pred.float() - target.float()).square().flatten(1).mean(dim=1)  # (B,)
    return 10 * torch.log10(max_value**2 / mse)


def total_variation(p: torch.Tensor, q: torch.Tensor) -> float:
    """Total variation distance 1/2 sum |p - q| between two distributions over the same classes, in [0, 1]."""
    if p.shape != q.shape or p.dim() != 1:
        raise ValueError(f"p and q must be vectors of one length, got shapes {tuple(p.shape)} and {tuple(q.shape)}")
    return 0.5 * (p.double() - q.double()).abs().sum().item()
