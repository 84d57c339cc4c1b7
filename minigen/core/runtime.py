"""Where and how the code runs: device, mixed precision, seeds, a provenance line.

Mixed precision (Micikevicius et al. 2018, "Mixed Precision Training") keeps the
weights in fp32 and runs matrix products in a 16-bit type under `torch.autocast`.
bf16 has fp32's exponent range, so it needs no loss scaling; fp16 has a narrow
range, so small gradients underflow unless the loss is scaled up first
(`torch.amp.GradScaler`). Our choice per device:

- a GPU with bf16 tensor cores (Ampere or newer): bf16;
- an older GPU (a Colab T4): fp16 with a GradScaler;
- a CPU with bf16 instructions (AMX or AVX512-BF16): bf16 — on the book's 2-core
  machines a training step ran twice as fast as in fp32;
- anything else: fp32.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import random
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn

import minigen
from minigen.core.profiles import current_profile
from minigen.core.text import wrap_parts
from minigen.core.validators import (
    check_choice,
    check_instance,
    check_int,
    check_module,
)

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
# Set to "fp32" (or "bf16", "fp16") to override every default choice of a run, e.g.
# to re-execute in fp32 a chapter stored in fp32 on a CPU that would choose bf16.
DTYPE_ENV_VAR = "MINIGEN_DTYPE"


def default_device() -> torch.device:
    """CUDA if available, else Apple's MPS if available, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@dataclass(frozen=True)
