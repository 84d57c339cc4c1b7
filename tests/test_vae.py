import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.distributions import Bernoulli, MultivariateNormal, Normal, kl_divergence

from minigen.core.runtime import choose_precision
from minigen.data.shapes import ShapesWorld
from minigen.models.vae import (
    VAE,
    active_units,
    bernoulli_log_likelihood,
    bits_per_dim,
    elbo,
    encode_mean,
    gaussian_kl,
    gaussian_log_likelihood,
    gradient_variance,
    interpolate,
    latent_grid,
    negative_elbo_nats,
    reparam_gradient,
    reparameterize,
    sample,
    score_function_gradient,
    toy_gradient,
    toy_objective,
    train_vae,
)

TINY_WIDTHS = (8, 8, 16)


class LinearVAE(nn.Module):
    """A known tiny model on vectors: linear encoder to (mu, logvar), linear decoder to logits."""

    def __init__(self, data_dim: int = 6, latent_dim: int = 3):
        super().__init__()
        torch.manual_seed(0)
        self.latent_dim = latent_dim
        self.encoder = nn.Linear(data_dim, 2 * latent_dim)
        self.decoder = nn.Linear(latent_dim, data_dim)

    def encode(self, x):
        return self.encoder(x).chunk(2, dim=1)

    def decode(self, z):
        return self.decoder(z)


# --- KL, reparameterization, likelihoods ------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 5),
    latent=st.integers(1, 8),
    scale=st.floats(0.01, 3.0),
    seed=st.integers(0, 10_000),
)
def test_gaussian_kl_matches_torch_distributions(batch, latent, scale, seed):
    generator = torch.Generator().manual_seed(seed)
    mu = scale * torch.randn(
        batch, latent, generator=generator, dtype=torch.float64
    )
    logvar = scale * torch.randn(
        batch, latent, generator=generator, dtype=torch.float64
    )
    expected = kl_divergence(
        Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)
    ).sum(dim=-1)
    torch.testing.assert_close(gaussian_kl(mu, logvar), expected)


def test_gaussian_kl_is_zero_only_at_the_prior():
    assert gaussian_kl(torch.zeros(2, 4), torch.zeros(2, 4)).abs().max() == 0
    assert (gaussian_kl(torch.full((2, 4), 0.1), torch.zeros(2, 4)) > 0).all()


def test_reparameterize_gradient_matches_finite_differences():
    mu = torch.tensor([0.3, -1.2, 0.7], dtype=torch.float64)
    logvar = torch.tensor([-0.5, 0.2, 1.0], dtype=torch.float64)

    def objective(mu, logvar):  # a fixed eps for every call: same seed
        z = reparameterize(mu, logvar, torch.Generator().manual_seed(7))
        return (
            torch.sin(z) * torch.tensor([1.0, 2.0, -3.0], dtype=torch.float64)
        ).sum()

    mu_, logvar_ = mu.clone().requires_grad_(), logvar.clone().requires_grad_()
    grad_mu, grad_logvar = torch.autograd.grad(
        objective(mu_, logvar_), (mu_, logvar_)
    )
    h = 1e-6
    for j in range(3):
        step = torch.zeros(3, dtype=torch.float64)
        step[j] = h
        fd_mu = (objective(mu + step, logvar) - objective(mu - step, logvar)) / (
            2 * h
        )
        fd_logvar = (
            objective(mu, logvar + step) - objective(mu, logvar - step)
        ) / (2 * h)
        assert grad_mu[j].item() == pytest.approx(fd_mu.item(), abs=1e-7)
        assert grad_logvar[j].item() == pytest.approx(fd_logvar.item(), abs=1e-7)


def test_reparameterize_has_the_right_mean_and_variance():
    n = 200_000
    mu = torch.tensor([1.5, -2.0]).expand(n, 2)
    logvar = torch.log(torch.tensor([0.25, 4.0])).expand(n, 2)
    z = reparameterize(mu, logvar, torch.Generator().manual_seed(0))
    torch.testing.assert_close(
        z.mean(dim=0), torch.tensor([1.5, -2.0]), atol=0.02, rtol=0
    )
    torch.testing.assert_close(
        z.var(dim=0), torch.tensor([0.25, 4.0]), atol=0.0, rtol=0.02
    )


def test_reparameterize_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        reparameterize(torch.zeros(2, 3), torch.zeros(2, 4))


