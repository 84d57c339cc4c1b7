"""Noise schedules and the forward process of diffusion models.

Implements
- the forward process q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I) and the
  Markov chain it sums, with DDPM's linear betas 1e-4 -> 0.02 over T = 1000: J. Ho,
  A. Jain, P. Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020;
- the cosine schedule (s = 0.008, betas clipped at 0.999) of A. Nichol, P. Dhariwal,
  "Improved Denoising Diffusion Probabilistic Models", ICML 2021;
- the sigmoid schedule of A. Jabri, D. Fleet, T. Chen, "Scalable Adaptive
  Computation for Iterative Generation", 2022 (as in
  lucidrains/denoising-diffusion-pytorch).

Timesteps are integers t = 0 .. T-1; index t holds beta_{t+1} of the papers' 1-based
notation, so abar[t] is the signal level after t + 1 noising steps.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from minigen.core.validators import (
    check_choice,
    check_float,
    check_instance,
    check_int,
    check_optional,
    check_same_shape,
    check_tensor,
)

SCHEDULES: tuple[str, ...] = ("linear", "cosine", "sigmoid")
MAX_BETA = 0.999  # Nichol & Dhariwal clip betas here: the last steps stay finite


class NoiseSchedule:
    """betas (T,) and everything derived from them, in float64 on the CPU; `at`
    gathers values for a batch, `signal` and `noise_level` the two scales of x_t."""

    def __init__(self, betas: Tensor):
        check_instance(
            "betas", betas, (Tensor, list, tuple), "a tensor (T,) of betas"
        )
        betas = torch.as_tensor(betas, dtype=torch.float64).cpu()
        if betas.dim() != 1 or len(betas) < 1:
            raise ValueError(
                "betas must be a non-empty vector (T,), got shape "
                f"{tuple(betas.shape)}"
            )
        if not ((betas > 0) & (betas < 1)).all():
            raise ValueError(
                "every beta must lie in (0, 1), got values from "
                f"{betas.min().item():.3g} to {betas.max().item():.3g}"
            )
        self.betas = betas
        self.alphas = 1.0 - betas  # alpha_t = 1 - beta_t
        # abar_t = prod_{s<=t} alpha_s
        self.alpha_bar = torch.cumprod(self.alphas, dim=0)
        ones = torch.ones(1, dtype=torch.float64)
        self.alpha_bar_prev = torch.cat([ones, self.alpha_bar[:-1]])  # abar_{t-1}
        # beta~_t = beta_t (1 - abar_{t-1}) / (1 - abar_t), the variance of
        # q(x_{t-1} | x_t, x_0)
        self.posterior_variance = (
            betas * (1.0 - self.alpha_bar_prev) / (1.0 - self.alpha_bar)
        )

    def __len__(self) -> int:
        return len(self.betas)

    def __repr__(self) -> str:
        first, last = self.betas[0].item(), self.betas[-1].item()
        return (
            f"NoiseSchedule(T={len(self)}, beta {first:.3g}..{last:.3g}, "
            f"abar_T={self.alpha_bar[-1].item():.3g})"
        )

    @classmethod
    def linear(
        cls, steps: int = 1000, start: float = 1e-4, end: float = 0.02
    ) -> NoiseSchedule:
        """DDPM's betas, evenly spaced from `start` to `end`."""
        steps = check_int("steps", steps)
        start = check_float("start", start, 0.0, 1.0, open_min=True, open_max=True)
        end = check_float("end", end, 0.0, 1.0, open_min=True, open_max=True)
        return cls(torch.linspace(start, end, steps, dtype=torch.float64))

    @classmethod
    def cosine(cls, steps: int = 1000, s: float = 0.008) -> NoiseSchedule:
        """abar(u) = f(u) / f(0), f(u) = cos^2(pi/2 (u + s) / (1 + s)), u = t / T;
        betas clipped at 0.999."""
        steps = check_int("steps", steps)
        s = check_float("s", s, 0.0, 1.0)
        u = torch.arange(steps + 1, dtype=torch.float64) / steps
        f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
        return cls._from_alpha_bar(f / f[0])

    @classmethod
    def sigmoid(
        cls,
        steps: int = 1000,
        start: float = -3.0,
        end: float = 3.0,
        tau: float = 1.0,
    ) -> NoiseSchedule:
        """abar(u) proportional to
        sigmoid(end / tau) - sigmoid((start + u (end - start)) / tau), u = t / T,
        normalised to abar(0) = 1: flatter than cosine at both ends; betas clipped
        at 0.999."""
        steps = check_int("steps", steps)
        start, end = check_float("start", start), check_float("end", end)
        tau = check_float("tau", tau, 0.0, open_min=True)
        if not end > start:
            raise ValueError(
                f"the sigmoid schedule needs end > start, got {start}, {end}"
            )
        u = torch.arange(steps + 1, dtype=torch.float64) / steps
        v_start = torch.sigmoid(torch.tensor(start / tau))
        v_end = torch.sigmoid(torch.tensor(end / tau))
        curve = v_end - torch.sigmoid((u * (end - start) + start) / tau)
        curve = curve / (v_end - v_start)
        return cls._from_alpha_bar(curve / curve[0])

    @classmethod
    def named(cls, name: str, steps: int = 1000) -> NoiseSchedule:
        """The schedule `name`, "linear", "cosine" or "sigmoid", with defaults."""
        return getattr(cls, check_choice("name", name, SCHEDULES))(steps)

    @classmethod
    def _from_alpha_bar(cls, alpha_bar: Tensor) -> NoiseSchedule:
        """betas from abar(0..T): beta_t = 1 - abar_t / abar_{t-1}, clipped."""
        betas = 1.0 - alpha_bar[1:] / alpha_bar[:-1]
        return cls(betas.clamp(min=1e-12, max=MAX_BETA))

    def snr(self, t: Tensor | None = None) -> Tensor:
        """Signal-to-noise ratio abar_t / (1 - abar_t), float64 (all T for None)."""
        alpha_bar = self.alpha_bar
        if t is not None:
            alpha_bar = alpha_bar[check_timesteps(t, len(self)).cpu()]
        return alpha_bar / (1.0 - alpha_bar)

    def at(self, values: Tensor, t: Tensor, like: Tensor) -> Tensor:
        """values[t] shaped (B, 1, ..., 1) to broadcast against `like` (B, ...),
        in its device and float dtype."""
        self._check_lookup(values, like)
        t = check_timesteps(t, len(self), len(like))
        gathered = values[t.cpu()].to(device=like.device, dtype=_float_dtype(like))
        return gathered.view(-1, *([1] * (like.dim() - 1)))

    def _check_lookup(self, values: Tensor, like: Tensor) -> None:
        check_tensor(
            "values", values, dims=1, shape=f"({len(self)},), one per step"
        )
        if len(values) != len(self):
            raise ValueError(
                f"values must hold one entry per step: {len(self)}, got "
                f"{len(values)}"
            )
        check_tensor("like", like, shape="(B, ...)")
        if like.dim() == 0:
            raise ValueError("like must be a batch (B, ...), got a 0-d tensor")

    def signal(self, t: Tensor, like: Tensor) -> Tensor:
        """sqrt(abar_t), the scale of x_0 in x_t, shaped as `at` shapes it."""
        return self.at(self.alpha_bar.sqrt(), t, like)

    def noise_level(self, t: Tensor, like: Tensor) -> Tensor:
        """sqrt(1 - abar_t), the scale of eps in x_t, shaped as `at` shapes it."""
        return self.at((1.0 - self.alpha_bar).sqrt(), t, like)


