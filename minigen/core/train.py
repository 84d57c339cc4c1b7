"""The training loop every chapter shares.

One loop, so that each chapter only writes its loss: mixed precision with loss
scaling for fp16 (Micikevicius et al. 2018, "Mixed Precision Training"), gradient
clipping by global norm (Pascanu et al. 2013, "On the difficulty of training
recurrent neural networks"), an exponential moving average of the weights (Polyak &
Juditsky 1992; the EMA that DDPM samples with, Ho et al. 2020), a tqdm progress bar,
a History for plots, and checkpoints that resume bit for bit.

The loss is a closure `loss_fn(step)` that draws its own batch: chapters keep whole
small datasets as tensors on the device, so a batch is an index, not a DataLoader.
"""

from __future__ import annotations

import copy
import errno
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import std as tqdm_text
from tqdm.auto import tqdm

from minigen.core.runtime import Precision, as_device, choose_precision, train_mode
from minigen.core.text import BOOK_COLUMN, wrap_parts
from minigen.core.validators import (
    check_bool,
    check_float,
    check_instance,
    check_int,
    check_module,
    check_optional,
    check_path,
    check_positive,
    describe,
)

LossOutput = torch.Tensor | tuple[torch.Tensor, dict[str, float]]
POSTFIX_WINDOW = 20  # the progress bar shows the mean of the last 20 logged losses
# MINIGEN_PROGRESS=text: no live bar, one final text line (for stored notebooks)
PROGRESS_ENV_VAR = "MINIGEN_PROGRESS"
PROGRESS_MODES = ("live", "text")
# what every save_checkpoint file holds
CHECKPOINT_KEYS = ("model", "step", "rng", "extra")
# check_training_arguments' default batch_size: the trainer takes none
NO_BATCH_SIZE = object()
ADVICE = (
    "Try a lower learning rate, fp32 (choose_precision(dtype='fp32')) or gradient "
    "clipping, and check the data for NaN or inf"
)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; raised before the optimizer step could spoil
    the weights."""

    def __init__(self, step: int, loss: float):
        self.step, self.loss = step, loss
        super().__init__(
            f"the loss is {loss} at step {step}; the optimizer step was not taken. "
            + ADVICE
        )


class NonFiniteGradientError(NonFiniteLossError):
    """A gradient became NaN or infinite while the loss was finite; raised before
    the optimizer step. A NonFiniteLossError, so one `except` catches both."""

    def __init__(self, step: int, loss: float, parameters: list[str]):
        self.step, self.loss, self.parameters = step, loss, parameters
        shown = ", ".join(parameters[:3]) + (", ..." if len(parameters) > 3 else "")
        RuntimeError.__init__(
            self,
            f"the gradient is NaN or infinite at step {step} (in {len(parameters)} "
            f"parameters: {shown}) while the loss is {loss:.4g}; the optimizer "
            f"step was not taken. {ADVICE}",
        )


class EMA:
    """An exponential moving average of a model's weights, kept in a copy
    (`.module`) to evaluate with.

    Create it after moving the model to its device. Buffers (e.g. batch-norm
    statistics) are copied, not averaged.
    warmup: use the decay min(decay, (1 + n) / (10 + n)) at the n-th update (as
        TensorFlow's ExponentialMovingAverage with num_updates does), so that early
        averages are not dominated by the random initial weights.
    """

    def __init__(
        self, model: nn.Module, decay: float = 0.999, warmup: bool = False
    ):
        check_module("model", model)
        # 0.999 averages over about 1000 steps
        self.decay = check_float("decay", decay, 0.0, 1.0, open_max=True)
        self.warmup = check_bool("warmup", warmup)
        self.updates = 0
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    @property
    def ema_model(self) -> nn.Module:
        """The averaged model (the same object as `.module`)."""
        return self.module

    def current_decay(self) -> float:
        """The decay the next update uses."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move each averaged weight a step (1 - decay) towards the model's current
        weight."""
        averaged = dict(self.module.named_parameters())
        current = dict(check_module("model", model).named_parameters())
        if averaged.keys() != current.keys():
            raise ValueError(
                "the model's parameters differ from those the EMA was created from"
            )
        decay = self.current_decay()
        for name, theta in current.items():
            # theta_ema <- decay * theta_ema + (1 - decay) * theta
            averaged[name].lerp_(theta, 1.0 - decay)
        for ema_buffer, buffer in zip(self.module.buffers(), model.buffers()):
            ema_buffer.copy_(buffer)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {
            "decay": self.decay,
            "warmup": self.warmup,
            "updates": self.updates,
            "module": self.module.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned: the decay, the warm-up and its count,
        and the averaged weights. A state of an earlier version of minigen, with
        only decay and module, is read as an EMA without warm-up."""
        check_instance("state", state, dict, "a dict from EMA.state_dict()")
        if set(state) not in (_EMA_ENTRIES, _EMA_ENTRIES_BEFORE_WARMUP):
            raise ValueError(
                "state must be a dict from EMA.state_dict() with the entries "
                f"{', '.join(sorted(_EMA_ENTRIES))}, got the entries "
                f"{sorted(map(str, state))}"
            )
        decay = check_float("decay", state["decay"], 0.0, 1.0, open_max=True)
        warmup = check_bool("warmup", state.get("warmup", False))
        updates = check_int("updates", state.get("updates", 0), minimum=0)
        try:
            self.module.load_state_dict(state["module"])
        except (RuntimeError, TypeError, AttributeError) as error:
            raise ValueError(
                "the averaged weights in state do not fit this EMA's model: "
                f"{error}"
            ) from error
        self.decay, self.warmup, self.updates = decay, warmup, updates


_EMA_ENTRIES = {"decay", "warmup", "updates", "module"}
_EMA_ENTRIES_BEFORE_WARMUP = {"decay", "module"}


def warmup_cosine(
    optimizer: torch.optim.Optimizer, steps: int, warmup_steps: int = 0
) -> torch.optim.lr_scheduler.LambdaLR:
    """A learning-rate schedule for `steps` steps: a linear warm-up from lr /
    warmup_steps to lr over the first `warmup_steps` steps, then a cosine decay to
    0 over the rest (SGDR without restarts, Loshchilov & Hutter 2017). With
    warmup_steps=0 it is torch's CosineAnnealingLR(optimizer, T_max=steps)."""
    check_instance(
        "optimizer", optimizer, torch.optim.Optimizer, "a torch optimizer"
    )
    steps = check_int("steps", steps)
    warmup_steps = check_int("warmup_steps", warmup_steps, minimum=0)
    if warmup_steps >= steps:
        raise ValueError(
            f"warmup_steps must be fewer than steps={steps}, got {warmup_steps}"
        )

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / (steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@dataclass
class History:
    """What training logged: the loss (and named metrics) at the logged steps, and
    the time spent."""

    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0  # wall time of training, summed over resumed runs
    # steps trained so far, also the index of the next step
    completed_steps: int = 0

    def record(self, step: int, loss: float, metrics: dict[str, float]) -> None:
        """Append one logged step; every step must report the same metric names."""
        check_int("step", step, 0, None)
        check_float("loss", loss)  # train() stops at a non-finite loss before this
        check_instance("metrics", metrics, dict, "a dict of metric name -> value")
        if self.steps and set(metrics) != set(self.metrics):
            raise ValueError(
                f"loss_fn returned metrics {sorted(metrics)} at step {step} but "
                f"{sorted(self.metrics)} before; return the same names every step"
            )
        self.steps.append(step)
        self.losses.append(loss)
        for name, value in metrics.items():
            self.metrics.setdefault(name, []).append(float(value))

    def smoothed(self, window: int) -> list[float]:
        """Each loss averaged with the window - 1 logged before it (fewer at the
        start)."""
        window = check_int("window", window)
        # sums[i] = losses[0] + ... + losses[i-1]
        sums = np.cumsum([0.0, *self.losses])
        end = np.arange(1, len(self.losses) + 1)
        start = np.maximum(end - window, 0)
        return ((sums[end] - sums[start]) / (end - start)).tolist()


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    step: int = 0,
    history: History | None = None,
    ema: EMA | None = None,
    scaler: torch.amp.GradScaler | None = None,
    extra: dict[str, Any] | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    generators: Sequence[torch.Generator] = (),
) -> None:
    """Save training state to `path` atomically (a crash mid-save never leaves a
    broken file).

    extra: a dict of anything else to keep, made of tensors and plain Python values.
    Torch's random state (CPU and CUDA) is saved too, and that of each of
    `generators` (private generators a loss draws from, e.g. for label dropout), so
    a resumed run draws the same numbers.
    """
    path = check_path("path", path)
    check_module("model", model)
    _check_training_state(optimizer, ema, scaler, scheduler)
    check_optional(check_instance, "history", history, History)
    check_optional(check_instance, "extra", extra, dict)
    generators = _check_generators(generators)
    state: dict[str, Any] = {
        "model": model.state_dict(),
        "step": check_int("step", step, 0, None),
        "rng": _rng_state(generators),
        "extra": extra,
    }
    optional = {
        "optimizer": optimizer,
        "ema": ema,
        "scaler": scaler,
        "scheduler": scheduler,
    }
    for name, part in optional.items():
        if part is not None:
            state[name] = part.state_dict()
    if history is not None:
        state["history"] = asdict(history)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(state, partial)
    os.replace(partial, path)  # atomic on POSIX and Windows


def load_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    ema: EMA | None = None,
    scaler: torch.amp.GradScaler | None = None,
    map_location: str | torch.device = "cpu",
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> dict[str, Any]:
    """Load into `model` (and the optimizer, EMA and scaler given) what
    `save_checkpoint` stored.

    Returns {"step", "history" (History or None), "extra", "rng"}; the random state
    is returned, not restored, so loading a model to evaluate it leaves the caller's
    random stream alone. A file that is not a checkpoint (empty, truncated,
    something else) raises ValueError naming it.
    map_location: the device ("cpu", "cuda", ...) to load the tensors onto.
    """
    path = check_path("path", path)
    check_module("model", model)
    _check_training_state(optimizer, ema, scaler, scheduler)
    state = _read_checkpoint(path, as_device(map_location))
    parts = {
        "model": model,
        "optimizer": optimizer,
        "ema": ema,
        "scaler": scaler,
        "scheduler": scheduler,
    }
    for name, part in parts.items():
        if part is None:
            continue
        if name not in state:
            raise ValueError(
                f"{path} holds no {name} state; it was saved without one "
                f"(pass {name}=None)"
            )
        try:
            part.load_state_dict(state[name])
        except (RuntimeError, ValueError, KeyError) as error:
            raise ValueError(
                f"the {name} state in {path} does not fit the {name} given "
                f"({type(part).__name__}): {error}"
            ) from error
    history = History(**state["history"]) if "history" in state else None
    return {
        "step": state["step"],
        "history": history,
        "extra": state["extra"],
        "rng": state["rng"],
    }


def _check_training_state(
    optimizer: Any, ema: Any, scaler: Any, scheduler: Any
) -> None:
    """The optional parts of a checkpoint: each None or an object of its kind."""
    scheduler_type = torch.optim.lr_scheduler.LRScheduler
    check_optional(
        check_instance, "optimizer", optimizer, torch.optim.Optimizer,
        "a torch optimizer",
    )  # fmt: skip
    check_optional(check_instance, "ema", ema, EMA)
    check_optional(check_instance, "scaler", scaler, torch.amp.GradScaler)
    check_optional(check_instance, "scheduler", scheduler, scheduler_type)


def _read_checkpoint(path: Path, map_location: torch.device) -> dict[str, Any]:
    """The dict a save_checkpoint file holds; ValueError naming the file if it holds
    none."""
    # OSErrors with the path as their filename: "[Errno 2] ...: 'PATH'"
    if path.is_dir():
        message = "this is a folder, not a checkpoint file"
        raise IsADirectoryError(errno.EISDIR, message, str(path))
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "no checkpoint file here", str(path))
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except PermissionError:
        raise
    except Exception as error:  # empty, truncated, random bytes, another format
        first_sentence = str(error).split(". ")[0]
        reason = f"{type(error).__name__}: {first_sentence}".rstrip(": ")
        raise ValueError(
            f"{path} is not a valid checkpoint ({path.stat().st_size:,} bytes; "
            f"torch.load failed: {reason}); delete or move it to start afresh"
        ) from error
    if not isinstance(state, dict) or not set(CHECKPOINT_KEYS) <= state.keys():
        held = sorted(state) if isinstance(state, dict) else describe(state)
        raise ValueError(
            f"{path} is not a valid checkpoint of save_checkpoint: it holds "
            f"{held}, not the entries {', '.join(CHECKPOINT_KEYS)}"
        )
    return state


