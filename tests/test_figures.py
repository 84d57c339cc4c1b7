"""Tests for minigen.figures: the drawn geometry agrees with torch and with brute force."""

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from matplotlib.figure import Figure

from minigen.ops import arith
from minigen.ops.arith import Layer
from minigen.viz import conv_figures as figures


def _valid_conv(i, k, s, p, d):
    try:
        return arith.conv_output_size(i, k, s, p, d)
    except ValueError:
        return None


def _new_axes():
    return Figure().add_subplot()


@settings(max_examples=150, deadline=None)
@given(
    i=st.integers(1, 12),
    k=st.integers(1, 5),
    s=st.integers(1, 4),
    p=st.integers(0, 3),
    d=st.integers(1, 3),
)
def test_window_positions_match_brute_force(i, k, s, p, d):
    o = _valid_conv(i, k, s, p, d)
    assume(o is not None)
    padded, k_eff = i + 2 * p, k + (k - 1) * (d - 1)
    # every stride-aligned top-left corner whose window fits inside the padded input, row-major
    fits = [
        (r, c)
        for r in range(0, padded, s)
        for c in range(0, padded, s)
        if r + k_eff <= padded and c + k_eff <= padded
    ]
    positions = figures.window_positions(i, k, s, p, d)
    assert positions == fits
    assert len(positions) == o * o


@settings(max_examples=80, deadline=None)
@given(
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    k=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    s=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    p=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    d=st.tuples(st.integers(1, 3), st.integers(1, 3)),
)
def test_window_positions_are_where_torch_reads(h, w, k, s, p, d):
    """A kernel with a single 1 at its top-left tap, run over a grid of cell numbers, reads each window's corner."""
    assume(_valid_conv(h, k[0], s[0], p[0], d[0]) is not None)
    assume(_valid_conv(w, k[1], s[1], p[1], d[1]) is not None)
    grid_h, grid_w = h + 2 * p[0], w + 2 * p[1]
    cell_numbers = torch.arange(grid_h * grid_w, dtype=torch.float64).reshape(
        1, 1, grid_h, grid_w
    )
    corner = torch.zeros(1, 1, *k, dtype=torch.float64)
    corner[0, 0, 0, 0] = 1.0
    read = (
        F.conv2d(cell_numbers, corner, stride=s, dilation=d)
        .flatten()
        .long()
        .tolist()
    )
    assert figures.window_positions((h, w), k, s, p, d) == [
        divmod(n, grid_w) for n in read
    ]
    assert figures.output_shape((h, w), k, s, p, d) == tuple(
        F.conv2d(
            torch.zeros(1, 1, h, w),
            torch.zeros(1, 1, *k),
            stride=s,
            padding=p,
            dilation=d,
        ).shape[2:]
    )


@settings(max_examples=80, deadline=None)
@given(
    i=st.integers(1, 6),
    k=st.integers(1, 4),
    s=st.integers(1, 3),
    p=st.integers(0, 3),
    d=st.integers(1, 2),
    a=st.integers(0, 2),
)
def test_transposed_geometry_is_torch_conv_transpose(i, k, s, p, d, a):
    """The drawn picture (zeros between and around the input, stride-1 window) is conv_transpose2d."""
    k_eff = k + (k - 1) * (d - 1)
    assume(
        a < max(s, d) and p <= k_eff - 1 and (i - 1) * s - 2 * p + k_eff + a >= 1
    )
    x = torch.randn(1, 1, i, i, dtype=torch.float64)
    weight = torch.randn(1, 1, k, k, dtype=torch.float64)
    expected = F.conv_transpose2d(
        x, weight, stride=s, padding=p, output_padding=a, dilation=d
    )

    positions = figures.window_positions(
        i, k, s, p, d, transposed=True, output_padding=a
    )
    o = arith.transposed_output_size(i, k, s, p, d, a)
    assert len(positions) == o * o == expected.shape[-1] ** 2

    geometry = figures._geometry(
        i, k, s, p, d, True, a
    )  # the cells the figure paints blue
    grid = torch.zeros(geometry.rows.grid, geometry.cols.grid, dtype=torch.float64)
    cells = torch.tensor(geometry.rows.input_cells)
    grid[cells[:, None], cells[None, :]] = x[0, 0]
    flipped = weight.flip(
        -1, -2
    )  # a transposed convolution is a direct one with the kernel flipped
    windows = torch.stack(
        [
            (grid[r : r + k_eff : d, c : c + k_eff : d] * flipped[0, 0]).sum()
            for r, c in positions
        ]
    ).reshape(o, o)
    torch.testing.assert_close(windows, expected[0, 0])


