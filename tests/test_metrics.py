"""The Fréchet distance against closed forms and an independent eigenvalue route; oracle features' shapes."""

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minigen.data.shapes import ShapesWorld
from minigen.eval.metrics import (
    frechet_distance,
    frechet_distance_of,
    frechet_interval,
    frechet_oracle_distance,
    frechet_terms,
    gaussian_stats,
    oracle_features,
    psnr,
    total_variation,
    wilson_interval,
)
from minigen.models.oracle import Oracle


def random_covariance(dims, generator):
    a = torch.randn(dims, dims, generator=generator, dtype=torch.float64)
    return a @ a.T + 0.1 * torch.eye(dims, dtype=torch.float64)


def test_one_dimension_closed_form():
    # (m1 - m2)^2 + s1^2 + s2^2 - 2 s1 s2 = (m1 - m2)^2 + (s1 - s2)^2
    got = frechet_distance(
        torch.tensor([1.0]),
        torch.tensor([[4.0]]),
        torch.tensor([3.0]),
        torch.tensor([[9.0]]),
    )
    assert got == pytest.approx((1 - 3) ** 2 + (2 - 3) ** 2)


def test_diagonal_covariances_closed_form():
    a, b = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([9.0, 1.0, 0.25])
    mean1, mean2 = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 0.0])
    expected = (mean1 - mean2).square().sum() + (a.sqrt() - b.sqrt()).square().sum()
    assert frechet_distance(
        mean1, torch.diag(a), mean2, torch.diag(b)
    ) == pytest.approx(expected.item())


@settings(max_examples=25, deadline=None)
@given(dims=st.integers(1, 6), seed=st.integers(0, 10_000))
def test_trace_term_agrees_with_the_eigenvalues_of_the_product(dims, seed):
    """tr (C1^1/2 C2 C1^1/2)^1/2 = sum sqrt(eig(C1 C2)): C1 C2 is similar to the symmetric product."""
    generator = torch.Generator().manual_seed(seed)
    cov1, cov2 = (
        random_covariance(dims, generator),
        random_covariance(dims, generator),
    )
    mean1, mean2 = (
        torch.randn(dims, generator=generator, dtype=torch.float64),
        torch.randn(dims, generator=generator, dtype=torch.float64),
    )
    eigenvalues = torch.linalg.eigvals(cov1 @ cov2).real.clamp(min=0)
    expected = (
        (mean1 - mean2).square().sum()
        + cov1.trace()
        + cov2.trace()
        - 2 * eigenvalues.sqrt().sum()
    )
    got = frechet_distance(mean1, cov1, mean2, cov2)
    assert got == pytest.approx(expected.item(), rel=1e-7, abs=1e-9)
    # symmetric
    assert got == pytest.approx(
        frechet_distance(mean2, cov2, mean1, cov1), rel=1e-7, abs=1e-9
    )


def test_identical_and_rotated_statistics():
    generator = torch.Generator().manual_seed(0)
    cov, mean = (
        random_covariance(4, generator),
        torch.randn(4, generator=generator, dtype=torch.float64),
    )
    assert frechet_distance(mean, cov, mean, cov) == pytest.approx(0.0, abs=1e-9)
    q, _ = torch.linalg.qr(
        torch.randn(4, 4, generator=generator, dtype=torch.float64)
    )
    other_cov, other_mean = (
        random_covariance(4, generator),
        torch.randn(4, generator=generator, dtype=torch.float64),
    )
    before = frechet_distance(mean, cov, other_mean, other_cov)
    after = frechet_distance(
        q @ mean, q @ cov @ q.T, q @ other_mean, q @ other_cov @ q.T
    )
    # invariant to rotating the feature space
    assert after == pytest.approx(before, rel=1e-8)


