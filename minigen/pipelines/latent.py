"""Stable Diffusion in miniature: diffusion on the first stage's 8x8x4 latents, a
U-Net that cross-attends to a text encoder's token states, classifier-free
guidance, img2img and inpainting.

- R. Rombach et al., "High-Resolution Image Synthesis with Latent Diffusion
  Models", CVPR 2022 (CompVis/latent-diffusion, CompVis/stable-diffusion): the
  U-Net on scaled latents, its SpatialTransformers reading the text, 10% of the
  captions dropped for guidance; the text encoder frozen (Stable Diffusion's CLIP)
  or trained with the U-Net (the LDM text-to-image model's own); img2img by
  noising a latent to t_enc = strength x steps and denoising from there; the
  inpainting model's extra inputs (masked latent and mask, zero-initialised).
- "Scaled linear" betas, linspace(sqrt(0.00085), sqrt(0.012))^2 over 1000 steps,
  and the v objective of Stable Diffusion 2 (T. Salimans, J. Ho, "Progressive
  Distillation for Fast Sampling of Diffusion Models", ICLR 2022).
- Inpainting by replacing the known region with the known latent noised to the
  current step, after every step: the blended sampling of CompVis's
  latent-diffusion, A. Lugmayr et al. "RePaint", CVPR 2022 without resampling.

A prompt reaches the model as token ids (B, L); the model's NULL condition is the
ids of the empty caption.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minigen.core.cache import cache_path, check_settings, check_writable
from minigen.core.profiles import pick
from minigen.core.runtime import Precision, choose_precision, seed_everything
from minigen.core.text import ColumnRepr
from minigen.core.train import (
    EMA,
    History,
    load_checkpoint,
    save_checkpoint,
    train,
    warmup_cosine,
)
from minigen.core.validators import (
    check_bool,
    check_choice,
    check_float,
    check_instance,
    check_int,
    check_path,
    check_positive,
    check_probability,
    check_tensor,
)
from minigen.data import captions
from minigen.data.shapes import SPLITS, ShapesWorld
from minigen.diffusion.objectives import diffusion_loss
from minigen.diffusion.sampling import (
    SamplerOptions,
    ddim_step,
    ddim_timesteps,
    predict_eps_and_x0,
)
from minigen.diffusion.schedule import NoiseSchedule, q_sample
from minigen.diffusion.training import train_diffusion
from minigen.models import clip as clip_models
from minigen.models.unet import UNet
from minigen.nn.embeddings import TokenStates, where_condition
from minigen.pipelines import first_stage
from minigen.pipelines.first_stage import KLAutoencoder
from minigen.tokenizers.bpe import BPETokenizer

TEXT_MODES = (
    "frozen",
    "joint",
)  # chapter 6's encoder as is, or a fresh one trained
SCHEDULE_STEPS = 1000


def scaled_linear_schedule(steps: int = SCHEDULE_STEPS) -> NoiseSchedule:
    """Stable Diffusion's betas: linspace(sqrt(0.00085), sqrt(0.012), steps)^2."""
    steps = check_int("steps", steps)
    roots = torch.linspace(0.00085**0.5, 0.012**0.5, steps, dtype=torch.float64)
    return NoiseSchedule(roots.square())


@dataclass(frozen=True)
class LatentRecipe(ColumnRepr):
    """How the latent U-Net is trained: the v objective with min-SNR 5, EMA, AdamW
    with warm-up and cosine decay, on `scenes` captioned training scenes (English
    and Chinese alternating), `text` "frozen" (chapter 6's CLIP text encoder) or
    "joint" (a fresh encoder of the same shape trained with the U-Net)."""

    text: str = "frozen"
    steps: int = 1500
    batch: int = 64
    channels: int = 32
    lr: float = 1e-3
    cond_dropout: float = 0.1
    scenes: int = 20_000
    inpaint_steps: int = 500
    seed: int = 0

    def __post_init__(self):
        check_choice("text", self.text, TEXT_MODES)
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name == "cond_dropout":
                check_probability(field.name, value)
            elif field.type == "float":
                check_positive(field.name, value)
            elif field.name == "seed":
                check_int("seed", value, 0, 2**32 - 1)
            elif field.type == "int":
                check_int(field.name, value)
        check_int("batch", self.batch, maximum=self.scenes)
        if self.channels % 8:
            raise ValueError(
                f"channels must be a multiple of 8, got {self.channels}"
            )