def test_transposed_padding_larger_than_kernel_is_explained():
    with pytest.raises(ValueError, match="would crop its input"):
        figures.window_positions(
            6, 3, 1, 3, transposed=True
        )  # a valid layer: o = 2


def test_invalid_configurations_give_the_arith_message():
    with pytest.raises(ValueError, match="kernel 7 is larger than padded input 5"):
        figures.conv_frame(_new_axes(), 5, 7)
    with pytest.raises(
        ValueError, match="only applies to a transposed convolution"
    ):
        figures.window_positions(5, 3, 2, output_padding=1)
    with pytest.raises(ValueError, match="step 9 is out of range.*0..8"):
        figures.conv_frame(_new_axes(), 5, 3, step=9)
    with pytest.raises(ValueError, match="height, width"):
        figures.window_positions((5, 5, 5), 3)
    with pytest.raises(TypeError, match="transposed must be True or False"):
        figures.window_positions(5, 3, transposed=1)


def test_conv_frame_is_titled_and_labelled():
    ax = figures.conv_frame(_new_axes(), 5, 3, 2, 1, step=4)
    assert "i=5, k=3, s=2, p=1, d=1" in ax.get_title()
    assert "⌊(5 + 2·1 − 3)/2⌋ + 1 = 3" in ax.get_title()
    assert "pixel" in ax.get_xlabel()
    texts = [t.get_text() for t in ax.texts]
    assert "input 5×5, with zeros 7×7" in texts and "output 3×3" in texts


def test_transposed_frame_title_has_the_transposed_formula():
    ax = figures.conv_frame(
        _new_axes(), 3, 3, 2, 1, step=0, transposed=True, output_padding=1
    )
    o = arith.transposed_output_size(3, 3, 2, 1, 1, 1)
    assert ax.get_title().startswith("transposed convolution")
    assert ax.get_title().endswith(f"= {o}")
    assert "s−1 = 1 zeros between inputs" in ax.get_xlabel()


def test_output_size_formula_per_axis():
    assert (
        figures.output_size_formula(7, 3, d=2)
        == "o = ⌊(i + 2p − k_eff)/s⌋ + 1 = ⌊(7 + 2·0 − 5)/1⌋ + 1 = 3"
    )
    two_axes = figures.output_size_formula((4, 7), (2, 3), (1, 2), (0, 1))
    assert two_axes.splitlines() == [
        "height: o = ⌊(i + 2p − k)/s⌋ + 1 = ⌊(4 + 2·0 − 2)/1⌋ + 1 = 3",
        "width: o = ⌊(i + 2p − k)/s⌋ + 1 = ⌊(7 + 2·1 − 3)/2⌋ + 1 = 4",
    ]


def _visible_axes(figure):
    return [ax for ax in figure.axes if ax.get_visible()]


def test_frames_figure_shows_every_step():
    figure = figures.conv_frames_figure(5, 3, 2, 1)
    axes = _visible_axes(figure)
    assert len(axes) == 9
    assert [ax.get_title() for ax in axes[:2]] == [
        "step 0: output (0, 0)",
        "step 1: output (0, 1)",
    ]
    assert "all 9 steps" in figure.get_suptitle()


