"""Text -> image judged by the oracle: does a generated image show what its prompt
says?

A prompt is a scene's caption (`minigen.data.captions`), so its labels are exact.
One-object prompts ("a small red circle at the top left") fix all four attributes;
two-object prompts in their first phrasing ("a small red circle to the left of a
large blue square") fix each object and their relation, the attribute binding and
spatial relations that A. Ramesh et al. 2022 (unCLIP, section 7) name as the
limits of generation from CLIP embeddings.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

from minigen.core.validators import check_instance, check_int, check_tensor
from minigen.data import captions
from minigen.data.shapes import SceneLabels, Scenes, ShapesWorld, relation, render
from minigen.models.oracle import Oracle, parse

ONE_OBJECT = ("shape", "colour", "size", "cell", "all")
TWO_OBJECTS = ("both", "binding_error", "relation")


def prompt_indices(
    world: ShapesWorld, n: int, objects: int, split: str = "test"
) -> Tensor:
    """The indices (n,) of the first n scenes of `split` with exactly `objects`
    objects: the scenes whose captions are the prompts."""
    if objects not in (1, 2):
        raise ValueError(f"objects must be 1 or 2, got {objects}")
    n = check_int("n", n)
    kept, start = [], 0
    while sum(len(k) for k in kept) < n:
        labels = world.sample_labels(range(start, start + 4 * n), split)
        kept.append(torch.nonzero(labels.count == objects)[:, 0] + start)
        start += 4 * n
    return torch.cat(kept)[:n]


def prompt_labels(
    world: ShapesWorld, n: int, objects: int, split: str = "test"
) -> SceneLabels:
    """The labels of the scenes `prompt_indices` picks."""
    return world.sample_labels(prompt_indices(world, n, objects, split), split)


def prompts(
    world: ShapesWorld, labels: SceneLabels, language: str = "en"
) -> list[str]:
    """Each scene's caption in its first phrasing: the prompt."""
    return captions.captions(world, labels, language)


def prompt_hits(
    judge: Oracle, images: Tensor, labels: SceneLabels | Scenes
) -> dict[str, Tensor]:
    """Per image (N,) bool, what the oracle reads against the prompt's labels.

    One object: "shape", "colour", "size" of the object read (the first, if more),
    "cell" it is read in, "all": exactly one object and all four right.
    Two objects: "both", exactly two objects read and each prompted (shape, colour,
    size) among them; "binding_error", the prompted shapes read with each other's
    colours (prompts with two shapes and two colours); "relation", both prompted
    objects read and placed as the prompt says (left of, above, ...).
    """
    check_instance("judge", judge, Oracle)
    what = "SceneLabels (prompt_labels) or Scenes"
    check_instance("labels", labels, (SceneLabels, Scenes), what)
    check_tensor("images", images, dims=4, floating=True, shape="(N, 3, S, S)")
    counts = labels.count.unique().tolist()
    if len(images) != len(labels.count) or counts not in ([1], [2]):
        raise ValueError(
            "labels must hold one prompt of one object, or one of two objects, per "
            f"image: {len(images)} images, object counts {counts}"
        )
    read = _objects_read(judge, images)
    wanted = _objects_wanted(labels)
    score = _one_object if counts == [1] else _two_objects
    rows = [
        score(found, asked, judge.world.grid) for found, asked in zip(read, wanted)
    ]
    names = ONE_OBJECT if counts == [1] else TWO_OBJECTS
    return {name: torch.tensor([row[name] for row in rows]) for name in names}


def _objects_read(judge: Oracle, images: Tensor) -> list[list[tuple[int, ...]]]:
    """Per image, the (shape, colour, size, cell) of each object read."""
    cells = parse(judge, images)
    empty = len(judge.world.shapes)
    found = []
    for shapes, colours, sizes in zip(
        *(cells[name].tolist() for name in ("shape", "colour", "size"))
    ):
        found.append(
            [
                (shape, colour, size, cell)
                for cell, (shape, colour, size) in enumerate(
                    zip(shapes, colours, sizes)
                )
                if shape != empty
            ]
        )
    return found


def _objects_wanted(labels: SceneLabels) -> list[list[tuple[int, ...]]]:
    fields = labels.shape, labels.colour, labels.size, labels.cell
    rows = zip(*(field.tolist() for field in fields), labels.count.tolist())
    return [
        [(s[k], c[k], z[k], cell[k]) for k in range(count)]
        for s, c, z, cell, count in rows
    ]


def _one_object(found: Sequence, asked: Sequence, grid: int) -> dict[str, bool]:
    first = found[0] if found else (-1, -1, -1, -1)
    hits = {name: first[i] == asked[0][i] for i, name in enumerate(ONE_OBJECT[:4])}
    return hits | {"all": len(found) == 1 and all(hits.values())}


