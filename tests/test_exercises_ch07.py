"""Chapter 7 exercises (minigen.exercises.ch07_dalle2): slerp, one deterministic DDIM step of
the diffusion prior (x0 objective) and the reranking of the prior's samples. Right answers,
written here from the closed forms (the checkers rotate in a Gram–Schmidt plane, expand the
step into two coefficients and loop), pass, minigen's own slerp, rerank and DDIM step
included; classic mistakes are caught with a true counterexample, and never raise."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from minigen.exercises import ch07_dalle2 as ch07
from minigen.exercises.ch07_dalle2 import (
    check_prior_ddim_step,
    check_rerank,
    check_slerp,
)

CHECKERS = [check_slerp, check_prior_ddim_step, check_rerank]

# --- right answers, written here


def slerp_closed_form(a, b, t):
    """The docstring's formula, the straight line where sin θ is tiny."""
    cos = (a * b).sum(-1, keepdim=True).clamp(-1, 1)
    angle = torch.arccos(cos)
    sin = torch.sin(angle)
    parallel = angle < 1e-6
    safe = torch.where(parallel, torch.ones_like(sin), sin)
    weight_a = torch.where(parallel, 1 - t, torch.sin((1 - t) * angle) / safe)
    weight_b = torch.where(
        parallel, torch.full_like(sin, t), torch.sin(t * angle) / safe
    )
    return weight_a * a + weight_b * b


def prior_ddim_step_via_eps(x_t, x0_pred, alpha_bar_t, alpha_bar_prev):
    eps = (x_t - alpha_bar_t**0.5 * x0_pred) / (1 - alpha_bar_t) ** 0.5
    return alpha_bar_prev**0.5 * x0_pred + (1 - alpha_bar_prev) ** 0.5 * eps


def rerank_vectorised(candidates, text_embedding):
    scores = torch.einsum("kbe,be->kb", candidates, text_embedding)
    best = scores.argmax(dim=0)  # (B,)
    return candidates[best, torch.arange(candidates.shape[1])]


class Predicts(nn.Module):
    """A stand-in network that predicts the given x0, whatever its input."""

    def __init__(self, prediction):
        super().__init__()
        self.prediction = prediction

    def forward(self, x_t, t):
        return self.prediction


def minigen_prior_ddim_step(x_t, x0_pred, alpha_bar_t, alpha_bar_prev):
    """minigen's sampler on a schedule of two levels (one when the step is the last):
    eps read off the "x0" prediction by predict_eps_and_x0, then ddim_step."""
    from minigen import diffusion
    from minigen.diffusion.sampling import predict_eps_and_x0

    if alpha_bar_prev == 1.0:  # from t = 0 to the clean embedding, t_prev = -1
        betas, t, t_prev = [1 - alpha_bar_t], 0, -1
    else:
        betas, t, t_prev = (
            [1 - alpha_bar_prev, 1 - alpha_bar_t / alpha_bar_prev],
            1,
            0,
        )
    schedule = diffusion.NoiseSchedule(torch.tensor(betas, dtype=torch.float64))
    options = diffusion.SamplerOptions(objective="x0", clip=None)
    times = torch.full((len(x_t),), t, dtype=torch.long)
    eps, x0 = predict_eps_and_x0(Predicts(x0_pred), schedule, x_t, times, options)
    return diffusion.ddim_step(schedule, x_t, eps, x0, t, t_prev, eta=0.0)


def test_right_answers_pass_including_minigens_own():
    from minigen.models import prior

    for check, right in [
        (check_slerp, slerp_closed_form),
        (check_slerp, prior.slerp),
        (check_prior_ddim_step, prior_ddim_step_via_eps),
        (check_prior_ddim_step, minigen_prior_ddim_step),
        (check_rerank, rerank_vectorised),
        (check_rerank, prior.rerank),
    ]:
        result = check(right)
        assert result.passed, result
        assert repr(result).startswith("✅")


def test_the_straight_line_is_close_enough_below_an_angle_of_1e_3():
    def lerp_below(threshold):
        def slerp_or_lerp(a, b, t):
            angle = torch.arccos((a * b).sum(-1, keepdim=True).clamp(-1, 1))
            return torch.where(
                angle < threshold, (1 - t) * a + t * b, slerp_closed_form(a, b, t)
            )

        return slerp_or_lerp

    assert check_slerp(lerp_below(1e-3)).passed
    assert not check_slerp(
        lerp_below(1e-2)
    ).passed  # the random angles reach below 1e-2


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
    assert (
        not isinstance(got, torch.Tensor)
        or got.shape != expected.shape
        or not torch.allclose(
            got.to(expected.dtype), expected, rtol=1e-6, atol=1e-8
        )
    )


# --- slerp


def angle_between(a, b):
    return torch.arccos((a * b).sum(-1, keepdim=True).clamp(-1, 1))


