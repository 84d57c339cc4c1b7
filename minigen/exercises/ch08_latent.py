"""Chapter 8 exercises: the cross-attention of the U-Net's image positions to the
caption's tokens, where img2img starts on the DDIM schedule, and the blend that
keeps the known region of an image while inpainting.

The answers are compared with torch's ``F.scaled_dot_product_attention`` given a
boolean mask and a heads axis of 1 (for cross-attention), with the schedule's
timesteps counted up from 0 (for img2img), and with ``torch.where`` choosing
between the step's latent and the known one noised by an ``AffineTransform`` (for
the blend), never with the code the chapter teaches. The cross-attention checker
also runs the reader's function a second time with the padding tokens' states
zeroed: an answer that moves then gives weight to padding.

References: R. Rombach et al., "High-Resolution Image Synthesis with Latent
Diffusion Models", CVPR (2022) (cross-attention to the text's token states;
img2img from t_enc = strength x steps; inpainting by blending the known latent);
A. Vaswani et al., "Attention Is All You Need", NeurIPS (2017) (scaled dot-product
attention, padding masks); C. Meng et al., "SDEdit: Guided Image Synthesis and
Editing with Stochastic Differential Equations", ICLR (2022) (img2img);
A. Lugmayr et al., "RePaint: Inpainting using Denoising Diffusion Probabilistic
Models", CVPR (2022) (the known region noised to each step); J. Song, C. Meng and
S. Ermon, "Denoising Diffusion Implicit Models", ICLR (2021) (DDIM).
"""

from __future__ import annotations

import math
import numbers
import random
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions.transforms import AffineTransform

from minigen.exercises.engine import (
    Case,
    CheckResult,
    Mismatch,
    judge_close,
    run,
    seeded,
)

# ---------------------------------------------------------------------------------
# Cross-attention from image positions to text tokens


def check_cross_attention(
    fn: Callable[[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor], Tensor],
) -> CheckResult:
    """Check ``fn(h, states, mask, w_q, w_k, w_v) -> Tensor``: one head of the
    cross-attention by which the U-Net's image positions read the caption.

    h (B, N, C) holds the N image positions of a feature map (its H x W pixels as
    tokens of C channels); states (B, L, D) the text encoder's token states, one per
    token of the caption, padded to L tokens; mask (B, L) is bool, True at a real
    token and False at padding (every caption has at least one real token). The
    weight matrices, without biases, project the positions to queries
    q = h w_q (C, C) and the tokens to keys k = states w_k and values
    v = states w_v (each (D, C)). Return softmax(q k^T / sqrt(C)) v, (B, N, C):
    the scores (B, N, L) scaled by the square root of the queries' width C, the
    scores of padding tokens -inf before the softmax (they get no weight, whatever
    their states), and the softmax over the L tokens, so that each position's
    weights sum to 1. All tensors are float64. Answers are compared, to a relative
    1e-6, with torch's ``F.scaled_dot_product_attention`` given a heads axis of 1
    and the mask; each answer is also recomputed with the padding states zeroed,
    which must not change it.
    """
    probe = _PaddingProbe()
    return run(
        "cross_attention",
        fn,
        _cross_attention_cases(),
        probe.reference,
        probe.judge,
        wrap=probe.wrap,
    )


def _torch_cross_attention(
    h: Tensor, states: Tensor, mask: Tensor, w_q: Tensor, w_k: Tensor, w_v: Tensor
) -> Tensor:
    # one head: an axis of 1 between the batch and the tokens; the mask
    # (B, 1, 1, L) lets every position see the real tokens; torch's default
    # scale is 1 / sqrt of the queries' last axis, C
    q, k, v = (x[:, None] for x in (h @ w_q, states @ w_k, states @ w_v))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None])
    return out[:, 0]  # (B, N, C)


