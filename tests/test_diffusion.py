"""The diffusion package against closed forms: schedules, the forward process, the posterior, the three
objectives, min-SNR weights and the loss, DDPM/DDIM sampling with exact denoisers, inversion, guidance with
every kind of condition, training with condition dropout and its bit-identical resume, and bad input."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from minigen import diffusion
from minigen.core.runtime import choose_precision
from minigen.diffusion.objectives import (
    call_model,
    check_condition,
    diffusion_loss,
    loss_weights,
    target,
    to_eps_and_x0,
)
from minigen.diffusion.sampling import (
    SamplerOptions,
    ddim_invert,
    ddim_sample,
    ddim_sigma,
    ddim_step,
    ddim_timesteps,
    ddpm_sample,
    guided_prediction,
    posterior_mean,
    predict_eps_and_x0,
)
from minigen.diffusion.schedule import (
    NoiseSchedule,
    check_timesteps,
    q_sample,
    q_step,
)
from minigen.diffusion.training import train_diffusion
from minigen.nn.embeddings import TokenStates

SCHEDULES = {name: NoiseSchedule.named(name) for name in diffusion.SCHEDULES}
FP32 = choose_precision("cpu", dtype="fp32")
RAW = SamplerOptions(clip=None)


pytestmark = pytest.mark.usefixtures("one_thread")


# --- schedules -------------------------------------------------------------------------------------


def test_linear_schedule_is_ddpms():
    schedule = NoiseSchedule.linear()
    assert len(schedule) == 1000
    assert schedule.betas[0].item() == pytest.approx(1e-4) and schedule.betas[
        -1
    ].item() == pytest.approx(0.02)
    assert schedule.alpha_bar[-1].item() == pytest.approx(
        math.prod(1 - b for b in schedule.betas.tolist())
    )


def test_cosine_schedule_follows_its_formula_until_the_clip():
    schedule, steps, s = NoiseSchedule.cosine(100), 100, 0.008
    f = [
        math.cos((t / steps + s) / (1 + s) * math.pi / 2) ** 2
        for t in range(steps + 1)
    ]
    expected = torch.tensor(
        [f[t + 1] / f[0] for t in range(steps - 1)], dtype=torch.float64
    )
    assert torch.allclose(schedule.alpha_bar[:-1], expected, rtol=1e-10)
    assert schedule.betas.max().item() == pytest.approx(
        diffusion.MAX_BETA
    )  # the last beta is clipped


def test_sigmoid_schedule_follows_its_formula():
    steps, start, end, tau = 50, -3.0, 3.0, 1.0
    schedule = NoiseSchedule.sigmoid(steps, start, end, tau)

    def sig(z):
        return 1 / (1 + math.exp(-z))

    curve = [
        (sig(end / tau) - sig((start + t / steps * (end - start)) / tau))
        / (sig(end / tau) - sig(start / tau))
        for t in range(steps + 1)
    ]
    expected = torch.tensor(
        [curve[t + 1] / curve[0] for t in range(steps - 1)], dtype=torch.float64
    )
    assert torch.allclose(schedule.alpha_bar[:-1], expected, rtol=1e-6)


@pytest.mark.parametrize("name", diffusion.SCHEDULES)
def test_every_schedule_goes_from_signal_to_noise(name):
    schedule = SCHEDULES[name]
    assert (schedule.alpha_bar[1:] < schedule.alpha_bar[:-1]).all()
    assert schedule.alpha_bar[0] > 0.99 and schedule.alpha_bar[-1] < 1e-3
    log_snr = schedule.snr().log()
    assert (log_snr[1:] < log_snr[:-1]).all()


def test_signal_and_noise_level_are_the_square_roots_of_abar_and_its_complement():
    schedule = SCHEDULES["cosine"]
    t = torch.tensor([0, 1, 500, 999])
    like = torch.zeros(4, 3, 2, 2, dtype=torch.float64)
    signal, noise = schedule.signal(t, like), schedule.noise_level(t, like)
    assert signal.shape == noise.shape == (4, 1, 1, 1)
    expected = [math.sqrt(schedule.alpha_bar[step].item()) for step in t.tolist()]
    assert signal.flatten().tolist() == pytest.approx(expected, rel=1e-12)
    assert (signal.square() + noise.square()).flatten().tolist() == pytest.approx(
        [1.0] * 4, rel=1e-12
    )
    assert (
        schedule.signal(t, like.float()).dtype == torch.float32
    )  # the dtype of `like`
    snr = [
        schedule.alpha_bar[s].item() / (1 - schedule.alpha_bar[s].item())
        for s in t.tolist()
    ]
    assert schedule.snr(t).tolist() == pytest.approx(snr, rel=1e-12)


def test_schedule_errors():
    with pytest.raises(ValueError, match="name must be one of"):
        NoiseSchedule.named("quadratic")
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        NoiseSchedule(torch.tensor([0.1, 1.0]))
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        NoiseSchedule(torch.tensor([0.1, float("nan")]))
    with pytest.raises(TypeError, match="betas"):
        NoiseSchedule("linear")
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        NoiseSchedule.linear(0)
    with pytest.raises(ValueError, match="steps must be an int <="):
        NoiseSchedule.cosine(10**9)
    with pytest.raises(TypeError, match="steps must be an int"):
        NoiseSchedule.linear(10.0)
    with pytest.raises(ValueError, match="tau"):
        NoiseSchedule.sigmoid(10, tau=0.0)
    with pytest.raises(ValueError, match="end > start"):
        NoiseSchedule.sigmoid(10, start=1.0, end=1.0)
    schedule = NoiseSchedule.linear(10)
    with pytest.raises(ValueError, match=r"\[0, 9\]"):
        q_sample(schedule, torch.zeros(1, 2), torch.tensor([10]), torch.zeros(1, 2))
    with pytest.raises(ValueError, match=r"\[0, 9\]"):
        schedule.snr(torch.tensor([-1]))  # no wrapping to the last step
    with pytest.raises(TypeError, match="integer timesteps"):
        q_sample(
            schedule, torch.zeros(1, 2), torch.tensor([1.0]), torch.zeros(1, 2)
        )
    with pytest.raises(ValueError, match="same shape"):
        q_sample(
            schedule, torch.zeros(2, 2), torch.tensor([1, 2]), torch.zeros(2, 3)
        )
    with pytest.raises(TypeError, match="NoiseSchedule"):
        q_sample("linear", torch.zeros(1, 2), torch.tensor([1]), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="objective must be one of"):
        target(
            schedule,
            "score",
            torch.zeros(1, 2),
            torch.zeros(1, 2),
            torch.tensor([0]),
        )


# --- the forward process and the posterior ----------------------------------------------------------


def test_closed_form_forward_process_matches_the_markov_chain():
    schedule = NoiseSchedule.linear(200)
    generator = torch.Generator().manual_seed(0)
    n, t_final = 40_000, 150
    x0 = torch.full((n, 1), 0.7, dtype=torch.float64)
    x = x0.clone()
    for step in range(t_final + 1):  # x_0 -> x_{t_final} one step at a time
        x = q_step(
            schedule,
            x,
            torch.full((n,), step),
            torch.randn(n, 1, generator=generator, dtype=torch.float64),
        )
    mean, variance = (
        schedule.alpha_bar[t_final].sqrt() * 0.7,
        1 - schedule.alpha_bar[t_final],
    )
    assert abs(x.mean().item() - mean.item()) < 5 * math.sqrt(variance.item() / n)
    assert x.var().item() == pytest.approx(variance.item(), rel=0.03)
    direct = q_sample(
        schedule,
        x0,
        torch.full((n,), t_final),
        torch.randn(n, 1, generator=generator, dtype=torch.float64),
    )
    assert abs(direct.mean().item() - mean.item()) < 5 * math.sqrt(
        variance.item() / n
    )
    assert direct.var().item() == pytest.approx(variance.item(), rel=0.03)


@pytest.mark.parametrize("name", diffusion.SCHEDULES)
def test_posterior_matches_gaussian_conditioning(name):
    """q(x_{t-1} | x_t, x_0) from the joint Gaussian of (x_{t-1}, x_t) given x_0, by the conditioning formula."""
    schedule = SCHEDULES[name]
    x0, x_t = (
        torch.tensor([[0.3]], dtype=torch.float64),
        torch.tensor([[-0.5]], dtype=torch.float64),
    )
    for t in [1, 10, 500, 999]:
        ab_prev, alpha = schedule.alpha_bar[t - 1].item(), schedule.alphas[t].item()
        mean_prev, var_prev = math.sqrt(ab_prev) * 0.3, 1 - ab_prev  # x_{t-1} | x_0
        mean_t, var_t = (
            math.sqrt(alpha) * mean_prev,
            alpha * var_prev + (1 - alpha),
        )  # x_t | x_0
        covariance = math.sqrt(alpha) * var_prev  # Cov(x_{t-1}, x_t | x_0)
        expected_mean = mean_prev + covariance / var_t * (-0.5 - mean_t)
        expected_var = var_prev - covariance**2 / var_t
        got = posterior_mean(schedule, x0, x_t, torch.tensor([t])).item()
        assert got == pytest.approx(expected_mean, rel=1e-9, abs=1e-12)
        assert schedule.posterior_variance[t].item() == pytest.approx(
            expected_var, rel=1e-9
        )


# --- objectives, weights and the loss --------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(diffusion.SCHEDULES),
    objective=st.sampled_from(diffusion.OBJECTIVES),
    t=st.integers(0, 998),
    seed=st.integers(0, 10_000),
)
def test_every_objective_converts_back_to_eps_and_x0_exactly(
    name, objective, t, seed
):
    schedule = SCHEDULES[name]
    generator = torch.Generator().manual_seed(seed)
    x0, eps = (
        torch.randn(3, 2, 4, 4, generator=generator, dtype=torch.float64)
        for _ in range(2)
    )
    steps = torch.full((3,), t)
    x_t = q_sample(schedule, x0, steps, eps)
    got_eps, got_x0 = to_eps_and_x0(
        schedule, objective, x_t, steps, target(schedule, objective, x0, eps, steps)
    )
    scale = (
        1 / schedule.alpha_bar[t].sqrt().item()
    )  # x0 from eps divides by sqrt(abar)
    assert torch.allclose(got_eps, eps, atol=1e-9 * scale) and torch.allclose(
        got_x0, x0, atol=1e-9 * scale
    )


def test_v_is_the_rotation_of_x0_and_eps():
    schedule = SCHEDULES["cosine"]
    x0, eps = (
        torch.randn(4, 3, dtype=torch.float64),
        torch.randn(4, 3, dtype=torch.float64),
    )
    t = torch.tensor([0, 5, 500, 998])
    v = target(schedule, "v", x0, eps, t)
    a, b = (
        schedule.alpha_bar[t].sqrt()[:, None],
        (1 - schedule.alpha_bar[t]).sqrt()[:, None],
    )
    assert torch.allclose(v, a * eps - b * x0)
    assert torch.allclose(
        v.square().sum() + q_sample(schedule, x0, t, eps).square().sum(),
        x0.square().sum() + eps.square().sum(),
    )  # (x_t, v) is a rotation of (x0, eps)


@pytest.mark.parametrize("objective", diffusion.OBJECTIVES)
def test_min_snr_weights_agree_in_x0_terms(objective):
    """w_obj |error in obj|^2 = min(SNR, gamma) |error in x0|^2 for the same wrong prediction, for every objective."""
    schedule, gamma = SCHEDULES["linear"], 5.0
    generator = torch.Generator().manual_seed(1)
    t = torch.tensor([0, 30, 200, 700, 999])
    x0 = torch.randn(5, 8, generator=generator, dtype=torch.float64)
    eps = torch.randn(5, 8, generator=generator, dtype=torch.float64)
    x_t = q_sample(schedule, x0, t, eps)
    truth = target(schedule, objective, x0, eps, t)
    wrong = truth + 0.1 * torch.randn(
        5, 8, generator=generator, dtype=torch.float64
    )
    _, x0_wrong = to_eps_and_x0(schedule, objective, x_t, t, wrong)
    weighted = loss_weights(schedule, objective, t, gamma) * (
        wrong - truth
    ).square().sum(1)
    in_x0 = schedule.snr(t).clamp(max=gamma) * (x0_wrong - x0).square().sum(1)
    assert torch.allclose(weighted, in_x0, rtol=1e-8)
    assert torch.equal(
        loss_weights(schedule, objective, t), torch.ones(5, dtype=torch.float64)
    )


class ScaledInput(nn.Module):
    """pred = 0.3 x_t + 0.001 t: a fixed model whose error differs for every objective and timestep."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x, t):
        return (
            0.3 * x
            + 0.001 * t.to(x.dtype).view(-1, *[1] * (x.dim() - 1))
            + self.dummy
        )