def great_circle(a, b, t, angle):
    """The docstring's formula alone, at the given angle."""
    sin = torch.sin(angle)
    return (torch.sin((1 - t) * angle) * a + torch.sin(t * angle) * b) / sin


def slerp_no_small_angle(a, b, t):  # 0 / 0 where a = b
    return great_circle(a, b, t, angle_between(a, b))


def slerp_no_clamp(a, b, t):  # arccos of a dot product just above 1 is nan
    angle = torch.arccos((a * b).sum(-1, keepdim=True))
    curve = great_circle(a, b, t, angle)
    return torch.where(torch.sin(angle) < 1e-6, (1 - t) * a + t * b, curve)


def slerp_lerp_where_sin_is_small(a, b, t):  # nearly opposite vectors too
    line, curve = (1 - t) * a + t * b, slerp_closed_form(a, b, t)
    return torch.where(torch.sin(angle_between(a, b)) < 2e-3, line, curve)


def slerp_t_in_both_weights(a, b, t):
    angle = angle_between(a, b)
    return (torch.sin(t * angle) * a + torch.sin(t * angle) * b) / torch.sin(angle)


def slerp_cosine_as_angle(a, b, t):  # forgets arccos
    return great_circle(a, b, t, (a * b).sum(-1, keepdim=True))


def slerp_one_angle_for_the_batch(a, b, t):  # (a * b).sum() without dim
    angle = torch.arccos((a * b).sum().clamp(-1, 1))
    if torch.sin(angle) < 1e-6:
        return (1 - t) * a + t * b
    return great_circle(a, b, t, angle)


SLERP_MISTAKES = {
    "lerp": lambda a, b, t: (1 - t) * a + t * b,  # not renormalised
    # renormalised, but not at constant speed
    "nlerp": lambda a, b, t: F.normalize((1 - t) * a + t * b, dim=-1),
    "swapped": lambda a, b, t: slerp_closed_form(b, a, t),
    "t-for-1-t": lambda a, b, t: slerp_closed_form(a, b, 1 - t),
    "t-in-both-weights": slerp_t_in_both_weights,
    "no-small-angle": slerp_no_small_angle,
    "no-clamp": slerp_no_clamp,
    "lerp-near-opposite": slerp_lerp_where_sin_is_small,
    "no-arccos": slerp_cosine_as_angle,
    "one-angle-per-batch": slerp_one_angle_for_the_batch,
    "reduced": lambda a, b, t: slerp_closed_form(a, b, t).sum(-1),  # a wrong shape
}


@pytest.mark.parametrize(
    "wrong", SLERP_MISTAKES.values(), ids=SLERP_MISTAKES.keys()
)
def test_slerp_mistakes_are_caught(wrong):
    assert_caught(check_slerp(wrong), wrong, slerp_closed_form)


@pytest.mark.parametrize(
    "wrong, corner",
    [
        ("swapped", 0),  # t = 0 is a
        ("lerp", 2),  # orthogonal, halfway
        ("nlerp", 3),  # orthogonal, a quarter of the way
        ("lerp-near-opposite", 5),
        ("no-small-angle", 6),  # a · b = 1: 0 / 0
        ("no-clamp", 7),  # a · b = 1 + 2e-16
        ("one-angle-per-batch", 9),
    ],
)
def test_each_slerp_mistake_has_a_corner_of_its_own(wrong, corner):
    result = check_slerp(SLERP_MISTAKES[wrong])
    assert result.cases == corner + 1, result


def test_slerp_wrong_shapes_and_types_fail_without_raising():
    reduced = check_slerp(SLERP_MISTAKES["reduced"])
    assert "shape mismatch: expected (4,), got ()" in reduced.message
    assert "the shape of the inputs" in reduced.message
    as_list = check_slerp(lambda a, b, t: slerp_closed_form(a, b, t).tolist())
    assert not as_list.passed and "got a list" in as_list.message
    # float32 is judged by its values: right to float32's rounding is not right to 1e-6
    as_float32 = check_slerp(
        lambda a, b, t: slerp_closed_form(a.float(), b.float(), t)
    )
    assert not as_float32.passed and "values differ" in as_float32.message


# --- one DDIM step of the prior


def ddim_step_eta_one(x_t, x0_pred, ab, ab_prev):  # DDPM-like: fresh noise added
    sigma = ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)) ** 0.5
    noise = torch.randn(
        x_t.shape, generator=torch.Generator().manual_seed(0), dtype=x_t.dtype
    )
    eps = (x_t - ab**0.5 * x0_pred) / (1 - ab) ** 0.5
    return (
        ab_prev**0.5 * x0_pred
        + (1 - ab_prev - sigma**2) ** 0.5 * eps
        + sigma * noise
    )