@pytest.mark.parametrize("binary", [True, False])
def test_bernoulli_log_likelihood_matches_torch_distributions(binary):
    generator = torch.Generator().manual_seed(1)
    logits = 3 * torch.randn(4, 3, 5, 5, generator=generator)
    x = torch.rand(4, 3, 5, 5, generator=generator)
    # a non-binary x: Bernoulli.log_prob without validation is the same formula
    x = x.round() if binary else x
    expected = (
        Bernoulli(logits=logits, validate_args=False)
        .log_prob(x)
        .flatten(1)
        .sum(dim=1)
    )
    torch.testing.assert_close(bernoulli_log_likelihood(logits, x), expected)


@pytest.mark.parametrize("log_sigma", [math.log(0.1), 0.0, 0.7])
def test_gaussian_log_likelihood_matches_torch_distributions(log_sigma):
    generator = torch.Generator().manual_seed(2)
    mean, x = (
        torch.rand(3, 3, 4, 4, generator=generator),
        torch.rand(3, 3, 4, 4, generator=generator),
    )
    expected = Normal(mean, math.exp(log_sigma)).log_prob(x).flatten(1).sum(dim=1)
    torch.testing.assert_close(
        gaussian_log_likelihood(mean, x, log_sigma), expected
    )


def test_bits_per_dim():
    dims = 3 * 32 * 32
    # a uniform 8-bit image
    assert bits_per_dim(dims * math.log(256), dims) == pytest.approx(8.0)
    torch.testing.assert_close(
        bits_per_dim(torch.tensor([dims * math.log(2)]), dims), torch.tensor([1.0])
    )
    with pytest.raises(ValueError, match="dims"):
        bits_per_dim(1.0, 0)


# --- The ELBO computed two ways ---------------------------------------------------------------


def test_elbo_matches_torch_distributions_with_the_same_sample():
    model, x = (
        LinearVAE(),
        torch.rand(5, 6, generator=torch.Generator().manual_seed(3)),
    )
    terms = elbo(model, x, beta=0.5, generator=torch.Generator().manual_seed(4))
    mu, logvar = model.encode(x)
    q = Normal(mu, (0.5 * logvar).exp())
    z = mu + q.scale * torch.randn(
        mu.shape, generator=torch.Generator().manual_seed(4)
    )
    reconstruction = (
        Bernoulli(logits=model.decode(z), validate_args=False)
        .log_prob(x)
        .sum(dim=1)
    )
    kl = kl_divergence(q, Normal(0.0, 1.0)).sum(dim=1)
    torch.testing.assert_close(terms["reconstruction"], reconstruction)
    torch.testing.assert_close(terms["kl"], kl)
    torch.testing.assert_close(terms["elbo"], reconstruction - kl)
    torch.testing.assert_close(terms["objective"], reconstruction - 0.5 * kl)


def test_analytic_kl_agrees_with_a_monte_carlo_estimate():
    model, x = (
        LinearVAE(),
        torch.rand(4, 6, generator=torch.Generator().manual_seed(5)),
    )
    with torch.no_grad():
        mu, logvar = model.encode(x)
        q = Normal(mu, (0.5 * logvar).exp())
        z = q.sample((100_000,))  # (S, B, L)
        # E_q[log q - log p]
        monte_carlo = (
            (q.log_prob(z) - Normal(0.0, 1.0).log_prob(z)).sum(dim=-1).mean(dim=0)
        )
        analytic = elbo(model, x)["kl"]
    torch.testing.assert_close(analytic, monte_carlo, atol=0.02, rtol=0.0)


def test_elbo_equals_log_evidence_for_the_exact_posterior_of_a_linear_gaussian_model():
    # p(z) = N(0, I), p(x|z) = N(W z + b, s^2 I): then p(x) = N(b, W W^T + s^2 I) and the posterior is
    # Gaussian with precision I + W^T W / s^2; with q = that posterior the ELBO equals log p(x).
    generator = torch.Generator().manual_seed(6)
    w = torch.randn(5, 2, generator=generator, dtype=torch.float64)
    b = torch.randn(5, generator=generator, dtype=torch.float64)
    s, x = 0.5, torch.randn(1, 5, generator=generator, dtype=torch.float64)
    # (2, 2)
    covariance = torch.linalg.inv(
        torch.eye(2, dtype=torch.float64) + w.T @ w / s**2
    )
    mu = (covariance @ w.T @ (x[0] - b) / s**2)[None]  # (1, 2)
    # the exact posterior is not diagonal in general: rotate z so that it is (z' = U^T z, W' = W U)
    variances, rotation = torch.linalg.eigh(covariance)
    w, mu, logvar = w @ rotation, mu @ rotation, variances.log()[None]
    n = 50_000
    # (n, 2)
    z = reparameterize(
        mu.expand(n, 2), logvar.expand(n, 2), torch.Generator().manual_seed(0)
    )
    # (n,)
    reconstruction = gaussian_log_likelihood(
        z @ w.T + b, x.expand(n, 5), math.log(s)
    )
    estimate = reconstruction.mean() - gaussian_kl(mu, logvar)[0]
    log_evidence = MultivariateNormal(
        b, w @ w.T + s**2 * torch.eye(5, dtype=torch.float64)
    ).log_prob(x[0])
    assert estimate.item() == pytest.approx(log_evidence.item(), abs=0.02)


