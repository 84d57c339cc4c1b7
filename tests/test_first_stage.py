"""Tests for minigen.pipelines.first_stage: the KL autoencoder's shapes at factors 4 and 8, its loss against
the summed absolute error and torch.distributions' KL computed by hand, the scale that makes latents unit-sized
(latent_std by hand, std 1 after set_scale), encode and decode against the model's own encoder and decoder
(the scale cancels in a round trip, and decoding unscaled latents goes wrong), the recipes' checks, and
training and loading a tiny first stage."""

import dataclasses

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from minigen.core.runtime import choose_precision
from minigen.data.shapes import ShapesWorld
from minigen.pipelines import first_stage
from minigen.pipelines.first_stage import KLAutoencoder

pytestmark = pytest.mark.usefixtures(
    "one_thread"
)  # conftest's: tiny tensors, one thread

WORLD = ShapesWorld()
TINY = first_stage.FirstStageRecipe(widths=(8, 16), steps=3, batch=4)
SCALE_SCENES = (
    64  # instead of 2000 in the trained fixtures: the same code, less rendering
)


def images(n=4, seed=0):
    """n images in [0, 1]."""
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def autoencoder(widths=(8, 16), seed=0):
    torch.manual_seed(seed)
    return KLAutoencoder(widths).eval()


# ----------------------------------------------------------------------------------
# The autoencoder


@pytest.mark.parametrize(
    "widths, factor, side", [((8, 16), 4, 8), ((8, 16, 16), 8, 4), ((8,), 2, 16)]
)
def test_autoencoder_shapes_at_each_factor(widths, factor, side):
    model = autoencoder(widths)
    assert model.factor == factor
    assert model.latent_shape == (4, side, side)
    x = 2 * images(2) - 1
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (2, 4, side, side)
    assert mu.dtype == logvar.dtype == torch.float32
    assert model.decode(mu).shape == (2, 3, 32, 32)
    out = model(x, torch.Generator().manual_seed(0))
    assert set(out) == {"mu", "logvar", "z", "image"}
    assert out["z"].shape == (2, 4, side, side) and out["image"].shape == x.shape
    # z = mu + exp(logvar / 2) eps, eps the generator's draws
    eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out["z"], mu + (0.5 * logvar).exp() * eps)
    torch.testing.assert_close(out["image"], model.decode(out["z"]))


def test_encoder_halves_are_the_mean_and_the_clamped_log_variance():
    model = autoencoder()
    last = model.encoder[-1]  # the 3x3 convolution to 2 x 4 channels
    assert last.out_channels == 8
    with torch.no_grad():
        last.bias[:4] = 7.0
        last.bias[4:] = 1e4  # the log-variance channels, far past the clamp
    x = 2 * images(2) - 1
    mu, logvar = model.encode(x)
    raw = model.encoder(x)
    torch.testing.assert_close(mu, raw[:, :4])
    assert torch.equal(logvar, torch.full_like(logvar, 20.0))
    with torch.no_grad():
        last.bias[4:] = -1e4
    assert torch.equal(model.encode(x)[1], torch.full_like(logvar, -30.0))


def test_autoencoder_rejects_bad_settings_and_inputs():
    with pytest.raises(ValueError, match="divisible"):
        KLAutoencoder((8, 16), image_size=30)  # 30 is not a multiple of 4
    with pytest.raises(ValueError, match="divisible"):
        KLAutoencoder((8, 16, 16), image_size=36)  # a multiple of 4, not of 8
    with pytest.raises(ValueError):
        KLAutoencoder(())
    with pytest.raises(ValueError):
        KLAutoencoder((8, 0))
    model = autoencoder()
    with pytest.raises(ValueError):
        model(torch.rand(2, 1, 32, 32))  # one channel
    with pytest.raises(ValueError):
        model(torch.rand(2, 3, 16, 16))  # another size
    with pytest.raises(TypeError):
        model(torch.zeros(2, 3, 32, 32, dtype=torch.long))


# ----------------------------------------------------------------------------------
# The loss