def test_gaussian_stats_and_sample_distance():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(50_000, 3, generator=generator, dtype=torch.float64)
    mean, cov = gaussian_stats(x)
    assert torch.allclose(mean, x.mean(0)) and torch.allclose(cov, torch.cov(x.T))
    shifted = x + torch.tensor([2.0, 0.0, 0.0], dtype=torch.float64)
    # a shift by 2: distance 2^2
    assert frechet_distance_of(x, shifted) == pytest.approx(4.0, rel=1e-6)
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
    assert frechet_oracle_distance(oracle, images, images) == pytest.approx(
        0.0, abs=1e-6
    )
    assert frechet_oracle_distance(oracle, images, torch.zeros_like(images)) > 0
    assert oracle.training  # left in the mode it was found in
    with pytest.raises(
        ValueError, match="pool must be one of 'mean', 'cells', got str 'max'"
    ):
        oracle_features(oracle, images, pool="max")
    assert math.isfinite(
        frechet_oracle_distance(oracle, images[:20], images[20:], pool="cells")
    )


def test_oracle_features_do_not_depend_on_the_batch_size_and_cells_average_to_the_mean():
    world = ShapesWorld()
    torch.manual_seed(0)
    oracle = Oracle(world, width=8).eval()
    images = world.scenes(13).images
    whole = oracle_features(oracle, images)
    assert torch.allclose(
        oracle_features(oracle, images, batch_size=4), whole, atol=1e-6
    )
    # (N, C * G * G), channel-major
    cells = oracle_features(oracle, images, pool="cells", batch_size=5)
    assert torch.allclose(cells.view(13, 32, 9).mean(-1), whole, atol=1e-6)
    assert not oracle.training  # eval mode stays eval


def test_psnr_against_the_mean_squared_error_and_its_scale():
    generator = torch.Generator().manual_seed(0)
    pred, target = (
        torch.rand(4, 3, 8, 8, generator=generator),
        torch.rand(4, 3, 8, 8, generator=generator),
    )
    mse = torch.stack(
        [torch.nn.functional.mse_loss(p, t) for p, t in zip(pred, target)]
    )
    assert torch.allclose(psnr(pred, target), -10 * torch.log10(mse), atol=1e-5)
    assert torch.allclose(
        psnr(2 * pred, 2 * target, max_value=2.0), psnr(pred, target), atol=1e-5
    )
    assert psnr(pred, pred).isinf().all()


def test_total_variation_is_the_largest_difference_of_one_event():
    """TV = max over sets of classes A of |P(A) - Q(A)|, checked by brute force over all subsets."""
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        p, q = (
            torch.rand(5, generator=generator),
            torch.rand(5, generator=generator),
        )
        p, q = p / p.sum(), q / q.sum()
        best = max(
            abs(p[list(a)].sum() - q[list(a)].sum()).item()
            for r in range(6)
            for a in itertools.combinations(range(5), r)
        )
        assert total_variation(p, q) == pytest.approx(best, abs=1e-6)


ORACLE = Oracle(ShapesWorld(), width=8)
IMAGES = torch.rand(3, 3, 32, 32)