class _PaddingProbe:
    """The reference, the wrapper and the judge of the cross-attention check,
    sharing the case being judged: the wrapper calls the reader's function a second
    time with the padding states zeroed, the judge explains a wrong answer."""

    def __init__(self) -> None:
        self.case: Case = {}
        self.padding_moves = False  # the answer changed with the padding states

    def reference(self, **case: Any) -> Tensor:
        self.case = case
        return _torch_cross_attention(**case)

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call_twice(*args: Any) -> Any:
            self.padding_moves = False
            h, states, mask, *weights = args
            # the second call's inputs, made first: fn may modify its inputs
            zeroed = [h.clone(), states.masked_fill(~mask[..., None], 0.0)]
            zeroed += [mask.clone(), *(w.clone() for w in weights)]
            padded = not bool(mask.all())
            out = fn(*args)
            if not padded or not isinstance(out, Tensor):
                return out
            try:
                again = fn(*zeroed)
            except Exception:  # the first answer is judged, not this call
                return out
            self.padding_moves = not (
                isinstance(again, Tensor)
                and again.shape == out.shape
                and torch.allclose(
                    again.detach().cpu().to(torch.float64),
                    out.detach().cpu().to(torch.float64),
                    rtol=1e-9,
                    atol=1e-12,
                    equal_nan=True,
                )
            )
            return out

        return call_twice

    def judge(self, expected: Tensor, got: Any) -> Mismatch | None:
        if (
            isinstance(got, Tensor)
            and got.dim() == 4
            and got.shape[1] == 1
            and got[:, 0].shape == expected.shape
        ):
            return Mismatch(
                f"shape mismatch: expected {tuple(expected.shape)}, got "
                f"{tuple(got.shape)} (drop the heads axis of 1)"
            )
        mismatch = judge_close(expected, got)
        right_shape = isinstance(got, Tensor) and got.shape == expected.shape
        if mismatch is None or not right_shape:
            return mismatch
        if self.padding_moves:
            return Mismatch(
                "padding tokens get weight: your answer changes when only the "
                "states of the padding tokens (mask False) change; give them a "
                f"score of -inf before the softmax ({mismatch.text})"
            )
        hint = _cross_attention_hint(got, **self.case)
        return mismatch if hint is None else Mismatch(f"{hint} ({mismatch.text})")


def _cross_attention_hint(
    got: Tensor,
    h: Tensor,
    states: Tensor,
    mask: Tensor,
    w_q: Tensor,
    w_k: Tensor,
    w_v: Tensor,
) -> str | None:
    """What a wrong answer did, where it is one of the classic mistakes."""
    got = got.detach().cpu().to(torch.float64)
    q, k, v = (x[:, None] for x in (h @ w_q, states @ w_k, states @ w_v))
    padding = ~mask[:, None, None]
    width = states.shape[-1]
    # wrong on purpose: the scale of the states' width D
    by_width = F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask[:, None, None], scale=width**-0.5
    )[:, 0]
    # wrong on purpose: each token's weights sum to 1 over the positions
    scores = (q @ k.transpose(-2, -1)).masked_fill(padding, -math.inf)
    over_positions = (scores / h.shape[-1] ** 0.5).softmax(dim=-2) @ v
    mistakes = (
        (
            by_width,
            f"the scores are scaled by sqrt(D) = sqrt({width}), the width of the "
            f"token states: scale them by sqrt(C) = sqrt({h.shape[-1]}), the "
            "width of the queries and keys",
        ),
        (
            over_positions[:, 0],
            "the softmax runs over the image positions: each position's weights "
            "must sum to 1 over the L tokens (the last axis of the scores)",
        ),
    )
    for wrong, hint in mistakes:
        if torch.allclose(got, wrong, rtol=1e-6, atol=1e-8, equal_nan=True):
            return hint
    return None


def _cross_attention_cases(count: int = 30, seed: int = 0) -> list[Case]:
    randn = seeded(torch.randn, seed)

    def case(
        lengths: list[int],
        positions: int,
        channels: int,
        width: int,
        context: int | None = None,
    ) -> Case:
        batch, context = len(lengths), context or max(lengths)
        mask = torch.arange(context)[None] < torch.tensor(lengths)[:, None]
        # padding states of no meaning, and large: a position that looks at them
        # ends far from the right answer
        junk = 5 * randn(batch, context, width) + 3
        states = torch.where(mask[..., None], randn(batch, context, width), junk)
        return dict(
            h=randn(batch, positions, channels),
            states=states,
            mask=mask,
            # scores of about unit spread: the softmax neither flat nor one-hot
            w_q=1.5 * randn(channels, channels) / math.sqrt(channels),
            w_k=1.5 * randn(width, channels) / math.sqrt(width),
            w_v=randn(width, channels) / math.sqrt(width),
        )

    # one caption twice, its padding states different: the same answer twice
    twice = case([3, 3], 5, 8, 12, context=6)
    twice["states"][1, :3] = twice["states"][0, :3]
    twice["h"][1] = twice["h"][0]
    corners = [
        case([5, 5], 4, 8, 12),  # no padding
        case([5, 3, 1], 6, 8, 16, context=7),  # every caption padded
        case([1, 1], 3, 4, 6, context=4),  # one real token: its value everywhere
        twice,
        case([4, 2], 1, 4, 4),  # one image position; D = C
        case([12, 7], 16, 32, 24),  # a 4 x 4 map of 32 channels
    ]
    cases = list(corners)
    rng = random.Random(seed)
    while len(cases) < count:
        context = rng.randint(1, 10)
        lengths = [rng.randint(1, context) for _ in range(rng.randint(1, 4))]
        cases.append(
            case(
                lengths,
                rng.randint(1, 20),
                rng.choice([4, 8, 16]),
                rng.choice([4, 6, 12, 32]),
                context,
            )
        )
    return cases


