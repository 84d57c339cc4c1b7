"""Sampling from diffusion models: DDPM, DDIM and its inversion, classifier-free
guidance.

Implements
- the posterior q(x_{t-1} | x_t, x_0) and ancestral sampling of J. Ho, A. Jain,
  P. Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020;
- DDIM sampling with eta, and its deterministic inversion (eta = 0), J. Song, C.
  Meng, S. Ermon, "Denoising Diffusion Implicit Models", ICLR 2021;
- classifier-free guidance, pred = pred(null) + w (pred(cond) - pred(null)), J. Ho,
  T. Salimans, "Classifier-Free Diffusion Guidance", 2022.

How a sampler reads the model (its objective, the condition, the guidance scale, the
clipping of x_0) is one `SamplerOptions`. A condition is class labels (B, K), an
embedding (B, D) or `TokenStates`; guidance asks the model for its NULL condition,
`model.null_cond(B, device)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn

from minigen.core.runtime import as_device
from minigen.core.validators import (
    check_float,
    check_instance,
    check_int,
    check_ints,
    check_module,
    check_optional,
    check_positive,
    check_same_shape,
    check_tensor,
)
from minigen.diffusion.objectives import (
    call_model,
    check_condition,
    check_objective,
    to_eps_and_x0,
)
from minigen.diffusion.schedule import NoiseSchedule, check_schedule
from minigen.nn.embeddings import Condition, TokenStates, cat_conditions


@dataclass(frozen=True, eq=False)
class SamplerOptions:
    """How a sampler reads eps and x_0 off the model.

    objective: what the model predicts, "eps", "x0" or "v".
    cond: the condition, one row per sample (labels, an embedding or TokenStates);
        None calls the model without one (a conditional model then uses its NULL).
    guidance: the classifier-free guidance scale w (needs cond); None: no guidance.
    clip: clamp the predicted x_0 to [-clip, clip] (data scaled to [-1, 1]) and
        re-derive eps from it; None leaves x_0 as predicted.
    """

    objective: str = "eps"
    cond: Condition | None = None
    guidance: float | None = None
    clip: float | None = 1.0

    def __post_init__(self) -> None:
        check_objective(self.objective)
        check_optional(check_instance, "cond", self.cond, (Tensor, TokenStates))
        check_optional(check_float, "guidance", self.guidance, 0.0)
        check_optional(check_positive, "clip", self.clip)
        if self.guidance is not None and self.cond is None:
            raise ValueError(
                "guidance needs a condition to guide towards: pass cond= as well"
            )


def guided_prediction(
    model: nn.Module,
    x_t: Tensor,
    t: Tensor,
    cond: Condition | None = None,
    guidance: float | None = None,
) -> Tensor:
    """The model's prediction, with classifier-free guidance when `guidance` is set:
    pred = pred(null) + w (pred(cond) - pred(null)); w = 1 is the conditional model,
    w = 0 the unconditional one. The prediction is linear in the target, so the same
    formula serves eps, x_0 and v. Both predictions come from one batch of 2B."""
    _check_guidance_args(model, guidance)
    if guidance is None:
        return call_model(model, x_t, t, cond)
    if cond is None:
        raise ValueError(
            "guidance needs a condition to guide towards, got cond=None"
        )
    null = _null_condition(model, len(x_t), x_t.device)
    both_conds = cat_conditions([null, cond])  # (2B, ...)
    both = model(torch.cat([x_t, x_t]), torch.cat([t, t]), both_conds)
    unconditional, conditional = both.float().chunk(2)
    return unconditional + guidance * (conditional - unconditional)


def predict_eps_and_x0(
    model: nn.Module,
    schedule: NoiseSchedule,
    x_t: Tensor,
    t: Tensor,
    options: SamplerOptions,
) -> tuple[Tensor, Tensor]:
    """(eps, x_0) read off the model at x_t as `options` say: guided, clipped."""
    check_instance("options", options, SamplerOptions, "a SamplerOptions")
    prediction = guided_prediction(model, x_t, t, options.cond, options.guidance)
    eps, x0 = to_eps_and_x0(
        schedule, options.objective, x_t, t, prediction.to(x_t.dtype)
    )
    if options.clip is not None:
        x0 = x0.clamp(-options.clip, options.clip)
        # the eps that goes with the clipped x_0 in x_t = a x_0 + b eps
        eps = (x_t - schedule.signal(t, x_t) * x0) / schedule.noise_level(t, x_t)
    return eps, x0


def posterior_mean(
    schedule: NoiseSchedule, x0: Tensor, x_t: Tensor, t: Tensor
) -> Tensor:
    """Mean of q(x_{t-1} | x_t, x_0) = beta_t sqrt(abar_{t-1}) / (1 - abar_t) x_0
    + (1 - abar_{t-1}) sqrt(alpha_t) / (1 - abar_t) x_t."""
    s = check_schedule(schedule)
    check_tensor("x0", x0, floating=True)
    check_tensor("x_t", x_t, floating=True)
    check_same_shape("x0", x0, "x_t", x_t)
    coef_x0 = s.betas * s.alpha_bar_prev.sqrt() / (1 - s.alpha_bar)
    coef_xt = (1 - s.alpha_bar_prev) * s.alphas.sqrt() / (1 - s.alpha_bar)
    return s.at(coef_x0, t, x_t) * x0 + s.at(coef_xt, t, x_t) * x_t


@torch.no_grad()
def ddpm_sample(
    model: nn.Module,
    schedule: NoiseSchedule,
    shape: Sequence[int],
    options: SamplerOptions = SamplerOptions(),
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    x_T: Tensor | None = None,
) -> Tensor:
    """Ancestral sampling, T model calls, no noise at the last step:
    x_{t-1} = mean(x_t, x0_hat) + sqrt(beta~_t) z."""
    x = _start(model, schedule, shape, options, generator, device, x_T)
    for step in reversed(range(len(schedule))):
        t = torch.full((len(x),), step, device=x.device, dtype=torch.long)
        _, x0 = predict_eps_and_x0(model, schedule, x, t, options)
        mean = posterior_mean(schedule, x0, x, t)
        if step == 0:
            return mean
        noise = _noise_like(x, generator)
        x = mean + schedule.at(schedule.posterior_variance.sqrt(), t, x) * noise
    return x


def ddim_timesteps(total: int, steps: int) -> list[int]:
    """`steps` timesteps from T-1 down to 0, evenly spaced, both ends included."""
    total = check_int("total", total)
    steps = check_int("steps", steps, maximum=total)
    return sorted(
        {round(i * (total - 1) / max(steps - 1, 1)) for i in range(steps)},
        reverse=True,
    )


def ddim_sigma(schedule: NoiseSchedule, t: int, t_prev: int, eta: float) -> float:
    """The noise of a DDIM step from t to t_prev, eta in [0, 1]:
    sigma = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev);
    t_prev = -1 means abar_prev = 1 (the step to the clean image)."""
    t, t_prev = _check_step_times(check_schedule(schedule), t, t_prev)
    eta = check_float("eta", eta, 0.0, 1.0)
    alpha_bar = schedule.alpha_bar[t].item()
    alpha_bar_prev = _alpha_bar(schedule, t_prev)
    return eta * math.sqrt(
        (1 - alpha_bar_prev) / (1 - alpha_bar) * (1 - alpha_bar / alpha_bar_prev)
    )


def ddim_step(
    schedule: NoiseSchedule,
    x_t: Tensor,
    eps: Tensor,
    x0: Tensor,
    t: int,
    t_prev: int,
    eta: float,
    noise: Tensor | None = None,
) -> Tensor:
    """x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev - sigma^2) eps + sigma z
    (Song et al., eq. 12), with eps and x0 read off x_t; all four of x_t's shape."""
    _check_step_tensors(x_t, eps, x0, noise)
    sigma = ddim_sigma(schedule, t, t_prev, eta)
    alpha_bar_prev = _alpha_bar(schedule, t_prev)
    direction = math.sqrt(max(1 - alpha_bar_prev - sigma**2, 0.0))  # towards x_t
    x_prev = math.sqrt(alpha_bar_prev) * x0 + direction * eps
    if sigma > 0:
        if noise is None:
            raise ValueError(f"eta > 0 needs noise for the step from t = {t}")
        x_prev = x_prev + sigma * noise
    return x_prev


