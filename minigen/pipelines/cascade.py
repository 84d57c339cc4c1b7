"""The cascade's second stage: a diffusion upsampler from 32x32 to 64x64 images.

- A. Ramesh et al., "Hierarchical Text-Conditional Image Generation with CLIP
  Latents", arXiv:2204.06125, 2022 (unCLIP): after the decoder, diffusion
  upsamplers conditioned on the low-resolution image only, trained with its
  degradation (Gaussian blur for the first upsampler), sampled without guidance.
- C. Saharia et al., "Image Super-Resolution via Iterative Refinement" (SR3),
  arXiv:2104.07636, 2021: the low-resolution image, upsampled by bicubic
  interpolation, concatenated to the noisy image as extra input channels.
- J. Ho et al., "Cascaded Diffusion Models for High Fidelity Image Generation",
  JMLR 2022: conditioning augmentation, so that the upsampler also accepts the
  imperfect images of the stage before it.

The low-resolution training images are the 64x64 scenes average-pooled 2x2, which
is how the world's 32x32 renders relate to its 64x64 ones.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from minigen.core.cache import cache_path, check_settings, check_writable
from minigen.core.profiles import pick
from minigen.core.runtime import Precision, choose_precision, seed_everything
from minigen.core.text import ColumnRepr
from minigen.core.train import History, load_checkpoint, save_checkpoint
from minigen.core.validators import (
    check_bool,
    check_instance,
    check_int,
    check_path,
    check_positive,
    check_tensor,
)
from minigen.data.shapes import ShapesWorld
from minigen.diffusion.sampling import SamplerOptions
from minigen.diffusion.schedule import NoiseSchedule
from minigen.diffusion.training import train_diffusion
from minigen.eval.harness import sample_images
from minigen.models import clip as clip_models
from minigen.models.unet import UNet
from minigen.nn.layers import CheckedModule
from minigen.ops.alias import gaussian_taps

FACTOR = 2  # 32 -> 64
SCHEDULE_STEPS = 1000


@dataclass(frozen=True)
class UpsamplerRecipe(ColumnRepr):
    """How the upsampler is trained: chapter 5's recipe (v objective, min-SNR 5,
    EMA 0.995) on 64x64 scenes, their low-resolution versions degraded by a
    Gaussian blur of a random width up to max_blur (in low-resolution pixels) and
    Gaussian noise of a random standard deviation up to max_noise."""

    steps: int = 500
    batch: int = 8
    channels: int = 16
    lr: float = 2e-3
    max_blur: float = 0.6
    max_noise: float = 0.02
    seed: int = 0

    def __post_init__(self):
        for field in fields(self):
            value = getattr(self, field.name)
            if field.type == "float":
                check_positive(field.name, value)
            else:
                check_int(field.name, value, 0 if field.name == "seed" else 1)


def book_upsampler_recipe() -> UpsamplerRecipe:
    """Chapter 7's upsampler recipe in the active profile."""
    return pick(
        smoke=UpsamplerRecipe(steps=5, batch=4, channels=8),
        cpu=UpsamplerRecipe(),
        gpu=UpsamplerRecipe(steps=10_000, batch=64, channels=32, lr=1e-3),
    )


class SuperResUNet(CheckedModule):
    """A U-Net denoiser of 64x64 images conditioned on their 32x32 version: the
    condition, upsampled by bicubic interpolation, is concatenated to the noisy
    image as three more input channels (SR3). Fully convolutional, no attention.

    forward(x_t (B, 3, S, S), t (B,), low (B, 3, S/2, S/2)) -> (B, 3, S, S).
    """

    def __init__(self, image_size: int = 64, base_channels: int = 16):
        super().__init__()
        self.in_channels, self.image_size = 3, check_int("image_size", image_size)
        if image_size % FACTOR:
            raise ValueError(f"image_size must be even, got {image_size}")
        self.unet = UNet(
            in_channels=6, out_channels=3, base_channels=base_channels,
            channel_mults=(1, 2, 2), attention_levels=(), image_size=image_size,
        )  # fmt: skip

    def forward(self, x_t: Tensor, t: Tensor, low: Tensor) -> Tensor:
        up = F.interpolate(
            low.to(x_t.dtype), scale_factor=FACTOR, mode="bicubic",
            align_corners=False,
        )  # (B, 3, S, S)  # fmt: skip
        return self.unet(torch.cat([x_t, up], dim=1), t)  # (B, 3, S, S)

    def check_inputs(self, x_t: Tensor, t: Tensor, low: Tensor) -> None:
        side = self.image_size // FACTOR
        check_tensor("low", low, floating=True, shape=f"(B, 3, {side}, {side})")
        if tuple(low.shape[1:]) != (3, side, side) or len(low) != len(x_t):
            raise ValueError(
                f"low must be {len(x_t)} images (B, 3, {side}, {side}), one per "
                f"noisy image, got {tuple(low.shape)}"
            )


def downsample(images: Tensor) -> Tensor:
    """(B, 3, S, S) -> (B, 3, S/2, S/2): the mean of each 2x2 block (how the world's
    32x32 renders relate to its 64x64 ones)."""
    check_tensor("images", images, floating=True, dims=4, shape="(B, 3, S, S)")
    return F.avg_pool2d(images, FACTOR)