def test_frames_figure_chooses_evenly_spread_frames():
    figure = figures.conv_frames_figure(5, 3, max_frames=4, ncols=2)
    titles = [ax.get_title() for ax in _visible_axes(figure)]
    assert titles == [
        "step 0: output (0, 0)",
        "step 3: output (1, 0)",
        "step 5: output (1, 2)",
        "step 8: output (2, 2)",
    ]
    assert "4 of 9 steps" in figure.get_suptitle()
    with pytest.raises(ValueError, match="^max_frames must be an int >= 1, got 0"):
        figures.conv_frames_figure(5, 3, max_frames=0)


def test_transposed_frames_count_output_pixels():
    o = arith.transposed_output_size(2, 3, 2, 0, 1, 1)
    figure = figures.conv_frames_figure(
        2, 3, 2, 0, transposed=True, output_padding=1
    )
    assert len(_visible_axes(figure)) == o * o


def test_animation_has_one_frame_per_output_pixel():
    animation = figures.conv_animation(5, 3, 2, 1, interval=100)  # 3×3 outputs
    assert list(animation.new_frame_seq()) == list(range(9))
    assert animation.to_jshtml().count("data:image/png;base64") == 9


def _stack(draw):
    count = draw(st.integers(1, 3))
    return [
        Layer(
            draw(st.integers(1, 4)),
            draw(st.integers(1, 3)),
            draw(st.integers(0, 2)),
            draw(st.integers(1, 2)),
        )
        for _ in range(count)
    ]


def _sizes(layers, n):
    sizes = [n]
    for layer in layers:
        sizes.append(
            _valid_conv(
                sizes[-1], layer.kernel, layer.stride, layer.padding, layer.dilation
            )
        )
        if sizes[-1] is None:
            return None
    return sizes


@settings(max_examples=80, deadline=None)
@given(data=st.data(), n=st.integers(6, 40))
def test_fan_in_matches_autograd_and_receptive_field(data, n):
    layers = _stack(data.draw)
    sizes = _sizes(layers, n)
    assume(sizes is not None)
    unit = data.draw(st.integers(0, sizes[-1] - 1))
    levels = figures.fan_in(layers, n, unit)

    # independent reference: gradient of one output unit of a torch stack with all-ones weights
    x = torch.ones(1, 1, n, dtype=torch.float64, requires_grad=True)
    y = x
    for layer in layers:
        ones = torch.ones(1, 1, layer.kernel, dtype=torch.float64)
        y = F.conv1d(
            y,
            ones,
            stride=layer.stride,
            padding=layer.padding,
            dilation=layer.dilation,
        )
    y[0, 0, unit].backward()
    feeding = torch.nonzero(x.grad[0, 0]).flatten().tolist()
    assert [u for u in levels[0] if 0 <= u < n] == feeding
    assert levels[-1] == [unit]

    inside = all(0 <= u < size for level, size in zip(levels, sizes) for u in level)
    if inside:  # no padding clipped the field: its extent is arith's r, centred at start + unit·jump
        field = arith.receptive_field(layers)[-1]
        centre = field.start + unit * field.jump
        assert (levels[0][0], levels[0][-1]) == (
            centre - (field.size - 1) / 2,
            centre + (field.size - 1) / 2,
        )


