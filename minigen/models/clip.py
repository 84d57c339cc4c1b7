"""CLIP, small and from scratch: a text encoder and an image encoder trained so that
a caption and its image land on the same direction of a shared embedding space.

- A. Radford et al., "Learning Transferable Visual Models From Natural Language
  Supervision", ICML 2021, and openai/CLIP: the causal text transformer read at the
  end token, the ViT with a class token and LayerNorms before and after, the
  ModifiedResNet (a three-convolution stem, average pooling before strided
  convolutions, attention pooling), the learned temperature initialised at 1/0.07
  and clipped so that logits are scaled by at most 100.
- The ViT: A. Dosovitskiy et al., "An Image is Worth 16x16 Words", ICLR 2021.
- The loss, symmetric InfoNCE (A. van den Oord et al., "Representation Learning
  with Contrastive Predictive Coding", arXiv:1807.03748, 2018), with every pair of
  the same meaning as a positive, as UniCL does for duplicate labels (J. Yang et
  al., "Unified Contrastive Learning in Image-Text-Label Space", CVPR 2022).
- No weight decay on gains, biases, embeddings and the temperature
  (mlfoundations/open_clip).
- Hard negatives: each image also against the caption of a nearly identical scene
  (M. Yuksekgonul et al., "When and why vision-language models behave like
  bags-of-words", ICLR 2023: NegCLIP).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from minigen.core.cache import cache_path, check_settings, check_writable
from minigen.core.profiles import pick
from minigen.core.runtime import (
    Precision,
    as_device,
    choose_precision,
    seed_everything,
)
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
    check_tensor,
)
from minigen.data import captions
from minigen.data.shapes import SPLITS, ShapesWorld
from minigen.nn.attention import MultiHeadAttention
from minigen.nn.embeddings import LearnedPositions, TokenStates
from minigen.nn.layers import CheckedModule
from minigen.nn.transformer import TransformerBlock
from minigen.tokenizers.bpe import BPETokenizer

# (colour, shape) pairs the book's CLIP never sees in training: zero-shot tests them
HOLDOUT = (("yellow", "triangle"), ("cyan", "cross"), ("magenta", "circle"))
INITIAL_TEMPERATURE = 0.07
# above the 33 tokens of the longest two-object caption (Chinese, by cells)
CAPTION_CONTEXT = 40
MAX_LOGIT_SCALE = 100.0


class TextEncoder(CheckedModule):
    """Token ids (B, L) -> text embeddings (B, embed_dim): token and position
    embeddings, pre-LN transformer blocks under a causal mask, a final LayerNorm,
    the features at the end token (the largest id of each row), a projection.
    Positions after the last end token of the batch are cut before the blocks:
    under the causal mask nothing reads them, so the result is the same."""

    def __init__(
        self,
        vocabulary_size: int,
        context_length: int = 77,
        width: int = 128,
        layers: int = 4,
        heads: int = 4,
        embed_dim: int = 128,
    ):
        super().__init__()
        self.vocabulary_size = check_int("vocabulary_size", vocabulary_size)
        self.context_length = check_int("context_length", context_length)
        self.token_embedding = nn.Embedding(vocabulary_size, width)
        self.positions = LearnedPositions(context_length, width)
        self.blocks = _transformer(width, heads, layers)
        self.final_norm = nn.LayerNorm(width)
        self.projection = nn.Linear(width, check_int("embed_dim", embed_dim), False)

    def forward(self, tokens: Tensor) -> Tensor:
        end = tokens.argmax(dim=1)  # (B,) the end token has the largest id
        x = self.token_states(tokens).states  # (B, L, width)
        return self.projection(x[torch.arange(len(x)), end])  # (B, embed_dim)

    def token_states(self, tokens: Tensor) -> TokenStates:
        """The final states (B, L, width) of the tokens up to the batch's last end
        token, masked after each row's end: what a prior or decoder reads."""
        self.check_inputs(tokens)
        end = tokens.argmax(dim=1)  # (B,) the end token has the largest id
        tokens = tokens[:, : end.max() + 1]  # padding after every end: unseen, cut
        x = self.positions(self.token_embedding(tokens))  # (B, L, width)
        for block in self.blocks:
            x = block(x, causal=True)  # token i sees tokens <= i: padding is unseen
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        return TokenStates(self.final_norm(x), positions <= end[:, None])

    def check_inputs(self, tokens: Tensor) -> None:
        check_tensor("tokens", tokens, dims=2, shape="(B, L) token ids")
        if tokens.dtype != torch.long or tokens.shape[1] > self.context_length:
            raise ValueError(
                f"tokens must be (B, L <= {self.context_length}) int64 ids, got "
                f"{tuple(tokens.shape)} {tokens.dtype}"
            )
        if tokens.numel() and not 0 <= tokens.min() <= tokens.max() < len(
            self.token_embedding.weight
        ):
            raise ValueError(
                f"token ids must lie in [0, {self.vocabulary_size}), got "
                f"{tokens.min().item()} .. {tokens.max().item()}"
            )


