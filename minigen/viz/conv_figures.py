"""Sliding-window figures of convolution arithmetic, drawn for any configuration.

Implements the pictures of Dumoulin & Visin, "A guide to convolution arithmetic for
deep learning" (2016) and their animations (github.com/vdumoulin/conv_arithmetic):
the input in blue, zero padding as white dashed cells, the kernel window shaded in
dark blue over the padded input (a dilated kernel shows its taps spread ``d`` cells
apart) and the output in cyan. A transposed convolution is drawn the way the guide
explains it: as the equivalent stride-1 convolution over the input with ``s - 1``
zeros inserted between entries and ``k_eff - 1 - p`` zeros of padding on each side
(plus ``output_padding`` on the bottom and right). The receptive-field figure
follows Araujo, Norris & Sim, "Computing Receptive Fields of Convolutional Neural
Networks" (Distill, 2019).

Every size comes from :mod:`minigen.ops.arith`, the single source of the arithmetic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.animation import FuncAnimation
from matplotlib.axes import Axes
from matplotlib.collections import PatchCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from minigen.core.validators import (
    check_bool,
    check_instance,
    check_int,
    check_optional,
)
from minigen.ops import arith

INPUT_COLOR = "#8fc1ea"  # blue: input pixels
PADDING_COLOR = "white"  # dashed edge: zeros (padding, or from a transposed conv)
KERNEL_COLOR = "#1b3f8f"  # dark blue: the kernel taps over the input
OUTPUT_COLOR = "#a6ecec"  # cyan: output pixels
CURRENT_OUTPUT_COLOR = "#139c9c"  # dark cyan: the output pixel computed now
EDGE_COLOR = "#4d4d4d"

Size = int | tuple[int, int]  # one int for both axes, or (height, width)
MAX_CELLS = 100  # the most cells a figure draws along one axis of the padded input


@dataclass(frozen=True)
class _Axis:
    """The sliding-window geometry along one spatial axis, in padded-grid cells."""

    grid: int  # cells of the drawn grid: the padded input
    input_cells: tuple[int, ...]  # grid cells that hold input values; others are 0
    stride: int  # how far the window moves in the grid per output step
    kernel: int
    dilation: int
    outputs: int  # output size along this axis, from minigen.ops.arith
    border: int  # zeros before the first input cell (and after the last one)
    zeros_between: int = 0  # zeros between neighbouring inputs (transposed: s - 1)
    extra: int = 0  # extra zeros on the bottom/right (transposed: output_padding)

    @property
    def span(self) -> int:
        """The window's extent k_eff = k + (k-1)(d-1)."""
        return arith.effective_kernel(self.kernel, self.dilation)


@dataclass(frozen=True)
class _Geometry:
    rows: _Axis
    cols: _Axis

    def positions(self) -> list[tuple[int, int]]:
        """Top-left grid cell of the window for each output position, row-major."""
        return [
            (r * self.rows.stride, c * self.cols.stride)
            for r in range(self.rows.outputs)
            for c in range(self.cols.outputs)
        ]


def _direct_axis(i: int, k: int, s: int, p: int, d: int) -> _Axis:
    o = arith.conv_output_size(i, k, s, p, d)  # o = floor((i + 2p - k_eff)/s) + 1
    return _Axis(i + 2 * p, tuple(range(p, p + i)), s, k, d, o, border=p)


def _transposed_axis(i: int, k: int, s: int, p: int, d: int, a: int) -> _Axis:
    # o = s(i-1) - 2p + d(k-1) + a + 1
    o = arith.transposed_output_size(i, k, s, p, d, a)
    k_eff = arith.effective_kernel(k, d)
    border = k_eff - 1 - p  # zeros on each side of the stretched input
    if border < 0:
        raise ValueError(
            f"padding {p} is larger than k_eff - 1 = {k_eff - 1}: the equivalent "
            "direct convolution would crop its input, which this figure does not "
            f"draw; use p <= {k_eff - 1}"
        )
    stretched = s * (i - 1) + 1  # i inputs with s-1 zeros between neighbours
    grid = stretched + 2 * border + a  # output_padding a: zeros on the bottom/right
    inputs = tuple(border + s * t for t in range(i))
    return _Axis(grid, inputs, 1, k, d, o, border, zeros_between=s - 1, extra=a)


