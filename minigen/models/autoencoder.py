"""The autoencoder: a bottleneck, its reconstruction error, denoising, latents as features, and its holes.

Implements
- the (convolutional) autoencoder, G. E. Hinton, R. R. Salakhutdinov, "Reducing the Dimensionality of
  Data with Neural Networks", Science 313 (2006);
- the denoising autoencoder (noisy input, clean target), P. Vincent et al., "Extracting and Composing
  Robust Features with Denoising Autoencoders", ICML 2008;
- the linear probe (a linear classifier on frozen features), G. Alain, Y. Bengio, "Understanding
  intermediate layers using linear classifier probes", arXiv:1610.01644 (2016), fitted as multinomial
  logistic regression with L-BFGS (D. C. Liu, J. Nocedal, Mathematical Programming 45, 1989).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from minigen.nn.conv import ConvDecoder, ConvEncoder
from minigen.data.shapes import ShapesWorld
from minigen.core.runtime import Precision, choose_precision, seed_everything
from minigen.core.train import History, train
from minigen.eval.metrics import psnr


class Autoencoder(nn.Module):
    """ConvEncoder -> a latent code of `latent_dim` numbers -> ConvDecoder -> logits; sigmoid(logits) is the image."""

    def __init__(self, latent_dim: int, widths: Sequence[int] = (16, 32, 64), in_channels: int = 3,
                 upsampler: str = "resize-conv nearest", image_size: int = 32):
        super().__init__()
        if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim < 1:
            raise ValueError(f"latent_dim must be a positive int, got {latent_dim!r}")
        self.latent_dim = latent_dim
        self.encoder = ConvEncoder(in_channels=in_channels, widths=widths, out_features=latent_dim,
                                   image_size=image_size)
        self.decoder = ConvDecoder(in_features=latent_dim, widths=tuple(reversed(widths)), out_channels=in_channels,
                                   upsampler=upsampler, image_size=image_size)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> codes (B, L)."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Codes (B, L) -> logits (B, C, H, W)."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))  # (B, C, H, W) logits


def _model_device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _check_noise_std(noise_std: float) -> None:
    if isinstance(noise_std, bool) or not isinstance(noise_std, (int, float)) or not noise_std >= 0:
        raise ValueError(f"noise_std must be a number >= 0 (0 means a plain autoencoder), got {noise_std!r}")


def add_noise(images: torch.Tensor, noise_std: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """x~ = x + noise_std * eps, eps ~ N(0, I); not clipped to [0, 1], so the noise stays zero-mean."""
    _check_noise_std(noise_std)
    if noise_std == 0:
        return images
    eps = torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype)
    return images + noise_std * eps


def reconstruction_loss(model: nn.Module, images: torch.Tensor, noise_std: float = 0.0,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """MSE between sigmoid(model(x~)) and the clean x, where x~ = add_noise(x, noise_std): the (denoising) AE loss."""
    logits = model(add_noise(images, noise_std, generator))  # noise on the input only
    return F.mse_loss(torch.sigmoid(logits.float()), images.float())  # target: the clean image


def train_autoencoder(world: ShapesWorld, latent_dim: int, steps: int, batch_size: int = 32, lr: float = 2e-3,
                      noise_std: float = 0.0, widths: Sequence[int] = (16, 32, 64), seed: int = 0,
                      precision: Precision | None = None, progress: bool = True) -> tuple[Autoencoder, History]:
    """Train an Autoencoder on fresh "train" renders every step; noise_std > 0 trains a denoising AE.

    AdamW (Loshchilov & Hutter 2019) with a cosine learning-rate decay; the History logs the MSE.
    """
    _check_noise_std(noise_std)
    precision = precision or choose_precision()
    seed_everything(seed)
    model = Autoencoder(latent_dim, widths=widths, image_size=world.resolution).to(precision.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)

    def loss_fn(step: int) -> torch.Tensor:
        images = world.scenes(range(step * batch_size, (step + 1) * batch_size), split="train").images
        return reconstruction_loss(model, images.to(precision.device), noise_std)

    history = train(model, loss_fn, steps=steps, optimizer=optimizer, scheduler=schedule, precision=precision,
                    progress=progress, desc=f"AE L={latent_dim}" + (f" noise {noise_std:g}" if noise_std else ""))
    return model.eval(), history


@torch.no_grad()
def reconstruct(model: Autoencoder, images: torch.Tensor, noise_std: float = 0.0,
                generator: torch.Generator | None = None, batch_size: int = 256) -> torch.Tensor:
    """sigmoid(model(add_noise(images))) in eval mode, in batches, on the images' device: (N, C, H, W)."""
    was_training = model.training
    model.eval()
    device, outputs = _model_device(model), []
    for start in range(0, len(images), batch_size):
        noisy = add_noise(images[start:start + batch_size].to(device), noise_std, generator)
        outputs.append(torch.sigmoid(model(noisy).float()).to(images.device))
    model.train(was_training)
    return torch.cat(outputs)


def reconstruction_metrics(model: Autoencoder, images: torch.Tensor, noise_std: float = 0.0,
                           generator: torch.Generator | None = None, batch_size: int = 256) -> dict[str, float]:
    """{"mse": mean squared error over all pixels, "psnr": mean over images of 10 log10(1 / MSE_image) in dB}.

    With noise_std > 0 the model sees noisy inputs and is scored against the clean images.
    """
    if images.dim() != 4 or len(images) == 0:
        raise ValueError(f"images must be a non-empty batch (N, C, H, W), got shape {tuple(images.shape)}")
    predicted = reconstruct(model, images, noise_std, generator, batch_size)  # (N, C, H, W)
    mse = (predicted - images.float()).square().mean().item()
    return {"mse": mse, "psnr": psnr(predicted, images).mean().item()}


