"""Latent diffusion's first stage: a KL-regularised convolutional autoencoder from
32x32 images to 8x8x4 latents, and the scale that makes its latents unit-sized.

- R. Rombach et al., "High-Resolution Image Synthesis with Latent Diffusion
  Models", CVPR 2022 (CompVis/latent-diffusion, CompVis/stable-diffusion): a
  spatial latent (downsampling factor f, 4 channels), a KL term of tiny weight
  that keeps the latent space from drifting without making it a VAE's N(0, I);
  the latents multiplied by a scale factor, 0.18215 in Stable Diffusion (about
  1 / their standard deviation), before diffusion sees them. We drop the LPIPS
  and adversarial losses (they need pretrained networks); of their L1
  reconstruction error we keep the squared error, since on our mostly black
  scenes an L1 decoder learns to draw nothing at all (its median answer).
- The posterior N(mu, sigma^2), its reparameterised sample and its closed-form
  KL are chapter 4's (`minigen.models.vae`), applied per latent position.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn

from minigen.core.cache import cache_path, check_settings, check_writable
from minigen.core.profiles import pick
from minigen.core.runtime import Precision, choose_precision, seed_everything
from minigen.core.text import ColumnRepr
from minigen.core.train import History, load_checkpoint, save_checkpoint, train
from minigen.core.validators import (
    check_bool,
    check_instance,
    check_int,
    check_ints,
    check_path,
    check_positive,
    check_tensor,
)
from minigen.data.shapes import ShapesWorld
from minigen.models import clip as clip_models
from minigen.models.vae import gaussian_kl, reparameterize
from minigen.nn.layers import CheckedModule, downsample, norm_act
from minigen.nn.resample import ResizeConvUp

LATENT_CHANNELS = 4  # Stable Diffusion's
SCALE_SCENES = 2000  # training scenes whose latents set the scale factor


def conv3x3(c_in: int, c_out: int) -> nn.Conv2d:
    """A 3x3 convolution that keeps the side: o = i + 2 * 1 - 3 + 1 = i."""
    return nn.Conv2d(c_in, c_out, 3, padding=1)


class KLAutoencoder(CheckedModule):
    """Images (B, 3, S, S) in [-1, 1] <-> latents (B, 4, S / f, S / f), f = 2^n
    for n = len(widths).

    Encoder: a 3x3 convolution, then per level i [GroupNorm-SiLU, 3x3 convolution,
    stride-2 convolution to widths[i]] (chapter 4's blocks), then GroupNorm-SiLU
    and a 3x3 convolution to 2 x 4 channels: the mean and log-variance of the
    posterior at each latent position. The decoder mirrors it with
    resize-convolution (chapter 2's checkerboard-free upsampler).
    `scale` (a buffer, 1 until `set_scale`) is the factor that diffusion's latents
    are multiplied by.
    """

    def __init__(self, widths: Sequence[int] = (32, 64), image_size: int = 32):
        super().__init__()
        self.widths = check_ints("widths", widths)
        self.factor = 2 ** len(self.widths)
        self.image_size = check_int("image_size", image_size)
        if image_size % self.factor:
            raise ValueError(
                f"image_size {image_size} must be divisible by the factor "
                f"2^{len(self.widths)} = {self.factor}"
            )
        inputs = (self.widths[0], *self.widths[:-1])  # each level's input width
        encoder: list[nn.Module] = [conv3x3(3, self.widths[0])]
        for c_in, c_out in zip(inputs, self.widths):
            encoder += [
                norm_act(c_in),
                conv3x3(c_in, c_in),
                downsample(c_in, c_out),
            ]
        top = self.widths[-1]
        encoder += [norm_act(top), conv3x3(top, 2 * LATENT_CHANNELS)]
        self.encoder = nn.Sequential(*encoder)
        decoder: list[nn.Module] = [conv3x3(LATENT_CHANNELS, top)]
        for c_in, c_out in zip(reversed(self.widths), reversed(inputs)):
            decoder += [norm_act(c_in), conv3x3(c_in, c_in), ResizeConvUp(c_in)]
            decoder += [norm_act(c_in), conv3x3(c_in, c_out)]
        decoder += [norm_act(self.widths[0]), conv3x3(self.widths[0], 3)]
        self.decoder = nn.Sequential(*decoder)
        self.register_buffer("scale", torch.tensor(1.0))

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(4, S / f, S / f)."""
        side = self.image_size // self.factor
        return (LATENT_CHANNELS, side, side)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Images (B, 3, S, S) in [-1, 1] -> the posterior's mean and log-variance,
        each (B, 4, S / f, S / f), in float32."""
        mu, logvar = self.encoder(x).float().chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)  # as CompVis: exp() stays finite

    def decode(self, z: Tensor) -> Tensor:
        """Latents (B, 4, S / f, S / f) -> images (B, 3, S, S), about [-1, 1]."""
        return self.decoder(z)

    def forward(
        self, x: Tensor, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """Encode, sample z ~ q(z | x), decode: {"mu", "logvar", "z", "image"}."""
        mu, logvar = self.encode(x)  # (B, 4, s, s) each
        z = reparameterize(mu, logvar, generator)
        return {"mu": mu, "logvar": logvar, "z": z, "image": self.decode(z)}

    def check_inputs(
        self, x: Tensor, generator: torch.Generator | None = None
    ) -> None:
        check_images("x", x, self.image_size)


def check_images(name: str, x: Tensor, side: int) -> None:
    """(B, 3, side, side) float images."""
    check_tensor(name, x, dims=4, floating=True, shape=f"(B, 3, {side}, {side})")
    if tuple(x.shape[1:]) != (3, side, side):
        raise ValueError(
            f"{name} must be images (B, 3, {side}, {side}), got {tuple(x.shape)}"
        )


def first_stage_loss(
    model: KLAutoencoder, x: Tensor, kl_weight: float
) -> dict[str, Tensor]:
    """The batch means of the squared error summed over an image's pixels, of the
    KL summed over its latent positions (chapter 4's gaussian_kl per position), and
    the loss = error + kl_weight * KL."""
    out = model(x)
    error = (out["image"].float() - x).square().flatten(1).sum(dim=1)  # (B,)
    mu, logvar = (z.movedim(1, -1) for z in (out["mu"], out["logvar"]))  # B s s 4
    kl = gaussian_kl(mu, logvar).flatten(1).sum(dim=1)  # (B,) nats
    loss = error.mean() + kl_weight * kl.mean()
    return {"loss": loss, "error": error.mean(), "kl": kl.mean()}


@dataclass(frozen=True)
class FirstStageRecipe(ColumnRepr):
    """How the first stage is trained: Adam on fresh training scenes, cosine
    decay; kl_weight is tiny, as in latent diffusion (1e-6 there)."""

    widths: tuple[int, ...] = (32, 64)
    steps: int = 4000
    batch: int = 32
    lr: float = 1e-3
    kl_weight: float = 1e-6
    seed: int = 0

    def __post_init__(self):
        check_ints("widths", self.widths)
        check_int("steps", self.steps)
        check_int("batch", self.batch)
        check_int("seed", self.seed, 0, 2**32 - 1)
        check_positive("lr", self.lr)
        check_positive("kl_weight", self.kl_weight)


def book_first_stage_recipe(factor: int = 4) -> FirstStageRecipe:
    """Chapter 8's first stage, downsampling factor 4 (8x8 latents) or 8 (4x4),
    in the active profile."""
    if factor not in (4, 8):
        raise ValueError(f"factor must be 4 or 8, got {factor}")
    widths = (32, 64) if factor == 4 else (32, 64, 64)
    return FirstStageRecipe(
        widths=widths,
        steps=pick(smoke=5, cpu=4000, gpu=10_000),
        batch=pick(smoke=4, cpu=32, gpu=64),
    )


def train_first_stage(
    world: ShapesWorld,
    recipe: FirstStageRecipe,
    precision: Precision | None = None,
    progress: bool = True,
) -> tuple[KLAutoencoder, History]:
    """The autoencoder trained on `world`'s training scenes, its scale set from
    the latents of SCALE_SCENES of them; History logs "error" and "kl"."""
    precision = precision or choose_precision()
    seed_everything(recipe.seed)
    model = KLAutoencoder(recipe.widths, world.resolution).to(precision.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, recipe.steps)

    def loss_fn(step: int) -> tuple[Tensor, dict[str, float]]:
        rows = range(step * recipe.batch, (step + 1) * recipe.batch)
        images = 2 * world.scenes(rows).images.to(precision.device) - 1
        terms = first_stage_loss(model, images, recipe.kl_weight)
        return terms["loss"], {
            "error": terms["error"].item(),
            "kl": terms["kl"].item(),
        }

    history = train(
        model, loss_fn, steps=recipe.steps, optimizer=optimizer, scheduler=cosine,
        precision=precision, progress=progress, desc=f"first stage f{model.factor}",
    )  # fmt: skip
    model.eval()
    set_scale(model, world.scenes(SCALE_SCENES, "val").images)
    return model, history


@torch.no_grad()
def latent_std(model: KLAutoencoder, images: Tensor, seed: int = 0) -> float:
    """The standard deviation of the latents z ~ q(z | x) of `images` (N, 3, S,
    S) in [0, 1], over every image, channel and position."""
    check_instance("model", model, KLAutoencoder)
    check_images("images", images, model.image_size)
    device = model.scale.device
    generator = torch.Generator(device).manual_seed(seed)
    latents = [
        model(2 * chunk.to(device) - 1, generator)["z"]
        for chunk in images.split(500)
    ]
    return torch.cat(latents).std().item()


def set_scale(model: KLAutoencoder, images: Tensor) -> float:
    """Set model.scale = 1 / the standard deviation of the latents of `images`
    (latent diffusion's scale_by_std); returns it."""
    scale = 1.0 / latent_std(model, images)
    model.scale.fill_(scale)
    return scale


@torch.no_grad()
def encode(model: KLAutoencoder, images: Tensor) -> Tensor:
    """Images (B, 3, S, S) in [0, 1] -> the scaled posterior means
    scale * mu, (B, 4, S / f, S / f): what diffusion sees."""
    check_instance("model", model, KLAutoencoder)
    check_images("images", images, model.image_size)
    device = model.scale.device
    mu, _ = model.encode(2 * images.to(device) - 1)
    return model.scale * mu


@torch.no_grad()
def decode(model: KLAutoencoder, latents: Tensor) -> Tensor:
    """Scaled latents (B, 4, S / f, S / f) -> images (B, 3, S, S) in [0, 1] on the
    CPU: decode(latents / scale)."""
    check_instance("model", model, KLAutoencoder)
    shape = model.latent_shape
    check_tensor("latents", latents, dims=4, floating=True, shape=f"(B, {shape})")
    if tuple(latents.shape[1:]) != shape:
        raise ValueError(
            f"latents must be (B, {shape}), got {tuple(latents.shape)}"
        )
    images = model.decode(latents.to(model.scale.device).float() / model.scale)
    return ((images.float() + 1) / 2).clamp(0, 1).cpu()


def load_first_stage(
    recipe: FirstStageRecipe | None = None,
    world: ShapesWorld | None = None,
    path: str | Path | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> KLAutoencoder:
    """The first stage of `recipe` (default `book_first_stage_recipe()`) trained on
    `world` (default chapter 6's world): loaded from `path` (default in the minigen
    cache), or trained and saved there first. Its History is its `.history`."""
    recipe = book_first_stage_recipe() if recipe is None else recipe
    check_instance("recipe", recipe, FirstStageRecipe)
    world = clip_models.book_world() if world is None else world
    check_instance("world", world, ShapesWorld)
    check_bool("progress", progress)
    settings = (asdict(world), asdict(recipe))
    factor = 2 ** len(recipe.widths)
    if path is None:
        path = cache_path(f"first-stage-f{factor}-{recipe.steps}steps", settings)
    path = check_path("path", path)
    precision = choose_precision(device)
    if not path.exists():
        check_writable(path.parent, "the trained first stage")
        model, history = train_first_stage(world, recipe, precision, progress)
        save_checkpoint(
            path, model, history=history, extra={"settings": repr(settings)}
        )
    model = KLAutoencoder(recipe.widths, world.resolution).to(precision.device)
    state = load_checkpoint(path, model, map_location=precision.device)
    check_settings(path, state["extra"]["settings"], settings, "a first stage")
    model.history = state["history"]
    return model.eval()
