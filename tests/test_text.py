"""minigen.core.text: wrapped lines, readable reprs and tables."""

import dataclasses
import random
from dataclasses import dataclass, field

import pytest

import minigen
from minigen import ShapesWorld
from minigen.core.text import (
    BOOK_COLUMN,
    ColumnRepr,
    Table,
    dataclass_repr,
    wrap_parts,
)

SEPS = [" · ", ", ", " | ", " "]


def _greedy(parts, sep, width, indent):
    """A brute-force greedy wrap: each line takes the longest run of parts whose
    text (with the separator's mark that may end it) fits, and at least one part."""
    mark = sep.rstrip()
    lines, start = [], 0
    while start < len(parts):
        prefix = indent if lines else ""
        end = start + 1
        for stop in range(len(parts), start, -1):
            if len(prefix + sep.join(parts[start:stop]) + mark) <= width:
                end = stop
                break
        lines.append(prefix + sep.join(parts[start:end]))
        start = end
    return [line + mark for line in lines[:-1]] + lines[-1:]


def _unwrap(text, sep, indent):
    """The parts on each line, undoing the wrap: strip indent and end mark."""
    mark = sep.rstrip()
    lines = text.split("\n")
    out = []
    for i, line in enumerate(lines):
        if i > 0:
            assert line.startswith(indent)
            line = line[len(indent) :]
        if i < len(lines) - 1 and mark:
            assert line.endswith(mark), (line, mark)
            line = line[: -len(mark)]
        out.append(line)
    return out


def _random_case(rng, longest=None):
    sep = rng.choice(SEPS)
    indent = rng.choice(["", "  ", "    "])
    width = rng.randint(len(indent) + len(sep) + 2, 40)
    room = width - len(indent) - len(sep.rstrip())
    top = room if longest is None else longest
    parts = [
        "".join(rng.choice("abcxyz=()'0") for _ in range(rng.randint(1, top)))
        for _ in range(rng.randint(1, 12))
    ]
    return parts, sep, width, indent


# --- wrap_parts -------------------------------------------------------------------


def test_book_column_is_84():
    assert BOOK_COLUMN == 84


def test_wrap_parts_fits_and_marks_line_ends():
    parts = [f"item{i}={i * 11}" for i in range(30)]
    text = wrap_parts(parts)
    lines = text.split("\n")
    assert len(lines) > 1
    assert all(len(line) <= 84 for line in lines)
    assert all(line.endswith(" ·") for line in lines[:-1])
    assert not lines[-1].endswith("·")
    assert text.replace(" ·\n", " · ") == " · ".join(parts)


def test_wrap_parts_exact_width_fills_the_line():
    # "aaaa, bbbb," is exactly 11 characters: it fits width 11, not width 10
    parts = ["aaaa", "bbbb", "cccc"]
    assert wrap_parts(parts, sep=", ", width=11) == "aaaa, bbbb,\ncccc"
    assert wrap_parts(parts, sep=", ", width=10) == "aaaa,\nbbbb,\ncccc"
    assert wrap_parts(parts, sep=", ", width=17) == "aaaa, bbbb, cccc"
    # the trailing mark counts: the last line keeps room for it
    assert wrap_parts(parts, sep=", ", width=16) == "aaaa, bbbb,\ncccc"
    assert wrap_parts(parts, sep=" · ", width=12) == "aaaa ·\nbbbb ·\ncccc"
    assert wrap_parts(parts, sep=" · ", width=13) == "aaaa · bbbb ·\ncccc"


def test_wrap_parts_indent_counts_toward_width():
    parts = ["aaaa", "bbbb", "cccc", "dddd"]
    text = wrap_parts(parts, sep=", ", width=11, indent="  ")
    assert text == "aaaa, bbbb,\n  cccc,\n  dddd"
    text = wrap_parts(parts, sep=", ", width=13, indent="  ")
    assert text == "aaaa, bbbb,\n  cccc, dddd"


def test_wrap_parts_one_line_when_it_fits():
    parts = ["a", "b", "c"]
    assert wrap_parts(parts) == "a · b · c"
    assert wrap_parts(["only"]) == "only"
    assert wrap_parts(["only"], width=1, indent="    ") == "only"


@pytest.mark.parametrize("seed", range(300))
def test_wrap_parts_matches_brute_force_greedy(seed):
    rng = random.Random(seed)
    parts, sep, width, indent = _random_case(rng)
    text = wrap_parts(parts, sep=sep, width=width, indent=indent)
    lines = text.split("\n")
    # every line fits, trailing separator mark included
    assert all(len(line) <= width for line in lines), (text, width)
    # rejoining gives the plain join back: nothing added, dropped or split
    unwrapped = _unwrap(text, sep, indent)
    assert sep.join(unwrapped) == sep.join(parts)
    assert [p for line in unwrapped for p in line.split(sep)] == parts
    # greedy: each line holds as many parts as fit
    assert lines == _greedy(parts, sep, width, indent)


