"""Measured results that the chapters cite: what a `benchmarks/` script printed with
`--json FILE`, kept as package data so that a notebook reads the same figures on any
machine, Colab included. Each file records the command, the machine and the recipe;
`benchmarks/results/README.md` tells their story.
"""

from __future__ import annotations

import json
from importlib import resources

from minigen.core.validators import check_choice


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
