"""DALL·E 2 (unCLIP) in miniature: a decoder from CLIP image embeddings to pixels,
priors from a caption to a CLIP image embedding, and the chain text -> image.

- A. Ramesh et al., "Hierarchical Text-Conditional Image Generation with CLIP
  Latents", arXiv:2204.06125, 2022 (unCLIP): CLIP, prior and decoder trained
  separately; the decoder sees the image embedding added to its time embedding
  and as extra attention tokens, and drops it 10% of the time for classifier-free
  guidance; two samples of the diffusion prior, the one with the larger dot
  product with the text embedding kept.
- A. Nichol et al., "GLIDE", ICML 2022: the decoder's U-Net and its extra tokens.
- lucidrains/DALLE2-pytorch: the embedding scale sqrt(dim) before diffusion, the
  x0 objective of the diffusion prior, its text-condition dropout.

The models are trained on chapter 6's CLIP and world (`clip.load_clip`) and kept
in the minigen cache by `load_unclip`, so that chapter 8 and exercises reuse them.
"""

from __future__ import annotations

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
    History,
    load_checkpoint,
    save_checkpoint,
    train,
    warmup_cosine,
)
from minigen.core.validators import (
    check_bool,
    check_choice,
    check_instance,
    check_int,
    check_path,
    check_positive,
    check_probability,
)
from minigen.data import captions
from minigen.data.shapes import SPLITS, ShapesWorld
from minigen.diffusion.sampling import SamplerOptions, ddim_sample
from minigen.diffusion.schedule import NoiseSchedule
from minigen.diffusion.training import train_diffusion
from minigen.eval.harness import sample_images
from minigen.models import clip as clip_models
from minigen.models.prior import (
    ARPrior,
    DiffusionPriorNet,
    MLPPrior,
    PCAQuantizer,
    embedding_scale,
    prior_condition,
    rerank,
)
from minigen.models.unet import UNet
from minigen.nn.embeddings import TokenStates, cat_conditions
from minigen.tokenizers.bpe import BPETokenizer

PRIORS = ("none", "mlp", "diffusion", "ar")  # what prior_embeddings can use
PRIOR_SCHEDULE_STEPS = 1000  # the diffusion prior's cosine schedule
DECODER_SCHEDULE_STEPS = 1000  # the decoder's, as chapter 5's U-Net


@dataclass(frozen=True)
class UnCLIPRecipe(ColumnRepr):
    """How the decoder and the three priors are trained (chapter 5's recipe for
    the decoder: v objective, min-SNR 5, EMA 0.995, warm-up then cosine)."""

    decoder_steps: int = 1500
    decoder_batch: int = 32
    decoder_channels: int = 16
    decoder_tokens: int = 4
    decoder_coordinates: bool = True  # x and y input channels (CoordConv)
    decoder_lr: float = 2e-3
    cond_dropout: float = 0.1
    pairs: int = 10_000  # captioned training scenes the priors learn from
    prior_steps: int = 1500
    prior_batch: int = 64
    prior_width: int = 128
    prior_layers: int = 2
    prior_lr: float = 1e-3
    ar_dims: int = 16
    ar_buckets: int = 32
    seed: int = 0

    def __post_init__(self):
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name == "cond_dropout":
                check_probability(field.name, value)
            elif field.type == "bool":
                check_bool(field.name, value)
            elif field.type == "float":
                check_positive(field.name, value)
            elif field.name == "seed":
                check_int("seed", value, 0, 2**32 - 1)
            else:
                check_int(field.name, value)
        check_int("ar_buckets", self.ar_buckets, minimum=2)
        check_int("prior_batch", self.prior_batch, maximum=self.pairs)


def book_unclip_recipe() -> UnCLIPRecipe:
    """Chapter 7's recipe in the active profile (the defaults in the cpu one)."""
    return pick(
        smoke=UnCLIPRecipe(
            decoder_steps=5, decoder_batch=8, pairs=64, prior_steps=5,
            prior_batch=16, prior_width=32, prior_layers=1, ar_dims=4,
            ar_buckets=4,
        ),
        cpu=UnCLIPRecipe(),
        gpu=UnCLIPRecipe(
            decoder_steps=20_000, decoder_batch=64, decoder_channels=32,
            pairs=50_000, prior_steps=10_000, prior_batch=256, prior_width=256,
            prior_layers=4, prior_lr=3e-4,
        ),
    )  # fmt: skip