@pytest.mark.parametrize("objective", diffusion.OBJECTIVES)
@pytest.mark.parametrize("gamma", [None, 1.0])
def test_diffusion_loss_is_the_weighted_error_against_the_objectives_target(
    objective, gamma
):
    """The loss drawn by hand: the same t and eps, the target and the min-SNR weight written out from abar."""
    schedule, n = NoiseSchedule.cosine(20), 64
    x0 = (
        torch.rand(
            n, 2, 3, generator=torch.Generator().manual_seed(7), dtype=torch.float64
        )
        * 2
        - 1
    )
    model = ScaledInput().double()
    loss = diffusion_loss(
        model,
        schedule,
        x0,
        objective,
        min_snr_gamma=gamma,
        generator=torch.Generator().manual_seed(3),
    )
    draws = torch.Generator().manual_seed(3)
    t = torch.randint(len(schedule), (n,), generator=draws)
    eps = torch.randn(x0.shape, generator=draws).double()
    abar = schedule.alpha_bar[t].view(n, 1, 1)
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    truth = {"eps": eps, "x0": x0, "v": abar.sqrt() * eps - (1 - abar).sqrt() * x0}[
        objective
    ]
    snr = (abar / (1 - abar)).flatten()
    if gamma is None:
        weight = torch.ones(n, dtype=torch.float64)
    else:
        weight = {
            "eps": snr.clamp(max=gamma) / snr,
            "x0": snr.clamp(max=gamma),
            "v": snr.clamp(max=gamma) / (snr + 1),
        }[objective]
        assert not torch.allclose(
            weight, torch.ones_like(weight)
        )  # the weights matter here
    expected = (weight * (model(x_t, t) - truth).square().mean(dim=(1, 2))).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_diffusion_loss_errors():
    schedule, model = NoiseSchedule.linear(10), ScaledInput()
    with pytest.raises(TypeError, match="nn.Module"):
        diffusion_loss(lambda x, t: x, schedule, torch.zeros(2, 3))
    with pytest.raises(TypeError, match="floating-point"):
        diffusion_loss(model, schedule, torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="min_snr_gamma"):
        diffusion_loss(model, schedule, torch.zeros(2, 3), min_snr_gamma=0.0)
    with pytest.raises(ValueError, match="one condition per sample"):
        diffusion_loss(
            model,
            schedule,
            torch.zeros(2, 3),
            cond=torch.zeros(3, 1, dtype=torch.long),
        )