@pytest.mark.parametrize("seed", range(100))
def test_wrap_parts_never_splits_a_long_part(seed):
    rng = random.Random(1000 + seed)
    parts, sep, width, indent = _random_case(rng, longest=60)
    text = wrap_parts(parts, sep=sep, width=width, indent=indent)
    lines = text.split("\n")
    unwrapped = _unwrap(text, sep, indent)
    assert sep.join(unwrapped) == sep.join(parts)
    per_line = [line.split(sep) for line in unwrapped]
    assert [p for ps in per_line for p in ps] == parts
    for line, ps in zip(lines, per_line):
        if len(line) > width:  # only a lone part that cannot fit makes a long line
            assert len(ps) == 1
    assert lines == _greedy(parts, sep, width, indent)


def test_wrap_parts_long_part_stays_whole_on_its_own_line():
    long = "x" * 30
    text = wrap_parts(["a", long, "b"], sep=", ", width=10, indent="  ")
    assert text == f"a,\n  {long},\n  b"
    text = wrap_parts([long, "a", "b"], sep=", ", width=10, indent="  ")
    assert text == f"{long},\n  a, b"
    assert wrap_parts([long], width=5) == long


def test_wrap_parts_does_not_break_a_line_early():
    parts = ["ab"] * 10
    text = wrap_parts(parts, sep=" ", width=14)
    # "ab ab ab ab ab" is 14 characters; the mark of " " is empty
    assert text.split("\n")[0] == "ab ab ab ab ab"
    assert text == "ab ab ab ab ab\nab ab ab ab ab"


def test_wrap_parts_needs_a_part():
    with pytest.raises(ValueError, match="at least one part"):
        wrap_parts([])
    with pytest.raises(ValueError):
        wrap_parts(())


@pytest.mark.parametrize(
    "width, error",
    [(0, ValueError), (-3, ValueError), (True, TypeError), (False, TypeError)]
    + [(2.0, TypeError), ("84", TypeError), (None, TypeError)],
)
def test_wrap_parts_checks_width(width, error):
    with pytest.raises(error, match="width"):
        wrap_parts(["a", "b"], width=width)


# --- dataclass_repr ---------------------------------------------------------------


@dataclass
class Small:
    a: int = 1
    b: str = "x"
    c: tuple = (1, 2)
    hidden: float = field(default=0.5, repr=False)


@dataclass
class Long:
    name: str = "n" * 30
    values: tuple = tuple(range(25))
    hidden: str = field(default="SECRET", repr=False)
    ratio: float = 0.25
    tags: tuple = ("alpha", "beta", "gamma", "delta")


def test_short_dataclass_repr_is_the_standard_repr():
    small = Small()
    assert dataclass_repr(small) == repr(small)
    assert dataclass_repr(small) == "Small(a=1, b='x', c=(1, 2))"
    other = Small(a=-7, b="it's", c=())
    assert dataclass_repr(other) == repr(other)


def test_one_line_up_to_the_width_then_wrapped():
    small = Small()
    one = repr(small)
    assert dataclass_repr(small, width=len(one)) == one
    wrapped = dataclass_repr(small, width=len(one) - 1)
    assert wrapped == "Small(\n    a=1, b='x', c=(1, 2),\n)"


def test_long_dataclass_repr_wraps_and_evaluates_back():
    world = ShapesWorld()
    assert len(repr(world)) > 84
    text = dataclass_repr(world)
    lines = text.split("\n")
    assert len(lines) > 3
    assert all(len(line) <= 84 for line in lines)
    assert text.startswith("ShapesWorld(\n")
    assert text.endswith(",\n)")
    assert all(line.startswith("    ") for line in lines[1:-1])
    assert eval(text, {"ShapesWorld": ShapesWorld}) == world


def test_long_dataclass_repr_with_other_fields():
    world = ShapesWorld(
        resolution=64,
        grid=4,
        max_objects=3,
        holdout=(("yellow", "triangle"), ("red", "circle")),
        jitter=0.05,
        seed=12345,
    )
    text = dataclass_repr(world)
    assert all(len(line) <= 84 for line in text.split("\n"))
    assert eval(text, {"ShapesWorld": ShapesWorld}) == world
    body = text.removeprefix("ShapesWorld(\n    ").removesuffix(",\n)")
    items = [
        f"{f.name}={getattr(world, f.name)!r}" for f in dataclasses.fields(world)
    ]
    assert body.replace(",\n    ", ", ") == ", ".join(items)


