"""A 2-D toy for diffusion: a Gaussian mixture, whose noised marginals and scores
have closed forms.

Under the forward process x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps, a mixture
sum_k w_k N(m_k, s^2 I) stays a mixture: sum_k w_k N(sqrt(abar) m_k, v I) with
v = abar s^2 + 1 - abar. So the true score grad_x log p_t(x), and the noise
eps* = -sqrt(1 - abar) grad_x log p_t(x) that an eps-prediction model should learn
(Y. Song, S. Ermon, "Generative Modeling by Estimating Gradients of the Data
Distribution", NeurIPS 2019; the eps-score link of Ho et al. 2020), are exact here,
and a learned model can be scored against them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from minigen.core.validators import (
    check_float,
    check_instance,
    check_int,
    check_ints,
    check_module,
    check_optional,
    check_positive,
    check_tensor,
)
from minigen.diffusion.schedule import NoiseSchedule, check_schedule, q_sample
from minigen.nn.embeddings import timestep_embedding
from minigen.nn.layers import CheckedModule


@dataclass(frozen=True)
class GaussianMixture2d:
    """sum_k w_k N(means[k], std^2 I) in the plane."""

    means: Tensor  # (K, 2)
    std: float
    weights: Tensor  # (K,), sums to 1

    def __post_init__(self) -> None:
        check_tensor("means", self.means, floating=True, finite=True)
        check_tensor("weights", self.weights, floating=True, finite=True)
        check_positive("std", self.std)
        if self.means.dim() != 2 or self.means.shape[1] != 2:
            raise ValueError(
                f"means must be (K, 2), got shape {tuple(self.means.shape)}"
            )
        if self.weights.shape != self.means.shape[:1] or (self.weights < 0).any():
            raise ValueError("weights must be K non-negative numbers, one per mean")
        if not math.isclose(self.weights.sum().item(), 1.0, rel_tol=1e-6):
            raise ValueError(
                f"weights must sum to 1, got {self.weights.sum().item():.6g}"
            )

    @classmethod
    def ring(
        cls, components: int = 8, radius: float = 1.0, std: float = 0.08
    ) -> GaussianMixture2d:
        """`components` equal-weight Gaussians evenly spaced on a circle."""
        components = check_int("components", components)
        radius = check_float("radius", radius, 0.0)
        step = 2 * math.pi / components
        angles = torch.arange(components, dtype=torch.float64) * step
        means = radius * torch.stack([angles.cos(), angles.sin()], dim=1)
        weights = torch.full((components,), 1.0 / components, dtype=torch.float64)
        return cls(means, std, weights)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n points (n, 2), float32."""
        n = check_int("n", n)
        check_optional(check_instance, "generator", generator, torch.Generator)
        # (n,) the component of each point
        component = torch.multinomial(self.weights, n, True, generator=generator)
        noise = torch.randn(n, 2, generator=generator, dtype=torch.float64)
        return (self.means[component] + self.std * noise).float()

    def _noised(self, alpha_bar: Tensor) -> tuple[Tensor, Tensor]:
        """Means (N, K, 2) and variances (N, 1, 1) of the mixture noised to the
        levels abar (N,)."""
        means = alpha_bar.sqrt()[:, None, None] * self.means  # sqrt(abar) m_k
        variance = alpha_bar * self.std**2 + 1 - alpha_bar  # abar s^2 + 1 - abar
        return means, variance[:, None, None]

    def log_prob(self, x: Tensor, alpha_bar: Tensor | float = 1.0) -> Tensor:
        """log p_t(x) of points (N, 2) under the mixture noised to abar (a number
        or (N,)): (N,) float64."""
        x, alpha_bar = _points_and_levels(x, alpha_bar)
        means, variance = self._noised(alpha_bar)
        squared = (x[:, None, :] - means).square().sum(-1)  # (N, K)
        v = variance[:, :, 0]  # (N, 1)
        log_normal = -squared / (2 * v) - torch.log(2 * math.pi * v)
        return torch.logsumexp(self.weights.log() + log_normal, dim=1)

    def score(self, x: Tensor, alpha_bar: Tensor | float = 1.0) -> Tensor:
        """grad_x log p_t(x) = sum_k r_k(x) (m_k' - x) / v with r the posterior
        responsibilities: (N, 2) float64."""
        x, alpha_bar = _points_and_levels(x, alpha_bar)
        means, variance = self._noised(alpha_bar)
        squared = (x[:, None, :] - means).square().sum(-1)  # (N, K)
        logits = self.weights.log() - squared / (2 * variance[:, :, 0])
        responsibilities = torch.softmax(logits, dim=1)  # r_k(x), (N, K)
        pulls = responsibilities[:, :, None] * (means - x[:, None, :])  # (N, K, 2)
        return pulls.sum(1) / variance[:, 0]

    def true_eps(self, x_t: Tensor, alpha_bar: Tensor | float) -> Tensor:
        """The best eps-prediction, (N, 2) float64:
        E[eps | x_t] = -sqrt(1 - abar) grad log p_t(x_t)."""
        x_t, alpha_bar = _points_and_levels(x_t, alpha_bar)
        return -(1 - alpha_bar).sqrt()[:, None] * self.score(x_t, alpha_bar)