def test_elbo_rejects_bad_arguments():
    model, x = LinearVAE(), torch.rand(2, 6)
    with pytest.raises(ValueError, match="likelihood"):
        elbo(model, x, likelihood="poisson")
    with pytest.raises(ValueError, match="beta"):
        elbo(model, x, beta=-1.0)


# --- The convolutional VAE ---------------------------------------------------------------------


def test_vae_shapes_and_dtypes_under_bf16_autocast():
    model, x = VAE(latent_dim=5, widths=TINY_WIDTHS), torch.rand(3, 3, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
        terms = elbo(model, x, likelihood="gaussian")
    assert out["mu"].shape == out["logvar"].shape == out["z"].shape == (3, 5)
    assert out["mu"].dtype == out["logvar"].dtype == torch.float32
    assert (
        out["logits"].shape == (3, 3, 32, 32)
        and out["logits"].dtype == torch.bfloat16
    )
    for term in terms.values():
        assert (
            term.shape == (3,)
            and term.dtype == torch.float32
            and torch.isfinite(term).all()
        )


def test_sampling_grid_and_interpolation_shapes():
    model, x = (
        VAE(latent_dim=4, widths=TINY_WIDTHS).eval(),
        torch.rand(6, 3, 32, 32),
    )
    images = sample(model, 7, torch.Generator().manual_seed(0))
    assert (
        images.shape == (7, 3, 32, 32) and 0 <= images.min() and images.max() <= 1
    )
    assert latent_grid(model, dims=(1, 3), n=4).shape == (16, 3, 32, 32)
    assert encode_mean(model, x, batch_size=4).shape == (6, 4)
    path = interpolate(model, x[0], x[1], steps=5)
    assert path.shape == (5, 3, 32, 32)
    ends = torch.sigmoid(model.decode(encode_mean(model, x[:2])))
    torch.testing.assert_close(path[[0, -1]], ends, atol=1e-5, rtol=1e-5)


def test_latent_grid_varies_the_chosen_dims_only():
    model = VAE(latent_dim=3, widths=TINY_WIDTHS).eval()
    decoded = []
    model.decode = lambda z: (
        decoded.append(z.clone()),
        torch.zeros(len(z), 3, 32, 32),
    )[1]
    latent_grid(model, dims=(2, 0), n=3, span=1.0)
    z = decoded[0]
    values = torch.tensor([-1.0, 0.0, 1.0])
    torch.testing.assert_close(z[:, 2], values.repeat(3))  # along a row: dims[0]
    # down the rows: dims[1]
    torch.testing.assert_close(z[:, 0], values.repeat_interleave(3))
    assert (z[:, 1] == 0).all()
    with pytest.raises(ValueError, match="dims"):
        latent_grid(model, dims=(0, 0))
    with pytest.raises(ValueError, match="dims"):
        latent_grid(model, dims=(0, 3))


def test_vae_training_lowers_the_negative_elbo():
    world = ShapesWorld()
    fp32 = choose_precision("cpu", dtype="fp32")
    images = world.scenes(32, split="val").images
    untrained = VAE(latent_dim=4, widths=TINY_WIDTHS)
    model, history = train_vae(
        world,
        latent_dim=4,
        steps=40,
        batch_size=16,
        lr=3e-3,
        precision=fp32,
        progress=False,
        widths=TINY_WIDTHS,
    )
    assert len(history.losses) == 40 and set(history.metrics) == {
        "reconstruction_nll",
        "kl",
    }
    before = negative_elbo_nats(
        untrained, images, generator=torch.Generator().manual_seed(0)
    )
    after = negative_elbo_nats(
        model, images, generator=torch.Generator().manual_seed(0)
    )
    assert after["nelbo"] < 0.9 * before["nelbo"]
    assert after["nelbo"] == pytest.approx(after["reconstruction"] + after["kl"])
    assert not model.training


# --- Active units --------------------------------------------------------------------------------


def test_active_units_counts_dims_whose_mean_moves_with_the_input():
    generator = torch.Generator().manual_seed(0)
    # variances 1, 0.25, 0.0009, 0, 4
    scales = torch.tensor([1.0, 0.5, 0.03, 0.0, 2.0])
    # a constant offset does not count
    mu = torch.randn(20_000, 5, generator=generator) * scales + 3.0
    count, variances = active_units(mu)
    assert count == 3
    torch.testing.assert_close(variances, scales.square(), atol=0.002, rtol=0.05)
    assert active_units(mu, threshold=2.0)[0] == 1
    with pytest.raises(ValueError, match="N >= 2"):
        active_units(torch.zeros(1, 5))


# --- Gradient estimators ------------------------------------------------------------------------


@pytest.mark.parametrize("estimator", [reparam_gradient, score_function_gradient])
def test_gradient_estimators_are_unbiased(estimator):
    mu, log_sigma, target = (
        torch.tensor([0.5, -1.0]),
        torch.tensor([0.0, -0.7]),
        torch.tensor([1.0, 1.0]),
    )
    grad_mu, grad_log_sigma = estimator(
        toy_objective(target),
        mu,
        log_sigma,
        400_000,
        torch.Generator().manual_seed(0),
    )
    exact_mu, exact_log_sigma = toy_gradient(mu, log_sigma, target)
    torch.testing.assert_close(grad_mu, exact_mu, atol=0.05, rtol=0)
    torch.testing.assert_close(grad_log_sigma, exact_log_sigma, atol=0.05, rtol=0)
    # the inputs are left alone
    assert not mu.requires_grad and not log_sigma.requires_grad


def test_reinforce_has_more_variance_than_the_reparameterization_trick():
    mu, log_sigma, target = (
        torch.tensor([0.5, -1.0]),
        torch.tensor([0.0, -0.7]),
        torch.tensor([1.0, 1.0]),
    )
    f, generator = toy_objective(target), torch.Generator().manual_seed(0)
    reparam = gradient_variance(
        reparam_gradient, f, mu, log_sigma, 16, 200, generator
    )
    reinforce = gradient_variance(
        score_function_gradient, f, mu, log_sigma, 16, 200, generator
    )
    for low, high in zip(reparam, reinforce):
        assert (high > 2 * low).all()
    # the reparameterization variance of dmu for this f is known: Var(2 sigma eps) / S = 4 sigma^2 / 16
    torch.testing.assert_close(
        reparam[0], 4 * torch.exp(2 * log_sigma) / 16, rtol=0.3, atol=0
    )
    with pytest.raises(ValueError, match="repeats"):
        gradient_variance(reparam_gradient, f, mu, log_sigma, 16, 1)


def test_vae_works_at_another_resolution():
    model = VAE(latent_dim=2, widths=(8, 8), in_channels=1, image_size=16)
    out = model(torch.rand(2, 1, 16, 16))
    assert out["logits"].shape == (2, 1, 16, 16)
    with pytest.raises(ValueError, match="latent_dim"):
        VAE(latent_dim=0)


def test_train_vae_on_an_image_tensor_like_mnist():
    """The MNIST recipe of chapter 4 on stand-in digits: 28x28 one-channel images, two halvings, binarized."""
    generator = torch.Generator().manual_seed(0)
    images = torch.zeros(64, 1, 28, 28)
    for i in range(64):  # bright bars at random rows: structure to learn
        row = int(torch.randint(4, 24, (1,), generator=generator))
        images[i, 0, row - 2 : row + 2, 4:24] = 0.9
    fp32 = choose_precision("cpu", dtype="fp32")
    model, history = train_vae(
        images,
        latent_dim=2,
        steps=30,
        batch_size=16,
        lr=3e-3,
        precision=fp32,
        progress=False,
        widths=(8, 8),
        binarize=True,
    )
    assert model.decoder.to_image.out_channels == 1 and model.latent_dim == 2
    assert sample(model, 3).shape == (3, 1, 28, 28)
    assert history.losses[-1] < history.losses[0]
    again, _ = train_vae(
        images,
        latent_dim=2,
        steps=30,
        batch_size=16,
        lr=3e-3,
        precision=fp32,
        progress=False,
        widths=(8, 8),
        binarize=True,
    )
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), again.state_dict().values())
    )