DDIM_MISTAKES = {
    "no-sqrt": lambda x_t, x0, ab, ab_prev: (
        ab_prev * x0 + (1 - ab_prev) * (x_t - ab * x0) / (1 - ab)
    ),
    # alpha_bar_t in place of alpha_bar_prev: x_t again
    "alpha-bar-t-for-prev": lambda x_t, x0, ab, _: prior_ddim_step_via_eps(
        x_t, x0, ab, ab
    ),
    "levels-swapped": lambda x_t, x0, ab, ab_prev: (
        prior_ddim_step_via_eps(x_t, x0, ab_prev, ab) if ab_prev < 1 else x0
    ),
    "fresh-noise": ddim_step_eta_one,
    "eps-not-divided": lambda x_t, x0, ab, ab_prev: (
        ab_prev**0.5 * x0 + (1 - ab_prev) ** 0.5 * (x_t - ab**0.5 * x0)
    ),
    # the step of chapter 5, the eps objective's, with x0_pred taken for eps
    "x0-read-as-eps": lambda x_t, x0, ab, ab_prev: (
        ab_prev**0.5 * (x_t - (1 - ab) ** 0.5 * x0) / ab**0.5
        + (1 - ab_prev) ** 0.5 * x0
    ),
    "returns-x0": lambda x_t, x0, ab, ab_prev: x0.clone(),
    "one-row": lambda *args: prior_ddim_step_via_eps(*args)[0],  # a wrong shape
}


@pytest.mark.parametrize("wrong", DDIM_MISTAKES.values(), ids=DDIM_MISTAKES.keys())
def test_prior_ddim_step_mistakes_are_caught(wrong):
    assert_caught(check_prior_ddim_step(wrong), wrong, prior_ddim_step_via_eps)


def test_prior_ddim_step_wrong_shapes_and_types_fail_without_raising():
    one_row = check_prior_ddim_step(DDIM_MISTAKES["one-row"])
    assert "shape mismatch: expected (4, 8), got (8,)" in one_row.message
    as_array = check_prior_ddim_step(
        lambda *args: prior_ddim_step_via_eps(*args).numpy()
    )
    assert not as_array.passed and "got a ndarray" in as_array.message
    nothing = check_prior_ddim_step(lambda *args: None)
    assert "does your function return it?" in nothing.message


# --- reranking


def rerank_by(score):
    def choose(candidates, text_embedding):
        best = score(candidates, text_embedding).argmax(dim=0)
        return candidates[best, torch.arange(candidates.shape[1])]

    return choose


def dot(candidates, text_embedding):
    return (candidates * text_embedding).sum(-1)  # (K, B)


RERANK_MISTAKES = {
    "cosine": rerank_by(lambda c, x: F.cosine_similarity(c, x[None], dim=-1)),
    "nearest": rerank_by(lambda c, x: -(c - x).norm(dim=-1)),  # smallest distance
    "argmin": rerank_by(lambda c, x: -dot(c, x)),
    "absolute": rerank_by(lambda c, x: dot(c, x).abs()),
    "longest": rerank_by(lambda c, x: c.norm(dim=-1)),
    "first": lambda c, x: c[0],
    # one candidate index for every caption, its dot products summed over captions
    "one-k-for-all": lambda c, x: c[dot(c, x).sum(1).argmax()],
    "wrong-axis": lambda c, x: c[dot(c, x).argmax(dim=1), torch.arange(c.shape[1])],
    "indices": lambda c, x: dot(c, x).argmax(dim=0),
    "scores": lambda c, x: dot(c, x).max(dim=0).values,
}


@pytest.mark.parametrize(
    "wrong", RERANK_MISTAKES.values(), ids=RERANK_MISTAKES.keys()
)
def test_rerank_mistakes_are_caught(wrong):
    assert_caught(check_rerank(wrong), wrong, rerank_vectorised)


@pytest.mark.parametrize(
    "wrong, corner",
    [("cosine", 0), ("nearest", 0), ("argmin", 0), ("absolute", 1), ("longest", 1)],
)
def test_each_rerank_mistake_has_a_corner_of_its_own(wrong, corner):
    result = check_rerank(RERANK_MISTAKES[wrong])
    assert result.cases == corner + 1, result


def test_one_k_for_every_caption_fails_where_the_winners_differ():
    case = ch07._rerank_cases()[3]
    winners = dot(*case.values()).argmax(dim=0)
    assert len(set(winners.tolist())) == 3  # every caption its own winner
    assert check_rerank(RERANK_MISTAKES["one-k-for-all"]).cases == 4


