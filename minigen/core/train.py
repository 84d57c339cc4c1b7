"""The training loop every chapter shares.

One loop, so that each chapter only writes its loss: mixed precision with loss scaling for fp16
(Micikevicius et al. 2018, "Mixed Precision Training"), gradient clipping by global norm
(Pascanu et al. 2013, "On the difficulty of training recurrent neural networks"), an exponential
moving average of the weights (Polyak & Juditsky 1992; the EMA that DDPM samples with, Ho et al.
2020), a tqdm progress bar, a History for plots, and checkpoints that resume bit for bit.

The loss is a closure `loss_fn(step)` that draws its own batch: chapters keep whole small datasets
as tensors on the device, so a batch is an index, not a DataLoader.
"""
from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from minigen.core.runtime import Precision, choose_precision

LossOutput = torch.Tensor | tuple[torch.Tensor, dict[str, float]]
POSTFIX_WINDOW = 20   # the progress bar shows the mean of the last 20 logged losses


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; raised before the optimizer step could spoil the weights."""

    def __init__(self, step: int, loss: float):
        self.step, self.loss = step, loss
        super().__init__(f"the loss is {loss} at step {step}; the optimizer step was not taken. Try a lower "
                         "learning rate, fp32 (choose_precision(dtype='fp32')) or gradient clipping, and check "
                         "the data for NaN or inf")


class EMA:
    """An exponential moving average of a model's weights, kept in a copy (`.module`) to evaluate with.

    Create it after moving the model to its device. Buffers (e.g. batch-norm statistics) are copied,
    not averaged.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must lie in [0, 1), got {decay}; 0.999 averages over about 1000 steps")
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    @property
    def ema_model(self) -> nn.Module:
        """The averaged model (the same object as `.module`)."""
        return self.module

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move each averaged weight a step (1 - decay) towards the model's current weight."""
        averaged, current = dict(self.module.named_parameters()), dict(model.named_parameters())
        if averaged.keys() != current.keys():
            raise ValueError("the model's parameters differ from those the EMA was created from")
        for name, theta in current.items():
            averaged[name].lerp_(theta, 1.0 - self.decay)   # theta_ema <- decay*theta_ema + (1-decay)*theta
        for ema_buffer, buffer in zip(self.module.buffers(), model.buffers()):
            ema_buffer.copy_(buffer)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "module": self.module.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.decay = state["decay"]
        self.module.load_state_dict(state["module"])


@dataclass
class History:
    """What training logged: the loss (and named metrics) at the logged steps, and the time spent."""

    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0          # wall time of training, summed over resumed runs
    completed_steps: int = 0      # steps trained so far, also the index of the next step

    def record(self, step: int, loss: float, metrics: dict[str, float]) -> None:
        """Append one logged step; every step must report the same metric names."""
        if self.steps and set(metrics) != set(self.metrics):
            raise ValueError(f"loss_fn returned metrics {sorted(metrics)} at step {step} but "
                             f"{sorted(self.metrics)} before; return the same names every step")
        self.steps.append(step)
        self.losses.append(loss)
        for name, value in metrics.items():
            self.metrics.setdefault(name, []).append(float(value))

    def smoothed(self, window: int) -> list[float]:
        """Each loss averaged with the window - 1 logged before it (fewer at the start)."""
        if not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be a positive int, got {window!r}")
        sums = np.cumsum([0.0, *self.losses])                 # sums[i] = losses[0] + ... + losses[i-1]
        end = np.arange(1, len(self.losses) + 1)
        start = np.maximum(end - window, 0)
        return ((sums[end] - sums[start]) / (end - start)).tolist()


def save_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    step: int = 0, history: History | None = None, ema: EMA | None = None,
                    scaler: torch.amp.GradScaler | None = None, extra: dict[str, Any] | None = None,
                    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
                    generators: Sequence[torch.Generator] = ()) -> None:
    """Save training state to `path` atomically (a crash mid-save never leaves a broken file).

    extra: anything else to keep, made of tensors and plain Python values.
    Torch's random state (CPU and CUDA) is saved too, and that of each of `generators` (private
    generators a loss draws from, e.g. for label dropout), so a resumed run draws the same numbers.
    """
    state: dict[str, Any] = {"model": model.state_dict(), "step": step, "rng": _rng_state(generators),
                             "extra": extra}
    optional = {"optimizer": optimizer, "ema": ema, "scaler": scaler, "scheduler": scheduler}
    state.update({name: part.state_dict() for name, part in optional.items() if part is not None})
    if history is not None:
        state["history"] = asdict(history)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(state, partial)
    os.replace(partial, path)   # atomic on POSIX and Windows


