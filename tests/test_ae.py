"""Tests for minigen.ae: training lowers the loss, denoising, metrics in closed form, the linear probe."""

import math

import pytest
import torch
from torch import nn

from minigen.core.runtime import choose_precision
from minigen.data.shapes import ShapesWorld
from minigen.models.autoencoder import (
    Autoencoder,
    add_noise,
    decode_random,
    encode_features,
    interpolate_latents,
    linear_probe,
    reconstruct,
    reconstruction_loss,
    reconstruction_metrics,
    train_autoencoder,
)

FP32 = choose_precision("cpu", dtype="fp32")
TINY = dict(widths=(8, 16))


class ConstantLogits(nn.Module):
    """A stand-in model: records its input and returns logits of a constant prediction."""

    def __init__(self, prediction: float):
        super().__init__()
        self.logit = nn.Parameter(
            torch.tensor(math.log(prediction / (1 - prediction)))
        )
        self.latent_dim = 2
        self.seen = None

    def forward(self, x):
        self.seen = x
        return self.logit.expand_as(x)


def test_autoencoder_shapes():
    model = Autoencoder(5, **TINY)
    x = torch.rand(3, 3, 32, 32)
    assert model.encode(x).shape == (3, 5) and model(x).shape == (3, 3, 32, 32)
    with pytest.raises(ValueError, match="latent_dim"):
        Autoencoder(0)


def test_smoke_training_lowers_the_loss_and_is_deterministic():
    world = ShapesWorld()
    runs = [
        train_autoencoder(
            world,
            8,
            steps=40,
            batch_size=16,
            widths=(8, 16),
            precision=FP32,
            progress=False,
        )
        for _ in range(2)
    ]
    (model, history), (again, history_again) = runs
    first, last = sum(history.losses[:5]) / 5, sum(history.losses[-5:]) / 5
    assert last < 0.8 * first
    assert history.losses == history_again.losses
    for p, q in zip(model.parameters(), again.parameters()):
        assert torch.equal(p, q)


def test_denoising_adds_noise_to_inputs_only():
    images = torch.rand(64, 3, 8, 8)
    model = ConstantLogits(0.5)
    loss = reconstruction_loss(
        model, images, noise_std=0.3, generator=torch.Generator().manual_seed(0)
    )
    noise = model.seen - images
    assert abs(noise.std().item() - 0.3) < 0.01 and abs(noise.mean().item()) < 0.01
    # the target is the clean image
    assert torch.isclose(loss, (0.5 - images).square().mean())
    reconstruction_loss(model, images, noise_std=0.0)
    assert model.seen is images  # no noise: the input is untouched
    with pytest.raises(ValueError, match="noise_std"):
        add_noise(images, -0.1)


def test_metrics_match_the_closed_form():
    levels = torch.tensor([0.1, 0.25, 0.9])
    images = levels[:, None, None, None].expand(3, 3, 4, 4).clone()
    metrics = reconstruction_metrics(ConstantLogits(0.5), images)
    per_image_mse = (0.5 - levels) ** 2
    assert metrics["mse"] == pytest.approx(per_image_mse.mean().item(), rel=1e-5)
    assert metrics["psnr"] == pytest.approx(
        (10 * torch.log10(1 / per_image_mse)).mean().item(), rel=1e-5
    )


def test_noisy_metrics_use_clean_targets():
    images = torch.full((8, 3, 4, 4), 0.25)
    metrics = reconstruction_metrics(
        ConstantLogits(0.5),
        images,
        noise_std=0.5,
        generator=torch.Generator().manual_seed(0),
    )
    # the constant model ignores its noisy input
    assert metrics["mse"] == pytest.approx(0.0625, rel=1e-5)


def _blobs(n, dim, classes, generator):
    centres = 10 * torch.randn(classes, dim, generator=generator)
    labels = torch.arange(n) % classes
    return centres[labels] + torch.randn(n, dim, generator=generator), labels


def test_linear_probe_separable_data_and_random_labels():
    g = torch.Generator().manual_seed(0)
    # well-separated Gaussian blobs: linearly separable
    x, y = _blobs(600, 10, 4, g)
    assert linear_probe(x[:300], y[:300], x[300:], y[300:], classes=4) == 1.0
    # labels unrelated to the features
    random_labels = torch.randint(0, 4, (600,), generator=g)
    accuracy = linear_probe(
        x[:300], random_labels[:300], x[300:], random_labels[300:], classes=4
    )
    assert abs(accuracy - 0.25) < 0.1


