"""Output sizes of convolution, pooling, transposed convolution; receptive fields.

Implements the relations of
- V. Dumoulin, F. Visin, "A guide to convolution arithmetic for deep learning",
  arXiv:1603.07285 (2016);
- A. Araujo, W. Norris, J. Sim, "Computing Receptive Fields of Convolutional Neural
  Networks", Distill (2019), for the receptive-field recurrences;
with PyTorch's conventions wherever the paper leaves a choice (which side gets the
odd 'same' padding, pooling's ceil_mode, which paddings are allowed).

Every function works on one spatial axis; a 2-D layer applies it to each axis
separately. Notation: i input size, k kernel size, s stride, p zero padding on each
side, d dilation, o output size, a output_padding of a transposed convolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from minigen.core.validators import check_bool, check_instance, check_int

PaddingMode = Literal["valid", "same", "full"]
PADDING_MODES: tuple[str, ...] = ("valid", "same", "full")


def per_axis(name: str, value: object) -> tuple:
    """(height, width) from one value for both axes, or from a pair.

    This is how the 2-D layers take their 1-D settings (kernel, stride, padding).
    """
    check_instance("name", name, str)
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(
                f"{name} must be one value or a pair (height, width), got {value!r}"
            )
        return value[0], value[1]
    return value, value


def _describe_kernel(k: int, d: int) -> str:
    """'kernel 7', or 'dilated kernel 9 (k=5, d=2)' when dilation widens it."""
    return (
        f"kernel {k}"
        if d == 1
        else f"dilated kernel {effective_kernel(k, d)} (k={k}, d={d})"
    )


def effective_kernel(k: int, d: int = 1) -> int:
    """Extent of a kernel of size `k` whose taps sit `d` apart (dilation d)."""
    k = check_int("kernel size k", k)
    d = check_int("dilation d", d)
    return k + (k - 1) * (d - 1)  # k_eff = k + (k - 1)(d - 1)


def same_padding(k: int, d: int = 1) -> tuple[int, int]:
    """(left, right) zero padding that keeps o = i at stride 1: 'same' padding.

    Dumoulin & Visin call it 'half' padding. The total is k_eff - 1; when it is odd
    (even k_eff) the extra cell goes to the right, as torch's padding="same" does.
    """
    total = effective_kernel(k, d) - 1  # o = i + total - k_eff + 1 = i
    return total // 2, total - total // 2


def full_padding(k: int, d: int = 1) -> int:
    """Padding that counts every partial overlap ('full'): o = i + k_eff - 1."""
    return effective_kernel(k, d) - 1


def conv_output_size(
    i: int, k: int, s: int = 1, p: int | PaddingMode = 0, d: int = 1
) -> int:
    """Output size of a convolution: o = floor((i + 2p - k_eff) / s) + 1.

    `p` is the padding on each side, or one of "valid" (p = 0), "same" (o = i;
    stride 1 only, as in torch) and "full" (p = k_eff - 1).
    """
    i = check_int("input size i", i)
    k_eff = effective_kernel(k, d)
    s = check_int("stride s", s)
    if isinstance(p, str):
        if p not in PADDING_MODES:
            raise ValueError(
                f"padding p must be an int or one of {PADDING_MODES}, got {p!r}"
            )
        if p == "same" and s != 1:
            raise ValueError(
                f"padding='same' keeps o = i only at stride 1, got s={s} "
                "(torch refuses strided 'same' too); give an int padding instead"
            )
        total_padding = {
            "valid": 0,
            "same": sum(same_padding(k, d)),
            "full": 2 * full_padding(k, d),
        }[p]
    else:
        total_padding = 2 * check_int("padding p", p, 0)
    padded = i + total_padding
    if padded < k_eff:
        raise ValueError(
            f"{_describe_kernel(k, d)} is larger than padded input {padded} "
            f"(i={i}, p={p}): use a kernel of extent at most {padded} or pad by at "
            f"least {-(-(k_eff - i) // 2)} on each side"
        )
    return (padded - k_eff) // s + 1  # o = floor((i + 2p - k_eff) / s) + 1


def pool_output_size(
    i: int,
    k: int,
    s: int | None = None,
    p: int = 0,
    d: int = 1,
    ceil_mode: bool = False,
) -> int:
    """Output size of max/avg pooling, with torch's MaxPool2d/AvgPool2d rules.

    The stride defaults to the kernel size; padding may be at most k // 2; ceil_mode
    rounds up, keeping a last partial window unless it would start inside the right
    padding.
    """
    i = check_int("input size i", i)
    k = check_int("kernel size k", k)
    k_eff = effective_kernel(k, d)
    s = k if s is None else check_int("stride s", s)
    p = check_int("padding p", p, 0)
    ceil_mode = check_bool("ceil_mode", ceil_mode)
    if p > k // 2:
        raise ValueError(
            f"padding {p} is more than half the pooling kernel {k}: torch requires "
            f"p <= k // 2 = {k // 2}"
        )
    span = i + 2 * p - k_eff  # room left for the window to slide
    if ceil_mode:
        o = -(-span // s) + 1  # o = ceil((i + 2p - k_eff) / s) + 1
        # the last window would start in the right padding: drop it
        if (o - 1) * s >= i + p:
            o -= 1
    else:
        o = span // s + 1  # o = floor((i + 2p - k_eff) / s) + 1
    if o < 1:
        raise ValueError(
            f"pooling {_describe_kernel(k, d)} is larger than padded input "
            f"{i + 2 * p} (i={i}, p={p}): output size would be {o}; use a smaller "
            "kernel or a larger input"
        )
    return o


def transposed_output_size(
    i: int, k: int, s: int = 1, p: int = 0, d: int = 1, output_padding: int = 0
) -> int:
    """Output size of a transposed convolution.

    o = (i - 1)s - 2p + d(k - 1) + a + 1, where `output_padding` (a) picks among the
    s input sizes that a stride-s convolution maps to i; torch requires
    a < max(s, d).
    """
    i = check_int("input size i", i)
    k_eff = effective_kernel(k, d)
    s = check_int("stride s", s)
    p = check_int("padding p", p, 0)
    a = check_int("output_padding a", output_padding, 0)
    if a >= max(s, d):
        raise ValueError(
            f"output_padding {a} must be smaller than the stride {s} or the "
            f"dilation {d} (torch's rule): use output_padding < {max(s, d)}"
        )
    # o = (i - 1)s - 2p + d(k - 1) + a + 1
    o = (i - 1) * s - 2 * p + (k_eff - 1) + a + 1
    if o < 1:
        produced = o + 2 * p  # cells before padding p is cropped from each side
        raise ValueError(
            f"transposed convolution output size {o} is not positive: cropping "
            f"p={p} from each side of the {produced} cells the layer produces "
            f"leaves nothing; use p <= {(produced - 1) // 2}"
        )
    return o


def transposed_a(i: int, k: int, s: int = 1, p: int = 0, d: int = 1) -> int:
    """The output_padding a with which a transposed convolution gives back size i.

    A stride-s convolution maps the s sizes i, i + 1, ..., i + s - 1 (suitably
    aligned) to the same o; a = (i + 2p - k_eff) mod s says which of them to give
    back.
    """
    p = check_int("padding p", p, 0)
    conv_output_size(i, k, s, p, d)  # validates: the convolution must exist
    return (i + 2 * p - effective_kernel(k, d)) % s  # a = (i + 2p - k_eff) mod s


def inputs_with_same_output(
    o: int, k: int, s: int = 1, p: int = 0, d: int = 1
) -> range:
    """Every input size i >= 1 that a convolution maps to output size o.

    There are at most s of them, and they are consecutive.
    """
    o = check_int("output size o", o)
    k_eff = effective_kernel(k, d)
    s = check_int("stride s", s)
    p = check_int("padding p", p, 0)
    # i + 2p - k_eff = (o - 1)s + r, for r = 0 .. s - 1
    smallest = (o - 1) * s + k_eff - 2 * p
    largest = smallest + s - 1
    if largest < 1:
        raise ValueError(
            f"no input size i >= 1 gives output {o} with k={k}, s={s}, p={p}, "
            f"d={d}: the padding alone makes the output at least "
            f"{conv_output_size(1, k, s, p, d)} (at i=1)"
        )
    return range(max(smallest, 1), largest + 1)


@dataclass(frozen=True)
class Layer:
    """One convolution or pooling layer along one axis, for receptive fields."""

    kernel: int
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    name: str = ""

    def __post_init__(self) -> None:
        check_int("Layer.kernel", self.kernel)
        check_int("Layer.stride", self.stride)
        check_int("Layer.padding", self.padding, 0)
        check_int("Layer.dilation", self.dilation)
        check_instance("Layer.name", self.name, str)


@dataclass(frozen=True)
class ReceptiveField:
    """What one output unit of a layer sees of the network input.

    Input pixel n has its centre at n. size: extent r of the field; jump: distance j
    between the fields of neighbouring units (the product of strides); start: centre
    of the first unit's field. Unit m's field is centred at start + m * jump and
    spans size cells.
    """

    size: int
    jump: int
    start: float


def _check_layers(layers: Sequence[Layer]) -> None:
    """A sequence of Layer objects (possibly empty)."""
    check_instance("layers", layers, Sequence, "a sequence of Layer objects")
    for index, layer in enumerate(layers):
        check_instance(f"layers[{index}]", layer, Layer, "a minigen Layer")


def receptive_field(layers: Sequence[Layer]) -> list[ReceptiveField]:
    """Receptive field after each layer of a stack.

    The recurrences of Araujo et al. (2019), from the input (r = j = 1, start = 0).
    """
    _check_layers(layers)
    size, jump, start = 1, 1, 0.0  # the input itself: every pixel sees only itself
    fields = []
    for layer in layers:
        k_eff = effective_kernel(layer.kernel, layer.dilation)
        # start_l = start_{l-1} + ((k_eff - 1)/2 - p) j_{l-1}
        start = start + ((k_eff - 1) / 2 - layer.padding) * jump
        size = size + (k_eff - 1) * jump  # r_l = r_{l-1} + (k_eff - 1) j_{l-1}
        jump = jump * layer.stride  # j_l = j_{l-1} s
        fields.append(ReceptiveField(size=size, jump=jump, start=start))
    return fields
