import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from minigen.core.train import History
from minigen.viz.grids import ActualSize, image_grid, plot_history, to_numpy_image


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@settings(max_examples=30, deadline=None)
@given(
    st.sampled_from([1, 3]),
    st.integers(1, 9),
    st.integers(1, 9),
    st.integers(0, 2**31 - 1),
)
def test_channels_first_becomes_channels_last(channels, height, width, seed):
    image = torch.rand(
        channels, height, width, generator=torch.Generator().manual_seed(seed)
    )
    array = to_numpy_image(image)
    expected = image.numpy()[0] if channels == 1 else image.permute(1, 2, 0).numpy()
    assert array.dtype == np.float32
    np.testing.assert_array_equal(array, expected)


def test_two_dimensional_numpy_and_bf16_inputs():
    gray = np.linspace(0, 1, 12, dtype=np.float64).reshape(3, 4)
    np.testing.assert_allclose(to_numpy_image(gray), gray, rtol=1e-6)
    half = torch.tensor([[0.0, 0.5], [1.0, 0.25]], dtype=torch.bfloat16)
    np.testing.assert_array_equal(to_numpy_image(half), [[0.0, 0.5], [1.0, 0.25]])


def test_values_outside_unit_range_are_refused_not_clipped():
    with pytest.raises(ValueError, match=r"\[-1, 1\].*normalize=True"):
        to_numpy_image(torch.tensor([[-1.0, 1.0]]))
    with pytest.raises(ValueError, match="NaN"):
        to_numpy_image(torch.tensor([[0.0, float("nan")]]))
    assert to_numpy_image(torch.tensor([[1.0 + 1e-5, -1e-5]])).tolist() == [
        [1.0, 0.0]
    ]  # rounding slack only


def test_normalize_rescales_min_to_max():
    image = torch.tensor([[[-2.0, 0.0], [2.0, 1.0]]])
    np.testing.assert_allclose(
        to_numpy_image(image, normalize=True), [[0.0, 0.5], [1.0, 0.75]]
    )
    assert not to_numpy_image(torch.full((2, 2), 7.0), normalize=True).any()


@pytest.mark.parametrize(
    "shape, message",
    [
        ((2, 4, 4), r"C = 1 or 3.*\(2, 4, 4\)"),
        ((4, 4, 3), "channels last"),
        ((1, 1, 4, 4), "got shape"),
        ((5,), "got shape"),
        ((0, 4), "empty"),
    ],
)
def test_bad_image_shapes(shape, message):
    with pytest.raises(ValueError, match=message):
        to_numpy_image(torch.zeros(shape))


def test_image_grid_axes_titles_and_pixels_round_trip():
    images = torch.rand(5, 3, 6, 7)
    titles = [f"image {i}" for i in range(4)] + [
        "a small red circle at the top left of a blue square " * 2
    ]
    fig = image_grid(images, titles=titles, ncols=3, suptitle="five")
    assert len(fig.axes) == 5  # the sixth cell of the 2x3 grid is removed
    assert [ax.get_title() for ax in fig.axes[:4]] == titles[:4]
    long = fig.axes[4].get_title()
    assert (
        "\n" in long and long.replace("\n", " ") == titles[4].strip()
    )  # wrapped, words kept
    assert fig._suptitle.get_text() == "five"
    for ax, image in zip(fig.axes, images):
        np.testing.assert_array_equal(
            ax.images[0].get_array(), image.permute(1, 2, 0).numpy()
        )


def test_image_grid_of_one_channel_list_uses_a_fixed_gray_scale():
    images = [torch.full((1, 4, 4), 0.2), torch.rand(4, 4)]
    fig = image_grid(images, cmap="gray")
    assert len(fig.axes) == 2
    shown = fig.axes[0].images[0]
    assert shown.get_clim() == (0.0, 1.0) and shown.get_cmap().name == "gray"
    np.testing.assert_array_equal(shown.get_array(), images[0][0].numpy())


