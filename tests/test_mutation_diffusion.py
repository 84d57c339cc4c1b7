"""Tests for minigen.diffusion that close the gaps mutation testing found (benchmarks/mutation.py):
the sigmoid schedule with tau != 1 and its defaults, named schedules, the Markov step with a fixed
noise, the toy mixture's ring, density and input checks on an asymmetric mixture, the NULL condition
that guidance builds on the inputs' device, sampler options, and error messages that name the
argument. Objects are built inside the tests: mutmut cannot see calls made at import time."""

import math
import re

import pytest
import torch
from torch import nn
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from minigen.core.runtime import choose_precision
from minigen.diffusion import training
from minigen.diffusion.objectives import (
    call_model,
    diffusion_loss,
    loss_weights,
    target,
    to_eps_and_x0,
)
from minigen.diffusion.sampling import (
    SamplerOptions,
    ddim_sample,
    ddim_sigma,
    ddim_step,
    ddim_timesteps,
    guided_prediction,
    posterior_mean,
    predict_eps_and_x0,
)
from minigen.diffusion.schedule import (
    SCHEDULES,
    NoiseSchedule,
    check_schedule,
    check_timesteps,
    q_sample,
    q_step,
)
from minigen.diffusion.toy2d import GaussianMixture2d, ToyDenoiser, eps_error
from minigen.diffusion.training import train_diffusion
from minigen.models.unet import UNet
from minigen.nn.attention import SelfAttention2d
from minigen.nn.residual import ResidualBlock

pytestmark = pytest.mark.usefixtures("one_thread")


def sigmoid_alpha_bar(steps, start, end, tau):
    """Jabri et al.'s abar(u) ~ sigmoid(end / tau) - sigmoid((start + u (end - start)) / tau), by hand."""

    def sig(z):
        return 1 / (1 + math.exp(-z))

    curve = [
        sig(end / tau) - sig((start + t / steps * (end - start)) / tau)
        for t in range(steps + 1)
    ]
    return torch.tensor(
        [curve[t + 1] / curve[0] for t in range(steps)], dtype=torch.float64
    )


# --- schedules and the forward process ---------------------------------------------------------------------


@pytest.mark.parametrize("start, end, tau", [(-3.0, 3.0, 0.5), (-2.0, 4.0, 2.0)])
def test_sigmoid_schedule_with_a_temperature_follows_its_formula(start, end, tau):
    schedule = NoiseSchedule.sigmoid(40, start, end, tau)
    expected = sigmoid_alpha_bar(40, start, end, tau)
    # the last beta is clipped at 0.999; sigmoid(end / tau) is taken in float32: rtol
    torch.testing.assert_close(
        schedule.alpha_bar[:-1], expected[:-1], rtol=1e-3, atol=0
    )


def test_sigmoid_defaults_are_start_minus_3_end_3_tau_1_over_1000_steps():
    schedule = NoiseSchedule.sigmoid()
    assert len(schedule) == 1000
    expected = sigmoid_alpha_bar(1000, -3.0, 3.0, 1.0)
    torch.testing.assert_close(
        schedule.alpha_bar[:-1], expected[:-1], rtol=1e-3, atol=0
    )


@pytest.mark.parametrize("name", SCHEDULES)
def test_named_schedules_are_the_constructors_with_their_defaults(name):
    named, built = (
        NoiseSchedule.named(name, steps=20),
        getattr(NoiseSchedule, name)(20),
    )
    assert torch.equal(named.betas, built.betas)
    assert torch.equal(
        NoiseSchedule.named(name).betas, getattr(NoiseSchedule, name)().betas
    )
    assert len(NoiseSchedule.named(name)) == 1000


def test_linear_schedule_takes_betas_strictly_inside_0_1():
    assert len(NoiseSchedule.linear(10, start=1e-6, end=0.999)) == 10
    for start, end in [
        (0.0, 0.02),
        (1.0, 0.02),
        (1e-4, 0.0),
        (1e-4, 1.0),
        (1e-4, 1.5),
        (-0.1, 0.02),
    ]:
        with pytest.raises(
            ValueError, match=r"^(start|end) must lie in \(0, 1\), got"
        ):
            NoiseSchedule.linear(10, start=start, end=end)


def test_linear_betas_are_evenly_spaced_in_float64():
    expected = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    assert torch.equal(NoiseSchedule.linear().betas, expected)


def test_q_step_is_the_markov_step_with_the_given_noise():
    schedule = NoiseSchedule.linear(30)
    x_prev, noise = (
        torch.randn(4, 3, dtype=torch.float64),
        torch.randn(4, 3, dtype=torch.float64),
    )
    t = torch.tensor([0, 5, 17, 29])
    alpha, beta = schedule.alphas[t][:, None], schedule.betas[t][:, None]
    expected = (
        alpha.sqrt() * x_prev + beta.sqrt() * noise
    )  # x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) eps
    torch.testing.assert_close(q_step(schedule, x_prev, t, noise), expected)


def test_schedules_of_one_step_flat_starts_and_any_float_betas():
    assert len(NoiseSchedule([0.5])) == 1  # T = 1 is a schedule
    betas = NoiseSchedule(torch.tensor([0.1, 0.2], dtype=torch.float32)).betas
    assert betas.dtype == torch.float64  # everything derived in float64
    # abar flat at first (sigmoid saturated): betas of exactly 0 are clipped to 1e-12
    flat = NoiseSchedule.sigmoid(100, start=-40.0, end=3.0)
    assert flat.betas.min().item() == 1e-12
    assert len(NoiseSchedule.cosine()) == len(NoiseSchedule.linear()) == 1000
    assert (
        len(NoiseSchedule.cosine(s=0.0)) == len(NoiseSchedule.cosine(s=1.0)) == 1000
    )


def test_schedule_repr_names_its_length_and_end_points():
    schedule = NoiseSchedule([0.1, 0.2, 0.3])
    assert (
        repr(schedule) == "NoiseSchedule(T=3, beta 0.1..0.3, abar_T=0.504)"
    )  # 0.9 * 0.8 * 0.7


