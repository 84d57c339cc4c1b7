"""Chapter 8 exercises (minigen.exercises.ch08_latent): one head of cross-attention from image
positions to text tokens, where img2img starts on the DDIM schedule, and the inpainting blend.
Right answers, written here from the closed forms (the checkers use torch's
scaled_dot_product_attention, the timesteps counted up from 0 and torch.where), pass,
minigen's own attention, img2img_steps with ddim_timesteps, and the blend of latent.denoise
included; classic mistakes are caught with a true counterexample and a hint, and never raise."""

import math

import pytest
import torch

from minigen.diffusion.sampling import ddim_timesteps
from minigen.exercises import ch08_latent as ch08
from minigen.exercises.ch08_latent import (
    check_cross_attention,
    check_img2img_start,
    check_inpainting_blend,
)

CHECKERS = [check_cross_attention, check_img2img_start, check_inpainting_blend]

# tiny tensors: one thread avoids the cost of syncing threads on a shared machine
pytestmark = pytest.mark.usefixtures("one_thread")

# --- right answers, written here


def cross_attention_closed_form(h, states, mask, w_q, w_k, w_v):
    q, k, v = h @ w_q, states @ w_k, states @ w_v  # (B, N, C), (B, L, C) twice
    scores = q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])  # (B, N, L)
    scores = scores.masked_fill(~mask[:, None, :], float("-inf"))
    return scores.softmax(dim=-1) @ v


def cross_attention_einsum_large_negative(h, states, mask, w_q, w_k, w_v):
    """-1e9 in place of -inf, einsum in place of matmul: the same answer."""
    q, k, v = h @ w_q, states @ w_k, states @ w_v
    scores = torch.einsum("bnc,blc->bnl", q, k) / q.shape[-1] ** 0.5
    scores = torch.where(mask[:, None, :], scores, torch.tensor(-1e9).to(scores))
    return torch.einsum("bnl,blc->bnc", scores.softmax(-1), v)


def minigen_cross_attention(h, states, mask, w_q, w_k, w_v):
    """minigen's attention() with a heads axis of 1 and its padding mask."""
    from minigen.nn.attention import attention, padding_mask

    q, k, v = (
        (x @ w)[:, None] for x, w in ((h, w_q), (states, w_k), (states, w_v))
    )
    return attention(q, k, v, padding_mask(mask))[:, 0]


def minigen_multi_head_attention(h, states, mask, w_q, w_k, w_v):
    """minigen's MultiHeadAttention, one head, its weights set to the exercise's
    (nn.Linear computes x W^T + b), biases zero, the output projection the identity."""
    from minigen.nn.attention import MultiHeadAttention

    channels, width = w_q.shape[0], w_k.shape[0]
    layer = MultiHeadAttention(channels, 1, context_dim=width).double()
    with torch.no_grad():
        for linear, weight in (
            (layer.to_q, w_q),
            (layer.to_k, w_k),
            (layer.to_v, w_v),
            (layer.to_out, torch.eye(channels, dtype=torch.float64)),
        ):
            linear.weight.copy_(weight.T)
            linear.bias.zero_()
        return layer(h, states, mask)


def img2img_start_closed_form(strength, steps, total):
    count = int(strength * steps)
    if count == 0:
        return 0, None
    return count, ddim_timesteps(total, steps)[-count]


def minigen_img2img_start(strength, steps, total):
    """What LatentDiffusion.img2img_latents does: img2img_steps, then the last count
    timesteps of the schedule, the first of them the start."""
    from minigen.pipelines.latent import img2img_steps

    count = img2img_steps(strength, steps)
    if count == 0:
        return 0, None
    return count, ddim_timesteps(total, steps)[-count:][0]


def blend_closed_form(x_prev, known, mask, alpha_bar_prev, noise):
    noised = alpha_bar_prev**0.5 * known + (1 - alpha_bar_prev) ** 0.5 * noise
    return mask * x_prev + (1 - mask) * noised


def minigen_blend(x_prev, known, mask, alpha_bar_prev, noise):
    """The blend of latent.denoise, known noised by q_sample on a schedule of one level
    alpha_bar_prev (or known itself at t_prev = -1, after the last step, as noised())."""
    from minigen.diffusion.schedule import NoiseSchedule, q_sample

    if alpha_bar_prev == 1.0:
        noised = known
    else:
        schedule = NoiseSchedule(
            torch.tensor([1 - alpha_bar_prev], dtype=torch.float64)
        )
        steps = torch.zeros(len(known), dtype=torch.long)
        noised = q_sample(schedule, known, steps, noise)
    return mask * x_prev + (1 - mask) * noised