@pytest.mark.parametrize(
    "images, titles, error, message",
    [
        (torch.rand(3, 4, 4), None, ValueError, r"\(N, C, H, W\).*\[image\]"),
        ([], None, ValueError, "^images must hold 1 to 256 images, got 0"),
        (
            torch.rand(257, 1, 2, 2),
            None,
            ValueError,
            "^images must hold 1 to 256 images, got 257",
        ),
        (torch.rand(2, 1, 4, 4), ["one"], ValueError, "1 titles for 2 images"),
        (
            torch.rand(2, 1, 4, 4),
            "ab",
            TypeError,
            "^titles must be a list of strings, one per image, got str 'ab'",
        ),
        (
            torch.rand(2, 1, 4, 4),
            ["one", 2],
            TypeError,
            r"^titles\[1\] must be str, got int 2",
        ),
        (torch.rand(1, 2, 4, 4), None, ValueError, "C = 1 or 3"),
        (42, None, TypeError, "list of images"),
        (
            [torch.rand(4, 4), "image"],
            None,
            TypeError,
            "^image must be a torch.Tensor or NumPy array, got str",
        ),
    ],
)
def test_image_grid_rejects_bad_input(images, titles, error, message):
    with pytest.raises(error, match=message):
        image_grid(images, titles=titles)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(ncols=0), ValueError, "^ncols must be an int >= 1, got 0"),
        (dict(ncols=2.0), TypeError, "^ncols must be an int, got float 2.0"),
        (dict(ncols=10**9), ValueError, "^ncols must be an int <= 1,000,000"),
        (
            dict(scale=float("nan")),
            ValueError,
            "^scale must be a finite number, got nan",
        ),
        (
            dict(scale=float("inf")),
            ValueError,
            "^scale must be a finite number, got inf",
        ),
        (dict(scale=0), ValueError, r"^scale must lie in \(0, 100\], got 0"),
        (dict(scale=1e9), ValueError, r"^scale must lie in \(0, 100\], got 1e\+09"),
        (
            dict(title_fontsize=-8),
            ValueError,
            r"^title_fontsize must lie in \(0, 100\]",
        ),
        (dict(suptitle=3), TypeError, "^suptitle must be str, got int 3"),
        (
            dict(normalize="yes"),
            TypeError,
            "^normalize must be True or False, got str 'yes'",
        ),
        (
            dict(cmap="greyscale"),
            ValueError,
            "^cmap must be a matplotlib colour map such as 'gray' or 'viridis', got 'greyscale'",
        ),
        (
            dict(cmap=3),
            TypeError,
            "^cmap must be a colour map name or Colormap, got int 3",
        ),
    ],
)
def test_image_grid_checks_its_options(kwargs, error, message):
    with pytest.raises(error, match=message):
        image_grid(torch.rand(2, 1, 4, 4), **kwargs)


@pytest.mark.parametrize(
    "image, kwargs, error, message",
    [
        (
            torch.zeros(4, 4),
            dict(normalize=1),
            TypeError,
            "^normalize must be True or False, got int 1",
        ),
        (
            [[0.0, 1.0]],
            {},
            TypeError,
            "^image must be a torch.Tensor or NumPy array, got list",
        ),
        (
            np.array([["a", "b"]]),
            {},
            TypeError,
            r"^image must hold real numbers \(bool, int or float\), got dtype <U1",
        ),
        (
            torch.zeros(4, 4, dtype=torch.complex64),
            {},
            TypeError,
            "^image must hold real numbers",
        ),
    ],
)
def test_to_numpy_image_checks_types(image, kwargs, error, message):
    with pytest.raises(error, match=message):
        to_numpy_image(image, **kwargs)


def make_history(losses, start=0):
    return History(
        steps=list(range(start, start + len(losses))), losses=list(losses)
    )


def test_plot_history_lines_match_the_history():
    history = make_history([4.0, 2.0, 1.0, 0.5])
    ax = plot_history(history)
    (line,) = ax.lines
    np.testing.assert_array_equal(line.get_xdata(), history.steps)
    np.testing.assert_array_equal(line.get_ydata(), history.losses)
    assert (
        ax.get_xlabel() == "step"
        and ax.get_ylabel() == "loss"
        and ax.get_yscale() == "log"
    )
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["loss"]