def _per_axis(
    i: Size, k: Size, s: Size, p: Size, d: Size, a: Size
) -> list[tuple[int, ...]]:
    """The configuration as (i, k, s, p, d, a) per axis: height first, then
    width."""
    named = {"i": i, "k": k, "s": s, "p": p, "d": d, "output_padding": a}
    pairs = [arith.per_axis(name, value) for name, value in named.items()]
    return [tuple(pair[axis] for pair in pairs) for axis in (0, 1)]


def _geometry(
    i: Size,
    k: Size,
    s: Size,
    p: Size,
    d: Size,
    transposed: bool,
    output_padding: Size,
) -> _Geometry:
    transposed = check_bool("transposed", transposed)
    axes = _per_axis(i, k, s, p, d, output_padding)
    if not transposed and any(a != 0 for *_, a in axes):
        raise ValueError(
            f"output_padding={output_padding!r} only applies to a transposed "
            "convolution; pass transposed=True or leave output_padding=0"
        )
    if transposed:
        geometry = _Geometry(*(_transposed_axis(*axis) for axis in axes))
    else:
        geometry = _Geometry(*(_direct_axis(*axis[:5]) for axis in axes))
    for axis in (geometry.rows, geometry.cols):
        if axis.grid > MAX_CELLS:
            raise ValueError(
                f"the figure would draw {axis.grid} cells along one axis, more "
                f"than MAX_CELLS = {MAX_CELLS}; use a smaller input, padding or "
                "stride"
            )
    return geometry


def window_positions(
    i: Size,
    k: Size,
    s: Size = 1,
    p: Size = 0,
    d: Size = 1,
    *,
    transposed: bool = False,
    output_padding: Size = 0,
) -> list[tuple[int, int]]:
    """Top-left (row, col) of the window in the padded grid, one per output pixel.

    Row-major, so entry ``n`` is the window that computes output pixel
    ``divmod(n, o_w)``. For ``transposed=True`` the grid is the zero-stretched,
    padded input of the equivalent stride-1 convolution, so there are
    ``transposed_output_size(...)**2`` positions.
    """
    return _geometry(i, k, s, p, d, transposed, output_padding).positions()


def output_shape(
    i: Size,
    k: Size,
    s: Size = 1,
    p: Size = 0,
    d: Size = 1,
    *,
    transposed: bool = False,
    output_padding: Size = 0,
) -> tuple[int, int]:
    """(height, width) of the output, by :mod:`minigen.ops.arith` applied per
    axis."""
    geometry = _geometry(i, k, s, p, d, transposed, output_padding)
    return geometry.rows.outputs, geometry.cols.outputs


def _formula_1d(
    i: int, k: int, s: int, p: int, d: int, a: int, *, transposed: bool
) -> str:
    if transposed:
        o = arith.transposed_output_size(i, k, s, p, d, a)
        return (
            f"o = s(i−1) − 2p + d(k−1) + a + 1 = "
            f"{s}·({i}−1) − 2·{p} + {d}·({k}−1) + {a} + 1 = {o}"
        )
    o = arith.conv_output_size(i, k, s, p, d)
    if d == 1:
        return f"o = ⌊(i + 2p − k)/s⌋ + 1 = ⌊({i} + 2·{p} − {k})/{s}⌋ + 1 = {o}"
    k_eff = arith.effective_kernel(k, d)
    return f"o = ⌊(i + 2p − k_eff)/s⌋ + 1 = ⌊({i} + 2·{p} − {k_eff})/{s}⌋ + 1 = {o}"