@torch.no_grad()
def ddim_sample(
    model: nn.Module,
    schedule: NoiseSchedule,
    shape: Sequence[int],
    steps: int,
    eta: float = 0.0,
    options: SamplerOptions = SamplerOptions(),
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    x_T: Tensor | None = None,
    path: list[Tensor] | None = None,
) -> Tensor:
    """DDIM: `steps` model calls on a subsequence of the timesteps; eta = 0 is
    deterministic given x_T, eta = 1 with steps = T is DDPM.

    path: a list that receives x_T and every x after it (steps + 1 tensors).
    """
    check_float("eta", eta, 0.0, 1.0)
    check_optional(check_instance, "path", path, list)
    x = _start(model, schedule, shape, options, generator, device, x_T)
    times = ddim_timesteps(len(schedule), steps)
    if path is not None:
        path.append(x)
    for step, step_prev in zip(times, [*times[1:], -1]):
        t = torch.full((len(x),), step, device=x.device, dtype=torch.long)
        eps, x0 = predict_eps_and_x0(model, schedule, x, t, options)
        step_eta = eta if step_prev >= 0 else 0.0  # no noise on the step to x_0
        noise = _noise_like(x, generator) if step_eta > 0 else None
        x = ddim_step(schedule, x, eps, x0, step, step_prev, step_eta, noise)
        if path is not None:
            path.append(x)
    return x


