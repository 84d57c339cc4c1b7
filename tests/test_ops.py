"""minigen.ops against torch.nn.functional: outputs and gradients, in float64."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from minigen.ops.arith import effective_kernel
from minigen.ops.conv import (
    avg_pool2d,
    conv2d,
    conv2d_loops,
    global_avg_pool2d,
    global_max_pool2d,
    max_pool2d,
    sliding_windows,
)

SWEEP = settings(max_examples=120, deadline=None)
f64 = torch.float64


def pairs(low: int, high: int) -> st.SearchStrategy:
    """An int or an (h, w) pair, as the ops accept both."""
    return st.integers(low, high) | st.tuples(
        st.integers(low, high), st.integers(low, high)
    )


def assert_same_values_and_gradients(
    ours, reference, *inputs: torch.Tensor
) -> None:
    """ours(*inputs) == reference(*inputs), and so are the gradients of a random projection of them."""
    ours_inputs = [t.detach().clone().requires_grad_() for t in inputs]
    reference_inputs = [t.detach().clone().requires_grad_() for t in inputs]
    ours_out, reference_out = ours(*ours_inputs), reference(*reference_inputs)
    torch.testing.assert_close(ours_out, reference_out)
    upstream = torch.randn_like(reference_out)
    (ours_out * upstream).sum().backward()
    (reference_out * upstream).sum().backward()
    for mine, theirs in zip(ours_inputs, reference_inputs):
        torch.testing.assert_close(mine.grad, theirs.grad)


@st.composite
def conv_cases(draw):
    """A valid conv2d configuration: x, weight, bias and keyword arguments."""
    groups = draw(st.integers(1, 3))
    in_channels, out_channels = (
        groups * draw(st.integers(1, 2)),
        groups * draw(st.integers(1, 2)),
    )
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dilation = draw(pairs(1, 2))
    padding = draw(st.sampled_from(["same", "valid"]) | pairs(0, 2))
    stride = 1 if padding == "same" else draw(pairs(1, 3))
    dh, dw = (dilation, dilation) if isinstance(dilation, int) else dilation
    # big enough for one window even without padding; a few sizes smaller than the kernel come from padding cases
    h = draw(st.integers(max(1, effective_kernel(kh, dh) - 2), 9))
    w = draw(st.integers(max(1, effective_kernel(kw, dw) - 2), 9))
    x = torch.randn(draw(st.integers(1, 2)), in_channels, h, w, dtype=f64)
    weight = torch.randn(out_channels, in_channels // groups, kh, kw, dtype=f64)
    bias = draw(st.none() | st.just(torch.randn(out_channels, dtype=f64)))
    return (
        x,
        weight,
        bias,
        dict(stride=stride, padding=padding, dilation=dilation, groups=groups),
    )


@pytest.mark.filterwarnings(
    "ignore:Using padding='same'"
)  # torch's note on speed, not on results
@SWEEP
@given(case=conv_cases())
def test_conv2d_matches_torch(case):
    x, weight, bias, kwargs = case
    try:
        F.conv2d(x, weight, bias, **kwargs)
    except (
        RuntimeError
    ):  # kernel larger than the padded input: torch refuses, so must we
        with pytest.raises(ValueError, match="larger than padded input"):
            conv2d(x, weight, bias, **kwargs)
        return
    tensors = (x, weight) if bias is None else (x, weight, bias)
    assert_same_values_and_gradients(
        lambda *t: conv2d(*t[:2], t[2] if len(t) > 2 else None, **kwargs),
        lambda *t: F.conv2d(*t[:2], t[2] if len(t) > 2 else None, **kwargs),
        *tensors,
    )


@settings(max_examples=25, deadline=None)
@given(
    batch=st.integers(1, 2),
    channels=st.integers(1, 2),
    out_channels=st.integers(1, 2),
    h=st.integers(3, 5),
    w=st.integers(3, 5),
    kh=st.integers(1, 3),
    kw=st.integers(1, 3),
    stride=pairs(1, 2),
    padding=pairs(0, 1),
    with_bias=st.booleans(),
)
def test_conv2d_loops_matches_torch(
    batch, channels, out_channels, h, w, kh, kw, stride, padding, with_bias
):
    x = torch.randn(batch, channels, h, w, dtype=f64)
    weight = torch.randn(out_channels, channels, kh, kw, dtype=f64)
    tensors = (
        (x, weight, torch.randn(out_channels, dtype=f64))
        if with_bias
        else (x, weight)
    )
    assert_same_values_and_gradients(
        lambda *t: conv2d_loops(
            *t[:2], t[2] if with_bias else None, stride, padding
        ),
        lambda *t: F.conv2d(*t[:2], t[2] if with_bias else None, stride, padding),
        *tensors,
    )


@st.composite
def pool_cases(draw, dilated: bool):
    """x and the keyword arguments of a pooling call (valid or not: torch decides)."""
    kernel = draw(pairs(1, 4))
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    padding = draw(
        st.integers(0, min(kh, kw) // 2)
        | st.tuples(st.integers(0, kh // 2), st.integers(0, kw // 2))
    )
    stride, ceil_mode = draw(st.none() | pairs(1, 3)), draw(st.booleans())
    kwargs = dict(
        kernel_size=kernel, stride=stride, padding=padding, ceil_mode=ceil_mode
    )
    if dilated:
        kwargs["dilation"] = draw(pairs(1, 2))
    batch, channels, h, w = (draw(st.integers(1, n)) for n in (2, 2, 9, 9))
    x = torch.randn(batch, channels, h, w, dtype=f64)
    return x, kwargs


@SWEEP
@given(case=pool_cases(dilated=True))
def test_max_pool2d_matches_torch(case):
    x, kwargs = case
    try:
        expected = F.max_pool2d(x, **kwargs)
    except RuntimeError:
        with pytest.raises(ValueError, match="larger than padded input"):
            max_pool2d(x, **kwargs)
        return
    assume(
        torch.isfinite(expected).all()
    )  # a window of padding only: -inf, and no gradient to compare
    assert_same_values_and_gradients(
        lambda t: max_pool2d(t, **kwargs), lambda t: F.max_pool2d(t, **kwargs), x
    )


@settings(max_examples=40, deadline=None)
@given(case=pool_cases(dilated=True))
def test_max_pool2d_sends_the_gradient_of_a_tie_to_one_input_like_torch(case):
    x, kwargs = case
    x = torch.randint(0, 3, x.shape).to(
        f64
    )  # few distinct values: many windows hold ties
    try:
        expected = F.max_pool2d(x, **kwargs)
    except RuntimeError:
        return  # the sweep above checks that these raise
    assume(torch.isfinite(expected).all())
    assert_same_values_and_gradients(
        lambda t: max_pool2d(t, **kwargs), lambda t: F.max_pool2d(t, **kwargs), x
    )


@SWEEP
@given(case=pool_cases(dilated=False), count_include_pad=st.booleans())
def test_avg_pool2d_matches_torch(case, count_include_pad):
    x, kwargs = case
    kwargs["count_include_pad"] = count_include_pad
    try:
        F.avg_pool2d(x, **kwargs)
    except RuntimeError:
        with pytest.raises(ValueError, match="larger than padded input"):
            avg_pool2d(x, **kwargs)
        return
    assert_same_values_and_gradients(
        lambda t: avg_pool2d(t, **kwargs), lambda t: F.avg_pool2d(t, **kwargs), x
    )


def test_avg_pool2d_divisor_rules_on_ones():
    ones = torch.ones(1, 1, 5, 5, dtype=f64)
    # padding counts: a corner window holds 4 ones out of 9 cells
    assert avg_pool2d(ones, 3, 2, 1)[0, 0, 0, 0].item() == pytest.approx(4 / 9)
    assert avg_pool2d(ones, 3, 2, 1, count_include_pad=False).eq(1).all()
    # 4 x 4 input, ceil_mode: the last column window covers column 3, the padding column 4 and
    # an overhang column 5 that never counts; the first row window covers padding row -1 and rows 0, 1
    overhang = avg_pool2d(
        torch.ones(1, 1, 4, 4, dtype=f64), 3, 2, 1, ceil_mode=True
    )
    assert overhang.shape[-1] == 3
    assert overhang[0, 0, 0, -1].item() == pytest.approx(
        (2 * 1) / (3 * 2)
    )  # 2 x 1 ones over 3 x 2 counted cells


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(1, 8),
    w=st.integers(1, 8),
    kernel=pairs(1, 3),
    stride=pairs(1, 3),
    dilation=pairs(1, 2),
)
def test_sliding_windows_is_a_view_of_the_definition(
    h, w, kernel, stride, dilation
):
    (kh, kw), (sh, sw), (dh, dw) = [
        (v, v) if isinstance(v, int) else v for v in (kernel, stride, dilation)
    ]
    assume(h >= effective_kernel(kh, dh) and w >= effective_kernel(kw, dw))
    x = torch.randn(2, 3, h, w)
    windows = sliding_windows(x, kernel, stride, dilation)
    oh, ow = (
        (h - effective_kernel(kh, dh)) // sh + 1,
        (w - effective_kernel(kw, dw)) // sw + 1,
    )
    assert windows.shape == (2, 3, oh, ow, kh, kw)
    for r in range(oh):
        for c in range(ow):
            by_definition = x[
                :, :, r * sh : r * sh + dh * kh : dh, c * sw : c * sw + dw * kw : dw
            ]  # (B, C, kH, kW)
            torch.testing.assert_close(windows[:, :, r, c], by_definition)
    assert (
        windows.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()
    )  # no copy


def test_global_pools_match_adaptive_pools():
    x = torch.randn(3, 4, 5, 7, dtype=f64)
    assert global_avg_pool2d(x).shape == (3, 4)
    torch.testing.assert_close(
        global_avg_pool2d(x), F.adaptive_avg_pool2d(x, 1).flatten(1)
    )
    torch.testing.assert_close(
        global_max_pool2d(x), F.adaptive_max_pool2d(x, 1).flatten(1)
    )


def test_conv2d_in_bfloat16_stays_close_to_torch():
    x, weight = torch.randn(2, 4, 8, 8), torch.randn(6, 4, 3, 3)
    ours = conv2d(x.bfloat16(), weight.bfloat16(), padding=1)
    assert ours.dtype == torch.bfloat16
    torch.testing.assert_close(
        ours.float(), F.conv2d(x, weight, padding=1), atol=0.2, rtol=0.05
    )


# --- bad input ----------------------------------------------------------------------------------

x4 = torch.zeros(1, 4, 6, 6)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (
            lambda: conv2d(torch.zeros(4, 6, 6), torch.zeros(2, 4, 3, 3)),
            ValueError,
            r"^x must be a 4-d tensor \(B, C, H, W\), got shape \(4, 6, 6\)",
        ),
        (
            lambda: conv2d(x4, torch.zeros(2, 4, 3)),
            ValueError,
            r"^weight must be a 4-d tensor \(C_out, C_in / groups, kH, kW\)",
        ),
        (
            lambda: conv2d(x4.tolist(), torch.zeros(2, 4, 3, 3)),
            TypeError,
            r"^x must be a torch.Tensor \(B, C, H, W\), got list",
        ),
        (lambda: conv2d(x4, "weight"), TypeError, "^weight must be a torch.Tensor"),
        (
            lambda: conv2d(x4, torch.zeros(2, 4, 3, 3), [0.0, 0.0]),
            TypeError,
            r"^bias must be a torch.Tensor \(C_out,\), got list",
        ),
        (
            lambda: conv2d(x4, torch.zeros(2, 4, 3, 3), torch.zeros(2, dtype=f64)),
            TypeError,
            "^x is torch.float32 but bias is torch.float64",
        ),
        (
            lambda: conv2d_loops(x4, torch.zeros(2, 4, 3, 3), torch.zeros(2, 1)),
            ValueError,
            "^bias must be a 1-d tensor",
        ),
        (
            lambda: conv2d(x4, torch.zeros(2, 3, 3, 3)),
            ValueError,
            "expects 3 channels per group",
        ),
        (
            lambda: conv2d(x4, torch.zeros(3, 2, 3, 3), groups=2),
            ValueError,
            "must divide both",
        ),
        (
            lambda: conv2d(x4, torch.zeros(2, 4, 3, 3), torch.zeros(3)),
            ValueError,
            r"bias must have shape \(2,\)",
        ),
        (
            lambda: conv2d(x4, torch.zeros(2, 4, 3, 3, dtype=f64)),
            TypeError,
            "x is torch.float32 but weight is",
        ),
        (
            lambda: conv2d(x4, torch.zeros(2, 4, 3, 3), stride=2, padding="same"),
            ValueError,
            "stride 1",
        ),
        (
            lambda: conv2d(x4, torch.zeros(2, 4, 3, 3), padding="half"),
            ValueError,
            "^padding p must be an int or one of",
        ),
        (
            lambda: conv2d(x4, torch.zeros(2, 4, 3, 3), padding=1.5),
            TypeError,
            "^padding p must be an int, got float 1.5",
        ),
        (
            lambda: conv2d(x4, torch.zeros(2, 4, 3, 3), stride=10**9),
            ValueError,
            "^stride s must be an int <= 1,000,000",
        ),
        (
            lambda: conv2d(x4, torch.zeros(2, 4, 3, 3), dilation=(1, "2")),
            TypeError,
            "^dilation d must be an int, got str '2'",
        ),
        (
            lambda: conv2d(x4, torch.zeros(2, 4, 7, 3)),
            ValueError,
            "^kernel 7 is larger than padded input 6",
        ),
        (
            lambda: conv2d(x4, torch.zeros(2, 4, 3, 3), stride=(1, 2, 3)),
            ValueError,
            r"one value or a pair \(height",
        ),
        (
            lambda: conv2d(x4, torch.zeros(2, 4, 3, 3), groups=0),
            ValueError,
            "^groups must be an int >= 1, got 0",
        ),
        (
            lambda: conv2d(x4, torch.zeros(2, 4, 3, 3), groups=1.0),
            TypeError,
            "^groups must be an int, got float 1.0",
        ),
        (
            lambda: conv2d_loops(x4, torch.zeros(2, 4, 3, 3), stride=0),
            ValueError,
            "^stride s must be an int >= 1, got 0",
        ),
        (
            lambda: max_pool2d(x4, 3, padding=2),
            ValueError,
            "torch requires p <= k // 2",
        ),
        (lambda: max_pool2d(x4, 2.0), TypeError, "kernel size k must be an int"),
        (lambda: avg_pool2d(x4, 8), ValueError, "larger than padded input 6"),
        (
            lambda: avg_pool2d(x4, 2, count_include_pad=None),
            TypeError,
            "^count_include_pad must be True or False, got NoneType",
        ),
        (
            lambda: avg_pool2d(x4, 2, count_include_pad="no"),
            TypeError,
            "^count_include_pad must be True or False, got str 'no'",
        ),
        (
            lambda: max_pool2d(x4, 2, ceil_mode="no"),
            TypeError,
            "^ceil_mode must be True or False, got str 'no'",
        ),
        (
            lambda: avg_pool2d(x4, 2, ceil_mode=0),
            TypeError,
            "^ceil_mode must be True or False, got int 0",
        ),
        (
            lambda: max_pool2d(x4, 10**9),
            ValueError,
            "^kernel size k must be an int <= 1,000,000",
        ),
        (lambda: max_pool2d(x4.numpy(), 2), TypeError, "^x must be a torch.Tensor"),
        (
            lambda: sliding_windows(torch.zeros(6, 6), 3),
            ValueError,
            r"^x must be a 4-d tensor \(B, C, H, W\)",
        ),
        (
            lambda: sliding_windows(x4, (3, 3, 3)),
            ValueError,
            r"^kernel must be one value or a pair \(height, width\)",
        ),
        (
            lambda: global_max_pool2d([[1.0]]),
            TypeError,
            "^x must be a torch.Tensor",
        ),
        (
            lambda: global_avg_pool2d(torch.ones(1, 1, 2, 2, dtype=torch.long)),
            TypeError,
            "^x must be a floating-point tensor, got torch.int64",
        ),
    ],
)
def test_bad_input_fails_early_with_a_clear_message(call, error, match):
    with pytest.raises(error, match=match):
        call()