def output_size_formula(
    i: Size,
    k: Size,
    s: Size = 1,
    p: Size = 0,
    d: Size = 1,
    *,
    transposed: bool = False,
    output_padding: Size = 0,
) -> str:
    """The output-size formula, then with this configuration substituted.

    For example ``output_size_formula(5, 3, 2, 1)`` is
    ``o = ⌊(i + 2p − k)/s⌋ + 1 = ⌊(5 + 2·1 − 3)/2⌋ + 1 = 3``.

    One line when height and width agree, else one line per axis. Raises the
    :mod:`minigen.ops.arith` error for an invalid configuration.
    """
    _geometry(i, k, s, p, d, transposed, output_padding)  # validates, drawing too
    axes = _per_axis(i, k, s, p, d, output_padding)
    per_axis = [_formula_1d(*axis, transposed=transposed) for axis in axes]
    if per_axis[0] == per_axis[1]:
        return per_axis[0]
    return f"height: {per_axis[0]}\nwidth: {per_axis[1]}"


def _describe(values: tuple[int, int]) -> str:
    """One value when height and width agree, else the pair."""
    height, width = values
    return str(height) if height == width else f"({height}, {width})"


def _config_text(
    i: Size,
    k: Size,
    s: Size,
    p: Size,
    d: Size,
    transposed: bool,
    output_padding: Size,
) -> str:
    names = [("i", i), ("k", k), ("s", s), ("p", p), ("d", d)]
    if transposed:
        names.append(("a", output_padding))
    settings = ", ".join(
        f"{name}={_describe(arith.per_axis(name, value))}" for name, value in names
    )
    kind = "transposed convolution" if transposed else "convolution"
    return f"{kind}: {settings}"


def _caption(geometry: _Geometry, transposed: bool) -> str:
    legend = (
        "blue: input · white dashed: zeros · dark blue: kernel · cyan: output · "
        "1 cell = 1 pixel"
    )
    if not transposed:
        return legend
    rows, cols = geometry.rows, geometry.cols
    between = _describe((rows.zeros_between, cols.zeros_between))
    border = _describe((rows.border, cols.border))
    extra = _describe((rows.extra, cols.extra))
    return (
        f"{legend}\nstride-1 view: s−1 = {between} zeros between inputs, "
        f"k_eff−1−p = {border} around, a = {extra} extra bottom/right"
    )


def _cells(
    ax: Axes,
    corners: list[tuple[float, float]],
    faces: list[str],
    dashed: list[bool],
    **kwargs,
) -> None:
    """Unit squares with top-left (row, col) corners, as one (fast) collection."""
    squares = [Rectangle((col, row), 1, 1) for row, col in corners]
    styles = ["--" if dash else "-" for dash in dashed]
    options = dict(edgecolors=EDGE_COLOR, linewidths=0.8, linestyles=styles)
    collection = PatchCollection(squares, facecolors=faces, **options, **kwargs)
    ax.add_collection(collection)