@torch.no_grad()
def ddim_invert(
    model: nn.Module,
    schedule: NoiseSchedule,
    x0: Tensor,
    steps: int,
    options: SamplerOptions = SamplerOptions(clip=None),
) -> Tensor:
    """Deterministic DDIM run backwards, x_0 -> x_T, over the timesteps that
    `ddim_sample` would use, ascending:
    x_next = sqrt(abar_next) x0_hat + sqrt(1 - abar_next) eps_hat,
    both read off the model at the current x (at the clean image, x0_hat = x_0 and
    eps_hat is read at the first timestep). Sampling with eta = 0 and the same
    options from the result retraces the path; the gap is the error of reading eps
    one step early."""
    check_tensor("x0", x0, floating=True, shape="(B, ...)")
    if x0.dim() == 0:
        raise ValueError("x0 must be a batch (B, ...), got a 0-d tensor")
    _check_sampler_args(model, schedule, options, len(x0))
    x, current = x0.clone(), None
    ascending = reversed(ddim_timesteps(len(schedule), steps))  # 0 .. T-1
    for step in ascending:
        read_at = step if current is None else current
        t = torch.full((len(x),), read_at, device=x.device, dtype=torch.long)
        eps, x0_hat = predict_eps_and_x0(model, schedule, x, t, options)
        if current is None:
            x0_hat = x  # the clean image is known exactly
        t_next = torch.full_like(t, step)
        x = (
            schedule.signal(t_next, x) * x0_hat
            + schedule.noise_level(t_next, x) * eps
        )
        current = step
    return x


# ----------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------


def _check_guidance_args(model: nn.Module, guidance: float | None) -> None:
    check_module("model", model)
    check_optional(check_float, "guidance", guidance)


def _null_condition(
    model: nn.Module, batch: int, device: torch.device
) -> Condition:
    null_cond = getattr(model, "null_cond", None)
    if not callable(null_cond):
        raise TypeError(
            "classifier-free guidance needs the model's NULL condition, "
            f"model.null_cond(batch, device); {type(model).__name__} has none"
        )
    return null_cond(batch, device)


def _start(
    model: nn.Module,
    schedule: NoiseSchedule,
    shape: Sequence[int],
    options: SamplerOptions,
    generator: torch.Generator | None,
    device: torch.device | str,
    x_T: Tensor | None,
) -> Tensor:
    """The sampler's arguments checked; its first x: x_T, or noise of `shape`."""
    shape = check_ints("shape", shape)
    _check_sampler_args(model, schedule, options, shape[0])
    check_optional(check_instance, "generator", generator, torch.Generator)
    device = as_device(device)
    if x_T is None:
        device_of = generator.device if generator is not None else None
        return torch.randn(shape, generator=generator, device=device_of).to(device)
    check_tensor("x_T", x_T, floating=True)
    if tuple(x_T.shape) != shape:
        raise ValueError(f"x_T must have the shape {shape}, got {tuple(x_T.shape)}")
    return x_T.clone()


def _check_sampler_args(
    model: nn.Module, schedule: NoiseSchedule, options: SamplerOptions, batch: int
) -> None:
    check_module("model", model)
    check_schedule(schedule)
    check_instance("options", options, SamplerOptions, "a SamplerOptions")
    check_condition("options.cond", options.cond, batch)


def _check_step_times(
    schedule: NoiseSchedule, t: int, t_prev: int
) -> tuple[int, int]:
    t = check_int("t", t, minimum=0, maximum=len(schedule) - 1)
    return t, check_int("t_prev", t_prev, minimum=-1, maximum=t - 1)


def _check_step_tensors(
    x_t: Tensor, eps: Tensor, x0: Tensor, noise: Tensor | None
) -> None:
    check_tensor("x_t", x_t, floating=True)
    for name, value in (("eps", eps), ("x0", x0), ("noise", noise)):
        if name != "noise" or value is not None:
            check_tensor(name, value, floating=True)
            check_same_shape("x_t", x_t, name, value)


def _alpha_bar(schedule: NoiseSchedule, t: int) -> float:
    """abar_t, and 1 for t = -1 (the clean image)."""
    return 1.0 if t < 0 else schedule.alpha_bar[t].item()


def _noise_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    device = generator.device if generator is not None else None
    return torch.randn(x.shape, generator=generator, device=device).to(x)