def test_right_answers_pass_including_minigens_own():
    for check, right in [
        (check_cross_attention, cross_attention_closed_form),
        (check_cross_attention, cross_attention_einsum_large_negative),
        (check_cross_attention, minigen_cross_attention),
        (check_cross_attention, minigen_multi_head_attention),
        (check_img2img_start, img2img_start_closed_form),
        (check_img2img_start, minigen_img2img_start),
        (check_inpainting_blend, blend_closed_form),
        (check_inpainting_blend, minigen_blend),
    ]:
        result = check(right)
        assert result.passed, result
        assert repr(result).startswith("✅")


def assert_caught(result, wrong, right):
    """The check failed at a case where the wrong function really differs from the right one
    (or raises there, as the checker reported)."""
    assert not result.passed and result.attempted, result
    if isinstance(result.got, Exception):
        with pytest.raises(type(result.got)):
            wrong(*result.counterexample.values())
        return
    case = list(result.counterexample.values())
    got, expected = wrong(*case), right(*case)
    if isinstance(expected, torch.Tensor):
        assert (
            not isinstance(got, torch.Tensor)
            or got.shape != expected.shape
            or not torch.allclose(
                got.to(expected.dtype), expected, rtol=1e-6, atol=1e-8
            )
        )
    else:  # a pair: the right values in the right types pass
        assert not (
            isinstance(got, tuple)
            and len(got) == 2
            and all(type(g) is type(e) and g == e for g, e in zip(got, expected))
        )


# --- cross-attention


def attend(h, states, mask, w_q, w_k, w_v, *, scale=None, use_mask=True, axis=-1):
    """The closed form with one thing changed."""
    q, k, v = h @ w_q, states @ w_k, states @ w_v
    scores = q @ k.transpose(1, 2) / (scale or math.sqrt(q.shape[-1]))
    if use_mask:
        scores = scores.masked_fill(~mask[:, None, :], float("-inf"))
    return scores.softmax(dim=axis) @ v


def masked_after_softmax(h, states, mask, w_q, w_k, w_v):
    """Padding zeroed after the softmax, not renormalised: weights sum to less than 1."""
    q, k, v = h @ w_q, states @ w_k, states @ w_v
    weights = (q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])).softmax(-1)
    return (weights * mask[:, None, :]) @ v


CROSS_ATTENTION_MISTAKES = {
    "no-mask": lambda *a: attend(*a, use_mask=False),
    "sqrt-D": lambda *a: attend(*a, scale=math.sqrt(a[1].shape[-1])),
    "softmax-over-positions": lambda *a: attend(*a, axis=1),
    "no-scale": lambda *a: attend(*a, scale=1.0),
    "scale-by-C": lambda *a: attend(*a, scale=a[0].shape[-1]),
    "mask-inverted": lambda h, s, m, *w: attend(h, s, ~m, *w),
    "masked-after-softmax": masked_after_softmax,
    "keys-as-values": lambda h, s, m, w_q, w_k, w_v: attend(h, s, m, w_q, w_k, w_k),
    "heads-axis-kept": lambda *a: cross_attention_closed_form(*a)[:, None],
    "float32": lambda *a: cross_attention_closed_form(
        *(x.float() for x in a[:2]), a[2], *(w.float() for w in a[3:])
    ),
}


@pytest.mark.parametrize(
    "wrong", CROSS_ATTENTION_MISTAKES.values(), ids=CROSS_ATTENTION_MISTAKES.keys()
)
def test_cross_attention_mistakes_are_caught(wrong):
    assert_caught(check_cross_attention(wrong), wrong, cross_attention_closed_form)