def _check_generators(
    generators: Sequence[torch.Generator],
) -> list[torch.Generator]:
    if not isinstance(generators, (list, tuple)):
        raise TypeError(
            f"generators must be a list or tuple of torch.Generator, got "
            f"{describe(generators)}"
        )
    for generator in generators:
        check_instance("every entry of generators", generator, torch.Generator)
    return list(generators)


def _rng_state(generators: Sequence[torch.Generator] = ()) -> dict[str, Any]:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return {
        "cpu": torch.get_rng_state(),
        "cuda": cuda,
        "generators": [generator.get_state() for generator in generators],
    }


def _set_rng_state(
    state: dict[str, Any], generators: Sequence[torch.Generator] = ()
) -> None:
    # .cpu(): map_location may have moved the states to the GPU
    torch.set_rng_state(state["cpu"].cpu())
    # a GPU run resumed on the CPU keeps only the CPU state
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([saved.cpu() for saved in state["cuda"]])
    saved = state.get("generators", [])
    if len(saved) != len(generators):
        raise ValueError(
            f"the checkpoint holds the state of {len(saved)} private generators, "
            f"but training passed {len(generators)}; resume with the same "
            "generators"
        )
    for generator, generator_state in zip(generators, saved):
        generator.set_state(generator_state.cpu())