def book_latent_recipe(text: str = "frozen", seed: int = 0) -> LatentRecipe:
    """Chapter 8's recipe in the active profile (the defaults in the cpu one)."""
    return pick(
        smoke=LatentRecipe(
            text, steps=5, batch=8, channels=16, scenes=64, inpaint_steps=3,
            seed=seed,
        ),
        cpu=LatentRecipe(text, seed=seed),
        gpu=LatentRecipe(
            text, steps=10_000, batch=128, channels=64, scenes=100_000,
            inpaint_steps=2000, seed=seed,
        ),
    )  # fmt: skip


# ----------------------------------------------------------------------------------
# The data: captioned scenes as latents and token ids


@dataclass
class LatentScenes:
    """Scenes as latent diffusion sees them: scaled latents and caption ids."""

    latents: Tensor  # (N, 4, s, s) scaled posterior means
    tokens: Tensor  # (N, L) caption ids
    texts: list[str]  # N captions

    def __len__(self) -> int:
        return len(self.texts)


@torch.no_grad()
def encode_scenes(
    autoencoder: KLAutoencoder,
    tokenizer: BPETokenizer,
    world: ShapesWorld,
    n: int,
    split: str = "train",
    languages: Sequence[str] = captions.LANGUAGES,
    batch_size: int = 500,
) -> LatentScenes:
    """Scenes 0..n-1 of `split`, scene i captioned in languages[i % len] with its
    drawn phrasing: their scaled latents and caption ids (on the CPU)."""
    check_instance("autoencoder", autoencoder, KLAutoencoder)
    check_choice("split", split, SPLITS)
    for language in languages:
        check_choice("every language", language, captions.LANGUAGES)
    latents, texts = [], []
    for start in range(0, check_int("n", n), check_int("batch_size", batch_size)):
        rows = torch.arange(start, min(start + batch_size, n))
        scenes = world.scenes(rows, split)
        language = [languages[i % len(languages)] for i in rows.tolist()]
        draws = world.phrasing_draws(rows, split)
        texts += captions.captions(world, scenes, language, draws)
        latents.append(first_stage.encode(autoencoder, scenes.images).cpu())
    tokens = tokenizer(texts, clip_models.CAPTION_CONTEXT)
    return LatentScenes(torch.cat(latents), tokens, texts)


# ----------------------------------------------------------------------------------
# The model: text -> token states -> a U-Net on latents that cross-attends to them


class TextToImageUNet(nn.Module):
    """Noisy latents (B, C, s, s), timesteps (B,) and caption ids (B, L) ->
    (B, 4, s, s): the ids through the text encoder to token states, which every
    SpatialTransformer of the U-Net cross-attends to. With train_text=False the
    encoder is frozen (no gradient reaches it). The NULL condition is the ids of
    the empty caption, so guidance contrasts a prompt with no text at all."""

    def __init__(
        self,
        unet: UNet,
        text_encoder: clip_models.TextEncoder,
        null_tokens: Tensor,
        train_text: bool,
    ):
        super().__init__()
        self.unet, self.text_encoder = unet, text_encoder
        self.train_text = check_bool("train_text", train_text)
        text_encoder.requires_grad_(train_text)
        check_tensor("null_tokens", null_tokens, dims=2, shape="(1, L) ids")
        self.register_buffer("null_tokens", null_tokens)
        self.in_channels, self.image_size = unet.in_channels, unet.image_size

    def null_cond(
        self, batch: int, device: torch.device | str | None = None
    ) -> Tensor:
        """The empty caption's ids, (batch, L)."""
        return self.null_tokens.expand(batch, -1).to(device)

    def text_states(self, tokens: Tensor) -> TokenStates:
        """The text encoder's token states (B, L', width) with their mask."""
        with torch.set_grad_enabled(self.train_text and torch.is_grad_enabled()):
            return self.text_encoder.token_states(tokens)

    def forward(self, x: Tensor, t: Tensor | int, tokens: Tensor) -> Tensor:
        return self.unet(x, t, self.text_states(tokens))  # (B, 4, s, s)