def test_linear_probe_is_deterministic_and_checks_labels():
    g = torch.Generator().manual_seed(3)
    x, y = (
        torch.randn(100, 6, generator=g),
        torch.randint(0, 3, (100,), generator=g),
    )
    x[:, 0] = 1.0  # a constant feature must not break the standardisation
    assert linear_probe(x, y, x, y, 3) == linear_probe(x, y, x, y, 3)
    with pytest.raises(ValueError, match="labels must lie"):
        linear_probe(x, y, x, y + 1, 3)
    with pytest.raises(TypeError, match="int64"):
        linear_probe(x, y.float(), x, y, 3)


def test_features_random_decodes_and_interpolation():
    torch.manual_seed(0)
    model = Autoencoder(4, **TINY).eval()
    images = torch.rand(5, 3, 32, 32)
    codes = encode_features(model, images, batch_size=2)
    with torch.no_grad():
        assert torch.allclose(codes, model.encode(images), atol=1e-6)
    samples = decode_random(model, 6, torch.Generator().manual_seed(0))
    assert (
        samples.shape == (6, 3, 32, 32)
        and 0 <= samples.min()
        and samples.max() <= 1
    )
    assert torch.equal(
        samples, decode_random(model, 6, torch.Generator().manual_seed(0))
    )
    fitted = decode_random(model, 3, torch.Generator().manual_seed(0), codes=codes)
    assert fitted.shape == (3, 3, 32, 32)
    path = interpolate_latents(model, images[0], images[1:2], steps=4)
    with torch.no_grad():
        ends = torch.sigmoid(model(images[:2]))
    assert path.shape == (4, 3, 32, 32)
    assert torch.allclose(path[0], ends[0], atol=1e-5) and torch.allclose(
        path[-1], ends[1], atol=1e-5
    )
    with pytest.raises(ValueError, match="steps"):
        interpolate_latents(model, images[0], images[1], steps=1)


# --- argument checks and eval mode ---


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"batch_size": 0}, ValueError, "batch_size must be an int >= 1, got 0"),
        ({"steps": -1}, ValueError, "steps must be an int >= 1"),
        ({"latent_dim": 0}, ValueError, "latent_dim must be an int >= 1"),
        (
            {"latent_dim": 10**9},
            ValueError,
            "latent_dim must be an int <= 1,000,000",
        ),
        (
            {"widths": (8, 10**9)},
            ValueError,
            "every entry of widths must be an int <= 1,000,000",
        ),
        (
            {"noise_std": float("nan")},
            ValueError,
            "noise_std must be a finite number",
        ),
        ({"noise_std": -0.1}, ValueError, "noise_std must lie in"),
        ({"progress": 1}, TypeError, "progress must be True or False"),
        ({"world": "shapes"}, TypeError, "world must be ShapesWorld"),
    ],
)
def test_train_autoencoder_fails_fast_on_bad_arguments(kwargs, error, message):
    arguments = {
        "world": ShapesWorld(),
        "latent_dim": 4,
        "steps": 2,
        "widths": (4, 8),
        "precision": FP32,
        "progress": False,
        **kwargs,
    }
    with pytest.raises(error, match=message):
        train_autoencoder(**arguments)


class DropoutCodec(nn.Module):
    """A stand-in autoencoder whose code is the flattened image passed through dropout: in
    eval mode it reconstructs its input exactly, in train mode it does not."""

    def __init__(self, side: int = 4):
        super().__init__()
        self.side, self.latent_dim = side, 3 * side * side
        self.drop = nn.Dropout(0.5)
        self.anchor = nn.Parameter(torch.zeros(()))  # gives the model a device
        self.fail = False

    def encode(self, x):
        return self.drop(x.flatten(1))

    def decode(self, z):
        if self.fail:
            raise RuntimeError("decoder failed")
        return self.drop(z).view(-1, 3, self.side, self.side)

    def forward(self, x):
        return self.decode(self.encode(x))


def test_evaluation_helpers_run_in_eval_mode_and_restore_train_mode():
    torch.manual_seed(0)
    model = DropoutCodec().train()
    images = torch.rand(5, 3, 4, 4)
    torch.testing.assert_close(
        reconstruct(model, images, batch_size=2), torch.sigmoid(images)
    )
    torch.testing.assert_close(
        encode_features(model, images, batch_size=2), images.flatten(1)
    )
    z = torch.randn(3, model.latent_dim, generator=torch.Generator().manual_seed(1))
    decoded = decode_random(model, 3, torch.Generator().manual_seed(1))
    torch.testing.assert_close(decoded, torch.sigmoid(z).view(3, 3, 4, 4))
    path = interpolate_latents(model, images[0], images[1], steps=3)
    torch.testing.assert_close(path[1], torch.sigmoid((images[0] + images[1]) / 2))
    assert model.training and model.drop.training
    model.fail = True
    with pytest.raises(RuntimeError, match="decoder failed"):
        decode_random(model, 2)
    assert model.training and model.drop.training