@pytest.mark.parametrize("width", [30, 40, 60, 84])
def test_long_dataclass_repr_omits_hidden_fields(width):
    value = Long()
    text = dataclass_repr(value, width=width)
    items = [
        f"{name}={getattr(value, name)!r}"
        for name in ["name", "values", "ratio", "tags"]
    ]
    body = "\n".join(_greedy(items, ", ", width - 4, "")).replace("\n", "\n    ")
    assert text == f"Long(\n    {body},\n)"
    assert "SECRET" not in text and "hidden" not in text
    assert text.startswith("Long(\n    ") and text.endswith(",\n)")
    # a line only runs long when one item alone is wider than the column
    for line in text.split("\n"):
        if len(line) > width:
            item = line.removeprefix("    ").removesuffix(",")
            assert item in items and len(f"    {item},") > width
    rebuilt = eval(text, {"Long": Long})
    assert rebuilt == value  # hidden keeps its default
    assert dataclass_repr(Small()).count("hidden") == 0


@dataclass
class Wide:
    a: str = "x" * 36
    b: str = "y" * 36
    c: str = "z" * 50


def test_first_wrapped_line_counts_its_indent():
    # "    a='x...x', b='y...y'," is 87 characters: b must go to the next line
    text = dataclass_repr(Wide())
    assert all(len(line) <= 84 for line in text.split("\n")), text
    a, b, c = (repr(getattr(Wide, name)) for name in "abc")
    assert text == f"Wide(\n    a={a},\n    b={b},\n    c={c},\n)"


@pytest.mark.parametrize("seed", range(60))
def test_random_dataclass_repr_fits_and_evaluates_back(seed):
    rng = random.Random(5000 + seed)
    lengths = [rng.randint(0, 40) for _ in range(rng.randint(1, 9))]
    cls = dataclasses.make_dataclass(
        "R", [(f"f{i}", str, "s" * n) for i, n in enumerate(lengths)]
    )
    value = cls()
    width = rng.randint(20, 84)
    text = dataclass_repr(value, width=width)
    assert eval(text, {"R": cls}) == value
    items = [f"f{i}={'s' * n!r}" for i, n in enumerate(lengths)]
    if len(f"R({', '.join(items)})") <= width:
        assert text == repr(value)
        return
    for line in text.split("\n")[1:-1]:
        if len(line) > width:  # only a lone item wider than the column
            assert line.removeprefix("    ").removesuffix(",") in items
    body = "\n".join(_greedy(items, ", ", width - 4, "")).replace("\n", "\n    ")
    assert text == f"R(\n    {body},\n)"


def test_dataclass_repr_rejects_classes_and_non_dataclasses():
    with pytest.raises(TypeError):
        dataclass_repr(Small)
    with pytest.raises(TypeError):
        dataclass_repr(ShapesWorld)
    with pytest.raises(TypeError):
        dataclass_repr(object())
    with pytest.raises(TypeError):
        dataclass_repr({"a": 1})


# --- ColumnRepr -------------------------------------------------------------------


def test_shapes_world_str_is_the_wrapped_repr():
    world = minigen.ShapesWorld()
    assert isinstance(world, ColumnRepr)
    assert str(world) == dataclass_repr(world)
    assert "\n" in str(world)
    assert f"{world}" == str(world)


def test_shapes_world_repr_stays_one_standard_line():
    world = minigen.ShapesWorld()
    text = repr(world)
    assert "\n" not in text
    assert text.startswith(
        "ShapesWorld(resolution=32, grid=3, min_objects=1, max_objects=2, shapes=("
    )
    expected = (
        f"ShapesWorld(resolution={world.resolution!r}, grid={world.grid!r}, "
        f"min_objects={world.min_objects!r}, max_objects={world.max_objects!r}, "
        f"shapes={world.shapes!r}, colours={world.colours!r}, "
        f"sizes={world.sizes!r}, holdout={world.holdout!r}, "
        f"jitter={world.jitter!r}, seed={world.seed!r})"
    )
    assert text == expected
    assert text.endswith("holdout=(), jitter=0.1, seed=0)")
    assert repr(minigen.ShapesWorld()) == text  # stable, so a cache key can hash it


def test_ipython_pretty_shows_the_wrapped_form():
    pretty = pytest.importorskip("IPython.lib.pretty")
    world = minigen.ShapesWorld()
    assert pretty.pretty(world) == dataclass_repr(world)
    assert pretty.pretty(world) != repr(world)


@dataclass
class Point(ColumnRepr):
    x: int = 1
    y: int = 2


def test_column_repr_on_a_short_dataclass():
    point = Point()
    assert str(point) == repr(point) == "Point(x=1, y=2)"