def build_model(
    recipe: LatentRecipe,
    text_encoder: clip_models.TextEncoder,
    null_tokens: Tensor,
    latent_side: int,
    in_channels: int = first_stage.LATENT_CHANNELS,
    out_channels: int = first_stage.LATENT_CHANNELS,
) -> TextToImageUNet:
    """The latent U-Net of `recipe`: two levels (s and s / 2), a SpatialTransformer
    after every residual block of the coarser level and in the middle, x and y
    input channels (CoordConv); in_channels 9 for the inpainting model (latent,
    masked latent, mask)."""
    unet = UNet(
        in_channels=in_channels,
        out_channels=out_channels,
        base_channels=recipe.channels,
        channel_mults=(1, 2),
        attention_levels=(1,),
        image_size=latent_side,
        text_dim=text_encoder.final_norm.normalized_shape[0],
        coordinates=True,
    )
    return TextToImageUNet(unet, text_encoder, null_tokens, recipe.text == "joint")


def text_encoder_for(
    recipe: LatentRecipe, clip: clip_models.CLIP
) -> clip_models.TextEncoder:
    """Chapter 6's text encoder (a copy) for "frozen"; for "joint", a fresh one of
    the same shape, seeded by the recipe."""
    encoder = clip.text_encoder
    if recipe.text == "frozen":
        return copy.deepcopy(encoder)
    torch.manual_seed(recipe.seed + 7)
    return clip_models.TextEncoder(
        encoder.vocabulary_size, encoder.context_length,
        width=encoder.final_norm.normalized_shape[0], layers=len(encoder.blocks),
        heads=encoder.blocks[0].attention.heads,
        embed_dim=encoder.projection.out_features,
    )  # fmt: skip


def latent_batches(data: LatentScenes, batch: int, seed: int):
    """step -> (`batch` random latents of `data`, their caption ids)."""
    generator = torch.Generator().manual_seed(seed + 11)

    def next_batch(step: int) -> tuple[Tensor, Tensor]:
        rows = torch.randint(len(data), (batch,), generator=generator)
        return data.latents[rows], data.tokens[rows]

    return next_batch


def train_latent(
    model: TextToImageUNet,
    data: LatentScenes,
    recipe: LatentRecipe,
    precision: Precision | None = None,
    progress: bool = True,
) -> tuple[TextToImageUNet, History]:
    """The latent U-Net (and, for "joint", its text encoder) trained on `data`;
    returns its EMA copy and the History."""
    return train_diffusion(
        model, scaled_linear_schedule(), latent_batches(data, recipe.batch,
        recipe.seed), steps=recipe.steps, objective="v", lr=recipe.lr,
        warmup_steps=min(100, recipe.steps - 1), min_snr_gamma=5.0,
        cond_dropout=recipe.cond_dropout, ema_decay=0.995, precision=precision,
        progress=progress, seed=recipe.seed, desc=f"latent U-Net ({recipe.text})",
    )  # fmt: skip


# ----------------------------------------------------------------------------------
# Sampling: text -> latent, img2img, inpainting by blending