@pytest.mark.parametrize(
    "wrong, corner",
    [
        ("sqrt-D", 0),  # no padding: the scale alone is wrong
        ("softmax-over-positions", 0),
        ("no-mask", 1),  # the first corner with padding
        ("mask-inverted", 0),  # no padding: every token hidden, nan
        ("masked-after-softmax", 1),
    ],
)
def test_each_cross_attention_mistake_has_a_corner_of_its_own(wrong, corner):
    result = check_cross_attention(CROSS_ATTENTION_MISTAKES[wrong])
    assert result.cases == corner + 1, result


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (
            "no-mask",
            "padding tokens get weight: your answer changes when only the states of the padding tokens (mask False) change",
        ),
        ("masked-after-softmax", "padding tokens get weight"),
        (
            "sqrt-D",
            "scaled by sqrt(D) = sqrt(12), the width of the token states: scale them by sqrt(C) = sqrt(8)",
        ),
        ("softmax-over-positions", "the softmax runs over the image positions"),
        (
            "heads-axis-kept",
            "shape mismatch: expected (2, 4, 8), got (2, 1, 4, 8) (drop the heads axis of 1)",
        ),
    ],
)
def test_cross_attention_mistakes_get_a_hint(wrong, hint):
    result = check_cross_attention(CROSS_ATTENTION_MISTAKES[wrong])
    assert hint in result.message, result
    assert "values differ" in result.message or "shape" in result.message


def test_an_answer_that_ignores_padding_gets_no_padding_hint():
    """The probe zeroes the padding states; a right mask with a wrong scale does not move."""

    def wrong_scale_where_padded(*args):
        if bool(args[2].all()):
            return cross_attention_closed_form(*args)
        return attend(*args, scale=1.0)

    result = check_cross_attention(wrong_scale_where_padded)
    assert not result.passed and result.cases == 2  # the first case with padding
    assert "padding" not in result.message and "values differ" in result.message


def test_the_padding_probe_forgives_a_crash_of_its_second_call():
    def crashes_the_second_time(h, states, mask, *weights):
        padding = states[~mask]
        if len(padding) and bool((padding == 0).all()):  # the probe's call
            raise RuntimeError("second call")
        return attend(h, states, mask, *weights, use_mask=False)

    result = check_cross_attention(crashes_the_second_time)
    assert not result.passed and result.cases == 2
    assert "values differ" in result.message and "padding" not in result.message


def test_cross_attention_wrong_types_fail_without_raising():
    as_list = check_cross_attention(
        lambda *a: cross_attention_closed_form(*a).tolist()
    )
    assert not as_list.passed and "got a list" in as_list.message
    nothing = check_cross_attention(lambda *a: None)
    assert "does your function return it?" in nothing.message
    transposed = check_cross_attention(
        lambda *a: cross_attention_closed_form(*a).transpose(1, 2)
    )
    assert "shape mismatch: expected (2, 4, 8), got (2, 8, 4)" in transposed.message


# --- where img2img starts


def start_with(count_of, index_of):
    def start(strength, steps, total):
        count = count_of(strength, steps)
        if count == 0:
            return 0, None
        return count, ddim_timesteps(total, steps)[index_of(count)]

    return start


def truncated(strength, steps):
    return int(strength * steps)


IMG2IMG_MISTAKES = {
    "round": start_with(lambda s, n: round(s * n), lambda c: -c),
    "ceil": start_with(lambda s, n: math.ceil(s * n), lambda c: -c),
    "from-the-front": start_with(truncated, lambda c: c - 1),
    "from-the-front-past": start_with(
        truncated, lambda c: c
    ),  # IndexError at c = steps
    "one-before": start_with(
        truncated, lambda c: -c - 1
    ),  # IndexError at c = steps
    "one-after": start_with(truncated, lambda c: -c + 1 if c > 1 else -1),
    "count-plus-one": start_with(
        lambda s, n: int(s * n) + 1, lambda c: -min(c, 25)
    ),
    "times-minus-zero": lambda s, n, t: (  # no None: times[-0] is times[0]
        int(s * n),
        ddim_timesteps(t, n)[-int(s * n)],
    ),
    "steps-not-timesteps": lambda s, n, t: steps_not_timesteps(s, n, t),
    "count-only": lambda s, n, t: int(s * n),
    "float-count": lambda s, n, t: (
        float(int(s * n)),
        img2img_start_closed_form(s, n, t)[1],
    ),
}


def steps_not_timesteps(strength, steps, total):  # the index, not the timestep
    count = int(strength * steps)
    return (0, None) if count == 0 else (count, steps - count)


@pytest.mark.parametrize(
    "wrong", IMG2IMG_MISTAKES.values(), ids=IMG2IMG_MISTAKES.keys()
)
def test_img2img_start_mistakes_are_caught(wrong):
    assert_caught(check_img2img_start(wrong), wrong, img2img_start_closed_form)