# ----------------------------------------------------------------------------------
# Captioned scenes as CLIP sees them


@dataclass
class CaptionedEmbeddings:
    """Scenes as CLIP embeds them: each scene's caption and both embeddings."""

    texts: list[str]  # N captions
    states: TokenStates  # (N, L, width) the text encoder's token states, masked
    text: Tensor  # (N, E) unit text embeddings
    image: Tensor  # (N, E) unit image embeddings

    def __len__(self) -> int:
        return len(self.texts)

    def condition(self, rows: Tensor) -> TokenStates:
        """What the diffusion prior reads for `rows`: their token states, cut after
        the longest, with the text embedding appended (`prior_condition`)."""
        states = self.states[rows]
        length = int(states.mask.sum(1).max())
        cut = states.states[:, :length], states.mask[:, :length]
        return prior_condition(*cut, self.text[rows])


@torch.no_grad()
def embed_scenes(
    model: clip_models.CLIP,
    tokenizer: BPETokenizer,
    world: ShapesWorld,
    indices: int | range | Sequence[int],
    split: str = "train",
    languages: Sequence[str] = captions.LANGUAGES,
    batch_size: int = 500,
) -> CaptionedEmbeddings:
    """Scenes `indices` of `split`, scene i captioned in languages[i % len] with its
    drawn phrasing, and their CLIP embeddings (on the CPU)."""
    check_instance("model", model, clip_models.CLIP)
    check_choice("split", split, SPLITS)
    for language in languages:
        check_choice("every language", language, captions.LANGUAGES)
    indices = torch.as_tensor(
        range(indices) if isinstance(indices, int) else indices
    )
    device = next(model.parameters()).device
    texts, states, text, image = [], [], [], []
    for start in range(0, len(indices), check_int("batch_size", batch_size)):
        chunk = indices[start : start + batch_size]
        scenes = world.scenes(chunk, split)
        language = [languages[i % len(languages)] for i in chunk.tolist()]
        draws = world.phrasing_draws(chunk, split)
        words = captions.captions(world, scenes, language, draws)
        ids = tokenizer(words, clip_models.CAPTION_CONTEXT).to(device)
        texts += words
        token_states = model.text_encoder.token_states(ids).to("cpu")
        states.append(token_states.pad_to(clip_models.CAPTION_CONTEXT))
        text.append(model.encode_text(ids).float().cpu())
        image.append(model.encode_image(scenes.images.to(device)).float().cpu())
    states = cat_conditions(states)
    return CaptionedEmbeddings(texts, states, torch.cat(text), torch.cat(image))


@torch.no_grad()
def encode_captions(
    model: clip_models.CLIP, tokenizer: BPETokenizer, texts: Sequence[str]
) -> tuple[Tensor, TokenStates]:
    """Captions -> their unit text embeddings (B, E) and what the diffusion prior
    reads: their token states with the text embedding appended
    (`prior_condition`)."""
    device = next(model.parameters()).device
    tokens = tokenizer(list(texts), clip_models.CAPTION_CONTEXT).to(device)
    states = model.text_encoder.token_states(tokens)  # (B, L, width)
    text = model.encode_text(tokens)  # (B, E)
    return text, prior_condition(states.states, states.mask, text)


# ----------------------------------------------------------------------------------
# The decoder: CLIP image embedding -> image


def build_decoder(recipe: UnCLIPRecipe, embed_dim: int, image_size: int) -> UNet:
    """Chapter 5's U-Net conditioned on a CLIP image embedding: projected and
    added to the time embedding, and projected to recipe.decoder_tokens tokens
    that its attention layers read; with recipe.decoder_coordinates, each pixel's
    x and y as two more input channels, so that the network knows where it draws."""
    return UNet(
        base_channels=recipe.decoder_channels,
        channel_mults=(1, 2, 2),
        attention_levels=(2,),
        image_size=image_size,
        cond_dim=embed_dim,
        cond_tokens=recipe.decoder_tokens,
        coordinates=recipe.decoder_coordinates,
    )


