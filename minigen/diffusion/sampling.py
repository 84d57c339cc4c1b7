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
from typing import Sequence

import torch
from torch import Tensor, nn
from minigen.diffusion.objectives import _call, to_eps_and_x0
from minigen.diffusion.schedule import NoiseSchedule, _check_steps, _generator_device



# ---------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------


def guided_prediction(model: nn.Module, x_t: Tensor, t: Tensor, labels: Tensor | None = None,
                      guidance: float | None = None, null_labels: Tensor | None = None) -> Tensor:
    """The model's prediction, with classifier-free guidance when `guidance` is set:
    pred = pred(null) + w (pred(labels) - pred(null)); w = 1 is the conditional model, w = 0 the unconditional.
    The prediction is linear in the target, so the same formula serves eps, x_0 and v."""
    if guidance is None:
        return _call(model, x_t, t, labels)
    if labels is None or null_labels is None:
        raise ValueError("classifier-free guidance needs labels and null_labels (the 'no condition' labels)")
    both = _call(model, torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([null_labels, labels]))
    unconditional, conditional = both.float().chunk(2)
    return unconditional + guidance * (conditional - unconditional)


def posterior_mean(schedule: NoiseSchedule, x0: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
    """Mean of q(x_{t-1} | x_t, x_0) = beta_t sqrt(abar_{t-1}) / (1 - abar_t) x_0 + (1 - abar_{t-1}) sqrt(alpha_t) / (1 - abar_t) x_t."""
    s = schedule
    coef_x0 = s.betas * s.alpha_bar_prev.sqrt() / (1 - s.alpha_bar)
    coef_xt = (1 - s.alpha_bar_prev) * s.alphas.sqrt() / (1 - s.alpha_bar)
    return s.at(coef_x0, t, x_t) * x0 + s.at(coef_xt, t, x_t) * x_t


@torch.no_grad()
def ddpm_sample(model: nn.Module, schedule: NoiseSchedule, shape: Sequence[int], objective: str = "eps",
                labels: Tensor | None = None, guidance: float | None = None, null_labels: Tensor | None = None,
                clip: float | None = 1.0, generator: torch.Generator | None = None,
                device: torch.device | str = "cpu", x_T: Tensor | None = None) -> Tensor:
    """Ancestral sampling, T model calls: x_{t-1} = mean(x_t, x0_hat) + sqrt(beta~_t) z, no noise at the last step.

    clip: clamp the predicted x_0 to [-clip, clip] before each step (data scaled to [-1, 1]); None leaves it.
    """
    x = _initial_noise(shape, generator, device) if x_T is None else x_T.clone()
    for step in reversed(range(len(schedule))):
        t = torch.full((len(x),), step, device=x.device, dtype=torch.long)
        _, x0 = _eps_and_x0(model, schedule, objective, x, t, labels, guidance, null_labels, clip)
        mean = posterior_mean(schedule, x0, x, t)
        if step == 0:
            return mean
        noise = torch.randn(x.shape, generator=generator, device=_generator_device(generator)).to(x)
        x = mean + schedule.at(schedule.posterior_variance.sqrt(), t, x) * noise
    return x


def ddim_timesteps(total: int, steps: int) -> list[int]:
    """`steps` timesteps from T-1 down to 0, evenly spaced (both ends included when steps > 1)."""
    _check_steps(total)
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= total:
        raise ValueError(f"steps must be an int in [1, {total}], got {steps!r}")
    return sorted({round(i * (total - 1) / max(steps - 1, 1)) for i in range(steps)}, reverse=True)


def ddim_sigma(schedule: NoiseSchedule, t: int, t_prev: int, eta: float) -> float:
    """sigma = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev); t_prev = -1 means abar_prev = 1."""
    alpha_bar, alpha_bar_prev = schedule.alpha_bar[t].item(), _alpha_bar_or_one(schedule, t_prev)
    return eta * math.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar) * (1 - alpha_bar / alpha_bar_prev))


def ddim_step(schedule: NoiseSchedule, x_t: Tensor, eps: Tensor, x0: Tensor, t: int, t_prev: int, eta: float,
              noise: Tensor | None = None) -> Tensor:
    """x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev - sigma^2) eps + sigma z (Song et al., eq. 12)."""
    sigma = ddim_sigma(schedule, t, t_prev, eta)
    alpha_bar_prev = _alpha_bar_or_one(schedule, t_prev)
    x_prev = math.sqrt(alpha_bar_prev) * x0 + math.sqrt(max(1 - alpha_bar_prev - sigma**2, 0.0)) * eps
    if sigma > 0:
        if noise is None:
            raise ValueError(f"eta > 0 needs noise for the step from t = {t}")
        x_prev = x_prev + sigma * noise
    return x_prev