def gaussian_blur(images: Tensor, sigmas: Tensor) -> Tensor:
    """Each image (B, C, H, W) blurred by a Gaussian of its own standard deviation
    sigmas[i] in pixels (0: unchanged), separably, with reflect padding."""
    check_tensor("images", images, floating=True, dims=4, shape="(B, C, H, W)")
    check_tensor("sigmas", sigmas, dims=1, finite=True, shape="(B,)")
    if len(sigmas) != len(images) or (sigmas < 0).any():
        raise ValueError(
            f"sigmas must be {len(images)} deviations >= 0 (one per image), "
            f"got {sigmas.tolist()}"
        )
    blurred = []
    for image, sigma in zip(images, sigmas.tolist()):
        if sigma == 0:
            blurred.append(image)
            continue
        taps = gaussian_taps(sigma).to(image)  # (n,)
        radius = len(taps) // 2
        channels = len(image)
        rows = taps.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
        padded = F.pad(image[None], (radius,) * 4, mode="reflect")
        out = F.conv2d(padded, rows, groups=channels)  # along the rows
        out = F.conv2d(out, rows.transpose(2, 3), groups=channels)  # the columns
        blurred.append(out[0])
    return torch.stack(blurred)


def degrade(
    low: Tensor, max_blur: float, max_noise: float, generator: torch.Generator
) -> Tensor:
    """The conditioning augmentation: each low-resolution image blurred by a
    Gaussian of standard deviation ~ U(0, max_blur) px and given Gaussian noise of
    standard deviation ~ U(0, max_noise)."""
    batch = len(low)
    sigmas = torch.rand(batch, generator=generator) * max_blur
    noise_std = torch.rand(batch, 1, 1, 1, generator=generator) * max_noise
    noise = torch.randn(low.shape, generator=generator) * noise_std
    return gaussian_blur(low, sigmas.to(low.device)) + noise.to(low.device)


def upsampler_batches(world: ShapesWorld, recipe: UpsamplerRecipe):
    """step -> (64x64 training scenes in [-1, 1], their degraded 32x32 versions
    in [-1, 1]); `world` renders at 64x64."""
    generator = torch.Generator().manual_seed(recipe.seed + 5)

    @torch.no_grad()
    def batch(step: int) -> tuple[Tensor, Tensor]:
        indices = torch.arange(step * recipe.batch, (step + 1) * recipe.batch)
        high = 2 * world.scenes(indices).images - 1  # (B, 3, 64, 64)
        low = degrade(
            downsample(high), recipe.max_blur, recipe.max_noise, generator
        )
        return high, low

    return batch


def train_upsampler(
    world: ShapesWorld,
    recipe: UpsamplerRecipe,
    precision: Precision | None = None,
    progress: bool = True,
) -> tuple[SuperResUNet, History]:
    """The upsampler trained on `world`'s training scenes (rendered at its
    resolution); its EMA copy and History."""
    seed_everything(recipe.seed)
    model = SuperResUNet(world.resolution, recipe.channels)
    return train_diffusion(
        model, NoiseSchedule.cosine(SCHEDULE_STEPS),
        upsampler_batches(world, recipe), steps=recipe.steps, objective="v",
        lr=recipe.lr, warmup_steps=min(100, recipe.steps - 1), min_snr_gamma=5.0,
        ema_decay=0.995, precision=precision, progress=progress,
        seed=recipe.seed, desc="upsampler",
    )  # fmt: skip


@torch.no_grad()
def upsample(
    model: SuperResUNet, low: Tensor, steps: int = 25, seed: int = 0
) -> Tensor:
    """Images (B, 3, S/2, S/2) in [0, 1] -> (B, 3, S, S) in [0, 1], by DDIM with
    `steps` steps (no guidance, as unCLIP's upsamplers)."""
    check_instance("model", model, SuperResUNet)
    check_tensor("low", low, floating=True, dims=4, shape="(B, 3, S/2, S/2)")
    if low.min() < 0 or low.max() > 1:
        raise ValueError("low must be images in [0, 1]")
    device = next(model.parameters()).device
    options = SamplerOptions(objective="v", cond=(2 * low - 1).to(device))
    images, _ = sample_images(
        model, NoiseSchedule.cosine(SCHEDULE_STEPS), len(low), options,
        steps=steps, seed=seed, batch_size=100,
    )  # fmt: skip
    return images


def load_upsampler(
    recipe: UpsamplerRecipe | None = None,
    world: ShapesWorld | None = None,
    path: str | Path | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> SuperResUNet:
    """The upsampler of `recipe` (default `book_upsampler_recipe()`) trained on
    `world` (default chapter 6's world) rendered at 64x64: loaded from `path`
    (default in the minigen cache), or trained and saved there first. Its History
    is its `.history`."""
    recipe = book_upsampler_recipe() if recipe is None else recipe
    check_instance("recipe", recipe, UpsamplerRecipe)
    world = clip_models.book_world() if world is None else world
    check_instance("world", world, ShapesWorld)
    check_bool("progress", progress)
    world = dataclasses.replace(world, resolution=FACTOR * world.resolution)
    settings = (asdict(world), asdict(recipe))
    if path is None:
        path = cache_path(f"upsampler-{recipe.steps}steps", settings)
    path = check_path("path", path)
    precision = choose_precision(device)
    if not path.exists():
        check_writable(path.parent, "the trained upsampler")
        model, history = train_upsampler(world, recipe, precision, progress)
        save_checkpoint(
            path, model, history=history, extra={"settings": repr(settings)}
        )
    model = SuperResUNet(world.resolution, recipe.channels).to(precision.device)
    state = load_checkpoint(path, model, map_location=precision.device)
    check_settings(path, state["extra"]["settings"], settings, "an upsampler")
    model.history = state["history"]
    return model.eval()
