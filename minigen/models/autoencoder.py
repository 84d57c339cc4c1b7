"""The autoencoder: a bottleneck, its reconstruction error, denoising, latents as
features, and its holes.

Implements
- the (convolutional) autoencoder, G. E. Hinton, R. R. Salakhutdinov, "Reducing the
  Dimensionality of Data with Neural Networks", Science 313 (2006);
- the denoising autoencoder (noisy input, clean target), P. Vincent et al.,
  "Extracting and Composing Robust Features with Denoising Autoencoders", ICML 2008;
- the linear probe (a linear classifier on frozen features), G. Alain, Y. Bengio,
  "Understanding intermediate layers using linear classifier probes",
  arXiv:1610.01644 (2016), fitted as multinomial logistic regression with L-BFGS
  (D. C. Liu, J. Nocedal, Mathematical Programming 45, 1989).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from minigen.core.runtime import (
    Precision,
    choose_precision,
    eval_mode,
    seed_everything,
)
from minigen.core.train import History, check_training_arguments, train
from minigen.core.validators import (
    check_float,
    check_instance,
    check_int,
    check_ints,
    check_module,
    check_optional,
    check_same_shape,
    check_tensor,
)
from minigen.data.shapes import ShapesWorld
from minigen.eval.metrics import psnr
from minigen.nn.conv import ConvDecoder, ConvEncoder


class Autoencoder(nn.Module):
    """ConvEncoder -> a latent code of `latent_dim` numbers -> ConvDecoder ->
    logits; sigmoid(logits) is the image."""

    def __init__(
        self,
        latent_dim: int,
        widths: Sequence[int] = (16, 32, 64),
        in_channels: int = 3,
        upsampler: str = "resize-conv nearest",
        image_size: int = 32,
    ):
        super().__init__()
        self.latent_dim = check_int("latent_dim", latent_dim)
        widths = check_ints("widths", widths)
        self.encoder = ConvEncoder(
            in_channels=in_channels,
            widths=widths,
            out_features=latent_dim,
            image_size=image_size,
        )
        self.decoder = ConvDecoder(
            in_features=latent_dim,
            widths=tuple(reversed(widths)),
            out_channels=in_channels,
            upsampler=upsampler,
            image_size=image_size,
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> codes (B, L)."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Codes (B, L) -> logits (B, C, H, W)."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))  # (B, C, H, W) logits


def _check_autoencoder(model: nn.Module) -> nn.Module:
    """A module with encode(x) -> codes (B, L), decode(z) and an int latent_dim."""
    check_module("model", model)
    has_codes = isinstance(getattr(model, "latent_dim", None), int)
    if not (has_codes and hasattr(model, "encode") and hasattr(model, "decode")):
        raise TypeError(
            "model must be an Autoencoder (a module with encode, decode and an int "
            f"latent_dim), got {type(model).__name__}"
        )
    return model


def _check_images(images: torch.Tensor) -> None:
    check_tensor("images", images, dims=4, floating=True, shape="(N, C, H, W)")
    if len(images) == 0:
        raise ValueError(
            "images must be a non-empty batch (N, C, H, W), got 0 images"
        )


def _model_device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def add_noise(
    images: torch.Tensor, noise_std: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """x~ = x + noise_std * eps, eps ~ N(0, I); not clipped to [0, 1], so the noise
    stays zero-mean."""
    check_tensor("images", images, floating=True)
    check_float("noise_std", noise_std, 0.0)  # 0: a plain autoencoder
    check_optional(check_instance, "generator", generator, torch.Generator)
    if noise_std == 0:
        return images
    eps = torch.randn(
        images.shape, generator=generator, device=images.device, dtype=images.dtype
    )
    return images + noise_std * eps


def reconstruction_loss(
    model: nn.Module,
    images: torch.Tensor,
    noise_std: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The (denoising) AE loss: MSE between sigmoid(model(x~)) and the clean x,
    where x~ = add_noise(x, noise_std)."""
    check_module("model", model)
    # noise on the input only
    logits = model(add_noise(images, noise_std, generator))
    # target: the clean image
    return F.mse_loss(torch.sigmoid(logits.float()), images.float())