def load_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    ema: EMA | None = None, scaler: torch.amp.GradScaler | None = None,
                    map_location: str | torch.device = "cpu",
                    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None) -> dict[str, Any]:
    """Load into `model` (and the optimizer, EMA and scaler given) what `save_checkpoint` stored.

    Returns {"step", "history" (History or None), "extra", "rng"}; the random state is returned,
    not restored, so loading a model to evaluate it leaves the caller's random stream alone.
    """
    state = torch.load(path, map_location=map_location, weights_only=True)
    model.load_state_dict(state["model"])
    for name, part in {"optimizer": optimizer, "ema": ema, "scaler": scaler, "scheduler": scheduler}.items():
        if part is None:
            continue
        if name not in state:
            raise ValueError(f"{path} holds no {name} state; it was saved without one (pass {name}=None)")
        part.load_state_dict(state[name])
    history = History(**state["history"]) if "history" in state else None
    return {"step": state["step"], "history": history, "extra": state["extra"], "rng": state["rng"]}


def _rng_state(generators: Sequence[torch.Generator] = ()) -> dict[str, Any]:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return {"cpu": torch.get_rng_state(), "cuda": cuda,
            "generators": [generator.get_state() for generator in generators]}


def _set_rng_state(state: dict[str, Any], generators: Sequence[torch.Generator] = ()) -> None:
    torch.set_rng_state(state["cpu"].cpu())           # .cpu(): map_location may have moved it to the GPU
    if state["cuda"] and torch.cuda.is_available():   # a GPU run resumed on the CPU keeps only the CPU state
        torch.cuda.set_rng_state_all([generator_state.cpu() for generator_state in state["cuda"]])
    saved = state.get("generators", [])
    if len(saved) != len(generators):
        raise ValueError(f"the checkpoint holds the state of {len(saved)} private generators, but "
                         f"training passed {len(generators)}; resume with the same generators")
    for generator, generator_state in zip(generators, saved):
        generator.set_state(generator_state.cpu())


def _check_positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")


def _split_loss(output: LossOutput, step: int) -> tuple[torch.Tensor, dict[str, float]]:
    """Check what loss_fn returned: a scalar tensor that requires grad, optionally with a metrics dict."""
    loss, metrics = output if isinstance(output, tuple) and len(output) == 2 else (output, {})
    if not isinstance(loss, torch.Tensor) or not isinstance(metrics, dict):
        raise TypeError(f"loss_fn must return a scalar tensor or (tensor, dict of metrics); at step {step} it "
                        f"returned {type(output).__name__}")
    if loss.ndim != 0:
        raise ValueError(f"loss_fn must return a scalar loss, got shape {tuple(loss.shape)}; reduce it (.mean())")
    if not loss.requires_grad:
        raise ValueError("the loss does not require grad: was it computed under torch.no_grad() or detached?")
    return loss, metrics


def _check_schedule(steps: int, log_every: int, checkpoint: str | Path | None, checkpoint_every: int | None,
                    grad_clip: float | None) -> None:
    _check_positive_int("steps", steps)
    _check_positive_int("log_every", log_every)
    if checkpoint_every is not None:
        _check_positive_int("checkpoint_every", checkpoint_every)
        if checkpoint is None:
            raise ValueError("checkpoint_every needs a checkpoint file to write: pass checkpoint=PATH")
    if grad_clip is not None and not grad_clip > 0:
        raise ValueError(f"grad_clip must be a positive norm, got {grad_clip}")


