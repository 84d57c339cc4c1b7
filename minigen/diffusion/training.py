"""Training a diffusion model: the loss of `objectives`, condition dropout, EMA,
resumable.

Implements
- the training of J. Ho, A. Jain, P. Abbeel, "Denoising Diffusion Probabilistic
  Models", NeurIPS 2020: one random timestep per image, an exponential moving
  average of the weights to sample with;
- condition dropout, which replaces a share of the conditions by the model's NULL
  condition so that one network learns the conditional and the unconditional
  prediction that classifier-free guidance mixes: J. Ho, T. Salimans,
  "Classifier-Free Diffusion Guidance", 2022;
- AdamW, I. Loshchilov, F. Hutter, "Decoupled Weight Decay Regularization", ICLR
  2019, with the cosine decay of the learning rate of their "SGDR", ICLR 2017.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from minigen.core.runtime import Precision, choose_precision, seed_everything
from minigen.core.train import (
    EMA,
    History,
    check_training_arguments,
    train,
    warmup_cosine,
)
from minigen.core.validators import (
    check_bool,
    check_instance,
    check_int,
    check_module,
    check_optional,
    check_positive,
    check_probability,
    check_tensor,
    describe,
)
from minigen.diffusion.objectives import (
    check_condition,
    check_objective,
    diffusion_loss,
)
from minigen.diffusion.schedule import NoiseSchedule, check_schedule
from minigen.nn.embeddings import Condition, where_condition

Batches = Callable[[int], tuple[Tensor, Condition | None]]


def train_diffusion(
    model: nn.Module,
    schedule: NoiseSchedule,
    batches: Batches,
    steps: int,
    objective: str = "eps",
    lr: float = 1e-3,
    warmup_steps: int = 0,
    min_snr_gamma: float | None = None,
    cond_dropout: float = 0.0,
    ema_decay: float = 0.999,
    ema_warmup: bool = False,
    grad_clip: float | None = 1.0,
    precision: Precision | None = None,
    progress: bool = True,
    seed: int = 0,
    desc: str = "diffusion",
    checkpoint: str | Path | None = None,
    checkpoint_every: int | None = None,
    on_step: Callable[[int, nn.Module], None] | None = None,
) -> tuple[nn.Module, History]:
    """Train a denoiser with `diffusion_loss`; returns its EMA copy (what DDPM
    samples with) and the History.

    batches(step) -> (x0 (B, ...) on any device, its condition or None): class
        labels, an embedding or TokenStates, one row per image.
    cond_dropout: the share of images whose condition is replaced by the model's
        NULL condition, `model.null_cond(B, device)`.
    min_snr_gamma: weight the loss by min-SNR-gamma (see `loss_weights`).
    checkpoint: a file that training resumes from, bit for bit, if it exists
        (the dropout's generator included); written every `checkpoint_every`
        steps and at the end.
    on_step: called as on_step(steps done, EMA model) after every step, e.g. to
        sample from the EMA model every few hundred steps (not timed as training).
    warmup_steps, ema_warmup: a linear warm-up of the learning rate before its
        cosine decay (`warmup_cosine`), and of the EMA's decay (`EMA`).
    AdamW; gradients clipped to grad_clip.
    """
    _check_arguments(locals())
    precision = precision or choose_precision()
    seed_everything(seed)
    model.to(precision.device)
    ema = EMA(model, decay=ema_decay, warmup=ema_warmup)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    schedule_lr = warmup_cosine(optimizer, steps, warmup_steps)
    dropout = torch.Generator().manual_seed(seed + 1)  # which conditions to drop

    def loss_fn(step: int) -> Tensor:
        x0, cond = _unpack(batches(step), step)
        x0 = x0.to(precision.device)
        if cond is not None:
            cond = cond.to(precision.device)
            if cond_dropout > 0:
                drop = torch.rand(len(cond), generator=dropout) < cond_dropout
                null = model.null_cond(len(cond), precision.device)
                cond = where_condition(drop.to(precision.device), null, cond)
        return diffusion_loss(model, schedule, x0, objective, cond, min_snr_gamma)

    history = train(
        model, loss_fn, steps=steps, optimizer=optimizer, scheduler=schedule_lr,
        precision=precision, ema=ema, grad_clip=grad_clip, progress=progress,
        desc=desc, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
        generators=[dropout],  # the dropout's random state is checkpointed too
        on_step=None if on_step is None else lambda done: on_step(done, ema.module),
    )  # fmt: skip
    return ema.module, history


def _check_arguments(arguments: dict[str, Any]) -> None:
    """train_diffusion's arguments, checked before anything is built or seeded."""
    names = "steps lr seed precision progress checkpoint checkpoint_every".split()
    check_training_arguments(**{name: arguments[name] for name in names})
    model = check_module("model", arguments["model"])
    check_schedule(arguments["schedule"])
    if not callable(arguments["batches"]):
        raise TypeError(
            "batches must be a function of the step returning (x0, cond), got "
            f"{describe(arguments['batches'])}"
        )
    check_objective(arguments["objective"])
    check_optional(check_positive, "min_snr_gamma", arguments["min_snr_gamma"])
    check_probability("cond_dropout", arguments["cond_dropout"])
    check_probability("ema_decay", arguments["ema_decay"])
    check_bool("ema_warmup", arguments["ema_warmup"])
    steps, warmup = arguments["steps"], arguments["warmup_steps"]
    if check_int("warmup_steps", warmup, minimum=0) >= steps:
        raise ValueError(
            f"warmup_steps must be fewer than steps={steps}, got {warmup}"
        )
    check_optional(check_positive, "grad_clip", arguments["grad_clip"])
    check_instance("desc", arguments["desc"], str)
    if arguments["on_step"] is not None and not callable(arguments["on_step"]):
        raise TypeError(
            "on_step must be a function of (steps done, EMA model), got "
            f"{describe(arguments['on_step'])}"
        )
    has_null = callable(getattr(model, "null_cond", None))
    if arguments["cond_dropout"] > 0 and not has_null:
        raise TypeError(
            "cond_dropout needs the model's NULL condition, model.null_cond(batch, "
            f"device); {type(model).__name__} has none"
        )


def _unpack(batch: Any, step: int) -> tuple[Tensor, Condition | None]:
    """batches(step)'s (x0, cond), checked."""
    if not isinstance(batch, tuple) or len(batch) != 2:
        raise TypeError(
            "batches(step) must return (x0, cond), cond None if unconditional; at "
            f"step {step} it returned {describe(batch)}"
        )
    x0, cond = batch
    check_tensor("the x0 of batches(step)", x0, floating=True, shape="(B, ...)")
    check_condition("the cond of batches(step)", cond, len(x0) if x0.dim() else 0)
    return x0, cond
