"""The variational autoencoder: ELBO, reparameterization, beta, active units, and why the trick matters.

Implements
- the VAE, its evidence lower bound (ELBO) and the reparameterization trick, D. P. Kingma, M. Welling,
  "Auto-Encoding Variational Bayes", ICLR 2014 (the closed-form Gaussian KL is their Appendix B);
- beta-VAE, the KL term weighted by beta, I. Higgins et al., "beta-VAE: Learning Basic Visual Concepts
  with a Constrained Variational Framework", ICLR 2017;
- active latent units as a check for posterior collapse, Y. Burda, R. Grosse, R. Salakhutdinov,
  "Importance Weighted Autoencoders", ICLR 2016 (Section 5.2);
- the score-function (REINFORCE) gradient estimator the trick is compared with, R. J. Williams,
  "Simple statistical gradient-following algorithms for connectionist reinforcement learning",
  Machine Learning 8 (1992); see also S. Mohamed et al., "Monte Carlo Gradient Estimation in
  Machine Learning", JMLR 2020.

The ELBO of an image x, with encoder q(z|x) = N(mu(x), diag sigma^2(x)), prior p(z) = N(0, I) and decoder
p(x|z):   log p(x) >= ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z)).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from minigen.nn.conv import ConvDecoder, ConvEncoder
from minigen.data.shapes import ShapesWorld
from minigen.core.runtime import Precision, choose_precision, seed_everything
from minigen.core.train import History, train

LIKELIHOODS: tuple[str, ...] = ("bernoulli", "gaussian")
DEFAULT_LOG_SIGMA = math.log(0.1)  # the Gaussian decoder's fixed noise: sigma = 0.1 on [0, 1] intensities

GradientEstimator = Callable[..., tuple[torch.Tensor, torch.Tensor]]


# ---------------------------------------------------------------------------------------------
# The two terms of the ELBO
# ---------------------------------------------------------------------------------------------


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag exp(logvar)) || N(0, I)) in nats, summed over the latent axis: (B, L) -> (B,)."""
    _check_same_shape(mu, logvar, "mu", "logvar")
    # KL = 1/2 sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2)
    return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).sum(dim=-1)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """A sample z ~ N(mu, diag exp(logvar)) written as a differentiable function of mu and logvar."""
    _check_same_shape(mu, logvar, "mu", "logvar")
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)  # eps ~ N(0, I)
    return mu + torch.exp(0.5 * logvar) * eps  # z = mu + sigma * eps, sigma = exp(logvar / 2)


def bernoulli_log_likelihood(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x|z) in nats for independent Bernoulli pixels with the given logits, summed per image: (B, ...) -> (B,).

    On intensities in [0, 1] rather than {0, 1} this is the common choice (Kingma & Welling used it on
    MNIST): it equals minus the binary cross-entropy, is largest when sigmoid(logits) = x, but is not a
    normalised density over [0, 1] (the continuous Bernoulli would add the missing log-normaliser), so
    its nats are a training loss rather than an exact likelihood.
    """
    _check_same_shape(logits, x, "logits", "x")
    # log p = sum_i x_i log sigmoid(l_i) + (1 - x_i) log(1 - sigmoid(l_i)) = -BCE(l, x)
    nll = F.binary_cross_entropy_with_logits(_at_least_fp32(logits), _at_least_fp32(x), reduction="none")
    return -nll.flatten(1).sum(dim=1)


def gaussian_log_likelihood(mean: torch.Tensor, x: torch.Tensor,
                            log_sigma: float | torch.Tensor) -> torch.Tensor:
    """log N(x; mean, sigma^2 I) in nats, summed per image: (B, ...) -> (B,). log_sigma broadcasts against x."""
    _check_same_shape(mean, x, "mean", "x")
    x, mean = _at_least_fp32(x), _at_least_fp32(mean)
    log_sigma = torch.as_tensor(log_sigma, dtype=x.dtype, device=x.device)
    standardised = (x - mean) / log_sigma.exp()
    # log N(x; m, s^2) = -1/2 ((x - m) / s)^2 - log s - 1/2 log(2 pi), per pixel
    log_density = -0.5 * standardised.square() - log_sigma - 0.5 * math.log(2 * math.pi)
    return log_density.flatten(1).sum(dim=1)


def bits_per_dim(nats: float | torch.Tensor, dims: int) -> float | torch.Tensor:
    """Convert nats per image to bits per dimension: nats / (D ln 2), D = pixels x channels."""
    if isinstance(dims, bool) or not isinstance(dims, int) or dims < 1:
        raise ValueError(f"dims must be a positive int (e.g. 3 * 32 * 32 = 3072 for an RGB 32x32 image), got {dims!r}")
    return nats / (dims * math.log(2))  # bits/dim = nats / (D ln 2)


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------


class VAE(nn.Module):
    """A convolutional VAE: ConvEncoder -> (mu, logvar), z = reparameterize, ConvDecoder -> logits.

    The decoder returns logits; sigmoid(logits) is the mean image for both likelihoods of `elbo`.
    """

    def __init__(self, latent_dim: int, widths: tuple[int, ...] = (16, 32, 64), in_channels: int = 3,
                 upsampler: str = "resize-conv nearest", image_size: int = 32):
        super().__init__()
        if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim < 1:
            raise ValueError(f"latent_dim must be a positive int, got {latent_dim!r}")
        self.latent_dim = latent_dim
        self.encoder = ConvEncoder(in_channels=in_channels, widths=tuple(widths), out_features=2 * latent_dim,
                                   image_size=image_size)
        self.decoder = ConvDecoder(in_features=latent_dim, widths=tuple(reversed(widths)), out_channels=in_channels,
                                   upsampler=upsampler, image_size=image_size)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The posterior's parameters (mu, logvar), each (B, L), kept in float32 even under autocast."""
        mu, logvar = self.encoder(x).float().chunk(2, dim=1)  # (B, 2L) -> 2 x (B, L)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Logits of p(x|z): (B, L) -> (B, C, H, W)."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Encode, sample one z per image, decode: {"mu", "logvar", "z", "logits"}."""
        mu, logvar = self.encode(x)              # (B, L) each
        z = reparameterize(mu, logvar, generator)  # (B, L)
        return {"mu": mu, "logvar": logvar, "z": z, "logits": self.decode(z)}


