"""Text that fits the book's code column: wrapped lines, readable reprs, tables.

The rendered book shows about 84 characters of code or printed output at a 1280 px
window; longer lines are clipped behind a scroll bar. Everything minigen prints for
a notebook goes through these helpers, and a test fails on any stored line that
does not fit.
"""

from __future__ import annotations

import dataclasses
import textwrap
from collections.abc import Sequence
from typing import Any

from minigen.core.validators import check_int

BOOK_COLUMN = 84  # characters of code the book shows at 1280 px


def wrap_parts(
    parts: Sequence[str],
    sep: str = " · ",
    width: int = BOOK_COLUMN,
    indent: str = "",
) -> str:
    """Join `parts` with `sep`, starting a new line (after `indent`) wherever the
    next part (and the separator that may end its line) would run past `width`; a
    part is never split, so only a part longer than `width` makes a longer line."""
    width = check_int("width", width, minimum=1)
    if not parts:
        raise ValueError("wrap_parts needs at least one part")
    lines = [parts[0]]
    for part in parts[1:]:
        joined = lines[-1] + sep + part
        if len(joined + sep.rstrip()) <= width:
            lines[-1] = joined
        else:
            lines[-1] += sep.rstrip()
            lines.append(indent + part)
    return "\n".join(lines)


def dataclass_repr(obj: Any, width: int = BOOK_COLUMN) -> str:
    """`Name(field=value, ...)` as a dataclass writes it, on one line when it fits,
    otherwise one indented block of `field=value` items packed up to `width`."""
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        raise TypeError(f"dataclass_repr takes a dataclass instance, got {obj!r}")
    items = [
        f"{field.name}={getattr(obj, field.name)!r}"
        for field in dataclasses.fields(obj)
        if field.repr
    ]
    name = type(obj).__name__
    one_line = f"{name}({', '.join(items)})"
    if len(one_line) <= width:
        return one_line
    body = wrap_parts(items, sep=", ", width=max(1, width - 4))
    indented = textwrap.indent(body, "    ")
    return f"{name}(\n{indented},\n)"


class Table:
    """A table of results: the book renders it as a Markdown table (which wraps to
    the column); as text (print) it is aligned in columns.

    header: the column names; rows: sequences of the same length (floats are
    written with `float_format`, anything else with str); title: a line above.
    """

    def __init__(
        self,
        header: Sequence[str],
        rows: Sequence[Sequence[Any]],
        title: str = "",
        float_format: str = "{:.1f}",
    ) -> None:
        if not header:
            raise ValueError("a table needs at least one column")
        cells = [[self._cell(value, float_format) for value in row] for row in rows]
        for i, row in enumerate(cells):
            if len(row) != len(header):
                raise ValueError(
                    f"row {i} has {len(row)} cells but the header has "
                    f"{len(header)} columns"
                )
        self.header = [str(name) for name in header]
        self.rows = cells
        self.title = title

    @staticmethod
    def _cell(value: Any, float_format: str) -> str:
        if isinstance(value, float):
            return float_format.format(value)
        return str(value)

    def _repr_markdown_(self) -> str:
        def line(cells: Sequence[str]) -> str:
            return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

        rule = (
            "|"
            + "|".join(
                ":---" if i == 0 else "---:" for i in range(len(self.header))
            )
            + "|"
        )
        table = [line(self.header), rule] + [line(row) for row in self.rows]
        title = f"{self.title}\n\n" if self.title else ""
        return title + "\n".join(table) + "\n"

    def __str__(self) -> str:
        widths = [
            max(len(row[i]) for row in [self.header, *self.rows])
            for i in range(len(self.header))
        ]
        lines = [
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths))
            ).rstrip()
            for row in [self.header, *self.rows]
        ]
        return "\n".join(([self.title] if self.title else []) + lines)

    __repr__ = __str__


class ColumnRepr:
    """A dataclass mixin: print() and Jupyter show it wrapped to the book's column
    (`dataclass_repr`); repr() stays the dataclass's one line, which cache keys
    hash."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # IPython uses the first class in the MRO with _repr_pretty_ or __repr__,
        # and @dataclass gives the subclass its own __repr__: put ours beside it.
        cls._repr_pretty_ = ColumnRepr._repr_pretty_

    def __str__(self) -> str:
        return dataclass_repr(self)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(dataclass_repr(self))
