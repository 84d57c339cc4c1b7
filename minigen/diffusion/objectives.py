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


import torch
from torch import Tensor, nn
from minigen.diffusion.schedule import (NoiseSchedule, _check_same_shape, _check_timesteps, _generator_device, q_sample)


OBJECTIVES: tuple[str, ...] = ("eps", "x0", "v")


def target(schedule: NoiseSchedule, objective: str, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
    """What a model with this objective learns to predict from x_t: eps, x_0 or v = sqrt(abar) eps - sqrt(1-abar) x_0."""
    _check_objective(objective)
    if objective == "eps":
        return noise
    if objective == "x0":
        return x0
    return schedule.at(schedule.alpha_bar.sqrt(), t, x0) * noise - schedule.at((1 - schedule.alpha_bar).sqrt(), t, x0) * x0


def to_eps_and_x0(schedule: NoiseSchedule, objective: str, x_t: Tensor, t: Tensor,
                  prediction: Tensor) -> tuple[Tensor, Tensor]:
    """Turn a prediction of any objective into (eps, x_0), exactly, using x_t = sqrt(abar) x_0 + sqrt(1-abar) eps."""
    _check_objective(objective)
    _check_same_shape(x_t, prediction, "x_t", "prediction")
    a = schedule.at(schedule.alpha_bar.sqrt(), t, x_t)              # sqrt(abar_t)
    b = schedule.at((1 - schedule.alpha_bar).sqrt(), t, x_t)        # sqrt(1 - abar_t); a^2 + b^2 = 1
    if objective == "eps":
        return prediction, (x_t - b * prediction) / a               # x_0 = (x_t - sqrt(1-abar) eps) / sqrt(abar)
    if objective == "x0":
        return (x_t - a * prediction) / b, prediction               # eps = (x_t - sqrt(abar) x_0) / sqrt(1-abar)
    return b * x_t + a * prediction, a * x_t - b * prediction       # eps = b x_t + a v,  x_0 = a x_t - b v


def loss_weights(schedule: NoiseSchedule, objective: str, t: Tensor, min_snr_gamma: float | None = None) -> Tensor:
    """Per-sample weights (B,) of the squared error so that every objective is min-SNR-gamma weighted in x_0 terms.

    Hang et al.: weight the x_0 error by min(SNR, gamma); as an eps error that is min(SNR, gamma) / SNR, as a
    v error min(SNR, gamma) / (SNR + 1). None: weight 1 (the "simple" loss of the objective itself).
    """
    _check_objective(objective)
    t = _check_timesteps(t, len(schedule))
    if min_snr_gamma is None:
        return torch.ones(len(t), dtype=torch.float64)
    if not min_snr_gamma > 0:
        raise ValueError(f"min_snr_gamma must be positive (Hang et al. use 5), got {min_snr_gamma}")
    snr = schedule.snr(t)
    clipped = snr.clamp(max=min_snr_gamma)                           # min(SNR, gamma)
    return {"eps": clipped / snr, "x0": clipped, "v": clipped / (snr + 1)}[objective]


def diffusion_loss(model: nn.Module, schedule: NoiseSchedule, x0: Tensor, objective: str = "eps",
                   labels: Tensor | None = None, min_snr_gamma: float | None = None,
                   generator: torch.Generator | None = None) -> Tensor:
    """The training loss of one batch: t ~ U{0..T-1}, eps ~ N(0, I), weighted mean of |model(x_t, t) - target|^2."""
    t = torch.randint(len(schedule), (len(x0),), generator=generator, device=_generator_device(generator)).to(x0.device)
    noise = torch.randn(x0.shape, generator=generator, device=_generator_device(generator)).to(x0)
    x_t = q_sample(schedule, x0, t, noise)
    prediction = _call(model, x_t, t, labels)
    squared = (prediction.float() - target(schedule, objective, x0, noise, t).float()).square()
    per_sample = squared.flatten(1).mean(dim=1)                      # (B,)
    weights = loss_weights(schedule, objective, t, min_snr_gamma).to(per_sample)
    return (weights * per_sample).mean()


def _call(model: nn.Module, x: Tensor, t: Tensor, labels: Tensor | None) -> Tensor:
    return model(x, t) if labels is None else model(x, t, labels)


def _check_objective(objective: str) -> None:
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; valid ones: {', '.join(OBJECTIVES)}")
