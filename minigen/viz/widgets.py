"""Interactive explorers for chapters 1 and 2, built on ipywidgets.

:class:`ConvExplorer` puts sliders on every number of Dumoulin & Visin's convolution
arithmetic ("A guide to convolution arithmetic for deep learning", 2016): input size, kernel,
stride, padding, dilation, transposed or not, output_padding, and the output pixel being
computed. It redraws the sliding-window frame of :func:`minigen.figures.conv_frame` and states
the output size from :mod:`minigen.arith`; a configuration that does not exist shows the
arithmetic's own error message instead of raising.

:class:`InterpolationExplorer` (chapter 2) resizes an image with :mod:`minigen.interp` for a chosen
mode (nearest, bilinear, bicubic), scale, align_corners and antialias, and draws the weights one
output pixel gives the input pixels (the figures of :mod:`minigen.interp_figures`).
"""

from __future__ import annotations

import html
import io
from contextlib import contextmanager
from typing import Any, Iterator

import ipywidgets as widgets
from matplotlib.figure import Figure
from torch import Tensor

from minigen.viz import conv_figures as figures, interp_figures
from minigen.ops import interp
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
    """Sliders for one convolution's configuration and the sliding-window frame they give.

    ``widget`` is what a notebook displays (displaying the explorer itself works too);
    ``set(**values)`` moves the controls as a reader would; ``message`` is the text shown
    under the sliders (the output size, or why the configuration is invalid) and
    ``figure`` the matplotlib figure of the current frame.
    """

    def __init__(self, i: int = 5, k: int = 3, s: int = 1, p: int = 0, d: int = 1, *,
                 transposed: bool = False, output_padding: int = 0, step: int = 0) -> None:
        self._quiet = False  # True while several controls change at once: redraw only at the end
        self.sliders = {
            name: widgets.IntSlider(value=low, min=low, max=high, description=label,
                                    continuous_update=False, style={"description_width": "initial"})
            for name, (label, low, high) in _SLIDERS.items()
        }
        self.transposed_box = widgets.Checkbox(value=False, description="transposed")
        self.step_slider = widgets.IntSlider(value=0, min=0, max=0, description="output pixel (step)",
                                             style={"description_width": "initial"})
        self.play = widgets.Play(min=0, max=0, interval=600, description="play the sliding window")
        widgets.jslink((self.play, "value"), (self.step_slider, "value"))
        self.image = widgets.Image(format="png")
        self.text = widgets.HTML()
        self.figure = Figure(figsize=(7.0, 4.6), layout="constrained")
        self.message = ""
        self.valid = False

        for control in (*self.sliders.values(), self.transposed_box, self.step_slider):
            control.observe(self._on_change, names="value")
        self.widget = widgets.VBox([
            widgets.HBox([widgets.VBox([self.sliders[n] for n in ("i", "k", "s")]),
                          widgets.VBox([self.sliders[n] for n in ("p", "d", "output_padding")]),
                          widgets.VBox([self.transposed_box, self.step_slider, self.play])]),
            self.text,
            self.image,
        ])
        self.set(i=i, k=k, s=s, p=p, d=d, transposed=transposed, output_padding=output_padding)
        if step != 0:  # an invalid configuration has no steps, and shows why instead of raising
            self.set(step=step)

    @property
    def values(self) -> dict[str, Any]:
        """The current settings, by control name."""
        current: dict[str, Any] = {name: slider.value for name, slider in self.sliders.items()}
        current["transposed"] = self.transposed_box.value
        current["step"] = self.step_slider.value
        return current

    def set(self, **values: Any) -> None:
        """Move controls, by name (i, k, s, p, d, output_padding, transposed, step), then redraw once."""
        unknown = sorted(set(values) - set(_CONTROLS))
        if unknown:
            raise TypeError(f"unknown control(s) {unknown}; the controls are {list(_CONTROLS)}")
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
                        slider.max = max(slider.max, value)  # a larger value widens the slider, never clipped
                        slider.value = value
                self._update_step_range()
                if step is not None:
                    self._move_step(step)
        finally:
            self._draw()  # the picture always matches the controls, even when the step was refused

    def _check(self, name: str, value: Any) -> None:
        if name == "transposed":
            if not isinstance(value, bool):
                raise TypeError(f"transposed must be True or False, got {value!r}")
            return
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
        smallest = 0 if name == "step" else self.sliders[name].min
        if value < smallest:
            raise ValueError(f"{name} must be >= {smallest}, got {value}")

    def _move_step(self, step: int) -> None:
        if not self.valid:
            raise ValueError(f"cannot choose a step: {self.message}")
        if step > self.step_slider.max:
            raise ValueError(f"step {step} is out of range: this configuration has "
                             f"{self.step_slider.max + 1} output pixels, so step must be in "
                             f"0..{self.step_slider.max}")
        self.step_slider.value = step

    @contextmanager
    def _batch(self) -> Iterator[None]:
        quiet, self._quiet = self._quiet, True
        try:
            yield
        finally:
            self._quiet = quiet

    def _configuration(self) -> dict[str, Any]:
        values = self.values
        transposed = values["transposed"]
        return {"i": values["i"], "k": values["k"], "s": values["s"], "p": values["p"], "d": values["d"],
                "transposed": transposed, "output_padding": values["output_padding"] if transposed else 0}

    def _update_step_range(self) -> None:
        """Check the configuration and fit the step slider to its number of output pixels.

        Called with redraws held back (inside ``_batch``): the caller draws once afterwards.
        """
        self.sliders["output_padding"].disabled = not self.transposed_box.value  # only transposed uses a
        try:
            count = len(figures.window_positions(**self._configuration()))
        except ValueError as error:  # the configuration does not exist: say why, draw nothing
            self.valid, self.message = False, f"invalid configuration: {error}"
            self.step_slider.disabled = self.play.disabled = True
            return
        self.valid = True
        self.step_slider.max = self.play.max = count - 1  # a smaller max pulls the step back inside
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
            self.text.value = f'<p style="color:#b00020">{html.escape(self.message)}</p>'
            self.image.layout.display = "none"
            return
        config, step = self._configuration(), self.step_slider.value
        ax = self.figure.add_subplot()
        figures.conv_frame(ax, step=step, **config)
        formula = figures.output_size_formula(**config)
        top, left = figures.window_positions(**config)[step]
        height, width = figures.output_shape(**config)
        self.message = (f"output {height}×{width} pixels: {formula}\n"
                        f"step {step}: output pixel {divmod(step, width)} comes from the window whose "
                        f"top-left cell is (row {top}, col {left}) of the grid with zeros")
        self.text.value = "<br>".join(html.escape(line) for line in self.message.split("\n"))
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=80)
        self.image.value = buffer.getvalue()
        self.image.layout.display = None

    def _repr_mimebundle_(self, **kwargs: Any) -> dict | None:
        return self.widget._repr_mimebundle_(**kwargs)