# ---------------------------------------------------------------------------------
# Where img2img starts


def check_img2img_start(
    fn: Callable[[float, int, int], tuple[int, int | None]],
) -> CheckResult:
    """Check ``fn(strength, steps, total) -> (count, first_timestep)``: how many of
    the DDIM steps img2img runs, and the timestep it starts from.

    The sampler's schedule is the `steps` DDIM timesteps of a diffusion of `total`
    steps, ``ddim_timesteps(total, steps)`` (from ``minigen.diffusion.sampling``):
    a list from total - 1 down to 0. img2img with strength in [0, 1] runs only
    count = int(strength x steps) of them (truncated, not rounded): the last count,
    which end at 0, so it starts from the count-th timestep from the end of the
    list, noises the source latent to that level and denoises from there. Return the
    pair (count, first_timestep), both ints, with first_timestep None where count is
    0 (strength 0 runs nothing and returns the source; beware that times[-0] is
    times[0]). Strength 1 runs every step, from total - 1, pure noise. Answers are
    compared with the schedule's timesteps counted up from 0.
    """
    recorder = _Recorder(_counted_up_start)
    return run(
        "img2img_start",
        fn,
        _img2img_start_cases(),
        recorder.reference,
        lambda expected, got: _judge_start(expected, got, recorder.case),
    )


def _counted_up_start(
    strength: float, steps: int, total: int
) -> tuple[int, int | None]:
    count = math.floor(strength * steps)  # the steps run, truncated
    if count == 0:
        return 0, None
    # counted up from 0, the timesteps are round(i (total - 1) / (steps - 1)),
    # i = 0, 1, ...: img2img runs the first count of them, from the last one down
    spacing = (total - 1) / max(steps - 1, 1)
    return count, round((count - 1) * spacing)


class _Recorder:
    """A reference that keeps the case it was last called on, for the judge."""

    def __init__(self, reference: Callable[..., Any]) -> None:
        self.case: Case = {}
        self._reference = reference

    def reference(self, **case: Any) -> Any:
        self.case = case
        return self._reference(**case)


def _judge_start(
    expected: tuple[int, int | None], got: Any, case: Case
) -> Mismatch | None:
    """The count, then the first timestep, then their types (ints, or None for
    the first timestep of no step). Never raises, whatever ``got`` is."""
    count, first = expected
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        return Mismatch(
            f"expected a pair (count, first_timestep) = {expected!r}, got "
            f"{_kind(got)}"
        )
    got_count, got_first = got
    if not _same(got_count, count):
        product = case["strength"] * case["steps"]
        rounded = _same(got_count, round(product)) and count != round(product)
        hint = (
            f": strength x steps = {product:g}, which img2img truncates as int() "
            "does, not rounds"
            if rounded
            else ""
        )
        return Mismatch(
            f"expected {expected!r}, but the count should be {count}, got "
            f"{got_count!r}{hint}"
        )
    if first is None and got_first is not None:
        return Mismatch(
            f"expected {expected!r}: the right count 0, but with no step to run "
            f"there is no first timestep: return None, not {got_first!r} (note "
            "that times[-0] is times[0], the noisiest timestep)"
        )
    if not _same(got_first, first):
        return Mismatch(
            f"expected {expected!r}: the right count {count}, but the first "
            f"timestep should be {first}, got {got_first!r} (img2img runs the "
            f"last {count} of the {case['steps']} timesteps, which end at 0)"
        )
    for name, value in (("count", got_count), ("first_timestep", got_first)):
        if value is not None and not _is_int(value):
            return Mismatch(
                f"got the {name} {value!r} (a {type(value).__name__}): the right "
                "value, but return it as an int",
                value_is_right=True,
            )
    return None


