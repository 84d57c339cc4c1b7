"""Diffusion models: the forward noising process, three prediction targets, DDPM and DDIM sampling, guidance.

Implements
- the forward process q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I), the posterior q(x_{t-1} | x_t, x_0),
  the "simple" epsilon loss and ancestral sampling of J. Ho, A. Jain, P. Abbeel, "Denoising Diffusion
  Probabilistic Models", NeurIPS 2020 (linear betas 1e-4 -> 0.02 over T = 1000);
- the cosine schedule (s = 0.008, betas clipped at 0.999) of A. Nichol, P. Dhariwal, "Improved Denoising
  Diffusion Probabilistic Models", ICML 2021; the sigmoid schedule of A. Jabri, D. Fleet, T. Chen,
  "Scalable Adaptive Computation for Iterative Generation", 2022 (as in lucidrains/denoising-diffusion-pytorch);
- DDIM sampling with eta, and its deterministic inversion (eta = 0), J. Song, C. Meng, S. Ermon,
  "Denoising Diffusion Implicit Models", ICLR 2021;
- v-prediction, v = sqrt(abar) eps - sqrt(1 - abar) x_0, T. Salimans, J. Ho, "Progressive Distillation for
  Fast Sampling of Diffusion Models", ICLR 2022;
- min-SNR-gamma loss weighting, T. Hang et al., "Efficient Diffusion Training via Min-SNR Weighting
  Strategy", ICCV 2023;
- classifier-free guidance, pred = pred_uncond + w (pred_cond - pred_uncond), J. Ho, T. Salimans,
  "Classifier-Free Diffusion Guidance", 2022.

Timesteps are integers t = 0 .. T-1; index t holds beta_{t+1} of the papers' 1-based notation, so
abar[t] is the signal level after t + 1 noising steps. A model is called as model(x_t, t) or, with
labels, model(x_t, t, labels), and predicts the target of its `objective`: "eps", "x0" or "v".
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

SCHEDULES: tuple[str, ...] = ("linear", "cosine", "sigmoid")
MAX_BETA = 0.999   # Nichol & Dhariwal clip betas here so that the last steps stay finite


class NoiseSchedule:
    """betas (T,) and everything derived from them, in float64 on the CPU; `at` gathers values for a batch."""

    def __init__(self, betas: Tensor):
        betas = torch.as_tensor(betas, dtype=torch.float64).cpu()
        if betas.dim() != 1 or len(betas) < 1:
            raise ValueError(f"betas must be a non-empty vector (T,), got shape {tuple(betas.shape)}")
        if not ((betas > 0) & (betas < 1)).all():
            raise ValueError(f"every beta must lie in (0, 1), got values from {betas.min().item():.3g} "
                             f"to {betas.max().item():.3g}")
        self.betas = betas
        self.alphas = 1.0 - betas                                               # alpha_t = 1 - beta_t
        self.alpha_bar = torch.cumprod(self.alphas, dim=0)                      # abar_t = prod_{s<=t} alpha_s
        self.alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alpha_bar[:-1]])
        # beta~_t = beta_t (1 - abar_{t-1}) / (1 - abar_t), the variance of q(x_{t-1} | x_t, x_0)
        self.posterior_variance = betas * (1.0 - self.alpha_bar_prev) / (1.0 - self.alpha_bar)

    def __len__(self) -> int:
        return len(self.betas)

    def __repr__(self) -> str:
        return (f"NoiseSchedule(T={len(self)}, beta {self.betas[0].item():.3g}..{self.betas[-1].item():.3g}, "
                f"abar_T={self.alpha_bar[-1].item():.3g})")

    @classmethod
    def linear(cls, steps: int = 1000, start: float = 1e-4, end: float = 0.02) -> NoiseSchedule:
        """DDPM's betas, evenly spaced from `start` to `end`."""
        _check_steps(steps)
        return cls(torch.linspace(start, end, steps, dtype=torch.float64))

    @classmethod
    def cosine(cls, steps: int = 1000, s: float = 0.008) -> NoiseSchedule:
        """abar(u) = f(u) / f(0), f(u) = cos^2(pi/2 (u + s) / (1 + s)), u = t / T; betas clipped at 0.999."""
        _check_steps(steps)
        u = torch.arange(steps + 1, dtype=torch.float64) / steps
        f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
        return cls._from_alpha_bar(f / f[0])

    @classmethod
    def sigmoid(cls, steps: int = 1000, start: float = -3.0, end: float = 3.0, tau: float = 1.0) -> NoiseSchedule:
        """abar(u) proportional to sigmoid(end / tau) - sigmoid((start + u (end - start)) / tau), u = t / T,
        normalised to abar(0) = 1: flatter than cosine at both ends; betas clipped at 0.999."""
        _check_steps(steps)
        if not end > start or not tau > 0:
            raise ValueError(f"the sigmoid schedule needs end > start and tau > 0, got {start}, {end}, {tau}")
        u = torch.arange(steps + 1, dtype=torch.float64) / steps
        v_start, v_end = torch.sigmoid(torch.tensor(start / tau)), torch.sigmoid(torch.tensor(end / tau))
        curve = (-torch.sigmoid((u * (end - start) + start) / tau) + v_end) / (v_end - v_start)
        return cls._from_alpha_bar(curve / curve[0])

    @classmethod
    def named(cls, name: str, steps: int = 1000) -> NoiseSchedule:
        """The schedule `name` ("linear", "cosine" or "sigmoid") with its default parameters."""
        if name not in SCHEDULES:
            raise ValueError(f"unknown schedule {name!r}; valid names: {', '.join(SCHEDULES)}")
        return getattr(cls, name)(steps)

    @classmethod
    def _from_alpha_bar(cls, alpha_bar: Tensor) -> NoiseSchedule:
        """betas from abar(0..T): beta_t = 1 - abar_t / abar_{t-1}, clipped to MAX_BETA."""
        betas = 1.0 - alpha_bar[1:] / alpha_bar[:-1]
        return cls(betas.clamp(min=1e-12, max=MAX_BETA))

    def snr(self, t: Tensor | None = None) -> Tensor:
        """Signal-to-noise ratio abar_t / (1 - abar_t), float64; all T values when t is None."""
        alpha_bar = self.alpha_bar if t is None else self.alpha_bar[_cpu_index(t)]
        return alpha_bar / (1.0 - alpha_bar)

    def at(self, values: Tensor, t: Tensor, like: Tensor) -> Tensor:
        """values[t] shaped (B, 1, ..., 1) to broadcast against `like` (B, ...), in its device and float dtype."""
        t = _check_timesteps(t, len(self), len(like))
        gathered = values[t.cpu()].to(device=like.device, dtype=_float_dtype(like))
        return gathered.view(-1, *([1] * (like.dim() - 1)))