class ToyDenoiser(CheckedModule):
    """An MLP eps-predictor for 2-D points: [x, embedding(t)] -> hidden layers
    with SiLU -> 2 numbers."""

    def __init__(self, hidden: int = 128, layers: int = 3, time_dim: int = 32):
        super().__init__()
        hidden = check_int("hidden", hidden, maximum=65_536)
        layers = check_int("layers", layers, maximum=64)
        time_dim = check_int("time_dim", time_dim, maximum=65_536)
        if time_dim % 2:
            raise ValueError(f"time_dim must be even, got {time_dim}")
        self.time_dim = time_dim
        sizes = [2 + time_dim] + [hidden] * layers
        blocks: list[nn.Module] = []
        for size_in, size_out in zip(sizes[:-1], sizes[1:]):
            blocks += [nn.Linear(size_in, size_out), nn.SiLU()]
        self.net = nn.Sequential(*blocks, nn.Linear(hidden, 2))

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        embedding = timestep_embedding(t, self.time_dim).to(
            x.dtype
        )  # (B, time_dim)
        return self.net(torch.cat([x, embedding], dim=1))  # (B, 2)

    def check_inputs(self, x: Tensor, t: Tensor) -> None:
        check_tensor("x", x, floating=True, shape="(B, 2)")
        if x.dim() != 2 or x.shape[1] != 2:
            raise ValueError(
                f"ToyDenoiser expects points (B, 2), got {tuple(x.shape)}"
            )
        check_tensor("t", t, dims=1, shape="(B,) of timesteps")
        if len(t) != len(x):
            raise ValueError(
                f"t must hold one timestep per point: {len(x)}, got {len(t)}"
            )


@torch.no_grad()
def eps_error(
    model: nn.Module,
    mixture: GaussianMixture2d,
    schedule: NoiseSchedule,
    timesteps: list[int],
    n: int = 4000,
    generator: torch.Generator | None = None,
) -> dict[int, float]:
    """For each t: E|eps_model(x_t, t) - eps*(x_t, t)|^2 / E|eps*|^2 over
    x_t ~ q(x_t), the relative error of the learned noise prediction against the
    exact one (0 = perfect; 1 = no better than predicting 0)."""
    _check_eps_error_args(model, mixture, schedule, timesteps, n, generator)
    errors = {}
    device = next(model.parameters()).device
    for step in timesteps:
        x0 = mixture.sample(n, generator)
        t = torch.full((n,), step, dtype=torch.long)
        x_t = q_sample(schedule, x0, t, torch.randn(x0.shape, generator=generator))
        exact = mixture.true_eps(x_t, schedule.alpha_bar[step].item())
        predicted = model(x_t.to(device), t.to(device)).double().cpu()
        error = (predicted - exact).square().sum(1).mean()
        errors[step] = (error / exact.square().sum(1).mean()).item()
    return errors


def _check_eps_error_args(
    model: nn.Module,
    mixture: GaussianMixture2d,
    schedule: NoiseSchedule,
    timesteps: list[int],
    n: int,
    generator: torch.Generator | None,
) -> None:
    check_module("model", model)
    check_instance("mixture", mixture, GaussianMixture2d)
    check_schedule(schedule)
    for step in check_ints("timesteps", timesteps, minimum=0):
        check_int("every timestep", step, minimum=0, maximum=len(schedule) - 1)
    check_int("n", n)
    check_optional(check_instance, "generator", generator, torch.Generator)


def _points_and_levels(
    x: Tensor, alpha_bar: Tensor | float
) -> tuple[Tensor, Tensor]:
    check_tensor("x", x, floating=True, shape="(N, 2)")
    if x.dim() != 2 or x.shape[1] != 2:
        raise ValueError(f"points must be (N, 2), got shape {tuple(x.shape)}")
    x = x.double()
    if not isinstance(alpha_bar, Tensor):
        alpha_bar = check_float("alpha_bar", alpha_bar, 0.0, 1.0, open_min=True)
    elif alpha_bar.dim() != 0 and alpha_bar.shape != (len(x),):
        raise ValueError(
            f"alpha_bar must be a number or a tensor ({len(x)},), one level per "
            f"point, got shape {tuple(alpha_bar.shape)}"
        )
    elif not alpha_bar.is_floating_point():
        raise TypeError(f"alpha_bar must be a float tensor, got {alpha_bar.dtype}")
    alpha_bar = (
        torch.as_tensor(alpha_bar, dtype=torch.float64).expand(len(x)).clone()
    )
    if not ((alpha_bar > 0) & (alpha_bar <= 1)).all():  # NaN fails too
        raise ValueError("alpha_bar must lie in (0, 1]")
    return x, alpha_bar