def _img2img_start_cases(count: int = 30, seed: int = 0) -> list[Case]:
    def case(strength: float, steps: int, total: int = 1000) -> Case:
        return dict(strength=strength, steps=steps, total=total)

    corners = [
        case(0.3, 25),  # 7.5 steps: 7, where rounding gives 8
        case(0.6, 50),  # 30 steps
        case(0.0, 25),  # no step: None
        case(1.0, 50),  # every step, from total - 1
        case(0.9, 25),  # 22.5: 22
        case(0.0, 50),
        case(0.3, 50),
        case(0.6, 25),
        case(0.9, 50),
        case(1.0, 25),
        case(0.02, 25),  # 0.5 steps: none, where rounding gives 0 too
        case(0.06, 25),  # 1.5 steps: one, the last timestep 0
        case(0.7, 25),  # 17.5: 17, where rounding gives 18
    ]
    cases = list(corners)
    rng = random.Random(seed)
    while len(cases) < count:
        total = rng.choice([1000, 1000, 500, 100])
        steps = rng.choice([s for s in (10, 20, 25, 30, 50, 100) if s <= total])
        strength = rng.random()
        product = strength * steps
        # no product a rounding error away from an integer: one right count
        if abs(product - round(product)) > 1e-6:
            cases.append(case(strength, steps, total))
    return cases


def _kind(value: Any) -> str:
    """What the reader returned, briefly: a type, with its length if it has one."""
    name = type(value).__name__
    if isinstance(value, (tuple, list)):
        return f"a {name} of {len(value)} values"
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def _same(got: Any, expected: Any) -> bool:
    """``got == expected`` (None only equals None), a comparison that fails
    counting as unequal."""
    if got is None or expected is None:
        return got is expected
    try:
        return bool(got == expected)
    except Exception:
        return False


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


# ---------------------------------------------------------------------------------
# Inpainting: the known region blended in after a DDIM step


def check_inpainting_blend(
    fn: Callable[[Tensor, Tensor, Tensor, float, Tensor], Tensor],
) -> CheckResult:
    """Check ``fn(x_prev, known, mask, alpha_bar_prev, noise) -> Tensor``: the
    latent after one DDIM step of inpainting, the known region blended back in.

    x_prev (B, C, s, s) is the latent the DDIM step just produced at the noise level
    alpha_bar_prev (a float in (0, 1]; 1 after the last step); known (B, C, s, s)
    is the clean latent of the image being inpainted and noise (B, C, s, s) a
    standard normal draw (C = 4 in the chapter); mask (B, 1, s, s) is 1 where the
    model redraws the image and 0 where the image is kept (it broadcasts over the
    channels). Where the mask
    is 1 the answer is x_prev; where it is 0, the known latent noised to the step's
    level, sqrt(alpha_bar_prev) known + sqrt(1 - alpha_bar_prev) noise: so
    mask x_prev + (1 - mask) (sqrt(alpha_bar_prev) known
    + sqrt(1 - alpha_bar_prev) noise), (B, C, s, s). At alpha_bar_prev = 1 the kept
    region must be the known latent exactly. All tensors are float64. Answers are
    compared, to a relative 1e-6, with ``torch.where`` choosing between x_prev and
    ``AffineTransform(sqrt(alpha_bar_prev) known, sqrt(1 - alpha_bar_prev))``
    applied to the noise.
    """
    recorder = _Recorder(_where_blend)
    return run(
        "inpainting_blend",
        fn,
        _inpainting_blend_cases(),
        recorder.reference,
        lambda expected, got: _judge_blend(expected, got, recorder.case),
    )


def _where_blend(
    x_prev: Tensor,
    known: Tensor,
    mask: Tensor,
    alpha_bar_prev: float,
    noise: Tensor,
) -> Tensor:
    level = AffineTransform(
        loc=math.sqrt(alpha_bar_prev) * known, scale=math.sqrt(1 - alpha_bar_prev)
    )
    return torch.where(mask.bool(), x_prev, level(noise))  # mask 1: redrawn