def test_plot_history_of_several_runs_with_smoothing():
    runs = {
        "sgd": make_history([4.0, 3.0, 2.0, 1.0]),
        "adam": make_history([3.0, 1.0, 0.5], start=10),
    }
    fig, ax = plt.subplots()
    assert plot_history(runs, ax=ax, smooth=2, logy=False) is ax
    raw_sgd, smooth_sgd, raw_adam, smooth_adam = ax.lines
    np.testing.assert_allclose(smooth_sgd.get_ydata(), [4.0, 3.5, 2.5, 1.5])
    np.testing.assert_array_equal(raw_adam.get_xdata(), [10, 11, 12])
    assert (
        smooth_adam.get_color() == raw_adam.get_color() and raw_adam.get_alpha() < 1
    )
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "sgd (mean of 2)",
        "adam (mean of 2)",
    ]
    assert ax.get_yscale() == "linear"


@pytest.mark.parametrize(
    "history, error, message",
    [
        (History(), ValueError, "no logged loss"),
        (make_history([1.0, -0.5]), ValueError, "logy=False"),
        (
            {},
            ValueError,
            "^history must be a History or a non-empty dict of them, got an empty dict",
        ),
        (
            [1.0, 0.5],
            TypeError,
            r"^history must be a History or a dict name -> History, got list \[1.0, 0.5\]",
        ),
        (
            {"a": [1.0]},
            TypeError,
            r"^history\['a'\] must be a History, got list \[1.0\]",
        ),
    ],
)
def test_plot_history_rejects_bad_input(history, error, message):
    with pytest.raises(error, match=message):
        plot_history(history)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(logy="no"), TypeError, "^logy must be True or False, got str 'no'"),
        (dict(smooth=0), ValueError, "^smooth must be an int >= 1, got 0"),
        (dict(smooth=2.5), TypeError, "^smooth must be an int, got float 2.5"),
        (
            dict(ax="axes"),
            TypeError,
            "^ax must be a matplotlib Axes, got str 'axes'",
        ),
    ],
)
def test_plot_history_checks_its_options(kwargs, error, message):
    with pytest.raises(error, match=message):
        plot_history(make_history([2.0, 1.0]), **kwargs)


def test_image_grid_keeps_line_breaks_in_titles():
    title = "true: a small red circle at the top left\nread: a small red circle at the top left"
    fig = image_grid(torch.zeros(1, 3, 4, 4), [title], scale=1.5)
    lines = fig.axes[0].get_title().splitlines()
    assert lines[0].startswith("true:") and any(
        line.startswith("read:") for line in lines[1:]
    )


# --- ActualSize: pixel-exact HTML ---


def decoded_images(html_text):
    import base64
    import io
    import re

    from PIL import Image

    found = re.findall(r'base64,([^"]+)" width="(\d+)" height="(\d+)"', html_text)
    return [
        (np.asarray(Image.open(io.BytesIO(base64.b64decode(data)))), int(w), int(h))
        for data, w, h in found
    ]


def test_actual_size_stores_the_pixels_exactly_and_sizes_them_by_zoom():
    g = torch.Generator().manual_seed(0)
    colour, grey = (
        torch.rand(3, 4, 5, generator=g),
        torch.rand(1, 6, 7, generator=g),
    )
    shown = ActualSize([colour, grey], ["colour", "grey"], zoom=3)
    (rgb, w1, h1), (mono, w2, h2) = decoded_images(shown._repr_html_())
    expected = torch.round(colour.permute(1, 2, 0) * 255).to(torch.uint8).numpy()
    assert np.array_equal(rgb, expected)
    assert np.array_equal(mono, torch.round(grey[0] * 255).to(torch.uint8).numpy())
    assert (w1, h1, w2, h2) == (15, 12, 21, 18)
    assert "pixelated" in shown._repr_html_()


def test_actual_size_escapes_titles_and_keeps_their_line_breaks():
    shown = ActualSize(torch.zeros(1, 1, 2, 2), ["a < b & c\nsecond"])
    assert "a &lt; b &amp; c<br>second" in shown._repr_html_()


@pytest.mark.parametrize(
    "kwargs, error",
    [
        (dict(images=torch.full((1, 3, 2, 2), 1.5)), ValueError),  # not in [0, 1]
        (dict(images=torch.zeros(2, 1, 2, 2), titles=["one"]), ValueError),
        (dict(images=torch.zeros(1, 1, 2, 2), zoom=0), ValueError),
        (dict(images=torch.zeros(1, 1, 2, 2), zoom=1.5), TypeError),
    ],
)
def test_actual_size_rejects_bad_input(kwargs, error):
    with pytest.raises(error):
        ActualSize(**kwargs)