@torch.no_grad()
def ddim_sample(model: nn.Module, schedule: NoiseSchedule, shape: Sequence[int], steps: int, eta: float = 0.0,
                objective: str = "eps", labels: Tensor | None = None, guidance: float | None = None,
                null_labels: Tensor | None = None, clip: float | None = 1.0,
                generator: torch.Generator | None = None, device: torch.device | str = "cpu",
                x_T: Tensor | None = None, path: list[Tensor] | None = None) -> Tensor:
    """DDIM: `steps` model calls on a subsequence of the timesteps; eta = 0 is deterministic given x_T.

    path: a list that receives x_T and every x after it (steps + 1 tensors), to draw sampling trajectories.
    """
    if not eta >= 0:
        raise ValueError(f"eta must be >= 0 (0: deterministic DDIM, 1: DDPM-like noise), got {eta}")
    x = _initial_noise(shape, generator, device) if x_T is None else x_T.clone()
    times = ddim_timesteps(len(schedule), steps)
    if path is not None:
        path.append(x)
    for step, step_prev in zip(times, [*times[1:], -1]):
        t = torch.full((len(x),), step, device=x.device, dtype=torch.long)
        eps, x0 = _eps_and_x0(model, schedule, objective, x, t, labels, guidance, null_labels, clip)
        noise = None
        if eta > 0 and step_prev >= 0:
            noise = torch.randn(x.shape, generator=generator, device=_generator_device(generator)).to(x)
        x = ddim_step(schedule, x, eps, x0, step, step_prev, eta if step_prev >= 0 else 0.0, noise)
        if path is not None:
            path.append(x)
    return x


@torch.no_grad()
def ddim_invert(model: nn.Module, schedule: NoiseSchedule, x0: Tensor, steps: int, objective: str = "eps",
                labels: Tensor | None = None) -> Tensor:
    """Deterministic DDIM run backwards, x_0 -> x_T, over the timesteps `ddim_sample` would use, ascending:
    x_next = sqrt(abar_next) x0_hat + sqrt(1 - abar_next) eps_hat, both read off the model at the current x
    (at the clean image, x0_hat = x_0 and eps_hat is read at the first timestep). Sampling with eta = 0 and
    clip=None from the result retraces the path; the gap is the error of reading eps one step early."""
    x, current = x0.clone(), None
    for step in reversed(ddim_timesteps(len(schedule), steps)):      # ascending: 0 .. T-1
        t = torch.full((len(x),), step if current is None else current, device=x.device, dtype=torch.long)
        eps, x0_hat = _eps_and_x0(model, schedule, objective, x, t, labels, None, None, None)
        if current is None:
            x0_hat = x                                                 # the clean image is known exactly
        alpha_bar = schedule.alpha_bar[step].item()
        x = math.sqrt(alpha_bar) * x0_hat + math.sqrt(1 - alpha_bar) * eps
        current = step
    return x


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _eps_at_clean(model: nn.Module, schedule: NoiseSchedule, objective: str, x: Tensor,
                  labels: Tensor | None) -> tuple[Tensor, Tensor]:
    """At the clean image there is no x_t to predict from: take x_0 = x and the eps predicted at t = 0."""
    t = torch.zeros(len(x), device=x.device, dtype=torch.long)
    eps, _ = _eps_and_x0(model, schedule, objective, x, t, labels, None, None, None)
    return eps, x


def _eps_and_x0(model: nn.Module, schedule: NoiseSchedule, objective: str, x: Tensor, t: Tensor,
                labels: Tensor | None, guidance: float | None, null_labels: Tensor | None,
                clip: float | None) -> tuple[Tensor, Tensor]:
    prediction = guided_prediction(model, x, t, labels, guidance, null_labels).to(x.dtype)
    eps, x0 = to_eps_and_x0(schedule, objective, x, t, prediction)
    if clip is not None:
        x0 = x0.clamp(-clip, clip)
        a = schedule.at(schedule.alpha_bar.sqrt(), t, x)
        b = schedule.at((1 - schedule.alpha_bar).sqrt(), t, x)
        eps = (x - a * x0) / b                                         # keep eps consistent with the clipped x_0
    return eps, x0


def _alpha_bar_or_one(schedule: NoiseSchedule, t: int) -> float:
    return 1.0 if t < 0 else schedule.alpha_bar[t].item()


def _initial_noise(shape: Sequence[int], generator: torch.Generator | None, device: torch.device | str) -> Tensor:
    return torch.randn(tuple(shape), generator=generator, device=_generator_device(generator)).to(device)