def conv_explorer(i: int = 5, k: int = 3, s: int = 1, p: int = 0, d: int = 1) -> ConvExplorer:
    """Sliders for input size, kernel, stride, padding, dilation (and transposed, output_padding, step).

    Display the result in a notebook; ``.set(...)``, ``.message`` and ``.figure`` drive and read it.
    """
    return ConvExplorer(i, k, s, p, d)


class InterpolationExplorer:
    """Controls for one resize (mode, align_corners, scale, antialias) and what it does to an image.

    Shows the input crop, the resized crop (computed by :func:`minigen.interp.interpolate`) and the
    weights one output pixel gives the input pixels along a row. ``widget`` is what a notebook
    displays; ``set(**values)`` moves the controls; ``message`` is the text under the controls
    (output size, source coordinates of the first and last output pixels); ``figure`` the figure.
    """

    def __init__(self, image: Tensor | None = None, scale: float = 2.0, mode: str = "bilinear",
                 align_corners: bool = False, antialias: bool = False) -> None:
        image = interp_figures.default_crop() if image is None else image
        if not isinstance(image, Tensor) or image.dim() != 3 or image.shape[0] not in (1, 3):
            raise ValueError(f"image must be a (C, H, W) tensor with C = 1 or 3, got {_describe_image(image)}")
        self.image_tensor = image
        self.mode_dropdown = widgets.Dropdown(options=list(interp_figures.MODES), value="bilinear", description="mode")
        self.align_box = widgets.Checkbox(value=False, description="align_corners")
        self.antialias_box = widgets.Checkbox(value=False, description="antialias (when shrinking)")
        self.scale_slider = widgets.FloatSlider(value=2.0, min=0.25, max=4.0, step=0.05, description="scale",
                                                continuous_update=False)
        self.pixel_slider = widgets.IntSlider(value=1, min=0, max=1, description="output pixel",
                                              continuous_update=False)
        self.image = widgets.Image(format="png")
        self.text = widgets.HTML()
        self.figure = Figure(figsize=(8.0, 3.4), layout="constrained")
        self.message = ""
        self._quiet = False
        for control in self._controls.values():
            control.observe(self._on_change, names="value")
        self.widget = widgets.VBox([
            widgets.HBox([widgets.VBox([self.mode_dropdown, self.scale_slider, self.pixel_slider]),
                          widgets.VBox([self.align_box, self.antialias_box])]),
            self.text,
            self.image,
        ])
        self.set(mode=mode, scale=scale, align_corners=align_corners, antialias=antialias)

    @property
    def _controls(self) -> dict[str, widgets.ValueWidget]:
        return {"mode": self.mode_dropdown, "scale": self.scale_slider, "align_corners": self.align_box,
                "antialias": self.antialias_box, "output_pixel": self.pixel_slider}

    @property
    def values(self) -> dict[str, Any]:
        """The current settings, by control name."""
        return {name: control.value for name, control in self._controls.items()}

    def set(self, **values: Any) -> None:
        """Move controls, by name (mode, scale, align_corners, antialias, output_pixel), then redraw once.

        An output_pixel past the last output pixel is refused; a scale that leaves fewer output
        pixels pulls the output pixel back to the last one.
        """
        unknown = sorted(set(values) - set(self._controls))
        if unknown:
            raise TypeError(f"unknown control(s) {unknown}; the controls are {list(self._controls)}")
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
                    raise ValueError(f"output_pixel {pixel} is out of range: this resize has "
                                     f"{self.pixel_slider.max + 1} output pixels per row")
                self.pixel_slider.value = pixel
        finally:
            self._quiet = quiet
            self._draw()  # the picture always matches the controls, even when the pixel was refused

    def _fit_pixel_slider(self) -> None:
        """Give the output-pixel slider one position per output pixel of a row (redraws held back)."""
        try:
            out_size = interp_figures.output_size(self.image_tensor.shape[-1], self.scale_slider.value)
        except ValueError:  # no output pixels: _draw says why
            return
        self.pixel_slider.max = out_size - 1  # a smaller max pulls the value back inside

    def _check(self, name: str, value: Any) -> None:
        if name == "mode" and value not in interp_figures.MODES:
            raise ValueError(f"mode must be one of {list(interp_figures.MODES)}, got {value!r}")
        if name == "output_pixel" and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ValueError(f"output_pixel must be an int >= 0, got {value!r}")
        if name in ("align_corners", "antialias") and not isinstance(value, bool):
            raise TypeError(f"{name} must be True or False, got {value!r}")
        if name == "scale":
            low, high = self.scale_slider.min, self.scale_slider.max
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise ValueError(f"scale must be a number in {low}..{high}, got {value!r}")

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
        self.align_box.disabled = self.antialias_box.disabled = nearest  # options of the filters only
        align_corners = self.align_box.value and not nearest
        antialias = self.antialias_box.value and not nearest
        in_size = self.image_tensor.shape[-1]
        self.figure.clear()
        try:
            out_size = interp_figures.output_size(in_size, scale)
        except ValueError as error:  # too small an image for this scale: say why, draw nothing
            self.message = f"invalid configuration: {error}"
            self.text.value = f'<p style="color:#b00020">{html.escape(self.message)}</p>'
            self.image.layout.display = "none"
            return
        resized = interp_figures.resize(self.image_tensor, scale, mode, align_corners, antialias)  # (C, H_o, W_o)
        self.message = (f"{mode}: {self.image_tensor.shape[-2]}×{in_size} → {resized.shape[-2]}×{out_size} "
                        f"pixels (⌊size·{scale:g}⌋)\n"
                        + self._coordinates_text(in_size, out_size, mode, align_corners))
        before, after, weights = self.figure.subplots(1, 3, width_ratios=(1, 1, 1.6))
        for ax, picture, title in ((before, self.image_tensor, "input"), (after, resized, "resized")):
            ax.imshow(to_numpy_image(picture.clamp(0, 1)), interpolation="nearest")  # bicubic may overshoot
            ax.set_title(f"{title} {picture.shape[-2]}×{picture.shape[-1]}")
            ax.set_axis_off()
        interp_figures.draw_weights(weights, in_size, out_size, mode, align_corners=align_corners,
                                    antialias=antialias, output_pixel=self.pixel_slider.value)
        self.text.value = "<br>".join(html.escape(line) for line in self.message.split("\n"))
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=80)
        self.image.value = buffer.getvalue()
        self.image.layout.display = None

    @staticmethod
    def _coordinates_text(in_size: int, out_size: int, mode: str, align_corners: bool) -> str:
        if mode == "nearest":
            copied = interp.resample_matrix(in_size, out_size, "nearest").argmax(dim=1)  # (out_size,) input index
            return (f"nearest: output pixel x_out copies input pixel ⌊x_out·in/out⌋; output pixel 0 copies "
                    f"input pixel {int(copied[0])}, output pixel {out_size - 1} copies input pixel {int(copied[-1])}")
        coordinates = interp.source_coordinates(in_size, out_size, align_corners)  # (out_size,)
        rule = ("x_in = x_out·(in − 1)/(out − 1)" if align_corners else "x_in = (x_out + ½)·in/out − ½")
        return (f"align_corners={align_corners}: {rule}; output pixel 0 samples x_in = "
                f"{float(coordinates[0]):.4g}, output pixel {out_size - 1} samples x_in = {float(coordinates[-1]):.4g}")

    def _repr_mimebundle_(self, **kwargs: Any) -> dict | None:
        return self.widget._repr_mimebundle_(**kwargs)


def _describe_image(value: object) -> str:
    if isinstance(value, Tensor):
        return f"shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"


def interpolation_explorer(image: Tensor | None = None, scale: float = 2.0, mode: str = "bilinear",
                           align_corners: bool = False) -> InterpolationExplorer:
    """A dropdown for the mode, a slider for the scale, checkboxes for align_corners and antialias.

    Display the result in a notebook; ``.set(...)``, ``.message`` and ``.figure`` drive and read it.
    """
    return InterpolationExplorer(image, scale, mode, align_corners)