def decoder_condition(embeddings: Tensor) -> Tensor:
    """Unit image embeddings (B, E) as the decoder reads them: scaled by sqrt(E),
    so that each coordinate is about as large as the label embeddings of chapter
    5 (unit length leaves them near 1 / sqrt(E), a signal the decoder's
    projections would first have to learn to amplify)."""
    return embeddings.float() * embedding_scale(embeddings.shape[-1])


def decoder_batches(model: clip_models.CLIP, world: ShapesWorld, batch_size: int):
    """step -> (training scenes step * B ... (step + 1) * B - 1 in [-1, 1], their
    CLIP image embeddings as the decoder reads them (B, E), `decoder_condition`):
    what the decoder learns to invert."""
    device = next(model.parameters()).device

    @torch.no_grad()
    def batch(step: int) -> tuple[Tensor, Tensor]:
        indices = torch.arange(step * batch_size, (step + 1) * batch_size)
        images = world.scenes(indices).images.to(device)  # (B, 3, S, S) in [0, 1]
        return 2 * images - 1, decoder_condition(model.encode_image(images))

    return batch


def train_decoder(
    model: clip_models.CLIP,
    world: ShapesWorld,
    recipe: UnCLIPRecipe,
    precision: Precision | None = None,
    progress: bool = True,
) -> tuple[UNet, History]:
    """The decoder trained to regenerate scenes from their CLIP image embeddings,
    the embedding dropped (NULL) for recipe.cond_dropout of them; its EMA copy."""
    seed_everything(recipe.seed)
    decoder = build_decoder(recipe, _embed_dim(model), world.resolution)
    return train_diffusion(
        decoder, NoiseSchedule.cosine(DECODER_SCHEDULE_STEPS),
        decoder_batches(model, world, recipe.decoder_batch),
        steps=recipe.decoder_steps, objective="v", lr=recipe.decoder_lr,
        warmup_steps=min(100, recipe.decoder_steps - 1), min_snr_gamma=5.0,
        cond_dropout=recipe.cond_dropout, ema_decay=0.995, precision=precision,
        progress=progress, seed=recipe.seed, desc="decoder",
    )  # fmt: skip


# ----------------------------------------------------------------------------------
# The priors: caption -> CLIP image embedding


def _pair_rows(pairs: CaptionedEmbeddings, batch_size: int, seed: int):
    """step -> (batch_size,) random rows of `pairs`; and the generator."""
    generator = torch.Generator().manual_seed(seed)
    return (
        lambda step: torch.randint(len(pairs), (batch_size,), generator=generator)
    ), generator


def train_diffusion_prior(
    model: clip_models.CLIP,
    pairs: CaptionedEmbeddings,
    recipe: UnCLIPRecipe,
    precision: Precision | None = None,
    progress: bool = True,
) -> tuple[DiffusionPriorNet, History]:
    """The diffusion prior, trained to predict the scaled image embedding x0 from
    its noised version and the caption (dropped for recipe.cond_dropout of them)."""
    seed_everything(recipe.seed)
    precision = precision or choose_precision()
    prior = build_diffusion_prior(recipe, model)
    rows, _ = _pair_rows(pairs, recipe.prior_batch, recipe.seed + 2)
    scale = embedding_scale(prior.embed_dim)

    def batches(step: int) -> tuple[Tensor, TokenStates]:
        chosen = rows(step)
        return pairs.image[chosen] * scale, pairs.condition(chosen)

    return train_diffusion(
        prior, NoiseSchedule.cosine(PRIOR_SCHEDULE_STEPS), batches,
        steps=recipe.prior_steps, objective="x0", lr=recipe.prior_lr,
        warmup_steps=min(100, recipe.prior_steps - 1),
        cond_dropout=recipe.cond_dropout, ema_decay=0.995, precision=precision,
        progress=progress, seed=recipe.seed, desc="diffusion prior",
    )  # fmt: skip


