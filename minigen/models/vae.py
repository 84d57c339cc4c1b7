"""The variational autoencoder: ELBO, reparameterization, beta, active units, and
why the trick matters.

Implements
- the VAE, its evidence lower bound (ELBO) and the reparameterization trick,
  D. P. Kingma, M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014 (the
  closed-form Gaussian KL is their Appendix B);
- beta-VAE, the KL term weighted by beta, I. Higgins et al., "beta-VAE: Learning
  Basic Visual Concepts with a Constrained Variational Framework", ICLR 2017;
- active latent units as a check for posterior collapse, Y. Burda, R. Grosse,
  R. Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016 (Section 5.2);
- the score-function (REINFORCE) gradient estimator the trick is compared with,
  R. J. Williams, "Simple statistical gradient-following algorithms for
  connectionist reinforcement learning", Machine Learning 8 (1992); see also
  S. Mohamed et al., "Monte Carlo Gradient Estimation in Machine Learning", JMLR
  2020.

The ELBO of an image x, with encoder q(z|x) = N(mu(x), diag sigma^2(x)), prior
p(z) = N(0, I) and decoder p(x|z):
    log p(x) >= ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z)).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from minigen.core.runtime import (
    Precision,
    choose_precision,
    eval_mode,
    seed_everything,
)
from minigen.core.train import History, check_training_arguments, train
from minigen.core.validators import (
    check_bool,
    check_choice,
    check_float,
    check_instance,
    check_int,
    check_ints,
    check_module,
    check_optional,
    check_positive,
    check_same_shape,
    check_tensor,
    describe,
)
from minigen.data.shapes import ShapesWorld
from minigen.nn.conv import ConvDecoder, ConvEncoder

LIKELIHOODS: tuple[str, ...] = ("bernoulli", "gaussian")
# the Gaussian decoder's fixed noise: sigma = 0.1 on [0, 1] intensities
DEFAULT_LOG_SIGMA = math.log(0.1)

GradientEstimator = Callable[..., tuple[torch.Tensor, torch.Tensor]]


# ----------------------------------------------------------------------------------
# The two terms of the ELBO
# ----------------------------------------------------------------------------------


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag exp(logvar)) || N(0, I)) in nats, summed over the latent axis:
    (B, L) -> (B,)."""
    _check_pair("mu", mu, "logvar", logvar)
    # KL = 1/2 sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2)
    return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).sum(dim=-1)