@pytest.mark.parametrize(
    ("data", "error", "match"),
    [
        (torch.rand(4, 1, 28, 24), ValueError, "square"),
        (torch.rand(4, 28, 28), ValueError, r"4-d tensor \(N, C, S, S\)"),
        (torch.rand(4, 1, 8, 8) * 2, ValueError, r"\[0, 1\]"),
        (torch.ones(4, 1, 8, 8, dtype=torch.uint8), TypeError, "floating-point"),
        (torch.zeros(0, 1, 8, 8), ValueError, "non-empty"),
        (
            torch.rand(4, 1, 8, 8).index_put_(
                (torch.tensor([2]),), torch.tensor(float("nan"))
            ),
            ValueError,
            "data holds 64 NaN or infinite values",
        ),
        (torch.full((4, 1, 8, 8), float("inf")), ValueError, "NaN or infinite"),
        ([[0.0]], TypeError, "ShapesWorld or a tensor"),
    ],
)
def test_train_vae_rejects_bad_data(data, error, match):
    with pytest.raises(error, match=match):
        train_vae(data, latent_dim=2, steps=1, widths=(8,), progress=False)


def test_kl_warmup_weights_the_kl_linearly_up_to_beta():
    world = ShapesWorld()
    fp32 = choose_precision("cpu", dtype="fp32")
    _, history = train_vae(
        world,
        latent_dim=4,
        steps=6,
        batch_size=8,
        beta=2.0,
        kl_warmup=4,
        precision=fp32,
        progress=False,
        widths=TINY_WIDTHS,
    )
    # loss = nll + beta * min(1, (step + 1) / warmup) * kl
    for step, loss in enumerate(history.losses):
        weight = 2.0 * min(1.0, (step + 1) / 4)
        expected = (
            history.metrics["reconstruction_nll"][step]
            + weight * history.metrics["kl"][step]
        )
        assert loss == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="kl_warmup"):
        train_vae(world, latent_dim=4, steps=1, kl_warmup=-1, progress=False)