def train_autoencoder(
    world: ShapesWorld,
    latent_dim: int,
    steps: int,
    batch_size: int = 32,
    lr: float = 2e-3,
    noise_std: float = 0.0,
    widths: Sequence[int] = (16, 32, 64),
    seed: int = 0,
    precision: Precision | None = None,
    progress: bool = True,
    checkpoint: str | Path | None = None,
    checkpoint_every: int | None = None,
) -> tuple[Autoencoder, History]:
    """Train an Autoencoder on fresh "train" renders every step; noise_std > 0
    trains a denoising AE.

    AdamW (Loshchilov & Hutter 2019) with a cosine learning-rate decay; the History
    logs the MSE.
    checkpoint: a file to resume from and save to (every `checkpoint_every` steps).
    """
    check_instance("world", world, ShapesWorld)
    check_training_arguments(
        steps=steps, batch_size=batch_size, lr=lr, seed=seed, precision=precision,
        progress=progress, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
    )  # fmt: skip
    check_float("noise_std", noise_std, 0.0)
    precision = precision or choose_precision()
    seed_everything(seed)
    model = Autoencoder(latent_dim, widths=widths, image_size=world.resolution)
    model = model.to(precision.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)

    def loss_fn(step: int) -> torch.Tensor:
        indices = range(step * batch_size, (step + 1) * batch_size)
        images = world.scenes(indices, split="train").images
        return reconstruction_loss(model, images.to(precision.device), noise_std)

    desc = f"AE L={latent_dim}" + (f" noise {noise_std:g}" if noise_std else "")
    history = train(
        model, loss_fn, steps=steps, optimizer=optimizer, scheduler=schedule,
        precision=precision, progress=progress, desc=desc, checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
    )  # fmt: skip
    return model.eval(), history


@torch.no_grad()
def reconstruct(
    model: Autoencoder,
    images: torch.Tensor,
    noise_std: float = 0.0,
    generator: torch.Generator | None = None,
    batch_size: int = 256,
) -> torch.Tensor:
    """sigmoid(model(add_noise(images))) in eval mode, in batches, on the images'
    device: (N, C, H, W)."""
    _check_images(images)
    check_float("noise_std", noise_std, 0.0)
    check_optional(check_instance, "generator", generator, torch.Generator)
    batch_size = check_int("batch_size", batch_size)
    device, outputs = _model_device(check_module("model", model)), []
    with eval_mode(model):
        for start in range(0, len(images), batch_size):
            noisy = add_noise(
                images[start : start + batch_size].to(device), noise_std, generator
            )
            outputs.append(torch.sigmoid(model(noisy).float()).to(images.device))
    return torch.cat(outputs)


def reconstruction_metrics(
    model: Autoencoder,
    images: torch.Tensor,
    noise_std: float = 0.0,
    generator: torch.Generator | None = None,
    batch_size: int = 256,
) -> dict[str, float]:
    """{"mse": mean squared error over all pixels, "psnr": mean over images of 10
    log10(1 / MSE_image) in dB}.

    With noise_std > 0 the model sees noisy inputs and is scored against the clean
    images.
    """
    _check_images(images)
    # (N, C, H, W)
    predicted = reconstruct(model, images, noise_std, generator, batch_size)
    mse = (predicted - images.float()).square().mean().item()
    return {"mse": mse, "psnr": psnr(predicted, images).mean().item()}


@torch.no_grad()
def encode_features(
    model: Autoencoder, images: torch.Tensor, batch_size: int = 256
) -> torch.Tensor:
    """The codes of `images` in eval mode, in batches: (N, C, H, W) -> (N, L)
    float32 on the images' device."""
    _check_images(images)
    batch_size = check_int("batch_size", batch_size)
    device = _model_device(_check_autoencoder(model))
    with eval_mode(model):
        codes = [
            model.encode(images[start : start + batch_size].to(device))
            .float()
            .to(images.device)
            for start in range(0, len(images), batch_size)
        ]
    return torch.cat(codes)


