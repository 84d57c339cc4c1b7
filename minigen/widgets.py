"""Interactive explorers for chapter 1, built on ipywidgets.

:class:`ConvExplorer` puts sliders on every number of Dumoulin & Visin's convolution
arithmetic ("A guide to convolution arithmetic for deep learning", 2016): input size, kernel,
stride, padding, dilation, transposed or not, output_padding, and the output pixel being
computed. It redraws the sliding-window frame of :func:`minigen.figures.conv_frame` and states
the output size from :mod:`minigen.arith`; a configuration that does not exist shows the
arithmetic's own error message instead of raising.
"""

from __future__ import annotations

import html
import io
from contextlib import contextmanager
from typing import Any, Iterator

import ipywidgets as widgets
from matplotlib.figure import Figure

from minigen import figures

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