# --- sampling --------------------------------------------------------------------------------------------


class ExactGaussianDenoiser(nn.Module):
    """The optimal eps-predictor for data N(mean, std^2): E[eps | x_t] = sqrt(1-abar) (x_t - sqrt(abar) m) / (abar s^2 + 1 - abar)."""

    def __init__(self, schedule, mean=0.0, std=0.5):
        super().__init__()
        self.schedule, self.mean, self.std = schedule, mean, std
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x, t):
        alpha_bar = self.schedule.at(self.schedule.alpha_bar, t, x)
        return (
            (1 - alpha_bar).sqrt()
            * (x - alpha_bar.sqrt() * self.mean)
            / (alpha_bar * self.std**2 + 1 - alpha_bar)
        )


@pytest.mark.parametrize("sampler", ["ddpm", "ddim eta 0", "ddim eta 1"])
def test_sampling_with_the_exact_denoiser_recovers_the_data_distribution(sampler):
    schedule = NoiseSchedule.cosine(200)
    model = ExactGaussianDenoiser(schedule, mean=0.3, std=0.5)
    generator = torch.Generator().manual_seed(0)
    shape = (20_000, 1)
    if sampler == "ddpm":
        x = ddpm_sample(model, schedule, shape, RAW, generator=generator)
    else:
        eta = float(
            sampler[-1]
        )  # eta = 1 is exact only step by step (it is DDPM then)
        x = ddim_sample(
            model,
            schedule,
            shape,
            steps=50 if eta == 0 else 200,
            eta=eta,
            options=RAW,
            generator=generator,
        )
    assert x.mean().item() == pytest.approx(0.3, abs=0.02)
    assert x.std().item() == pytest.approx(0.5, rel=0.04)


def test_ddim_with_eta_1_on_every_step_is_ddpm_draw_for_draw():
    """Same x_T, same generator: DDIM with eta = 1 over all T steps takes DDPM's steps and its noise."""
    schedule = NoiseSchedule.cosine(50)
    model = ExactGaussianDenoiser(schedule, mean=0.3, std=0.5).double()
    x_T = torch.randn(
        300, 2, generator=torch.Generator().manual_seed(9), dtype=torch.float64
    )
    ddpm = ddpm_sample(
        model,
        schedule,
        x_T.shape,
        RAW,
        generator=torch.Generator().manual_seed(1),
        x_T=x_T,
    )
    ddim = ddim_sample(
        model,
        schedule,
        x_T.shape,
        50,
        1.0,
        RAW,
        generator=torch.Generator().manual_seed(1),
        x_T=x_T,
    )
    deterministic = ddim_sample(model, schedule, x_T.shape, 50, 0.0, RAW, x_T=x_T)
    half = ddim_sample(
        model,
        schedule,
        x_T.shape,
        50,
        0.5,
        RAW,
        generator=torch.Generator().manual_seed(1),
        x_T=x_T,
    )
    assert torch.allclose(ddim, ddpm, atol=1e-9)
    assert (ddim - deterministic).abs().mean() > 0.1  # eta changes the samples...
    assert (
        0.01
        < (half - deterministic).abs().mean()
        < (ddim - deterministic).abs().mean()
    )  # ...by its size


