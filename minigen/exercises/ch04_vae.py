"""Chapter 4 exercises: the KL term of the ELBO, and the reparameterization trick.

The answers are compared with ``torch.distributions``: the KL divergence of
``kl_divergence`` between two ``Normal`` distributions, and the affine transform of
``AffineTransform`` together with its gradient.

Reference: D. P. Kingma and M. Welling, "Auto-Encoding Variational Bayes",
ICLR (2014).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import torch
from torch import Tensor
from torch.distributions import Normal, kl_divergence
from torch.distributions.transforms import AffineTransform

from minigen.exercises.engine import (
    Case,
    CheckResult,
    judge_close,
    judge_sample_and_gradients,
    run,
    seeded,
    with_gradients,
)

# ---------------------------------------------------------------------------------
# The KL divergence from the prior


def check_gaussian_kl(fn: Callable[[Tensor, Tensor], Tensor]) -> CheckResult:
    """Check ``fn(mu, logvar) -> Tensor``: KL(N(mu, diag exp(logvar)) || N(0, I)) in
    nats, one value per row.

    mu and logvar are (B, L); the answer is (B,). Answers are compared with
    ``torch.distributions.kl_divergence`` between two ``Normal`` distributions,
    summed over the L axis.
    """
    return run(
        "gaussian_kl", fn, _gaussian_kl_cases(), _torch_gaussian_kl, judge_close
    )


def _torch_gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    posterior = Normal(mu, torch.exp(0.5 * logvar))  # sigma = exp(logvar / 2)
    prior = Normal(torch.zeros_like(mu), torch.ones_like(mu))
    return kl_divergence(posterior, prior).sum(dim=-1)  # (B,)


def _gaussian_kl_cases(count: int = 40, seed: int = 0) -> list[Case]:
    randn = seeded(torch.randn, seed)
    zeros = torch.zeros(2, 3, dtype=torch.float64)
    corners = [
        dict(mu=zeros, logvar=zeros),  # the posterior is the prior: KL = 0
        dict(mu=zeros + 1.0, logvar=zeros),  # only the means differ: 1/2 per dim
        # only the variances differ: logvar, not log sigma
        dict(mu=zeros, logvar=zeros - 2.0),
        dict(mu=randn(4, 1), logvar=randn(4, 1)),  # one latent dim
        dict(mu=randn(1, 16), logvar=randn(1, 16)),  # sum over L, one row
    ]
    cases = list(corners)
    rng = random.Random(seed)
    while len(cases) < count:
        shape = (rng.randint(1, 5), rng.randint(1, 20))
        cases.append(dict(mu=2 * randn(*shape), logvar=randn(*shape)))
    return cases


# ---------------------------------------------------------------------------------
# The reparameterization trick


def check_reparameterize(
    fn: Callable[[Tensor, Tensor, Tensor], Tensor],
) -> CheckResult:
    """Check ``fn(mu, logvar, eps) -> z``: a sample of N(mu, diag exp(logvar)) made
    from the noise eps ~ N(0, I).

    The answer must equal ``AffineTransform(loc=mu, scale=sigma)(eps)`` and, what
    makes it a trick, gradients must flow through it: d(sum z)/d mu and
    d(sum z)/d logvar are compared with autograd through that transform.
    """
    return run(
        "reparameterize",
        fn,
        _reparameterize_cases(),
        _torch_reparameterize,
        judge_sample_and_gradients,
        wrap=with_gradients,
    )


def _torch_reparameterize(
    mu: Tensor, logvar: Tensor, eps: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    mu, logvar = mu.clone().requires_grad_(), logvar.clone().requires_grad_()
    sigma = torch.exp(0.5 * logvar)
    z = AffineTransform(loc=mu, scale=sigma)(eps)  # z = mu + sigma eps
    grad_mu, grad_logvar = torch.autograd.grad(z.sum(), (mu, logvar))
    return z.detach(), grad_mu, grad_logvar


def _reparameterize_cases(count: int = 30, seed: int = 0) -> list[Case]:
    randn = seeded(torch.randn, seed)
    zeros = torch.zeros(2, 3, dtype=torch.float64)
    corners = [
        # the standard normal: z = eps
        dict(mu=zeros, logvar=zeros, eps=randn(2, 3)),
        # a shift
        dict(mu=zeros + 3.0, logvar=zeros, eps=randn(2, 3)),
        # variance 4: sigma = 2, not 4
        dict(mu=zeros, logvar=zeros + math.log(4.0), eps=randn(2, 3)),
    ]
    cases = list(corners)
    rng = random.Random(seed)
    while len(cases) < count:
        shape = (rng.randint(1, 4), rng.randint(1, 10))
        cases.append(
            dict(mu=randn(*shape), logvar=randn(*shape), eps=randn(*shape))
        )
    return cases