def test_lookups_take_the_dtype_of_float_data_and_float32_otherwise():
    schedule = NoiseSchedule.linear(10)
    t = torch.tensor([0, 9])
    assert (
        schedule.signal(t, torch.zeros(2, 3, dtype=torch.long)).dtype
        == torch.float32
    )
    assert schedule.signal(t, torch.zeros(2, 3, dtype=torch.float64)).shape == (
        2,
        1,
    )
    assert check_timesteps(torch.zeros(0, dtype=torch.long), 10, batch=0).shape == (
        0,
    )


# --- the 2-D mixture ---------------------------------------------------------------------------------------


def test_ring_puts_equal_weights_on_a_circle():
    ring = GaussianMixture2d.ring(components=5, radius=2.0, std=0.3)
    angles = torch.arange(5, dtype=torch.float64) * 2 * math.pi / 5
    expected = 2.0 * torch.stack([angles.cos(), angles.sin()], dim=1)
    torch.testing.assert_close(ring.means, expected)
    torch.testing.assert_close(
        ring.weights, torch.full((5,), 0.2, dtype=torch.float64)
    )
    assert ring.std == 0.3
    default = GaussianMixture2d.ring()  # 8 components, radius 1, std 0.08
    assert default.means.shape == (8, 2) and default.std == 0.08
    torch.testing.assert_close(
        default.means.norm(dim=1), torch.ones(8, dtype=torch.float64)
    )


def test_log_prob_of_an_asymmetric_mixture_matches_torch_distributions():
    means = torch.tensor([[1.0, 0.5], [-0.3, 2.0]], dtype=torch.float64)
    weights = torch.tensor([0.7, 0.3], dtype=torch.float64)
    mixture = GaussianMixture2d(means, 0.4, weights)
    x = (
        torch.randn(
            64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64
        )
        * 1.5
    )
    for alpha_bar in (1.0, 0.6):
        scale = math.sqrt(alpha_bar * 0.16 + 1 - alpha_bar)
        reference = MixtureSameFamily(
            Categorical(probs=weights),
            Independent(Normal(math.sqrt(alpha_bar) * means, scale), 1),
        )
        torch.testing.assert_close(
            mixture.log_prob(x, alpha_bar), reference.log_prob(x)
        )
    torch.testing.assert_close(
        mixture.log_prob(x), mixture.log_prob(x, 1.0)
    )  # clean by default
    torch.testing.assert_close(mixture.score(x), mixture.score(x, 1.0))


def test_mixture_weights_may_be_zero_and_float32_rounded():
    means = torch.zeros(3, 2)
    GaussianMixture2d(
        means, 0.1, torch.tensor([0.5, 0.5, 0.0])
    )  # a zero weight is allowed
    tenths = torch.full((10,), 0.1, dtype=torch.float32)  # sums to 1 + 1.2e-7
    assert (
        abs(tenths.sum().item() - 1.0) > 1e-8
    )  # not 1 within math.isclose's default 1e-9
    GaussianMixture2d(torch.zeros(10, 2), 0.1, tenths)


def test_mixture_samples_are_reproducible_with_a_generator():
    ring = GaussianMixture2d.ring(components=3, std=0.2)
    first = ring.sample(50, torch.Generator().manual_seed(4))
    torch.manual_seed(0)  # the global generator must not matter
    assert torch.equal(first, ring.sample(50, torch.Generator().manual_seed(4)))
    assert not torch.equal(first, ring.sample(50, torch.Generator().manual_seed(5)))
    assert first.dtype == torch.float32


def test_toy_denoiser_has_layers_hidden_layers_and_runs_in_float64():
    def count(
        hidden, layers, time_dim
    ):  # Linear(2 + time_dim, h), (layers - 1) x Linear(h, h), Linear(h, 2)
        return (
            (2 + time_dim + 1) * hidden
            + (layers - 1) * (hidden + 1) * hidden
            + (hidden + 1) * 2
        )

    model = ToyDenoiser(hidden=16, layers=3, time_dim=4)
    assert sum(p.numel() for p in model.parameters()) == count(16, 3, 4)
    assert sum(p.numel() for p in ToyDenoiser().parameters()) == count(128, 3, 32)
    x, t = torch.randn(5, 2, dtype=torch.float64), torch.arange(5)
    assert model.double()(x, t).dtype == torch.float64


def tiny_batches(step):
    return torch.randn(4, 2), None


def test_train_diffusion_hands_its_options_to_the_loop(monkeypatch):
    seen = {}

    def spy(model, loss_fn, **options):
        seen.clear()
        seen.update(options)
        return training.History()

    monkeypatch.setattr(training, "train", spy)
    fp32 = choose_precision("cpu", dtype="fp32")
    train_diffusion(ToyDenoiser(8, 1, 4), NoiseSchedule.linear(10), tiny_batches, steps=7, lr=0.01,
                    grad_clip=0.5, precision=fp32, progress=False, desc="toy", seed=5)  # fmt: skip
    assert scheduled_lrs(seen, 7) == pytest.approx(
        [0.005 * (1 + math.cos(math.pi * k / 7)) for k in range(7)]
    )  # a cosine decay over the whole run, no warm-up
    assert seen["ema"].decay == 0.999 and not seen["ema"].warmup
    assert seen["optimizer"].defaults["lr"] == 0.01
    assert seen["optimizer"].defaults["weight_decay"] == 0.0  # AdamW without decay
    assert (
        seen["grad_clip"] == 0.5
        and seen["precision"] is fp32
        and seen["steps"] == 7
    )
    assert seen["progress"] is False and seen["desc"] == "toy"
    assert torch.initial_seed() == 5  # seeded before training
    train_diffusion(
        ToyDenoiser(8, 1, 4), NoiseSchedule.linear(10), tiny_batches, steps=3
    )
    assert seen["optimizer"].defaults["lr"] == 1e-3 and seen["grad_clip"] == 1.0
    assert seen["progress"] is True and seen["desc"] == "diffusion"
    assert torch.initial_seed() == 0
    train_diffusion(ToyDenoiser(8, 1, 4), NoiseSchedule.linear(10), tiny_batches, steps=6,
                    lr=0.6, warmup_steps=2, ema_decay=0.9, ema_warmup=True)  # fmt: skip
    assert scheduled_lrs(seen, 2) == pytest.approx([0.3, 0.6])  # the warm-up
    assert seen["ema"].decay == 0.9 and seen["ema"].warmup