def test_fan_in_rejects_bad_units():
    with pytest.raises(ValueError, match=r"unit must be an int in 0..7"):
        figures.fan_in([Layer(3, 2, 1)], 16, 8)
    with pytest.raises(
        ValueError,
        match="^layers must hold at least one Layer, got an empty sequence",
    ):
        figures.fan_in([], 16, 0)
    with pytest.raises(ValueError, match="^input_size must be an int >= 1, got 0"):
        figures.fan_in([Layer(3)], 0, 0)
    with pytest.raises(
        TypeError, match="^input_size must be an int, got float 16.0"
    ):
        figures.fan_in([Layer(3)], 16.0, 0)
    with pytest.raises(
        TypeError,
        match="^layers must be a sequence of Layer objects, got Layer",
    ):
        figures.fan_in(Layer(3), 16, 0)
    with pytest.raises(
        TypeError, match=r"^layers\[1\] must be a minigen Layer, got tuple \(3, 1\)"
    ):
        figures.fan_in([Layer(3), (3, 1)], 16, 0)
    with pytest.raises(ValueError, match="^unit must be an int >= 0, got -1"):
        figures.fan_in([Layer(3)], 16, -1)
    with pytest.raises(TypeError, match="^unit must be an int, got str '1'"):
        figures.fan_in([Layer(3)], 16, "1")
    with pytest.raises(
        ValueError, match="layer 2 gets 2 cells: kernel 3 is larger"
    ):
        figures.fan_in([Layer(3, 2), Layer(3)], 6, 0)


def test_receptive_field_figure_refuses_more_cells_than_it_can_draw():
    with pytest.raises(
        ValueError, match="^input_size must be an int <= 100, got 1,000"
    ):
        figures.receptive_field_figure([Layer(3)], 1000)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda: figures.window_positions(5, 3, transposed="no"),
            TypeError,
            "^transposed must be True or False, got str 'no'",
        ),
        (
            lambda: figures.output_shape(5, 3, transposed=None),
            TypeError,
            "^transposed must be True or False, got NoneType",
        ),
        (
            lambda: figures.output_size_formula(5, 3, transposed=0),
            TypeError,
            "^transposed must be True or False, got int 0",
        ),
        (
            lambda: figures.conv_frames_figure(5, 3, transposed="yes"),
            TypeError,
            "^transposed must be True or False",
        ),
        (
            lambda: figures.window_positions(10**9, 3),
            ValueError,
            "^input size i must be an int <= 1,000,000",
        ),
        (
            lambda: figures.window_positions(200, 3),
            ValueError,
            "^the figure would draw 200 cells along one axis, more than MAX_CELLS = 100",
        ),
        (
            lambda: figures.window_positions(5.0, 3),
            TypeError,
            "^input size i must be an int, got float 5.0",
        ),
        (
            lambda: figures.conv_frame("ax", 5, 3),
            TypeError,
            "^ax must be a matplotlib Axes, got str 'ax'",
        ),
        (
            lambda: figures.conv_frame(_new_axes(), 5, 3, step=-1),
            ValueError,
            "^step must be an int >= 0, got -1",
        ),
        (
            lambda: figures.conv_frame(_new_axes(), 5, 3, step=1.0),
            TypeError,
            "^step must be an int, got float 1.0",
        ),
        (
            lambda: figures.conv_frames_figure(5, 3, max_frames=2.5),
            TypeError,
            "^max_frames must be an int, got float 2.5",
        ),
        (
            lambda: figures.conv_frames_figure(5, 3, ncols=0),
            ValueError,
            "^ncols must be an int >= 1, got 0",
        ),
        (
            lambda: figures.conv_animation(5, 3, interval=0),
            ValueError,
            "^interval must be an int >= 1, got 0",
        ),
        (
            lambda: figures.conv_animation(5, 3, interval=0.5),
            TypeError,
            "^interval must be an int, got float 0.5",
        ),
    ],
)
def test_bad_arguments_name_the_parameter(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_receptive_field_figure_is_labelled():
    layers = [
        Layer(3, 1, 1, name="conv1"),
        Layer(3, 2, 1, name="conv2"),
        Layer(2, 2, name="pool"),
    ]
    figure = figures.receptive_field_figure(layers, 16)
    (ax,) = figure.axes
    r = arith.receptive_field(layers)[-1].size
    assert (
        f"r = {r} pixels" in ax.get_title() and "unit 2 of pool" in ax.get_title()
    )
    assert ax.get_xlabel() == "position in the input (pixels)"
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert (
        len(labels) == 4
        and labels[0].startswith("input")
        and labels[3].startswith("pool: k=2 s=2 p=0")
    )