def test_ddim_sigma_closed_form():
    schedule = SCHEDULES["linear"]
    generator = torch.Generator().manual_seed(2)
    for t in [1, 50, 400, 999]:
        assert ddim_sigma(schedule, t, t - 1, 1.0) ** 2 == pytest.approx(
            schedule.posterior_variance[t].item(), rel=1e-9
        )
        assert ddim_sigma(schedule, t, t - 1, 0.5) ** 2 == pytest.approx(
            0.25 * schedule.posterior_variance[t].item(), rel=1e-9
        )
        x0 = torch.randn(2, 5, generator=generator, dtype=torch.float64)
        eps = torch.randn(2, 5, generator=generator, dtype=torch.float64)
        steps = torch.full((2,), t)
        x_t = q_sample(schedule, x0, steps, eps)
        no_noise = ddim_step(
            schedule, x_t, eps, x0, t, t - 1, eta=1.0, noise=torch.zeros_like(x_t)
        )
        assert torch.allclose(
            no_noise,
            posterior_mean(schedule, x0, x_t, steps),
            rtol=1e-8,
            atol=1e-10,
        )
    ab_t, ab_prev = schedule.alpha_bar[500].item(), schedule.alpha_bar[480].item()
    expected = 0.7 * math.sqrt((1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev))
    assert ddim_sigma(schedule, 500, 480, 0.7) == pytest.approx(expected, rel=1e-12)
    assert ddim_sigma(schedule, 500, 480, 0.0) == 0.0
    assert (
        ddim_sigma(schedule, 0, -1, 1.0) == 0.0
    )  # the step to the clean image has no noise


def test_ddim_step_is_song_et_al_eq_12():
    schedule = SCHEDULES["cosine"]
    generator = torch.Generator().manual_seed(6)
    x0, eps, z = (
        torch.randn(3, 4, generator=generator, dtype=torch.float64)
        for _ in range(3)
    )
    x_t = q_sample(schedule, x0, torch.full((3,), 600), eps)
    ab_prev = schedule.alpha_bar[550].item()
    sigma = ddim_sigma(schedule, 600, 550, 0.6)
    expected = (
        math.sqrt(ab_prev) * x0
        + math.sqrt(1 - ab_prev - sigma**2) * eps
        + sigma * z
    )
    assert torch.allclose(
        ddim_step(schedule, x_t, eps, x0, 600, 550, 0.6, z), expected, atol=1e-12
    )


def test_ddim_timesteps():
    assert ddim_timesteps(1000, 1) == [0]
    assert ddim_timesteps(1000, 2) == [999, 0]
    assert ddim_timesteps(10, 10) == list(range(9, -1, -1))
    times = ddim_timesteps(1000, 50)
    assert (
        len(times) == 50
        and times[0] == 999
        and times[-1] == 0
        and times == sorted(times, reverse=True)
    )
    with pytest.raises(ValueError, match="steps must be an int <= 10"):
        ddim_timesteps(10, 11)


class ConstantEps(nn.Module):
    def __init__(self, value):
        super().__init__()
        self.value = nn.Parameter(value)

    def forward(self, x, t):
        return self.value.expand_as(x)


def test_ddim_inversion_is_exact_when_eps_does_not_depend_on_x_and_t():
    schedule = SCHEDULES["cosine"]
    generator = torch.Generator().manual_seed(3)
    model = ConstantEps(
        0.3 * torch.randn(1, 2, 4, 4, generator=generator, dtype=torch.float64)
    )
    x0 = torch.rand(3, 2, 4, 4, generator=generator, dtype=torch.float64) * 2 - 1
    noise = ddim_invert(model, schedule, x0, steps=20)
    back = ddim_sample(
        model, schedule, x0.shape, steps=20, eta=0.0, options=RAW, x_T=noise
    )
    assert torch.allclose(back, x0, atol=1e-9)
    assert (noise - x0).abs().mean() > 0.3  # the noise is not the image


class FixedRandomDenoiser(nn.Module):
    """An untrained MLP eps-model: smooth in x and t, fixed by its seed."""

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(3, 32), nn.Tanh(), nn.Linear(32, 2))

    def forward(self, x, t):
        return 0.5 * self.net(torch.cat([x, t[:, None].to(x.dtype) / 1000], dim=1))


def test_ddim_inversion_round_trip_on_an_untrained_model_is_deterministic_and_improves_with_steps():
    schedule = SCHEDULES["linear"]
    model = FixedRandomDenoiser().double()
    x0 = (
        torch.rand(
            64, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64
        )
        * 2
        - 1
    )
    errors = {}
    for steps in [10, 100, 1000]:
        noise = ddim_invert(model, schedule, x0, steps)
        assert torch.equal(noise, ddim_invert(model, schedule, x0, steps))
        back = ddim_sample(
            model, schedule, x0.shape, steps=steps, eta=0.0, options=RAW, x_T=noise
        )
        errors[steps] = (back - x0).abs().max().item()
    assert (
        errors[1000] < errors[100] < errors[10] and errors[1000] < 0.02
    )  # first order: ~10x per 10x steps