@pytest.mark.parametrize("kl_weight", [1e-6, 0.5])
def test_first_stage_loss_is_the_summed_squared_error_plus_the_weighted_kl(
    kl_weight,
):
    model = autoencoder(seed=1)
    x = 2 * images(3, seed=1) - 1
    torch.manual_seed(5)
    terms = first_stage.first_stage_loss(model, x, kl_weight)
    torch.manual_seed(5)  # the same draw of z
    out = model(x)
    # (image - x)^2 summed over each image's 3 x 32 x 32 values, averaged over the batch
    per_image = torch.stack(
        [((out["image"][i] - x[i]) ** 2).sum() for i in range(len(x))]
    )
    torch.testing.assert_close(terms["error"], per_image.mean())
    absolute = torch.stack(
        [(out["image"][i] - x[i]).abs().sum() for i in range(len(x))]
    )
    assert (terms["error"] - absolute.mean()).abs() > 1.0  # an L1 error would show
    # the KL of N(mu, exp(logvar)) from N(0, 1), summed over every latent entry of an image
    mu, logvar = model.encode(x)
    posterior = Normal(mu.double(), (0.5 * logvar.double()).exp())
    kl = kl_divergence(posterior, Normal(0.0, 1.0)).sum(dim=(1, 2, 3))  # (B,)
    torch.testing.assert_close(
        terms["kl"].double(), kl.mean(), rtol=1e-5, atol=1e-5
    )
    assert terms["kl"] > 1.0  # not a trivial 0
    torch.testing.assert_close(
        terms["loss"], terms["error"] + kl_weight * terms["kl"]
    )


def test_first_stage_loss_kl_is_zero_for_a_standard_normal_posterior():
    """mu = 0, logvar = 0 everywhere: KL 0; mu = 1: KL = 1/2 per latent entry (4 x 8 x 8 of them)."""
    model = autoencoder()
    last = model.encoder[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
    x = 2 * images(2) - 1
    assert first_stage.first_stage_loss(model, x, 1.0)["kl"].abs() < 1e-6
    with torch.no_grad():
        last.bias[:4] = 1.0
    kl = first_stage.first_stage_loss(model, x, 1.0)["kl"]
    torch.testing.assert_close(kl, torch.tensor(0.5 * 4 * 8 * 8))


def test_first_stage_loss_trains_the_autoencoder():
    model = autoencoder()
    x = 2 * images(2) - 1
    first_stage.first_stage_loss(model, x, 1e-6)["loss"].backward()
    assert model.encoder[0].weight.grad.abs().sum() > 0
    assert model.decoder[-1].weight.grad.abs().sum() > 0


# ----------------------------------------------------------------------------------
# The scale


def test_latent_std_is_the_std_of_posterior_samples_of_the_images_mapped_to_minus_one_one():
    model = autoencoder()
    scenes = images(6)
    std = first_stage.latent_std(model, scenes, seed=3)
    with torch.no_grad():
        mu, logvar = model.encode(2 * scenes - 1)
    eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(3))
    z = mu + (0.5 * logvar).exp() * eps
    assert std == pytest.approx(z.std().item(), rel=1e-6)
    assert std != pytest.approx(mu.std().item(), rel=1e-3)  # samples, not the means


def test_set_scale_makes_the_scaled_latents_unit_sized():
    model = autoencoder()
    scenes = images(8, seed=2)
    assert model.scale.item() == 1.0
    std = first_stage.latent_std(model, scenes)
    scale = first_stage.set_scale(model, scenes)
    assert scale == pytest.approx(1 / std, rel=1e-6)
    assert model.scale.item() == pytest.approx(scale, rel=1e-6)
    assert abs(scale - 1.0) > 1e-3  # the test is not trivially at scale 1
    with torch.no_grad():
        z = model(2 * scenes - 1, torch.Generator().manual_seed(0))[
            "z"
        ]  # seed 0, set_scale's
    assert (model.scale * z).std().item() == pytest.approx(1.0, abs=1e-4)