# ----------------------------------------------------------------------------------
# The forward process
# ----------------------------------------------------------------------------------


def q_sample(
    schedule: NoiseSchedule, x0: Tensor, t: Tensor, noise: Tensor
) -> Tensor:
    """A sample of q(x_t | x_0) in one step: x_t = sqrt(abar_t) x_0 +
    sqrt(1 - abar_t) eps."""
    _check_pair(schedule, "x0", x0, "noise", noise)
    return schedule.signal(t, x0) * x0 + schedule.noise_level(t, x0) * noise


def q_step(
    schedule: NoiseSchedule, x_prev: Tensor, t: Tensor, noise: Tensor
) -> Tensor:
    """One step of the Markov chain: x_t = sqrt(alpha_t) x_{t-1} +
    sqrt(beta_t) eps."""
    _check_pair(schedule, "x_prev", x_prev, "noise", noise)
    keep = schedule.at(schedule.alphas.sqrt(), t, x_prev)  # sqrt(alpha_t)
    add = schedule.at(schedule.betas.sqrt(), t, x_prev)  # sqrt(beta_t)
    return keep * x_prev + add * noise


def check_timesteps(t: Tensor, total: int, batch: int | None = None) -> Tensor:
    """t, a (B,) integer tensor of timesteps in [0, total - 1], as long."""
    total = check_int("total", total)
    check_optional(check_int, "batch", batch, minimum=0)
    check_tensor("t", t, dims=1, shape="(B,) of integer timesteps")
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"t must hold integer timesteps, got {t.dtype}")
    if batch is not None and len(t) != batch:
        raise ValueError(f"t has {len(t)} timesteps for a batch of {batch}")
    if len(t) and (t.min() < 0 or t.max() >= total):
        raise ValueError(
            f"timesteps must lie in [0, {total - 1}], got values from "
            f"{t.min().item()} to {t.max().item()}"
        )
    return t.long()


def check_schedule(schedule: NoiseSchedule) -> NoiseSchedule:
    """A NoiseSchedule object (not its name: NoiseSchedule.named("cosine") makes
    one)."""
    return check_instance(
        "schedule",
        schedule,
        NoiseSchedule,
        'a NoiseSchedule (e.g. NoiseSchedule.named("cosine"))',
    )


def _check_pair(
    schedule: NoiseSchedule, name_a: str, a: Tensor, name_b: str, b: Tensor
) -> None:
    check_schedule(schedule)
    check_tensor(name_a, a, floating=True)
    check_tensor(name_b, b, floating=True)
    check_same_shape(name_a, a, name_b, b)


def _float_dtype(x: Tensor) -> torch.dtype:
    return x.dtype if x.is_floating_point() else torch.float32