def test_rerank_wrong_shapes_and_types_fail_without_raising():
    indices = check_rerank(RERANK_MISTAKES["indices"])
    assert (
        "got indices of shape (1,): return the candidates themselves"
        in indices.message
    )
    scores = check_rerank(RERANK_MISTAKES["scores"])
    assert "shape mismatch: expected (1, 2), got (1,)" in scores.message
    as_float32 = check_rerank(lambda c, x: rerank_vectorised(c, x).float())
    assert (
        "dtype torch.float32: return the kept candidates themselves"
        in as_float32.message
    )
    as_list = check_rerank(lambda c, x: rerank_vectorised(c, x).tolist())
    assert not as_list.passed and "got a list" in as_list.message


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
def test_a_non_callable_is_a_type_error_that_names_the_checker(check):
    name = check.__name__.removeprefix("check_")
    with pytest.raises(
        TypeError, match=rf"check_{name} must be your function itself"
    ):
        check(torch.zeros(3))


def test_the_checkers_leave_the_cases_unchanged():
    def modifies(a, b, t):
        result = slerp_closed_form(a, b, t)
        a.zero_()
        return result

    assert check_slerp(modifies).passed


# --- the references and the cases


def test_the_references_agree_with_the_right_answers_and_minigens_code():
    from minigen.models import prior

    for case in ch07._slerp_cases():
        expected = ch07._rotation_slerp(**case)
        for right in (slerp_closed_form, prior.slerp):
            assert torch.allclose(right(**case), expected, rtol=1e-9, atol=1e-10)
    for case in ch07._prior_ddim_step_cases():
        expected = ch07._linear_prior_ddim_step(**case)
        assert torch.allclose(prior_ddim_step_via_eps(**case), expected, rtol=1e-9)
        assert torch.allclose(minigen_prior_ddim_step(**case), expected, rtol=1e-9)
    for case in ch07._rerank_cases():
        expected = ch07._loop_rerank(**case)
        assert torch.equal(rerank_vectorised(**case), expected)
        assert torch.equal(prior.rerank(**case), expected)


def test_the_slerp_reference_is_a_unit_vector_at_angle_t_theta_from_a():
    for case in ch07._slerp_cases():
        a, b, t = case.values()
        out = ch07._rotation_slerp(a, b, t)
        assert torch.allclose(out.norm(dim=-1), torch.ones(()).double())
        angle = torch.arccos((a * b).sum(-1).clamp(-1, 1))
        travelled = torch.arccos((a * out).sum(-1).clamp(-1, 1))
        assert torch.allclose(travelled, t * angle, atol=1e-6)


def test_the_cases_cover_the_corners():
    slerps = ch07._slerp_cases()
    for case in slerps:
        assert torch.allclose(case["a"].norm(dim=-1), torch.ones(()).double())
        assert torch.allclose(case["b"].norm(dim=-1), torch.ones(()).double())
        assert 0 <= case["t"] <= 1
    assert {0.0, 1.0, 0.5} <= {c["t"] for c in slerps}
    dots = [(c["a"] * c["b"]).sum(-1).reshape(-1) for c in slerps]
    assert any((d == 1).any() for d in dots) and any((d > 1).any() for d in dots)
    angles = torch.cat([torch.arccos(d.clamp(-1, 1)) for d in dots])
    assert angles.min() == 0 and ((angles > 1e-5) & (angles < 1e-3)).any()
    assert (
        angles.max() > math.pi - 2e-3 and (angles < math.pi - 1e-4).all()
    )  # not opposite
    assert ((angles - math.pi / 2).abs() < 1e-12).any()  # orthogonal
    assert {c["a"].dim() for c in slerps} == {1, 2}
    assert any(c["a"].dim() == 2 and len(c["a"]) == 1 for c in slerps)

    steps = ch07._prior_ddim_step_cases()
    assert all(0 < c["alpha_bar_t"] < c["alpha_bar_prev"] <= 1 for c in steps)
    assert steps[0]["alpha_bar_prev"] < 1  # returning x0_pred fails at once
    assert sum(c["alpha_bar_prev"] == 1.0 for c in steps) >= 3  # the last step
    assert any(c["alpha_bar_t"] < 0.01 for c in steps)
    for c in steps:
        assert c["x_t"].shape == c["x0_pred"].shape and c["x_t"].dim() == 2
        assert c["x_t"].dtype == torch.float64
        assert isinstance(c["alpha_bar_t"], float) and isinstance(
            c["alpha_bar_prev"], float
        )

    reranks = ch07._rerank_cases()
    assert any(len(c["candidates"]) == 1 for c in reranks)  # K = 1
    for c in reranks:
        assert ch07._rerank_margin(**c) > 1e-6  # no near ties: one right answer
    # the dot product and the cosine disagree, on a corner and in the random cases
    cosine = RERANK_MISTAKES["cosine"]
    disagree = [
        not torch.equal(cosine(*c.values()), ch07._loop_rerank(**c))
        for c in reranks
    ]
    assert disagree[0] and sum(disagree[4:]) >= 5