def test_sampling_is_reproducible_and_clips_the_x0_prediction():
    schedule = NoiseSchedule.linear(50)
    model = ExactGaussianDenoiser(
        schedule, mean=0.0, std=3.0
    )  # data far outside [-1, 1]

    def run(clip):
        return ddpm_sample(
            model,
            schedule,
            (500, 1),
            SamplerOptions(clip=clip),
            generator=torch.Generator().manual_seed(0),
        )

    assert torch.equal(run(1.0), run(1.0))
    assert run(1.0).abs().max() <= 1.0 + 1e-6 < run(None).abs().max()


@pytest.mark.parametrize("objective", diffusion.OBJECTIVES)
def test_clipping_x0_re_derives_eps_so_that_both_explain_x_t(objective):
    schedule = SCHEDULES["cosine"]
    t = torch.tensor([10, 300, 700, 990])
    x_t = (
        torch.randn(
            4, 2, 3, generator=torch.Generator().manual_seed(8), dtype=torch.float64
        )
        * 2
    )
    model = ScaledInput().double()
    raw_eps, raw_x0 = predict_eps_and_x0(
        model, schedule, x_t, t, SamplerOptions(objective, clip=None)
    )
    eps, x0 = predict_eps_and_x0(
        model, schedule, x_t, t, SamplerOptions(objective, clip=0.5)
    )
    assert torch.equal(x0, raw_x0.clamp(-0.5, 0.5)) and (raw_x0.abs() > 0.5).any()
    assert torch.allclose(
        q_sample(schedule, x0, t, eps), x_t, atol=1e-9
    )  # x_t = sqrt(abar) x0 + sqrt(1-abar) eps
    assert torch.allclose(q_sample(schedule, raw_x0, t, raw_eps), x_t, atol=1e-9)
    assert not torch.allclose(eps, raw_eps)