@pytest.mark.parametrize(
    "wrong, corner",
    [
        ("round", 0),  # 7.5 steps
        ("from-the-front", 0),
        ("one-before", 0),
        ("times-minus-zero", 2),  # strength 0
    ],
)
def test_each_img2img_start_mistake_has_a_corner_of_its_own(wrong, corner):
    result = check_img2img_start(IMG2IMG_MISTAKES[wrong])
    assert result.cases == corner + 1, result


def test_img2img_start_mistakes_get_a_hint():
    rounded = check_img2img_start(IMG2IMG_MISTAKES["round"])
    assert rounded.message.endswith(
        "→ expected (7, 250), but the count should be 7, got 8: strength x steps = "
        "7.5, which img2img truncates as int() does, not rounds"
    )
    front = check_img2img_start(IMG2IMG_MISTAKES["from-the-front"])
    assert "the first timestep should be 250, got 749" in front.message
    assert (
        "img2img runs the last 7 of the 25 timesteps, which end at 0"
        in front.message
    )
    zero = check_img2img_start(IMG2IMG_MISTAKES["times-minus-zero"])
    assert "return None, not 999 (note that times[-0] is times[0]" in zero.message
    # the index off by one: a crash at strength 1 is reported, not raised
    past = check_img2img_start(IMG2IMG_MISTAKES["from-the-front-past"])
    assert "IndexError" in past.message or "should be" in past.message


def test_img2img_start_wrong_shapes_and_types_fail_without_raising():
    only = check_img2img_start(IMG2IMG_MISTAKES["count-only"])
    assert (
        "expected a pair (count, first_timestep) = (7, 250), got an int"
        in only.message
    )
    floats = check_img2img_start(IMG2IMG_MISTAKES["float-count"])
    assert not floats.passed
    assert (
        "got the count 7.0 (a float): the right value, but return it as an int"
        in floats.message
    )
    as_list = check_img2img_start(lambda *a: list(img2img_start_closed_form(*a)))
    assert as_list.passed  # a pair as a list is still a pair
    tensor_first = check_img2img_start(
        lambda *a: (lambda c, f: (c, f if f is None else torch.tensor(f)))(
            *img2img_start_closed_form(*a)
        )
    )
    assert not tensor_first.passed and "first_timestep" in tensor_first.message
    triple = check_img2img_start(lambda *a: (*img2img_start_closed_form(*a), 0))
    assert "got a tuple of 3 values" in triple.message
    zero_for_none = check_img2img_start(
        lambda *a: tuple(
            0 if x is None else x for x in img2img_start_closed_form(*a)
        )
    )
    assert "return None, not 0" in zero_for_none.message


# --- the inpainting blend


BLEND_MISTAKES = {
    "mask-inverted": lambda x, k, m, ab, n: blend_closed_form(x, k, 1 - m, ab, n),
    "known-not-noised": lambda x, k, m, ab, n: m * x + (1 - m) * k,
    "scales-swapped": lambda x, k, m, ab, n: (
        m * x + (1 - m) * ((1 - ab) ** 0.5 * k + ab**0.5 * n)
    ),
    "no-sqrt": lambda x, k, m, ab, n: m * x + (1 - m) * (ab * k + (1 - ab) * n),
    "noise-not-scaled": lambda x, k, m, ab, n: m * x + (1 - m) * (ab**0.5 * k + n),
    "x-prev-noised": lambda x, k, m, ab, n: (
        m * (ab**0.5 * x + (1 - ab) ** 0.5 * n)
        + (1 - m) * (ab**0.5 * k + (1 - ab) ** 0.5 * n)
    ),
    "returns-x-prev": lambda x, k, m, ab, n: x.clone(),
    "not-exact-at-1": lambda *a: blend_closed_form(*a) * (1 + 1e-12),
    "mask-channel-only": lambda *a: blend_closed_form(*a)[:, :1],  # a wrong shape
}


@pytest.mark.parametrize(
    "wrong", BLEND_MISTAKES.values(), ids=BLEND_MISTAKES.keys()
)
def test_inpainting_blend_mistakes_are_caught(wrong):
    result = check_inpainting_blend(wrong)
    if (
        wrong is BLEND_MISTAKES["not-exact-at-1"]
    ):  # right to 1e-6: caught by exactness
        assert not result.passed and result.counterexample["alpha_bar_prev"] == 1.0
        return
    assert_caught(result, wrong, blend_closed_form)