@pytest.mark.parametrize(
    "call, error",
    [
        (
            lambda: gaussian_stats("features"),
            r"features must be a torch.Tensor \(N, D\), got str",
        ),
        (lambda: gaussian_stats([[1.0, 2.0]]), "features must be a torch.Tensor"),
        (
            lambda: frechet_distance(
                None, torch.eye(2), torch.zeros(2), torch.eye(2)
            ),
            "mean1 must be a torch.Tensor",
        ),
        (
            lambda: frechet_distance(
                torch.zeros(2), "cov", torch.zeros(2), torch.eye(2)
            ),
            "cov1 must be a torch.Tensor",
        ),
        (
            lambda: frechet_distance_of(torch.zeros(5, 2), [[1.0, 2.0]]),
            "features_b must be a torch.Tensor",
        ),
        (
            lambda: oracle_features("oracle", IMAGES),
            "oracle must be an nn.Module, got str",
        ),
        (
            lambda: oracle_features(Oracle, IMAGES),
            "oracle must be a model instance, got the class Oracle",
        ),
        (
            lambda: oracle_features(torch.nn.Linear(2, 2), IMAGES),
            "oracle must be an Oracle, got Linear",
        ),
        (
            lambda: oracle_features(ORACLE, IMAGES.tolist()),
            "images must be a torch.Tensor",
        ),
        (
            lambda: oracle_features(ORACLE, (IMAGES * 255).to(torch.uint8)),
            "images must be a floating-point tensor",
        ),
        (
            lambda: oracle_features(ORACLE, IMAGES, batch_size=2.0),
            "batch_size must be an int, got float 2.0",
        ),
        (
            lambda: frechet_oracle_distance(ORACLE, IMAGES, None),
            "images must be a torch.Tensor",
        ),
        (lambda: psnr("pred", IMAGES), "pred must be a torch.Tensor"),
        (
            lambda: psnr(IMAGES, IMAGES, max_value=True),
            "max_value must be a number, got bool True",
        ),
        (
            lambda: psnr(IMAGES, IMAGES, max_value="1"),
            "max_value must be a number, got str '1'",
        ),
        (
            lambda: total_variation([0.5, 0.5], torch.tensor([0.5, 0.5])),
            "p must be a torch.Tensor",
        ),
    ],
)
def test_wrong_types_get_a_type_error(call, error):
    with pytest.raises(TypeError, match=error):
        call()


NAN = float("nan")


@pytest.mark.parametrize(
    "call, error",
    [
        (
            lambda: gaussian_stats(torch.zeros(4)),
            r"features must be a 2-d tensor \(N, D\), got shape \(4,\)",
        ),
        (
            lambda: gaussian_stats(
                torch.tensor([[0.0, 1.0], [NAN, 2.0], [1.0, 1.0]])
            ),
            "features holds 1 NaN or infinite values",
        ),
        (
            lambda: frechet_distance(
                torch.zeros(2),
                torch.tensor([[1.0, NAN], [0.0, 1.0]]),
                torch.zeros(2),
                torch.eye(2),
            ),
            "cov1 holds 1 NaN",
        ),
        (
            lambda: frechet_distance(
                torch.zeros(2), torch.eye(2), torch.zeros(2), torch.eye(3)
            ),
            r"cov2 must have shape \(2, 2\), got \(3, 3\)",
        ),
        (
            lambda: frechet_distance_of(torch.randn(5, 2), torch.full((5, 2), NAN)),
            "features holds 10 NaN",
        ),
        (
            lambda: oracle_features(ORACLE, IMAGES[:0]),
            "images must hold at least one image",
        ),
        (
            lambda: oracle_features(ORACLE, IMAGES[0]),
            r"images must be a 4-d tensor \(N, 3, H, W\), got shape \(3, 32, 32\)",
        ),
        (
            lambda: oracle_features(ORACLE, IMAGES.clone().fill_(NAN)),
            "images holds 9216 NaN",
        ),
        (
            lambda: oracle_features(ORACLE, IMAGES, batch_size=0),
            "batch_size must be an int >= 1, got 0",
        ),
        (
            lambda: oracle_features(ORACLE, IMAGES, batch_size=-1),
            "batch_size must be an int >= 1, got -1",
        ),
        (
            lambda: psnr(IMAGES, IMAGES[:2]),
            "pred and target must have the same shape",
        ),
        (
            lambda: psnr(torch.zeros(3), torch.ones(3)),
            "pred must have a batch axis and at least one more",
        ),
        (
            lambda: psnr(IMAGES, IMAGES, max_value=NAN),
            "max_value must be a finite number, got nan",
        ),
        (
            lambda: psnr(IMAGES, IMAGES, max_value=float("inf")),
            "max_value must be a finite number, got inf",
        ),
        (
            lambda: psnr(IMAGES, IMAGES, max_value=-1.0),
            r"max_value must lie in \(0, inf\), got -1",
        ),
        (
            lambda: psnr(IMAGES, IMAGES, max_value=0),
            r"max_value must lie in \(0, inf\), got 0",
        ),
        (
            lambda: total_variation(
                torch.tensor([1.5, -0.5]), torch.tensor([0.5, 0.5])
            ),
            "p must hold frequencies >= 0, got a minimum of -0.5",
        ),
        (
            lambda: total_variation(
                torch.tensor([0.5, 0.5]), torch.tensor([NAN, 0.5])
            ),
            "q holds 1 NaN",
        ),
        (
            lambda: total_variation(torch.eye(2), torch.eye(2)),
            r"p must be a 1-d tensor \(classes,\)",
        ),
    ],
)
def test_bad_values_get_a_value_error(call, error):
    with pytest.raises(ValueError, match=error):
        call()