# --- argument checks, eval mode, resumable training ---


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"batch_size": 0}, ValueError, "batch_size must be an int >= 1, got 0"),
        ({"steps": 0}, ValueError, "steps must be an int >= 1"),
        (
            {"latent_dim": 10**9},
            ValueError,
            "latent_dim must be an int <= 1,000,000",
        ),
        (
            {"widths": (10**9,)},
            ValueError,
            "every entry of widths must be an int <= 1,000,000",
        ),
        ({"beta": float("nan")}, ValueError, "beta must be a finite number"),
        ({"beta": -1.0}, ValueError, "beta must lie in"),
        (
            {"likelihood": "poisson"},
            ValueError,
            "likelihood must be one of 'bernoulli', 'gaussian'",
        ),
        ({"binarize": "no"}, TypeError, "binarize must be True or False"),
        ({"kl_warmup": 1.5}, TypeError, "kl_warmup must be an int"),
        ({"lr": float("inf")}, ValueError, "lr must be a finite number"),
        ({"checkpoint_every": 1}, ValueError, "checkpoint=PATH"),
    ],
)
def test_train_vae_fails_fast_on_bad_arguments(kwargs, error, message):
    arguments = {
        "data": ShapesWorld(),
        "latent_dim": 2,
        "steps": 2,
        "widths": (4,),
        "progress": False,
        **kwargs,
    }
    with pytest.raises(error, match=message):
        train_vae(**arguments)


class DropoutLinearVAE(LinearVAE):
    """LinearVAE with dropout on the input: its ELBO depends on the mode."""

    def __init__(self):
        super().__init__()
        self.drop = nn.Dropout(0.5)

    def encode(self, x):
        return super().encode(self.drop(x))


def test_negative_elbo_nats_runs_in_eval_mode_and_restores_the_mode():
    model = DropoutLinearVAE().train()
    x = torch.rand(50, 6)
    got = negative_elbo_nats(
        model, x, batch_size=16, generator=torch.Generator().manual_seed(0)
    )
    assert model.training and model.drop.training
    expected = negative_elbo_nats(
        model.eval(), x, batch_size=16, generator=torch.Generator().manual_seed(0)
    )
    assert got == expected
    with pytest.raises(ValueError, match="likelihood must be one of"):
        negative_elbo_nats(model.train(), x, likelihood="laplace")
    assert model.training and model.drop.training


