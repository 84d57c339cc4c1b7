"""Tests for minigen.interp_figures: the figures draw what torch computes, with titles and labels."""

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from minigen.data.photo import grace_hopper
from minigen.viz import interp_figures


def test_kernel_figure_has_four_labelled_curves():
    figure = interp_figures.kernel_figure()
    ax = figure.axes[0]
    assert len(ax.get_legend().get_texts()) == 4
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    cubic_075 = ax.get_lines()[3].get_ydata()
    assert cubic_075.min() < 0  # the negative lobe the title talks about


def test_nearest_kernel_is_a_half_open_box():
    t = torch.tensor([-0.51, -0.5, 0.0, 0.49, 0.5])
    assert interp_figures.nearest_kernel(t).tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]


def test_separable_kernel_is_the_outer_product():
    figure = interp_figures.separable_kernel_figure(a=-0.5)
    kernel_2d = figure.axes[1].get_images()[0].get_array()
    profile = figure.axes[0].get_lines()[0].get_ydata()
    profile = torch.as_tensor(profile)
    assert torch.allclose(
        torch.as_tensor(kernel_2d.data), torch.outer(profile, profile)
    )
    assert kernel_2d.max() == pytest.approx(1.0) and kernel_2d.min() < 0


@pytest.mark.parametrize(
    ("mode", "align_corners"),
    [
        ("bilinear", False),
        ("bilinear", True),
        ("bicubic", False),
        ("nearest", False),
    ],
)
def test_draw_weights_shows_torch_weights(mode, align_corners):
    in_size, out_size, pixel = 6, 13, 4
    ax = Figure().add_subplot()
    weights = interp_figures.draw_weights(
        ax, in_size, out_size, mode, align_corners=align_corners, output_pixel=pixel
    )
    one_hots = torch.eye(in_size, dtype=torch.float64).reshape(
        in_size, 1, 1, in_size
    )  # input pixel j alone lit
    options = {} if mode == "nearest" else dict(align_corners=align_corners)
    expected = F.interpolate(one_hots, size=(1, out_size), mode=mode, **options)[
        :, 0, 0, pixel
    ]  # (in_size,)
    assert torch.allclose(weights.double(), expected, atol=1e-6)
    heights = [bar.get_height() for bar in ax.patches]
    assert torch.allclose(
        torch.tensor(heights, dtype=torch.float64), expected, atol=1e-6
    )
    assert f"output pixel {pixel}" in ax.get_title()


def test_draw_weights_with_antialias_shows_torch_weights_when_shrinking():
    in_size, out_size, pixel = 16, 5, 2
    weights = interp_figures.draw_weights(
        Figure().add_subplot(),
        in_size,
        out_size,
        "bicubic",
        antialias=True,
        output_pixel=pixel,
    )
    one_hots = torch.eye(in_size, dtype=torch.float64).reshape(
        in_size, 1, 1, in_size
    )
    expected = F.interpolate(
        one_hots,
        size=(1, out_size),
        mode="bicubic",
        align_corners=False,
        antialias=True,
    )[:, 0, 0, pixel]
    assert torch.allclose(weights.double(), expected, atol=1e-6)
    assert (weights != 0).sum() > 4  # the kernel is widened by the shrink factor


def test_draw_weights_rejects_an_output_pixel_out_of_range():
    with pytest.raises(
        ValueError, match=r"output_pixel must be in 0..4 for 5 output pixels, got 5"
    ):
        interp_figures.draw_weights(Figure().add_subplot(), 3, 5, output_pixel=5)


def test_resize_matches_torch_and_floors_the_size():
    image = grace_hopper()[:, :20, :30]
    resized = interp_figures.resize(image, 1.5, "bicubic", align_corners=True)
    expected = F.interpolate(
        image[None], size=(30, 45), mode="bicubic", align_corners=True
    )[0]
    assert torch.allclose(resized, expected, atol=1e-5)
    assert interp_figures.output_size(7, 0.5) == 3
    with pytest.raises(ValueError, match="use a scale >= 0.143"):
        interp_figures.output_size(7, 0.1)
    with pytest.raises(
        ValueError,
        match=r"^image must be a 3-d tensor \(C, H, W\), got shape \(20, 30\)",
    ):
        interp_figures.resize(image[0], 2.0, "nearest")