def _draw_frame(
    ax: Axes, geometry: _Geometry, step: int, *, labels: bool = True
) -> None:
    """The padded input, the window that computes output pixel `step`, the
    output."""
    rows, cols = geometry.rows, geometry.cols
    inputs_r, inputs_c = set(rows.input_cells), set(cols.input_cells)
    grid = [(r, c) for r in range(rows.grid) for c in range(cols.grid)]
    is_input = [r in inputs_r and c in inputs_c for r, c in grid]
    faces = [INPUT_COLOR if x else PADDING_COLOR for x in is_input]
    _cells(ax, grid, faces, [not x for x in is_input])

    top, left = geometry.positions()[step]
    # the kernel taps sit d cells apart
    tap_rows = [top + a * rows.dilation for a in range(rows.kernel)]
    tap_cols = [left + b * cols.dilation for b in range(cols.kernel)]
    taps = [Rectangle((c, r), 1, 1) for r in tap_rows for c in tap_cols]
    shaded = PatchCollection(taps, facecolor=KERNEL_COLOR, alpha=0.6, linewidth=0)
    ax.add_collection(shaded)
    outline = dict(fill=False, edgecolor=KERNEL_COLOR, linewidth=2.5)
    ax.add_patch(Rectangle((left, top), cols.span, rows.span, **outline))

    # the output: right of the input
    out_left = cols.grid + max(2.0, 0.3 * cols.grid)
    out_top = (rows.grid - rows.outputs) / 2
    out_r, out_c = divmod(step, cols.outputs)
    outputs = [(r, c) for r in range(rows.outputs) for c in range(cols.outputs)]
    faces = [OUTPUT_COLOR] * len(outputs)
    faces[step] = CURRENT_OUTPUT_COLOR  # outputs are row-major, like the steps
    corners = [(out_top + r, out_left + c) for r, c in outputs]
    _cells(ax, corners, faces, [False] * len(outputs))
    window_edges = (top, top + rows.span)  # lines from the window to its output
    output_edges = (out_top + out_r, out_top + out_r + 1)
    for window_row, out_row in zip(window_edges, output_edges):
        xs, ys = [left + cols.span, out_left + out_c], [window_row, out_row]
        ax.plot(xs, ys, color=KERNEL_COLOR, linewidth=0.8, alpha=0.5)

    if labels:
        size = f"{len(rows.input_cells)}×{len(cols.input_cells)}"
        if (rows.grid, cols.grid) != (len(rows.input_cells), len(cols.input_cells)):
            size += f", with zeros {rows.grid}×{cols.grid}"
        text = dict(ha="center", va="bottom", fontsize="small")
        ax.text(cols.grid / 2, -0.4, f"input {size}", **text)
        output = f"output {rows.outputs}×{cols.outputs}"
        ax.text(out_left + cols.outputs / 2, out_top - 0.4, output, **text)
    ax.set_xlim(-0.5, out_left + cols.outputs + 0.5)
    ax.set_ylim(rows.grid + 0.5, -1.8 if labels else -0.5)  # inverted: row 0 on top
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def conv_frame(
    ax: Axes,
    i: Size,
    k: Size,
    s: Size = 1,
    p: Size = 0,
    d: Size = 1,
    step: int = 0,
    *,
    transposed: bool = False,
    output_padding: Size = 0,
) -> Axes:
    """Draw on ``ax`` the sliding window that computes output pixel ``step``.

    ``step`` counts output pixels row-major from 0 to ``o_h * o_w - 1``. The title
    gives the configuration and the output-size formula with its numbers
    substituted.
    """
    check_instance("ax", ax, Axes, "a matplotlib Axes")
    geometry = _geometry(i, k, s, p, d, transposed, output_padding)
    steps = geometry.rows.outputs * geometry.cols.outputs
    step = check_int("step", step, 0, None)
    if step >= steps:
        raise ValueError(
            f"step {step} is out of range: this configuration has {steps} output "
            f"pixels, so step must be in 0..{steps - 1}"
        )
    _draw_frame(ax, geometry, step)
    formula = output_size_formula(
        i, k, s, p, d, transposed=transposed, output_padding=output_padding
    )
    config = _config_text(i, k, s, p, d, transposed, output_padding)
    ax.set_title(f"{config}\n{formula}")
    ax.set_xlabel(_caption(geometry, transposed), fontsize="medium")
    return ax


def _frame_size_inches(
    geometry: _Geometry, width: float, labels: bool
) -> tuple[float, float]:
    """Size of one frame's drawing area (no title, no caption) at the given
    width."""
    rows, cols = geometry.rows, geometry.cols
    units_wide = cols.grid + max(2.0, 0.3 * cols.grid) + cols.outputs + 1
    units_high = rows.grid + (2.3 if labels else 1.0)
    return width, width * units_high / units_wide


