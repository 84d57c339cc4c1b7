"""Interactive explorers for chapters 1 and 2, built on ipywidgets.

:class:`ConvExplorer` puts sliders on every number of Dumoulin & Visin's
convolution arithmetic ("A guide to convolution arithmetic for deep learning",
2016): input size, kernel, stride, padding, dilation, transposed or not,
output_padding, and the output pixel being computed. It redraws the sliding-window
frame of :func:`minigen.viz.conv_figures.conv_frame` and states the output size
from :mod:`minigen.ops.arith`; a configuration that does not exist shows the
arithmetic's own error message instead of raising.

:class:`InterpolationExplorer` (chapter 2) resizes an image with
:mod:`minigen.ops.interp` for a chosen mode (nearest, bilinear, bicubic), scale,
align_corners and antialias, and draws the weights one output pixel gives the
input pixels (the figures of :mod:`minigen.viz.interp_figures`).
"""

from __future__ import annotations

import html
import io
from contextlib import contextmanager
from typing import Any, Iterator

import ipywidgets as widgets
from matplotlib.figure import Figure
from torch import Tensor

from minigen.core.validators import (
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_tensor,
)
from minigen.ops import interp
from minigen.viz import conv_figures as figures
from minigen.viz import interp_figures
from minigen.viz.grids import to_numpy_image

# name -> (description, smallest value, largest slider value by default)
_SLIDERS: dict[str, tuple[str, int, int]] = {
    "i": ("input i", 1, 12),
    "k": ("kernel k", 1, 7),
    "s": ("stride s", 1, 4),
    "p": ("padding p", 0, 4),
    "d": ("dilation d", 1, 4),
    "output_padding": ("out. pad a", 0, 3),
}
_CONTROLS = (*_SLIDERS, "transposed", "step")