@torch.no_grad()
def encode_features(model: Autoencoder, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """The codes of `images` in eval mode, in batches: (N, C, H, W) -> (N, L) float32 on the images' device."""
    was_training = model.training
    model.eval()
    device = _model_device(model)
    codes = [model.encode(images[start:start + batch_size].to(device)).float().to(images.device)
             for start in range(0, len(images), batch_size)]
    model.train(was_training)
    return torch.cat(codes)


def _check_probe_data(name: str, x: torch.Tensor, y: torch.Tensor, classes: int) -> None:
    if x.dim() < 2 or y.dim() != 1 or len(x) != len(y) or len(x) == 0:
        raise ValueError(f"{name}: features must be (N, ...) and labels (N,), with N > 0, got shapes "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")
    if y.dtype != torch.long:
        raise TypeError(f"{name}: labels must be int64 class indices, got {y.dtype}")
    if y.min() < 0 or y.max() >= classes:
        raise ValueError(f"{name}: labels must lie in [0, {classes}), got values from {y.min().item()} "
                         f"to {y.max().item()}")


def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                 classes: int, l2: float = 1e-3, max_iter: int = 100) -> float:
    """Test accuracy of a multinomial logistic regression fitted on (train_x, train_y).

    Features (N, ...) are flattened and standardised with the training set's mean and standard deviation
    (a constant feature is only centred). The weights W, b minimise, in float64 with L-BFGS from zero,
        mean_i -log softmax(W x_i + b)[y_i] + l2 / 2 ||W||^2,
    a convex problem, so the fit is deterministic.
    """
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 2:
        raise ValueError(f"classes must be an int >= 2, got {classes!r}")
    if not l2 >= 0:
        raise ValueError(f"l2 must be >= 0, got {l2!r}")
    _check_probe_data("train", train_x, train_y, classes)
    _check_probe_data("test", test_x, test_y, classes)
    train_x, test_x = train_x.flatten(1).double().cpu(), test_x.flatten(1).double().cpu()
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"train and test features differ in size: {train_x.shape[1]} and {test_x.shape[1]}")
    mean, std = train_x.mean(0), train_x.std(0)
    std = torch.where(std > 0, std, torch.ones_like(std))  # a constant feature: centred, not scaled
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std  # (N, D), zero mean, unit variance
    weight = torch.zeros(train_x.shape[1], classes, dtype=torch.float64, requires_grad=True)  # (D, K)
    bias = torch.zeros(classes, dtype=torch.float64, requires_grad=True)  # (K,)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=max_iter, line_search_fn="strong_wolfe")
    labels = train_y.cpu()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        # loss = mean cross-entropy + l2 / 2 ||W||^2
        loss = F.cross_entropy(train_x @ weight + bias, labels) + 0.5 * l2 * weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        predicted = (test_x @ weight + bias).argmax(dim=1)  # (N_test,)
    return (predicted == test_y.cpu()).double().mean().item()


@torch.no_grad()
def decode_random(model: Autoencoder, n: int, generator: torch.Generator | None = None,
                  codes: torch.Tensor | None = None) -> torch.Tensor:
    """sigmoid(decode(z)) for n random codes: (n, C, H, W).

    z ~ N(0, I), or, given `codes` (M, L) of real images, z ~ N(mean, diag var) fitted to them. Nothing
    trained an AE's codes to fill either distribution, so many such z decode to no scene at all.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    device = _model_device(model)
    eps = torch.randn(n, model.latent_dim, generator=generator, device=generator.device if generator else device)
    z = eps.to(device)  # (n, L) ~ N(0, I)
    if codes is not None:
        if codes.dim() != 2 or codes.shape[1] != model.latent_dim or len(codes) < 2:
            raise ValueError(f"codes must be (M, {model.latent_dim}) with M >= 2 to fit a Gaussian, "
                             f"got {tuple(codes.shape)}")
        codes = codes.float().to(device)
        z = codes.mean(0) + codes.std(0) * z  # z = mu + sigma * eps, per latent dimension
    was_training = model.training
    model.eval()
    images = torch.sigmoid(model.decode(z).float())
    model.train(was_training)
    return images


@torch.no_grad()
def interpolate_latents(model: Autoencoder, a: torch.Tensor, b: torch.Tensor, steps: int) -> torch.Tensor:
    """Decode z_t = (1 - t) z_a + t z_b for `steps` evenly spaced t in [0, 1]: images (steps, C, H, W).

    a, b: single images (C, H, W) or (1, C, H, W).
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps must be an int >= 2 (both ends are included), got {steps!r}")
    pair = torch.stack([image.reshape(image.shape[-3:]) if image.dim() == 4 and len(image) == 1 else image
                        for image in (a, b)])
    if pair.dim() != 4:
        raise ValueError(f"a and b must be single images (C, H, W), got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    was_training = model.training
    model.eval()
    z_a, z_b = model.encode(pair.to(_model_device(model))).float()  # (L,) each
    t = torch.linspace(0, 1, steps, device=z_a.device)[:, None]  # (steps, 1)
    z = (1 - t) * z_a + t * z_b  # (steps, L)
    images = torch.sigmoid(model.decode(z).float())
    model.train(was_training)
    return images