def check_training_arguments(
    *,
    steps: Any,
    lr: Any,
    seed: Any,
    precision: Any,
    progress: Any,
    checkpoint: Any,
    checkpoint_every: Any,
    batch_size: Any = NO_BATCH_SIZE,
) -> None:
    """The checks every `train_*` helper runs first, before it builds (or seeds)
    anything.

    batch_size: left out by a trainer that takes no batch size.
    """
    check_int("steps", steps)
    check_positive("lr", lr)
    check_int("seed", seed, 0, 2**32 - 1)
    check_optional(check_instance, "precision", precision, Precision)
    check_bool("progress", progress)
    _check_checkpointing(checkpoint, checkpoint_every)
    if batch_size is not NO_BATCH_SIZE:
        check_int("batch_size", batch_size)


def _check_checkpointing(checkpoint: Any, checkpoint_every: Any) -> None:
    check_optional(check_path, "checkpoint", checkpoint)
    check_optional(check_int, "checkpoint_every", checkpoint_every)
    if checkpoint_every is not None and checkpoint is None:
        raise ValueError(
            "checkpoint_every needs a checkpoint file to write: pass "
            "checkpoint=PATH"
        )


def _check_train_arguments(
    model: Any,
    loss_fn: Any,
    steps: Any,
    optimizer: Any,
    scheduler: Any,
    precision: Any,
    ema: Any,
    grad_clip: Any,
    log_every: Any,
    progress: Any,
    desc: Any,
    history: Any,
) -> None:
    check_module("model", model)
    if not callable(loss_fn):
        raise TypeError(
            f"loss_fn must be a function of the step, got {describe(loss_fn)}"
        )
    check_int("steps", steps)
    check_instance(
        "optimizer", optimizer, torch.optim.Optimizer, "a torch optimizer"
    )
    _check_training_state(optimizer, ema, None, scheduler)
    check_optional(check_instance, "precision", precision, Precision)
    check_optional(check_positive, "grad_clip", grad_clip)
    check_int("log_every", log_every)
    check_bool("progress", progress)
    check_instance("desc", desc, str)
    check_optional(check_instance, "history", history, History)


