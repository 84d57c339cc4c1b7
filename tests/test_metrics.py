"""The Fréchet distance against closed forms and an independent eigenvalue route; oracle features' shapes."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minigen.data.shapes import ShapesWorld
from minigen.eval.metrics import (frechet_distance, frechet_distance_of,
    frechet_oracle_distance, gaussian_stats, oracle_features)
from minigen.models.oracle import Oracle


def random_covariance(dims, generator):
    a = torch.randn(dims, dims, generator=generator, dtype=torch.float64)
    return a @ a.T + 0.1 * torch.eye(dims, dtype=torch.float64)


def test_one_dimension_closed_form():
    # (m1 - m2)^2 + s1^2 + s2^2 - 2 s1 s2 = (m1 - m2)^2 + (s1 - s2)^2
    got = frechet_distance(torch.tensor([1.0]), torch.tensor([[4.0]]), torch.tensor([3.0]), torch.tensor([[9.0]]))
    assert got == pytest.approx((1 - 3) ** 2 + (2 - 3) ** 2)


def test_diagonal_covariances_closed_form():
    a, b = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([9.0, 1.0, 0.25])
    mean1, mean2 = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 0.0])
    expected = (mean1 - mean2).square().sum() + (a.sqrt() - b.sqrt()).square().sum()
    assert frechet_distance(mean1, torch.diag(a), mean2, torch.diag(b)) == pytest.approx(expected.item())


@settings(max_examples=25, deadline=None)
@given(dims=st.integers(1, 6), seed=st.integers(0, 10_000))
def test_trace_term_agrees_with_the_eigenvalues_of_the_product(dims, seed):
    """tr (C1^1/2 C2 C1^1/2)^1/2 = sum sqrt(eig(C1 C2)): C1 C2 is similar to the symmetric product."""
    generator = torch.Generator().manual_seed(seed)
    cov1, cov2 = random_covariance(dims, generator), random_covariance(dims, generator)
    mean1, mean2 = torch.randn(dims, generator=generator, dtype=torch.float64), torch.randn(dims, generator=generator, dtype=torch.float64)
    eigenvalues = torch.linalg.eigvals(cov1 @ cov2).real.clamp(min=0)
    expected = (mean1 - mean2).square().sum() + cov1.trace() + cov2.trace() - 2 * eigenvalues.sqrt().sum()
    got = frechet_distance(mean1, cov1, mean2, cov2)
    assert got == pytest.approx(expected.item(), rel=1e-7, abs=1e-9)
    assert got == pytest.approx(frechet_distance(mean2, cov2, mean1, cov1), rel=1e-7, abs=1e-9)   # symmetric


def test_identical_and_rotated_statistics():
    generator = torch.Generator().manual_seed(0)
    cov, mean = random_covariance(4, generator), torch.randn(4, generator=generator, dtype=torch.float64)
    assert frechet_distance(mean, cov, mean, cov) == pytest.approx(0.0, abs=1e-9)
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=generator, dtype=torch.float64))
    other_cov, other_mean = random_covariance(4, generator), torch.randn(4, generator=generator, dtype=torch.float64)
    before = frechet_distance(mean, cov, other_mean, other_cov)
    after = frechet_distance(q @ mean, q @ cov @ q.T, q @ other_mean, q @ other_cov @ q.T)
    assert after == pytest.approx(before, rel=1e-8)                   # invariant to rotating the feature space


def test_gaussian_stats_and_sample_distance():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(50_000, 3, generator=generator, dtype=torch.float64)
    mean, cov = gaussian_stats(x)
    assert torch.allclose(mean, x.mean(0)) and torch.allclose(cov, torch.cov(x.T))
    shifted = x + torch.tensor([2.0, 0.0, 0.0], dtype=torch.float64)
    assert frechet_distance_of(x, shifted) == pytest.approx(4.0, rel=1e-6)   # a shift by 2: distance 2^2
    with pytest.raises(ValueError, match="N >= 2"):
        gaussian_stats(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="one D"):
        frechet_distance_of(torch.zeros(5, 3), torch.zeros(5, 2))
    with pytest.raises(ValueError, match="mean2"):
        frechet_distance(torch.zeros(3), torch.eye(3), torch.zeros(2), torch.eye(3))


def test_oracle_features_shapes_and_the_distance_is_zero_for_the_same_images():
    world = ShapesWorld()
    torch.manual_seed(0)
    oracle = Oracle(world, width=8)
    images = world.scenes(40).images
    assert oracle_features(oracle, images).shape == (40, 32)
    assert oracle_features(oracle, images, pool="cells").shape == (40, 32 * 9)
    assert frechet_oracle_distance(oracle, images, images) == pytest.approx(0.0, abs=1e-6)
    assert frechet_oracle_distance(oracle, images, torch.zeros_like(images)) > 0
    assert oracle.training                                                   # left in the mode it was found in
    with pytest.raises(ValueError, match="unknown pool"):
        oracle_features(oracle, images, pool="max")
    assert math.isfinite(frechet_oracle_distance(oracle, images[:20], images[20:], pool="cells"))