def _two_objects(found: Sequence, asked: Sequence, grid: int) -> dict[str, bool]:
    a, b = asked
    described = {obj[:3] for obj in found}  # (shape, colour, size) read
    where = {obj[:2]: obj[3] for obj in found}  # (shape, colour) -> cell
    both = len(found) == 2 and a[:3] in described and b[:3] in described
    swapped = (a[0], b[1]) in where and (b[0], a[1]) in where
    binding = a[0] != b[0] and a[1] != b[1] and swapped
    placed = (
        a[:2] in where
        and b[:2] in where
        and (
            relation(where[a[:2]], where[b[:2]], grid) == relation(a[3], b[3], grid)
        )
    )
    return {"both": both, "binding_error": binding, "relation": placed}


def score_prompts(
    generate: Callable[[list[str]], Tensor],
    judge: Oracle,
    world: ShapesWorld,
    labels: SceneLabels,
    language: str = "en",
    batch_size: int = 100,
) -> tuple[dict[str, Tensor], Tensor]:
    """Images that `generate` (prompts -> images in [0, 1]) makes from the prompts
    of `labels` in `language`, `batch_size` prompts a call, and `prompt_hits` of
    them: (hits, images)."""
    if not callable(generate):
        raise TypeError(f"generate must be a function of prompts, got {generate!r}")
    texts = prompts(world, labels, language)
    size = check_int("batch_size", batch_size)
    images = torch.cat(
        [generate(texts[i : i + size]) for i in range(0, len(texts), size)]
    )
    return prompt_hits(judge, images, labels), images


# ----------------------------------------------------------------------------------
# Editing: img2img and inpainting, judged by the oracle


def one_object_scenes(labels: SceneLabels, world: ShapesWorld) -> Tensor:
    """The images (N, 3, S, S) of `labels`' scenes with their first object only."""
    check_instance("labels", labels, SceneLabels, "SceneLabels")
    fields = (labels.shape, labels.colour, labels.size, labels.cell)
    images, _ = render(
        *(field[:, :1] for field in fields), labels.offset[:, :1],
        resolution=world.resolution, grid=world.grid, shapes=world.shapes,
        colours=world.colours, sizes=world.sizes,
    )  # fmt: skip
    return images


def cell_masks(cells: Tensor, world: ShapesWorld) -> Tensor:
    """(N,) cell indices -> (N, 1, S, S) masks, 1 on every pixel that overlaps
    the cell (so an object drawn in the cell, anti-aliased edges included, lies
    inside its mask)."""
    check_tensor("cells", cells, dims=1, shape="(N,) cell indices")
    side = world.resolution / world.grid  # a cell's side in pixels
    pixels = torch.arange(world.resolution)
    # pixel [p, p + 1) overlaps cell band [b side, (b + 1) side)
    bands = torch.arange(world.grid)
    overlaps = (pixels[None, :] + 1 > bands[:, None] * side) & (
        pixels[None, :] < (bands[:, None] + 1) * side
    )  # (grid, S)
    rows = overlaps[cells.div(world.grid, rounding_mode="floor")]  # (N, S)
    columns = overlaps[cells % world.grid]
    masks = rows[:, :, None] & columns[:, None, :]
    return masks[:, None].float()  # (N, 1, S, S)


def inpainting_task(
    world: ShapesWorld, n: int, split: str = "test"
) -> tuple[Tensor, Tensor, SceneLabels]:
    """Held-out inpainting problems from the first n two-object scenes of `split`:
    the scene with its first object only (N, 3, S, S) in [0, 1], a mask (N, 1, S,
    S) on the cell of the second object, and the two-object labels, whose captions
    are the prompts: "draw the second object where the mask is"."""
    labels = prompt_labels(world, n, 2, split)
    masks = cell_masks(labels.cell[:, 1], world)
    return one_object_scenes(labels, world), masks, labels


def object_read(
    judge: Oracle, images: Tensor, labels: SceneLabels, slot: int = 0
) -> Tensor:
    """Per image (N,) bool: the oracle reads object `slot` of `labels` (its shape,
    colour and size) in its cell, whatever else the image holds."""
    check_instance("judge", judge, Oracle)
    check_instance("labels", labels, SceneLabels, "SceneLabels")
    slot = check_int("slot", slot, minimum=0, maximum=labels.shape.shape[1] - 1)
    read, rows, cells = parse(judge, images), torch.arange(len(images)), labels.cell
    found = [
        read[name][rows, cells[:, slot]] == getattr(labels, name)[:, slot]
        for name in ("shape", "colour", "size")
    ]
    return torch.stack(found).all(0) & (cells[:, slot] >= 0)


def score_inpainting(
    judge: Oracle,
    images: Tensor,
    sources: Tensor,
    masks: Tensor,
    labels: SceneLabels,
) -> dict[str, Tensor]:
    """Per image (N,): "inside", the oracle reads the prompt's second object
    (shape, colour, size) in its cell; "kept", it reads the first object in its
    cell as in the source; "psnr outside" (dB), against the source outside the
    mask."""
    outside = 1 - masks
    error = ((images - sources) ** 2 * outside).flatten(1).sum(1)
    mse = error / (3 * outside.flatten(1).sum(1))
    return {
        "inside": object_read(judge, images, labels, 1),
        "kept": object_read(judge, images, labels, 0),
        "psnr outside": 10 * torch.log10(1 / mse),
    }