def scheduled_lrs(options: dict, steps: int) -> list[float]:
    """The learning rates the spied scheduler sets over its first steps."""
    optimizer, scheduler = options["optimizer"], options["scheduler"]
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


class Unguidable(nn.Module):
    """A conditional model without a NULL condition."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x, t, cond):
        return self.scale * x + cond


def test_conditions_need_no_null_when_none_is_dropped():
    def batches(step):
        return torch.randn(4, 1), torch.ones(4, 1)

    _, history = train_diffusion(Unguidable(), NoiseSchedule.linear(10), batches, steps=1,
                                 cond_dropout=0.0, precision=choose_precision("cpu", dtype="fp32"),
                                 progress=False)  # fmt: skip
    assert len(history.losses) == 1


@pytest.mark.parametrize(
    "option, message",
    [
        ({"min_snr_gamma": -1.0}, "min_snr_gamma must lie in (0, inf), got -1"),
        ({"ema_decay": 1.5}, "ema_decay must lie in [0, 1), got 1.5"),
        ({"grad_clip": 0.0}, "grad_clip must lie in (0, inf), got 0"),
        ({"cond_dropout": -0.1}, "cond_dropout must lie in [0, 1), got -0.1"),
    ],
)
def test_train_diffusion_rejects_bad_options_before_seeding_anything(
    option, message
):
    model, schedule = ToyDenoiser(8, 1, 4), NoiseSchedule.linear(10)
    state = torch.get_rng_state()
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        train_diffusion(
            model,
            schedule,
            tiny_batches,
            steps=2,
            progress=False,
            **option,
        )
    assert torch.equal(torch.get_rng_state(), state)  # nothing was seeded or drawn


def test_diffusion_loss_takes_a_batch_of_one_and_checks_before_drawing():
    model = ToyDenoiser(8, 1, 4)
    loss = diffusion_loss(model, NoiseSchedule.linear(10), torch.randn(1, 2))
    assert (
        loss.shape == () and loss > 0 and loss.dtype == torch.float32
    )  # weights cast
    generator = torch.Generator().manual_seed(0)
    state = generator.get_state()
    with pytest.raises(
        ValueError, match=re.escape("min_snr_gamma must lie in (0, inf), got -1")
    ):
        diffusion_loss(
            model,
            NoiseSchedule.linear(10),
            torch.randn(2, 2),
            min_snr_gamma=-1.0,
            generator=generator,
        )
    assert torch.equal(generator.get_state(), state)  # no timestep or noise drawn
    with pytest.raises(TypeError, match="^x0 must be a floating-point tensor"):
        diffusion_loss(
            model,
            NoiseSchedule.linear(10),
            torch.ones(2, 2, dtype=torch.long),
            generator=generator,
        )
    assert torch.equal(generator.get_state(), state)
    assert (
        loss_weights(NoiseSchedule.linear(10), "v", torch.tensor([3])).dtype
        == torch.float64
    )


# --- guidance and sampler options -------------------------------------------------------------------------


class LabelEcho(nn.Module):
    """A denoiser that returns x_t + t + its label: just enough to check the bookkeeping."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(
            torch.ones(())
        )  # 1: something for an optimizer to hold

    def forward(self, x, t, cond):
        return self.scale * x + t[:, None].to(x.dtype) + cond.to(x.dtype)

    def null_cond(self, batch, device):
        return torch.zeros(batch, 1, device=device)


def test_guidance_builds_the_null_condition_on_the_device_of_x_t():
    meta = {"device": "meta"}
    out = guided_prediction(
        LabelEcho(),
        torch.zeros(3, 1, **meta),
        torch.zeros(3, **meta),
        torch.ones(3, 1, **meta),
        2.0,
    )
    assert out.device.type == "meta" and out.shape == (3, 1)


def test_guidance_extrapolates_from_the_null_to_the_conditional_prediction():
    x, t, cond = (
        torch.randn(3, 1, dtype=torch.float64),
        torch.tensor([1, 2, 3]),
        torch.ones(3, 1),
    )
    unconditional = x + t[:, None]  # LabelEcho with the NULL label 0
    conditional = unconditional + cond
    for w in (0.0, 1.0, 2.5):  # pred(null) + w (pred(cond) - pred(null))
        expected = unconditional + w * (conditional - unconditional)
        torch.testing.assert_close(
            guided_prediction(LabelEcho(), x, t, cond, w), expected.float()
        )
    with torch.no_grad():
        torch.testing.assert_close(call_model(LabelEcho(), x, t, cond), conditional)
    options = SamplerOptions(cond=cond, guidance=2.0, clip=None)
    eps, x0 = predict_eps_and_x0(
        LabelEcho(), NoiseSchedule.linear(5), x, t, options
    )
    assert (
        eps.dtype == x0.dtype == torch.float64
    )  # the float32 guided prediction is cast back to x_t's


def test_guidance_without_a_null_condition_names_the_model():
    class Plain(nn.Module):
        def forward(self, x, t, cond=None):
            return x

    message = (
        "classifier-free guidance needs the model's NULL condition, model.null_cond(batch, device); "
        "Plain has none"
    )
    with pytest.raises(TypeError, match="^" + re.escape(message)):
        guided_prediction(
            Plain(), torch.zeros(2, 1), torch.zeros(2), torch.ones(2, 1), 1.5
        )


def test_sampler_options_accept_a_guidance_of_zero_and_reject_a_negative_one():
    assert SamplerOptions(cond=torch.ones(2, 1), guidance=0.0).guidance == 0.0
    with pytest.raises(
        ValueError, match=re.escape("guidance must lie in [0, inf), got -0.5")
    ):
        SamplerOptions(cond=torch.ones(2, 1), guidance=-0.5)


# --- the U-Net's documented architecture --------------------------------------------------------------------


