"""Tests for minigen.widgets: the explorers follow their controls and explain invalid configurations."""

import matplotlib

matplotlib.use("Agg")

import ipywidgets
import pytest
import torch
import torch.nn.functional as F

from minigen.ops import arith
from minigen.viz.widgets import (
    ConvExplorer,
    InterpolationExplorer,
    conv_explorer,
    interpolation_explorer,
)

PNG_SIGNATURE = b"\x89PNG"


def _arith_error(function, *args):
    with pytest.raises(ValueError) as error:
        function(*args)
    return str(error.value)


def test_starts_with_the_output_size_and_a_frame():
    explorer = conv_explorer(5, 3)
    assert isinstance(explorer.widget, ipywidgets.Widget)
    assert explorer.valid
    assert explorer.message.startswith(
        "output 3×3 pixels: o = ⌊(i + 2p − k)/s⌋ + 1 = ⌊(5 + 2·0 − 3)/1⌋ + 1 = 3"
    )
    assert bytes(explorer.image.value).startswith(PNG_SIGNATURE)
    assert explorer.step_slider.max == 8
    assert (
        "application/vnd.jupyter.widget-view+json" in explorer._repr_mimebundle_()
    )


def test_moving_a_slider_updates_message_figure_and_step_range():
    explorer = conv_explorer(5, 3)
    explorer.sliders["s"].value = 2  # as a reader dragging the stride slider
    o = arith.conv_output_size(5, 3, 2)
    assert explorer.message.startswith(f"output {o}×{o} pixels")
    assert explorer.step_slider.max == o * o - 1
    assert "s=2" in explorer.figure.axes[0].get_title()
    before = bytes(explorer.image.value)
    explorer.step_slider.value = 3
    assert bytes(explorer.image.value) != before  # the frame was redrawn
    assert "step 3: output pixel (1, 1)" in explorer.message
    assert "(row 2, col 2)" in explorer.message


def test_invalid_configuration_shows_the_arith_error_instead_of_raising():
    explorer = conv_explorer(5, 3)
    explorer.sliders["k"].value = 7
    assert not explorer.valid
    assert explorer.message == "invalid configuration: " + _arith_error(
        arith.conv_output_size, 5, 7
    )
    assert "kernel 7 is larger than padded input 5" in explorer.text.value
    assert explorer.image.layout.display == "none"
    assert explorer.step_slider.disabled

    explorer.sliders["p"].value = 1  # 5 + 2·1 = 7 cells: the kernel fits again
    assert explorer.valid and explorer.message.startswith("output 1×1 pixels")
    assert (
        explorer.image.layout.display is None and not explorer.step_slider.disabled
    )


def test_starting_from_an_invalid_configuration_does_not_raise():
    explorer = ConvExplorer(3, 5)
    assert (
        not explorer.valid
        and "kernel 5 is larger than padded input 3" in explorer.message
    )


def test_transposed_checkbox_and_output_padding():
    explorer = conv_explorer(3, 3, s=2, p=1)
    assert explorer.sliders["output_padding"].disabled
    explorer.transposed_box.value = True
    assert not explorer.sliders["output_padding"].disabled
    o = arith.transposed_output_size(3, 3, 2, 1)
    assert explorer.message.startswith(
        f"output {o}×{o} pixels: o = s(i−1) − 2p + d(k−1) + a + 1"
    )
    assert explorer.step_slider.max == o * o - 1

    explorer.sliders[
        "output_padding"
    ].value = 2  # torch refuses output_padding >= max(s, d)
    assert explorer.message == "invalid configuration: " + _arith_error(
        arith.transposed_output_size, 3, 3, 2, 1, 1, 2
    )

    explorer.set(output_padding=1, step=0)
    assert explorer.valid and explorer.message.endswith(
        "step 0: output pixel (0, 0) comes from the window whose top-left cell is (row 0, col 0) of the grid with zeros"
    )
    assert explorer.values == {
        "i": 3,
        "k": 3,
        "s": 2,
        "p": 1,
        "d": 1,
        "output_padding": 1,
        "transposed": True,
        "step": 0,
    }


def test_set_changes_several_controls_then_draws_once():
    explorer = conv_explorer()
    explorer.set(i=7, k=3, d=2, step=8)
    assert explorer.values["step"] == 8
    assert explorer.message.startswith(
        "output 3×3 pixels: o = ⌊(i + 2p − k_eff)/s⌋ + 1"
    )
    assert "step 8: output pixel (2, 2)" in explorer.message


def test_set_widens_sliders_instead_of_clipping():
    explorer = conv_explorer()
    explorer.set(i=30)
    assert explorer.values["i"] == 30 and explorer.sliders["i"].max >= 30


def test_set_rejects_bad_values_before_moving_anything():
    explorer = conv_explorer()
    before = explorer.values
    with pytest.raises(TypeError, match=r"unknown control\(s\) \['kernel'\]"):
        explorer.set(kernel=3)
    with pytest.raises(TypeError, match="i must be an int"):
        explorer.set(k=5, i=True)
    with pytest.raises(ValueError, match="^i must be an int >= 1, got 0"):
        explorer.set(i=0)
    with pytest.raises(
        ValueError, match="^p must be an int <= 1,000,000, got 1,000,000,000"
    ):
        explorer.set(p=10**9)
    with pytest.raises(ValueError, match="^step must be an int >= 0, got -1"):
        explorer.set(step=-1)
    with pytest.raises(
        TypeError, match="^transposed must be True or False, got str 'yes'"
    ):
        explorer.set(transposed="yes")
    assert explorer.values == before
    with pytest.raises(ValueError, match=r"step 9 is out of range: .* 0\.\.8"):
        explorer.set(step=9)
    explorer.set(k=7)
    with pytest.raises(
        ValueError, match="cannot choose a step: invalid configuration"
    ):
        explorer.set(step=0)