def test_vae_functions_check_their_inputs():
    mu = torch.zeros(3, 2)
    with pytest.raises(TypeError, match="logvar must be a torch.Tensor"):
        gaussian_kl(mu, [[0.0, 0.0]] * 3)
    with pytest.raises(ValueError, match="mu and logvar must have the same shape"):
        reparameterize(mu, torch.zeros(3, 3))
    with pytest.raises(ValueError, match="beta must be a finite number"):
        elbo(LinearVAE(), torch.rand(2, 6), beta=float("nan"))
    model = LinearVAE()
    with pytest.raises(ValueError, match="span must be a finite number"):
        latent_grid(model, span=float("nan"))
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        sample(model, 0)
    with pytest.raises(ValueError, match="steps must be an int >= 2"):
        interpolate(model, torch.rand(3, 4, 4), torch.rand(3, 4, 4), steps=1)
    with pytest.raises(ValueError, match="x_a and x_b must have the same shape"):
        interpolate(model, torch.rand(3, 4, 4), torch.rand(3, 4, 5), steps=2)
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        active_units(torch.rand(4, 2), threshold=float("nan"))
    with pytest.raises(ValueError, match="dims must be an int"):
        bits_per_dim(1.0, 0)
    with pytest.raises(ValueError, match="repeats must be an int >= 2"):
        gradient_variance(
            reparam_gradient,
            toy_objective(torch.zeros(2)),
            torch.zeros(2),
            torch.zeros(2),
            4,
            1,
        )


# --- bad input at the entry points: a clear TypeError or ValueError, never silence ---------------


def test_a_per_channel_log_sigma_tensor_matches_torch_distributions():
    generator = torch.Generator().manual_seed(7)
    mean, x = (
        torch.rand(2, 3, 4, 4, generator=generator),
        torch.rand(2, 3, 4, 4, generator=generator),
    )
    log_sigma = torch.tensor([-1.0, 0.0, 0.5])[
        :, None, None
    ]  # (3, 1, 1): one sigma per channel
    expected = Normal(mean, log_sigma.exp()).log_prob(x).flatten(1).sum(dim=1)
    torch.testing.assert_close(
        gaussian_log_likelihood(mean, x, log_sigma), expected
    )
    with pytest.raises(
        ValueError, match=r"log_sigma of shape \(2,\) must broadcast against x"
    ):
        gaussian_log_likelihood(mean, x, torch.zeros(2))
    with pytest.raises(
        ValueError, match="log_sigma holds 1 NaN or infinite values"
    ):
        gaussian_log_likelihood(
            mean, x, torch.tensor([math.nan, 0.0, 0.0])[:, None, None]
        )


@pytest.mark.parametrize(
    "log_sigma, error, message",
    [
        (math.nan, ValueError, "log_sigma must be a finite number, got nan"),
        (math.inf, ValueError, "log_sigma must be a finite number, got inf"),
        (None, TypeError, "log_sigma must be a number, got None"),
        ("-2", TypeError, "log_sigma must be a number, got str"),
        (True, TypeError, "log_sigma must be a number, got bool"),
    ],
)
def test_log_sigma_must_be_finite_for_every_likelihood(log_sigma, error, message):
    mean, x = torch.rand(2, 6), torch.rand(2, 6)
    with pytest.raises(error, match=message):
        gaussian_log_likelihood(mean, x, log_sigma)
    # also with the Bernoulli likelihood, which does not use it: a NaN is a mistake
    with pytest.raises(error, match=message):
        elbo(LinearVAE(), x, log_sigma=log_sigma)
    with pytest.raises(error, match=message):
        negative_elbo_nats(
            LinearVAE(), x, likelihood="gaussian", log_sigma=log_sigma
        )


def test_bits_per_dim_refuses_nonfinite_nats():
    for nats in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="nats must be a finite number"):
            bits_per_dim(nats, 10)
    with pytest.raises(ValueError, match="nats holds 1 NaN or infinite values"):
        bits_per_dim(torch.tensor([1.0, math.nan]), 10)
    with pytest.raises(TypeError, match="nats must be a number, got str"):
        bits_per_dim("100", 10)
    # negative nats are fine: a density above 1 has a negative log-likelihood
    assert bits_per_dim(-10 * math.log(2), 10) == pytest.approx(-1.0)