class ConvExplorer:
    """Sliders for one convolution's configuration, and the frame they give.

    ``widget`` is what a notebook displays (displaying the explorer itself works
    too); ``set(**values)`` moves the controls as a reader would; ``message`` is the
    text shown under the sliders (the output size, or why the configuration is
    invalid) and ``figure`` the matplotlib figure of the current frame.
    """

    def __init__(
        self,
        i: int = 5,
        k: int = 3,
        s: int = 1,
        p: int = 0,
        d: int = 1,
        *,
        transposed: bool = False,
        output_padding: int = 0,
        step: int = 0,
    ) -> None:
        self._quiet = False  # True while several controls change: redraw at the end
        wide = {"description_width": "initial"}
        options = dict(continuous_update=False, style=wide)
        self.sliders = {
            name: widgets.IntSlider(
                value=low, min=low, max=high, description=label, **options
            )
            for name, (label, low, high) in _SLIDERS.items()
        }
        self.transposed_box = widgets.Checkbox(
            value=False, description="transposed"
        )
        self.step_slider = widgets.IntSlider(
            value=0, min=0, max=0, description="output pixel (step)", style=wide
        )
        label = "play the sliding window"
        self.play = widgets.Play(min=0, max=0, interval=600, description=label)
        widgets.jslink((self.play, "value"), (self.step_slider, "value"))
        self.image = widgets.Image(format="png")
        self.text = widgets.HTML()
        self.figure = Figure(figsize=(7.0, 4.6), layout="constrained")
        self.message = ""
        self.valid = False

        controls = (*self.sliders.values(), self.transposed_box, self.step_slider)
        for control in controls:
            control.observe(self._on_change, names="value")
        columns = [
            [self.sliders[name] for name in ("i", "k", "s")],
            [self.sliders[name] for name in ("p", "d", "output_padding")],
            [self.transposed_box, self.step_slider, self.play],
        ]
        sliders = widgets.HBox([widgets.VBox(column) for column in columns])
        self.widget = widgets.VBox([sliders, self.text, self.image])
        config = dict(i=i, k=k, s=s, p=p, d=d, transposed=transposed)
        self.set(**config, output_padding=output_padding)
        if step != 0:  # an invalid configuration has no steps: it shows why instead
            self.set(step=step)

    @property
    def values(self) -> dict[str, Any]:
        """The current settings, by control name."""
        current = {name: slider.value for name, slider in self.sliders.items()}
        current["transposed"] = self.transposed_box.value
        current["step"] = self.step_slider.value
        return current

    def set(self, **values: Any) -> None:
        """Move controls by name, then redraw once.

        The names: i, k, s, p, d, output_padding, transposed, step.
        """
        unknown = sorted(set(values) - set(_CONTROLS))
        if unknown:
            raise TypeError(
                f"unknown control(s) {unknown}; the controls are {list(_CONTROLS)}"
            )
        for name, value in values.items():  # check everything before anything moves
            self._check(name, value)
        step = values.pop("step", None)
        try:
            with self._batch():
                for name, value in values.items():
                    if name == "transposed":
                        self.transposed_box.value = value
                    else:
                        slider = self.sliders[name]
                        # a larger value widens the slider: it is never clipped
                        slider.max = max(slider.max, value)
                        slider.value = value
                self._update_step_range()
                if step is not None:
                    self._move_step(step)
        finally:  # the picture matches the controls, even when the step was refused
            self._draw()

    def _check(self, name: str, value: Any) -> None:
        """A bool for transposed, else an int from the slider's minimum (0 for
        step)."""
        if name == "transposed":
            check_bool(name, value)
        else:
            check_int(name, value, 0 if name == "step" else self.sliders[name].min)

    def _move_step(self, step: int) -> None:
        if not self.valid:
            raise ValueError(f"cannot choose a step: {self.message}")
        if step > self.step_slider.max:
            raise ValueError(
                f"step {step} is out of range: this configuration has "
                f"{self.step_slider.max + 1} output pixels, so step must be in "
                f"0..{self.step_slider.max}"
            )
        self.step_slider.value = step

    @contextmanager
    def _batch(self) -> Iterator[None]:
        quiet, self._quiet = self._quiet, True
        try:
            yield
        finally:
            self._quiet = quiet

    def _configuration(self) -> dict[str, Any]:
        """The arguments of the conv_figures functions, from the controls."""
        config = self.values
        del config["step"]
        if not config["transposed"]:
            config["output_padding"] = 0
        return config

    def _update_step_range(self) -> None:
        """Check the configuration; fit the step slider to its output pixels.

        Called with redraws held back (inside ``_batch``): the caller draws once
        afterwards.
        """
        transposed = self.transposed_box.value
        self.sliders["output_padding"].disabled = not transposed  # only it uses a
        try:
            count = len(figures.window_positions(**self._configuration()))
        except ValueError as error:  # no such configuration: say why, draw nothing
            self.valid, self.message = False, f"invalid configuration: {error}"
            self.step_slider.disabled = self.play.disabled = True
            return
        self.valid = True
        self.step_slider.max = self.play.max = count - 1  # pulls the step inside
        self.step_slider.disabled = self.play.disabled = False

    def _on_change(self, change: dict[str, Any]) -> None:
        if self._quiet:
            return
        with self._batch():
            if change["owner"] is not self.step_slider:
                self._update_step_range()
        self._draw()

    def _draw(self) -> None:
        self.figure.clear()
        if not self.valid:
            _show_error(self.text, self.image, self.message)
            return
        config, step = self._configuration(), self.step_slider.value
        ax = self.figure.add_subplot()
        figures.conv_frame(ax, step=step, **config)
        formula = figures.output_size_formula(**config)
        top, left = figures.window_positions(**config)[step]
        height, width = figures.output_shape(**config)
        self.message = (
            f"output {height}×{width} pixels: {formula}\n"
            f"step {step}: output pixel {divmod(step, width)} comes from the "
            f"window whose top-left cell is (row {top}, col {left}) of the grid "
            "with zeros"
        )
        _show(self.text, self.image, self.message, self.figure)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict | None:
        return self.widget._repr_mimebundle_(**kwargs)


def _show(
    text: widgets.HTML, image: widgets.Image, message: str, figure: Figure
) -> None:
    """Put the message, line by line, in `text` and the figure, as a PNG, in
    `image`."""
    text.value = "<br>".join(html.escape(line) for line in message.split("\n"))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    image.value = buffer.getvalue()
    image.layout.display = None


def _show_error(text: widgets.HTML, image: widgets.Image, message: str) -> None:
    """Show `message` in red in `text`, and hide `image`."""
    text.value = f'<p style="color:#b00020">{html.escape(message)}</p>'
    image.layout.display = "none"


def conv_explorer(
    i: int = 5, k: int = 3, s: int = 1, p: int = 0, d: int = 1
) -> ConvExplorer:
    """Sliders for input size, kernel, stride, padding and dilation.

    And for transposed, output_padding and the step. Display the result in a
    notebook; ``.set(...)``, ``.message`` and ``.figure`` drive and read it.
    """
    return ConvExplorer(i, k, s, p, d)