@pytest.mark.parametrize(
    "wrong, corner",
    [
        ("mask-inverted", 0),
        ("known-not-noised", 0),
        ("scales-swapped", 0),  # alpha_bar_prev 0.3, not 0.5
        ("returns-x-prev", 0),
        ("not-exact-at-1", 1),  # alpha_bar_prev = 1
    ],
)
def test_each_blend_mistake_has_a_corner_of_its_own(wrong, corner):
    result = check_inpainting_blend(BLEND_MISTAKES[wrong])
    assert result.cases == corner + 1, result


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (
            "mask-inverted",
            "mask 0 there: your answer takes the other side of the blend, as if 1 meant keep; 1 means redraw (x_prev), 0 keep",
        ),
        (
            "known-not-noised",
            "you took the known latent as it is; noise it to the step's level alpha_bar_prev",
        ),
        ("scales-swapped", "(mask 0 there: the known region, kept)"),
        (
            "not-exact-at-1",
            "the kept region (mask 0) must be the known latent exactly: out[0, 0, 0, 0] differs from known by",
        ),
    ],
)
def test_blend_mistakes_get_a_hint(wrong, hint):
    result = check_inpainting_blend(BLEND_MISTAKES[wrong])
    assert hint in result.message, result


def test_blend_wrong_shapes_and_types_fail_without_raising():
    one_channel = check_inpainting_blend(BLEND_MISTAKES["mask-channel-only"])
    assert (
        "shape mismatch: expected (2, 4, 4, 4), got (2, 1, 4, 4)"
        in one_channel.message
    )
    as_array = check_inpainting_blend(lambda *a: blend_closed_form(*a).numpy())
    assert not as_array.passed and "got a ndarray" in as_array.message
    nothing = check_inpainting_blend(lambda *a: None)
    assert "does your function return it?" in nothing.message


def test_the_blend_keeps_known_exactly_with_where_or_arithmetic():
    def with_where(x_prev, known, mask, alpha_bar_prev, noise):
        noised = (
            math.sqrt(alpha_bar_prev) * known
            + math.sqrt(1 - alpha_bar_prev) * noise
        )
        return torch.where(mask.bool(), x_prev, noised)

    assert check_inpainting_blend(with_where).passed


# --- every checker: unfinished, crashing and misused


@pytest.mark.parametrize("check", CHECKERS, ids=lambda check: check.__name__)
def test_a_stub_is_not_attempted_yet(check):
    def stub(*args):
        raise NotImplementedError

    result = check(stub)
    assert not result.passed and not result.attempted and result.cases == 1
    assert repr(result).startswith("⏳")


@pytest.mark.parametrize("check", CHECKERS, ids=lambda check: check.__name__)
def test_a_crash_is_reported_not_raised(check):
    def crashes(*args):
        raise KeyError("oops")

    result = check(crashes)
    assert not result.passed and result.attempted and result.cases == 1
    assert "but your function raised KeyError" in result.message


@pytest.mark.parametrize("check", CHECKERS, ids=lambda check: check.__name__)
@pytest.mark.parametrize("not_a_function", [3, "my_function", torch.zeros(3), None])
def test_a_non_callable_is_a_type_error_that_names_the_checker(
    check, not_a_function
):
    name = check.__name__.removeprefix("check_")
    with pytest.raises(
        TypeError,
        match=rf"check_{name} must be your function itself, e\.g\. "
        rf"check_{name}\(my_{name}\) \(pass it without calling it\), got ",
    ):
        check(not_a_function)


def test_the_checkers_leave_the_cases_unchanged():
    def modifies_attention(h, states, mask, w_q, w_k, w_v):
        result = cross_attention_closed_form(h, states, mask, w_q, w_k, w_v)
        states.zero_()
        mask.fill_(True)
        return result

    def modifies_blend(x_prev, known, mask, alpha_bar_prev, noise):
        result = blend_closed_form(x_prev, known, mask, alpha_bar_prev, noise)
        known.zero_()
        mask.fill_(1.0)
        return result

    assert check_cross_attention(modifies_attention).passed
    assert check_inpainting_blend(modifies_blend).passed


def test_the_checkers_are_exported_by_the_package():
    from minigen import exercises

    for check in CHECKERS:
        assert getattr(exercises, check.__name__) is check
        assert check.__name__ in exercises.__all__


# --- the references and the cases