def reparameterize(
    mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A sample z ~ N(mu, diag exp(logvar)) written as a differentiable function of
    mu and logvar."""
    _check_pair("mu", mu, "logvar", logvar)
    _check_generator(generator)
    # eps ~ N(0, I)
    eps = torch.randn(
        mu.shape, generator=generator, device=mu.device, dtype=mu.dtype
    )
    # z = mu + sigma * eps, sigma = exp(logvar / 2)
    return mu + torch.exp(0.5 * logvar) * eps


def bernoulli_log_likelihood(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x|z) in nats for independent Bernoulli pixels with the given logits,
    summed per image: (B, ...) -> (B,).

    On intensities in [0, 1] rather than {0, 1} this is the common choice (Kingma &
    Welling used it on MNIST): it equals minus the binary cross-entropy, is largest
    when sigmoid(logits) = x, but is not a normalised density over [0, 1] (the
    continuous Bernoulli would add the missing log-normaliser), so its nats are a
    training loss rather than an exact likelihood.
    """
    _check_pair("logits", logits, "x", x)
    # log p = sum_i x_i log sigmoid(l_i) + (1 - x_i) log(1 - sigmoid(l_i))
    #       = -BCE(l, x)
    nll = F.binary_cross_entropy_with_logits(
        _at_least_fp32(logits), _at_least_fp32(x), reduction="none"
    )
    return -nll.flatten(1).sum(dim=1)


def gaussian_log_likelihood(
    mean: torch.Tensor, x: torch.Tensor, log_sigma: float | torch.Tensor
) -> torch.Tensor:
    """log N(x; mean, sigma^2 I) in nats, summed per image: (B, ...) -> (B,).

    log_sigma broadcasts against x.
    """
    _check_pair("mean", mean, "x", x)
    _check_log_sigma(log_sigma, x)
    x, mean = _at_least_fp32(x), _at_least_fp32(mean)
    log_sigma = torch.as_tensor(log_sigma, dtype=x.dtype, device=x.device)
    standardised = (x - mean) / log_sigma.exp()
    # log N(x; m, s^2) = -1/2 ((x - m) / s)^2 - log s - 1/2 log(2 pi), per pixel
    log_density = (
        -0.5 * standardised.square() - log_sigma - 0.5 * math.log(2 * math.pi)
    )
    return log_density.flatten(1).sum(dim=1)


def bits_per_dim(nats: float | torch.Tensor, dims: int) -> float | torch.Tensor:
    """Convert nats per image to bits per dimension: nats / (D ln 2), D = pixels x
    channels."""
    # e.g. 3 * 32 * 32 = 3072 for RGB 32x32 images
    check_int("dims", dims, maximum=None)
    if isinstance(nats, torch.Tensor):
        check_tensor("nats", nats, finite=True)
    else:
        check_float("nats", nats)
    return nats / (dims * math.log(2))  # bits/dim = nats / (D ln 2)


# ----------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------


class VAE(nn.Module):
    """A convolutional VAE: ConvEncoder -> (mu, logvar), z = reparameterize,
    ConvDecoder -> logits.

    The decoder returns logits; sigmoid(logits) is the mean image for both
    likelihoods of `elbo`.
    """

    def __init__(
        self,
        latent_dim: int,
        widths: tuple[int, ...] = (16, 32, 64),
        in_channels: int = 3,
        upsampler: str = "resize-conv nearest",
        image_size: int = 32,
    ):
        super().__init__()
        self.latent_dim = check_int("latent_dim", latent_dim)
        widths = check_ints("widths", widths)
        self.encoder = ConvEncoder(
            in_channels=in_channels,
            widths=tuple(widths),
            out_features=2 * latent_dim,
            image_size=image_size,
        )
        self.decoder = ConvDecoder(
            in_features=latent_dim,
            widths=tuple(reversed(widths)),
            out_channels=in_channels,
            upsampler=upsampler,
            image_size=image_size,
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The posterior's parameters (mu, logvar), each (B, L), kept in float32
        even under autocast."""
        # (B, 2L) -> 2 x (B, L)
        mu, logvar = self.encoder(x).float().chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Logits of p(x|z): (B, L) -> (B, C, H, W)."""
        return self.decoder(z)

    def forward(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Encode, sample one z per image, decode: {"mu", "logvar", "z",
        "logits"}."""
        mu, logvar = self.encode(x)  # (B, L) each
        z = reparameterize(mu, logvar, generator)  # (B, L)
        return {"mu": mu, "logvar": logvar, "z": z, "logits": self.decode(z)}


def _latent_dim(model: nn.Module) -> int:
    if not isinstance(getattr(_check_vae(model), "latent_dim", None), int):
        raise TypeError(
            "expected a model with an int .latent_dim (a VAE), got "
            f"{type(model).__name__}"
        )
    return model.latent_dim


def _device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def elbo(
    model: nn.Module,
    x: torch.Tensor,
    beta: float = 1.0,
    likelihood: str = "bernoulli",
    generator: torch.Generator | None = None,
    log_sigma: float = DEFAULT_LOG_SIGMA,
) -> dict[str, torch.Tensor]:
    """The ELBO of each image, with one sample of z: a dict of (B,) float32 tensors
    in nats.

    "reconstruction": log p(x|z), z ~ q(z|x); "kl": KL(q(z|x) || p(z));
    "elbo": reconstruction - kl, the lower bound on log p(x);
    "objective": reconstruction - beta * kl, what beta-VAE maximises (equal to
    "elbo" when beta = 1).
    model: a module with encode(x) -> (mu, logvar) and decode(z) -> logits, e.g. a
        VAE.
    likelihood: "bernoulli" (on logits) or "gaussian" (mean sigmoid(logits), fixed
        sigma = exp(log_sigma)).
    """
    _check_elbo_arguments(model, x, likelihood, generator, log_sigma)
    check_float("beta", beta, 0.0)  # 1: the true ELBO
    mu, logvar = model.encode(x)  # (B, L) each
    z = reparameterize(mu, logvar, generator)  # (B, L)
    logits = model.decode(z)  # (B, C, H, W)
    if likelihood == "bernoulli":
        reconstruction = bernoulli_log_likelihood(logits, x)
    else:
        reconstruction = gaussian_log_likelihood(
            torch.sigmoid(_at_least_fp32(logits)), x, log_sigma
        )
    kl = gaussian_kl(_at_least_fp32(mu), _at_least_fp32(logvar))  # (B,)
    return {
        "reconstruction": reconstruction,
        "kl": kl,
        "elbo": reconstruction - kl,  # ELBO = E_q[log p(x|z)] - KL(q || p)
        # beta-VAE: E_q[log p(x|z)] - beta KL
        "objective": reconstruction - beta * kl,
    }


@torch.no_grad()
def negative_elbo_nats(
    model: nn.Module,
    images: torch.Tensor,
    likelihood: str = "bernoulli",
    batch_size: int = 256,
    generator: torch.Generator | None = None,
    log_sigma: float = DEFAULT_LOG_SIGMA,
) -> dict[str, float]:
    """The mean negative ELBO over `images`, in nats per image, and its parts:
    {"nelbo", "reconstruction", "kl"}.

    "reconstruction" here is the negative log-likelihood, so that nelbo =
    reconstruction + kl. The model is evaluated in eval mode and left in the mode it
    was found in.
    """
    batch_size = check_int("batch_size", batch_size)
    _check_elbo_arguments(model, images, likelihood, generator, log_sigma)
    _check_batch("images", images)
    totals = {"nelbo": 0.0, "reconstruction": 0.0, "kl": 0.0}
    device = _device(model)
    with eval_mode(model):
        for start in range(0, len(images), batch_size):
            terms = elbo(
                model,
                images[start : start + batch_size].to(device),
                likelihood=likelihood,
                generator=generator,
                log_sigma=log_sigma,
            )
            totals["nelbo"] -= terms["elbo"].sum().item()
            totals["reconstruction"] -= terms["reconstruction"].sum().item()
            totals["kl"] += terms["kl"].sum().item()
    return {name: total / len(images) for name, total in totals.items()}


def train_vae(
    data: ShapesWorld | torch.Tensor,
    latent_dim: int,
    steps: int,
    beta: float = 1.0,
    batch_size: int = 32,
    lr: float = 2e-3,
    precision: Precision | None = None,
    progress: bool = True,
    widths: tuple[int, ...] = (16, 32, 64),
    likelihood: str = "bernoulli",
    binarize: bool = False,
    kl_warmup: int = 0,
    seed: int = 0,
    checkpoint: str | Path | None = None,
    checkpoint_every: int | None = None,
) -> tuple[VAE, History]:
    """Train a VAE by maximising the (beta-weighted) ELBO; returns the model in eval
    mode and its History.

    data: a ShapesWorld (fresh "train" scenes every step) or a tensor of images
        (N, C, S, S) in [0, 1] (e.g. MNIST from `minigen.load_torchvision`), sampled
        with replacement by a seeded generator.
    binarize: replace each batch x by a sample of Bernoulli(x) (dynamic
        binarization, the usual MNIST setup).
    kl_warmup: the KL weight grows linearly from 0 to beta over this many steps (KL
        annealing, Bowman et al. 2016), so the decoder learns to use the code before
        the KL term can switch it off.
    checkpoint: a file to resume from and save to (every `checkpoint_every` steps).
    Adam with a cosine learning-rate decay. The loss is the batch mean of
    reconstruction_nll + beta * kl (nats per image); History.metrics logs
    "reconstruction_nll" and "kl".
    """
    _check_vae_training(beta, likelihood, binarize, kl_warmup)
    check_training_arguments(
        steps=steps, batch_size=batch_size, lr=lr, seed=seed, precision=precision,
        progress=progress, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
    )  # fmt: skip
    next_batch, channels, image_size, sampler = _batches(data, batch_size, seed)
    precision = precision or choose_precision()
    seed_everything(seed)
    model = VAE(latent_dim, widths, in_channels=channels, image_size=image_size)
    model = model.to(precision.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    binarizer = torch.Generator().manual_seed(seed + 1)

    def loss_fn(step: int) -> tuple[torch.Tensor, dict[str, float]]:
        images = next_batch(step)
        if binarize:
            images = torch.bernoulli(images, generator=binarizer)
        weight = beta * min(1.0, (step + 1) / kl_warmup) if kl_warmup else beta
        images = images.to(precision.device)
        terms = elbo(model, images, beta=weight, likelihood=likelihood)  # (B,) each
        metrics = {
            "reconstruction_nll": -terms["reconstruction"].mean().item(),
            "kl": terms["kl"].mean().item(),
        }
        # loss = E_x[-log p(x|z) + beta KL]
        return -terms["objective"].mean(), metrics

    history = train(
        model, loss_fn, steps=steps, optimizer=optimizer, scheduler=schedule,
        precision=precision, progress=progress,
        desc=f"VAE L={latent_dim} beta={beta:g}",
        checkpoint=checkpoint, checkpoint_every=checkpoint_every,
        generators=[binarizer, *sampler],  # their states resume with the checkpoint
    )  # fmt: skip
    return model.eval(), history


def _check_vae_training(
    beta: float, likelihood: str, binarize: bool, kl_warmup: int
) -> None:
    check_float("beta", beta, 0.0)
    check_choice("likelihood", likelihood, LIKELIHOODS)
    check_bool("binarize", binarize)
    check_int("kl_warmup", kl_warmup, minimum=0)  # in steps; 0: no warm-up


def _batches(
    data: ShapesWorld | torch.Tensor, batch_size: int, seed: int
) -> tuple[Callable[[int], torch.Tensor], int, int, list[torch.Generator]]:
    """(batch of step -> images (B, C, S, S), C, S, the generators it draws from)
    for a world or a tensor of images."""
    if isinstance(data, ShapesWorld):

        def scenes(step: int) -> torch.Tensor:
            indices = range(step * batch_size, (step + 1) * batch_size)
            return data.scenes(indices, split="train").images

        return scenes, 3, data.resolution, []
    check_instance(
        "data", data, torch.Tensor, "a ShapesWorld or a tensor of images"
    )
    check_tensor(
        "data", data, dims=4, floating=True, finite=True, shape="(N, C, S, S)"
    )
    if data.shape[-1] != data.shape[-2] or len(data) == 0:
        raise ValueError(
            "images must be a non-empty float tensor (N, C, S, S) of square "
            f"images, got {data.dtype} of shape {tuple(data.shape)}"
        )
    if data.min() < 0 or data.max() > 1:
        raise ValueError(
            "images must lie in [0, 1], got values from "
            f"{data.min().item():.3g} to {data.max().item():.3g}"
        )
    generator = torch.Generator().manual_seed(seed)

    def minibatch(step: int) -> torch.Tensor:
        return data[torch.randint(len(data), (batch_size,), generator=generator)]

    return minibatch, data.shape[1], data.shape[-1], [generator]


# ----------------------------------------------------------------------------------
# Using a trained VAE: samples, codes, the latent grid, interpolation, active units
# ----------------------------------------------------------------------------------


@torch.no_grad()
def sample(
    model: nn.Module, n: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """n images decoded from z ~ N(0, I): the mean sigmoid(logits) of p(x|z),
    (n, C, H, W) in [0, 1]."""
    check_int("n", n)
    _check_generator(generator)
    shape = (n, _latent_dim(model))  # (n, L)
    z = torch.randn(shape, generator=generator, device=_device(model))
    return torch.sigmoid(model.decode(z).float())


@torch.no_grad()
def encode_mean(
    model: nn.Module, images: torch.Tensor, batch_size: int = 256
) -> torch.Tensor:
    """The posterior means mu(x) = E_q[z|x] of `images`: (N, C, H, W) -> (N, L),
    on the model's device."""
    batch_size = check_int("batch_size", batch_size)
    _check_vae(model)
    _check_batch("images", images)
    device = _device(model)
    return torch.cat(
        [
            model.encode(images[start : start + batch_size].to(device))[0]
            for start in range(0, len(images), batch_size)
        ]
    )


@torch.no_grad()
def latent_grid(
    model: nn.Module, dims: tuple[int, int] = (0, 1), n: int = 8, span: float = 2.5
) -> torch.Tensor:
    """Images decoded over an n x n grid of two latent dims (the others 0), row by
    row: (n * n, C, H, W).

    Image (row r, column c) has z[dims[0]] = v[c] and z[dims[1]] = v[r],
    v = linspace(-span, span, n); span is in prior standard deviations.
    """
    latent_dim = _latent_dim(model)
    _check_grid(dims, n, span, latent_dim)
    values = torch.linspace(-span, span, n, device=_device(model))  # (n,)
    rows, columns = torch.meshgrid(values, values, indexing="ij")  # (n, n) each
    z = torch.zeros(n * n, latent_dim, device=values.device)  # (n * n, L)
    z[:, dims[0]], z[:, dims[1]] = columns.flatten(), rows.flatten()
    return torch.sigmoid(model.decode(z).float())


@torch.no_grad()
def interpolate(
    model: nn.Module, x_a: torch.Tensor, x_b: torch.Tensor, steps: int
) -> torch.Tensor:
    """Decode the straight line between the posterior means of two images (C, H, W):
    (steps, C, H, W)."""
    check_tensor("x_a", x_a, dims=3, shape="(C, H, W)")
    check_same_shape("x_a", x_a, "x_b", check_tensor("x_b", x_b))
    check_int("steps", steps, minimum=2)  # both ends are included
    device = _device(_check_vae(model))
    mu, _ = model.encode(torch.stack([x_a, x_b]).to(device))  # (2, L)
    t = torch.linspace(0.0, 1.0, steps, device=device)[:, None]  # (steps, 1)
    z = (1 - t) * mu[0] + t * mu[1]  # z_t = (1 - t) mu_a + t mu_b
    return torch.sigmoid(model.decode(z).float())


def active_units(
    mu: torch.Tensor, threshold: float = 0.01
) -> tuple[int, torch.Tensor]:
    """How many latent dims are active: A_u = Cov_x(E_q[u|x]) > threshold
    (Burda et al. 2016).

    mu: (N, L) posterior means of N inputs. Returns (count, variances (L,)). A dim
    whose mean does not move with the input carries no information about it: the
    posterior collapsed onto the prior there.
    """
    check_tensor("mu", mu, dims=2, shape="(N, L)")
    check_float("threshold", threshold, 0.0)
    if mu.shape[0] < 2:
        raise ValueError(
            "mu must be (N, L) with N >= 2 inputs to measure a variance, got "
            f"{tuple(mu.shape)}"
        )
    variances = mu.float().var(dim=0)  # Var_x(mu_j(x)), (L,)
    return int((variances > threshold).sum()), variances


# ----------------------------------------------------------------------------------
# Gradient estimators of d/d(mu, log sigma) E_{z ~ N(mu, sigma^2)}[f(z)], compared
# by their variance
# ----------------------------------------------------------------------------------


def toy_objective(target: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """f(z) = sum_j (z_j - c_j)^2: (S, D) -> (S,), the toy on which the two
    estimators are compared."""
    check_tensor("target", target, dims=1, floating=True, shape="(D,)")
    return lambda z: (z - target).square().sum(dim=-1)


def toy_gradient(
    mu: torch.Tensor, log_sigma: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact gradient of E[f(z)] for the toy:
    E = sum_j (mu_j - c_j)^2 + sigma_j^2."""
    check_tensor("mu", mu, dims=1, floating=True, shape="(D,)")
    _check_pair("mu", mu, "log_sigma", log_sigma)
    _check_pair("mu", mu, "target", target)
    # dE/dmu = 2(mu - c), dE/dlog sigma = 2 sigma^2
    return 2 * (mu - target), 2 * torch.exp(2 * log_sigma)


def _check_gaussian(
    f: Callable[[torch.Tensor], torch.Tensor],
    mu: torch.Tensor,
    log_sigma: torch.Tensor,
    n_samples: int,
    generator: torch.Generator | None,
) -> None:
    _check_function("f", f, "a function of z (S, D) -> (S,)")
    check_tensor("mu", mu, dims=1, floating=True, shape="(D,)")
    _check_pair("mu", mu, "log_sigma", log_sigma)
    check_int("n_samples", n_samples)
    _check_generator(generator)


def reparam_gradient(
    f: Callable[[torch.Tensor], torch.Tensor],
    mu: torch.Tensor,
    log_sigma: torch.Tensor,
    n_samples: int,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The reparameterization estimate of the gradient of E_q[f(z)] w.r.t. (mu,
    log_sigma), each (D,).

    f must be differentiable and map (S, D) -> (S,); the gradient flows through
    z = mu + sigma * eps.
    """
    _check_gaussian(f, mu, log_sigma, n_samples, generator)
    mu = mu.detach().requires_grad_()
    log_sigma = log_sigma.detach().requires_grad_()
    # (S, D)
    eps = torch.randn(
        n_samples, *mu.shape, generator=generator, device=mu.device, dtype=mu.dtype
    )
    z = mu + log_sigma.exp() * eps  # z = mu + sigma eps
    estimate = f(z).mean()  # (1/S) sum_s f(z_s)
    grad_mu, grad_log_sigma = torch.autograd.grad(estimate, (mu, log_sigma))
    return grad_mu, grad_log_sigma


def score_function_gradient(
    f: Callable[[torch.Tensor], torch.Tensor],
    mu: torch.Tensor,
    log_sigma: torch.Tensor,
    n_samples: int,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The score-function (REINFORCE) estimate of the same gradient, without a
    baseline; each (D,).

    grad E_q[f] = E_q[f(z) grad log q(z)]; only values of f are needed, never its
    gradient.
    """
    _check_gaussian(f, mu, log_sigma, n_samples, generator)
    mu, log_sigma = mu.detach(), log_sigma.detach()
    sigma = log_sigma.exp()
    # (S, D)
    eps = torch.randn(
        n_samples, *mu.shape, generator=generator, device=mu.device, dtype=mu.dtype
    )
    z = mu + sigma * eps  # (S, D), z ~ N(mu, sigma^2)
    values = f(z)[:, None]  # (S, 1)
    score_mu = (z - mu) / sigma**2  # d log q / d mu = (z - mu) / sigma^2
    # d log q / d log sigma = (z-mu)^2/sigma^2 - 1
    score_log_sigma = (z - mu).square() / sigma**2 - 1
    return (values * score_mu).mean(dim=0), (values * score_log_sigma).mean(dim=0)


def gradient_variance(
    estimator: GradientEstimator,
    f: Callable[[torch.Tensor], torch.Tensor],
    mu: torch.Tensor,
    log_sigma: torch.Tensor,
    n_samples: int,
    repeats: int,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The variance of `estimator`'s (mu, log_sigma) gradients across `repeats`
    independent runs, each (D,)."""
    check_int("repeats", repeats, minimum=2)  # a variance needs two runs
    _check_function("estimator", estimator, "a gradient estimator")
    _check_gaussian(f, mu, log_sigma, n_samples, generator)
    runs = [
        estimator(f, mu, log_sigma, n_samples, generator) for _ in range(repeats)
    ]
    # (repeats, D) each
    grads_mu, grads_log_sigma = (torch.stack(column) for column in zip(*runs))
    return grads_mu.var(dim=0), grads_log_sigma.var(dim=0)


# ----------------------------------------------------------------------------------
# Checks
# ----------------------------------------------------------------------------------


def _check_pair(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    """Two floating-point tensors of one shape."""
    check_tensor(name_a, a, floating=True)
    check_same_shape(name_a, a, name_b, check_tensor(name_b, b, floating=True))


def _check_vae(model: nn.Module) -> nn.Module:
    """A module with encode(x) -> (mu, logvar) and decode(z) -> logits."""
    check_module("model", model)
    missing = [name for name in ("encode", "decode") if not hasattr(model, name)]
    if missing:
        raise TypeError(
            "model must be a VAE (a module with encode(x) -> (mu, logvar) and "
            f"decode(z) -> logits), got {type(model).__name__} without "
            f"{' and '.join(missing)}"
        )
    return model


def _check_elbo_arguments(
    model: nn.Module,
    x: torch.Tensor,
    likelihood: str,
    generator: torch.Generator | None,
    log_sigma: float | torch.Tensor,
) -> None:
    _check_vae(model)
    check_tensor("x", x, floating=True)
    check_choice("likelihood", likelihood, LIKELIHOODS)
    _check_generator(generator)
    _check_log_sigma(log_sigma, x)


def _check_batch(name: str, images: torch.Tensor) -> None:
    check_tensor(name, images, floating=True)
    if images.dim() < 2 or len(images) == 0:
        raise ValueError(
            f"{name} must be a non-empty batch (N, ...), got shape "
            f"{tuple(images.shape)}"
        )


def _check_generator(generator: torch.Generator | None) -> None:
    check_optional(check_instance, "generator", generator, torch.Generator)


def _check_function(name: str, f: Callable, what: str) -> None:
    if not callable(f):
        raise TypeError(f"{name} must be {what}, got {describe(f)}")


def _check_log_sigma(log_sigma: float | torch.Tensor, x: torch.Tensor) -> None:
    """A finite number, or a finite float tensor that broadcasts against x."""
    if not isinstance(log_sigma, torch.Tensor):
        check_float("log_sigma", log_sigma)
        return
    check_tensor("log_sigma", log_sigma, floating=True, finite=True)
    try:
        fits = torch.broadcast_shapes(log_sigma.shape, x.shape) == x.shape
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(
            f"log_sigma of shape {tuple(log_sigma.shape)} must broadcast against "
            f"x of shape {tuple(x.shape)}"
        )


def _check_grid(
    dims: tuple[int, int], n: int, span: float, latent_dim: int
) -> None:
    check_int("n", n)
    check_positive("span", span)  # in prior standard deviations
    dims = check_ints("dims", dims, minimum=0)
    if len(dims) != 2 or dims[0] == dims[1] or max(dims) >= latent_dim:
        raise ValueError(
            f"dims must be two different latent dims in [0, {latent_dim}), got "
            f"{dims!r}"
        )


def _at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """x in float32 if it is in a narrower float type (bf16/fp16 under autocast),
    else unchanged (e.g. float64)."""
    return x.float() if x.dtype in (torch.bfloat16, torch.float16) else x
