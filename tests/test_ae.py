"""Tests for minigen.ae: training lowers the loss, denoising, metrics in closed form, the linear probe."""
import math

import pytest
import torch
from torch import nn

from minigen.models.autoencoder import (Autoencoder, add_noise, decode_random, encode_features,
    interpolate_latents, linear_probe, reconstruction_loss, reconstruction_metrics,
    train_autoencoder)
from minigen.data.shapes import ShapesWorld
from minigen.core.runtime import choose_precision

FP32 = choose_precision("cpu", dtype="fp32")
TINY = dict(widths=(8, 16))


class ConstantLogits(nn.Module):
    """A stand-in model: records its input and returns logits of a constant prediction."""

    def __init__(self, prediction: float):
        super().__init__()
        self.logit = nn.Parameter(torch.tensor(math.log(prediction / (1 - prediction))))
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
    runs = [train_autoencoder(world, 8, steps=40, batch_size=16, widths=(8, 16), precision=FP32, progress=False)
            for _ in range(2)]
    (model, history), (again, history_again) = runs
    first, last = sum(history.losses[:5]) / 5, sum(history.losses[-5:]) / 5
    assert last < 0.8 * first
    assert history.losses == history_again.losses
    for p, q in zip(model.parameters(), again.parameters()):
        assert torch.equal(p, q)


def test_denoising_adds_noise_to_inputs_only():
    images = torch.rand(64, 3, 8, 8)
    model = ConstantLogits(0.5)
    loss = reconstruction_loss(model, images, noise_std=0.3, generator=torch.Generator().manual_seed(0))
    noise = model.seen - images
    assert abs(noise.std().item() - 0.3) < 0.01 and abs(noise.mean().item()) < 0.01
    assert torch.isclose(loss, (0.5 - images).square().mean())  # the target is the clean image
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
    assert metrics["psnr"] == pytest.approx((10 * torch.log10(1 / per_image_mse)).mean().item(), rel=1e-5)


def test_noisy_metrics_use_clean_targets():
    images = torch.full((8, 3, 4, 4), 0.25)
    metrics = reconstruction_metrics(ConstantLogits(0.5), images, noise_std=0.5,
                                     generator=torch.Generator().manual_seed(0))
    assert metrics["mse"] == pytest.approx(0.0625, rel=1e-5)  # the constant model ignores its noisy input


def _blobs(n, dim, classes, generator):
    centres = 10 * torch.randn(classes, dim, generator=generator)
    labels = torch.arange(n) % classes
    return centres[labels] + torch.randn(n, dim, generator=generator), labels


def test_linear_probe_separable_data_and_random_labels():
    g = torch.Generator().manual_seed(0)
    x, y = _blobs(600, 10, 4, g)  # well-separated Gaussian blobs: linearly separable
    assert linear_probe(x[:300], y[:300], x[300:], y[300:], classes=4) == 1.0
    random_labels = torch.randint(0, 4, (600,), generator=g)  # labels unrelated to the features
    accuracy = linear_probe(x[:300], random_labels[:300], x[300:], random_labels[300:], classes=4)
    assert abs(accuracy - 0.25) < 0.1


def test_linear_probe_is_deterministic_and_checks_labels():
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(100, 6, generator=g), torch.randint(0, 3, (100,), generator=g)
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
    assert samples.shape == (6, 3, 32, 32) and 0 <= samples.min() and samples.max() <= 1
    assert torch.equal(samples, decode_random(model, 6, torch.Generator().manual_seed(0)))
    fitted = decode_random(model, 3, torch.Generator().manual_seed(0), codes=codes)
    assert fitted.shape == (3, 3, 32, 32)
    path = interpolate_latents(model, images[0], images[1:2], steps=4)
    with torch.no_grad():
        ends = torch.sigmoid(model(images[:2]))
    assert path.shape == (4, 3, 32, 32)
    assert torch.allclose(path[0], ends[0], atol=1e-5) and torch.allclose(path[-1], ends[1], atol=1e-5)
    with pytest.raises(ValueError, match="steps"):
        interpolate_latents(model, images[0], images[1], steps=1)
