"""minigen.arith against the shapes torch really produces, closed forms, and brute force."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from minigen.ops.arith import (
    Layer,
    ReceptiveField,
    conv_output_size,
    effective_kernel,
    full_padding,
    inputs_with_same_output,
    pool_output_size,
    receptive_field,
    same_padding,
    transposed_a,
    transposed_output_size,
)

SWEEP = settings(max_examples=300, deadline=None)
sizes = st.integers(1, 24)
kernels = st.integers(1, 7)
strides = st.integers(1, 4)
paddings = st.integers(0, 4)
dilations = st.integers(1, 3)


def torch_length(fn, i: int, *args, **kwargs) -> int | None:
    """Output length of a 1-D torch op on a length-i signal, or None where torch refuses."""
    try:
        return fn(torch.zeros(1, 1, i), *args, **kwargs).shape[-1]
    except RuntimeError:
        return None


def count_windows(padded: int, k_eff: int, s: int) -> int:
    """Brute force: how many window positions 0, s, 2s, ... fit in a padded input."""
    return len(range(0, padded - k_eff + 1, s))


# --- convolution --------------------------------------------------------------------------------


@SWEEP
@given(i=sizes, k=kernels, s=strides, p=paddings, d=dilations)
def test_conv_output_size_matches_conv1d(i, k, s, p, d):
    expected = torch_length(
        F.conv1d, i, torch.zeros(1, 1, k), stride=s, padding=p, dilation=d
    )
    if expected is None:
        with pytest.raises(ValueError, match="larger than padded input"):
            conv_output_size(i, k, s, p, d)
    else:
        assert (
            conv_output_size(i, k, s, p, d)
            == expected
            == count_windows(i + 2 * p, effective_kernel(k, d), s)
        )


@settings(max_examples=100, deadline=None)
@given(
    h=sizes,
    w=sizes,
    kh=kernels,
    kw=kernels,
    sh=strides,
    sw=strides,
    ph=paddings,
    pw=paddings,
    dh=dilations,
    dw=dilations,
)
def test_conv_output_size_per_axis_matches_conv2d(
    h, w, kh, kw, sh, sw, ph, pw, dh, dw
):
    try:
        x, weight = torch.zeros(1, 1, h, w), torch.zeros(1, 1, kh, kw)
        expected = F.conv2d(x, weight, None, (sh, sw), (ph, pw), (dh, dw)).shape[
            -2:
        ]
    except RuntimeError:
        with pytest.raises(ValueError):
            conv_output_size(h, kh, sh, ph, dh)
            conv_output_size(w, kw, sw, pw, dw)
        return
    assert (
        conv_output_size(h, kh, sh, ph, dh),
        conv_output_size(w, kw, sw, pw, dw),
    ) == tuple(expected)


@SWEEP
@given(i=sizes, k=kernels, d=dilations)
@pytest.mark.filterwarnings(
    "ignore:Using padding='same'"
)  # torch's note on speed, not on results
def test_valid_same_full_closed_forms(i, k, d):
    k_eff = effective_kernel(k, d)
    assert k_eff == (k - 1) * d + 1  # the taps sit at 0, d, ..., (k - 1)d
    weight = torch.zeros(1, 1, k)
    assert (
        conv_output_size(i, k, 1, "same", d)
        == i
        == torch_length(F.conv1d, i, weight, padding="same", dilation=d)
    )
    assert (
        conv_output_size(i, k, 1, "full", d)
        == i + k_eff - 1
        == conv_output_size(i, k, 1, full_padding(k, d), d)
    )
    assert (
        torch_length(F.conv1d, i, weight, padding=full_padding(k, d), dilation=d)
        == i + k_eff - 1
    )
    if i >= k_eff:
        assert (
            conv_output_size(i, k, 1, "valid", d)
            == i - k_eff + 1
            == conv_output_size(i, k, 1, 0, d)
        )
    if (
        k_eff % 2 == 1
    ):  # Dumoulin & Visin's half padding: p = floor(k/2) keeps o = i
        assert same_padding(k, d) == (k_eff // 2, k_eff // 2)
        assert conv_output_size(i, k, 1, k_eff // 2, d) == i


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    kh=st.integers(1, 6),
    kw=st.integers(1, 6),
    dh=dilations,
    dw=dilations,
)
def test_same_padding_reproduces_torch_same(h, w, kh, kw, dh, dw):
    x, weight = (
        torch.randn(1, 2, h, w, dtype=torch.float64),
        torch.randn(3, 2, kh, kw, dtype=torch.float64),
    )
    (top, bottom), (left, right) = same_padding(kh, dh), same_padding(kw, dw)
    ours = F.conv2d(F.pad(x, (left, right, top, bottom)), weight, dilation=(dh, dw))
    torch.testing.assert_close(
        ours, F.conv2d(x, weight, padding="same", dilation=(dh, dw))
    )


def test_same_padding_puts_the_odd_cell_on_the_right():
    assert same_padding(4) == (1, 2)
    assert same_padding(2) == (0, 1)
    assert same_padding(3, d=2) == (2, 2)


# --- pooling ------------------------------------------------------------------------------------


@SWEEP
@given(
    i=sizes,
    k=kernels,
    s=st.none() | strides,
    p=paddings,
    d=dilations,
    ceil_mode=st.booleans(),
)
def test_pool_output_size_matches_max_pool1d(i, k, s, p, d, ceil_mode):
    expected = torch_length(F.max_pool1d, i, k, s, p, d, ceil_mode)
    if expected is None:
        with pytest.raises(
            ValueError, match="half the pooling kernel|larger than padded input"
        ):
            pool_output_size(i, k, s, p, d, ceil_mode)
    else:
        assert pool_output_size(i, k, s, p, d, ceil_mode) == expected


@SWEEP
@given(
    h=sizes,
    w=sizes,
    k=kernels,
    s=st.none() | strides,
    p=paddings,
    d=dilations,
    ceil_mode=st.booleans(),
)
def test_pool_output_size_matches_max_pool2d(h, w, k, s, p, d, ceil_mode):
    try:
        expected = F.max_pool2d(
            torch.zeros(1, 1, h, w), k, s, p, d, ceil_mode
        ).shape[-2:]
    except RuntimeError:
        with pytest.raises(
            ValueError, match="half the pooling kernel|larger than padded input"
        ):
            pool_output_size(h, k, s, p, d, ceil_mode)
            pool_output_size(w, k, s, p, d, ceil_mode)
        return
    assert (
        pool_output_size(h, k, s, p, d, ceil_mode),
        pool_output_size(w, k, s, p, d, ceil_mode),
    ) == tuple(expected)


@SWEEP
@given(
    h=sizes,
    w=sizes,
    k=kernels,
    s=st.none() | strides,
    p=paddings,
    ceil_mode=st.booleans(),
)
def test_pool_output_size_matches_avg_pool2d(h, w, k, s, p, ceil_mode):
    try:
        expected = F.avg_pool2d(torch.zeros(1, 1, h, w), k, s, p, ceil_mode).shape[
            -2:
        ]
    except RuntimeError:
        with pytest.raises(
            ValueError, match="half the pooling kernel|larger than padded input"
        ):
            pool_output_size(h, k, s, p, 1, ceil_mode)
            pool_output_size(w, k, s, p, 1, ceil_mode)
        return
    assert (
        pool_output_size(h, k, s, p, 1, ceil_mode),
        pool_output_size(w, k, s, p, 1, ceil_mode),
    ) == tuple(expected)


def test_pool_stride_defaults_to_kernel_and_ceil_mode_keeps_a_partial_window():
    assert pool_output_size(7, 2) == 3 == pool_output_size(7, 2, 2)
    assert (
        pool_output_size(7, 2, ceil_mode=True) == 4
    )  # the last window covers only x[6]
    # a window that would start in the right padding is dropped: i=4, k=2, s=2, p=1 -> 3, not 4
    assert pool_output_size(4, 2, 2, 1, ceil_mode=True) == 3


# --- transposed convolution ---------------------------------------------------------------------


@SWEEP
@given(i=sizes, k=kernels, s=strides, p=paddings, d=dilations, a=st.integers(0, 3))
def test_transposed_output_size_matches_conv_transpose1d(i, k, s, p, d, a):
    weight = torch.zeros(1, 1, k)
    expected = torch_length(
        F.conv_transpose1d,
        i,
        weight,
        stride=s,
        padding=p,
        output_padding=a,
        dilation=d,
    )
    if expected is None:
        with pytest.raises(
            ValueError, match="output_padding .* must be smaller|not positive"
        ):
            transposed_output_size(i, k, s, p, d, a)
    else:
        assert transposed_output_size(i, k, s, p, d, a) == expected
        # Dumoulin & Visin's o' = s(i' - 1) + a + k - 2p, with k the dilated kernel
        assert expected == s * (i - 1) + a + effective_kernel(k, d) - 2 * p


@SWEEP
@given(i=sizes, k=kernels, s=strides, p=paddings, d=dilations)
def test_transposed_a_restores_the_input_size(i, k, s, p, d):
    if i + 2 * p < effective_kernel(k, d):
        with pytest.raises(ValueError, match="larger than padded input"):
            transposed_a(i, k, s, p, d)
        return
    a = transposed_a(i, k, s, p, d)
    weight = torch.zeros(1, 1, k)
    y = F.conv1d(torch.zeros(1, 1, i), weight, stride=s, padding=p, dilation=d)
    back = F.conv_transpose1d(
        y, weight, stride=s, padding=p, output_padding=a, dilation=d
    )
    assert back.shape[-1] == i
    assert transposed_output_size(y.shape[-1], k, s, p, d, a) == i


@SWEEP
@given(o=st.integers(1, 12), k=kernels, s=strides, p=paddings, d=dilations)
def test_inputs_with_same_output_by_brute_force(o, k, s, p, d):
    k_eff = effective_kernel(k, d)
    candidates = range(
        1, (o + 1) * s + k_eff + 1
    )  # beyond this, the output exceeds o
    brute = [
        i
        for i in candidates
        if i + 2 * p >= k_eff and count_windows(i + 2 * p, k_eff, s) == o
    ]
    if not brute:
        with pytest.raises(ValueError, match="no input size"):
            inputs_with_same_output(o, k, s, p, d)
    else:
        assert list(inputs_with_same_output(o, k, s, p, d)) == brute
        assert len(brute) <= s  # the "i + a, a in 0..s-1" fact


# --- receptive fields ---------------------------------------------------------------------------

layers = st.builds(
    Layer,
    kernel=st.integers(1, 4),
    stride=st.integers(1, 3),
    padding=st.integers(0, 3),
    dilation=st.integers(1, 3),
)


def ones_conv_stack(stack: list[Layer]) -> torch.nn.Sequential:
    convs = []
    for layer in stack:
        conv = torch.nn.Conv1d(
            1,
            1,
            layer.kernel,
            layer.stride,
            layer.padding,
            layer.dilation,
            bias=False,
        )
        torch.nn.init.ones_(
            conv.weight
        )  # every path counts positively: no cancellation
        convs.append(conv)
    return torch.nn.Sequential(*convs).double()


@settings(max_examples=60, deadline=None)
@given(stack=st.lists(layers, min_size=1, max_size=4))
def test_receptive_field_matches_impulse_responses(stack):
    fields = receptive_field(stack)
    assert len(fields) == len(stack)
    last = fields[-1]
    jumps_before = [1] + [f.jump for f in fields[:-1]]
    reach_of_padding = sum(
        layer.padding * j for layer, j in zip(stack, jumps_before)
    )
    n = (
        2 * last.size + 2 * reach_of_padding + 3 * last.jump
    )  # long enough for a unit that sees no padding
    one_hots = torch.eye(n, dtype=torch.float64).unsqueeze(
        1
    )  # (n, 1, n): a batch of every unit impulse
    with (
        torch.no_grad()
    ):  # the stack is linear, so its answers to the impulses form the Jacobian
        jacobian = (
            ones_conv_stack(stack)(one_hots).squeeze(1).T
        )  # (output units, input positions)
    checked = 0
    for m, row in enumerate(jacobian):
        lo, hi = (
            last.start + m * last.jump - (last.size - 1) / 2,
            last.start + m * last.jump + (last.size - 1) / 2,
        )
        if lo < 0 or hi > n - 1:
            continue  # this unit's field reaches into padding: truncated, not comparable
        seen = row.nonzero().flatten()
        assert (seen.min().item(), seen.max().item()) == (lo, hi)
        checked += 1
    assert checked >= 1


def test_receptive_field_in_two_dimensions_per_axis():
    rows, cols = [Layer(3, 2, 1), Layer(2, 1, 0, 2)], [Layer(1), Layer(3, 1, 1)]
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 1, (3, 1), (2, 1), (1, 0), bias=False),
        torch.nn.Conv2d(1, 1, (2, 3), 1, (0, 1), (2, 1), bias=False),
    ).double()
    for conv in net:
        torch.nn.init.ones_(conv.weight)
    x = torch.zeros(1, 1, 20, 20, dtype=torch.float64, requires_grad=True)
    net(x)[0, 0, 3, 4].backward()
    seen_rows, seen_cols = x.grad[0, 0].nonzero().unbind(1)
    for seen, field, m in (
        (seen_rows, receptive_field(rows)[-1], 3),
        (seen_cols, receptive_field(cols)[-1], 4),
    ):
        centre = field.start + m * field.jump
        assert (seen.min().item(), seen.max().item()) == (
            centre - (field.size - 1) / 2,
            centre + (field.size - 1) / 2,
        )


def test_receptive_field_worked_example():
    # conv 3x3, then 2x2 pool stride 2, then conv 3x3: the first unit sees inputs 0..7
    assert receptive_field([Layer(3), Layer(2, 2, name="pool"), Layer(3)]) == [
        ReceptiveField(size=3, jump=1, start=1.0),
        ReceptiveField(size=4, jump=2, start=1.5),
        ReceptiveField(size=8, jump=2, start=3.5),
    ]
    assert (
        receptive_field([Layer(3)] * 3)[-1].size == 7
    )  # three 3x3 convs see as far as one 7x7 (VGG)
    assert receptive_field([]) == []


# --- bad input ----------------------------------------------------------------------------------


def test_error_messages_say_what_is_wrong():
    with pytest.raises(ValueError, match="^kernel 7 is larger than padded input 5"):
        conv_output_size(i=5, k=7, p=0)
    with pytest.raises(
        ValueError,
        match=r"^dilated kernel 9 \(k=5, d=2\) is larger than padded input 7",
    ):
        conv_output_size(i=7, k=5, d=2)
    with pytest.raises(ValueError, match=r"torch requires p <= k // 2 = 1"):
        pool_output_size(5, 3, p=2)
    with pytest.raises(ValueError, match="stride 1"):
        conv_output_size(5, 3, s=2, p="same")
    with pytest.raises(
        ValueError,
        match=r"^padding p must be an int or one of \('valid', 'same', 'full'\), got 'half'",
    ):
        conv_output_size(5, 3, p="half")


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda: conv_output_size(5.0, 3),
            "^input size i must be an int, got float 5.0",
        ),
        (
            lambda: conv_output_size(5, True),
            "^kernel size k must be an int, got bool True",
        ),
        (
            lambda: conv_output_size(5, 3, s=None),
            "^stride s must be an int, got NoneType",
        ),
        (
            lambda: conv_output_size(5, 3, p=1.5),
            "^padding p must be an int, got float 1.5",
        ),
        (
            lambda: conv_output_size(5, 3, p=[1]),
            "^padding p must be an int, got list",
        ),
        (
            lambda: effective_kernel("3"),
            "^kernel size k must be an int, got str '3'",
        ),
        (
            lambda: pool_output_size(5, 2, ceil_mode="no"),
            "^ceil_mode must be True or False, got str 'no'",
        ),
        (
            lambda: pool_output_size(5, 2, ceil_mode=1),
            "^ceil_mode must be True or False, got int 1",
        ),
        (
            lambda: transposed_a(5, 3, p="same"),
            "^padding p must be an int, got str 'same'",
        ),
        (lambda: Layer(kernel=2.5), "^Layer.kernel must be an int, got float 2.5"),
        (
            lambda: Layer(kernel=3, name=None),
            "^Layer.name must be str, got NoneType",
        ),
        (
            lambda: receptive_field(Layer(3)),
            "^layers must be a sequence of Layer objects, got Layer",
        ),
        (
            lambda: receptive_field([Layer(3), (3, 1, 0)]),
            r"^layers\[1\] must be a minigen Layer, got tuple \(3, 1, 0\)",
        ),
    ],
)
def test_wrong_types_name_the_parameter(call, match):
    with pytest.raises(TypeError, match=match):
        call()


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda: conv_output_size(10**9, 3),
            "^input size i must be an int <= 1,000,000, got 1,000,000,000",
        ),
        (
            lambda: effective_kernel(3, d=10**9),
            "^dilation d must be an int <= 1,000,000",
        ),
        (
            lambda: pool_output_size(5, 2, s=10**9),
            "^stride s must be an int <= 1,000,000",
        ),
        (
            lambda: transposed_output_size(5, 10**9),
            "^kernel size k must be an int <= 1,000,000",
        ),
        (
            lambda: inputs_with_same_output(10**9, 3),
            "^output size o must be an int <= 1,000,000",
        ),
    ],
)
def test_huge_sizes_fail_fast(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda: conv_output_size(0, 3),
            "^input size i must be an int >= 1, got 0",
        ),
        (
            lambda: conv_output_size(5, 0),
            "^kernel size k must be an int >= 1, got 0",
        ),
        (
            lambda: conv_output_size(5, 3, s=0),
            "^stride s must be an int >= 1, got 0",
        ),
        (
            lambda: conv_output_size(5, 3, p=-1),
            "^padding p must be an int >= 0, got -1",
        ),
        (
            lambda: effective_kernel(3, d=0),
            "^dilation d must be an int >= 1, got 0",
        ),
        (
            lambda: pool_output_size(5, 2, p=-1),
            "^padding p must be an int >= 0, got -1",
        ),
        (
            lambda: transposed_output_size(4, 3, output_padding=-1),
            "^output_padding a must be an int >= 0, got -1",
        ),
        (
            lambda: inputs_with_same_output(0, 3),
            "^output size o must be an int >= 1, got 0",
        ),
        (
            lambda: Layer(kernel=3, stride=0),
            "^Layer.stride must be an int >= 1, got 0",
        ),
        (
            lambda: Layer(kernel=3, padding=-2),
            "^Layer.padding must be an int >= 0, got -2",
        ),
    ],
)
def test_out_of_range_values_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_receptive_field_rejects_non_layers():
    with pytest.raises(TypeError, match=r"^layers\[0\] must be a minigen Layer"):
        receptive_field([(3, 1, 0)])


def test_per_axis_repeats_one_value_and_passes_a_pair():
    from minigen.ops.arith import per_axis

    assert per_axis("stride", 2) == (2, 2)
    assert per_axis("stride", (1, 3)) == (1, 3)
    assert per_axis("stride", [4, 5]) == (4, 5)
    with pytest.raises(
        ValueError,
        match=r"stride must be one value or a pair \(height, width\), got \(1, 2, 3\)",
    ):
        per_axis("stride", (1, 2, 3))
    with pytest.raises(TypeError, match="^name must be str, got int 3"):
        per_axis(3, 2)