def test_latent_std_rejects_bad_inputs():
    model = autoencoder()
    with pytest.raises(TypeError):
        first_stage.latent_std(torch.nn.Identity(), images(2))
    with pytest.raises(ValueError):
        first_stage.latent_std(model, torch.rand(2, 3, 16, 16))


# ----------------------------------------------------------------------------------
# encode and decode


def test_encode_is_the_scaled_posterior_mean_and_decode_maps_back_to_zero_one():
    model = autoencoder()
    model.scale.fill_(0.37)
    x = images(3)
    latents = first_stage.encode(model, x)
    with torch.no_grad():
        mu, _ = model.encode(2 * x - 1)
    torch.testing.assert_close(latents, 0.37 * mu)
    out = first_stage.decode(model, latents)
    with torch.no_grad():
        expected = ((model.decode(latents / 0.37) + 1) / 2).clamp(0, 1)
    torch.testing.assert_close(out, expected)
    assert out.device.type == "cpu"
    assert out.min() >= 0 and out.max() <= 1


def test_decode_clamps_to_zero_one():
    model = autoencoder()
    last = model.decoder[-1]
    with torch.no_grad():
        last.bias.copy_(
            torch.tensor([-5.0, 0.0, 5.0])
        )  # below, inside, above [-1, 1]
        last.weight.mul_(1e-3)
    out = first_stage.decode(model, torch.zeros(1, 4, 8, 8))
    assert torch.all(out[:, 0] == 0) and torch.all(out[:, 2] == 1)
    assert 0.4 < out[:, 1].mean() < 0.6


@pytest.mark.parametrize("scale", [1.0, 0.2, 5.0])
def test_the_scale_cancels_in_a_round_trip(scale):
    """decode(encode(x)) is the decoder of the posterior mean, mapped to [0, 1], whatever the scale."""
    model = autoencoder()
    x = images(2)
    with torch.no_grad():
        mu, _ = model.encode(2 * x - 1)
        by_hand = ((model.decode(mu) + 1) / 2).clamp(0, 1)
    model.scale.fill_(scale)
    torch.testing.assert_close(
        first_stage.decode(model, first_stage.encode(model, x)), by_hand
    )


def test_decoding_unscaled_latents_goes_wrong():
    """What the scale is for: latents of the wrong size decode to another image."""
    model = autoencoder()
    model.scale.fill_(0.2)
    x = images(2)
    with torch.no_grad():
        mu, _ = model.encode(2 * x - 1)
    right = first_stage.decode(model, first_stage.encode(model, x))
    wrong = first_stage.decode(model, mu)  # unscaled, read as scaled: mu / 0.2
    assert (right - wrong).abs().max() > 1e-2
    model.scale.fill_(1.0)  # at scale 1 scaled and unscaled latents are one thing
    torch.testing.assert_close(first_stage.decode(model, mu), right)


def test_encode_and_decode_reject_bad_inputs():
    model = autoencoder()
    with pytest.raises(TypeError):
        first_stage.encode(torch.nn.Identity(), images(1))
    with pytest.raises(ValueError):
        first_stage.encode(model, torch.rand(1, 3, 16, 16))
    with pytest.raises(ValueError):
        first_stage.decode(
            model, torch.zeros(1, 4, 4, 4)
        )  # factor 8's latents, not 4's
    with pytest.raises(ValueError):
        first_stage.decode(model, torch.zeros(1, 3, 8, 8))
    with pytest.raises(TypeError):
        first_stage.decode(model, torch.zeros(1, 4, 8, 8, dtype=torch.long))


# ----------------------------------------------------------------------------------
# Recipes


@pytest.mark.parametrize(
    "field, value, error",
    [
        ("widths", (), ValueError),
        ("widths", (8, 0), ValueError),
        ("steps", 0, ValueError),
        ("steps", 2.5, TypeError),
        ("batch", 0, ValueError),
        ("lr", 0.0, ValueError),
        ("lr", -1e-3, ValueError),
        ("kl_weight", 0.0, ValueError),
        ("seed", -1, ValueError),
    ],
)
def test_first_stage_recipe_rejects_bad_values(field, value, error):
    with pytest.raises(error):
        dataclasses.replace(TINY, **{field: value})