def train_mlp_prior(
    pairs: CaptionedEmbeddings,
    recipe: UnCLIPRecipe,
    precision: Precision | None = None,
    progress: bool = True,
) -> tuple[MLPPrior, History]:
    """The deterministic baseline: text embedding -> image embedding by MSE."""
    seed_everything(recipe.seed)
    precision = precision or choose_precision()
    prior = MLPPrior(pairs.text.shape[1]).to(precision.device)
    rows, generator = _pair_rows(pairs, recipe.prior_batch, recipe.seed + 3)

    def loss_fn(step: int) -> Tensor:
        chosen = rows(step)
        text, image = (
            z[chosen].to(precision.device) for z in (pairs.text, pairs.image)
        )
        return F.mse_loss(prior(text).float(), image)

    history = _fit(
        prior, loss_fn, recipe, precision, progress, generator, "MLP prior"
    )
    return prior.eval(), history


def train_ar_prior(
    pairs: CaptionedEmbeddings,
    recipe: UnCLIPRecipe,
    precision: Precision | None = None,
    progress: bool = True,
) -> tuple[ARPrior, PCAQuantizer, History]:
    """The autoregressive prior: the image embeddings' first recipe.ar_dims
    principal coordinates, each in recipe.ar_buckets quantile buckets, predicted
    code by code from the text embedding (cross-entropy)."""
    seed_everything(recipe.seed)
    precision = precision or choose_precision()
    quantizer = PCAQuantizer(pairs.image, recipe.ar_dims, recipe.ar_buckets)
    codes = quantizer.encode(pairs.image)  # (N, dims)
    prior = build_ar_prior(recipe, pairs.text.shape[1]).to(precision.device)
    rows, generator = _pair_rows(pairs, recipe.prior_batch, recipe.seed + 4)

    def loss_fn(step: int) -> Tensor:
        chosen = rows(step)
        target = codes[chosen].to(precision.device)  # (B, dims)
        logits = prior(pairs.text[chosen].to(precision.device), target)
        return F.cross_entropy(logits.float().flatten(0, 1), target.flatten())

    history = _fit(
        prior, loss_fn, recipe, precision, progress, generator, "AR prior"
    )
    return prior.eval(), quantizer, history


def build_diffusion_prior(
    recipe: UnCLIPRecipe, model: clip_models.CLIP
) -> DiffusionPriorNet:
    """The diffusion prior for `model`'s embeddings and token states."""
    width = model.text_encoder.final_norm.weight.numel()
    return DiffusionPriorNet(
        _embed_dim(model), width, clip_models.CAPTION_CONTEXT, recipe.prior_width,
        recipe.prior_layers,
    )  # fmt: skip


def build_ar_prior(recipe: UnCLIPRecipe, embed_dim: int) -> ARPrior:
    """The autoregressive prior: half the diffusion prior's width and layers."""
    return ARPrior(
        embed_dim, recipe.ar_dims, recipe.ar_buckets,
        width=recipe.prior_width // 2, layers=max(1, recipe.prior_layers // 2),
    )  # fmt: skip


def _fit(module, loss_fn, recipe, precision, progress, generator, desc) -> History:
    optimizer = torch.optim.AdamW(module.parameters(), lr=recipe.prior_lr)
    return train(
        module, loss_fn, steps=recipe.prior_steps, optimizer=optimizer,
        scheduler=warmup_cosine(optimizer, recipe.prior_steps,
                                min(100, recipe.prior_steps - 1)),
        precision=precision, grad_clip=1.0, progress=progress, desc=desc,
        generators=[generator],
    )  # fmt: skip


# ----------------------------------------------------------------------------------
# The chain


