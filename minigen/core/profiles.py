"""Profiles: one notebook, three compute budgets.

`MINIGEN_PROFILE` selects how much work a notebook does:

- ``smoke``: seconds per notebook, for CI (nbval) — results are meaningless, only
  the code runs;
- ``cpu``: minutes on a 2-core laptop;
- ``gpu``: minutes on a Colab T4, full quality.

Unset, it is ``gpu`` when CUDA is available and ``cpu`` otherwise. Notebooks write
all three budgets side by side, ``steps = pick(smoke=20, cpu=2_000, gpu=20_000)``,
so the reader sees them.
"""

from __future__ import annotations

import os
from typing import TypeVar

import torch

PROFILES = ("smoke", "cpu", "gpu")
ENV_VAR = "MINIGEN_PROFILE"

T = TypeVar("T")


def current_profile() -> str:
    """The active profile: `MINIGEN_PROFILE` (trimmed, any case), else "gpu" with
    CUDA, else "cpu"."""
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if not value:
        return "gpu" if torch.cuda.is_available() else "cpu"
    if value not in PROFILES:
        raise ValueError(
            f"{ENV_VAR}={os.environ[ENV_VAR]!r} is not a profile; "
            f"use one of {', '.join(PROFILES)} (or leave it unset)"
        )
    return value


def pick(*, smoke: T, cpu: T, gpu: T) -> T:
    """The value for the active profile, e.g.
    ``pick(smoke=20, cpu=2_000, gpu=20_000)``."""
    return {"smoke": smoke, "cpu": cpu, "gpu": gpu}[current_profile()]
