"""Measured results that the chapters cite: what a `benchmarks/` script printed with
`--json FILE`, kept as package data so that a notebook reads the same figures on any
machine, Colab included. Each file records the command, the machine and the recipe;
`benchmarks/results/README.md` tells their story.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import resources
from pathlib import Path

import torch

from minigen.core.runtime import cpu_name, cpu_supports_bf16
from minigen.core.validators import check_choice, check_instance


def names() -> tuple[str, ...]:
    """The stored results, by name (a file's name without ".json")."""
    files = resources.files(__name__).iterdir()
    return tuple(sorted(f.name[:-5] for f in files if f.name.endswith(".json")))


def load(name: str) -> dict:
    """The stored result `name` (see `names()`), as the script wrote it."""
    check_choice("name", name, names())
    return json.loads(
        resources.files(__name__).joinpath(f"{name}.json").read_text()
    )


def run_record(options: argparse.Namespace) -> dict:
    """How a benchmark ran, for the file its --json writes: the command (the
    script as benchmarks/NAME, then its arguments), the CPU, whether it has bf16
    instructions, torch's version and threads, and the recipe: the parsed options,
    paths as text."""
    check_instance("options", options, argparse.Namespace)
    command = " ".join([f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]])
    recipe = {
        name: str(value) if isinstance(value, Path) else value
        for name, value in vars(options).items()
    }
    return {
        "command": command,
        "cpu": cpu_name(),
        "bf16 instructions": cpu_supports_bf16(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "recipe": recipe,
    }