def conv_frames_figure(
    i: Size,
    k: Size,
    s: Size = 1,
    p: Size = 0,
    d: Size = 1,
    transposed: bool = False,
    output_padding: Size = 0,
    max_frames: int | None = None,
    ncols: int = 4,
) -> Figure:
    """A static grid of sliding-window frames: every step, or ``max_frames`` of
    them.

    The frames shown are evenly spread. The printable version of
    :func:`conv_animation`, for the rendered book.
    """
    geometry = _geometry(i, k, s, p, d, transposed, output_padding)
    max_frames = check_optional(check_int, "max_frames", max_frames)
    ncols = check_int("ncols", ncols)
    total = geometry.rows.outputs * geometry.cols.outputs
    if max_frames is None:
        steps = list(range(total))
    else:
        chosen = np.linspace(0, total - 1, min(max_frames, total))
        steps = sorted({round(x) for x in chosen})

    ncols = min(ncols, len(steps))
    nrows = -(-len(steps) // ncols)  # ceil division
    width = min(3.2, 10.0 / ncols)
    frame_w, frame_h = _frame_size_inches(geometry, width=width, labels=False)
    caption_lines = 2 if transposed else 1
    height = (frame_h + 0.4) * nrows + 0.9 + 0.3 * caption_lines
    figure = Figure(figsize=(frame_w * ncols, height), layout="constrained")
    axes = figure.subplots(nrows, ncols, squeeze=False)
    for ax, step in zip(axes.flat, steps):
        _draw_frame(ax, geometry, step, labels=False)
        output = divmod(step, geometry.cols.outputs)
        ax.set_title(f"step {step}: output {output}", fontsize="large")
    for ax in axes.flat[len(steps) :]:
        ax.set_visible(False)
    formula = output_size_formula(
        i, k, s, p, d, transposed=transposed, output_padding=output_padding
    )
    shown = "all" if len(steps) == total else f"{len(steps)} of"
    config = _config_text(i, k, s, p, d, transposed, output_padding)
    figure.suptitle(f"{config} ({shown} {total} steps)\n{formula}")
    figure.supxlabel(_caption(geometry, transposed), fontsize="large")
    return figure


def conv_animation(
    i: Size,
    k: Size,
    s: Size = 1,
    p: Size = 0,
    d: Size = 1,
    transposed: bool = False,
    output_padding: Size = 0,
    interval: int = 400,
) -> FuncAnimation:
    """The sliding window as an animation, one frame per output pixel.

    ``o_h * o_w`` frames. In a notebook: ``HTML(conv_animation(5, 3).to_jshtml())``.
    ``interval`` is milliseconds per frame.
    """
    geometry = _geometry(i, k, s, p, d, transposed, output_padding)
    interval = check_int("interval", interval)  # milliseconds per frame
    width, height = _frame_size_inches(geometry, width=6.4, labels=True)
    height += 1.2  # room for the title and the caption
    figure = Figure(figsize=(width, height), layout="constrained")
    ax = figure.add_subplot()
    options = dict(transposed=transposed, output_padding=output_padding)

    def draw(step: int) -> None:
        ax.clear()
        conv_frame(ax, i, k, s, p, d, step, **options)

    frames = geometry.rows.outputs * geometry.cols.outputs
    return FuncAnimation(figure, draw, frames=frames, interval=interval)


def _layer_sizes(layers: Sequence[arith.Layer], input_size: int) -> list[int]:
    """Length of every level of the stack, input first."""
    check_instance("layers", layers, Sequence, "a sequence of Layer objects")
    if len(layers) == 0:
        raise ValueError(
            "layers must hold at least one Layer, got an empty sequence"
        )
    sizes = [check_int("input_size", input_size)]
    for index, layer in enumerate(layers):
        check_instance(f"layers[{index}]", layer, arith.Layer, "a minigen Layer")
    for number, layer in enumerate(layers, start=1):
        shape = (layer.kernel, layer.stride, layer.padding, layer.dilation)
        try:
            sizes.append(arith.conv_output_size(sizes[-1], *shape))
        except ValueError as error:
            raise ValueError(
                f"{_layer_name(layer, number)} gets {sizes[-1]} cells: {error}"
            ) from error
    return sizes


def _layer_name(layer: arith.Layer, number: int) -> str:
    return layer.name or f"layer {number}"


def fan_in(
    layers: Sequence[arith.Layer], input_size: int, unit: int
) -> list[list[int]]:
    """The cells of every level that feed ``unit`` of the last layer, input first.

    Found by walking the connections backwards (no receptive-field formula
    involved): output cell ``u`` of a layer reads cells ``u·s − p + t·d`` for taps
    ``t = 0..k−1`` of the level below. Indices below 0 or past the end of a level
    are its zero padding; they appear in the lists but feed nothing further down.
    The last entry is ``[unit]``.
    """
    sizes = _layer_sizes(layers, input_size)
    if check_int("unit", unit, 0, None) >= sizes[-1]:
        raise ValueError(
            f"unit must be an int in 0..{sizes[-1] - 1} (the last layer has "
            f"{sizes[-1]} cells), got {unit!r}"
        )
    levels = [[unit]]
    for number in range(len(layers), 0, -1):  # walk down from the last layer
        layer = layers[number - 1]
        s, p, d = layer.stride, layer.padding, layer.dilation
        # padding: no inputs
        real = [u for u in levels[0] if 0 <= u < sizes[number]]
        # cell u reads u·s − p + t·d for the taps t = 0..k−1
        below = {u * s - p + t * d for u in real for t in range(layer.kernel)}
        levels.insert(0, sorted(below))
    return levels


# the receptive-field figure: distance between levels, height of a cell
_ROW_GAP, _CELL_HEIGHT = 1.6, 0.6


def _centres(fields: list[arith.ReceptiveField]) -> list[tuple[float, int]]:
    """(start, jump) of every level, input first: unit u sits at start + u·jump."""
    # input pixel n is centred at n
    return [(0.0, 1)] + [(field.start, field.jump) for field in fields]


def _draw_levels(
    ax: Axes,
    layers: Sequence[arith.Layer],
    sizes: list[int],
    traced: list[list[int]],
    centres: list[tuple[float, int]],
) -> None:
    """One row of cells per level; the zero padding the next layer reads, dashed."""
    for level, size in enumerate(sizes):
        padding = layers[level].padding if level < len(layers) else 0
        used = set(traced[level])
        start, jump = centres[level]
        for u in range(-padding, size + padding):
            real = 0 <= u < size
            if not real:
                face = PADDING_COLOR
            elif level == 0:
                face = KERNEL_COLOR if u in used else INPUT_COLOR
            else:
                face = CURRENT_OUTPUT_COLOR if u in used else OUTPUT_COLOR
            corner = (start + u * jump - 0.45, level * _ROW_GAP - _CELL_HEIGHT / 2)
            style = dict(facecolor=face, edgecolor=EDGE_COLOR, linewidth=0.8)
            style["linestyle"] = "-" if real else "--"
            style["hatch"] = "///" if not real and u in used else None
            ax.add_patch(Rectangle(corner, 0.9, _CELL_HEIGHT, **style))


def _draw_connections(
    ax: Axes,
    layers: Sequence[arith.Layer],
    sizes: list[int],
    traced: list[list[int]],
    centres: list[tuple[float, int]],
) -> None:
    """Lines from each traced cell to the cells its taps read on the level below."""
    for level in range(1, len(sizes)):
        layer = layers[level - 1]
        start, jump = centres[level]
        start_below, jump_below = centres[level - 1]
        top, bottom = level * _ROW_GAP, (level - 1) * _ROW_GAP  # the two rows
        ys = [top - _CELL_HEIGHT / 2, bottom + _CELL_HEIGHT / 2]
        for u in (u for u in traced[level] if 0 <= u < sizes[level]):
            for t in range(layer.kernel):
                # u·s − p + t·d
                below = u * layer.stride - layer.padding + t * layer.dilation
                xs = [start + u * jump, start_below + below * jump_below]
                ax.plot(xs, ys, color=KERNEL_COLOR, linewidth=0.8, alpha=0.45)


def _draw_field_bracket(ax: Axes, field: arith.ReceptiveField, unit: int) -> float:
    """A bracket under the input over the r pixels of the unit's field.

    Returns the bracket's height.
    """
    # unit u's field is centred at start + u·j
    centre = field.start + unit * field.jump
    half = (field.size - 1) / 2 + 0.5
    left, right = centre - half, centre + half
    y = -_CELL_HEIGHT / 2 - 0.35
    xs, ys = [left, left, right, right], [y + 0.15, y, y, y + 0.15]
    ax.plot(xs, ys, color=KERNEL_COLOR, linewidth=1.5)
    text = f"receptive field: r = {field.size} pixels"
    style = dict(ha="center", va="top", color=KERNEL_COLOR, fontsize="small")
    ax.text(centre, y - 0.1, text, **style)
    return y


def _level_labels(
    layers: Sequence[arith.Layer],
    sizes: list[int],
    fields: list[arith.ReceptiveField],
) -> list[str]:
    """The y tick label of every level: its layer, size, field size and jump."""
    labels = [f"input\nn = {sizes[0]}"]
    levels = zip(layers, sizes[1:], fields)
    for number, (layer, size, field) in enumerate(levels, start=1):
        kernel = f"k={layer.kernel} s={layer.stride} p={layer.padding}"
        kernel += f" d={layer.dilation}" if layer.dilation > 1 else ""
        labels.append(
            f"{_layer_name(layer, number)}: {kernel}\n"
            f"n = {size} · r = {field.size} · j = {field.jump}"
        )
    return labels


def receptive_field_figure(
    layers: Sequence[arith.Layer], input_size: int, unit: int | None = None
) -> Figure:
    """Which input pixels feed one unit of the last layer: one row per level (1-D).

    Every cell sits at the centre of its own receptive field in input pixels
    (``start + u·jump`` from :func:`minigen.ops.arith.receptive_field`), so the
    rows spread out by the jump. The traced connections come from :func:`fan_in`;
    the bracket under the input is the receptive field size ``r`` from
    :mod:`minigen.ops.arith`. ``unit`` defaults to the middle unit of the last
    layer.
    """
    check_int("input_size", input_size, 1, MAX_CELLS)  # one drawn cell per pixel
    sizes = _layer_sizes(layers, input_size)
    unit = sizes[-1] // 2 if unit is None else unit
    traced = fan_in(layers, input_size, unit)
    fields = arith.receptive_field(layers)
    centres = _centres(fields)

    figure = Figure(figsize=(8.0, 1.4 + 0.85 * len(sizes)), layout="constrained")
    ax = figure.add_subplot()
    _draw_levels(ax, layers, sizes, traced, centres)
    _draw_connections(ax, layers, sizes, traced, centres)
    bracket_y = _draw_field_bracket(ax, fields[-1], unit)

    ticks = [level * _ROW_GAP for level in range(len(sizes))]
    ax.set_yticks(ticks, _level_labels(layers, sizes, fields), fontsize="small")
    ax.tick_params(axis="y", length=0)
    ax.set_ylim(bracket_y - 0.8, (len(sizes) - 1) * _ROW_GAP + _CELL_HEIGHT)
    ax.set_xlabel("position in the input (pixels)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    last = _layer_name(layers[-1], len(layers))
    ax.set_title(
        f"Which input pixels feed unit {unit} of {last}: r = {fields[-1].size} "
        f"pixels, jump j = {fields[-1].jump}"
    )
    return figure