def test_book_first_stage_recipe_factors():
    four, eight = (first_stage.book_first_stage_recipe(f) for f in (4, 8))
    assert 2 ** len(four.widths) == 4 and 2 ** len(eight.widths) == 8
    assert first_stage.book_first_stage_recipe() == four
    for factor in (2, 16, 0):
        with pytest.raises(ValueError, match="factor"):
            first_stage.book_first_stage_recipe(factor)


# ----------------------------------------------------------------------------------
# Training and loading (one tiny training each, module-scoped)


@pytest.fixture(scope="module")
def trained():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(first_stage, "SCALE_SCENES", SCALE_SCENES)
        return first_stage.train_first_stage(
            WORLD, TINY, choose_precision("cpu"), progress=False
        )


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    path = tmp_path_factory.mktemp("first-stage") / "tiny.pt"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(first_stage, "SCALE_SCENES", SCALE_SCENES)
        model = first_stage.load_first_stage(
            TINY, WORLD, path, "cpu", progress=False
        )
    return model, path


def test_train_first_stage_returns_an_eval_model_with_its_scale_and_history(
    trained,
):
    model, history = trained
    assert isinstance(model, KLAutoencoder) and not model.training
    assert model.widths == TINY.widths and model.factor == 4
    assert history.steps == [0, 1, 2] and len(history.losses) == 3
    assert set(history.metrics) == {"error", "kl"}
    assert all(len(values) == 3 for values in history.metrics.values())
    # the scale is 1 / the std of the latents of the first SCALE_SCENES validation scenes
    scale = model.scale.item()
    assert scale != 1.0
    val = WORLD.scenes(SCALE_SCENES, "val").images
    assert scale == pytest.approx(1 / first_stage.latent_std(model, val), rel=1e-6)


def test_load_first_stage_trains_once_then_loads_the_same_weights(
    trained, loaded, monkeypatch
):
    model, path = loaded
    assert path.exists() and not model.training
    assert len(model.history.losses) == TINY.steps
    reference = trained[
        0
    ].state_dict()  # the same recipe and seed: the same training
    state = model.state_dict()
    assert state.keys() == reference.keys()
    for name in state:
        assert torch.equal(state[name], reference[name]), name

    def no_training(*args, **kwargs):
        raise AssertionError("load_first_stage trained again")

    monkeypatch.setattr(first_stage, "train_first_stage", no_training)
    again = first_stage.load_first_stage(TINY, WORLD, path, "cpu", progress=False)
    for name, value in again.state_dict().items():
        assert torch.equal(value, state[name]), name
    assert again.scale.item() == model.scale.item() != 1.0


def test_load_first_stage_refuses_a_file_of_other_settings(loaded, monkeypatch):
    _, path = loaded
    monkeypatch.setattr(first_stage, "train_first_stage", None)  # must not train
    for other in (
        dataclasses.replace(TINY, lr=2e-3),
        dataclasses.replace(TINY, seed=1),
    ):
        with pytest.raises(ValueError):
            first_stage.load_first_stage(other, WORLD, path, "cpu", progress=False)
    with pytest.raises(ValueError):
        first_stage.load_first_stage(
            TINY, ShapesWorld(max_objects=3), path, "cpu", progress=False
        )


def test_load_first_stage_rejects_bad_arguments(tmp_path):
    path = tmp_path / "never.pt"
    with pytest.raises(TypeError):
        first_stage.load_first_stage("tiny", WORLD, path, "cpu", progress=False)
    with pytest.raises(TypeError):
        first_stage.load_first_stage(TINY, "world", path, "cpu", progress=False)
    with pytest.raises(TypeError):
        first_stage.load_first_stage(TINY, WORLD, path, "cpu", progress=1)
    assert not path.exists()