class ConstantX0(nn.Module):
    """An x0-predictor that always says 3 (outside the clip range)."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x, t):
        return torch.full_like(x, 3.0)


def test_ddim_steps_with_the_clipped_x0_and_the_eps_that_goes_with_it():
    schedule = NoiseSchedule.cosine(30)
    x_T = torch.randn(
        5, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64
    )
    path = []
    ddim_sample(
        ConstantX0(),
        schedule,
        x_T.shape,
        3,
        options=SamplerOptions("x0", clip=1.0),
        x_T=x_T,
        path=path,
    )
    first, second = ddim_timesteps(30, 3)[:2]
    a, b = (
        schedule.alpha_bar[first].sqrt().item(),
        (1 - schedule.alpha_bar[first]).sqrt().item(),
    )
    eps = (
        x_T - a * 1.0
    ) / b  # the x0 read is clipped from 3 to 1, and eps re-derived from it
    ab_prev = schedule.alpha_bar[second].item()
    assert torch.allclose(
        path[1], math.sqrt(ab_prev) * 1.0 + math.sqrt(1 - ab_prev) * eps, atol=1e-10
    )
    assert torch.allclose(path[-1], torch.ones_like(x_T))


def test_ddim_path_records_every_step_from_x_T():
    schedule = NoiseSchedule.cosine(100)
    model = ExactGaussianDenoiser(schedule, mean=0.3, std=0.5)
    x_T = torch.randn(50, 1, generator=torch.Generator().manual_seed(5))
    path = []
    x = ddim_sample(
        model, schedule, x_T.shape, steps=10, options=RAW, x_T=x_T, path=path
    )
    assert (
        len(path) == 11 and torch.equal(path[0], x_T) and torch.equal(path[-1], x)
    )
    times = ddim_timesteps(100, 10)
    for before, after, step, step_prev in zip(
        path[:-1], path[1:], times, [*times[1:], -1]
    ):
        # each recorded x is the DDIM step from the one before: the path is the sampler's own
        eps, x0 = predict_eps_and_x0(
            model, schedule, before, torch.full((50,), step), RAW
        )
        assert torch.allclose(
            after,
            ddim_step(schedule, before, eps, x0, step, step_prev, 0.0),
            atol=1e-6,
        )
        assert not torch.allclose(after, before)
    assert torch.equal(
        x, ddim_sample(model, schedule, x_T.shape, steps=10, options=RAW, x_T=x_T)
    )


def test_sampler_bad_input_fails_at_the_entry_point():
    schedule, model = NoiseSchedule.linear(10), ScaledInput()
    x = torch.zeros(2, 3)
    with pytest.raises(TypeError, match="NoiseSchedule"):
        ddim_sample(model, "linear", (2, 3), 5)
    with pytest.raises(TypeError, match="model instance"):
        ddim_sample(ScaledInput, schedule, (2, 3), 5)
    with pytest.raises(TypeError, match="nn.Module"):
        ddim_sample(lambda x, t: x, schedule, (2, 3), 5)
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        ddim_sample(model, schedule, (2, 3), 0)
    with pytest.raises(ValueError, match="steps must be an int <= 10"):
        ddim_sample(model, schedule, (2, 3), 10**9)
    with pytest.raises(ValueError, match="eta must lie in"):
        ddim_sample(model, schedule, (2, 3), 5, eta=-0.5)
    with pytest.raises(ValueError, match="clip"):
        SamplerOptions(clip=-1.0)
    with pytest.raises(ValueError, match="guidance needs a condition"):
        SamplerOptions(guidance=2.0)
    with pytest.raises(ValueError, match="objective must be one of"):
        SamplerOptions("score")
    with pytest.raises(TypeError, match="options must be a SamplerOptions"):
        ddpm_sample(model, schedule, (2, 3), {"clip": None})
    with pytest.raises(ValueError, match="shape"):
        ddpm_sample(model, schedule, (0, 3))
    with pytest.raises(ValueError, match="x_T must have the shape"):
        ddim_sample(model, schedule, (2, 3), 5, x_T=torch.zeros(2, 4))
    with pytest.raises(ValueError, match="one condition per sample"):
        ddim_sample(
            model,
            schedule,
            (2, 3),
            5,
            options=SamplerOptions(cond=torch.zeros(3, 1, dtype=torch.long)),
        )
    # ddim_step: every tensor is used or checked, nothing broadcasts
    with pytest.raises(TypeError, match="x_t must be a torch.Tensor"):
        ddim_step(schedule, None, x, x, 5, 4, 0.0)
    with pytest.raises(ValueError, match="same shape"):
        ddim_step(schedule, x, torch.zeros(3), x, 5, 4, 0.0)
    with pytest.raises(ValueError, match="same shape"):
        ddim_step(schedule, x, x, x, 5, 4, 1.0, noise=torch.zeros(1))
    with pytest.raises(ValueError, match="needs noise"):
        ddim_step(schedule, x, x, x, 5, 4, 1.0)
    # ddim_sigma: no wrapping of negative timesteps, no negative sigma
    with pytest.raises(ValueError, match="t must be an int >= 0"):
        ddim_sigma(schedule, -1, -1, 0.0)
    with pytest.raises(ValueError, match="t_prev must be an int <= 4"):
        ddim_sigma(schedule, 5, 5, 0.0)
    with pytest.raises(ValueError, match="eta must lie in"):
        ddim_sigma(schedule, 5, 4, -1.0)
    with pytest.raises(ValueError, match="eta must be a finite number"):
        ddim_sigma(schedule, 5, 4, float("nan"))


# --- guidance with every kind of condition --------------------------------------------------------------


class LabelledLinear(nn.Module):
    """pred = x * (1 + label): conditional and unconditional predictions that differ in a known way."""

    def __init__(self, null=9):
        super().__init__()
        self.null = null
        self.scale = nn.Parameter(torch.ones(1))
        self.seen = []

    def null_cond(self, batch, device=None):
        return torch.full((batch, 1), self.null, device=device)

    def forward(self, x, t, labels):
        self.seen.append(labels.detach().clone())
        factor = torch.where(
            labels == self.null, 0.0, labels.float() + 1
        )  # null -> 0
        return self.scale * x * factor.view(-1, *([1] * (x.dim() - 1)))


class EmbeddingScale(nn.Module):
    """pred = x * (sum of the embedding); its NULL is the zero embedding."""

    def __init__(self, dim=3):
        super().__init__()
        self.dim = dim
        self.scale = nn.Parameter(torch.ones(1))

    def null_cond(self, batch, device=None):
        return torch.zeros(batch, self.dim, device=device)

    def forward(self, x, t, cond):
        return self.scale * x * cond.sum(1).view(-1, *([1] * (x.dim() - 1)))


class TokenMean(nn.Module):
    """pred = x * (mean of the real tokens' first state); its NULL is one zero token."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def null_cond(self, batch, device=None):
        return TokenStates(
            torch.zeros(batch, 1, 2, device=device),
            torch.ones(batch, 1, dtype=torch.bool, device=device),
        )

    def forward(self, x, t, cond):
        first = (cond.states[..., 0] * cond.mask).sum(1) / cond.mask.sum(1)  # (B,)
        return self.scale * x * first.view(-1, *([1] * (x.dim() - 1)))


def conditions():
    labels = torch.tensor([[1], [2]])
    embedding = torch.tensor(
        [[1.0, 0.5, 0.5], [2.0, 0.5, 0.5]]
    )  # sums 2 and 3, as the labels' factors
    states = torch.tensor(
        [[[2.0, 0.0], [9.0, 9.0], [9.0, 9.0]], [[3.0, 1.0], [3.0, 1.0], [9.0, 9.0]]]
    )
    mask = torch.tensor(
        [[True, False, False], [True, True, False]]
    )  # padding must not count
    return {
        "labels": (LabelledLinear(), labels),
        "embedding": (EmbeddingScale(), embedding),
        "tokens": (TokenMean(), TokenStates(states, mask)),
    }


@pytest.mark.parametrize("kind", ["labels", "embedding", "tokens"])
def test_guidance_interpolates_and_extrapolates_between_the_two_predictions(kind):
    model, cond = conditions()[kind]
    x, t = torch.ones(2, 3), torch.tensor([5, 5])
    conditional = guided_prediction(model, x, t, cond)
    assert torch.allclose(conditional, torch.tensor([[2.0] * 3, [3.0] * 3]))
    assert torch.allclose(
        guided_prediction(model, x, t, model.null_cond(2)), torch.zeros(2, 3)
    )
    for w in [0.0, 1.0, 3.0]:
        got = guided_prediction(model, x, t, cond, guidance=w)
        assert torch.allclose(
            got, w * conditional
        )  # the unconditional prediction is 0 here


def test_prediction_helpers_reject_bad_input():
    schedule, x, t = (
        NoiseSchedule.linear(10),
        torch.ones(2, 3),
        torch.tensor([1, 1]),
    )
    with pytest.raises(ValueError, match="guidance needs a condition"):
        guided_prediction(LabelledLinear(), x, t, guidance=2.0)
    with pytest.raises(TypeError, match="guidance must be a number"):
        guided_prediction(LabelledLinear(), x, t, torch.ones(2, 1), guidance="2")
    with pytest.raises(TypeError, match="options must be a SamplerOptions"):
        predict_eps_and_x0(ScaledInput(), schedule, x, t, {"clip": None})
    with pytest.raises(TypeError, match="prediction must be a torch.Tensor"):
        to_eps_and_x0(schedule, "v", x, t, None)
    with pytest.raises(TypeError, match="x0 must be a torch.Tensor"):
        posterior_mean(schedule, [1.0], x, t)


def test_guidance_needs_the_models_null_condition():
    with pytest.raises(TypeError, match="null_cond"):
        guided_prediction(
            ScaledInput(),
            torch.ones(2, 3),
            torch.tensor([1, 1]),
            torch.ones(2, 1),
            guidance=2.0,
        )


def test_guided_sampling_runs_the_conditional_and_the_null_batch_together():
    model, cond = conditions()["labels"]
    schedule = NoiseSchedule.linear(10)
    ddim_sample(
        model, schedule, (2, 3), 2, options=SamplerOptions(cond=cond, guidance=2.0)
    )
    assert [seen.tolist() for seen in model.seen] == [
        [[9], [9], [1], [2]]
    ] * 2  # null rows first, then cond


# --- training --------------------------------------------------------------------------------------------


def label_batches(step):
    generator = torch.Generator().manual_seed(
        step
    )  # a pure function of the step, as resuming needs
    return torch.randn(64, 3, generator=generator), torch.randint(
        0, 3, (64, 1), generator=generator
    )


def test_train_diffusion_drops_conditions_at_the_asked_rate_and_returns_the_ema_model():
    model = LabelledLinear()
    schedule = NoiseSchedule.linear(10)
    ema_model, history = train_diffusion(
        model,
        schedule,
        label_batches,
        steps=20,
        cond_dropout=0.25,
        ema_decay=0.9,
        precision=FP32,
        progress=False,
    )
    seen = torch.cat(model.seen)
    dropped = seen.eq(model.null)
    assert dropped.float().mean().item() == pytest.approx(0.25, abs=0.05)
    kept = torch.cat([label_batches(step)[1] for step in range(20)])
    assert torch.equal(
        seen[~dropped], kept[~dropped]
    )  # the others reach the model unchanged
    assert (
        len(history.losses) == 20
        and ema_model is not model
        and not ema_model.training
    )


def test_train_diffusion_hands_on_step_the_ema_model_it_returns():
    calls = []
    ema_model, _ = train_diffusion(
        LabelledLinear(),
        NoiseSchedule.linear(10),
        label_batches,
        steps=3,
        precision=FP32,
        progress=False,
        on_step=lambda done, model: calls.append(
            (done, model, model.scale.detach().clone())
        ),
    )
    assert [done for done, _, _ in calls] == [1, 2, 3]
    assert all(model is ema_model for _, model, _ in calls)
    # the EMA moved between the calls: each saw the weights of its step
    assert not torch.equal(calls[0][2], calls[2][2])
    with pytest.raises(TypeError, match="on_step must be a function"):
        train_diffusion(
            LabelledLinear(), NoiseSchedule.linear(10), label_batches, steps=1,
            on_step="every 100 steps",
        )  # fmt: skip


@pytest.mark.parametrize("kind", ["embedding", "tokens"])
def test_condition_dropout_replaces_rows_by_the_null_of_any_kind(kind):
    model, _ = conditions()[kind]
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(args[2]))
    if kind == "embedding":

        def batches(step):
            return (torch.randn(40, 3), torch.rand(40, 3) + 1)
    else:

        def batches(step):
            return (
                torch.randn(40, 3),
                TokenStates(
                    torch.rand(40, 4, 2) + 1, torch.ones(40, 4, dtype=torch.bool)
                ),
            )

    train_diffusion(
        model,
        NoiseSchedule.linear(10),
        batches,
        steps=10,
        cond_dropout=0.5,
        precision=FP32,
        progress=False,
    )
    rows = torch.cat(
        [
            cond.sum(1)
            if kind == "embedding"
            else (cond.states * cond.mask[..., None]).sum((1, 2))
            for cond in seen
        ]
    )
    null = rows == 0  # a NULL row sums to 0, a kept row to more than 1
    assert 0.35 < null.float().mean().item() < 0.65 and (rows[~null] > 1).all()


