"""Upsampling by 2: transposed convolution, pixel shuffle, resize-convolution, and
their checkerboards.

Implements
- transposed convolution as zero insertion followed by an ordinary convolution, and
  as a scatter-add, after V. Dumoulin, F. Visin, "A guide to convolution arithmetic
  for deep learning", arXiv:1603.07285 (2016), with the conventions of
  torch.nn.functional.conv_transpose2d;
- pixel shuffle, W. Shi et al., "Real-Time Single Image and Video Super-Resolution
  Using an Efficient Sub-Pixel Convolutional Neural Network", CVPR 2016, and its
  ICNR initialisation, A. Aitken et al., "Checkerboard artifact free sub-pixel
  convolution", arXiv:1707.02937 (2017);
- resize-convolution and the checkerboard artifacts of transposed convolution, A.
  Odena, V. Dumoulin, C. Olah, "Deconvolution and Checkerboard Artifacts", Distill
  (2016), measured by `checkerboard_score`.
"""

from __future__ import annotations

from pathlib import Path

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
    check_tensor,
)
from minigen.data.shapes import ShapesWorld
from minigen.eval.metrics import psnr
from minigen.nn.layers import CheckedModule
from minigen.nn.resample import make_upsampler
from minigen.ops.upsample import checkerboard_score