def test_helpers_check_their_inputs():
    model = DropoutCodec().eval()
    images = torch.rand(2, 3, 4, 4)
    with pytest.raises(ValueError, match="noise_std must be a finite number"):
        add_noise(images, float("nan"))
    with pytest.raises(TypeError, match="images must be a torch.Tensor"):
        add_noise(images.tolist(), 0.1)
    with pytest.raises(ValueError, match="a and b must have the same shape"):
        interpolate_latents(model, images[0], torch.rand(3, 8, 8), steps=3)
    with pytest.raises(ValueError, match="a must be a single image"):
        interpolate_latents(model, images, images[0], steps=3)
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        decode_random(model, 0)
    with pytest.raises(ValueError, match="codes holds 1 NaN"):
        decode_random(
            model, 2, codes=torch.tensor([[float("nan")] + [0.0] * 47, [0.0] * 48])
        )
    with pytest.raises(ValueError, match="M >= 2"):
        decode_random(model, 2, codes=torch.zeros(1, 48))
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        reconstruct(model, images, batch_size=0)
    with pytest.raises(ValueError, match="non-empty"):
        reconstruction_metrics(model, images[:0])
    x, y = torch.randn(10, 3), torch.arange(10) % 2
    with pytest.raises(ValueError, match="classes must be an int >= 2"):
        linear_probe(x, y, x, y, classes=1)
    with pytest.raises(ValueError, match="l2 must be a finite number"):
        linear_probe(x, y, x, y, classes=2, l2=float("nan"))
    x[0, 0] = float("inf")
    with pytest.raises(ValueError, match="train features holds 1 NaN or infinite"):
        linear_probe(x, y, x, y, classes=2)


# --- bad input at the entry points: a clear TypeError or ValueError, never silence ---


@pytest.mark.parametrize("bad", [42, "seed", object(), torch.float32])
def test_generators_are_checked_even_where_no_noise_is_drawn(bad):
    model, images = DropoutCodec().eval(), torch.rand(2, 3, 4, 4)
    calls = [
        lambda: add_noise(
            images, 0.0, bad
        ),  # noise_std 0 never draws: still a mistake
        lambda: reconstruction_loss(model, images, 0.0, bad),
        lambda: reconstruct(model, images, generator=bad),
        lambda: reconstruction_metrics(model, images, generator=bad),
        lambda: decode_random(model, 2, bad),
    ]
    for call in calls:
        with pytest.raises(TypeError, match="generator must be Generator, got"):
            call()


@pytest.mark.parametrize("bad", [None, 42, [1], Autoencoder])
def test_model_arguments_must_be_models(bad):
    images = torch.rand(2, 3, 4, 4)
    calls = [
        lambda: reconstruction_loss(bad, images),
        lambda: reconstruct(bad, images),
        lambda: reconstruction_metrics(bad, images),
        lambda: encode_features(bad, images),
        lambda: decode_random(bad, 2),
        lambda: interpolate_latents(bad, images[0], images[1], 3),
    ]
    for call in calls:
        with pytest.raises(TypeError, match="model must be"):
            call()


def test_helpers_that_need_codes_refuse_a_module_without_them():
    images = torch.rand(2, 3, 4, 4)
    for call in (
        lambda: encode_features(nn.Linear(2, 2), images),
        lambda: decode_random(nn.Linear(2, 2), 2),
        lambda: interpolate_latents(nn.Linear(2, 2), images[0], images[1], 3),
    ):
        with pytest.raises(
            TypeError, match="model must be an Autoencoder .*got Linear"
        ):
            call()


def test_empty_batches_are_named_not_left_to_torch_cat():
    model, empty = DropoutCodec().eval(), torch.rand(0, 3, 4, 4)
    for call in (
        lambda: reconstruct(model, empty),
        lambda: encode_features(model, empty),
        lambda: reconstruction_metrics(model, empty),
    ):
        with pytest.raises(
            ValueError, match=r"images must be a non-empty batch \(N, C, H, W\)"
        ):
            call()
