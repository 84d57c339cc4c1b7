"""The 2-D Gaussian-mixture toy: its noised density and score against torch.distributions and autograd, and a
short training whose noise-prediction error against the exact answer shrinks."""

import math

import pytest
import torch
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from minigen.core.runtime import choose_precision
from minigen.diffusion.schedule import NoiseSchedule
from minigen.diffusion.toy2d import GaussianMixture2d, ToyDenoiser, eps_error
from minigen.diffusion.training import train_diffusion

MIXTURE = GaussianMixture2d.ring(components=6, radius=1.0, std=0.1)


pytestmark = pytest.mark.usefixtures("one_thread")


def torch_mixture(mixture, alpha_bar):
    scale = math.sqrt(alpha_bar * mixture.std**2 + 1 - alpha_bar)
    components = Independent(Normal(math.sqrt(alpha_bar) * mixture.means, scale), 1)
    return MixtureSameFamily(Categorical(probs=mixture.weights), components)


@pytest.mark.parametrize("alpha_bar", [1.0, 0.9, 0.3, 0.01])
def test_noised_log_density_matches_torch_distributions(alpha_bar):
    x = (
        torch.randn(
            100, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64
        )
        * 1.5
    )
    expected = torch_mixture(MIXTURE, alpha_bar).log_prob(x)
    assert torch.allclose(MIXTURE.log_prob(x, alpha_bar), expected, atol=1e-10)


@pytest.mark.parametrize("alpha_bar", [1.0, 0.5, 0.05])
def test_score_is_the_gradient_of_the_log_density(alpha_bar):
    x = torch.randn(
        50, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64
    ).requires_grad_()
    (gradient,) = torch.autograd.grad(
        torch_mixture(MIXTURE, alpha_bar).log_prob(x).sum(), x
    )
    assert torch.allclose(MIXTURE.score(x.detach(), alpha_bar), gradient, atol=1e-9)


def test_true_eps_is_the_posterior_mean_of_the_noise():
    """E[eps | x_t] estimated by brute force in a small bin around a point agrees with the closed form."""
    generator = torch.Generator().manual_seed(2)
    alpha_bar, n = 0.4, 400_000
    x0 = MIXTURE.sample(n, generator).double()
    eps = torch.randn(n, 2, generator=generator, dtype=torch.float64)
    x_t = math.sqrt(alpha_bar) * x0 + math.sqrt(1 - alpha_bar) * eps
    point = torch.tensor([[0.4, 0.2]], dtype=torch.float64)
    near = (x_t - point).norm(dim=1) < 0.05
    assert near.sum() > 500
    assert torch.allclose(
        eps[near].mean(0), MIXTURE.true_eps(point, alpha_bar)[0], atol=0.06
    )


def test_samples_have_the_mixture_statistics():
    x = MIXTURE.sample(60_000, torch.Generator().manual_seed(3))
    assert x.dtype == torch.float32 and x.shape == (60_000, 2)
    assert x.mean(0).abs().max() < 0.02  # a symmetric ring: mean 0
    radius = x.norm(dim=1)
    assert radius.mean().item() == pytest.approx(1.0, abs=0.02)


def test_mixture_rejects_bad_parameters():
    with pytest.raises(ValueError, match="sum to 1"):
        GaussianMixture2d(torch.zeros(2, 2), 0.1, torch.tensor([0.5, 0.6]))
    with pytest.raises(ValueError, match=r"\(K, 2\)"):
        GaussianMixture2d(torch.zeros(2, 3), 0.1, torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match="alpha_bar"):
        MIXTURE.score(torch.zeros(1, 2), 0.0)
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        ToyDenoiser()(torch.zeros(3, 3), torch.zeros(3, dtype=torch.long))


def test_a_short_training_shrinks_the_eps_error_against_the_exact_answer():
    schedule = NoiseSchedule.cosine(100)
    generator = torch.Generator().manual_seed(4)
    data = MIXTURE.sample(20_000, generator)
    torch.manual_seed(0)
    model = ToyDenoiser(hidden=64, layers=2)
    timesteps = [30, 60, 90]  # (near t = 0 the score is sharp and needs longer)
    before = eps_error(
        model,
        MIXTURE,
        schedule,
        timesteps,
        n=2000,
        generator=torch.Generator().manual_seed(5),
    )

    def batches(step):
        return (
            data[torch.randint(len(data), (256,), generator=generator)],
            None,
        )

    ema_model, history = train_diffusion(
        model,
        schedule,
        batches,
        steps=300,
        lr=3e-3,
        ema_decay=0.9,
        precision=choose_precision("cpu", dtype="fp32"),
        progress=False,
    )
    after = eps_error(
        ema_model,
        MIXTURE,
        schedule,
        timesteps,
        n=2000,
        generator=torch.Generator().manual_seed(5),
    )
    assert sum(history.losses[-30:]) < 0.7 * sum(history.losses[:30])
    assert all(after[t] < 0.5 * before[t] for t in timesteps), (before, after)


def test_levels_per_point_match_one_level_at_a_time():
    torch.manual_seed(0)
    x = torch.randn(4, 2, dtype=torch.float64)
    levels = torch.tensor([1.0, 0.7, 0.2, 0.05], dtype=torch.float64)
    for method in (MIXTURE.log_prob, MIXTURE.score, MIXTURE.true_eps):
        one_at_a_time = torch.cat(
            [method(x[i : i + 1], levels[i].item()) for i in range(4)]
        )
        assert torch.allclose(method(x, levels), one_at_a_time, atol=1e-12)
        # a 0-d level is one level for all points
        assert torch.equal(
            method(x, torch.tensor(0.7, dtype=torch.float64)), method(x, 0.7)
        )


@pytest.mark.parametrize(
    "alpha_bar, error, message",
    [
        (True, TypeError, "alpha_bar must be a number"),
        ("0.5", TypeError, "alpha_bar must be a number"),
        (float("nan"), ValueError, "finite"),
        (1.5, ValueError, r"alpha_bar must lie in \(0, 1\]"),
        (torch.full((3,), 0.5), ValueError, r"tensor \(4,\)"),
        (torch.full((4, 1), 0.5), ValueError, r"tensor \(4,\)"),
        (torch.ones(4, dtype=torch.long), TypeError, "float tensor"),
        (torch.tensor([0.5, float("nan"), 0.5, 0.5]), ValueError, "alpha_bar"),
    ],
)
def test_mixture_rejects_bad_noise_levels(alpha_bar, error, message):
    for method in (MIXTURE.log_prob, MIXTURE.score, MIXTURE.true_eps):
        with pytest.raises(error, match=message):
            method(torch.zeros(4, 2), alpha_bar)
