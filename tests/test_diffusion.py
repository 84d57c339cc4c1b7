"""The diffusion module against closed forms: schedules, the forward process, the posterior, the three
objectives, min-SNR weights, DDPM/DDIM sampling with exact denoisers, inversion and guidance."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from minigen import diffusion
from minigen.diffusion.schedule import NoiseSchedule, q_sample, q_step
from minigen.diffusion.sampling import (ddim_invert, ddim_sample, ddim_sigma, ddim_step,
    ddim_timesteps, ddpm_sample, guided_prediction, posterior_mean)
from minigen.diffusion.objectives import loss_weights, target, to_eps_and_x0
from minigen.diffusion.training import train_diffusion
from minigen.core.runtime import choose_precision

SCHEDULES = {name: NoiseSchedule.named(name) for name in diffusion.SCHEDULES}
FP32 = choose_precision("cpu", dtype="fp32")


# --- schedules -------------------------------------------------------------------------------------


def test_linear_schedule_is_ddpms():
    schedule = NoiseSchedule.linear()
    assert len(schedule) == 1000
    assert schedule.betas[0].item() == pytest.approx(1e-4) and schedule.betas[-1].item() == pytest.approx(0.02)
    assert schedule.alpha_bar[-1].item() == pytest.approx(math.prod(1 - b for b in schedule.betas.tolist()))


def test_cosine_schedule_follows_its_formula_until_the_clip():
    schedule, steps, s = NoiseSchedule.cosine(100), 100, 0.008
    f = [math.cos((t / steps + s) / (1 + s) * math.pi / 2) ** 2 for t in range(steps + 1)]
    expected = torch.tensor([f[t + 1] / f[0] for t in range(steps - 1)], dtype=torch.float64)
    assert torch.allclose(schedule.alpha_bar[:-1], expected, rtol=1e-10)
    assert schedule.betas.max().item() == pytest.approx(diffusion.MAX_BETA)          # the last beta is clipped


@pytest.mark.parametrize("name", diffusion.SCHEDULES)
def test_every_schedule_goes_from_signal_to_noise(name):
    schedule = SCHEDULES[name]
    assert (schedule.alpha_bar[1:] < schedule.alpha_bar[:-1]).all()
    assert schedule.alpha_bar[0] > 0.99 and schedule.alpha_bar[-1] < 1e-3
    log_snr = schedule.snr().log()
    assert (log_snr[1:] < log_snr[:-1]).all()


def test_schedule_errors():
    with pytest.raises(ValueError, match="unknown schedule"):
        NoiseSchedule.named("quadratic")
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        NoiseSchedule(torch.tensor([0.1, 1.0]))
    with pytest.raises(ValueError, match="positive int"):
        NoiseSchedule.linear(0)
    schedule = NoiseSchedule.linear(10)
    with pytest.raises(ValueError, match=r"\[0, 9\]"):
        q_sample(schedule, torch.zeros(1, 2), torch.tensor([10]), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="integer timesteps"):
        q_sample(schedule, torch.zeros(1, 2), torch.tensor([1.0]), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="unknown objective"):
        target(schedule, "score", torch.zeros(1, 2), torch.zeros(1, 2), torch.tensor([0]))


# --- the forward process and the posterior ----------------------------------------------------------


def test_closed_form_forward_process_matches_the_markov_chain():
    schedule = NoiseSchedule.linear(200)
    generator = torch.Generator().manual_seed(0)
    n, t_final = 40_000, 150
    x0 = torch.full((n, 1), 0.7, dtype=torch.float64)
    x = x0.clone()
    for step in range(t_final + 1):                                   # x_0 -> x_{t_final} one step at a time
        x = q_step(schedule, x, torch.full((n,), step), torch.randn(n, 1, generator=generator, dtype=torch.float64))
    mean, variance = schedule.alpha_bar[t_final].sqrt() * 0.7, 1 - schedule.alpha_bar[t_final]
    assert abs(x.mean().item() - mean.item()) < 5 * math.sqrt(variance.item() / n)
    assert x.var().item() == pytest.approx(variance.item(), rel=0.03)
    direct = q_sample(schedule, x0, torch.full((n,), t_final), torch.randn(n, 1, generator=generator,
                                                                           dtype=torch.float64))
    assert direct.var().item() == pytest.approx(variance.item(), rel=0.03)


@pytest.mark.parametrize("name", diffusion.SCHEDULES)
def test_posterior_matches_gaussian_conditioning(name):
    """q(x_{t-1} | x_t, x_0) from the joint Gaussian of (x_{t-1}, x_t) given x_0, by the conditioning formula."""
    schedule = SCHEDULES[name]
    x0, x_t = torch.tensor([[0.3]], dtype=torch.float64), torch.tensor([[-0.5]], dtype=torch.float64)
    for t in [1, 10, 500, 999]:
        ab_prev, alpha = schedule.alpha_bar[t - 1].item(), schedule.alphas[t].item()
        mean_prev, var_prev = math.sqrt(ab_prev) * 0.3, 1 - ab_prev             # x_{t-1} | x_0
        mean_t, var_t = math.sqrt(alpha) * mean_prev, alpha * var_prev + (1 - alpha)   # x_t | x_0
        covariance = math.sqrt(alpha) * var_prev                                # Cov(x_{t-1}, x_t | x_0)
        expected_mean = mean_prev + covariance / var_t * (-0.5 - mean_t)
        expected_var = var_prev - covariance**2 / var_t
        got = posterior_mean(schedule, x0, x_t, torch.tensor([t])).item()
        assert got == pytest.approx(expected_mean, rel=1e-9, abs=1e-12)
        assert schedule.posterior_variance[t].item() == pytest.approx(expected_var, rel=1e-9)


# --- objectives and weights ----------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(diffusion.SCHEDULES), objective=st.sampled_from(diffusion.OBJECTIVES),
       t=st.integers(0, 998), seed=st.integers(0, 10_000))
def test_every_objective_converts_back_to_eps_and_x0_exactly(name, objective, t, seed):
    schedule = SCHEDULES[name]
    generator = torch.Generator().manual_seed(seed)
    x0, eps = (torch.randn(3, 2, 4, 4, generator=generator, dtype=torch.float64) for _ in range(2))
    steps = torch.full((3,), t)
    x_t = q_sample(schedule, x0, steps, eps)
    got_eps, got_x0 = to_eps_and_x0(schedule, objective, x_t, steps, target(schedule, objective, x0, eps, steps))
    scale = 1 / schedule.alpha_bar[t].sqrt().item()                 # x0 from eps divides by sqrt(abar)
    assert torch.allclose(got_eps, eps, atol=1e-9 * scale) and torch.allclose(got_x0, x0, atol=1e-9 * scale)


def test_v_is_the_rotation_of_x0_and_eps():
    schedule = SCHEDULES["cosine"]
    x0, eps, t = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64), torch.tensor([0, 5, 500, 998])
    v = target(schedule, "v", x0, eps, t)
    a, b = schedule.alpha_bar[t].sqrt()[:, None], (1 - schedule.alpha_bar[t]).sqrt()[:, None]
    assert torch.allclose(v, a * eps - b * x0)
    assert torch.allclose(v.square().sum() + q_sample(schedule, x0, t, eps).square().sum(),
                          x0.square().sum() + eps.square().sum())    # (x_t, v) is a rotation of (x0, eps)


@pytest.mark.parametrize("objective", diffusion.OBJECTIVES)
def test_min_snr_weights_agree_in_x0_terms(objective):
    """w_obj |error in obj|^2 = min(SNR, gamma) |error in x0|^2 for the same wrong prediction, for every objective."""
    schedule, gamma = SCHEDULES["linear"], 5.0
    generator = torch.Generator().manual_seed(1)
    t = torch.tensor([0, 30, 200, 700, 999])
    x0, eps = torch.randn(5, 8, generator=generator, dtype=torch.float64), torch.randn(5, 8, generator=generator, dtype=torch.float64)
    x_t = q_sample(schedule, x0, t, eps)
    truth = target(schedule, objective, x0, eps, t)
    wrong = truth + 0.1 * torch.randn(5, 8, generator=generator, dtype=torch.float64)
    _, x0_wrong = to_eps_and_x0(schedule, objective, x_t, t, wrong)
    weighted = loss_weights(schedule, objective, t, gamma) * (wrong - truth).square().sum(1)
    in_x0 = schedule.snr(t).clamp(max=gamma) * (x0_wrong - x0).square().sum(1)
    assert torch.allclose(weighted, in_x0, rtol=1e-8)
    assert torch.equal(loss_weights(schedule, objective, t), torch.ones(5, dtype=torch.float64))


# --- sampling --------------------------------------------------------------------------------------------


class ExactGaussianDenoiser(nn.Module):
    """The optimal eps-predictor for data N(mean, std^2): E[eps | x_t] = sqrt(1-abar) (x_t - sqrt(abar) m) / (abar s^2 + 1 - abar)."""

    def __init__(self, schedule, mean=0.0, std=0.5):
        super().__init__()
        self.schedule, self.mean, self.std = schedule, mean, std
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x, t):
        alpha_bar = self.schedule.at(self.schedule.alpha_bar, t, x)
        return (1 - alpha_bar).sqrt() * (x - alpha_bar.sqrt() * self.mean) / (alpha_bar * self.std**2 + 1 - alpha_bar)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim eta 0", "ddim eta 1"])
def test_sampling_with_the_exact_denoiser_recovers_the_data_distribution(sampler):
    schedule = NoiseSchedule.cosine(200)
    model = ExactGaussianDenoiser(schedule, mean=0.3, std=0.5)
    generator = torch.Generator().manual_seed(0)
    shape = (20_000, 1)
    if sampler == "ddpm":
        x = ddpm_sample(model, schedule, shape, clip=None, generator=generator)
    else:
        eta = float(sampler[-1])                       # eta = 1 is exact only step by step (it is DDPM then)
        x = ddim_sample(model, schedule, shape, steps=50 if eta == 0 else 200, eta=eta, clip=None, generator=generator)
    assert x.mean().item() == pytest.approx(0.3, abs=0.02)
    assert x.std().item() == pytest.approx(0.5, rel=0.04)


def test_ddim_with_eta_1_on_consecutive_steps_is_the_ddpm_posterior():
    schedule = SCHEDULES["linear"]
    generator = torch.Generator().manual_seed(2)
    for t in [1, 50, 400, 999]:
        assert ddim_sigma(schedule, t, t - 1, 1.0) ** 2 == pytest.approx(schedule.posterior_variance[t].item(), rel=1e-9)
        x0, eps = torch.randn(2, 5, generator=generator, dtype=torch.float64), torch.randn(2, 5, generator=generator, dtype=torch.float64)
        steps = torch.full((2,), t)
        x_t = q_sample(schedule, x0, steps, eps)
        no_noise = ddim_step(schedule, x_t, eps, x0, t, t - 1, eta=1.0, noise=torch.zeros_like(x_t))
        assert torch.allclose(no_noise, posterior_mean(schedule, x0, x_t, steps), rtol=1e-8, atol=1e-10)
    assert ddim_sigma(schedule, 500, 480, 0.0) == 0.0


def test_ddim_timesteps():
    assert ddim_timesteps(1000, 1) == [0]
    assert ddim_timesteps(1000, 2) == [999, 0]
    assert ddim_timesteps(10, 10) == list(range(9, -1, -1))
    times = ddim_timesteps(1000, 50)
    assert len(times) == 50 and times[0] == 999 and times[-1] == 0 and times == sorted(times, reverse=True)
    with pytest.raises(ValueError, match=r"\[1, 10\]"):
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
    model = ConstantEps(0.3 * torch.randn(1, 2, 4, 4, generator=generator, dtype=torch.float64))
    x0 = torch.rand(3, 2, 4, 4, generator=generator, dtype=torch.float64) * 2 - 1
    noise = ddim_invert(model, schedule, x0, steps=20)
    back = ddim_sample(model, schedule, x0.shape, steps=20, eta=0.0, clip=None, x_T=noise)
    assert torch.allclose(back, x0, atol=1e-9)


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
    x0 = torch.rand(64, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * 2 - 1
    errors = {}
    for steps in [10, 100, 1000]:
        noise = ddim_invert(model, schedule, x0, steps)
        assert torch.equal(noise, ddim_invert(model, schedule, x0, steps))
        back = ddim_sample(model, schedule, x0.shape, steps=steps, eta=0.0, clip=None, x_T=noise)
        errors[steps] = (back - x0).abs().max().item()
    assert errors[1000] < errors[100] < errors[10] and errors[1000] < 0.02   # first order: ~10x per 10x steps


def test_sampling_is_reproducible_and_clips_the_x0_prediction():
    schedule = NoiseSchedule.linear(50)
    model = ExactGaussianDenoiser(schedule, mean=0.0, std=3.0)          # data far outside [-1, 1]
    run = lambda clip: ddpm_sample(model, schedule, (500, 1), clip=clip, generator=torch.Generator().manual_seed(0))
    assert torch.equal(run(1.0), run(1.0))
    assert run(1.0).abs().max() <= 1.0 + 1e-6 < run(None).abs().max()


# --- guidance and training -----------------------------------------------------------------------------


class LabelledLinear(nn.Module):
    """pred = x * (1 + label): conditional and unconditional predictions that differ in a known way."""

    def __init__(self, null=9):
        super().__init__()
        self.null = null
        self.scale = nn.Parameter(torch.ones(1))
        self.seen = []

    def null_labels(self, batch, device=None):
        return torch.full((batch, 1), self.null, device=device)

    def forward(self, x, t, labels):
        self.seen.append(labels.detach().clone())
        factor = torch.where(labels == self.null, 0.0, labels.float() + 1)     # null -> 0
        return self.scale * x * factor.view(-1, *([1] * (x.dim() - 1)))


def test_guidance_interpolates_and_extrapolates_between_the_two_predictions():
    model = LabelledLinear()
    x, t, labels = torch.ones(2, 3), torch.tensor([5, 5]), torch.tensor([[1], [2]])
    null = model.null_labels(2)
    conditional = guided_prediction(model, x, t, labels)
    for w in [0.0, 1.0, 3.0]:
        got = guided_prediction(model, x, t, labels, guidance=w, null_labels=null)
        assert torch.allclose(got, w * conditional)                         # unconditional prediction is 0 here
    with pytest.raises(ValueError, match="null_labels"):
        guided_prediction(model, x, t, labels, guidance=2.0)


def test_train_diffusion_drops_labels_at_the_asked_rate_and_returns_the_ema_model():
    model = LabelledLinear()
    schedule = NoiseSchedule.linear(10)
    batches = lambda step: (torch.randn(64, 3), torch.randint(0, 3, (64, 1)))
    ema_model, history = train_diffusion(model, schedule, batches, steps=20, label_dropout=0.25, ema_decay=0.9,
                                         precision=FP32, progress=False)
    dropped = torch.cat(model.seen).eq(model.null).float().mean().item()
    assert dropped == pytest.approx(0.25, abs=0.05)
    assert len(history.losses) == 20 and ema_model is not model and not ema_model.training
    with pytest.raises(ValueError, match="label_dropout"):
        train_diffusion(model, schedule, batches, steps=1, label_dropout=1.0, progress=False)


def test_ddim_path_records_every_step_from_x_T():
    schedule = NoiseSchedule.cosine(100)
    model = ExactGaussianDenoiser(schedule, mean=0.3, std=0.5)
    x_T = torch.randn(50, 1, generator=torch.Generator().manual_seed(5))
    path = []
    x = ddim_sample(model, schedule, x_T.shape, steps=10, clip=None, x_T=x_T, path=path)
    assert len(path) == 11 and torch.equal(path[0], x_T) and torch.equal(path[-1], x)
    assert torch.equal(x, ddim_sample(model, schedule, x_T.shape, steps=10, clip=None, x_T=x_T))