def _judge_blend(expected: Tensor, got: Any, case: Case) -> Mismatch | None:
    """``judge_close``, with the mask's value where the answer is wrong; then, at
    alpha_bar_prev = 1, the known latent exactly in the kept region."""
    mismatch = judge_close(expected, got)
    mask = case["mask"].bool().expand_as(expected)
    if mismatch is not None:
        if not isinstance(got, Tensor) or got.shape != expected.shape:
            return mismatch
        got = got.detach().cpu().to(expected.dtype)
        agrees = torch.isclose(got, expected, rtol=1e-6, atol=1e-8, equal_nan=True)
        where = tuple(agrees.logical_not().nonzero()[0].tolist())
        return Mismatch(f"{mismatch.text} ({_blend_hint(got, mask, where, case)})")
    if case["alpha_bar_prev"] == 1.0:
        got = got.detach().cpu().to(expected.dtype)
        known = case["known"].expand_as(expected)
        wrong = ~mask & (got != known)
        if wrong.any():
            where = tuple(wrong.nonzero()[0].tolist())
            index = ", ".join(map(str, where))
            return Mismatch(
                "close, but at alpha_bar_prev = 1 (after the last step) the kept "
                f"region (mask 0) must be the known latent exactly: out[{index}] "
                f"differs from known by {(got[where] - known[where]).item():.1e}"
            )
    return None


def _blend_hint(
    got: Tensor, mask: Tensor, where: tuple[int, ...], case: Case
) -> str:
    """Where the first wrong value lies, and what it is if it is a classic
    mistake: the other side of the blend (the mask read the wrong way round), or
    the known latent not noised."""
    value, inverted = got[where], mask.logical_not()
    other_side = _where_blend(**{**case, "mask": inverted.to(got.dtype)})
    known = case["known"].expand_as(got)[where]
    if torch.isclose(value, other_side[where], rtol=1e-6, atol=1e-8):
        return (
            f"mask {int(mask[where])} there: your answer takes the other side of "
            "the blend, as if 1 meant keep; 1 means redraw (x_prev), 0 keep"
        )
    if not mask[where] and value == known and case["alpha_bar_prev"] < 1:
        return (
            "mask 0 there, a region to keep: you took the known latent as it is; "
            "noise it to the step's level alpha_bar_prev"
        )
    return (
        "mask 1 there: a region the model redraws"
        if mask[where]
        else "mask 0 there: the known region, kept"
    )


def _inpainting_blend_cases(count: int = 30, seed: int = 0) -> list[Case]:
    randn = seeded(torch.randn, seed)

    def rectangle(batch: int, side: int, rows: slice, columns: slice) -> Tensor:
        mask = torch.zeros(batch, 1, side, side, dtype=torch.float64)
        mask[:, :, rows, columns] = 1.0
        return mask

    def case(mask: Tensor, alpha_bar_prev: float, channels: int = 4) -> Case:
        shape = (len(mask), channels, *mask.shape[2:])
        return dict(
            x_prev=randn(*shape),
            known=randn(*shape),
            mask=mask,
            alpha_bar_prev=alpha_bar_prev,
            noise=randn(*shape),
        )

    centre = rectangle(2, 4, slice(1, 3), slice(0, 2))
    corners = [
        case(centre, 0.3),  # a square redrawn, the rest kept
        case(centre, 1.0),  # after the last step: known itself, exactly
        case(torch.ones(2, 1, 4, 4, dtype=torch.float64), 0.6),  # all redrawn
        case(torch.zeros(2, 1, 4, 4, dtype=torch.float64), 0.8),  # all kept
        case(rectangle(3, 8, slice(2, 7), slice(4, 8)), 1e-3),  # almost noise
        case(rectangle(1, 8, slice(0, 8), slice(0, 3)), 0.95),  # 8 x 8 x 4
    ]
    cases = list(corners)
    rng = random.Random(seed)
    while len(cases) < count:
        batch, side = rng.randint(1, 4), rng.choice([2, 4, 8])
        if rng.random() < 0.5:  # a rectangle, as random_masks draws them
            top, left = rng.randrange(side), rng.randrange(side)
            bottom, right = rng.randint(top + 1, side), rng.randint(left + 1, side)
            mask = rectangle(batch, side, slice(top, bottom), slice(left, right))
        else:  # scattered positions
            mask = (randn(batch, 1, side, side) > 0).to(torch.float64)
        alpha_bar_prev = rng.choice(
            [1.0, math.exp(rng.uniform(math.log(1e-3), math.log(0.999)))]
        )
        cases.append(case(mask, alpha_bar_prev, rng.choice([1, 3, 4])))
    return cases
