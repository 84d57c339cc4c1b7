"""Chapter 5 exercises (minigen.exercises.ch05_diffusion): q_sample and one DDIM step.
Right answers, written here from the closed forms (the checker expands the DDIM step into
two coefficients instead), pass, minigen's own step included; classic mistakes are caught."""

import pytest
import torch

from minigen.exercises import ch05_diffusion as ch05
from minigen.exercises import check_ddim_step, check_q_sample


def q_sample_closed_form(x0, noise, alpha_bar):
    return alpha_bar**0.5 * x0 + (1 - alpha_bar) ** 0.5 * noise


def ddim_step_via_x0(x_t, eps, alpha_bar_t, alpha_bar_prev):
    x0 = (x_t - (1 - alpha_bar_t) ** 0.5 * eps) / alpha_bar_t**0.5
    return alpha_bar_prev**0.5 * x0 + (1 - alpha_bar_prev) ** 0.5 * eps


def assert_close_caught(result, wrong, right):
    """The check failed at a case where the wrong function really differs from the right one."""
    assert not result.passed and result.attempted, result
    case = list(result.counterexample.values())
    got, expected = wrong(*case), right(*case)
    assert got.shape != expected.shape or not torch.allclose(got, expected)


def test_right_answers_pass_including_minigens_own():
    from minigen import diffusion

    assert check_q_sample(q_sample_closed_form).passed
    assert check_ddim_step(ddim_step_via_x0).passed

    def minigen_ddim_step(
        x_t, eps, alpha_bar_t, alpha_bar_prev
    ):  # minigen's step on a two-level schedule
        betas = (
            torch.tensor(
                [1 - alpha_bar_prev, 1 - alpha_bar_t / alpha_bar_prev],
                dtype=torch.float64,
            )
            if alpha_bar_prev < 1
            else None
        )
        x0 = (x_t - (1 - alpha_bar_t) ** 0.5 * eps) / alpha_bar_t**0.5
        if betas is None:
            return x0
        schedule = diffusion.NoiseSchedule(betas.clamp(min=1e-12))
        return diffusion.ddim_step(schedule, x_t, eps, x0, 1, 0, eta=0.0)

    assert check_ddim_step(minigen_ddim_step).passed


@pytest.mark.parametrize(
    "wrong",
    [
        lambda x0, noise, ab: (
            ab * x0 + (1 - ab) * noise
        ),  # variances used as scales
        lambda x0, noise, ab: ab**0.5 * x0 + noise,  # noise never shrinks
        lambda x0, noise, ab: (
            (1 - ab) ** 0.5 * x0 + ab**0.5 * noise
        ),  # the two roles swapped
    ],
)
def test_q_sample_mistakes_are_caught(wrong):
    assert_close_caught(check_q_sample(wrong), wrong, q_sample_closed_form)


@pytest.mark.parametrize(
    "wrong",
    [
        lambda x_t, eps, ab, ab_prev: (
            (ab_prev / ab) ** 0.5 * x_t
        ),  # drops the eps term
        lambda x_t, eps, ab, ab_prev: (
            ab_prev**0.5 * (x_t - (1 - ab) ** 0.5 * eps)
            + (1 - ab_prev) ** 0.5 * eps
        ),  # x0 not divided by sqrt(ab)
        lambda x_t, eps, ab, ab_prev: ddim_step_via_x0(
            x_t, eps, ab_prev, ab
        ),  # levels swapped
    ],
)
def test_ddim_step_mistakes_are_caught(wrong):
    assert_close_caught(check_ddim_step(wrong), wrong, ddim_step_via_x0)


def test_the_references_agree_with_the_closed_forms():
    for case in ch05._q_sample_cases():
        assert torch.allclose(
            ch05._torch_q_sample(**case), q_sample_closed_form(**case)
        )
    for case in ch05._ddim_step_cases():
        assert torch.allclose(
            ch05._linear_ddim_step(**case), ddim_step_via_x0(**case)
        )


def test_the_cases_cover_the_corners():
    q_cases, ddim_cases = ch05._q_sample_cases(), ch05._ddim_step_cases()
    assert any(c["alpha_bar"] == 1.0 for c in q_cases)  # no noise yet
    assert any(c["alpha_bar"] < 1e-3 for c in q_cases)  # almost pure noise
    assert any(
        c["alpha_bar_prev"] == 1.0 for c in ddim_cases
    )  # the step to the clean image
    assert all(0 < c["alpha_bar_t"] <= c["alpha_bar_prev"] <= 1 for c in ddim_cases)