def _optimizer_step(loss: torch.Tensor, parameters: list[nn.Parameter], optimizer: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler, grad_clip: float | None) -> None:
    """Backward and update; with fp16 the loss is scaled, and the step skipped if a gradient overflowed."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()                        # fp16: loss * scale, so small gradients do not underflow
    if grad_clip is not None:
        scaler.unscale_(optimizer)                       # clip the true gradients, not the scaled ones
        nn.utils.clip_grad_norm_(parameters, grad_clip)  # g <- g * min(1, grad_clip / ||g||)
    scaler.step(optimizer)                               # g / scale, then the optimizer's own step
    scaler.update()


def train(model: nn.Module, loss_fn: Callable[[int], LossOutput], *, steps: int,
          optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
          precision: Precision | None = None, ema: EMA | None = None,
          grad_clip: float | None = None, checkpoint: str | Path | None = None,
          checkpoint_every: int | None = None, log_every: int = 1, progress: bool = True,
          desc: str = "train", history: History | None = None,
          generators: Sequence[torch.Generator] = ()) -> History:
    """Train `model` until `steps` steps in total are done, calling `loss_fn(step)` for step 0, 1, ...

    scheduler: a learning-rate schedule, stepped after every optimizer step (and checkpointed).
    precision: default `choose_precision` for the model's device.
    ema: updated after every optimizer step.
    grad_clip: clip the global gradient norm to this value.
    checkpoint: a file; if it exists, training resumes from it (model, optimizer, scaler, EMA, history,
        random state). It is written every `checkpoint_every` steps and at the end.
    log_every: record the loss in the History every that many steps.
    history: a History to continue (training goes on from its `completed_steps`).
    generators: private random generators that loss_fn draws from; checkpointed and restored.
    The model is in train mode during training and is left in the mode it was found in.
    Steps whose fp16 gradients overflow are skipped by the GradScaler, as it is meant to.
    Raises NonFiniteLossError (before the optimizer step) when the loss is NaN or infinite.
    """
    _check_schedule(steps, log_every, checkpoint, checkpoint_every, grad_clip)
    parameters = list(model.parameters())
    if not parameters:
        raise ValueError("the model has no parameters to train")
    device = parameters[0].device
    precision = precision or choose_precision(device)
    if precision.device.type != device.type:
        raise ValueError(f"the model is on {device} but the precision is for {precision.device}")
    scaler = precision.grad_scaler()
    scaler_to_save = scaler if scaler.is_enabled() else None   # a disabled scaler has no state

    if checkpoint is not None and Path(checkpoint).exists():
        if history is not None:
            raise ValueError(f"{checkpoint} exists and holds its own history: pass history=None to resume it, "
                             "or another checkpoint path to start afresh")
        state = load_checkpoint(checkpoint, model, optimizer, ema, scaler_to_save, map_location=device,
                                scheduler=scheduler)
        history = state["history"]
        _set_rng_state(state["rng"], generators)
    history = history if history is not None else History()
    start = history.completed_steps
    if start > steps:
        raise ValueError(f"training is already at step {start}, past steps={steps}; ask for steps >= {start}")

    def save() -> None:
        save_checkpoint(checkpoint, model, optimizer, history.completed_steps, history, ema, scaler_to_save,
                        scheduler=scheduler, generators=generators)

    was_training = model.training
    model.train()
    seconds_before, started = history.seconds, time.perf_counter()
    bar = tqdm(range(start, steps), desc=desc, initial=start, total=steps, disable=not progress)
    try:
        for step in bar:
            with precision.autocast():
                loss, metrics = _split_loss(loss_fn(step), step)
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                raise NonFiniteLossError(step, loss_value)
            _optimizer_step(loss, parameters, optimizer, scaler, grad_clip)
            if scheduler is not None:
                scheduler.step()
            if ema is not None:
                ema.update(model)
            history.completed_steps = step + 1
            history.seconds = seconds_before + time.perf_counter() - started
            if step % log_every == 0:
                history.record(step, loss_value, metrics)
                recent = history.losses[-POSTFIX_WINDOW:]
                postfix = {"loss": f"{sum(recent) / len(recent):.4g}"}
                postfix.update({name: f"{float(value):.4g}" for name, value in metrics.items()})
                bar.set_postfix(postfix, refresh=False)
            if checkpoint_every is not None and (step + 1) % checkpoint_every == 0:
                save()
    finally:
        bar.close()
        model.train(was_training)
    if checkpoint is not None:
        save()
    return history
