"""Chapter 4 exercises (minigen.exercises.ch04_vae): the Gaussian KL and the
reparameterization trick. Right answers, written here from the closed forms (the checkers
compare with torch.distributions), pass; wrong values and wrong gradients are caught."""

import pytest
import torch

from minigen.exercises import ch04_vae as ch04
from minigen.exercises import check_gaussian_kl, check_reparameterize


def kl_closed_form(mu, logvar):
    return 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(dim=-1)


def reparameterize_closed_form(mu, logvar, eps):
    return mu + torch.exp(0.5 * logvar) * eps


def assert_close_caught(result, wrong, right):
    """The check failed at a case where the wrong function really differs from the right one."""
    assert not result.passed and result.attempted, result
    case = list(result.counterexample.values())
    got, expected = wrong(*case), right(*case)
    assert got.shape != expected.shape or not torch.allclose(got, expected)


def test_right_answers_pass_including_minigens_own():
    from minigen.models import vae

    for check, right in [
        (check_gaussian_kl, kl_closed_form),
        (check_gaussian_kl, vae.gaussian_kl),
        (check_reparameterize, reparameterize_closed_form),
    ]:
        result = check(right)
        assert result.passed, result


@pytest.mark.parametrize(
    "wrong",
    [
        lambda mu, logvar: (
            0.5 * (mu.square() + logvar - 1 - logvar.exp()).sum(-1)
        ),  # exp on the wrong term
        lambda mu, logvar: (mu.square() + logvar.exp() - 1 - logvar).sum(
            -1
        ),  # the 1/2 forgotten
        lambda mu, logvar: (
            0.5 * (mu.square() + logvar.exp() - 1 - logvar).mean(-1)
        ),  # mean over L, not sum
        lambda mu, logvar: (
            0.5 * (mu.square() + logvar.exp() - 1 - logvar)
        ),  # not reduced over L
        lambda mu, logvar: (
            0.5 * (mu.square() + logvar.exp().square() - 1 - 2 * logvar).sum(-1)
        ),  # logvar read as log sigma
    ],
)
def test_kl_mistakes_are_caught(wrong):
    assert_close_caught(check_gaussian_kl(wrong), wrong, kl_closed_form)


@pytest.mark.parametrize(
    "wrong",
    [
        lambda mu, logvar, eps: (
            mu + logvar.exp() * eps
        ),  # the variance used as the standard deviation
        lambda mu, logvar, eps: mu + logvar * eps,
        lambda mu, logvar, eps: mu * torch.exp(0.5 * logvar) + eps,
    ],
)
def test_reparameterize_value_mistakes_are_caught(wrong):
    result = check_reparameterize(wrong)
    assert not result.passed and result.attempted
    mu, logvar, eps = (
        t.clone().requires_grad_() for t in result.counterexample.values()
    )
    got, right = wrong(mu, logvar, eps), reparameterize_closed_form(mu, logvar, eps)
    # at logvar = 0 the first mistake has the right value, so the checker had to catch its gradient
    wrong_grad, right_grad = (
        torch.autograd.grad(z.sum(), logvar)[0] for z in (got, right)
    )
    assert not torch.allclose(got, right) or not torch.allclose(
        wrong_grad, right_grad
    )


def test_a_sample_without_gradient_is_caught():
    def detached(mu, logvar, eps):
        return (mu + torch.exp(0.5 * logvar) * eps).detach()

    result = check_reparameterize(detached)
    assert not result.passed and "no gradient" in result.message


def test_a_sample_that_ignores_eps_gradient_path_is_caught():
    def sigma_detached(
        mu, logvar, eps
    ):  # right values, but logvar gets no gradient
        return mu + torch.exp(0.5 * logvar).detach() * eps

    result = check_reparameterize(sigma_detached)
    assert not result.passed and "logvar" in result.message


def test_a_sample_that_does_not_use_mu_is_caught():
    def without_mu(
        mu, logvar, eps
    ):  # mu's values copied in: the graph never reaches mu
        return mu.detach() + torch.exp(0.5 * logvar) * eps

    result = check_reparameterize(without_mu)
    assert not result.passed
    assert result.message.endswith("z does not depend on mu in the autograd graph")


def test_a_wrong_gradient_with_right_values_is_caught():
    class ScaledGrad(
        torch.autograd.Function
    ):  # the identity whose backward doubles the gradient
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


def test_a_sample_of_the_wrong_shape_is_a_shape_problem():
    result = check_reparameterize(
        lambda mu, logvar, eps: (mu + torch.exp(0.5 * logvar) * eps).sum(-1)
    )
    assert not result.passed and "shape mismatch" in result.message


def test_the_references_agree_with_the_closed_forms():
    for case in ch04._gaussian_kl_cases():
        assert torch.allclose(
            ch04._torch_gaussian_kl(**case), kl_closed_form(**case)
        )
    for case in ch04._reparameterize_cases():
        z, grad_mu, grad_logvar = ch04._torch_reparameterize(**case)
        assert torch.allclose(z, reparameterize_closed_form(**case))
        assert torch.equal(grad_mu, torch.ones_like(grad_mu))  # dz/dmu = 1
        # dz/dlogvar = 1/2 sigma eps
        assert torch.allclose(
            grad_logvar, 0.5 * torch.exp(0.5 * case["logvar"]) * case["eps"]
        )