def _latent_dim(model: nn.Module) -> int:
    if not isinstance(getattr(model, "latent_dim", None), int):
        raise TypeError(f"expected a model with an int .latent_dim (a VAE), got {type(model).__name__}")
    return model.latent_dim


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def elbo(model: nn.Module, x: torch.Tensor, beta: float = 1.0, likelihood: str = "bernoulli",
         generator: torch.Generator | None = None,
         log_sigma: float = DEFAULT_LOG_SIGMA) -> dict[str, torch.Tensor]:
    """The ELBO of each image, with one sample of z: a dict of (B,) float32 tensors in nats.

    "reconstruction": log p(x|z), z ~ q(z|x); "kl": KL(q(z|x) || p(z)); "elbo": reconstruction - kl,
    the lower bound on log p(x); "objective": reconstruction - beta * kl, what beta-VAE maximises
    (equal to "elbo" when beta = 1).
    model: anything with encode(x) -> (mu, logvar) and decode(z) -> logits, e.g. a VAE.
    likelihood: "bernoulli" (on logits) or "gaussian" (mean sigmoid(logits), fixed sigma = exp(log_sigma)).
    """
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {likelihood!r}; valid ones: {', '.join(LIKELIHOODS)}")
    if not beta >= 0:
        raise ValueError(f"beta must be >= 0 (1 is the true ELBO), got {beta}")
    mu, logvar = model.encode(x)                   # (B, L) each
    z = reparameterize(mu, logvar, generator)      # (B, L)
    logits = model.decode(z)                       # (B, C, H, W)
    if likelihood == "bernoulli":
        reconstruction = bernoulli_log_likelihood(logits, x)
    else:
        reconstruction = gaussian_log_likelihood(torch.sigmoid(_at_least_fp32(logits)), x, log_sigma)
    kl = gaussian_kl(_at_least_fp32(mu), _at_least_fp32(logvar))   # (B,)
    return {
        "reconstruction": reconstruction,
        "kl": kl,
        "elbo": reconstruction - kl,               # ELBO = E_q[log p(x|z)] - KL(q || p)
        "objective": reconstruction - beta * kl,   # beta-VAE: E_q[log p(x|z)] - beta KL
    }


