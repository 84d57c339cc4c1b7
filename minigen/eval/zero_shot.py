"""Judging a CLIP model without training anything more: zero-shot classification
from prompts, and retrieval in both directions.

- Zero-shot classification: the class whose prompt embedding is closest to the
  image embedding wins; prompt ensembling averages the embeddings of many prompts
  per class (A. Radford et al., "Learning Transferable Visual Models From Natural
  Language Supervision", ICML 2021, section 3.1.4). Here a class's prompts are the
  captions of every one-object scene with that attribute value, or with `single`
  one such caption.
- Retrieval: the rank of the first relevant item among all candidates, recall@k
  and the median rank (as CLIP's Flickr30k and MSCOCO tables report them).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minigen.core.validators import check_choice, check_instance, check_int
from minigen.data import captions
from minigen.data.shapes import SceneObject, Scenes, ShapesWorld
from minigen.models.clip import CAPTION_CONTEXT

ATTRIBUTES: tuple[str, ...] = ("shape", "colour", "size", "cell")


def class_names(world: ShapesWorld, attribute: str) -> tuple[str, ...]:
    """The classes of an attribute: the world's shapes, colours, sizes or cells."""
    check_choice("attribute", attribute, ATTRIBUTES)
    return (
        world.cell_names if attribute == "cell" else getattr(world, attribute + "s")
    )


def class_prompts(
    world: ShapesWorld,
    attribute: str,
    index: int,
    language: str = "en",
    single: bool = False,
) -> list[str]:
    """The captions (phrasing 0) of every one-object scene whose `attribute` is its
    `index`-th class; with `single`, only the first of them."""
    names = class_names(world, attribute)
    check_int("index", index, minimum=0, maximum=len(names) - 1)
    wanted = index if attribute == "cell" else names[index]
    prompts = []
    for shape in world.shapes:
        for colour in world.colours:
            for size in world.sizes:
                for cell in range(world.grid**2):
                    obj = SceneObject(shape, colour, size, cell)
                    if getattr(obj, attribute) == wanted:
                        scene = [obj]
                        text = captions.describe_scene(scene, world.grid, language)
                        prompts.append(text)
    return prompts[:1] if single else prompts


@torch.no_grad()
def class_embeddings(
    model: nn.Module,
    tokenizer: Callable[..., Tensor],
    world: ShapesWorld,
    attribute: str,
    language: str = "en",
    single: bool = False,
    context_length: int = CAPTION_CONTEXT,
) -> Tensor:
    """(classes, E) unit vectors: each class's prompt embeddings averaged, then
    normalised (`model.encode_text` must return unit vectors)."""
    device = next(model.parameters()).device
    rows = []
    for index in range(len(class_names(world, attribute))):
        prompts = class_prompts(world, attribute, index, language, single)
        tokens = tokenizer(prompts, context_length).to(device)
        rows.append(model.encode_text(tokens).float().mean(dim=0))
    return F.normalize(torch.stack(rows), dim=-1)


@torch.no_grad()
def zero_shot_accuracy(
    model: nn.Module,
    tokenizer: Callable[..., Tensor],
    scenes: Scenes,
    attribute: str,
    language: str = "en",
    single: bool = False,
    context_length: int = CAPTION_CONTEXT,
) -> float:
    """The share of one-object `scenes` whose `attribute` the closest class
    embedding names."""
    check_instance("scenes", scenes, Scenes)
    if (scenes.count != 1).any():
        raise ValueError("zero-shot classification takes one-object scenes only")
    weights = class_embeddings(
        model, tokenizer, scenes.world, attribute, language, single, context_length
    )
    device = next(model.parameters()).device
    images = model.encode_image(scenes.images.to(device)).float()  # (N, E)
    predicted = (images @ weights.T).argmax(dim=1).cpu()  # (N,)
    truth = getattr(scenes, attribute)[:, 0]
    return (predicted == truth).float().mean().item()


def retrieval_ranks(similarity: Tensor, relevant: Tensor) -> Tensor:
    """For each query (row) of similarity (Q, C), the 0-based rank of its
    best-placed relevant candidate (relevant (Q, C) bool) among all candidates by
    decreasing similarity; every query needs one relevant candidate. A wrong
    candidate tied with it is placed above it, so a model that cannot tell
    candidates apart ranks as badly as it can."""
    if similarity.shape != relevant.shape or relevant.dtype != torch.bool:
        raise ValueError(
            "relevant must be a bool tensor of similarity's shape "
            f"{tuple(similarity.shape)}, got {tuple(relevant.shape)} "
            f"{relevant.dtype}"
        )
    if not relevant.any(dim=1).all():
        raise ValueError("every query needs at least one relevant candidate")
    best = similarity.masked_fill(~relevant, float("-inf")).max(dim=1).values
    above = (similarity >= best[:, None]) & ~relevant  # wrong ones, ties too
    return above.sum(dim=1)


