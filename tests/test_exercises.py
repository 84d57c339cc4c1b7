"""The exercise checkers pass right answers, catch classic mistakes with a true counterexample,
and report unfinished or crashing code instead of raising."""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from minigen.ops import arith, conv as ops
from minigen import exercises
from minigen.exercises import (CheckResult, check_bilinear_weights, check_conv_output_size,
    check_ddim_step, check_gaussian_kl, check_max_pool2d, check_pixel_shuffle, check_psnr,
    check_q_sample, check_receptive_field, check_reparameterize, check_transposed_output_size)

# --- right answers, written here from the closed forms (independent of the checkers' torch references)


def conv_size(i, k, s, p, d):
    return (i + 2 * p - d * (k - 1) - 1) // s + 1


def transposed_size(i, k, s, p, output_padding):
    return s * (i - 1) + output_padding + k - 2 * p


def unfold_max_pool(x, k, s):
    return x.unfold(2, k, s).unfold(3, k, s).amax(dim=(-2, -1))  # (B, C, H_out, W_out, k, k) -> max


def receptive_field_size(layers):
    size, jump = 1, 1
    for kernel, stride in layers:
        size, jump = size + (kernel - 1) * jump, jump * stride
    return size


def loop_max_pool(x, k, s, start=None):
    """A textbook loop; `start` set to 0.0 reproduces the zero-initialised-max bug."""
    batch, channels, height, width = x.shape
    out = torch.empty(batch, channels, (height - k) // s + 1, (width - k) // s + 1, dtype=x.dtype)
    for row in range(out.shape[2]):
        for col in range(out.shape[3]):
            window = x[:, :, row * s : row * s + k, col * s : col * s + k]
            best = window.amax(dim=(-2, -1))
            out[:, :, row, col] = best if start is None else best.clamp(min=start)
    return out


def assert_caught(result, wrong, right):
    """The check failed, and its counterexample really separates the wrong function from the right one."""
    assert isinstance(result, CheckResult)
    assert not result.passed and result.attempted
    case = list(result.counterexample.values())
    expected = right(*case)
    if torch.is_tensor(expected):
        assert torch.equal(result.expected, expected)
    else:
        assert result.expected == expected
    got = wrong(*case)
    if torch.is_tensor(got):
        assert got.shape != expected.shape or not torch.equal(got, expected)
    else:
        assert got != expected or type(got) is not int
    assert repr(result).startswith("❌ ")


# --- right answers pass


@pytest.mark.parametrize(
    ("check", "right"),
    [
        (check_conv_output_size, conv_size),
        (check_transposed_output_size, transposed_size),
        (check_max_pool2d, unfold_max_pool),
        (check_max_pool2d, loop_max_pool),
        (check_max_pool2d, lambda x, k, s: F.max_pool2d(x, k, s)),
        (check_receptive_field, receptive_field_size),
    ],
)
def test_right_answers_pass(check, right):
    result = check(right)
    assert result.passed, result
    assert result.counterexample is None
    assert repr(result) == f"✅ {result.name}: passed {result.cases} cases"


def test_minigen_arith_passes_its_own_exercises():
    assert check_conv_output_size(arith.conv_output_size).passed

    def transposed(i, k, s, p, output_padding):
        return arith.transposed_output_size(i, k, s, p, output_padding=output_padding)

    def field_size(layers):
        return arith.receptive_field([arith.Layer(kernel, stride) for kernel, stride in layers])[-1].size

    assert check_transposed_output_size(transposed).passed
    assert check_receptive_field(field_size).passed


def test_minigen_ops_max_pool2d_passes():
    assert check_max_pool2d(lambda x, k, s: ops.max_pool2d(x, k, s)).passed


def test_conv_check_runs_500_cases():
    assert repr(check_conv_output_size(conv_size)) == "✅ conv_output_size: passed 500 cases"


# --- classic mistakes are caught


def test_forgetting_the_floor_is_caught_at_a_fractional_case():
    def wrong(i, k, s, p, d):
        return (i + 2 * p - d * (k - 1) - 1) / s + 1  # / where // belongs

    result = check_conv_output_size(wrong)
    assert_caught(result, wrong, conv_size)
    assert result.counterexample == dict(i=6, k=3, s=2, p=0, d=1)
    assert (result.expected, result.got) == (2, 2.5)
    assert repr(result) == "❌ conv_output_size: i=6, k=3, s=2, p=0, d=1 → expected 2, got 2.5"


@pytest.mark.parametrize(
    "wrong",
    [
        lambda i, k, s, p, d: (i + 2 * p - d * (k - 1) - 1) // s,  # forgot + 1
        lambda i, k, s, p, d: (i + 2 * p - d * (k - 1)) // s + 1,  # off by one inside
        lambda i, k, s, p, d: (i + p - d * (k - 1) - 1) // s + 1,  # padding on one side only
        lambda i, k, s, p, d: -(-(i + 2 * p - d * (k - 1) - 1) // s) + 1,  # ceil instead of floor
    ],
)
def test_conv_mistakes_are_caught(wrong):
    assert_caught(check_conv_output_size(wrong), wrong, conv_size)


def test_ignoring_dilation_is_caught_at_a_dilated_case():
    def wrong(i, k, s, p, d):
        return (i + 2 * p - k) // s + 1

    result = check_conv_output_size(wrong)
    assert_caught(result, wrong, conv_size)
    assert result.counterexample["d"] > 1


def test_a_right_value_as_float_is_a_type_problem():
    def wrong(i, k, s, p, d):
        return float(conv_size(i, k, s, p, d))

    result = check_conv_output_size(wrong)
    assert_caught(result, wrong, conv_size)
    assert result.got == result.expected and isinstance(result.got, float)
    assert "int" in result.message and "float" in result.message


def test_a_wrong_value_is_reported_before_a_type_problem():
    """The first case gives 3.0 (right value, float); the wrong 2.5 of the second case is the verdict."""
    result = check_conv_output_size(lambda i, k, s, p, d: (i + 2 * p - d * (k - 1) - 1) / s + 1)
    assert result.got == 2.5 and result.cases == 2


@pytest.mark.parametrize(
    "wrong",
    [
        lambda i, k, s, p, a: s * i + a + k - 2 * p,  # s·i instead of s·(i - 1)
        lambda i, k, s, p, a: (i - 1) // s + k - 2 * p + a,  # the convolution's division, not a product
    ],
)
def test_transposed_mistakes_are_caught(wrong):
    assert_caught(check_transposed_output_size(wrong), wrong, transposed_size)


@pytest.mark.parametrize(
    ("wrong", "ignored"),
    [
        (lambda i, k, s, p, a: s * (i - 1) + k - 2 * p, "output_padding"),
        (lambda i, k, s, p, a: s * (i - 1) + a + k - p, "p"),  # crops one side only
    ],
)
def test_an_ignored_transposed_parameter_is_caught_where_it_matters(wrong, ignored):
    result = check_transposed_output_size(wrong)
    assert_caught(result, wrong, transposed_size)
    assert result.counterexample[ignored] > 0


def test_a_zero_initialised_max_is_caught_on_negative_input():
    def wrong(x, k, s):
        return loop_max_pool(x, k, s, start=0.0)

    result = check_max_pool2d(wrong)
    assert_caught(result, wrong, unfold_max_pool)
    assert (result.counterexample["x"] < 0).all()
    assert "values differ" in result.message and "all negative" in result.message


@pytest.mark.parametrize(
    "wrong",
    [
        lambda x, k, s: F.max_pool2d(x, k, s, ceil_mode=True),  # keeps the partial last window
        lambda x, k, s: F.max_pool2d(x[..., : x.shape[2]], k, s),  # the height used for both sides
        lambda x, k, s: F.max_pool2d(x, k, k),  # ignores the stride
    ],
)
def test_max_pool_shape_mistakes_are_reported_as_shapes(wrong):
    result = check_max_pool2d(wrong)
    assert_caught(result, wrong, unfold_max_pool)
    assert result.message.split("→ ")[1].startswith("shape mismatch")


@pytest.mark.parametrize(
    "wrong",
    [
        lambda x, k, s: F.avg_pool2d(x, k, s),  # the mean, not the max
        lambda x, k, s: -F.max_pool2d(-x, k, s),  # the min
        lambda x, k, s: F.max_pool2d(x[:, :1].expand_as(x), k, s),  # pools channel 0 everywhere
    ],
)
def test_max_pool_value_mistakes_are_reported_as_values(wrong):
    result = check_max_pool2d(wrong)
    assert_caught(result, wrong, unfold_max_pool)
    assert "values differ" in result.message


def test_max_pool_in_another_dtype_is_a_type_problem():
    result = check_max_pool2d(lambda x, k, s: F.max_pool2d(x.double(), k, s))
    assert not result.passed and result.attempted
    assert "dtype" in result.message


def test_max_pool_returning_a_list_is_reported():
    result = check_max_pool2d(lambda x, k, s: F.max_pool2d(x, k, s).tolist())
    assert not result.passed and "got a list" in result.message


@pytest.mark.parametrize(
    "wrong",
    [
        lambda layers: 1 + sum(k - 1 for k, _ in layers),  # ignores the strides
        lambda layers: sum(k for k, _ in layers),  # adds kernels
        lambda layers: receptive_field_size([(k, s) for k, s in layers[::-1]]),  # output side first
    ],
)
def test_receptive_field_mistakes_are_caught(wrong):
    assert_caught(check_receptive_field(wrong), wrong, receptive_field_size)


def test_a_jump_that_includes_the_current_stride_is_caught():
    def wrong(layers):
        size, jump = 1, 1
        for kernel, stride in layers:
            jump *= stride
            size += (kernel - 1) * jump
        return size

    assert_caught(check_receptive_field(wrong), wrong, receptive_field_size)


# --- unfinished, crashing and misused


@pytest.mark.parametrize(
    "check", [check_conv_output_size, check_transposed_output_size, check_max_pool2d, check_receptive_field]
)
def test_a_stub_is_not_attempted_yet(check):
    def stub(*args):
        raise NotImplementedError

    result = check(stub)
    assert not result.passed and not result.attempted
    assert repr(result) == f"⏳ {result.name}: not attempted yet: your function raised NotImplementedError"


def test_an_exception_in_the_readers_code_is_reported_with_its_case():
    result = check_conv_output_size(lambda i, k, s, p, d: i // (d - 1))
    assert not result.passed and result.attempted
    assert isinstance(result.got, ZeroDivisionError)
    assert result.counterexample == dict(i=5, k=3, s=1, p=0, d=1)
    assert "i=5, k=3, s=1, p=0, d=1 → expected 3, but your function raised ZeroDivisionError" in str(result)


def test_a_wrong_signature_is_reported_not_raised():
    result = check_max_pool2d(lambda x, k: F.max_pool2d(x, k))
    assert not result.passed and "TypeError" in result.message


def test_modifying_the_input_does_not_fool_the_checker():
    def pool_then_clobber(x, k, s):
        out = F.max_pool2d(x, k, s)
        x.zero_()
        return out

    assert check_max_pool2d(pool_then_clobber).passed


@pytest.mark.parametrize(
    "check", [check_conv_output_size, check_transposed_output_size, check_max_pool2d, check_receptive_field]
)
def test_a_non_callable_is_a_type_error(check):
    with pytest.raises(TypeError, match="expects your function itself"):
        check(3)


# --- cases and references


def test_cases_are_deterministic():
    assert exercises._conv_cases() == exercises._conv_cases()
    assert exercises._transposed_cases() == exercises._transposed_cases()
    assert exercises._receptive_field_cases() == exercises._receptive_field_cases()
    first, second = exercises._max_pool_cases(), exercises._max_pool_cases()
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a["x"], b["x"]) and (a["k"], a["s"]) == (b["k"], b["s"])


def test_conv_cases_cover_the_corners():
    cases = exercises._conv_cases()
    effective = [c["d"] * (c["k"] - 1) + 1 for c in cases]
    assert any(e == c["i"] + 2 * c["p"] for e, c in zip(effective, cases))  # kernel = padded input
    assert any(c["s"] > c["i"] + 2 * c["p"] - e for e, c in zip(effective, cases))  # stride past the range
    assert any(c["d"] > 1 and c["p"] > 0 and c["s"] > 1 for c in cases)
    assert any((c["i"] + 2 * c["p"] - e) % c["s"] for e, c in zip(effective, cases))  # the floor matters
    assert all(conv_size(**c) >= 1 for c in cases)


def test_max_pool_cases_cover_the_corners():
    cases = exercises._max_pool_cases()
    assert any((c["x"] < 0).all() for c in cases)
    assert any(c["x"].shape[2] != c["x"].shape[3] for c in cases)
    assert any(c["s"] < c["k"] for c in cases) and any(c["s"] > c["k"] for c in cases)
    assert any((c["x"].shape[2] - c["k"]) % c["s"] for c in cases)  # rows that fit no window
    assert any(c["x"].shape[0] > 1 and c["x"].shape[1] > 1 for c in cases)


@settings(max_examples=60, deadline=None)
@given(
    layers=st.lists(st.tuples(st.integers(1, 7), st.integers(1, 4)), min_size=1, max_size=6),
)
def test_brute_force_receptive_field_matches_the_closed_form(layers):
    assert exercises._brute_force_receptive_field(layers) == receptive_field_size(layers)


@settings(max_examples=100, deadline=None)
@given(
    k=st.integers(1, 7), s=st.integers(1, 5), p=st.integers(0, 4), d=st.integers(1, 4), extra=st.integers(0, 20),
)
def test_torch_conv_reference_matches_the_closed_form(k, s, p, d, extra):
    i = max(1, d * (k - 1) + 1 - 2 * p) + extra
    assert exercises._torch_conv_output_size(i, k, s, p, d) == conv_size(i, k, s, p, d)


@settings(max_examples=100, deadline=None)
@given(i=st.integers(1, 16), k=st.integers(1, 7), s=st.integers(1, 4), data=st.data())
def test_torch_transposed_reference_matches_the_closed_form(i, k, s, data):
    p = data.draw(st.integers(0, (k - 1) // 2))
    output_padding = data.draw(st.integers(0, s - 1))
    expected = transposed_size(i, k, s, p, output_padding)
    assert exercises._torch_transposed_output_size(i, k, s, p, output_padding) == expected


@settings(max_examples=15, deadline=None)
@given(st.data())
def test_a_mistake_in_any_single_case_is_found_exactly_there(data):
    """Every case is really checked: a function wrong on one case alone fails on that case."""
    cases = exercises._conv_cases()
    target = data.draw(st.sampled_from(cases))

    def wrong_once(i, k, s, p, d):
        right = conv_size(i, k, s, p, d)
        return right + 1 if dict(i=i, k=k, s=s, p=p, d=d) == target else right

    result = check_conv_output_size(wrong_once)
    assert not result.passed
    assert result.counterexample == target
    assert result.cases == cases.index(target) + 1


def test_forgetting_to_return_is_pointed_out():
    result = check_receptive_field(lambda layers: None)
    assert not result.passed and result.attempted
    assert "does your function return it?" in result.message


# --- chapter 2: bilinear weights and pixel shuffle


def linear_weights(in_size, out_size, align_corners):
    """The closed form, written here: each output pixel's source coordinate, split between two neighbours."""
    weights = torch.zeros(out_size, in_size, dtype=torch.float64)
    for o in range(out_size):
        if align_corners:
            source = o * (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
        else:
            source = max((o + 0.5) * in_size / out_size - 0.5, 0.0)  # half-pixel centres, clamped at 0
        left = min(int(source), in_size - 1)
        right = min(left + 1, in_size - 1)
        fraction = source - left
        weights[o, left] += 1 - fraction
        weights[o, right] += fraction
    return weights


def einops_pixel_shuffle(x, r):
    from einops import rearrange

    return rearrange(x, "b (c r1 r2) h w -> b c (h r1) (w r2)", r1=r, r2=r)


def test_chapter_2_right_answers_pass():
    assert check_bilinear_weights(linear_weights).passed
    assert check_bilinear_weights(lambda i, o, a: linear_weights(i, o, a).numpy()).passed  # NumPy is fine
    assert check_pixel_shuffle(einops_pixel_shuffle).passed
    assert check_pixel_shuffle(lambda x, r: F.pixel_shuffle(x, r)).passed


@pytest.mark.parametrize(
    "wrong",
    [
        lambda i, o, a: linear_weights(i, o, not a),  # align_corners swapped
        lambda i, o, a: linear_weights(i, o, True),  # align_corners ignored
    ],
)
def test_align_corners_mistakes_are_caught(wrong):
    result = check_bilinear_weights(wrong)
    assert_caught_weights(result, wrong)
    assert "values differ: W[" in result.message


def test_a_missing_clamp_at_the_edge_is_caught_at_the_first_output_pixel():
    def wrong(in_size, out_size, align_corners):
        if align_corners or out_size <= in_size:
            return linear_weights(in_size, out_size, align_corners)
        weights = torch.zeros(out_size, in_size, dtype=torch.float64)
        for o in range(out_size):
            source = (o + 0.5) * in_size / out_size - 0.5  # may be negative: the bug
            left = min(max(int(source), 0), in_size - 1)  # int() truncates towards 0
            fraction = source - left
            weights[o, left] += 1 - fraction
            weights[o, min(left + 1, in_size - 1)] += fraction
        return weights

    result = check_bilinear_weights(wrong)
    assert_caught_weights(result, wrong)
    assert result.counterexample == dict(in_size=4, out_size=8, align_corners=False)
    assert "W[0, 0]" in result.message


def test_a_transposed_weight_matrix_is_a_shape_problem_with_a_hint():
    result = check_bilinear_weights(lambda i, o, a: linear_weights(i, o, a).T)
    assert not result.passed
    assert result.message.endswith(
        "shape mismatch: expected (8, 4), got (4, 8) (rows are output pixels, columns input pixels)"
    )


def test_one_output_pixel_with_align_corners_is_a_case():
    def wrong(in_size, out_size, align_corners):  # divides by out_size - 1
        if align_corners:
            step = 1 / (out_size - 1)  # output pixels sit 1 / (out_size - 1) apart: the bug when out_size = 1
            return linear_weights(in_size, out_size, True) * step * (out_size - 1)
        return linear_weights(in_size, out_size, False)

    result = check_bilinear_weights(wrong)
    assert isinstance(result.got, ZeroDivisionError)
    assert result.counterexample == dict(in_size=6, out_size=1, align_corners=True)


def assert_caught_weights(result, wrong):
    assert not result.passed and result.attempted
    case = list(result.counterexample.values())
    expected = linear_weights(*case)
    assert torch.allclose(result.expected, expected)
    assert not torch.allclose(torch.as_tensor(wrong(*case)), expected)
    assert repr(result).startswith("❌ bilinear_weights: ")


@pytest.mark.parametrize(
    "wrong",
    [
        lambda x, r: einops_pixel_shuffle_order(x, r, "b (r1 r2 c) h w -> b c (h r1) (w r2)"),  # channel last
        lambda x, r: einops_pixel_shuffle_order(x, r, "b (c r2 r1) h w -> b c (h r1) (w r2)"),  # r1, r2 swapped
        lambda x, r: einops_pixel_shuffle_order(x, r, "b (c r1 r2) h w -> b c (r1 h) (r2 w)"),  # blocks, not pixels
    ],
)
def test_pixel_shuffle_order_mistakes_are_caught(wrong):
    result = check_pixel_shuffle(wrong)
    assert not result.passed and result.attempted
    case = list(result.counterexample.values())
    assert torch.equal(result.expected, einops_pixel_shuffle(*case))
    assert not torch.equal(wrong(*case), result.expected)
    assert "values differ" in result.message


def einops_pixel_shuffle_order(x, r, pattern):
    from einops import rearrange

    return rearrange(x, pattern, r1=r, r2=r)


def test_the_channel_order_mistake_needs_several_output_channels():
    """With one output channel, (c r1 r2) and (r1 r2 c) agree: the checker's second case has three."""
    wrong = lambda x, r: einops_pixel_shuffle_order(x, r, "b (r1 r2 c) h w -> b c (h r1) (w r2)")  # noqa: E731
    result = check_pixel_shuffle(wrong)
    assert result.cases == 2 and result.counterexample["x"].shape[1] == 12


def test_pixel_shuffle_shape_mistake_is_reported_as_a_shape():
    result = check_pixel_shuffle(lambda x, r: x.repeat_interleave(r, dim=2).repeat_interleave(r, dim=3))  # a resize
    assert not result.passed and result.message.endswith("shape mismatch: expected (1, 1, 4, 4), got (1, 4, 4, 4)")


@pytest.mark.parametrize("check", [check_bilinear_weights, check_pixel_shuffle])
def test_chapter_2_stubs_are_not_attempted_yet(check):
    def stub(*args):
        raise NotImplementedError

    assert not check(stub).attempted


def test_chapter_2_cases_are_deterministic_and_cover_the_corners():
    assert exercises._bilinear_cases() == exercises._bilinear_cases()
    for a, b in zip(exercises._pixel_shuffle_cases(), exercises._pixel_shuffle_cases(), strict=True):
        assert torch.equal(a["x"], b["x"]) and a["r"] == b["r"]
    cases = exercises._bilinear_cases()
    assert any(c["out_size"] < c["in_size"] for c in cases) and any(c["out_size"] % c["in_size"] for c in cases)
    assert {c["align_corners"] for c in cases} == {True, False}
    shuffles = exercises._pixel_shuffle_cases()
    assert {c["r"] for c in shuffles} >= {1, 2, 3, 4}
    assert any(c["x"].shape[1] > c["r"] ** 2 for c in shuffles)  # several output channels


@settings(max_examples=60, deadline=None)
@given(in_size=st.integers(1, 20), out_size=st.integers(1, 40), align_corners=st.booleans())
def test_torch_linear_weights_match_the_closed_form(in_size, out_size, align_corners):
    expected = linear_weights(in_size, out_size, align_corners)
    assert torch.allclose(exercises._torch_linear_weights(in_size, out_size, align_corners), expected, atol=1e-12)


def test_minigen_chapter_2_code_passes_its_own_exercises():
    from minigen.ops import interp, upsample

    assert check_bilinear_weights(lambda i, o, a: interp.resample_matrix(i, o, "bilinear", align_corners=a)).passed
    assert check_pixel_shuffle(upsample.pixel_shuffle).passed


# --- chapters 3 and 4: PSNR, the Gaussian KL, the reparameterization trick
# Right answers written from the closed forms; the checkers compare with F.mse_loss and torch.distributions.


def psnr_closed_form(prediction, target):
    mse = (prediction - target).square().mean(dim=(1, 2, 3))
    return -10 * torch.log10(mse)  # 10 log10(1 / MSE)


def kl_closed_form(mu, logvar):
    return 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(dim=-1)


def reparameterize_closed_form(mu, logvar, eps):
    return mu + torch.exp(0.5 * logvar) * eps


def test_chapter_3_and_4_right_answers_pass():
    from minigen.eval import metrics
    from minigen.models import vae
    for check, right in [(check_psnr, psnr_closed_form), (check_psnr, metrics.psnr),
                         (check_gaussian_kl, kl_closed_form), (check_gaussian_kl, vae.gaussian_kl),
                         (check_reparameterize, reparameterize_closed_form)]:
        result = check(right)
        assert result.passed, result


@pytest.mark.parametrize("wrong", [
    lambda p, t: -10 * torch.log10((p - t).square().mean()).expand(len(p)),  # one MSE over the whole batch
    lambda p, t: -20 * torch.log10((p - t).square().mean(dim=(1, 2, 3))),  # 20 log10 of a squared error
    lambda p, t: -10 * torch.log10((p - t).abs().mean(dim=(1, 2, 3))),  # mean absolute error
    lambda p, t: -10 * torch.log10((p - t).square().mean(dim=(1, 2, 3))).mean(),  # one number, not (N,)
])
def test_psnr_mistakes_are_caught(wrong):
    assert_close_caught(check_psnr(wrong), wrong, psnr_closed_form)


@pytest.mark.parametrize("wrong", [
    lambda mu, logvar: 0.5 * (mu.square() + logvar - 1 - logvar.exp()).sum(-1),  # exp on the wrong term
    lambda mu, logvar: (mu.square() + logvar.exp() - 1 - logvar).sum(-1),  # the 1/2 forgotten
    lambda mu, logvar: 0.5 * (mu.square() + logvar.exp() - 1 - logvar).mean(-1),  # mean over L, not sum
    lambda mu, logvar: 0.5 * (mu.square() + logvar.exp() - 1 - logvar),  # not reduced over L
    lambda mu, logvar: 0.5 * (mu.square() + logvar.exp().square() - 1 - 2 * logvar).sum(-1),  # logvar read as log sigma
])
def test_kl_mistakes_are_caught(wrong):
    assert_close_caught(check_gaussian_kl(wrong), wrong, kl_closed_form)


@pytest.mark.parametrize("wrong", [
    lambda mu, logvar, eps: mu + logvar.exp() * eps,  # the variance used as the standard deviation
    lambda mu, logvar, eps: mu + logvar * eps,
    lambda mu, logvar, eps: mu * torch.exp(0.5 * logvar) + eps,
])
def test_reparameterize_value_mistakes_are_caught(wrong):
    result = check_reparameterize(wrong)
    assert not result.passed and result.attempted
    mu, logvar, eps = (t.clone().requires_grad_() for t in result.counterexample.values())
    got, right = wrong(mu, logvar, eps), reparameterize_closed_form(mu, logvar, eps)
    # at logvar = 0 the first mistake has the right value, so the checker had to catch its gradient
    wrong_grad, right_grad = (torch.autograd.grad(z.sum(), logvar)[0] for z in (got, right))
    assert not torch.allclose(got, right) or not torch.allclose(wrong_grad, right_grad)


def test_a_sample_without_gradient_is_caught():
    def detached(mu, logvar, eps):
        return (mu + torch.exp(0.5 * logvar) * eps).detach()

    result = check_reparameterize(detached)
    assert not result.passed and "no gradient" in result.message


def test_a_sample_that_ignores_eps_gradient_path_is_caught():
    def sigma_detached(mu, logvar, eps):  # right values, but logvar gets no gradient
        return mu + torch.exp(0.5 * logvar).detach() * eps

    result = check_reparameterize(sigma_detached)
    assert not result.passed and "logvar" in result.message


def test_a_wrong_gradient_with_right_values_is_caught():
    class ScaledGrad(torch.autograd.Function):  # the identity whose backward doubles the gradient
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, grad):
            return 2 * grad

    def wrong_grad(mu, logvar, eps):
        return ScaledGrad.apply(mu) + torch.exp(0.5 * logvar) * eps

    result = check_reparameterize(wrong_grad)
    assert not result.passed and "d(sum z)/d mu" in result.message


@pytest.mark.parametrize("check", [check_psnr, check_gaussian_kl, check_reparameterize])
def test_chapter_3_and_4_stubs_are_not_attempted_yet(check):
    def stub(*args):
        raise NotImplementedError

    result = check(stub)
    assert not result.attempted and repr(result).startswith("⏳")


def test_the_references_agree_with_the_closed_forms():
    for case in exercises._psnr_cases():
        assert torch.allclose(exercises._torch_psnr(**case), psnr_closed_form(**case))
    for case in exercises._kl_cases():
        assert torch.allclose(exercises._torch_gaussian_kl(**case), kl_closed_form(**case))
    for case in exercises._reparameterize_cases():
        z, grad_mu, grad_logvar = exercises._torch_reparameterize(**case)
        assert torch.allclose(z, reparameterize_closed_form(**case))
        assert torch.equal(grad_mu, torch.ones_like(grad_mu))  # dz/dmu = 1
        # dz/dlogvar = 1/2 sigma eps
        assert torch.allclose(grad_logvar, 0.5 * torch.exp(0.5 * case["logvar"]) * case["eps"])


def test_the_first_psnr_corner_is_six_decibels():
    case = exercises._psnr_cases()[0]
    assert exercises._torch_psnr(**case).item() == pytest.approx(10 * torch.log10(torch.tensor(4.0)).item())


def assert_close_caught(result, wrong, right):
    """The check failed at a case where the wrong function really differs from the right one."""
    assert not result.passed and result.attempted, result
    case = list(result.counterexample.values())
    got, expected = wrong(*case), right(*case)
    assert got.shape != expected.shape or not torch.allclose(got, expected)


# --- chapter 5: q_sample and one DDIM step


def q_sample_closed_form(x0, noise, alpha_bar):
    return alpha_bar**0.5 * x0 + (1 - alpha_bar) ** 0.5 * noise


def ddim_step_via_x0(x_t, eps, alpha_bar_t, alpha_bar_prev):
    x0 = (x_t - (1 - alpha_bar_t) ** 0.5 * eps) / alpha_bar_t**0.5
    return alpha_bar_prev**0.5 * x0 + (1 - alpha_bar_prev) ** 0.5 * eps


def test_chapter_5_right_answers_pass_including_minigens_own():
    from minigen import diffusion
    assert check_q_sample(q_sample_closed_form).passed
    assert check_ddim_step(ddim_step_via_x0).passed

    def minigen_ddim_step(x_t, eps, alpha_bar_t, alpha_bar_prev):   # minigen's step on a two-level schedule
        betas = (torch.tensor([1 - alpha_bar_prev, 1 - alpha_bar_t / alpha_bar_prev], dtype=torch.float64)
                 if alpha_bar_prev < 1 else None)
        x0 = (x_t - (1 - alpha_bar_t) ** 0.5 * eps) / alpha_bar_t**0.5
        if betas is None:
            return x0
        schedule = diffusion.NoiseSchedule(betas.clamp(min=1e-12))
        return diffusion.ddim_step(schedule, x_t, eps, x0, 1, 0, eta=0.0)

    assert check_ddim_step(minigen_ddim_step).passed


@pytest.mark.parametrize("wrong", [
    lambda x0, noise, ab: ab * x0 + (1 - ab) * noise,                  # variances used as scales
    lambda x0, noise, ab: ab**0.5 * x0 + noise,                        # noise never shrinks
    lambda x0, noise, ab: (1 - ab) ** 0.5 * x0 + ab**0.5 * noise,      # the two roles swapped
])
def test_q_sample_mistakes_are_caught(wrong):
    assert_close_caught(check_q_sample(wrong), wrong, q_sample_closed_form)


@pytest.mark.parametrize("wrong", [
    lambda x_t, eps, ab, ab_prev: (ab_prev / ab) ** 0.5 * x_t,                               # drops the eps term
    lambda x_t, eps, ab, ab_prev: ab_prev**0.5 * (x_t - (1 - ab) ** 0.5 * eps) + (1 - ab_prev) ** 0.5 * eps,  # x0 not divided by sqrt(ab)
    lambda x_t, eps, ab, ab_prev: ddim_step_via_x0(x_t, eps, ab_prev, ab),                   # levels swapped
])
def test_ddim_step_mistakes_are_caught(wrong):
    assert_close_caught(check_ddim_step(wrong), wrong, ddim_step_via_x0)