@torch.no_grad()
def negative_elbo_nats(model: nn.Module, images: torch.Tensor, likelihood: str = "bernoulli",
                       batch_size: int = 256, generator: torch.Generator | None = None,
                       log_sigma: float = DEFAULT_LOG_SIGMA) -> dict[str, float]:
    """The mean negative ELBO over `images`, in nats per image, and its parts: {"nelbo", "reconstruction", "kl"}.

    "reconstruction" here is the negative log-likelihood, so that nelbo = reconstruction + kl.
    The model is evaluated in eval mode and left in the mode it was found in.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if images.dim() < 2 or len(images) == 0:
        raise ValueError(f"images must be a non-empty batch (N, ...), got shape {tuple(images.shape)}")
    was_training = model.training
    model.eval()
    totals = {"nelbo": 0.0, "reconstruction": 0.0, "kl": 0.0}
    device = _device(model)
    try:
        for start in range(0, len(images), batch_size):
            terms = elbo(model, images[start:start + batch_size].to(device), likelihood=likelihood,
                         generator=generator, log_sigma=log_sigma)
            totals["nelbo"] -= terms["elbo"].sum().item()
            totals["reconstruction"] -= terms["reconstruction"].sum().item()
            totals["kl"] += terms["kl"].sum().item()
    finally:
        model.train(was_training)
    return {name: total / len(images) for name, total in totals.items()}


def train_vae(data: ShapesWorld | torch.Tensor, latent_dim: int, steps: int, beta: float = 1.0,
              batch_size: int = 32, lr: float = 2e-3, precision: Precision | None = None, progress: bool = True,
              widths: tuple[int, ...] = (16, 32, 64), likelihood: str = "bernoulli", binarize: bool = False,
              kl_warmup: int = 0, seed: int = 0) -> tuple[VAE, History]:
    """Train a VAE by maximising the (beta-weighted) ELBO; returns the model in eval mode and its History.

    data: a ShapesWorld (fresh "train" scenes every step) or a tensor of images (N, C, S, S) in [0, 1]
    (e.g. MNIST from `minigen.load_torchvision`), sampled with replacement by a seeded generator.
    binarize: replace each batch x by a sample of Bernoulli(x) (dynamic binarization, the usual MNIST setup).
    kl_warmup: the KL weight grows linearly from 0 to beta over this many steps (KL annealing, Bowman et al.
    2016), so the decoder learns to use the code before the KL term can switch it off.
    Adam with a cosine learning-rate decay. The loss is the batch mean of reconstruction_nll + beta * kl
    (nats per image); History.metrics logs "reconstruction_nll" and "kl".
    """
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {likelihood!r}; valid ones: {', '.join(LIKELIHOODS)}")
    if isinstance(kl_warmup, bool) or not isinstance(kl_warmup, int) or kl_warmup < 0:
        raise ValueError(f"kl_warmup must be an int >= 0 (steps), got {kl_warmup!r}")
    next_batch, channels, image_size = _batches(data, batch_size, seed)
    precision = precision or choose_precision()
    seed_everything(seed)
    model = VAE(latent_dim, widths=widths, in_channels=channels, image_size=image_size).to(precision.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    binarizer = torch.Generator().manual_seed(seed + 1)

    def loss_fn(step: int) -> tuple[torch.Tensor, dict[str, float]]:
        images = next_batch(step)
        if binarize:
            images = torch.bernoulli(images, generator=binarizer)
        weight = beta * min(1.0, (step + 1) / kl_warmup) if kl_warmup else beta
        terms = elbo(model, images.to(precision.device), beta=weight, likelihood=likelihood)  # (B,) each
        metrics = {"reconstruction_nll": -terms["reconstruction"].mean().item(), "kl": terms["kl"].mean().item()}
        return -terms["objective"].mean(), metrics   # loss = E_x[-log p(x|z) + beta KL]

    history = train(model, loss_fn, steps=steps, optimizer=optimizer, scheduler=schedule, precision=precision,
                    progress=progress, desc=f"VAE L={latent_dim} beta={beta:g}")
    return model.eval(), history


def _batches(data: ShapesWorld | torch.Tensor, batch_size: int,
             seed: int) -> tuple[Callable[[int], torch.Tensor], int, int]:
    """(batch of step -> images (B, C, S, S), C, S) for a world or a tensor of images."""
    _check_positive("batch_size", batch_size)
    if isinstance(data, ShapesWorld):
        def scenes(step: int) -> torch.Tensor:
            return data.scenes(range(step * batch_size, (step + 1) * batch_size), split="train").images
        return scenes, 3, data.resolution
    if not isinstance(data, torch.Tensor):
        raise TypeError(f"data must be a ShapesWorld or a tensor of images, got {type(data).__name__}")
    if data.dim() != 4 or data.shape[-1] != data.shape[-2] or len(data) == 0 or not data.is_floating_point():
        raise ValueError(f"images must be a non-empty float tensor (N, C, S, S) of square images, "
                         f"got {data.dtype} of shape {tuple(data.shape)}")
    if data.min() < 0 or data.max() > 1:
        raise ValueError(f"images must lie in [0, 1], got values from {data.min().item():.3g} to {data.max().item():.3g}")
    generator = torch.Generator().manual_seed(seed)

    def minibatch(step: int) -> torch.Tensor:
        return data[torch.randint(len(data), (batch_size,), generator=generator)]
    return minibatch, data.shape[1], data.shape[-1]


# ---------------------------------------------------------------------------------------------
# Using a trained VAE: samples, latent codes, the latent grid, interpolation, active units
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def sample(model: nn.Module, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """n images decoded from z ~ N(0, I): the mean sigmoid(logits) of p(x|z), (n, C, H, W) in [0, 1]."""
    _check_positive("n", n)
    z = torch.randn(n, _latent_dim(model), generator=generator, device=_device(model))  # (n, L)
    return torch.sigmoid(model.decode(z).float())


@torch.no_grad()
def encode_mean(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """The posterior means mu(x) = E_q[z|x] of `images`: (N, C, H, W) -> (N, L), on the model's device."""
    _check_positive("batch_size", batch_size)
    device = _device(model)
    return torch.cat([model.encode(images[start:start + batch_size].to(device))[0]
                      for start in range(0, len(images), batch_size)])