class UnCLIP(nn.Module):
    """CLIP (frozen), the decoder and the three priors: text -> image embedding ->
    image. `prior_embeddings` runs one link, `decode` the other, `generate` both."""

    def __init__(
        self,
        clip: clip_models.CLIP,
        tokenizer: BPETokenizer,
        decoder: UNet,
        diffusion_prior: DiffusionPriorNet,
        mlp_prior: MLPPrior,
        ar_prior: ARPrior,
        quantizer: PCAQuantizer,
    ):
        super().__init__()
        self.clip, self.tokenizer, self.decoder = clip, tokenizer, decoder
        self.diffusion_prior, self.mlp_prior = diffusion_prior, mlp_prior
        self.ar_prior, self.quantizer = ar_prior, quantizer
        self.decoder_schedule = NoiseSchedule.cosine(DECODER_SCHEDULE_STEPS)
        self.prior_schedule = NoiseSchedule.cosine(PRIOR_SCHEDULE_STEPS)

    @torch.no_grad()
    def prior_embeddings(
        self,
        texts: Sequence[str],
        prior: str = "diffusion",
        candidates: int = 2,
        steps: int = 50,
        seed: int = 0,
    ) -> Tensor:
        """Captions -> unit image embeddings (B, E) from `prior`: "none" (the text
        embedding itself), "mlp", "diffusion" (`candidates` samples, DDIM with
        `steps`, reranked by the dot product with the text) or "ar"."""
        check_choice("prior", prior, PRIORS)
        check_int("candidates", candidates)
        generator = torch.Generator().manual_seed(check_int("seed", seed, 0))
        text, cond = encode_captions(self.clip, self.tokenizer, texts)
        if prior == "none":
            predicted = text
        elif prior == "mlp":
            predicted = self.mlp_prior(text)
        elif prior == "ar":
            codes = self.ar_prior.sample(text, generator)
            predicted = self.quantizer.decode(codes.cpu()).to(text.device)
        else:
            options = SamplerOptions(objective="x0", cond=cond)
            shape = (len(text), text.shape[1])
            samples = [
                ddim_sample(
                    self.diffusion_prior,
                    self.prior_schedule,
                    shape,
                    steps,
                    options=options,
                    generator=generator,
                    device=text.device,
                )  # fmt: skip
                for _ in range(candidates)
            ]
            predicted = rerank(torch.stack(samples), text)
        return F.normalize(predicted.float(), dim=-1)

    @torch.no_grad()
    def decode(
        self,
        embeddings: Tensor,
        guidance: float | None = 3.0,
        steps: int = 25,
        eta: float = 0.0,
        seed: int = 0,
        batch_size: int = 250,
    ) -> Tensor:
        """Image embeddings (B, E) -> images (B, 3, S, S) in [0, 1] by DDIM with
        classifier-free guidance `guidance` (None: none)."""
        device = next(self.decoder.parameters()).device
        cond = decoder_condition(embeddings).to(device)
        options = SamplerOptions(objective="v", cond=cond, guidance=guidance)
        images, _ = sample_images(
            self.decoder, self.decoder_schedule, len(embeddings), options,
            steps=steps, eta=eta, seed=seed, batch_size=batch_size,
        )  # fmt: skip
        return images

    def generate(
        self,
        texts: Sequence[str],
        prior: str = "diffusion",
        guidance: float | None = 3.0,
        steps: int = 25,
        seed: int = 0,
    ) -> Tensor:
        """Captions -> images (B, 3, S, S) in [0, 1]: prior, then decoder."""
        embeddings = self.prior_embeddings(texts, prior, seed=seed)
        return self.decode(embeddings, guidance, steps, seed=seed)


@torch.no_grad()
def prior_similarities(
    model: UnCLIP, pairs: CaptionedEmbeddings, prior: str, seed: int = 0
) -> dict[str, float]:
    """How close `prior`'s embeddings for the captions of `pairs` come to the true
    image embeddings: the mean cosine with each caption's own image ("true") and
    with the next pair's image, an unrelated scene ("rolled")."""
    check_instance("pairs", pairs, CaptionedEmbeddings)
    predicted = model.prior_embeddings(pairs.texts, prior, seed=seed).cpu()
    return {
        "true": (predicted * pairs.image).sum(-1).mean().item(),
        "rolled": (predicted * pairs.image.roll(1, 0)).sum(-1).mean().item(),
    }


