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

from typing import Callable

import torch
from torch import Tensor, nn

from minigen.core.runtime import Precision, choose_precision, seed_everything
from minigen.core.train import EMA, History, train
from minigen.diffusion.objectives import _check_objective, diffusion_loss
from minigen.diffusion.schedule import NoiseSchedule


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