@torch.no_grad()
def latent_grid(model: nn.Module, dims: tuple[int, int] = (0, 1), n: int = 8, span: float = 2.5) -> torch.Tensor:
    """Images decoded over an n x n grid of two latent dims (the others 0), row by row: (n * n, C, H, W).

    Image (row r, column c) has z[dims[0]] = v[c] and z[dims[1]] = v[r], v = linspace(-span, span, n);
    span is in prior standard deviations.
    """
    latent_dim = _latent_dim(model)
    _check_positive("n", n)
    if len(dims) != 2 or dims[0] == dims[1] or not all(0 <= d < latent_dim for d in dims):
        raise ValueError(f"dims must be two different latent dims in [0, {latent_dim}), got {dims!r}")
    if not span > 0:
        raise ValueError(f"span must be positive (in prior standard deviations), got {span}")
    values = torch.linspace(-span, span, n, device=_device(model))  # (n,)
    rows, columns = torch.meshgrid(values, values, indexing="ij")   # (n, n) each
    z = torch.zeros(n * n, latent_dim, device=values.device)         # (n * n, L)
    z[:, dims[0]], z[:, dims[1]] = columns.flatten(), rows.flatten()
    return torch.sigmoid(model.decode(z).float())


@torch.no_grad()
def interpolate(model: nn.Module, x_a: torch.Tensor, x_b: torch.Tensor, steps: int) -> torch.Tensor:
    """Decode the straight line between the posterior means of two images (C, H, W): (steps, C, H, W)."""
    if x_a.shape != x_b.shape or x_a.dim() != 3:
        raise ValueError(f"x_a and x_b must be single images of one shape (C, H, W), got "
                         f"{tuple(x_a.shape)} and {tuple(x_b.shape)}")
    _check_positive("steps", steps)
    device = _device(model)
    mu, _ = model.encode(torch.stack([x_a, x_b]).to(device))      # (2, L)
    t = torch.linspace(0.0, 1.0, steps, device=device)[:, None]   # (steps, 1)
    z = (1 - t) * mu[0] + t * mu[1]                                # z_t = (1 - t) mu_a + t mu_b
    return torch.sigmoid(model.decode(z).float())


def active_units(mu: torch.Tensor, threshold: float = 0.01) -> tuple[int, torch.Tensor]:
    """How many latent dims are active: A_u = Cov_x(E_q[u|x]) > threshold (Burda et al. 2016).

    mu: (N, L) posterior means of N inputs. Returns (count, variances (L,)). A dim whose mean does not
    move with the input carries no information about it: the posterior collapsed onto the prior there.
    """
    if mu.dim() != 2 or mu.shape[0] < 2:
        raise ValueError(f"mu must be (N, L) with N >= 2 inputs to measure a variance, got {tuple(mu.shape)}")
    variances = mu.float().var(dim=0)   # Var_x(mu_j(x)), (L,)
    return int((variances > threshold).sum()), variances