# ----------------------------------------------------------------------------------
# Trained once, cached


def load_unclip(
    recipe: UnCLIPRecipe | None = None,
    world: ShapesWorld | None = None,
    clip_recipe: clip_models.CLIPRecipe | None = None,
    path: str | Path | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> UnCLIP:
    """The CLIP of `clip.load_clip(world, clip_recipe)` (trained if absent) with the
    decoder and priors of `recipe` trained on `world`'s training scenes: loaded
    from `path`, or trained and saved there first. Each trained model's History is
    its `.history`.

    recipe, world, clip_recipe: default `book_unclip_recipe()`, `clip.book_world()`
    and `clip.book_recipe()`: chapter 7's models in the active profile.
    """
    recipe = book_unclip_recipe() if recipe is None else recipe
    world = clip_models.book_world() if world is None else world
    clip_recipe = clip_models.book_recipe() if clip_recipe is None else clip_recipe
    check_instance("recipe", recipe, UnCLIPRecipe)
    check_bool("progress", progress)
    clip, tokenizer = clip_models.load_clip(
        world, clip_recipe, device=device, progress=progress
    )
    clip.requires_grad_(False)
    settings = (asdict(world), asdict(clip_recipe), asdict(recipe))
    if path is None:
        path = cache_path(f"unclip-{recipe.decoder_steps}steps", settings)
    path = check_path("path", path)
    precision = choose_precision(device)
    if path.exists():
        return _load(path, settings, clip, tokenizer, recipe, world, precision)
    check_writable(path.parent, "the trained decoder and priors")
    pairs = embed_scenes(clip, tokenizer, world, recipe.pairs)
    decoder, decoder_history = train_decoder(
        clip, world, recipe, precision, progress
    )
    diffusion, diffusion_history = train_diffusion_prior(
        clip, pairs, recipe, precision, progress
    )
    mlp, mlp_history = train_mlp_prior(pairs, recipe, precision, progress)
    ar, quantizer, ar_history = train_ar_prior(pairs, recipe, precision, progress)
    model = UnCLIP(clip, tokenizer, decoder, diffusion, mlp, ar, quantizer)
    histories = [decoder_history, diffusion_history, mlp_history, ar_history]
    extra = {
        "settings": repr(settings),
        "quantizer": quantizer.state_dict(),
        "histories": [asdict(history) for history in histories],
    }
    save_checkpoint(path, _trained(model), extra=extra)
    return _with_histories(model.eval(), histories)


MODELS = ("decoder", "diffusion_prior", "mlp_prior", "ar_prior")


def _trained(model: UnCLIP) -> nn.ModuleDict:
    """The models load_unclip trains (not CLIP, cached on its own)."""
    return nn.ModuleDict({name: getattr(model, name) for name in MODELS})


def _with_histories(model: UnCLIP, histories: Sequence[History]) -> UnCLIP:
    for name, history in zip(MODELS, histories):
        getattr(model, name).history = history
    return model


def _load(path, settings, clip, tokenizer, recipe, world, precision) -> UnCLIP:
    state = torch.load(path, map_location="cpu", weights_only=True)
    extra = state["extra"]
    check_settings(path, extra["settings"], settings, "unCLIP models")
    embed_dim = _embed_dim(clip)
    model = UnCLIP(
        clip, tokenizer,
        build_decoder(recipe, embed_dim, world.resolution),
        build_diffusion_prior(recipe, clip), MLPPrior(embed_dim),
        build_ar_prior(recipe, embed_dim),
        PCAQuantizer.from_state_dict(extra["quantizer"]),
    ).to(precision.device)  # fmt: skip
    load_checkpoint(path, _trained(model), map_location=precision.device)
    histories = [History(**history) for history in extra["histories"]]
    return _with_histories(model.eval(), histories)


def _embed_dim(model: clip_models.CLIP) -> int:
    return model.text_encoder.projection.out_features