def test_train_diffusion_resumes_bit_for_bit_from_its_checkpoint(tmp_path):
    """A run stopped after step 3 and resumed from its checkpoint ends exactly where an unbroken run does, the
    condition dropout's private generator included."""
    schedule = NoiseSchedule.linear(10)
    options = dict(
        steps=6, cond_dropout=0.3, ema_decay=0.9, precision=FP32, progress=False
    )
    unbroken = LabelledLinear()
    _, unbroken_history = train_diffusion(
        unbroken, schedule, label_batches, **options
    )

    def stopping_batches(step):
        if step == 3:
            raise KeyboardInterrupt  # as if the process were killed after the checkpoint of step 3
        return label_batches(step)

    path = tmp_path / "diffusion.pt"
    with pytest.raises(KeyboardInterrupt):
        train_diffusion(
            LabelledLinear(),
            schedule,
            stopping_batches,
            checkpoint=path,
            checkpoint_every=3,
            **options,
        )
    resumed = LabelledLinear()
    _, history = train_diffusion(
        resumed,
        schedule,
        label_batches,
        checkpoint=path,
        checkpoint_every=3,
        **options,
    )
    assert history.losses == unbroken_history.losses
    assert torch.equal(resumed.scale, unbroken.scale)
    assert [seen.tolist() for seen in resumed.seen] == [
        seen.tolist() for seen in unbroken.seen[3:]
    ]


def test_train_diffusion_uses_min_snr_weights():
    schedule = NoiseSchedule.cosine(20)
    runs = {
        gamma: train_diffusion(
            ScaledInput(),
            schedule,
            lambda step: (torch.randn(16, 3), None),
            steps=2,
            min_snr_gamma=gamma,
            precision=FP32,
            progress=False,
        )[1].losses
        for gamma in [None, 0.5]
    }
    assert runs[None] != runs[0.5]  # the same draws, weighted differently


def test_train_diffusion_errors():
    schedule, model = NoiseSchedule.linear(10), LabelledLinear()
    with pytest.raises(ValueError, match="cond_dropout"):
        train_diffusion(
            model,
            schedule,
            label_batches,
            steps=1,
            cond_dropout=1.0,
            progress=False,
        )
    with pytest.raises(TypeError, match="null_cond"):
        train_diffusion(
            ScaledInput(),
            schedule,
            label_batches,
            steps=1,
            cond_dropout=0.1,
            progress=False,
        )
    with pytest.raises(TypeError, match="batches must be a function"):
        train_diffusion(
            model, schedule, [label_batches(0)], steps=1, progress=False
        )
    with pytest.raises(TypeError, match="must return \\(x0, cond\\)"):
        train_diffusion(
            model,
            schedule,
            lambda step: torch.zeros(4, 3),
            steps=1,
            precision=FP32,
            progress=False,
        )
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        train_diffusion(model, schedule, label_batches, steps=0, progress=False)
    with pytest.raises(ValueError, match="checkpoint_every needs a checkpoint"):
        train_diffusion(
            model,
            schedule,
            label_batches,
            steps=2,
            checkpoint_every=1,
            progress=False,
        )
    with pytest.raises(ValueError, match="objective must be one of"):
        train_diffusion(
            model,
            schedule,
            label_batches,
            steps=2,
            objective="score",
            progress=False,
        )


