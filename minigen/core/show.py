"""Show the source of minigen code in a notebook: one source of truth.

Notebooks never copy package code; they call `show(minigen.conv2d)`, which displays
the code that actually runs (read with `inspect.getsource`). In Jupyter and in the
book (myst-nb renders text/markdown outputs) it appears as a highlighted Python
block; as plain text it is the bare source.
"""

from __future__ import annotations

import inspect
import re
import textwrap
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Source:
    """Source code that notebooks render as a fenced Python block."""

    code: str

    def _repr_markdown_(self) -> str:
        runs = re.findall(r"`+", self.code)
        longest_run = max((len(run) for run in runs), default=0)
        # a fence longer than any backtick run inside the code
        fence = "`" * max(3, longest_run + 1)
        return f"{fence}python\n{self.code}{fence}\n"

    def __str__(self) -> str:
        return self.code

    def __repr__(self) -> str:
        return self.code


def show(obj: Any) -> Source:
    """The source of a module, class, function or method, dedented (methods lose
    their indentation)."""
    try:
        code = inspect.getsource(obj)
    except TypeError:
        if inspect.isroutine(obj) or inspect.isclass(obj) or inspect.ismodule(obj):
            raise TypeError(
                f"{obj!r} is built in (compiled, e.g. from C), so it has no Python "
                "source"
            ) from None
        raise TypeError(
            "show() takes a module, class, function or method, got an instance of "
            f"{type(obj).__name__}; to see its class, call show(type(obj))"
        ) from None
    except OSError as error:
        raise OSError(f"no source file found for {obj!r}: {error}") from None
    return Source(textwrap.dedent(code))