# --- chapter 2: the interpolation explorer


def test_interpolation_explorer_starts_with_sizes_and_coordinates():
    explorer = interpolation_explorer()
    assert isinstance(explorer.widget, ipywidgets.Widget)
    assert explorer.message.startswith("bilinear: 32×32 → 64×64 pixels")
    # half-pixel centres: x_in = (x_out + ½)·32/64 − ½
    assert (
        "output pixel 0 samples x_in = -0.25, output pixel 63 samples x_in = 31.25"
        in explorer.message
    )
    assert bytes(explorer.image.value).startswith(PNG_SIGNATURE)
    assert (
        "application/vnd.jupyter.widget-view+json" in explorer._repr_mimebundle_()
    )


def test_interpolation_explorer_follows_its_controls():
    image = torch.rand(1, 10, 10, generator=torch.Generator().manual_seed(0))
    explorer = InterpolationExplorer(image)
    explorer.align_box.value = True  # as a reader ticking the box
    assert (
        "x_in = x_out·(in − 1)/(out − 1); output pixel 0 samples x_in = 0, output pixel 19 samples x_in = 9"
        in explorer.message
    )
    explorer.set(mode="bicubic", scale=0.5, antialias=True)
    assert explorer.message.startswith("bicubic: 10×10 → 5×5 pixels")
    resized = explorer.figure.axes[1].get_images()[0].get_array()
    expected = F.interpolate(
        image[None], size=(5, 5), mode="bicubic", align_corners=True, antialias=True
    )[0, 0]
    assert torch.allclose(
        torch.as_tensor(resized.data).float(), expected.clamp(0, 1), atol=1e-5
    )

    explorer.mode_dropdown.value = "nearest"
    assert explorer.align_box.disabled and explorer.antialias_box.disabled
    assert "output pixel 4 copies input pixel 8" in explorer.message  # ⌊4·10/5⌋ = 8
    assert explorer.values == {
        "mode": "nearest",
        "scale": 0.5,
        "align_corners": True,
        "antialias": True,
        "output_pixel": 1,
    }


def test_interpolation_explorer_plots_the_chosen_output_pixel():
    explorer = InterpolationExplorer(scale=1.5, mode="bicubic")
    explorer.set(output_pixel=20)
    assert (
        explorer.figure.axes[2].get_title().startswith("weights of output pixel 20")
    )
    explorer.set(
        scale=0.25
    )  # 8 output pixels: the slider is pulled back to the last one
    assert explorer.pixel_slider.max == 7 and explorer.values["output_pixel"] == 7
    with pytest.raises(
        ValueError,
        match="output_pixel 8 is out of range: this resize has 8 output pixels per row",
    ):
        explorer.set(output_pixel=8)


def test_interpolation_explorer_explains_a_scale_too_small_for_the_image():
    explorer = InterpolationExplorer(torch.zeros(3, 2, 2))
    explorer.scale_slider.value = 0.25
    assert explorer.message.startswith(
        "invalid configuration: scale 0.25 shrinks 2 pixels to 0"
    )
    assert explorer.image.layout.display == "none"
    explorer.scale_slider.value = 1.0
    assert explorer.image.layout.display is None


def test_interpolation_explorer_rejects_bad_values_before_moving_anything():
    explorer = InterpolationExplorer()
    before = explorer.values
    with pytest.raises(
        ValueError,
        match=r"^mode must be one of 'nearest', 'bilinear', 'bicubic', got str 'area'",
    ):
        explorer.set(scale=3.0, mode="area")
    with pytest.raises(ValueError, match=r"^scale must lie in \[0.25, 4\], got 8"):
        explorer.set(scale=8)
    with pytest.raises(ValueError, match="^scale must be a finite number, got nan"):
        explorer.set(scale=float("nan"))
    with pytest.raises(TypeError, match="^scale must be a number, got str '2'"):
        explorer.set(scale="2")
    with pytest.raises(
        TypeError, match="^align_corners must be True or False, got int 1"
    ):
        explorer.set(align_corners=1)
    with pytest.raises(
        TypeError, match="^antialias must be True or False, got str 'no'"
    ):
        explorer.set(antialias="no")
    with pytest.raises(
        TypeError, match="^output_pixel must be an int, got float 1.0"
    ):
        explorer.set(output_pixel=1.0)
    with pytest.raises(TypeError, match=r"unknown control\(s\) \['size'\]"):
        explorer.set(size=3)
    with pytest.raises(
        ValueError,
        match=r"image must be a 3-d tensor \(C, H, W\), got shape \(5, 5\)",
    ):
        InterpolationExplorer(torch.zeros(5, 5))
    with pytest.raises(
        ValueError,
        match=r"image must be a \(C, H, W\) tensor with C = 1 or 3, got shape \(2, 5, 5\)",
    ):
        InterpolationExplorer(torch.zeros(2, 5, 5))
    with pytest.raises(TypeError, match="^image must be a torch.Tensor"):
        InterpolationExplorer([[[0.0]]])
    with pytest.raises(TypeError, match="^image must be a floating-point tensor"):
        InterpolationExplorer(torch.zeros(3, 5, 5, dtype=torch.uint8))
    with pytest.raises(ValueError, match="^image holds 75 NaN or infinite values"):
        InterpolationExplorer(torch.full((3, 5, 5), float("nan")))
    with pytest.raises(
        TypeError, match="^align_corners must be True or False, got str 'no'"
    ):
        InterpolationExplorer(align_corners="no")
    assert explorer.values == before