# ---------------------------------------------------------------------------------------------
# Gradient estimators of d/d(mu, log sigma) E_{z ~ N(mu, sigma^2)}[f(z)], for the variance comparison
# ---------------------------------------------------------------------------------------------


def toy_objective(target: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """f(z) = sum_j (z_j - c_j)^2: (S, D) -> (S,), the toy on which the two estimators are compared."""
    return lambda z: (z - target).square().sum(dim=-1)


def toy_gradient(mu: torch.Tensor, log_sigma: torch.Tensor,
                 target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact gradient of E[f(z)] for the toy: E = sum_j (mu_j - c_j)^2 + sigma_j^2."""
    return 2 * (mu - target), 2 * torch.exp(2 * log_sigma)  # dE/dmu = 2(mu - c), dE/dlog sigma = 2 sigma^2


def _check_gaussian(mu: torch.Tensor, log_sigma: torch.Tensor, n_samples: int) -> None:
    if mu.dim() != 1:
        raise ValueError(f"mu must be a vector (D,), got shape {tuple(mu.shape)}")
    _check_same_shape(mu, log_sigma, "mu", "log_sigma")
    _check_positive("n_samples", n_samples)


def reparam_gradient(f: Callable[[torch.Tensor], torch.Tensor], mu: torch.Tensor, log_sigma: torch.Tensor,
                     n_samples: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The reparameterization estimate of the gradient of E_q[f(z)] w.r.t. (mu, log_sigma), each (D,).

    f must be differentiable and map (S, D) -> (S,); the gradient flows through z = mu + sigma * eps.
    """
    _check_gaussian(mu, log_sigma, n_samples)
    mu, log_sigma = mu.detach().requires_grad_(), log_sigma.detach().requires_grad_()
    eps = torch.randn(n_samples, *mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)  # (S, D)
    z = mu + log_sigma.exp() * eps                                        # z = mu + sigma eps
    estimate = f(z).mean()                                                # (1/S) sum_s f(z_s)
    grad_mu, grad_log_sigma = torch.autograd.grad(estimate, (mu, log_sigma))
    return grad_mu, grad_log_sigma


def score_function_gradient(f: Callable[[torch.Tensor], torch.Tensor], mu: torch.Tensor, log_sigma: torch.Tensor,
                            n_samples: int, generator: torch.Generator | None = None
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """The score-function (REINFORCE) estimate of the same gradient, without a baseline; each (D,).

    grad E_q[f] = E_q[f(z) grad log q(z)]; only values of f are needed, never its gradient.
    """
    _check_gaussian(mu, log_sigma, n_samples)
    mu, log_sigma = mu.detach(), log_sigma.detach()
    sigma = log_sigma.exp()
    eps = torch.randn(n_samples, *mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)  # (S, D)
    z = mu + sigma * eps                                                  # (S, D), z ~ N(mu, sigma^2)
    values = f(z)[:, None]                                                # (S, 1)
    score_mu = (z - mu) / sigma**2                                        # d log q / d mu = (z - mu) / sigma^2
    score_log_sigma = (z - mu).square() / sigma**2 - 1                   # d log q / d log sigma = (z-mu)^2/sigma^2 - 1
    return (values * score_mu).mean(dim=0), (values * score_log_sigma).mean(dim=0)


def gradient_variance(estimator: GradientEstimator, f: Callable[[torch.Tensor], torch.Tensor], mu: torch.Tensor,
                      log_sigma: torch.Tensor, n_samples: int, repeats: int,
                      generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The variance of `estimator`'s (mu, log_sigma) gradients across `repeats` independent runs, each (D,)."""
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 2:
        raise ValueError(f"repeats must be an int >= 2 to measure a variance, got {repeats!r}")
    runs = [estimator(f, mu, log_sigma, n_samples, generator) for _ in range(repeats)]
    grads_mu, grads_log_sigma = (torch.stack(column) for column in zip(*runs))  # (repeats, D) each
    return grads_mu.var(dim=0), grads_log_sigma.var(dim=0)


# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------


def _check_same_shape(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        raise TypeError(f"{name_a} and {name_b} must be tensors, got {type(a).__name__} and {type(b).__name__}")
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def _at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """x in float32 if it is in a narrower float type (bf16/fp16 under autocast), else unchanged (e.g. float64)."""
    return x.float() if x.dtype in (torch.bfloat16, torch.float16) else x


def _check_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
