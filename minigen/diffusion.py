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
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from minigen.runtime import Precision, choose_precision, seed_everything
from minigen.train import EMA, History, train

OBJECTIVES: tuple[str, ...] = ("eps", "x0", "v")
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


def train_diffusion(model: nn.Module, schedule: NoiseSchedule, batches: Callable[[int], tuple[Tensor, Tensor | None]],
                    steps: int, objective: str = "eps", lr: float = 1e-3, min_snr_gamma: float | None = None,
                    label_dropout: float = 0.0, ema_decay: float = 0.999, grad_clip: float | None = 1.0,
                    precision: Precision | None = None, progress: bool = True, seed: int = 0,
                    desc: str = "diffusion") -> tuple[nn.Module, History]:
    """Train a denoiser with `diffusion_loss`; returns its EMA copy (what DDPM samples with) and the History.

    batches(step) -> (x0 (B, ...) on any device, labels (B, K) or None). label_dropout: the share of
    samples whose labels are replaced by the model's null labels (`model.null_labels(B, device)`), so one
    model learns the conditional and the unconditional prediction that classifier-free guidance mixes.
    AdamW with a cosine decay of the learning rate; gradients clipped to `grad_clip`.
    """
    _check_objective(objective)
    if not 0.0 <= label_dropout < 1.0:
        raise ValueError(f"label_dropout must lie in [0, 1), got {label_dropout}")
    precision = precision or choose_precision()
    seed_everything(seed)
    model.to(precision.device)
    ema = EMA(model, decay=ema_decay)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    schedule_lr = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    dropout = torch.Generator().manual_seed(seed + 1)

    def loss_fn(step: int) -> Tensor:
        x0, labels = batches(step)
        x0 = x0.to(precision.device)
        if labels is not None:
            labels = labels.to(precision.device)
            if label_dropout > 0:
                drop = (torch.rand(len(labels), generator=dropout) < label_dropout).to(precision.device)
                labels = torch.where(drop[:, None], model.null_labels(len(labels), precision.device), labels)
        return diffusion_loss(model, schedule, x0, objective, labels, min_snr_gamma)

    history = train(model, loss_fn, steps=steps, optimizer=optimizer, scheduler=schedule_lr, precision=precision,
                    ema=ema, grad_clip=grad_clip, progress=progress, desc=desc)
    return ema.module, history


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


def _call(model: nn.Module, x: Tensor, t: Tensor, labels: Tensor | None) -> Tensor:
    return model(x, t) if labels is None else model(x, t, labels)


def _alpha_bar_or_one(schedule: NoiseSchedule, t: int) -> float:
    return 1.0 if t < 0 else schedule.alpha_bar[t].item()


def _initial_noise(shape: Sequence[int], generator: torch.Generator | None, device: torch.device | str) -> Tensor:
    return torch.randn(tuple(shape), generator=generator, device=_generator_device(generator)).to(device)


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


def _check_objective(objective: str) -> None:
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; valid ones: {', '.join(OBJECTIVES)}")


def _check_same_shape(a: Tensor, b: Tensor, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")