class Precision:
    """A device, and the dtype autocast computes matrix products in (fp32: none)."""

    device: torch.device
    dtype: torch.dtype

    def __post_init__(self) -> None:
        check_instance("device", self.device, torch.device, "a torch.device")
        check_instance("dtype", self.dtype, torch.dtype, "a torch.dtype")
        if self.dtype not in DTYPES.values():
            raise ValueError(
                "dtype must be torch.bfloat16, torch.float16 or torch.float32, got "
                f"{self.dtype}"
            )

    @property
    def name(self) -> str:
        """The short name: "bf16", "fp16" or "fp32"."""
        return next(name for name, dtype in DTYPES.items() if dtype is self.dtype)

    def autocast(self) -> contextlib.AbstractContextManager:
        """The context to run forward passes (and the loss) in."""
        if self.dtype is torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A GradScaler, enabled only for fp16 (bf16 and fp32 do not underflow)."""
        return torch.amp.GradScaler(
            self.device.type, enabled=self.dtype is torch.float16
        )

    def __str__(self) -> str:
        return f"{self.name} on {self.device}"


def cpu_supports_bf16() -> bool:
    """Whether this CPU has bf16 arithmetic in hardware (Intel AMX tiles or
    AVX512-BF16).

    Without it, CPU autocast to bf16 still works but emulates the type and runs
    slower than fp32.
    """
    # private helpers, hence hasattr
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(
        getattr(torch.cpu, check)() for check in checks if hasattr(torch.cpu, check)
    )


def cuda_supports_bf16(device: torch.device | str) -> bool:
    """Whether `device` is a GPU that computes bf16 natively (compute capability
    8.0, Ampere or newer).

    False for any other device: for the CPU, ask `cpu_supports_bf16()`.
    """
    device = as_device(device)
    if device.type != "cuda":
        return False
    return torch.cuda.get_device_capability(device) >= (8, 0)


def choose_precision(
    device: torch.device | str | None = None, dtype: str | None = None
) -> Precision:
    """The fastest safe precision for `device` (default: `default_device()`), or
    `dtype` if given.

    The rule, from measurements of chapter 5's U-Net training (images/s,
    `benchmarks/unet_training_speed.py --dtypes fp32 bf16`, 2 cores):
    - CPU with bf16 instructions (`cpu_supports_bf16`): bf16 autocast. Intel AMX:
      about 2x fp32; AMD EPYC with AVX512-BF16 and no AMX: 317 against 271
      images/s (1.19x).
    - CPU without them: fp32. bf16 autocast is emulated there: 12 against 162
      images/s on an AVX2-only EPYC (13x slower).
    - CUDA: bf16 from compute capability 8.0 (Ampere), else fp16 with a GradScaler.
    - Anything else (MPS, ...): fp32.
    dtype: "bf16", "fp16" or "fp32" to override the choice; if None, the
    environment variable MINIGEN_DTYPE does, when set.
    """
    device = as_device(device) if device is not None else default_device()
    if dtype is None and os.environ.get(DTYPE_ENV_VAR):
        dtype = os.environ[DTYPE_ENV_VAR].strip().lower()
        check_choice(DTYPE_ENV_VAR, dtype, tuple(DTYPES))
    if dtype is None:
        return Precision(device, _fastest_dtype(device))
    check_choice("dtype", dtype, tuple(DTYPES))
    if dtype == "fp16" and device.type == "cpu":
        raise ValueError(
            "fp16 on the CPU brings no speed and needs loss scaling; use 'bf16' "
            "(no scaling needed, fast with AMX) or 'fp32'"
        )
    if dtype == "bf16" and device.type == "cuda" and not cuda_supports_bf16(device):
        raise ValueError(
            f"{torch.cuda.get_device_name(device)} has no native bf16; use 'fp16' "
            "(with the GradScaler that Precision.grad_scaler gives) or 'fp32'"
        )
    return Precision(device, DTYPES[dtype])


def as_device(device: torch.device | str) -> torch.device:
    """`device` as a torch.device ("cpu", "cuda", "cuda:1", "mps", ...), checked to
    exist here."""
    check_instance(
        "device", device, (str, torch.device), "a device name or torch.device"
    )
    try:
        device = torch.device(device)
    except RuntimeError as error:
        raise ValueError(
            f"device must name a torch device such as 'cpu' or 'cuda', got "
            f"{device!r}"
        ) from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "device 'cuda' was asked for, but no CUDA GPU is available here; "
            "use 'cpu' or choose_precision() for the default device"
        )
    return device


def _fastest_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda":
        return torch.bfloat16 if cuda_supports_bf16(device) else torch.float16
    if device.type == "cpu" and cpu_supports_bf16():
        return torch.bfloat16
    return torch.float32  # the CPU without bf16 instructions, MPS and other devices


@contextlib.contextmanager
def eval_mode(*models: nn.Module) -> Iterator[None]:
    """Put `models` in eval mode for the block, then restore the mode each of their
    modules had (submodules included), even on error."""
    with _mode(False, models):
        yield


@contextlib.contextmanager
def train_mode(*models: nn.Module) -> Iterator[None]:
    """Put `models` in train mode for the block, then restore the mode each of their
    modules had (submodules included), even on error."""
    with _mode(True, models):
        yield


@contextlib.contextmanager
def _mode(training: bool, models: tuple[nn.Module, ...]) -> Iterator[None]:
    for index, model in enumerate(models):
        check_module(f"models[{index}]", model)
    modes = [
        (module, module.training) for model in models for module in model.modules()
    ]
    try:
        for model in models:
            model.train(training)
        yield
    finally:
        for module, mode in modes:
            module.training = mode


def seed_everything(seed: int) -> None:
    """Seed Python's `random`, NumPy and torch (which seeds every CUDA device)."""
    seed = check_int("seed", seed, 0, 2**32 - 1)  # NumPy's range
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def device_description(device: torch.device) -> str:
    """E.g. "cuda (Tesla T4, 15 GiB)" or "cpu (Intel(R) Xeon(R) Processor, 2
    threads)"."""
    check_instance("device", device, torch.device, "a torch.device")
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"cuda ({props.name}, {props.total_memory / 2**30:.0f} GiB)"
    if device.type == "cpu":
        return f"cpu ({cpu_name()}, {torch.get_num_threads()} threads)"
    return str(device)


def cpu_name() -> str:
    """The CPU's model name, e.g. "AMD EPYC" (Linux: /proc/cpuinfo, where
    platform.processor() is often empty; elsewhere the platform's)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _format_duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def provenance(precision: Precision | None = None) -> str:
    """What produced a notebook's outputs, in lines that fit the book's column; the
    last cell of every chapter prints it.

    precision: the one the notebook trained with (default: `choose_precision()`).
    The wall time counts from the import of minigen.
    """
    if precision is not None:
        check_instance("precision", precision, Precision)
    precision = precision or choose_precision()
    try:
        version = importlib.metadata.version("minigen")
    except importlib.metadata.PackageNotFoundError:
        version = "(version unknown: not installed)"
    parts = [
        f"profile {current_profile()}",
        f"device {device_description(precision.device)}",
        f"precision {precision.name}",
        f"torch {torch.__version__}",
        f"minigen {version}",
        f"Python {platform.python_version()}",
        f"wall time {_format_duration(time.perf_counter() - minigen.IMPORTED_AT)}",
        datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    ]
    return wrap_parts(parts)