def _check_probe_data(
    name: str, x: torch.Tensor, y: torch.Tensor, classes: int
) -> None:
    check_tensor(f"{name} features", x, finite=True)
    check_tensor(f"{name} labels", y)
    if x.dim() < 2 or y.dim() != 1 or len(x) != len(y) or len(x) == 0:
        raise ValueError(
            f"{name}: features must be (N, ...) and labels (N,), with N > 0, got "
            f"shapes {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if y.dtype != torch.long:
        raise TypeError(
            f"{name}: labels must be int64 class indices, got {y.dtype}"
        )
    if y.min() < 0 or y.max() >= classes:
        raise ValueError(
            f"{name}: labels must lie in [0, {classes}), got values from "
            f"{y.min().item()} to {y.max().item()}"
        )


def linear_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    classes: int,
    l2: float = 1e-3,
    max_iter: int = 100,
) -> float:
    """Test accuracy of a multinomial logistic regression fitted on (train_x,
    train_y).

    Features (N, ...) are flattened and standardised with the training set's mean
    and standard deviation (a constant feature is only centred). The weights W, b
    minimise, in float64 with L-BFGS from zero,
        mean_i -log softmax(W x_i + b)[y_i] + l2 / 2 ||W||^2,
    a convex problem, so the fit is deterministic.
    """
    check_int("classes", classes, minimum=2)
    check_float("l2", l2, 0.0)
    check_int("max_iter", max_iter)
    _check_probe_data("train", train_x, train_y, classes)
    _check_probe_data("test", test_x, test_y, classes)
    train_x = train_x.flatten(1).double().cpu()  # (N, D)
    test_x = test_x.flatten(1).double().cpu()
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(
            "train and test features differ in size: "
            f"{train_x.shape[1]} and {test_x.shape[1]}"
        )
    mean, std = train_x.mean(0), train_x.std(0)
    # a constant feature: centred, not scaled
    std = torch.where(std > 0, std, torch.ones_like(std))
    # (N, D), zero mean, unit variance
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    # (D, K)
    weight = torch.zeros(
        train_x.shape[1], classes, dtype=torch.float64, requires_grad=True
    )
    bias = torch.zeros(classes, dtype=torch.float64, requires_grad=True)  # (K,)
    optimizer = torch.optim.LBFGS(
        [weight, bias], max_iter=max_iter, line_search_fn="strong_wolfe"
    )
    labels = train_y.cpu()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        # loss = mean cross-entropy + l2 / 2 ||W||^2
        loss = (
            F.cross_entropy(train_x @ weight + bias, labels)
            + 0.5 * l2 * weight.square().sum()
        )
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        predicted = (test_x @ weight + bias).argmax(dim=1)  # (N_test,)
    return (predicted == test_y.cpu()).double().mean().item()


@torch.no_grad()
def decode_random(
    model: Autoencoder,
    n: int,
    generator: torch.Generator | None = None,
    codes: torch.Tensor | None = None,
) -> torch.Tensor:
    """sigmoid(decode(z)) for n random codes: (n, C, H, W).

    z ~ N(0, I), or, given `codes` (M, L) of real images, z ~ N(mean, diag var)
    fitted to them. Nothing trained an AE's codes to fill either distribution, so
    many such z decode to no scene at all.
    """
    check_int("n", n)
    check_optional(check_instance, "generator", generator, torch.Generator)
    device = _model_device(_check_autoencoder(model))
    noise_device = generator.device if generator else device
    eps = torch.randn(n, model.latent_dim, generator=generator, device=noise_device)
    z = eps.to(device)  # (n, L) ~ N(0, I)
    if codes is not None:
        check_tensor("codes", codes, dims=2, finite=True, shape="(M, L)")
        if codes.shape[1] != model.latent_dim or len(codes) < 2:
            raise ValueError(
                f"codes must be (M, {model.latent_dim}) with M >= 2 to fit a "
                f"Gaussian, got {tuple(codes.shape)}"
            )
        codes = codes.float().to(device)
        # z = mu + sigma * eps, per latent dimension
        z = codes.mean(0) + codes.std(0) * z
    with eval_mode(model):
        images = torch.sigmoid(model.decode(z).float())
    return images


@torch.no_grad()
def interpolate_latents(
    model: Autoencoder, a: torch.Tensor, b: torch.Tensor, steps: int
) -> torch.Tensor:
    """Decode z_t = (1 - t) z_a + t z_b for `steps` evenly spaced t in [0, 1]:
    images (steps, C, H, W).

    a, b: single images (C, H, W) or (1, C, H, W).
    """
    check_int("steps", steps, minimum=2)  # both ends are included
    _check_autoencoder(model)
    a, b = _single_image("a", a), _single_image("b", b)
    check_same_shape("a", a, "b", b)
    pair = torch.stack([a, b])  # (2, C, H, W)
    with eval_mode(model):
        z_a, z_b = model.encode(pair.to(_model_device(model))).float()  # (L,) each
        t = torch.linspace(0, 1, steps, device=z_a.device)[:, None]  # (steps, 1)
        z = (1 - t) * z_a + t * z_b  # (steps, L)
        images = torch.sigmoid(model.decode(z).float())
    return images


def _single_image(name: str, image: torch.Tensor) -> torch.Tensor:
    """`image` (C, H, W) or (1, C, H, W) as (C, H, W)."""
    check_tensor(name, image, dims=(3, 4), floating=True, shape="(C, H, W)")
    if image.dim() == 4 and len(image) != 1:
        raise ValueError(
            f"{name} must be a single image (C, H, W) or (1, C, H, W), got shape "
            f"{tuple(image.shape)}"
        )
    return image.reshape(image.shape[-3:])
