"""Chapter 3 exercise (minigen.exercises.ch03_autoencoder): PSNR. Right answers, written
here from the closed form (the checker compares with F.mse_loss), pass; classic mistakes
are caught at a case where they really differ."""

import pytest
import torch

from minigen.exercises import ch03_autoencoder as ch03
from minigen.exercises import check_psnr


def psnr_closed_form(prediction, target):
    mse = (prediction - target).square().mean(dim=(1, 2, 3))
    return -10 * torch.log10(mse)  # 10 log10(1 / MSE)


def assert_close_caught(result, wrong, right):
    """The check failed at a case where the wrong function really differs from the right one."""
    assert not result.passed and result.attempted, result
    case = list(result.counterexample.values())
    got, expected = wrong(*case), right(*case)
    assert got.shape != expected.shape or not torch.allclose(got, expected)


def test_right_answers_pass_including_minigens_own():
    from minigen.eval import metrics

    for right in (psnr_closed_form, metrics.psnr):
        result = check_psnr(right)
        assert result.passed, result


@pytest.mark.parametrize(
    "wrong",
    [
        lambda p, t: (
            -10 * torch.log10((p - t).square().mean()).expand(len(p))
        ),  # one MSE over the whole batch
        lambda p, t: (
            -20 * torch.log10((p - t).square().mean(dim=(1, 2, 3)))
        ),  # 20 log10 of a squared error
        lambda p, t: (
            -10 * torch.log10((p - t).abs().mean(dim=(1, 2, 3)))
        ),  # mean absolute error
        lambda p, t: (
            -10 * torch.log10((p - t).square().mean(dim=(1, 2, 3))).mean()
        ),  # one number, not (N,)
    ],
)
def test_psnr_mistakes_are_caught(wrong):
    assert_close_caught(check_psnr(wrong), wrong, psnr_closed_form)


def test_one_number_for_the_batch_is_a_shape_problem_with_a_hint():
    result = check_psnr(lambda p, t: -10 * torch.log10((p - t).square().mean()))
    assert "shape mismatch: expected (1,), got ()" in result.message
    assert result.message.endswith(
        "(one value per image or row: reduce over every other axis)"
    )


def test_the_reference_agrees_with_the_closed_form():
    for case in ch03._psnr_cases():
        assert torch.allclose(ch03._torch_psnr(**case), psnr_closed_form(**case))


def test_the_first_psnr_corner_is_six_decibels():
    case = ch03._psnr_cases()[0]
    assert ch03._torch_psnr(**case).item() == pytest.approx(
        10 * torch.log10(torch.tensor(4.0)).item()
    )


def test_the_cases_cover_the_corners():
    cases = ch03._psnr_cases()
    assert any(
        len(c["target"]) > 1 and c["target"].shape[1] > 1 for c in cases
    )  # batches of colour images
    assert any(c["target"].shape[1] == 1 for c in cases)
    assert any(c["target"].shape[2] != c["target"].shape[3] for c in cases)
    # a batch whose images have different errors: a single MSE over the batch is wrong there
    assert any(
        len(set(psnr_closed_form(**c).round(decimals=3).tolist())) > 1
        for c in cases
    )