# --- Table ------------------------------------------------------------------------


def test_table_markdown_exact():
    table = Table(
        ["model", "loss", "steps"], [["ae", 0.123, 100], ["vae", 1.25, 5]]
    )
    assert table._repr_markdown_() == (
        "| model | loss | steps |\n"
        "|:---|---:|---:|\n"
        "| ae | 0.1 | 100 |\n"
        "| vae | 1.2 | 5 |\n"
    )


def test_table_markdown_structure_and_title():
    header = ["a", "b", "c", "d"]
    rows = [[1, 2.0, "x", 3.5], [4, 5.25, "y", 6], [7, 8.0, "z", 9]]
    markdown = Table(header, rows, title="Results")._repr_markdown_()
    assert markdown.startswith("Results\n\n| a | b | c | d |\n")
    lines = markdown.removeprefix("Results\n\n").rstrip("\n").split("\n")
    assert len(lines) == 2 + len(rows)
    assert lines[1] == "|:---|---:|---:|---:|"
    rows_md = [lines[0], *lines[2:]]
    assert all(line.startswith("| ") and line.endswith(" |") for line in rows_md)
    assert [line.count(" | ") for line in rows_md] == [3] * (1 + len(rows))
    assert lines[2] == "| 1 | 2.0 | x | 3.5 |"
    assert Table(["only"], [[1]])._repr_markdown_().split("\n")[1] == "|:---|"
    # no title: the table comes first
    assert Table(header, rows)._repr_markdown_().startswith("| a | b |")


def test_table_markdown_escapes_pipes():
    table = Table(["x|y", "v"], [["a|b", "c||d"]])
    lines = table._repr_markdown_().split("\n")
    assert lines[0] == "| x\\|y | v |"
    assert lines[2] == "| a\\|b | c\\|\\|d |"
    # the text form shows cells as they are
    assert "a|b" in str(table)


def test_table_formats_floats_only():
    table = Table(["n", "f", "s", "b"], [[3, 3.14159, "2.5", True]])
    assert table.rows == [["3", "3.1", "2.5", "True"]]
    table = Table(["n", "f"], [[3, 3.14159]], float_format="{:.3f}")
    assert table.rows == [["3", "3.142"]]
    table = Table(["f"], [[1e-4]], float_format="{:.2e}")
    assert table.rows == [["1.00e-04"]]
    table = Table([1, 2.5], [])
    assert table.header == ["1", "2.5"]  # the header is str, never float-formatted


def test_table_text_is_aligned_exact():
    table = Table(
        ["model", "loss", "steps"],
        [["ae", 0.123, 100], ["vae-large", 1.25, 5]],
        title="Losses",
    )
    assert str(table) == (
        "Losses\n"
        "model      loss  steps\n"
        "ae          0.1    100\n"
        "vae-large   1.2      5"
    )
    assert repr(table) == str(table)


def test_table_text_columns_line_up():
    header = ["name", "score", "n", "note"]
    rows = [
        ["a", 0.5, 1, "x"],
        ["longer name", 123.456, 10000, "wide note"],
        ["mid", 7.0, 42, "n"],
    ]
    lines = str(Table(header, rows)).split("\n")
    cells = [header] + [[Table._cell(v, "{:.1f}") for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    assert len(lines) == 1 + len(rows)
    # the last column is right-aligned, so no line is shortened by rstrip
    assert len({len(line) for line in lines}) == 1
    assert len(lines[0]) == sum(widths) + 2 * (len(widths) - 1)
    for line, row in zip(lines, cells):
        start = 0
        for i, (cell, w) in enumerate(zip(row, widths)):
            chunk = line[start : start + w]
            assert chunk == (cell.ljust(w) if i == 0 else cell.rjust(w))
            if i < len(widths) - 1:
                assert line[start + w : start + w + 2] == "  "
            start += w + 2


def test_table_text_strips_trailing_spaces():
    lines = str(Table(["name"], [["a"], ["abc"]])).split("\n")
    assert lines == ["name", "a", "abc"]
    assert str(Table(["a", "b"], [])) == "a  b"


def test_table_row_length_is_checked():
    with pytest.raises(ValueError, match="row 1 has 1 cells.*2 columns"):
        Table(["a", "b"], [[1, 2], [3]])
    with pytest.raises(ValueError, match="row 0 has 3 cells"):
        Table(["a", "b"], [[1, 2, 3], [4, 5]])
    with pytest.raises(ValueError, match="row 2"):
        Table(["a"], [[1], [2], [], [3]])


def test_table_needs_a_column():
    with pytest.raises(ValueError, match="at least one column"):
        Table([], [])
    with pytest.raises(ValueError):
        Table((), [[1]])