def test_frechet_terms_split_the_distance_into_means_and_spreads():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4000, 3, generator=g, dtype=torch.float64)
    shifted = a + torch.tensor([3.0, 0.0, 4.0], dtype=torch.float64)
    terms = frechet_terms(a, shifted)  # same spread: all in the mean term
    assert terms["mean"] == pytest.approx(25.0)
    assert terms["covariance"] == pytest.approx(0.0, abs=1e-9)
    # same mean, the spread doubled: tr C + tr 4C - 2 tr 2C = tr C
    terms = frechet_terms(a, 2 * a)
    assert terms["covariance"] == pytest.approx(gaussian_stats(a)[1].trace().item())
    assert terms["total"] == pytest.approx(terms["mean"] + terms["covariance"])
    assert terms["total"] == pytest.approx(frechet_distance_of(a, 2 * a))


def test_frechet_interval_holds_the_estimate_and_narrows_with_more_samples():
    g = torch.Generator().manual_seed(1)

    def draw(n, shift):
        return torch.randn(n, 2, generator=g, dtype=torch.float64) + shift

    widths = []
    for n in (100, 2000):  # the means differ by (1, 1), the spreads agree
        a, b = draw(n, 0.0), draw(n, 1.0)
        low, high = frechet_interval(a, b, draws=300)
        assert low < frechet_distance_of(a, b) < high
        widths.append(high - low)
    assert widths[1] < 0.4 * widths[0]  # ~ 1 / sqrt(20)
    # the large sample's interval holds the true distance, |(1, 1)|^2 = 2
    assert low < 2.0 < high
    a, b = draw(50, 0.0), draw(50, 0.5)
    assert frechet_interval(a, b, seed=3) == frechet_interval(a, b, seed=3)


def test_wilson_interval_solves_its_defining_equation():
    z = 1.959963984540054  # the 97.5% normal quantile
    for successes, n in [(0, 10), (3, 10), (10, 10), (358, 500), (1, 2)]:
        share = successes / n
        low, high = wilson_interval(successes, n)
        assert 0.0 <= low <= share <= high <= 1.0
        # each end that is not clipped lies exactly z standard errors away
        for end in (low, high):
            if 0.0 < end < 1.0:
                error = z * math.sqrt(end * (1 - end) / n)
                assert abs(share - end) == pytest.approx(error)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    narrow, wide = wilson_interval(50, 100, 0.5), wilson_interval(50, 100, 0.99)
    assert wide[0] < narrow[0] < 0.5 < narrow[1] < wide[1]


def test_intervals_reject_bad_arguments():
    with pytest.raises(ValueError, match="successes must be"):
        wilson_interval(11, 10)
    with pytest.raises(ValueError, match="confidence must"):
        wilson_interval(1, 10, confidence=1.0)
    features = torch.randn(10, 2)
    with pytest.raises(ValueError, match="features must be \\(N, D\\) with one D"):
        frechet_terms(features, torch.randn(10, 3))
    with pytest.raises(ValueError, match="draws must be"):
        frechet_interval(features, features, draws=1)