def _split_loss(
    output: LossOutput, step: int
) -> tuple[torch.Tensor, dict[str, float]]:
    """Check what loss_fn returned: a scalar tensor that requires grad, optionally
    with a metrics dict."""
    is_pair = isinstance(output, tuple) and len(output) == 2
    loss, metrics = output if is_pair else (output, {})
    if not isinstance(loss, torch.Tensor) or not isinstance(metrics, dict):
        raise TypeError(
            "loss_fn must return a scalar tensor or (tensor, dict of metrics); at "
            f"step {step} it returned {type(output).__name__}"
        )
    if loss.ndim != 0:
        raise ValueError(
            f"loss_fn must return a scalar loss, got shape {tuple(loss.shape)}; "
            "reduce it (.mean())"
        )
    if not loss.requires_grad:
        raise ValueError(
            "the loss does not require grad: was it computed under torch.no_grad() "
            "or detached?"
        )
    return loss, metrics


def _optimizer_step(
    step: int,
    loss: torch.Tensor,
    named_parameters: list[tuple[str, nn.Parameter]],
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    grad_clip: float | None,
) -> float:
    """Backward, check, clip and update; returns the loss as a float.

    With fp16 the loss is scaled, and the GradScaler skips a step whose gradients
    overflowed.
    """
    parameters = [parameter for _, parameter in named_parameters]
    optimizer.zero_grad(set_to_none=True)
    # fp16: loss * scale, so small gradients do not underflow
    scaler.scale(loss).backward()
    if grad_clip is not None:
        scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
    grad_norm = None
    if grad_clip is not None or not scaler.is_enabled():
        gradients = [p.grad for p in parameters if p.grad is not None]
        grad_norm = nn.utils.get_total_norm(gradients)  # ||g||, over all parameters
    loss_value = _check_finite(step, loss, grad_norm, named_parameters, scaler)
    if grad_clip is not None:
        # g <- g * min(1, grad_clip / ||g||)
        nn.utils.clip_grads_with_norm_(parameters, grad_clip, grad_norm)
    scaler.step(optimizer)  # g / scale, then the optimizer's own step
    scaler.update()
    return loss_value