@torch.no_grad()
def denoise(
    model: nn.Module,
    x: Tensor,
    times: Sequence[int],
    options: SamplerOptions,
    known: Tensor | None = None,
    mask: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Deterministic DDIM from x at times[0] down through `times` to the clean
    latent. With `known` latents and a `mask` (1 = generate, 0 = keep), after every
    step the kept region is replaced by the known latent noised to that step
    (exactly the known latent at the end)."""
    schedule = scaled_linear_schedule()
    for t, t_prev in zip(times, [*times[1:], -1]):
        steps = torch.full((len(x),), t, device=x.device, dtype=torch.long)
        eps, x0 = predict_eps_and_x0(model, schedule, x, steps, options)
        x = ddim_step(schedule, x, eps, x0, t, t_prev, eta=0.0)
        if known is not None:
            x = mask * x + (1 - mask) * noised(known, t_prev, generator)
    return x


def noised(known: Tensor, t: int, generator: torch.Generator | None) -> Tensor:
    """q_sample of `known` at step t (t = -1: `known` itself)."""
    if t < 0:
        return known
    noise = torch.randn(known.shape, generator=generator).to(known)
    steps = torch.full((len(known),), t, device=known.device, dtype=torch.long)
    return q_sample(scaled_linear_schedule(), known, steps, noise)


def img2img_steps(strength: float, steps: int) -> int:
    """How many of the `steps` DDIM steps img2img runs: t_enc = int(strength x
    steps), from the t_enc-th last timestep down (strength 1: all, from noise)."""
    strength = check_float("strength", strength, 0.0, 1.0)
    return int(strength * check_int("steps", steps))


@dataclass
class LatentDiffusion:
    """The chain: caption ids -> latent U-Net (DDIM, guidance) -> first-stage
    decoder -> image. `inpainter`, when given, is the model with the extra inputs
    (`inpaint_model`)."""

    model: TextToImageUNet
    autoencoder: KLAutoencoder
    tokenizer: BPETokenizer
    steps: int = 25
    guidance: float = 3.0
    inpainter: TextToImageUNet | None = None

    def tokens(self, prompts: Sequence[str]) -> Tensor:
        """Prompts -> caption ids (B, L) on the model's device."""
        ids = self.tokenizer(list(prompts), clip_models.CAPTION_CONTEXT)
        return ids.to(self.model.null_tokens.device)

    def options(
        self, prompts: Sequence[str], guidance: float | None
    ) -> SamplerOptions:
        """Guided v-prediction, x0 not clipped (latents are not in [-1, 1])."""
        guidance = self.guidance if guidance is None else guidance
        return SamplerOptions("v", self.tokens(prompts), guidance, clip=None)

    def noise(self, n: int, seed: int) -> Tensor:
        generator = torch.Generator().manual_seed(seed)
        shape = (n, *self.autoencoder.latent_shape)
        return torch.randn(shape, generator=generator).to(
            self.model.null_tokens.device
        )

    def latents(
        self, prompts: Sequence[str], guidance: float | None = None, seed: int = 0
    ) -> Tensor:
        """Prompts -> latents (B, 4, s, s), from noise seeded by `seed`."""
        times = ddim_timesteps(SCHEDULE_STEPS, self.steps)
        x = self.noise(len(prompts), seed)
        return denoise(self.model, x, times, self.options(prompts, guidance))

    def generate(
        self, prompts: Sequence[str], guidance: float | None = None, seed: int = 0
    ) -> Tensor:
        """Prompts -> images (B, 3, S, S) in [0, 1] on the CPU."""
        return first_stage.decode(
            self.autoencoder, self.latents(prompts, guidance, seed)
        )

    def img2img_latents(
        self,
        latents: Tensor,
        prompts: Sequence[str],
        strength: float,
        guidance: float | None = None,
        seed: int = 0,
    ) -> Tensor:
        """Source latents noised to the t_enc-th last timestep (`img2img_steps`) and
        denoised towards the prompts; strength 0 returns the source."""
        count = img2img_steps(strength, self.steps)
        if count == 0:
            return latents.clone()
        times = ddim_timesteps(SCHEDULE_STEPS, self.steps)[-count:]
        generator = torch.Generator().manual_seed(seed)
        start = noised(
            latents.to(self.model.null_tokens.device), times[0], generator
        )
        return denoise(self.model, start, times, self.options(prompts, guidance))

    def img2img(
        self,
        images: Tensor,
        prompts: Sequence[str],
        strength: float,
        guidance: float | None = None,
        seed: int = 0,
    ) -> Tensor:
        """Images (B, 3, S, S) in [0, 1] redrawn towards the prompts, keeping more
        of them the lower the strength."""
        latents = first_stage.encode(self.autoencoder, images)
        out = self.img2img_latents(latents, prompts, strength, guidance, seed)
        return first_stage.decode(self.autoencoder, out)

    def inpaint(
        self,
        images: Tensor,
        masks: Tensor,
        prompts: Sequence[str],
        route: str = "blend",
        guidance: float | None = None,
        seed: int = 0,
    ) -> Tensor:
        """Images (B, 3, S, S) in [0, 1] with the region masks (B, 1, S, S) = 1
        redrawn to match the prompts: route "blend" (the plain model, the known
        latent blended in at every step) or "model" (the inpainting model)."""
        check_choice("route", route, ("blend", "model"))
        known = first_stage.encode(self.autoencoder, images)
        mask = latent_mask(masks, self.autoencoder.factor).to(known)
        times = ddim_timesteps(SCHEDULE_STEPS, self.steps)
        x = self.noise(len(images), seed)
        options = self.options(prompts, guidance)
        if route == "blend":
            generator = torch.Generator().manual_seed(seed + 1)
            out = denoise(self.model, x, times, options, known, mask, generator)
        else:
            if self.inpainter is None:
                raise ValueError(
                    "route 'model' needs the inpainting model: inpainter="
                )
            bound = KnownRegion(self.inpainter, inpainting_inputs(known, mask))
            out = denoise(bound, x, times, options)
        return first_stage.decode(self.autoencoder, out)


def latent_mask(masks: Tensor, factor: int) -> Tensor:
    """Pixel masks (B, 1, S, S) in {0, 1} -> latent masks (B, 1, S / f, S / f): a
    latent position is redrawn if any pixel it covers is."""
    check_tensor("masks", masks, dims=4, shape="(B, 1, S, S)")
    if masks.shape[1] != 1 or not ((masks == 0) | (masks == 1)).all():
        raise ValueError("masks must be (B, 1, S, S) of 0 (keep) and 1 (redraw)")
    if check_int("factor", factor) > masks.shape[-1] or masks.shape[-1] % factor:
        raise ValueError(
            f"the factor {factor} must divide the masks' side {masks.shape[-1]}"
        )
    return F.max_pool2d(masks.float(), factor)


# ----------------------------------------------------------------------------------
# The inpainting model: 4 more input channels (masked latent) and 1 (the mask)


def inpainting_inputs(latents: Tensor, mask: Tensor) -> Tensor:
    """What the inpainting model reads besides the noisy latent: the latent with
    the region to redraw zeroed, and the mask, (B, 5, s, s)."""
    return torch.cat([latents * (1 - mask), mask], dim=1)


class KnownRegion(nn.Module):
    """The inpainting model with its extra inputs bound: forward(x, t, tokens) =
    inpainter(cat(x, inputs), t, tokens); a batch that guidance doubles reads the
    inputs twice."""

    def __init__(self, inpainter: TextToImageUNet, inputs: Tensor):
        super().__init__()
        self.inpainter, self.inputs = inpainter, inputs

    def null_cond(
        self, batch: int, device: torch.device | str | None = None
    ) -> Tensor:
        return self.inpainter.null_cond(batch, device)

    def forward(self, x: Tensor, t: Tensor, tokens: Tensor) -> Tensor:
        inputs = self.inputs.repeat(len(x) // len(self.inputs), 1, 1, 1)
        return self.inpainter(torch.cat([x, inputs], dim=1), t, tokens)


def inpaint_model(model: TextToImageUNet, recipe: LatentRecipe) -> TextToImageUNet:
    """A copy of `model` whose U-Net reads 5 more input channels (masked latent,
    mask), their first-layer weights zero: at first it is `model` exactly."""
    unet = model.unet
    extra = 5
    wider = build_model(
        recipe, copy.deepcopy(model.text_encoder), model.null_tokens.cpu(),
        unet.image_size, unet.in_channels + extra,
    )  # fmt: skip
    state = {k: v.clone() for k, v in model.state_dict().items()}
    weight = state["unet.stem.weight"]  # (C, 4 + 2 coordinates, 3, 3)
    channels = unet.in_channels
    zeros = weight.new_zeros(weight.shape[0], extra, *weight.shape[2:])
    parts = weight[:, :channels], zeros, weight[:, channels:]  # latent, new, x y
    state["unet.stem.weight"] = torch.cat(parts, dim=1)
    wider.load_state_dict(state)
    return wider.to(model.null_tokens.device)


def random_masks(
    batch: int, side: int, generator: torch.Generator, full: float = 0.25
) -> Tensor:
    """(batch, 1, side, side) latent masks: a random rectangle of 1s (sides from 1
    to side), the whole latent for a share `full` of them (as Stable Diffusion's
    inpainting model, 25%)."""
    lows = torch.randint(side, (batch, 2), generator=generator)
    sizes = 1 + (torch.rand(batch, 2, generator=generator) * (side - lows)).long()
    axis = torch.arange(side)
    rows = (axis >= lows[:, :1]) & (axis < (lows + sizes)[:, :1])  # (B, side)
    columns = (axis >= lows[:, 1:]) & (axis < (lows + sizes)[:, 1:])
    masks = (rows[:, :, None] & columns[:, None, :]).float()
    whole = torch.rand(batch, generator=generator) < full
    masks[whole] = 1.0
    return masks[:, None]


def train_inpainting(
    model: TextToImageUNet,
    data: LatentScenes,
    recipe: LatentRecipe,
    precision: Precision | None = None,
    progress: bool = True,
) -> tuple[TextToImageUNet, History]:
    """`inpaint_model(model)` fine-tuned for recipe.inpaint_steps on random masks
    (the plain model's recipe, captions dropped as in training); its EMA copy."""
    precision = precision or choose_precision()
    seed_everything(recipe.seed)
    inpainter = inpaint_model(model, recipe).to(precision.device)
    schedule, side = scaled_linear_schedule(), inpainter.image_size
    batches = latent_batches(data, recipe.batch, recipe.seed + 1)
    masking = torch.Generator().manual_seed(recipe.seed + 13)
    ema = EMA(inpainter, decay=0.995)
    optimizer = torch.optim.AdamW(inpainter.parameters(), lr=recipe.lr / 2)
    lr = warmup_cosine(
        optimizer, recipe.inpaint_steps, min(50, recipe.inpaint_steps - 1)
    )

    def loss_fn(step: int) -> Tensor:
        latents, tokens = (z.to(precision.device) for z in batches(step))
        mask = random_masks(len(latents), side, masking).to(latents)
        drop = torch.rand(len(tokens), generator=masking) < recipe.cond_dropout
        null = inpainter.null_cond(len(tokens), tokens.device)
        tokens = where_condition(drop.to(tokens.device), null, tokens)
        bound = KnownRegion(inpainter, inpainting_inputs(latents, mask))
        return diffusion_loss(bound, schedule, latents, "v", tokens, 5.0)

    history = train(
        inpainter, loss_fn, steps=recipe.inpaint_steps, optimizer=optimizer,
        scheduler=lr, precision=precision, ema=ema, grad_clip=1.0,
        progress=progress, desc="inpainting model", generators=[masking],
    )  # fmt: skip
    return ema.module.eval(), history


# ----------------------------------------------------------------------------------
# Cached: the models chapter 8 trains, for its exercises and benchmarks


def load_latent_diffusion(
    recipe: LatentRecipe | None = None,
    inpainter: bool = False,
    device: torch.device | str | None = None,
    progress: bool = True,
    folder: str | Path | None = None,
) -> LatentDiffusion:
    """Chapter 8's chain with the latent U-Net of `recipe` (default
    `book_latent_recipe()`), on chapter 6's world, CLIP and tokenizer and the
    cached first stage: each model loaded from the minigen cache (or `folder`),
    or trained and saved there first. inpainter: also the inpainting model."""
    recipe = book_latent_recipe() if recipe is None else recipe
    check_instance("recipe", recipe, LatentRecipe)
    check_bool("inpainter", inpainter)
    check_bool("progress", progress)
    precision = choose_precision(device)
    world = clip_models.book_world()
    clip, tokenizer = clip_models.load_clip(
        world, device=precision.device, progress=progress
    )
    autoencoder = first_stage.load_first_stage(
        device=precision.device, progress=progress
    )
    settings = (asdict(world), asdict(recipe), repr(autoencoder.scale.item()))
    null = tokenizer([""], clip_models.CAPTION_CONTEXT)
    data = None

    def scenes() -> LatentScenes:
        nonlocal data
        if data is None:
            data = encode_scenes(autoencoder, tokenizer, world, recipe.scenes)
        return data

    def cached(stem: str, make) -> Path:
        path = _cache_file(stem, recipe, settings, folder)
        if not path.exists():
            check_writable(path.parent, f"the trained {stem}")
            model, history = make()
            save_checkpoint(
                path, model, history=history, extra={"settings": repr(settings)}
            )
        return path

    side = autoencoder.latent_shape[-1]

    def fresh(channels: int = first_stage.LATENT_CHANNELS) -> TextToImageUNet:
        encoder = text_encoder_for(recipe, clip)
        return build_model(recipe, encoder, null, side, channels).to(
            precision.device
        )

    def train_plain():
        seed_everything(recipe.seed)
        return train_latent(fresh(), scenes(), recipe, precision, progress)

    model = _load(cached("latent-unet", train_plain), fresh(), settings, precision)
    chain = LatentDiffusion(model, autoencoder, tokenizer)
    if inpainter:

        def train_wide():
            return train_inpainting(model, scenes(), recipe, precision, progress)

        path = cached("inpainting-unet", train_wide)
        chain.inpainter = _load(
            path, fresh(first_stage.LATENT_CHANNELS + 5), settings, precision
        )
    return chain


def _cache_file(
    stem: str, recipe: LatentRecipe, settings: object, folder: str | Path | None
) -> Path:
    path = cache_path(f"{stem}-{recipe.text}-{recipe.steps}steps", settings)
    return path if folder is None else check_path("folder", folder) / path.name


def _load(
    path: Path, model: TextToImageUNet, settings: object, precision: Precision
) -> TextToImageUNet:
    state = load_checkpoint(path, model, map_location=precision.device)
    check_settings(path, state["extra"]["settings"], settings, "a latent U-Net")
    model.history = state["history"]
    return model.eval()


# ----------------------------------------------------------------------------------
# Why latents: what a training image and a sampled image cost


def training_cost(
    model: nn.Module,
    x0: Tensor,
    cond: Tensor,
    precision: Precision | None = None,
    steps: int = 10,
) -> float:
    """Milliseconds per image of a training step (loss, backward, AdamW) of a copy
    of `model` on the batch x0 with its condition: one untimed warm-up step, then
    the mean of `steps`."""
    precision = precision or choose_precision()
    model = copy.deepcopy(model).train().to(precision.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x0, cond = x0.to(precision.device), cond.to(precision.device)
    schedule = scaled_linear_schedule()
    for step in range(check_int("steps", steps) + 1):
        if step == 1:
            start = time.perf_counter()
        with precision.autocast():
            loss = diffusion_loss(model, schedule, x0, "v", cond, 5.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return 1000 * (time.perf_counter() - start) / (steps * len(x0))


def pixel_twin(chain: LatentDiffusion, recipe: LatentRecipe) -> TextToImageUNet:
    """The chain's U-Net and text encoder, untrained, on 32x32 pixels instead of
    8x8x4 latents: the same network where Stable Diffusion's predecessors ran."""
    side = chain.autoencoder.image_size
    encoder = copy.deepcopy(chain.model.text_encoder)
    null = chain.model.null_tokens.cpu()
    model = build_model(recipe, encoder, null, side, in_channels=3, out_channels=3)
    return model.to(chain.model.null_tokens.device)


def cost_table(
    chain: LatentDiffusion,
    recipe: LatentRecipe | None = None,
    batch: int = 32,
    samples: int = 16,
) -> dict[str, float]:
    """Milliseconds per training image (batches of `batch`) and per sampled image
    (`samples` prompts, chain.steps DDIM steps with guidance, decoding included)
    of the latent U-Net, of the same network on pixels and of chapter 5's pixel
    U-Net (16 channels, class labels), timed one after another in this call."""
    recipe = book_latent_recipe() if recipe is None else recipe
    check_instance("chain", chain, LatentDiffusion)
    world = clip_models.book_world()
    scenes = world.scenes(range(check_int("batch", batch)))
    tokens = chain.tokens(scenes.captions)
    images = 2 * scenes.images - 1
    latents = first_stage.encode(chain.autoencoder, scenes.images)
    twin = pixel_twin(chain, recipe)
    labels = torch.stack([scenes.shape[:, 0], scenes.colour[:, 0]], dim=1)
    chapter5 = UNet(
        base_channels=16, class_counts=(len(world.shapes), len(world.colours))
    )
    table = {
        "train latent U-Net": training_cost(chain.model, latents, tokens),
        "train same U-Net on pixels": training_cost(twin, images, tokens),
        "train chapter 5 pixel U-Net": training_cost(chapter5, images, labels),
    }
    prompts = scenes.captions[: check_int("samples", samples)]
    for name, model in (
        ("latent U-Net", chain.model),
        ("same U-Net on pixels", twin),
    ):
        pixels = name != "latent U-Net"
        start = time.perf_counter()
        if pixels:
            side = chain.autoencoder.image_size
            x = torch.randn(len(prompts), 3, side, side).to(tokens.device)
            times = ddim_timesteps(SCHEDULE_STEPS, chain.steps)
            denoise(model.eval(), x, times, chain.options(prompts, None))
        else:
            chain.generate(prompts)
        table[f"sample {name}"] = (
            1000 * (time.perf_counter() - start) / len(prompts)
        )
    return table