def test_unet_attends_at_the_asked_levels_with_its_heads_and_dropout_everywhere():
    model = UNet(base_channels=8, channel_mults=(1, 2), blocks_per_level=2, attention_levels=(1,),
                 dropout=0.25, image_size=8, heads=2)  # fmt: skip
    for level, blocks in enumerate(model.down_levels):
        assert len(blocks) == 2  # blocks_per_level
        assert all(
            isinstance(b.attention, SelfAttention2d) == (level == 1) for b in blocks
        )
    for level, blocks in zip((1, 0), model.up_levels):  # coarsest first
        assert len(blocks) == 3  # blocks_per_level + 1
        assert all(
            isinstance(b.attention, SelfAttention2d) == (level == 1) for b in blocks
        )
    attentions = [m for m in model.modules() if isinstance(m, SelfAttention2d)]
    assert len(attentions) == 2 + 3 + 1 and all(
        a.heads == 2 for a in attentions
    )  # + the middle
    residuals = [m for m in model.modules() if isinstance(m, ResidualBlock)]
    assert len(residuals) == 2 * 2 + 2 * 3 + 2
    assert all(
        block.out_layers[1].p == 0.25 and block.emb_dim == 32 for block in residuals
    )
    assert (
        model.time_embedding.mlp[-1].out_features == 32
    )  # emb_dim = 4 * base_channels
    assert [type(layer) for layer in model.out[0]] == [
        nn.GroupNorm,
        nn.SiLU,
    ]  # norm_act, then conv


def test_unet_defaults_and_size_caps():
    model = (
        UNet()
    )  # base 32, mults (1, 2, 2), one block per level, attention at level 2
    assert [len(blocks) for blocks in model.down_levels] == [1, 1, 1]
    assert model.stem.out_channels == 32
    attends = [
        isinstance(blocks[0].attention, SelfAttention2d)
        for blocks in model.down_levels
    ]
    assert attends == [False, False, True]
    # the largest allowed: 8 levels, a multiplier of 64
    UNet(base_channels=2, channel_mults=(1,) * 8, attention_levels=(), image_size=128, heads=1)  # fmt: skip
    UNet(
        base_channels=2,
        channel_mults=(64,),
        attention_levels=(),
        image_size=4,
        heads=1,
    )
    with pytest.raises(
        ValueError, match=re.escape("blocks_per_level must be an int <= 32, got 33")
    ):
        UNet(blocks_per_level=33)
    with pytest.raises(
        ValueError, match=re.escape("cond_dim must be an int <= 65,536, got 65,537")
    ):
        UNet(cond_dim=65_537)


# --- error messages name the argument ----------------------------------------------------------------------

MEANS, WEIGHTS = torch.zeros(2, 2), torch.tensor([0.5, 0.5])