@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda: interp_figures.resize(
                torch.rand(1, 4, 4), 2.0, "bilinear", align_corners="no"
            ),
            TypeError,
            "^align_corners must be True or False, got str 'no'",
        ),
        (
            lambda: interp_figures.resize(
                torch.rand(1, 4, 4), 2.0, "nearest", antialias=1
            ),
            TypeError,
            "^antialias must be True or False, got int 1",
        ),
        (
            lambda: interp_figures.resize(
                torch.rand(1, 4, 4), float("nan"), "bilinear"
            ),
            ValueError,
            "^scale must be a finite number, got nan",
        ),
        (
            lambda: interp_figures.resize(torch.rand(1, 4, 4), 2.0, "area"),
            ValueError,
            "^mode must be one of 'nearest', 'bilinear', 'bicubic', got str 'area'",
        ),
        (
            lambda: interp_figures.resize([[[0.0]]], 2.0, "nearest"),
            TypeError,
            "^image must be a torch.Tensor",
        ),
        (
            lambda: interp_figures.output_size(7, 1e9),
            ValueError,
            "^scale 1000000000.0 grows 7 pixels to 7000000000; use a scale <= 585",
        ),
        (
            lambda: interp_figures.output_size(7.0, 2),
            TypeError,
            "^in_size must be an int, got float 7.0",
        ),
        (
            lambda: interp_figures.output_size(7, -1),
            ValueError,
            r"^scale must lie in \(0, inf\), got -1",
        ),
        (
            lambda: interp_figures.draw_weights(
                Figure().add_subplot(), 3, 5, align_corners="yes"
            ),
            TypeError,
            "^align_corners must be True or False",
        ),
        (
            lambda: interp_figures.draw_weights(
                Figure().add_subplot(), 3, 5, "nearest", antialias=None
            ),
            TypeError,
            "^antialias must be True or False",
        ),
        (
            lambda: interp_figures.draw_weights(Figure().add_subplot(), 3, "5"),
            TypeError,
            "^out_size must be an int, got str '5'",
        ),
        (
            lambda: interp_figures.draw_weights(
                Figure().add_subplot(), 3, 5, output_pixel=-1
            ),
            ValueError,
            "^output_pixel must be an int >= 0, got -1",
        ),
        (
            lambda: interp_figures.draw_weights(None, 3, 5),
            TypeError,
            "^ax must be a matplotlib Axes, got NoneType",
        ),
        (
            lambda: interp_figures.separable_kernel_figure(a=float("nan")),
            ValueError,
            "^a must be a finite number",
        ),
        (
            lambda: interp_figures.nearest_kernel([0.0]),
            TypeError,
            "^t must be a torch.Tensor, got list",
        ),
        (
            lambda: interp_figures.resampling_figure(modes="bilinear"),
            TypeError,
            "^modes must be a list of mode names, got str",
        ),
        (
            lambda: interp_figures.resampling_figure(modes=["bilinear", "area"]),
            ValueError,
            r"^modes\[1\] must be one of 'nearest', 'bilinear', 'bicubic', got str 'area'",
        ),
        (
            lambda: interp_figures.resampling_figure(modes=[]),
            ValueError,
            "^modes must name at least one mode, got an empty list",
        ),
        (
            lambda: interp_figures.resampling_figure(scale=0),
            ValueError,
            r"^scale must lie in \(0, inf\), got 0",
        ),
    ],
)
def test_bad_arguments_name_the_parameter(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_default_crop_is_small_and_in_range():
    crop = interp_figures.default_crop()
    assert crop.shape == (3, 32, 32) and 0 <= crop.min() and crop.max() <= 1


def test_resampling_figure_has_a_panel_per_mode_and_align_corners():
    figure = interp_figures.resampling_figure(scale=2.0)
    titles = [ax.get_title() for ax in figure.axes]
    assert len(titles) == 6  # input, nearest, bilinear ×2, bicubic ×2
    assert titles[0] == "input 32×32" and titles[1] == "nearest"
    assert sum("align_corners=True" in title for title in titles) == 2
    assert all(
        ax.get_images()[0].get_array().shape[:2] == (64, 64)
        for ax in figure.axes[1:]
    )