class InterpolationExplorer:
    """Controls for one resize, and what it does to an image.

    The controls: mode, scale, align_corners, antialias. Shows the input crop, the
    resized crop (computed by :func:`minigen.ops.interp.interpolate`) and the
    weights one output pixel gives the input pixels along a row. ``widget`` is what
    a notebook displays; ``set(**values)`` moves the controls; ``message`` is the
    text under the controls (output size, source coordinates of the first and last
    output pixels); ``figure`` the figure.
    """

    def __init__(
        self,
        image: Tensor | None = None,
        scale: float = 2.0,
        mode: str = "bilinear",
        align_corners: bool = False,
        antialias: bool = False,
    ) -> None:
        if image is None:
            image = interp_figures.default_crop()
        check_tensor(
            "image", image, dims=3, floating=True, finite=True, shape="(C, H, W)"
        )
        if image.shape[0] not in (1, 3):
            raise ValueError(
                "image must be a (C, H, W) tensor with C = 1 or 3, got shape "
                f"{tuple(image.shape)}"
            )
        self.image_tensor = image
        modes = list(interp_figures.MODES)
        self.mode_dropdown = widgets.Dropdown(
            options=modes, value="bilinear", description="mode"
        )
        self.align_box = widgets.Checkbox(value=False, description="align_corners")
        label = "antialias (when shrinking)"
        self.antialias_box = widgets.Checkbox(value=False, description=label)
        scales = dict(value=2.0, min=0.25, max=4.0, step=0.05)
        self.scale_slider = widgets.FloatSlider(
            **scales, description="scale", continuous_update=False
        )
        self.pixel_slider = widgets.IntSlider(
            value=1,
            min=0,
            max=1,
            description="output pixel",
            continuous_update=False,
        )
        self.image = widgets.Image(format="png")
        self.text = widgets.HTML()
        self.figure = Figure(figsize=(8.0, 3.4), layout="constrained")
        self.message = ""
        self._quiet = False
        for control in self._controls.values():
            control.observe(self._on_change, names="value")
        columns = [
            [self.mode_dropdown, self.scale_slider, self.pixel_slider],
            [self.align_box, self.antialias_box],
        ]
        controls = widgets.HBox([widgets.VBox(column) for column in columns])
        self.widget = widgets.VBox([controls, self.text, self.image])
        options = dict(align_corners=align_corners, antialias=antialias)
        self.set(mode=mode, scale=scale, **options)

    @property
    def _controls(self) -> dict[str, widgets.ValueWidget]:
        return {
            "mode": self.mode_dropdown,
            "scale": self.scale_slider,
            "align_corners": self.align_box,
            "antialias": self.antialias_box,
            "output_pixel": self.pixel_slider,
        }

    @property
    def values(self) -> dict[str, Any]:
        """The current settings, by control name."""
        return {name: control.value for name, control in self._controls.items()}

    def set(self, **values: Any) -> None:
        """Move controls by name, then redraw once.

        The names: mode, scale, align_corners, antialias, output_pixel. An
        output_pixel past the last output pixel is refused; a scale that leaves
        fewer output pixels pulls the output pixel back to the last one.
        """
        names = list(self._controls)
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise TypeError(
                f"unknown control(s) {unknown}; the controls are {names}"
            )
        for name, value in values.items():  # check everything before anything moves
            self._check(name, value)
        pixel = values.pop("output_pixel", None)
        quiet, self._quiet = self._quiet, True
        try:
            for name, value in values.items():
                self._controls[name].value = value
            self._fit_pixel_slider()
            if pixel is not None:
                if pixel > self.pixel_slider.max:
                    raise ValueError(
                        f"output_pixel {pixel} is out of range: this resize has "
                        f"{self.pixel_slider.max + 1} output pixels per row"
                    )
                self.pixel_slider.value = pixel
        # the picture matches the controls, even when the pixel was refused
        finally:
            self._quiet = quiet
            self._draw()

    def _fit_pixel_slider(self) -> None:
        """One position of the output-pixel slider per output pixel of a row.

        Called with redraws held back.
        """
        in_size, scale = self.image_tensor.shape[-1], self.scale_slider.value
        try:
            out_size = interp_figures.output_size(in_size, scale)
        except ValueError:  # no output pixels: _draw says why
            return
        self.pixel_slider.max = out_size - 1  # a smaller max pulls the value inside

    def _check(self, name: str, value: Any) -> None:
        """The value of one control, checked before any control moves."""
        if name == "mode":
            check_choice(name, value, interp_figures.MODES)
        elif name == "output_pixel":
            check_int(name, value, 0)
        elif name in ("align_corners", "antialias"):
            check_bool(name, value)
        else:  # scale, within the slider's range
            check_float(name, value, self.scale_slider.min, self.scale_slider.max)

    def _on_change(self, change: dict[str, Any]) -> None:
        if self._quiet:
            return
        quiet, self._quiet = self._quiet, True
        try:
            self._fit_pixel_slider()
        finally:
            self._quiet = quiet
        self._draw()

    def _draw(self) -> None:
        mode, scale = self.mode_dropdown.value, self.scale_slider.value
        nearest = mode == "nearest"
        # align_corners and antialias are options of the filters only
        self.align_box.disabled = self.antialias_box.disabled = nearest
        align_corners = self.align_box.value and not nearest
        antialias = self.antialias_box.value and not nearest
        in_size = self.image_tensor.shape[-1]
        self.figure.clear()
        try:
            out_size = interp_figures.output_size(in_size, scale)
        except ValueError as error:  # too small an image for this scale: say why
            self.message = f"invalid configuration: {error}"
            _show_error(self.text, self.image, self.message)
            return
        options = (mode, align_corners, antialias)
        resized = interp_figures.resize(self.image_tensor, scale, *options)
        height = self.image_tensor.shape[-2]
        self.message = (
            f"{mode}: {height}×{in_size} → {resized.shape[-2]}×{out_size} pixels "
            f"(⌊size·{scale:g}⌋)\n"
            + self._coordinates_text(in_size, out_size, mode, align_corners)
        )
        before, after, weights = self.figure.subplots(
            1, 3, width_ratios=(1, 1, 1.6)
        )
        panels = ((before, self.image_tensor, "input"), (after, resized, "resized"))
        for ax, picture, title in panels:
            picture = picture.clamp(0, 1)  # bicubic may overshoot
            ax.imshow(to_numpy_image(picture), interpolation="nearest")
            ax.set_title(f"{title} {picture.shape[-2]}×{picture.shape[-1]}")
            ax.set_axis_off()
        options = dict(align_corners=align_corners, antialias=antialias)
        pixel = self.pixel_slider.value
        interp_figures.draw_weights(
            weights, in_size, out_size, mode, output_pixel=pixel, **options
        )
        _show(self.text, self.image, self.message, self.figure)

    @staticmethod
    def _coordinates_text(
        in_size: int, out_size: int, mode: str, align_corners: bool
    ) -> str:
        """Where the first and the last output pixel read the input."""
        last = out_size - 1
        if mode == "nearest":
            matrix = interp.resample_matrix(in_size, out_size, "nearest")
            copied = matrix.argmax(dim=1)  # (out_size,) the input pixel copied
            return (
                "nearest: output pixel x_out copies input pixel ⌊x_out·in/out⌋; "
                f"output pixel 0 copies input pixel {int(copied[0])}, output pixel "
                f"{last} copies input pixel {int(copied[-1])}"
            )
        coordinates = interp.source_coordinates(in_size, out_size, align_corners)
        if align_corners:
            rule = "x_in = x_out·(in − 1)/(out − 1)"
        else:
            rule = "x_in = (x_out + ½)·in/out − ½"
        first, final = float(coordinates[0]), float(coordinates[-1])
        return (
            f"align_corners={align_corners}: {rule}; output pixel 0 samples "
            f"x_in = {first:.4g}, output pixel {last} samples x_in = {final:.4g}"
        )

    def _repr_mimebundle_(self, **kwargs: Any) -> dict | None:
        return self.widget._repr_mimebundle_(**kwargs)


def interpolation_explorer(
    image: Tensor | None = None,
    scale: float = 2.0,
    mode: str = "bilinear",
    align_corners: bool = False,
) -> InterpolationExplorer:
    """A dropdown for the mode, a slider for the scale, checkboxes for the options.

    The options: align_corners and antialias. Display the result in a notebook;
    ``.set(...)``, ``.message`` and ``.figure`` drive and read it.
    """
    return InterpolationExplorer(image, scale, mode, align_corners)