CASES = [
    (
        lambda: SamplerOptions(cond=[1, 2]),
        TypeError,
        "cond must be Tensor or TokenStates, got list [1, 2]",
    ),
    (lambda: SamplerOptions(guidance="2"), TypeError, "guidance must be a number"),
    (
        lambda: SamplerOptions(clip=0.0),
        ValueError,
        "clip must lie in (0, inf), got 0",
    ),
    (
        lambda: SamplerOptions(guidance=2.0),
        ValueError,
        "guidance needs a condition to guide towards: pass cond= as well",
    ),
    (
        lambda: q_step(
            NoiseSchedule.linear(5),
            torch.zeros(2, dtype=torch.long),
            torch.tensor([0]),
            torch.zeros(2),
        ),
        TypeError,
        "x_prev must be a floating-point tensor",
    ),
    (
        lambda: q_step(
            NoiseSchedule.linear(5),
            torch.zeros(2),
            torch.tensor([0]),
            torch.zeros(2, dtype=torch.long),
        ),
        TypeError,
        "noise must be a floating-point tensor",
    ),
    (
        lambda: q_step(
            NoiseSchedule.linear(5),
            torch.zeros(2),
            torch.tensor([0]),
            torch.zeros(3),
        ),
        ValueError,
        "x_prev and noise must have the same shape, got (2,) and (3,)",
    ),
    (lambda: NoiseSchedule.named("quadratic"), ValueError, "name must be one of"),
    (
        lambda: NoiseSchedule.sigmoid(steps=0),
        ValueError,
        "steps must be an int >= 1",
    ),
    (lambda: NoiseSchedule.sigmoid(start="a"), TypeError, "start must be a number"),
    (lambda: NoiseSchedule.sigmoid(end="a"), TypeError, "end must be a number"),
    (
        lambda: NoiseSchedule.sigmoid(tau=0.0),
        ValueError,
        "tau must lie in (0, inf), got 0",
    ),
    (
        lambda: GaussianMixture2d(MEANS.long(), 0.1, WEIGHTS),
        TypeError,
        "means must be a floating-point tensor",
    ),
    (
        lambda: GaussianMixture2d(MEANS + math.nan, 0.1, WEIGHTS),
        ValueError,
        "means holds 4 NaN or infinite values",
    ),
    (
        lambda: GaussianMixture2d(MEANS, 0.1, WEIGHTS.long()),
        TypeError,
        "weights must be a floating-point tensor",
    ),
    (
        lambda: GaussianMixture2d(MEANS, 0.1, torch.tensor([math.inf, 0.5])),
        ValueError,
        "weights holds 1 NaN or infinite values",
    ),
    (
        lambda: GaussianMixture2d(MEANS, 0.0, WEIGHTS),
        ValueError,
        "std must lie in (0, inf), got 0",
    ),
    (
        lambda: GaussianMixture2d(MEANS, 0.1, torch.tensor([1.0])),
        ValueError,
        "weights must be K non-negative numbers, one per mean",
    ),
    (
        lambda: GaussianMixture2d(MEANS, 0.1, torch.tensor([1.5, -0.5])),
        ValueError,
        "weights must be K non-negative numbers, one per mean",
    ),
    (
        lambda: GaussianMixture2d(MEANS, 0.1, torch.tensor([0.5, 0.6])),
        ValueError,
        "weights must sum to 1, got 1.1",
    ),
    (
        lambda: GaussianMixture2d.ring(components=0),
        ValueError,
        "components must be an int >= 1",
    ),
    (
        lambda: GaussianMixture2d.ring(radius=-1.0),
        ValueError,
        "radius must lie in [0, inf), got -1",
    ),
    (
        lambda: GaussianMixture2d.ring(radius="1"),
        TypeError,
        "radius must be a number",
    ),
    (
        lambda: GaussianMixture2d.ring().log_prob(torch.zeros(3, 3)),
        ValueError,
        "points must be (N, 2), got shape (3, 3)",
    ),
    (
        lambda: GaussianMixture2d.ring().log_prob(torch.zeros(3)),
        ValueError,
        "points must be (N, 2), got shape (3,)",
    ),
    (
        lambda: GaussianMixture2d.ring().log_prob(
            torch.zeros(3, 2, dtype=torch.long)
        ),
        TypeError,
        "x must be a floating-point tensor, got torch.int64",
    ),
    (
        lambda: GaussianMixture2d.ring().score(torch.zeros(3, 2), 0.0),
        ValueError,
        "alpha_bar must lie in (0, 1]",
    ),
    (
        lambda: GaussianMixture2d.ring().score(torch.zeros(3, 2), 1.5),
        ValueError,
        "alpha_bar must lie in (0, 1]",
    ),
    (
        lambda: GaussianMixture2d.ring().true_eps(torch.zeros(3, 2), "0.5"),
        TypeError,
        "alpha_bar must be a number, got str '0.5'",
    ),
    (
        lambda: eps_error(
            "model", GaussianMixture2d.ring(), NoiseSchedule.linear(5), [0]
        ),
        TypeError,
        "model must be an nn.Module",
    ),
    (
        lambda: eps_error(
            ToyDenoiser(8, 1, 4), "ring", NoiseSchedule.linear(5), [0]
        ),
        TypeError,
        "mixture must be GaussianMixture2d, got str 'ring'",
    ),
    (
        lambda: eps_error(
            ToyDenoiser(8, 1, 4),
            GaussianMixture2d.ring(),
            NoiseSchedule.linear(5),
            3,
        ),
        TypeError,
        "timesteps must be a sequence of ints",
    ),
    (
        lambda: eps_error(
            ToyDenoiser(8, 1, 4),
            GaussianMixture2d.ring(),
            NoiseSchedule.linear(5),
            [-1],
        ),
        ValueError,
        "every entry of timesteps must be an int >= 0, got -1",
    ),
    (
        lambda: eps_error(
            ToyDenoiser(8, 1, 4),
            GaussianMixture2d.ring(),
            NoiseSchedule.linear(5),
            [5],
        ),
        ValueError,
        "every timestep must be an int <= 4, got 5",
    ),
    (
        lambda: eps_error(
            ToyDenoiser(8, 1, 4),
            GaussianMixture2d.ring(),
            NoiseSchedule.linear(5),
            [0],
            n=0,
        ),
        ValueError,
        "n must be an int >= 1",
    ),
    (
        lambda: eps_error(
            ToyDenoiser(8, 1, 4),
            GaussianMixture2d.ring(),
            NoiseSchedule.linear(5),
            [0],
            generator=0,
        ),
        TypeError,
        "generator must be",
    ),
    (
        lambda: GaussianMixture2d.ring().sample(0),
        ValueError,
        "n must be an int >= 1, got 0",
    ),
    (
        lambda: GaussianMixture2d.ring().sample(3, generator=1),
        TypeError,
        "generator must be Generator, got int 1",
    ),
    (
        lambda: ToyDenoiser(hidden=65_537, layers=1, time_dim=2),
        ValueError,
        "hidden must be an int <= 65,536, got 65,537",
    ),
    (
        lambda: ToyDenoiser(hidden=1, layers=65, time_dim=2),
        ValueError,
        "layers must be an int <= 64, got 65",
    ),
    (
        lambda: ToyDenoiser(hidden=1, layers=1, time_dim=65_538),
        ValueError,
        "time_dim must be an int <= 65,536, got 65,538",
    ),
    (
        lambda: ToyDenoiser(hidden=1, layers=1, time_dim=3),
        ValueError,
        "time_dim must be even, got 3",
    ),
    (
        lambda: ToyDenoiser(8, 1, 4)(
            torch.zeros(3, 2, dtype=torch.long), torch.zeros(3)
        ),
        TypeError,
        "x must be a floating-point tensor",
    ),
    (
        lambda: ToyDenoiser(8, 1, 4)([[0.0, 0.0]], torch.zeros(1)),
        TypeError,
        "x must be a torch.Tensor (B, 2)",
    ),
    (
        lambda: ToyDenoiser(8, 1, 4)(torch.zeros(3, 2), torch.zeros(3, 1)),
        ValueError,
        "t must be a 1-d tensor (B,) of timesteps",
    ),
    (
        lambda: ToyDenoiser(8, 1, 4)(torch.zeros(3, 2), torch.zeros(2)),
        ValueError,
        "t must hold one timestep per point: 3, got 2",
    ),
    (
        lambda: train_diffusion(
            ToyDenoiser(8, 1, 4).float,
            NoiseSchedule.linear(5),
            tiny_batches,
            steps=1,
            progress=False,
        ),
        TypeError,
        "model must be an nn.Module",
    ),
    (
        lambda: train_diffusion(
            ToyDenoiser(8, 1, 4),
            NoiseSchedule.linear(5),
            [tiny_batches(0)],
            steps=1,
            progress=False,
        ),
        TypeError,
        "batches must be a function of the step returning (x0, cond), got list",
    ),
    (
        lambda: diffusion_loss(
            ToyDenoiser(8, 1, 4), NoiseSchedule.linear(5), torch.zeros(3)
        ),
        ValueError,
        "x0 must be a non-empty batch (B, ...), got (3,)",
    ),
    (
        lambda: diffusion_loss(
            ToyDenoiser(8, 1, 4), NoiseSchedule.linear(5), torch.zeros(0, 2)
        ),
        ValueError,
        "x0 must be a non-empty batch (B, ...), got (0, 2)",
    ),
    (
        lambda: diffusion_loss(
            ToyDenoiser(8, 1, 4),
            NoiseSchedule.linear(5),
            torch.zeros(2, 2, dtype=torch.long),
        ),
        TypeError,
        "x0 must be a floating-point tensor",
    ),
    (
        lambda: diffusion_loss(
            ToyDenoiser(8, 1, 4), NoiseSchedule.linear(5), [[0.0, 0.0]]
        ),
        TypeError,
        "x0 must be a torch.Tensor (B, ...)",
    ),
    (
        lambda: diffusion_loss(
            ToyDenoiser(8, 1, 4),
            NoiseSchedule.linear(5),
            torch.zeros(2, 2),
            cond=torch.zeros(3, 1),
        ),
        ValueError,
        "cond must hold one condition per sample: 2, got 3",
    ),
    (
        lambda: target(
            NoiseSchedule.linear(5),
            "eps",
            torch.zeros(2, dtype=torch.long),
            torch.zeros(2),
            torch.tensor([0, 1]),
        ),
        TypeError,
        "x0 must be a floating-point tensor",
    ),
    (
        lambda: target(
            NoiseSchedule.linear(5),
            "eps",
            torch.zeros(2),
            torch.zeros(2, dtype=torch.long),
            torch.tensor([0, 1]),
        ),
        TypeError,
        "noise must be a floating-point tensor",
    ),
    (
        lambda: target(
            NoiseSchedule.linear(5),
            "eps",
            torch.zeros(2),
            torch.zeros(3),
            torch.tensor([0, 1]),
        ),
        ValueError,
        "x0 and noise must have the same shape, got (2,) and (3,)",
    ),
    (
        lambda: loss_weights(
            NoiseSchedule.linear(5), "eps", torch.tensor([0]), min_snr_gamma="5"
        ),
        TypeError,
        "min_snr_gamma must be a number",
    ),
    (
        lambda: ddim_sigma(NoiseSchedule.linear(5), 5, 4, 0.0),
        ValueError,
        "t must be an int <= 4, got 5",
    ),
    (
        lambda: ddim_sigma(NoiseSchedule.linear(5), 3, -2, 0.0),
        ValueError,
        "t_prev must be an int >= -1, got -2",
    ),
    (
        lambda: ddim_sigma(NoiseSchedule.linear(5), 3, 3, 0.0),
        ValueError,
        "t_prev must be an int <= 2, got 3",
    ),
    (
        lambda: ddim_sigma(NoiseSchedule.linear(5), 3, 1, 1.5),
        ValueError,
        "eta must lie in [0, 1], got 1.5",
    ),
    (lambda: ddim_timesteps("10", 3), TypeError, "total must be an int"),
    (
        lambda: ddim_step(
            NoiseSchedule.linear(5),
            torch.zeros(2, dtype=torch.long),
            torch.zeros(2),
            torch.zeros(2),
            3,
            1,
            0.0,
        ),
        TypeError,
        "x_t must be a floating-point tensor",
    ),
    (
        lambda: ddim_step(
            NoiseSchedule.linear(5),
            torch.zeros(2),
            torch.zeros(2, dtype=torch.long),
            torch.zeros(2),
            3,
            1,
            0.0,
        ),
        TypeError,
        "eps must be a floating-point tensor",
    ),
    (
        lambda: ddim_step(
            NoiseSchedule.linear(5),
            torch.zeros(2),
            torch.zeros(2),
            torch.zeros(3),
            3,
            1,
            0.0,
        ),
        ValueError,
        "x_t and x0 must have the same shape, got (2,) and (3,)",
    ),
    (
        lambda: ddim_step(
            NoiseSchedule.linear(5),
            torch.zeros(2),
            torch.zeros(3),
            torch.zeros(2),
            3,
            1,
            0.0,
        ),
        ValueError,
        "x_t and eps must have the same shape, got (2,) and (3,)",
    ),
    (
        lambda: ddim_step(
            NoiseSchedule.linear(5),
            torch.zeros(2),
            torch.zeros(2),
            torch.zeros(2),
            3,
            1,
            1.0,
            torch.zeros(2, dtype=torch.long),
        ),
        TypeError,
        "noise must be a floating-point tensor",
    ),
    (
        lambda: posterior_mean(
            NoiseSchedule.linear(5),
            torch.zeros(2, dtype=torch.long),
            torch.zeros(2),
            torch.tensor([1, 2]),
        ),
        TypeError,
        "x0 must be a floating-point tensor",
    ),
    (
        lambda: posterior_mean(
            NoiseSchedule.linear(5),
            torch.zeros(2),
            torch.zeros(2, dtype=torch.long),
            torch.tensor([1, 2]),
        ),
        TypeError,
        "x_t must be a floating-point tensor",
    ),
    (
        lambda: posterior_mean(
            NoiseSchedule.linear(5),
            torch.zeros(2),
            torch.zeros(3),
            torch.tensor([1, 2]),
        ),
        ValueError,
        "x0 and x_t must have the same shape, got (2,) and (3,)",
    ),
    (
        lambda: ddim_sample(
            ToyDenoiser(8, 1, 4), NoiseSchedule.linear(5), (2, 2), 2, generator=3
        ),
        TypeError,
        "generator must be Generator, got int 3",
    ),
    (
        lambda: ddim_sample(ToyDenoiser(8, 1, 4), NoiseSchedule.linear(5), 2, 2),
        TypeError,
        "shape must be a sequence of ints",
    ),
    (
        lambda: NoiseSchedule("linear"),
        TypeError,
        "betas must be a tensor (T,) of betas, got str 'linear'",
    ),
    (
        lambda: NoiseSchedule(torch.full((2, 2), 0.1)),
        ValueError,
        "betas must be a non-empty vector (T,), got shape (2, 2)",
    ),
    (
        lambda: NoiseSchedule([]),
        ValueError,
        "betas must be a non-empty vector (T,), got shape (0,)",
    ),
    (
        lambda: NoiseSchedule([0.0, 0.1]),
        ValueError,
        "every beta must lie in (0, 1), got values from 0 to 0.1",
    ),
    (
        lambda: NoiseSchedule.cosine(s=-0.1),
        ValueError,
        "s must lie in [0, 1], got -0.1",
    ),
    (
        lambda: NoiseSchedule.cosine(s=1.5),
        ValueError,
        "s must lie in [0, 1], got 1.5",
    ),
    (
        lambda: check_schedule("cosine"),
        TypeError,
        'schedule must be a NoiseSchedule (e.g. NoiseSchedule.named("cosine")), got str',
    ),
    (
        lambda: check_timesteps(torch.tensor([0]), 10, batch=-1),
        ValueError,
        "batch must be an int >= 0, got -1",
    ),
    (
        lambda: check_timesteps(torch.tensor([True]), 10),
        TypeError,
        "t must hold integer timesteps, got torch.bool",
    ),
    (
        lambda: check_timesteps(torch.tensor([1, 2]), 10, batch=3),
        ValueError,
        "t has 2 timesteps for a batch of 3",
    ),
    (
        lambda: NoiseSchedule.linear(5).at(
            torch.zeros(5, 1), torch.tensor([0]), torch.zeros(1)
        ),
        ValueError,
        "values must be a 1-d tensor (5,), one per step",
    ),
    (
        lambda: NoiseSchedule.linear(5).at(torch.zeros(5), torch.tensor([0]), 1.0),
        TypeError,
        "like must be a torch.Tensor (B, ...)",
    ),
    (
        lambda: NoiseSchedule.linear(5).at(
            torch.zeros(5), torch.tensor([0]), torch.tensor(1.0)
        ),
        ValueError,
        "like must be a batch (B, ...), got a 0-d tensor",
    ),
    (
        lambda: NoiseSchedule.linear(5).at(
            torch.zeros(5), torch.tensor([0, 1, 2]), torch.zeros(2)
        ),
        ValueError,
        "t has 3 timesteps for a batch of 2",
    ),
    (
        lambda: q_sample(
            NoiseSchedule.linear(5),
            torch.zeros(2, dtype=torch.long),
            torch.tensor([0, 1]),
            torch.zeros(2),
        ),
        TypeError,
        "x0 must be a floating-point tensor",
    ),
    (
        lambda: q_sample(
            NoiseSchedule.linear(5),
            torch.zeros(2),
            torch.tensor([0, 1]),
            torch.zeros(2, dtype=torch.long),
        ),
        TypeError,
        "noise must be a floating-point tensor",
    ),
    (
        lambda: q_sample(
            NoiseSchedule.linear(5),
            torch.zeros(2),
            torch.tensor([0, 1]),
            torch.zeros(3),
        ),
        ValueError,
        "x0 and noise must have the same shape, got (2,) and (3,)",
    ),
    (
        lambda: to_eps_and_x0(
            NoiseSchedule.linear(5),
            "eps",
            torch.zeros(2, dtype=torch.long),
            torch.tensor([0, 1]),
            torch.zeros(2),
        ),
        TypeError,
        "x_t must be a floating-point tensor",
    ),
    (
        lambda: to_eps_and_x0(
            NoiseSchedule.linear(5),
            "eps",
            torch.zeros(2),
            torch.tensor([0, 1]),
            torch.zeros(2, dtype=torch.long),
        ),
        TypeError,
        "prediction must be a floating-point tensor",
    ),
    (
        lambda: to_eps_and_x0(
            NoiseSchedule.linear(5),
            "eps",
            torch.zeros(2),
            torch.tensor([0, 1]),
            torch.zeros(3),
        ),
        ValueError,
        "x_t and prediction must have the same shape, got (2,) and (3,)",
    ),
    (
        lambda: diffusion_loss(
            ToyDenoiser(8, 1, 4),
            NoiseSchedule.linear(5),
            torch.zeros(2, 2),
            cond=torch.tensor(1.0),
        ),
        ValueError,
        "cond must hold one condition per sample: 2, got 0",
    ),
    (
        lambda: diffusion_loss(
            ToyDenoiser(8, 1, 4),
            NoiseSchedule.linear(5),
            torch.zeros(2, 2),
            cond=[1, 2],
        ),
        TypeError,
        "cond must be a tensor or TokenStates (or None), got list",
    ),
    (
        lambda: guided_prediction(
            LabelEcho(), torch.zeros(2, 1), torch.zeros(2), None, 1.5
        ),
        ValueError,
        "guidance needs a condition to guide towards, got cond=None",
    ),
    (
        lambda: ddim_sample(
            LabelEcho(),
            NoiseSchedule.linear(5),
            (2, 1),
            2,
            options=SamplerOptions(cond=torch.zeros(3, 1)),
        ),
        ValueError,
        "options.cond must hold one condition per sample: 2, got 3",
    ),
    (
        lambda: ddim_sample(
            ToyDenoiser(8, 1, 4),
            NoiseSchedule.linear(5),
            (2, 2),
            2,
            x_T=torch.zeros(2, 2, dtype=torch.long),
        ),
        TypeError,
        "x_T must be a floating-point tensor",
    ),
    (
        lambda: ddim_sample(
            ToyDenoiser(8, 1, 4), NoiseSchedule.linear(5), (2, 2), 2, x_T=[[0.0]]
        ),
        TypeError,
        "x_T must be a torch.Tensor",
    ),
    (
        lambda: train_diffusion(
            ToyDenoiser(8, 1, 4),
            NoiseSchedule.linear(5),
            lambda step: torch.zeros(4, 3),
            steps=1,
            progress=False,
        ),
        TypeError,
        "batches(step) must return (x0, cond), cond None if unconditional; at step 0 it returned a torch.float32 tensor of shape (4, 3)",
    ),
    (
        lambda: train_diffusion(
            ToyDenoiser(8, 1, 4),
            NoiseSchedule.linear(5),
            lambda step: [torch.zeros(4, 2), None],
            steps=1,
            progress=False,
        ),
        TypeError,
        "batches(step) must return (x0, cond), cond None if unconditional; at step 0 it returned list",
    ),
    (
        lambda: train_diffusion(
            ToyDenoiser(8, 1, 4),
            NoiseSchedule.linear(5),
            lambda step: (torch.zeros(4, 2, dtype=torch.long), None),
            steps=1,
            progress=False,
        ),
        TypeError,
        "the x0 of batches(step) must be a floating-point tensor",
    ),
    (
        lambda: train_diffusion(
            ToyDenoiser(8, 1, 4),
            NoiseSchedule.linear(5),
            lambda step: ([[0.0]], None),
            steps=1,
            progress=False,
        ),
        TypeError,
        "the x0 of batches(step) must be a torch.Tensor (B, ...)",
    ),
    (
        lambda: train_diffusion(
            LabelEcho(),
            NoiseSchedule.linear(5),
            lambda step: (torch.zeros(4, 1), torch.zeros(3, 1)),
            steps=1,
            progress=False,
        ),
        ValueError,
        "the cond of batches(step) must hold one condition per sample: 4, got 3",
    ),
    (
        lambda: train_diffusion(
            LabelEcho(),
            NoiseSchedule.linear(5),
            lambda step: (torch.tensor(1.0), torch.zeros(3, 1)),
            steps=1,
            progress=False,
        ),
        ValueError,
        "the cond of batches(step) must hold one condition per sample: 0, got 3",
    ),
    (
        lambda: check_timesteps(torch.zeros(2, 1, dtype=torch.long), 10),
        ValueError,
        "t must be a 1-d tensor (B,) of integer timesteps, got shape (2, 1)",
    ),
    (
        lambda: GaussianMixture2d.ring().score([[0.0, 0.0]], 0.5),
        TypeError,
        "x must be a torch.Tensor (N, 2), got list",
    ),
    (
        lambda: GaussianMixture2d.ring().score(
            torch.zeros(3, 2), torch.tensor([0.5, 0.0, 0.5])
        ),
        ValueError,
        "alpha_bar must lie in (0, 1]",
    ),
    (
        lambda: GaussianMixture2d.ring().score(
            torch.zeros(3, 2), torch.tensor([0.5, 1.5, 0.5])
        ),
        ValueError,
        "alpha_bar must lie in (0, 1]",
    ),
    (
        lambda: train_diffusion(
            ToyDenoiser(8, 1, 4),
            NoiseSchedule.linear(5),
            tiny_batches,
            steps=1,
            desc=3,
            progress=False,
        ),
        TypeError,
        "desc must be str, got int 3",
    ),
    (
        lambda: train_diffusion(
            ToyDenoiser(8, 1, 4),
            NoiseSchedule.linear(5),
            tiny_batches,
            steps=1,
            cond_dropout=0.1,
            progress=False,
        ),
        TypeError,
        "cond_dropout needs the model's NULL condition, model.null_cond(batch, device); ToyDenoiser has none",
    ),
    (
        lambda: UNet(
            base_channels=8, channel_mults=(1,), attention_levels=(), image_size=4
        )(torch.zeros(2, 3, 4, 4, dtype=torch.long), torch.zeros(2)),
        TypeError,
        "x must be a floating-point tensor",
    ),
    (
        lambda: UNet(
            base_channels=8, channel_mults=(1,), attention_levels=(), image_size=4
        )([[0.0]], torch.zeros(2)),
        TypeError,
        "x must be a torch.Tensor (B, 3, 4, 4)",
    ),
    (
        lambda: UNet(
            base_channels=8, channel_mults=(1,), attention_levels=(), image_size=4
        )(torch.zeros(2, 3, 4, 4), "5"),
        TypeError,
        "t must be a tensor of timesteps (B,) or a number, got str '5'",
    ),
    (
        lambda: UNet(
            base_channels=8, channel_mults=(1,), attention_levels=(), image_size=4
        )(torch.zeros(2, 3, 4, 4), math.nan),
        ValueError,
        "t must be a finite number, got nan",
    ),
    (
        lambda: UNet(
            base_channels=8, channel_mults=(1,), attention_levels=(), image_size=4
        )(torch.zeros(2, 3, 4, 4), torch.tensor([0.0, math.inf])),
        ValueError,
        "t holds 1 NaN or infinite values",
    ),
    (
        lambda: UNet(
            base_channels=8, channel_mults=(1,), attention_levels=(), image_size=4
        )(torch.zeros(2, 3, 4, 4), torch.tensor([True, False])),
        TypeError,
        "t must hold integer or real timesteps, got torch.bool",
    ),
    (
        lambda: UNet(
            base_channels=8, channel_mults=(1,), attention_levels=(), image_size=4
        )(torch.zeros(2, 3, 4, 4), torch.zeros(2), torch.zeros(2, 1)),
        ValueError,
        "this UNet is unconditional (class_counts=None, cond_dim=None) and takes no cond; got a torch.float32 tensor of shape (2, 1)",
    ),
    (
        lambda: UNet(
            base_channels=8,
            channel_mults=(1,),
            attention_levels=(),
            image_size=4,
            cond_dim=3,
        )(torch.zeros(2, 3, 4, 4), torch.zeros(2), torch.tensor(1.0)),
        ValueError,
        "cond must hold one condition per image, got a 0-d tensor",
    ),
    (
        lambda: UNet(
            base_channels=8,
            channel_mults=(1,),
            attention_levels=(),
            image_size=4,
            cond_dim=3,
        )(torch.zeros(2, 3, 4, 4), torch.zeros(2), torch.zeros(3, 3)),
        ValueError,
        "cond must hold one condition per image: 2, got 3",
    ),
    (
        lambda: UNet(class_counts=(2,), cond_dim=3),
        ValueError,
        "a UNet is conditioned on class labels (class_counts) or on an embedding (cond_dim), not both",
    ),
    (
        lambda: UNet(base_channels=8, channel_mults=(1,) * 9, image_size=256),
        ValueError,
        "channel_mults must hold at most 8 multipliers of at most 64, got (1, 1, 1, 1, 1, 1, 1, 1, 1)",
    ),
    (
        lambda: UNet(base_channels=8, channel_mults=(65,), attention_levels=()),
        ValueError,
        "channel_mults must hold at most 8 multipliers of at most 64",
    ),
    (
        lambda: UNet(base_channels=8, channel_mults=(1, 2), attention_levels=(2,)),
        ValueError,
        "attention_levels (2,) must be level indices in [0, 2)",
    ),
    (
        lambda: UNet(
            base_channels=8,
            channel_mults=(1, 2, 2),
            attention_levels=(),
            image_size=6,
        ),
        ValueError,
        "image_size 6 must be divisible by 2^2 = 4 (3 levels means 2 halvings)",
    ),
    (
        lambda: UNet(base_channels=7),
        ValueError,
        "base_channels is the time embedding's size and must be even, got 7",
    ),
    (
        lambda: UNet(attention_levels=(-1,)),
        ValueError,
        "every entry of attention_levels must be an int >= 0, got -1",
    ),
]


@pytest.mark.parametrize("call, error, message", CASES)
def test_errors_name_the_argument(call, error, message):
    with pytest.raises(error, match="^" + re.escape(message)):
        call()


def test_eps_error_accepts_the_first_and_the_last_timestep():
    torch.manual_seed(0)
    errors = eps_error(
        ToyDenoiser(8, 1, 4),
        GaussianMixture2d.ring(),
        NoiseSchedule.linear(5),
        [0, 4],
        n=16,
    )
    assert sorted(errors) == [0, 4] and all(value > 0 for value in errors.values())