def test_the_references_agree_with_the_right_answers_and_minigens_code():
    for case in ch08._cross_attention_cases():
        expected = ch08._torch_cross_attention(**case)
        for right in (cross_attention_closed_form, minigen_cross_attention):
            assert torch.allclose(right(**case), expected, rtol=1e-10, atol=1e-12)
    for case in ch08._img2img_start_cases():
        expected = ch08._counted_up_start(**case)
        assert img2img_start_closed_form(**case) == expected
        assert minigen_img2img_start(**case) == expected
    for case in ch08._inpainting_blend_cases():
        expected = ch08._where_blend(**case)
        assert torch.allclose(blend_closed_form(**case), expected, rtol=1e-12)
        assert torch.allclose(minigen_blend(**case), expected, rtol=1e-12)


def test_the_img2img_reference_matches_the_pipelines_slice_of_the_schedule():
    """LatentDiffusion.img2img_latents runs ddim_timesteps(1000, steps)[-count:]: the
    reference's first timestep is its first, and the slice ends at 0."""
    from minigen.pipelines.latent import SCHEDULE_STEPS, img2img_steps

    for strength in (0.3, 0.6, 0.9, 1.0):
        for steps in (25, 50):
            count = img2img_steps(strength, steps)
            times = ddim_timesteps(SCHEDULE_STEPS, steps)[-count:]
            assert len(times) == count and times[-1] == 0
            assert ch08._counted_up_start(strength, steps, SCHEDULE_STEPS) == (
                count,
                times[0],
            )
    assert ch08._counted_up_start(1.0, 50, 1000) == (50, 999)
    assert ch08._counted_up_start(0.0, 50, 1000) == (0, None)


def test_the_cases_cover_the_corners():
    attentions = ch08._cross_attention_cases()
    assert all(bool(c["mask"].all()) for c in attentions[:1])  # no padding first
    assert not bool(attentions[1]["mask"].all(dim=1).any())  # every caption padded
    assert sum(not bool(c["mask"].all()) for c in attentions) >= 20
    for c in attentions:
        assert c["mask"].dtype == torch.bool and bool(c["mask"].any(dim=1).all())
        assert c["h"].dtype == c["states"].dtype == torch.float64
        assert c["w_q"].shape[0] == c["w_q"].shape[1] == c["h"].shape[-1]
        assert (
            c["w_k"].shape
            == c["w_v"].shape
            == (c["states"].shape[-1], c["h"].shape[-1])
        )
    assert any(
        c["h"].shape[-1] == c["states"].shape[-1] for c in attentions
    )  # C = D
    assert attentions[0]["h"].shape[-1] != attentions[0]["states"].shape[-1]
    # one caption twice, padded with different states: the same answer twice
    twice = ch08._torch_cross_attention(**attentions[3])
    assert torch.allclose(twice[0], twice[1])
    assert not torch.equal(attentions[3]["states"][0], attentions[3]["states"][1])

    starts = ch08._img2img_start_cases()
    pairs = {(c["strength"], c["steps"]) for c in starts}
    for strength in (0.0, 0.3, 0.6, 0.9, 1.0):
        assert {(strength, 25), (strength, 50)} <= pairs
    assert all(c["total"] == 1000 for c in starts[:13])
    products = [c["strength"] * c["steps"] for c in starts]
    assert sum(round(p) != int(p) for p in products) >= 5  # round and int disagree
    assert all(c["steps"] <= c["total"] for c in starts)

    blends = ch08._inpainting_blend_cases()
    assert blends[0]["alpha_bar_prev"] != 0.5  # swapped scales fail at once
    assert sum(c["alpha_bar_prev"] == 1.0 for c in blends) >= 4
    for c in blends:
        mask = c["mask"]
        assert mask.shape[1] == 1 and bool(((mask == 0) | (mask == 1)).all())
        assert 0 < c["alpha_bar_prev"] <= 1
        assert c["x_prev"].shape == c["known"].shape == c["noise"].shape
    assert any(bool((c["mask"] == 1).all()) for c in blends)
    assert any(bool((c["mask"] == 0).all()) for c in blends)


@pytest.mark.parametrize(
    "cases",
    [
        ch08._cross_attention_cases,
        ch08._img2img_start_cases,
        ch08._inpainting_blend_cases,
    ],
    ids=lambda cases: cases.__name__,
)
def test_cases_do_not_depend_on_the_global_random_state(cases):
    torch.manual_seed(1)
    first = cases()
    torch.manual_seed(2)
    torch.randn(7)
    second = cases()
    assert len(first) == len(second) >= 30
    for a, b in zip(first, second, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            if torch.is_tensor(a[key]):
                assert torch.equal(a[key], b[key])
            else:
                assert a[key] == b[key]