class VisionTransformer(CheckedModule):
    """Images (B, 3, S, S) -> image embeddings (B, embed_dim): patches embedded by a
    strided convolution, a learned class token in front, learned positions, a
    LayerNorm, transformer blocks, a LayerNorm of the class token, a projection."""

    def __init__(
        self,
        image_size: int = 32,
        patch_size: int = 4,
        width: int = 128,
        layers: int = 4,
        heads: int = 4,
        embed_dim: int = 128,
    ):
        super().__init__()
        self.image_size = check_int("image_size", image_size)
        self.patch_size = check_int("patch_size", patch_size)
        if image_size % patch_size:
            raise ValueError(
                f"patch_size {patch_size} must divide image_size {image_size}"
            )
        patches = (image_size // patch_size) ** 2
        self.to_patches = nn.Conv2d(3, width, patch_size, patch_size, bias=False)
        self.class_token = nn.Parameter(torch.randn(width) * width**-0.5)
        self.positions = LearnedPositions(patches + 1, width)
        self.pre_norm = nn.LayerNorm(width)
        self.blocks = _transformer(width, heads, layers)
        self.post_norm = nn.LayerNorm(width)
        self.projection = nn.Linear(width, check_int("embed_dim", embed_dim), False)

    def forward(self, images: Tensor) -> Tensor:
        x = rearrange(self.to_patches(images), "b c h w -> b (h w) c")  # (B, N, w)
        token = self.class_token.expand(len(x), 1, -1).to(x.dtype)  # (B, 1, w)
        x = self.pre_norm(self.positions(torch.cat([token, x], dim=1)))
        for block in self.blocks:
            x = block(x)  # (B, 1 + N, width)
        return self.projection(self.post_norm(x[:, 0]))  # (B, embed_dim)

    def check_inputs(self, images: Tensor) -> None:
        _check_images(images, self.image_size)


class Bottleneck(nn.Module):
    """CLIP's ResNet block: 1x1, 3x3, then average pooling where it downsamples
    (instead of a strided convolution) and a 1x1 to 4x the planes; the shortcut is
    pooled and projected when the shape changes."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1):
        super().__init__()
        out = planes * self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, planes, 1, bias=False),
            nn.BatchNorm2d(planes),
            nn.ReLU(inplace=True),
            nn.Conv2d(planes, planes, 3, padding=1, bias=False),
            nn.BatchNorm2d(planes),
            nn.ReLU(inplace=True),
            nn.AvgPool2d(stride) if stride > 1 else nn.Identity(),
            nn.Conv2d(planes, out, 1, bias=False),
            nn.BatchNorm2d(out),
        )
        self.shortcut = nn.Identity()
        if stride > 1 or in_channels != out:
            self.shortcut = nn.Sequential(
                nn.AvgPool2d(stride) if stride > 1 else nn.Identity(),
                nn.Conv2d(in_channels, out, 1, bias=False),
                nn.BatchNorm2d(out),
            )

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class AttentionPool(nn.Module):
    """Feature map (B, C, H, W) -> (B, out_dim): the mean of the positions, as a
    query, attends to the positions and itself (learned position embeddings added);
    one attention layer in place of global average pooling."""

    def __init__(self, positions: int, channels: int, heads: int, out_dim: int):
        super().__init__()
        self.positions = LearnedPositions(positions + 1, channels)
        self.attention = MultiHeadAttention(channels, heads)
        self.projection = nn.Linear(channels, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        x = rearrange(x, "b c h w -> b (h w) c")  # (B, HW, C)
        x = self.positions(torch.cat([x.mean(dim=1, keepdim=True), x], dim=1))
        pooled = self.attention(x[:, :1], context=x)  # (B, 1, C): the mean asks
        return self.projection(pooled[:, 0])  # (B, out_dim)


class ResNetEncoder(CheckedModule):
    """Images (B, 3, S, S) -> image embeddings (B, embed_dim): CLIP's
    ModifiedResNet, small: a stem of three 3x3 convolutions and a 2x average pool,
    three stages of Bottleneck blocks (the last two halve the size), attention
    pooling."""

    def __init__(
        self,
        image_size: int = 32,
        width: int = 16,
        blocks: tuple[int, int, int] = (1, 1, 1),
        heads: int = 4,
        embed_dim: int = 128,
    ):
        super().__init__()
        self.image_size = check_int("image_size", image_size)
        if image_size % 8:
            raise ValueError(
                f"image_size must be a multiple of 8, got {image_size}"
            )
        w = check_int("width", width)
        self.stem = nn.Sequential(
            *_conv_bn_relu(3, w // 2),
            *_conv_bn_relu(w // 2, w // 2),
            *_conv_bn_relu(w // 2, w),
            nn.AvgPool2d(2),
        )
        stages, channels = [], w
        for i, count in enumerate(blocks):
            planes, stride = w * 2**i, 1 if i == 0 else 2
            for j in range(check_int("blocks", count)):
                stages.append(Bottleneck(channels, planes, stride if j == 0 else 1))
                channels = planes * Bottleneck.expansion
        self.stages = nn.Sequential(*stages)
        side = image_size // 8  # the stem's pool and two strided stages
        self.pool = AttentionPool(side * side, channels, heads, embed_dim)

    def forward(self, images: Tensor) -> Tensor:
        return self.pool(self.stages(self.stem(images)))  # (B, embed_dim)

    def check_inputs(self, images: Tensor) -> None:
        _check_images(images, self.image_size)


def _transformer(width: int, heads: int, layers: int) -> nn.ModuleList:
    layers = check_int("layers", layers)
    return nn.ModuleList(TransformerBlock(width, heads) for _ in range(layers))


def _check_images(images: Tensor, size: int) -> None:
    check_tensor("images", images, dims=4, floating=True, shape="(B, 3, S, S)")
    if images.shape[1:] != (3, size, size):
        raise ValueError(
            f"images must be (B, 3, {size}, {size}), got {tuple(images.shape)}"
        )


def _conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
    return [conv, nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]


class CLIP(nn.Module):
    """An image encoder and a text encoder with a shared embedding width, and the
    learned logit scale, log(1 / 0.07) at first; exp() of it is clipped at 100."""

    def __init__(self, image_encoder: nn.Module, text_encoder: TextEncoder):
        super().__init__()
        self.image_encoder, self.text_encoder = image_encoder, text_encoder
        self.log_scale = nn.Parameter(
            torch.tensor(math.log(1 / INITIAL_TEMPERATURE))
        )

    def encode_image(self, images: Tensor) -> Tensor:
        return F.normalize(
            self.image_encoder(images), dim=-1
        )  # (B, E), unit length

    def encode_text(self, tokens: Tensor) -> Tensor:
        return F.normalize(self.text_encoder(tokens), dim=-1)  # (B, E), unit length

    def logit_scale(self) -> Tensor:
        # exp(s), s clipped at log 100: no gradient pushes it further
        return self.log_scale.clamp(max=math.log(MAX_LOGIT_SCALE)).exp()

    def forward(self, images: Tensor, tokens: Tensor) -> Tensor:
        """The logits (B_images, B_texts): scaled cosine similarities."""
        image, text = self.encode_image(images), self.encode_text(tokens)
        return self.logit_scale() * image @ text.T


def contrastive_loss(
    logits: Tensor,
    positives: Tensor | None = None,
    negative_logits: Tensor | None = None,
) -> Tensor:
    """Symmetric InfoNCE of logits (B images, B texts) whose pair (i, i) matches:
    the mean over images of -log(the softmax mass on the texts that are true of
    it), and the same over texts.

    positives (B, B) bool: text j is true of image i (a duplicate caption is not a
        negative); None: only the diagonal.
    negative_logits (B, K): each image against K hard-negative texts (NegCLIP),
        added to the images' softmax only, never positives.
    """
    _check_loss_inputs(logits, positives, negative_logits)
    if positives is None:
        positives = torch.eye(len(logits), dtype=torch.bool, device=logits.device)
    image_rows, image_positives = logits, positives
    if negative_logits is not None:
        image_rows = torch.cat([logits, negative_logits], dim=1)  # (B, B + K)
        none = torch.zeros_like(negative_logits, dtype=torch.bool)
        image_positives = torch.cat([positives, none], dim=1)
    image_to_text = _infonce_rows(image_rows, image_positives)
    text_to_image = _infonce_rows(logits.T, positives.T)
    return (image_to_text + text_to_image) / 2


def _infonce_rows(scores: Tensor, positives: Tensor) -> Tensor:
    """The mean over rows of -log sum_{j positive} softmax(row)_j."""
    on_positives = scores.masked_fill(~positives, float("-inf")).logsumexp(dim=1)
    return (scores.logsumexp(dim=1) - on_positives).mean()


def _check_loss_inputs(
    logits: Tensor, positives: Tensor | None, negative_logits: Tensor | None
) -> None:
    check_tensor("logits", logits, dims=2, floating=True, shape="(B, B)")
    batch = len(logits)
    if logits.shape != (batch, batch):
        raise ValueError(f"logits must be square (B, B), got {tuple(logits.shape)}")
    if positives is not None:
        check_tensor(
            "positives", positives, dims=2, shape=f"({batch}, {batch}) bool"
        )
        if positives.shape != logits.shape or positives.dtype != torch.bool:
            raise ValueError(
                f"positives must be ({batch}, {batch}) bool, got "
                f"{tuple(positives.shape)} {positives.dtype}"
            )
        if not positives.diagonal().all():
            raise ValueError("positives must hold the diagonal: each pair matches")
    if negative_logits is not None:
        check_tensor("negative_logits", negative_logits, dims=2, floating=True)
        if len(negative_logits) != batch:
            raise ValueError(
                f"negative_logits must have one row per image ({batch}), got "
                f"{tuple(negative_logits.shape)}"
            )


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: matrices and convolution kernels decay; gains, biases,
    embeddings, position tables, the class token and the logit scale do not."""
    decay, no_decay = [], []
    embedding_tables = {
        id(module.weight)
        for module in model.modules()
        if isinstance(module, nn.Embedding)
    }
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        keep = parameter.ndim < 2 or id(parameter) in embedding_tables
        keep = keep or name.endswith(
            ("positions.table", "class_token", "log_scale")
        )
        (no_decay if keep else decay).append(parameter)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


@dataclass
class CaptionBatch:
    """Scenes and their captions for contrastive training."""

    images: Tensor  # (B, 3, S, S) in [0, 1]
    tokens: Tensor  # (B, L) ids of each image's caption
    positives: Tensor  # (B, B) bool: caption j is true of image i
    negatives: Tensor | None  # (B, L) ids of a hard-negative caption per image


def caption_batches(
    world: ShapesWorld,
    tokenizer: Callable[..., Tensor],
    batch_size: int,
    *,
    split: str = "train",
    languages: Sequence[str] = captions.LANGUAGES,
    negatives: Sequence[str] = (),
    context_length: int = CAPTION_CONTEXT,
    device: torch.device | str | None = None,
) -> Callable[[int], CaptionBatch]:
    """step -> CaptionBatch of scenes step * B ... (step + 1) * B - 1 of `split`:
    each captioned in languages[index % len(languages)] with its drawn phrasing;
    positives from the captions' meanings; with `negatives` (kinds of
    `captions.NEGATIVES`), scene `index` gets the negative of kind
    negatives[index % len(negatives)], or a changed attribute where the scene has
    no such negative (one object, two alike)."""
    check_instance("world", world, ShapesWorld)
    batch_size = check_int("batch_size", batch_size, minimum=2)
    check_choice("split", split, SPLITS)
    for language in languages:
        check_choice("every language", language, captions.LANGUAGES)
    for kind in negatives:
        check_choice("every kind of negative", kind, captions.NEGATIVES)
    device = as_device(device) if device is not None else None

    def batch(step: int) -> CaptionBatch:
        indices = torch.arange(step * batch_size, (step + 1) * batch_size)
        scenes = world.scenes(indices, split)
        draws = world.phrasing_draws(indices, split)
        language = [languages[i % len(languages)] for i in indices.tolist()]
        texts = captions.captions(world, scenes, language, draws)
        meanings = captions.caption_meanings(world, scenes, language, draws)
        objects = captions.scene_objects(scenes, world)
        held = [captions.meanings_held(scene, world.grid) for scene in objects]
        positives = torch.tensor([[m in h for m in meanings] for h in held])
        negative_tokens = None
        if negatives:
            text = _negative_texts(world, scenes, negatives, language, draws)
            negative_tokens = tokenizer(text, context_length).to(device)
        return CaptionBatch(
            scenes.images.to(device),
            tokenizer(texts, context_length).to(device),
            positives.to(device),
            negative_tokens,
        )

    return batch


def _negative_texts(world, labels, kinds, language, draws) -> list[str]:
    """Each scene's negative: kinds[i % len(kinds)], else a changed attribute."""
    fallback = captions.negative_captions(
        world, labels, "change_attribute", language, draws
    )
    by_kind = {
        kind: captions.negative_captions(world, labels, kind, language, draws)
        for kind in kinds
    }
    chosen = [by_kind[kinds[i % len(kinds)]][i] for i in range(len(fallback))]
    return [text or other for text, other in zip(chosen, fallback)]


def train_clip(
    model: CLIP,
    batches: Callable[[int], CaptionBatch],
    steps: int,
    lr: float = 1e-3,
    weight_decay: float = 0.1,
    warmup_steps: int = 100,
    precision: Precision | None = None,
    progress: bool = True,
    desc: str = "CLIP",
    on_step: Callable[[int], None] | None = None,
) -> History:
    """Train `model` on `batches` with `contrastive_loss` (when the batches carry
    hard negatives, each image is also scored against its own): AdamW with
    `parameter_groups`, a warm-up then cosine decay. The History also logs the
    logit scale ("scale") and the chance level of the loss, ln B ("chance")."""
    check_instance("model", model, CLIP)
    steps = check_int("steps", steps)
    device = next(model.parameters()).device
    precision = precision or choose_precision(device)
    optimizer = torch.optim.AdamW(
        parameter_groups(model, weight_decay), lr=check_positive("lr", lr)
    )

    def loss_fn(step: int) -> tuple[Tensor, dict[str, float]]:
        batch = batches(step)
        image = model.encode_image(batch.images).float()  # (B, E)
        scale = model.logit_scale()
        logits = scale * image @ model.encode_text(batch.tokens).float().T  # (B, B)
        negative_logits = None
        if batch.negatives is not None:  # each image against its own negative
            negative = model.encode_text(batch.negatives).float()  # (B, E)
            negative_logits = scale * (image * negative).sum(dim=1, keepdim=True)
        loss = contrastive_loss(logits, batch.positives, negative_logits)
        chance = math.log(len(logits))
        return loss, {"scale": scale.item(), "chance": chance}

    return train(
        model,
        loss_fn,
        steps=steps,
        optimizer=optimizer,
        scheduler=warmup_cosine(optimizer, steps, warmup_steps),
        precision=precision,
        progress=progress,
        desc=desc,
        on_step=on_step,
    )


# ----------------------------------------------------------------------------------
# The chapter's CLIP, kept in the minigen cache for chapters 7 and 8.


@dataclass(frozen=True)
class CLIPRecipe(ColumnRepr):
    """How the book's CLIP is made: the image encoder ("resnet" or "vit"), the
    training run, the hard negatives (NegCLIP when not empty), the tokenizer's
    vocabulary and the widths. Its repr names the cached file."""

    encoder: str = "resnet"
    steps: int = 1000
    batch_size: int = 64
    lr: float = 2e-3
    warmup_steps: int = 100
    negatives: tuple[str, ...] = ("swap_colours", "swap_places")
    vocabulary_size: int = 1000
    width: int = 128
    text_layers: int = 2
    embed_dim: int = 128
    seed: int = 0

    def __post_init__(self):
        check_choice("encoder", self.encoder, ENCODERS)
        for name in (
            "steps",
            "vocabulary_size",
            "width",
            "text_layers",
            "embed_dim",
        ):
            check_int(name, getattr(self, name))
        check_int("batch_size", self.batch_size, minimum=2)
        check_positive("lr", self.lr)
        check_int("warmup_steps", self.warmup_steps, 0, self.steps - 1)
        check_instance("negatives", self.negatives, tuple, "a tuple of kinds")
        for kind in self.negatives:
            check_choice("every kind of negative", kind, captions.NEGATIVES)
        check_int("seed", self.seed, 0, 2**32 - 1)


ENCODERS = ("resnet", "vit")


def book_world() -> ShapesWorld:
    """The world of chapter 6's CLIP: one or two objects per scene, captions in
    English and Chinese, the (colour, shape) pairs of HOLDOUT never shown."""
    return ShapesWorld(max_objects=2, holdout=HOLDOUT)


def book_recipe() -> CLIPRecipe:
    """The recipe of chapter 6 in the active profile, which chapters 7 and 8 load:
    NegCLIP with a ResNet, the defaults of CLIPRecipe in the cpu profile."""
    return CLIPRecipe(
        steps=pick(smoke=5, cpu=1000, gpu=5000),
        batch_size=pick(smoke=8, cpu=64, gpu=128),
        warmup_steps=pick(smoke=1, cpu=100, gpu=200),
    )


TOKENIZER_SCENES = 5000  # training scenes whose captions the tokenizer learns from


def caption_corpus(world: ShapesWorld) -> list[str]:
    """The captions, in every language and in their drawn phrasings, of the first
    TOKENIZER_SCENES training scenes of `world`: what the tokenizer learns from."""
    check_instance("world", world, ShapesWorld)
    labels = world.sample_labels(TOKENIZER_SCENES)
    draws = world.phrasing_draws(TOKENIZER_SCENES)
    return [
        text
        for language in captions.LANGUAGES
        for text in captions.captions(world, labels, language, draws)
    ]


def caption_tokenizer(world: ShapesWorld, vocabulary_size: int) -> BPETokenizer:
    """A BPE tokenizer trained on `caption_corpus(world)`."""
    return BPETokenizer.train(caption_corpus(world), vocabulary_size)


def build_clip(
    encoder: str,
    vocabulary_size: int,
    image_size: int = 32,
    width: int = 128,
    embed_dim: int = 128,
    text_layers: int = 2,
) -> CLIP:
    """The book's CLIP: a text transformer of `width` and `text_layers` layers, and
    a 4-layer ViT of `width` (patches of 4 pixels) or a ResNet of width 16 (one
    block per stage)."""
    check_choice("encoder", encoder, ENCODERS)
    text = TextEncoder(
        vocabulary_size, CAPTION_CONTEXT, width, text_layers, 4, embed_dim
    )
    if encoder == "vit":
        image = VisionTransformer(image_size, 4, width, 4, 4, embed_dim)
    else:
        image = ResNetEncoder(image_size, 16, (1, 1, 1), 4, embed_dim)
    return CLIP(image, text)


def load_clip(
    world: ShapesWorld | None = None,
    recipe: CLIPRecipe | None = None,
    path: str | Path | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> tuple[CLIP, BPETokenizer]:
    """The CLIP of `recipe` trained on `world`'s captioned training scenes, and its
    tokenizer: loaded from `path`, or trained and saved there first if the file is
    absent. The model is returned in eval mode, with its History as `.history`.

    world, recipe: default `book_world()` and `book_recipe()`, chapter 6's CLIP in
    the active profile.
    path: default a file in `cache_folder()` named by the world and the recipe.
    """
    world = book_world() if world is None else world
    recipe = book_recipe() if recipe is None else recipe
    check_instance("world", world, ShapesWorld)
    check_instance("recipe", recipe, CLIPRecipe)
    check_bool("progress", progress)
    settings = (asdict(world), asdict(recipe))
    if path is None:
        path = cache_path(f"clip-{recipe.encoder}-{recipe.steps}steps", settings)
    path = check_path("path", path)
    precision = choose_precision(device)
    model = None
    if path.exists():
        tokenizer = BPETokenizer(_saved_merges(path))
        model = _new_clip(recipe, world, len(tokenizer)).to(precision.device)
        saved = load_checkpoint(path, model, map_location=precision.device)
        check_settings(path, saved["extra"]["settings"], settings, "a CLIP")
        model.history = saved["history"]
        return model.eval(), tokenizer
    check_writable(path.parent, "the trained CLIP")
    model, tokenizer, history = make_clip(world, recipe, precision, progress)
    merges = [list(pair) for pair in tokenizer.merges]
    extra = {"settings": repr(settings), "merges": merges}
    save_checkpoint(path, model, step=recipe.steps, history=history, extra=extra)
    model.history = history
    return model.eval(), tokenizer


def make_clip(
    world: ShapesWorld,
    recipe: CLIPRecipe = CLIPRecipe(),
    precision: Precision | None = None,
    progress: bool = True,
) -> tuple[CLIP, BPETokenizer, History]:
    """Train the CLIP of `recipe` on `world`'s captioned training scenes, from a
    tokenizer trained on their captions and weights drawn from `recipe.seed`."""
    check_instance("world", world, ShapesWorld)
    check_instance("recipe", recipe, CLIPRecipe)
    precision = precision or choose_precision()
    tokenizer = caption_tokenizer(world, recipe.vocabulary_size)
    model = _new_clip(recipe, world, len(tokenizer)).to(precision.device)
    batches = caption_batches(
        world, tokenizer, recipe.batch_size, negatives=recipe.negatives,
        device=precision.device,
    )  # fmt: skip
    history = train_clip(
        model, batches, recipe.steps, lr=recipe.lr,
        warmup_steps=recipe.warmup_steps, precision=precision,
        progress=progress, desc="CLIP",
    )  # fmt: skip
    return model, tokenizer, history


def _new_clip(recipe: CLIPRecipe, world: ShapesWorld, vocabulary: int) -> CLIP:
    seed_everything(recipe.seed)
    return build_clip(
        recipe.encoder, vocabulary, world.resolution, recipe.width,
        recipe.embed_dim, recipe.text_layers,
    )  # fmt: skip


def _saved_merges(path: Path) -> list[tuple[str, str]]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    return [tuple(pair) for pair in state["extra"]["merges"]]