def recall_at(ranks: Tensor, ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
    """recall@k (the share of queries with a relevant candidate in the top k) and
    the median rank, 1-based as papers report it."""
    scores = {
        f"R@{k}": (ranks < check_int("k", k)).float().mean().item() for k in ks
    }
    return scores | {"median rank": ranks.float().median().item() + 1}


@torch.no_grad()
def retrieval_scores(
    model: nn.Module,
    tokenizer: Callable[..., Tensor],
    scenes: Scenes,
    language: str = "en",
    context_length: int = CAPTION_CONTEXT,
    batch_size: int = 250,
) -> dict[str, float]:
    """Retrieval among the scenes and their captions (phrasing 0), both ways:
    recall@1/5/10 and the median rank of image -> text ("i->t R@1", ...) and text
    -> image, where a caption counts as right for every image it is true of; and
    "chance R@1", the share of (image, caption) pairs that are right."""
    check_instance("scenes", scenes, Scenes)
    world = scenes.world
    texts = captions.captions(world, scenes, language)
    meanings = captions.caption_meanings(world, scenes, language)
    held = [
        captions.meanings_held(scene, world.grid)
        for scene in captions.scene_objects(scenes, world)
    ]
    relevant = torch.tensor([[m in h for m in meanings] for h in held])  # (N, N)
    device = next(model.parameters()).device
    images, text = [], []
    for start in range(0, len(texts), check_int("batch_size", batch_size)):
        part = slice(start, start + batch_size)
        images.append(model.encode_image(scenes.images[part].to(device)).float())
        tokens = tokenizer(texts[part], context_length).to(device)
        text.append(model.encode_text(tokens).float())
    similarity = (torch.cat(images) @ torch.cat(text).T).cpu()  # (images, texts)
    found = {}
    for name, sim, rel in (
        ("i->t", similarity, relevant),
        ("t->i", similarity.T, relevant.T),
    ):
        scores = recall_at(retrieval_ranks(sim, rel))
        found |= {f"{name} {key}": value for key, value in scores.items()}
    return found | {"chance R@1": relevant.float().mean().item()}


@torch.no_grad()
def binding_accuracy(
    model: nn.Module,
    tokenizer: Callable[..., Tensor],
    scenes: Scenes,
    kind: str,
    language: str = "en",
    context_length: int = CAPTION_CONTEXT,
) -> tuple[float, int]:
    """How often an image is closer to its own caption than to the caption of its
    `kind` negative (`captions.NEGATIVES`), over the scenes that have one, a tie
    counting one half. Captions use phrasing 0 (for two objects: their relation);
    a two-object scene with swapped places is described in phrasing 1, "B <the
    relation of A to B> A", so that each negative holds the words of the caption
    in another order and a model reading bags of words scores the chance level
    1/2 (as in the ARO benchmark). Returns the share and the number of scenes
    scored."""
    check_instance("scenes", scenes, Scenes)
    world = scenes.world
    objects = captions.scene_objects(scenes, world)
    pairs = []  # (row, own caption, negative caption)
    for row, scene in enumerate(objects):
        try:
            changed = captions.negative(scene, kind, world=world)
        except ValueError:
            continue
        own = captions.describe_scene(scene, world.grid, language)
        # swapped places: the same words in another order
        phrasing = (
            captions.word_order_phrasing(scene, 0) if kind == "swap_places" else 0
        )
        other = captions.describe_scene(changed, world.grid, language, phrasing)
        pairs.append((row, own, other))
    if not pairs:
        raise ValueError(f"no scene has a {kind} negative")
    device = next(model.parameters()).device
    rows, own, negative = zip(*pairs)
    images = model.encode_image(scenes.images[list(rows)].to(device)).float()
    texts = [tokenizer(list(t), context_length).to(device) for t in (own, negative)]
    own_score, negative_score = (
        (images * model.encode_text(t).float()).sum(dim=1) for t in texts
    )
    wins = (own_score > negative_score).float() + 0.5 * (
        own_score == negative_score
    )
    return wins.mean().item(), len(pairs)