def artifact_scores_of(
    module: nn.Module, channels: int, size: int = 16, value: float = 1.0
) -> dict[str, float]:
    """Checkerboard scores of one module at a constant input
    (B=1, `channels`, size, size) of `value`.

    "output": the score of the module's output;
    "gradient": the score of the gradient at the input when a constant gradient (all
    ones) is backpropagated from the output.
    value: any finite number (a constant input of any level shows the pattern).
    """
    check_module("module", module)
    check_int("channels", channels)
    check_int("size", size, maximum=4096)
    check_float("value", value)
    parameter = next(module.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    x = torch.full(
        (1, channels, size, size), float(value), device=device, requires_grad=True
    )
    y = _run(module, x, "a constant input")
    # dL/dx with dL/dy = 1
    (gradient,) = torch.autograd.grad(y, x, grad_outputs=torch.ones_like(y))
    return {
        "output": checkerboard_score(y.detach()).item(),
        "gradient": checkerboard_score(gradient).item(),
    }


def artifact_scores(
    name: str, channels: int = 8, size: int = 16, seeds: tuple[int, ...] = (0, 1, 2)
) -> dict[str, float]:
    """artifact_scores_of a freshly initialised upsampler `name`, averaged over the
    initialisation seeds."""
    seeds = check_ints(
        "seeds", seeds, minimum=0
    )  # at least one seed to average over
    totals = {"output": 0.0, "gradient": 0.0}
    for seed in seeds:
        torch.manual_seed(seed)
        scores = artifact_scores_of(make_upsampler(name, channels), channels, size)
        totals = {key: totals[key] + scores[key] for key in totals}
    return {key: total / len(seeds) for key, total in totals.items()}


# ----------------------------------------------------------------------------------
# A small super-resolution model: 16x16 -> 32x32
# ----------------------------------------------------------------------------------


class Upsampler2x(CheckedModule):
    """conv 3x3 (3 -> C), ReLU, the x2 upsampler `name`, ReLU, conv 3x3 (C -> 3):
    (B, 3, H, W) -> (B, 3, 2H, 2W)."""

    def __init__(self, name: str, channels: int = 32):
        super().__init__()
        self.name = name
        channels = check_int("channels", channels)
        self.layers = nn.Sequential(
            nn.Conv2d(3, channels, 3, padding=1),
            nn.ReLU(),
            make_upsampler(name, channels),
            nn.ReLU(),
            nn.Conv2d(channels, 3, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def check_inputs(self, x: torch.Tensor) -> None:
        check_tensor("x", x, dims=4, floating=True, shape="(B, 3, H, W)")
        if x.shape[1] != 3:
            raise ValueError(
                f"x must have shape (B, 3, H, W), got {tuple(x.shape)}"
            )


def downsample(images: torch.Tensor) -> torch.Tensor:
    """The low-resolution input the models learn to undo: 2x2 average pooling,
    (B, 3, H, W) -> (B, 3, H/2, W/2)."""
    check_tensor("images", images, dims=4, floating=True, shape="(B, 3, H, W)")
    if images.shape[-2] % 2 or images.shape[-1] % 2:
        raise ValueError(
            "images must have an even height and width to halve them, got shape "
            f"{tuple(images.shape)}"
        )
    return F.avg_pool2d(images, 2)


def train_upsampler(
    name: str,
    world: ShapesWorld,
    steps: int,
    batch_size: int = 64,
    lr: float = 2e-3,
    channels: int = 32,
    seed: int = 0,
    precision: Precision | None = None,
    progress: bool = True,
    checkpoint: str | Path | None = None,
    checkpoint_every: int | None = None,
) -> tuple[Upsampler2x, History]:
    """Train Upsampler2x(name) to map downsample(image) back to the image (MSE), on
    fresh renders every step.

    AdamW with a cosine learning-rate decay; split "train" only (evaluate on "val"
    or "test").
    checkpoint: a file to resume from and save to (every `checkpoint_every` steps).
    """
    check_instance("world", world, ShapesWorld)
    check_training_arguments(
        steps=steps, batch_size=batch_size, lr=lr, seed=seed, precision=precision,
        progress=progress, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
    )  # fmt: skip
    if world.resolution % 2:
        raise ValueError(
            "the world's resolution must be even to halve it, got "
            f"{world.resolution}"
        )
    precision = precision or choose_precision()
    seed_everything(seed)
    model = Upsampler2x(name, channels).to(precision.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)

    def loss_fn(step: int) -> torch.Tensor:
        indices = range(step * batch_size, (step + 1) * batch_size)
        images = world.scenes(indices, split="train").images
        images = images.to(precision.device)  # (B, 3, H, W)
        return F.mse_loss(model(downsample(images)).float(), images)

    history = train(
        model, loss_fn, steps=steps, optimizer=optimizer, scheduler=schedule,
        precision=precision, progress=progress, desc=name, checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
    )  # fmt: skip
    return model.eval(), history


@torch.no_grad()
def restore(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """`model`'s x2 restoration of `downsample(images)`, in eval mode and fp32,
    clamped to [0, 1]: (N, 3, H, W) -> (N, 3, H, W), on the model's device."""
    check_module("model", model)
    check_tensor("images", images, dims=4, floating=True, shape="(N, 3, H, W)")
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    with eval_mode(model):
        restored = _run(model, downsample(images.to(device)), "downsampled scenes")
    return restored.float().clamp(0, 1)


def evaluate_upsampler(model: nn.Module, images: torch.Tensor) -> dict[str, float]:
    """What chapter 2 measures of a trained x2 upsampler on `images` (N, 3, H, W) in
    [0, 1], restored from `downsample(images)`:

    "psnr": the mean PSNR (dB) of the restorations (`restore`);
    "score": their mean checkerboard score;
    "grey": the checkerboard score of the model's output for a flat grey input.
    """
    restored = restore(model, images)  # checks model and images
    with eval_mode(model):
        grey = artifact_scores_of(model, channels=images.shape[1], value=0.5)
    return {
        "psnr": psnr(restored, images.to(restored.device)).mean().item(),
        "score": checkerboard_score(restored).mean().item(),
        "grey": grey["output"],
    }


def _run(module: nn.Module, x: torch.Tensor, what: str) -> torch.Tensor:
    """module(x); a module that cannot take x fails with a message saying what x
    was."""
    try:
        return module(x)
    except torch.OutOfMemoryError:
        raise
    except RuntimeError as error:  # e.g. a module for another number of channels
        raise ValueError(
            f"the module {type(module).__name__} failed on {what} of shape "
            f"{tuple(x.shape)}: {error}"
        ) from error