def _check_finite(
    step: int,
    loss: torch.Tensor,
    grad_norm: torch.Tensor | None,
    named_parameters: list[tuple[str, nn.Parameter]],
    scaler: torch.amp.GradScaler,
) -> float:
    """The loss as a float; raises if the loss, or (without fp16 loss scaling) a
    gradient, is NaN or infinite."""
    # the norm is ready last, after the backward pass: one wait for the device
    norm = grad_norm.item() if grad_norm is not None else None
    loss_value = loss.item()
    if not math.isfinite(loss_value):
        raise NonFiniteLossError(step, loss_value)
    # fp16: an overflowed gradient is the GradScaler's to handle; it skips the step
    if norm is not None and not math.isfinite(norm) and not scaler.is_enabled():
        bad = [
            name
            for name, p in named_parameters
            if p.grad is not None and not torch.isfinite(p.grad).all()
        ]
        raise NonFiniteGradientError(step, loss_value, bad)
    return loss_value


def train(
    model: nn.Module,
    loss_fn: Callable[[int], LossOutput],
    *,
    steps: int,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    precision: Precision | None = None,
    ema: EMA | None = None,
    grad_clip: float | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int | None = None,
    log_every: int = 1,
    progress: bool = True,
    desc: str = "train",
    history: History | None = None,
    generators: Sequence[torch.Generator] = (),
    on_step: Callable[[int], None] | None = None,
) -> History:
    """Train `model` until `steps` steps in total are done, calling `loss_fn(step)`
    for step 0, 1, ...

    scheduler: a learning-rate schedule, stepped after every optimizer step (and
        checkpointed).
    precision: default `choose_precision` for the model's device.
    ema: updated after every optimizer step.
    grad_clip: clip the global gradient norm to this value.
    checkpoint: a file; if it exists, training resumes from it (model, optimizer,
        scaler, EMA, history, random state). It is written every `checkpoint_every`
        steps and at the end.
    log_every: record the loss in the History every that many steps.
    history: a History to continue (training goes on from its `completed_steps`).
    generators: private random generators that loss_fn draws from; checkpointed and
        restored.
    on_step: called as on_step(steps done) after every step, e.g. to judge the EMA
        model every few hundred steps; its time is not counted in History.seconds.
    progress: show a progress bar: a live one (a widget in Jupyter), or with the
        environment variable MINIGEN_PROGRESS=text (set by `make execute`) only its
        final line, printed as text, so that a stored notebook shows what ran.
    The model is in train mode during training and is left in the mode it was found
    in. Steps whose fp16 gradients overflow are skipped by the GradScaler, as it is
    meant to. Raises NonFiniteLossError (before the optimizer step) when the loss is
    NaN or infinite, and its subclass NonFiniteGradientError when a gradient is
    (except under fp16).
    """
    _check_train_arguments(
        model, loss_fn, steps, optimizer, scheduler, precision, ema, grad_clip,
        log_every, progress, desc, history,
    )  # fmt: skip
    _check_checkpointing(checkpoint, checkpoint_every)
    generators = _check_generators(generators)
    if on_step is not None and not callable(on_step):
        raise TypeError(
            f"on_step must be a function of the steps done, got {describe(on_step)}"
        )
    mode = (
        progress_mode()
    )  # an invalid MINIGEN_PROGRESS fails even with progress off
    named_parameters = list(model.named_parameters())
    if not named_parameters:
        raise ValueError("the model has no parameters to train")
    device = named_parameters[0][1].device
    precision = precision or choose_precision(device)
    if precision.device.type != device.type:
        raise ValueError(
            f"the model is on {device} but the precision is for {precision.device}"
        )
    scaler = precision.grad_scaler()
    # a disabled scaler has no state to save
    scaler_to_save = scaler if scaler.is_enabled() else None

    if checkpoint is not None and Path(checkpoint).exists():
        if history is not None:
            raise ValueError(
                f"{checkpoint} exists and holds its own history: pass history=None "
                "to resume it, or another checkpoint path to start afresh"
            )
        state = load_checkpoint(
            checkpoint, model, optimizer, ema, scaler_to_save, device, scheduler
        )
        history = state["history"]
        _set_rng_state(state["rng"], generators)
    history = history if history is not None else History()
    start = history.completed_steps
    if start > steps:
        raise ValueError(
            f"training is already at step {start}, past steps={steps}; ask for "
            f"steps >= {start}"
        )

    def save() -> None:
        save_checkpoint(
            checkpoint, model, optimizer, history.completed_steps, history, ema,
            scaler_to_save, scheduler=scheduler, generators=generators,
        )  # fmt: skip

    seconds_before, started = history.seconds, time.perf_counter()
    steps_left = range(start, steps)
    text_progress = progress and mode == "text"
    bar = _progress_bar(steps_left, desc, start, steps, progress, text_progress)
    with train_mode(model), bar:
        for step in bar:
            with precision.autocast():
                loss, metrics = _split_loss(loss_fn(step), step)
            loss_value = _optimizer_step(
                step, loss, named_parameters, optimizer, scaler, grad_clip
            )
            if scheduler is not None:
                scheduler.step()
            if ema is not None:
                ema.update(model)
            history.completed_steps = step + 1
            history.seconds = seconds_before + time.perf_counter() - started
            if step % log_every == 0:
                history.record(step, loss_value, metrics)
                _show_progress(bar, history, metrics)
            if checkpoint_every is not None and (step + 1) % checkpoint_every == 0:
                save()
            if on_step is not None:
                paused = time.perf_counter()
                on_step(step + 1)
                started += time.perf_counter() - paused  # not training time
    if text_progress:
        print(_final_line(bar))
    if checkpoint is not None:
        save()
    return history