# --- bad input at the public entry points ---------------------------------------


@pytest.mark.parametrize("model", [None, 42, [1], "x"])
def test_every_model_entry_point_rejects_a_non_model(model):
    schedule = SCHEDULES["linear"]
    x, t = torch.zeros(2, 3), torch.tensor([1, 2])
    calls = [
        lambda: call_model(model, x, t, None),
        lambda: guided_prediction(model, x, t),
        lambda: guided_prediction(model, x, t, torch.zeros(2, 1), guidance=2.0),
        lambda: predict_eps_and_x0(model, schedule, x, t, RAW),
        lambda: diffusion_loss(model, schedule, x),
        lambda: ddpm_sample(model, schedule, (2, 3)),
        lambda: ddim_sample(model, schedule, (2, 3), 5),
        lambda: ddim_invert(model, schedule, x, 5),
    ]
    for call in calls:
        with pytest.raises(TypeError, match="model must be an nn.Module"):
            call()


@pytest.mark.parametrize("generator", [42, [1], object(), torch.float32])
def test_diffusion_loss_rejects_a_non_generator(generator):
    with pytest.raises(TypeError, match="generator must be Generator"):
        diffusion_loss(
            ScaledInput(),
            SCHEDULES["linear"],
            torch.zeros(2, 3),
            generator=generator,
        )


@pytest.mark.parametrize(
    "device, error",
    [(None, TypeError), ([1], TypeError), (3, TypeError), ("nonsense", ValueError)],
)
def test_samplers_check_the_device(device, error):
    schedule = NoiseSchedule.linear(20)
    with pytest.raises(error, match="device"):
        ddpm_sample(ScaledInput(), schedule, (2, 3), RAW, device=device)
    with pytest.raises(error, match="device"):
        ddim_sample(ScaledInput(), schedule, (2, 3), 5, options=RAW, device=device)


def test_samplers_give_the_same_samples_for_a_device_name_or_object():
    schedule = NoiseSchedule.linear(20)
    runs = [
        ddim_sample(
            ScaledInput(),
            schedule,
            (2, 3),
            5,
            eta=0.5,
            options=RAW,
            generator=torch.Generator().manual_seed(0),
            device=device,
        )
        for device in ("cpu", torch.device("cpu"))
    ]
    assert torch.equal(*runs)


def test_schedule_lookups_check_their_tables_and_targets():
    schedule = NoiseSchedule.linear(10)
    t, like = torch.tensor([0, 9]), torch.zeros(2, 3)
    for values in (None, [[1.0]], "x"):
        with pytest.raises(TypeError, match="values must be a torch.Tensor"):
            schedule.at(values, t, like)
    with pytest.raises(ValueError, match="one entry per step: 10, got 3"):
        schedule.at(torch.zeros(3), t, like)
    with pytest.raises(ValueError, match="values must be a 1-d"):
        schedule.at(torch.zeros(10, 1), t, like)
    for lookup in (schedule.signal, schedule.noise_level):
        with pytest.raises(TypeError, match="like must be a torch.Tensor"):
            lookup(t, None)
    with pytest.raises(ValueError, match="like must be a batch"):
        schedule.signal(t, torch.tensor(1.0))
    # a valid lookup: values[t] shaped to broadcast
    gathered = schedule.at(schedule.betas, t, like)
    assert torch.equal(gathered, schedule.betas[[0, 9]].float().view(2, 1))


def test_check_timesteps_checks_its_bounds():
    t = torch.tensor([0, 3])
    for total in (None, [1], "x", 2.0):
        with pytest.raises(TypeError, match="total must be an int"):
            check_timesteps(t, total)
    with pytest.raises(TypeError, match="batch must be an int"):
        check_timesteps(t, 4, "2")
    with pytest.raises(ValueError, match=r"timesteps must lie in \[0, 2\]"):
        check_timesteps(t, 3)
    assert torch.equal(check_timesteps(t.int(), 4, 2), t)


@pytest.mark.parametrize("objective", diffusion.OBJECTIVES)
def test_target_checks_t_for_every_objective(objective):
    schedule = SCHEDULES["linear"]
    x0, noise = torch.zeros(2, 3), torch.ones(2, 3)
    for t in ("x", None, torch.tensor([0.5, 1.0])):
        with pytest.raises(TypeError, match="t must"):
            target(schedule, objective, x0, noise, t)
    with pytest.raises(ValueError, match="timesteps must lie in"):
        target(schedule, objective, x0, noise, torch.tensor([0, len(schedule)]))


def test_check_condition_checks_its_name_and_batch():
    cond = torch.zeros(2, 1)
    for name in (None, [1], 3):
        with pytest.raises(TypeError, match="name must be a str"):
            check_condition(name, cond, 2)
    for batch, error in (("x", TypeError), (None, TypeError), (True, TypeError)):
        with pytest.raises(error, match="batch must be an int"):
            check_condition("cond", cond, batch)
    with pytest.raises(TypeError, match="batch must be an int"):
        check_condition("cond", cond, 3.5)
    with pytest.raises(ValueError, match="batch must be an int >= 0"):
        check_condition("cond", cond, -1)
    with pytest.raises(ValueError, match="one condition per sample: 3, got 2"):
        check_condition("cond", cond, 3)
    check_condition("cond", cond, 2)
    check_condition("cond", None, 0)