def _generator_users():
    model, x = LinearVAE(), torch.rand(2, 6)
    mu, log_sigma, f = torch.zeros(3), torch.zeros(3), toy_objective(torch.ones(3))
    return {
        "reparameterize": lambda g: reparameterize(
            torch.zeros(2, 3), torch.zeros(2, 3), g
        ),
        "VAE.forward": lambda g: VAE(2, widths=(8,), image_size=8)(
            torch.rand(1, 3, 8, 8), g
        ),
        "elbo": lambda g: elbo(model, x, generator=g),
        "negative_elbo_nats": lambda g: negative_elbo_nats(model, x, generator=g),
        "sample": lambda g: sample(model, 2, generator=g),
        "reparam_gradient": lambda g: reparam_gradient(f, mu, log_sigma, 4, g),
        "score_function_gradient": lambda g: score_function_gradient(
            f, mu, log_sigma, 4, g
        ),
        "gradient_variance": lambda g: gradient_variance(
            reparam_gradient, f, mu, log_sigma, 4, 2, g
        ),
    }


@pytest.mark.parametrize("name", sorted(_generator_users()))
@pytest.mark.parametrize("bad", [42, "seed", object(), torch.float32])
def test_every_generator_argument_is_checked(name, bad):
    call = _generator_users()[name]
    with pytest.raises(TypeError, match="generator must be Generator, got"):
        call(bad)
    call(torch.Generator().manual_seed(0))  # and a real one works


@pytest.mark.parametrize("bad", [None, 42, VAE, nn.Linear(6, 6)])
def test_model_arguments_must_be_vaes(bad):
    x = torch.rand(2, 6)
    calls = [
        lambda: elbo(bad, x),
        lambda: negative_elbo_nats(bad, x),
        lambda: encode_mean(bad, x),
        lambda: sample(bad, 2),
        lambda: latent_grid(bad),
        lambda: interpolate(bad, torch.rand(3, 4, 4), torch.rand(3, 4, 4), steps=2),
    ]
    for call in calls:
        with pytest.raises(TypeError, match="model must be"):
            call()


def test_tensors_of_the_wrong_dtype_are_named():
    longs = torch.zeros(2, 3, dtype=torch.long)
    with pytest.raises(
        TypeError, match="mu must be a floating-point tensor, got torch.int64"
    ):
        reparameterize(longs, torch.zeros(2, 3))
    with pytest.raises(TypeError, match="logits must be a floating-point tensor"):
        bernoulli_log_likelihood(longs, torch.zeros(2, 3))
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        bernoulli_log_likelihood(torch.zeros(2, 3), longs)
    # an int x would have rounded log_sigma to an int before
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        gaussian_log_likelihood(torch.zeros(2, 3), longs, -2.3)
    with pytest.raises(
        TypeError, match="log_sigma must be a floating-point tensor"
    ):
        reparam_gradient(
            toy_objective(torch.ones(3)),
            torch.zeros(3),
            torch.zeros(3, dtype=torch.long),
            4,
        )


def test_toy_functions_and_estimators_check_their_inputs():
    with pytest.raises(TypeError, match="target must be a torch.Tensor"):
        toy_objective("origin")
    with pytest.raises(ValueError, match=r"target must be a 1-d tensor \(D,\)"):
        toy_objective(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="mu and target must have the same shape"):
        toy_gradient(torch.zeros(3), torch.zeros(3), torch.zeros(4))
    with pytest.raises(TypeError, match="f must be a function of z"):
        reparam_gradient(None, torch.zeros(3), torch.zeros(3), 4)
    with pytest.raises(TypeError, match="f must be a function of z"):
        score_function_gradient("f", torch.zeros(3), torch.zeros(3), 4)
    with pytest.raises(
        TypeError, match="estimator must be a gradient estimator, got int"
    ):
        gradient_variance(
            42, toy_objective(torch.ones(3)), torch.zeros(3), torch.zeros(3), 4, 2
        )


def test_encode_mean_and_negative_elbo_refuse_an_empty_batch():
    empty = torch.rand(0, 6)
    with pytest.raises(ValueError, match="images must be a non-empty batch"):
        encode_mean(LinearVAE(), empty)
    with pytest.raises(ValueError, match="images must be a non-empty batch"):
        negative_elbo_nats(LinearVAE(), empty)