def progress_mode() -> str:
    """How `train` shows progress: "live" (default) or "text", from the environment
    variable MINIGEN_PROGRESS."""
    value = os.environ.get(PROGRESS_ENV_VAR, "").strip().lower() or "live"
    if value not in PROGRESS_MODES:
        raise ValueError(
            f"{PROGRESS_ENV_VAR}={os.environ[PROGRESS_ENV_VAR]!r} is not a "
            f"progress mode; use one of {', '.join(PROGRESS_MODES)} (or leave it "
            "unset)"
        )
    return value


class _Discard:
    """A file that drops what is written: the text bar's frames."""

    def write(self, text: str) -> None:
        pass

    def flush(self) -> None:
        pass


def _progress_bar(
    steps_left: range, desc: str, start: int, steps: int, progress: bool, text: bool
) -> tqdm:
    if text:  # frames dropped, the final line printed after the loop
        return tqdm_text.tqdm(
            steps_left,
            desc,
            initial=start,
            total=steps,
            file=_Discard(),
            ascii=True,
        )
    return tqdm(steps_left, desc, initial=start, total=steps, disable=not progress)


def _final_line(bar: tqdm) -> str:
    """The text bar's last frame fitted to the book's column: steps, time and rate,
    then the recent loss and metrics on lines of their own."""
    meter = dict(bar.format_dict, postfix=None, ncols=BOOK_COLUMN)
    line = bar.format_meter(**meter)
    if not bar.postfix:
        return line
    metrics = bar.postfix.split(", ")
    return f"{line}\n  {wrap_parts(metrics, ', ', indent='  ')}"


def _show_progress(bar: tqdm, history: History, metrics: dict[str, float]) -> None:
    recent = history.losses[-POSTFIX_WINDOW:]
    postfix = {"loss": f"{sum(recent) / len(recent):.4g}"}
    postfix.update({name: f"{float(value):.4g}" for name, value in metrics.items()})
    bar.set_postfix(postfix, refresh=False)
