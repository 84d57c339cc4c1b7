"""What a diffusion model learns to predict, and the loss that teaches it.

Implements
- the "simple" loss |eps_model(x_t, t) - eps|^2 of J. Ho, A. Jain, P. Abbeel,
  "Denoising Diffusion Probabilistic Models", NeurIPS 2020, and its x_0-prediction
  twin;
- v-prediction, v = sqrt(abar) eps - sqrt(1 - abar) x_0, T. Salimans, J. Ho,
  "Progressive Distillation for Fast Sampling of Diffusion Models", ICLR 2022;
- min-SNR-gamma loss weighting, T. Hang et al., "Efficient Diffusion Training via
  Min-SNR Weighting Strategy", ICCV 2023.

A model is called as model(x_t, t) or, with a condition, model(x_t, t, cond), and
predicts the target of its `objective`: "eps", "x0" or "v".
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from minigen.core.validators import (
    check_choice,
    check_instance,
    check_int,
    check_module,
    check_optional,
    check_positive,
    check_same_shape,
    check_tensor,
)
from minigen.diffusion.schedule import (
    NoiseSchedule,
    check_schedule,
    check_timesteps,
    q_sample,
)
from minigen.nn.embeddings import Condition, TokenStates

OBJECTIVES: tuple[str, ...] = ("eps", "x0", "v")


def target(
    schedule: NoiseSchedule, objective: str, x0: Tensor, noise: Tensor, t: Tensor
) -> Tensor:
    """What a model with this objective learns to predict from x_t: eps, x_0 or
    v = sqrt(abar) eps - sqrt(1 - abar) x_0."""
    check_objective(objective)
    check_schedule(schedule)
    check_tensor("x0", x0, floating=True)
    check_tensor("noise", noise, floating=True)
    check_same_shape("x0", x0, "noise", noise)
    # only "v" uses t; it is checked for every objective
    check_timesteps(t, len(schedule))
    if objective == "eps":
        return noise
    if objective == "x0":
        return x0
    return schedule.signal(t, x0) * noise - schedule.noise_level(t, x0) * x0


def to_eps_and_x0(
    schedule: NoiseSchedule,
    objective: str,
    x_t: Tensor,
    t: Tensor,
    prediction: Tensor,
) -> tuple[Tensor, Tensor]:
    """Turn a prediction of any objective into (eps, x_0), exactly, using
    x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps."""
    check_objective(objective)
    check_schedule(schedule)
    check_tensor("x_t", x_t, floating=True)
    check_tensor("prediction", prediction, floating=True)
    check_same_shape("x_t", x_t, "prediction", prediction)
    a = schedule.signal(t, x_t)  # sqrt(abar_t)
    b = schedule.noise_level(t, x_t)  # sqrt(1 - abar_t); a^2 + b^2 = 1
    if objective == "eps":
        return prediction, (x_t - b * prediction) / a  # x_0 = (x_t - b eps) / a
    if objective == "x0":
        return (x_t - a * prediction) / b, prediction  # eps = (x_t - a x_0) / b
    return b * x_t + a * prediction, a * x_t - b * prediction  # eps, x_0 from v


def loss_weights(
    schedule: NoiseSchedule,
    objective: str,
    t: Tensor,
    min_snr_gamma: float | None = None,
) -> Tensor:
    """Per-sample weights (B,) of the squared error, so that every objective is
    min-SNR-gamma weighted in x_0 terms.

    Hang et al.: weight the x_0 error by min(SNR, gamma); as an eps error that is
    min(SNR, gamma) / SNR, as a v error min(SNR, gamma) / (SNR + 1). None: weight 1
    (the "simple" loss of the objective itself).
    """
    check_objective(objective)
    t = check_timesteps(t, len(check_schedule(schedule)))
    if check_optional(check_positive, "min_snr_gamma", min_snr_gamma) is None:
        return torch.ones(len(t), dtype=torch.float64)
    snr = schedule.snr(t)
    clipped = snr.clamp(max=min_snr_gamma)  # min(SNR, gamma)
    weights = {"eps": clipped / snr, "x0": clipped, "v": clipped / (snr + 1)}
    return weights[objective]


def diffusion_loss(
    model: nn.Module,
    schedule: NoiseSchedule,
    x0: Tensor,
    objective: str = "eps",
    cond: Condition | None = None,
    min_snr_gamma: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The training loss of one batch: t ~ U{0..T-1}, eps ~ N(0, I), the mean over
    the batch of w(t) |model(x_t, t, cond) - target|^2 (w = loss_weights)."""
    _check_loss_args(model, schedule, x0, objective, cond, min_snr_gamma, generator)
    device = generator.device if generator is not None else None
    t = torch.randint(len(schedule), (len(x0),), generator=generator, device=device)
    t = t.to(x0.device)  # (B,)
    noise = torch.randn(x0.shape, generator=generator, device=device).to(x0)
    x_t = q_sample(schedule, x0, t, noise)
    prediction = call_model(model, x_t, t, cond)
    truth = target(schedule, objective, x0, noise, t)
    squared = (prediction.float() - truth.float()).square()
    per_sample = squared.flatten(1).mean(dim=1)  # (B,)
    weights = loss_weights(schedule, objective, t, min_snr_gamma).to(per_sample)
    return (weights * per_sample).mean()


def call_model(
    model: nn.Module, x_t: Tensor, t: Tensor, cond: Condition | None
) -> Tensor:
    """model(x_t, t), or model(x_t, t, cond) when a condition is given."""
    check_module("model", model)
    return model(x_t, t) if cond is None else model(x_t, t, cond)


def check_objective(objective: str) -> str:
    """One of OBJECTIVES."""
    return check_choice("objective", objective, OBJECTIVES)


def check_condition(name: str, cond: Condition | None, batch: int) -> None:
    """None, or a condition (tensor or TokenStates) with one row per sample."""
    check_instance("name", name, str, "a str")
    batch = check_int("batch", batch, minimum=0)
    if cond is None:
        return
    check_instance(
        name, cond, (Tensor, TokenStates), "a tensor or TokenStates (or None)"
    )
    scalar = isinstance(cond, Tensor) and cond.dim() == 0
    rows = 0 if scalar else len(cond)
    if scalar or rows != batch:
        raise ValueError(
            f"{name} must hold one condition per sample: {batch}, got {rows}"
        )


def _check_loss_args(
    model: nn.Module,
    schedule: NoiseSchedule,
    x0: Tensor,
    objective: str,
    cond: Condition | None,
    min_snr_gamma: float | None,
    generator: torch.Generator | None,
) -> None:
    check_module("model", model)
    check_schedule(schedule)
    check_objective(objective)
    check_tensor("x0", x0, floating=True, shape="(B, ...)")
    if x0.dim() < 2 or len(x0) == 0:
        raise ValueError(
            f"x0 must be a non-empty batch (B, ...), got {tuple(x0.shape)}"
        )
    check_condition("cond", cond, len(x0))
    check_optional(check_positive, "min_snr_gamma", min_snr_gamma)
    check_optional(check_instance, "generator", generator, torch.Generator)