# ---------------------------------------------------------------------------------------------
# The forward process and the three targets
# ---------------------------------------------------------------------------------------------


def q_sample(schedule: NoiseSchedule, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
    """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps: a sample of q(x_t | x_0) in one step."""
    _check_same_shape(x0, noise, "x0", "noise")
    signal = schedule.at(schedule.alpha_bar.sqrt(), t, x0)
    noise_level = schedule.at((1.0 - schedule.alpha_bar).sqrt(), t, x0)
    return signal * x0 + noise_level * noise


def q_step(schedule: NoiseSchedule, x_prev: Tensor, t: Tensor, noise: Tensor) -> Tensor:
    """One step of the Markov chain: x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) eps."""
    _check_same_shape(x_prev, noise, "x_prev", "noise")
    keep, add = schedule.at(schedule.alphas.sqrt(), t, x_prev), schedule.at(schedule.betas.sqrt(), t, x_prev)
    return keep * x_prev + add * noise


def _generator_device(generator: torch.Generator | None) -> torch.device | None:
    return generator.device if generator is not None else None


def _float_dtype(x: Tensor) -> torch.dtype:
    return x.dtype if x.is_floating_point() else torch.float32


def _cpu_index(t: Tensor | int) -> Tensor:
    return torch.as_tensor(t).long().cpu()


def _check_timesteps(t: Tensor, total: int, batch: int | None = None) -> Tensor:
    t = torch.as_tensor(t)
    if t.is_floating_point() or t.dim() != 1:
        raise ValueError(f"t must be a vector (B,) of integer timesteps, got {t.dtype} of shape {tuple(t.shape)}")
    if batch is not None and len(t) != batch:
        raise ValueError(f"t has {len(t)} timesteps for a batch of {batch}")
    if len(t) and (t.min() < 0 or t.max() >= total):
        raise ValueError(f"timesteps must lie in [0, {total - 1}], got values from {t.min().item()} to {t.max().item()}")
    return t.long()


def _check_steps(steps: int) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"the number of timesteps must be a positive int, got {steps!r}")


def _check_same_shape(a: Tensor, b: Tensor, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
