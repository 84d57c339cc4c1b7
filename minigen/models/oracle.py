"""The oracle: a small CNN that reads a shapes-world image back into labels.

Convolution and pooling layers (LeCun et al. 1998) turn the image into a coarse
feature map whose grid matches the scene grid; per cell, three heads predict the
shape (or "empty"), the colour and the size. Because every scene of `minigen.data`
is exactly parseable, the oracle turns "does this generated image show what the
caption says?" into accuracies that later chapters report.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from minigen.core.cache import cache_path, check_writable
from minigen.core.runtime import (
    Precision,
    choose_precision,
    eval_mode,
    seed_everything,
)
from minigen.core.train import (
    History,
    check_training_arguments,
    load_checkpoint,
    save_checkpoint,
    train,
)
from minigen.core.validators import (
    check_bool,
    check_float,
    check_instance,
    check_int,
    check_path,
    check_tensor,
)
from minigen.data.shapes import SceneObject, Scenes, ShapesWorld, caption
from minigen.nn.conv import conv_block

ATTRIBUTES = ("shape", "colour", "size")
# load_oracle's training, if interrupted, resumes from its last 100 steps
CACHE_CHECKPOINT_EVERY = 100


class Oracle(nn.Module):
    """CNN: image (B, 3, H, W) -> per-cell logits for shape (+ empty), colour and
    size."""

    def __init__(self, world: ShapesWorld, width: int = 32):
        super().__init__()
        self.world = check_instance("world", world, ShapesWorld)
        width = check_int("width", width)
        # how it was trained, once trained or loaded
        self.history: History | None = None
        self.features = nn.Sequential(  # (B, 3, H, W)
            conv_block(3, width),  # (B, w, H/2, W/2)
            conv_block(width, 2 * width),  # (B, 2w, H/4, W/4)
            conv_block(2 * width, 4 * width),  # (B, 4w, H/8, W/8)
        )
        # (B, 4w, G, G): one feature vector per cell
        self.to_cells = nn.AdaptiveAvgPool2d(world.grid)
        hidden = 4 * width
        self.heads = nn.ModuleDict(
            {
                # the last class means "empty cell"
                "shape": self._head(hidden, len(world.shapes) + 1),
                "colour": self._head(hidden, len(world.colours)),
                "size": self._head(hidden, len(world.sizes)),
            }
        )

    @staticmethod
    def _head(c_in: int, n_classes: int) -> nn.Sequential:
        """A per-cell MLP written as 1x1 convolutions."""
        return nn.Sequential(
            nn.Conv2d(c_in, c_in, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_in, n_classes, 1),
        )

    def cell_features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 4w, G, G) per-cell features (also the features later
        chapters compare)."""
        self._check_images(images)
        return self.to_cells(self.features(images))

    def _check_images(self, images: torch.Tensor) -> None:
        expected = (3, self.world.resolution, self.world.resolution)
        check_tensor("images", images, floating=True)
        if images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(
                "the oracle reads images of shape "
                f"(B, {', '.join(map(str, expected))}), got {tuple(images.shape)}"
            )

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        cells = self.cell_features(images)  # (B, C, G, G)
        return {
            name: head(cells).flatten(2).transpose(1, 2)  # (B, G*G, classes)
            for name, head in self.heads.items()
        }

    @torch.no_grad()
    def read(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Predicted per-cell labels, (B, G*G) long each; -1 for colour and size of
        empty cells.

        The same layout as `Scenes.cell_targets`, so predictions and truth compare
        directly.
        """
        with eval_mode(self):
            logits = self(images)
        shape = logits["shape"].argmax(-1)
        empty = shape == len(self.world.shapes)
        return {
            "shape": shape,
            "colour": logits["colour"].argmax(-1).masked_fill(empty, -1),
            "size": logits["size"].argmax(-1).masked_fill(empty, -1),
        }

    def describe(self, images: torch.Tensor) -> list[str]:
        """What the oracle reads in each image, as a caption (objects in cell order;
        "nothing" if it sees none)."""
        world, cells = self.world, self.read(images)
        captions = []
        for shapes, colours, sizes in zip(
            *(cells[name].tolist() for name in ATTRIBUTES)
        ):
            objects = [
                SceneObject(world.shapes[s], world.colours[c], world.sizes[z], cell)
                for cell, (s, c, z) in enumerate(zip(shapes, colours, sizes))
                if s < len(world.shapes)
            ]
            captions.append(caption(objects, world.grid) if objects else "nothing")
        return captions


def oracle_loss(
    logits: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]
) -> torch.Tensor:
    """Sum of per-cell cross-entropies; colour and size count only where a cell
    holds an object."""
    _check_logits(logits, targets)
    total = 0.0
    for name in ATTRIBUTES:
        # target -1: empty cell, no colour/size
        total = total + F.cross_entropy(
            logits[name].flatten(0, 1).float(),
            targets[name].flatten(),
            ignore_index=-1,
        )
    return total


def accuracy(
    predicted: dict[str, torch.Tensor],
    targets: dict[str, torch.Tensor],
    n_shapes: int,
) -> dict[str, float]:
    """Per-attribute accuracy over the objects, 'cell' occupancy accuracy over all
    cells, exact scenes.

    shape / colour / size: share of objects (occupied cells) whose attribute was
        read correctly.
    cell: share of grid cells whose occupancy (object or empty) was read correctly.
    scene: share of images in which every cell was read exactly.
    """
    n_shapes = check_int("n_shapes", n_shapes)
    _check_cell_labels("targets", targets, n_shapes)
    _check_cell_labels("predicted", predicted, n_shapes, like=targets["shape"])
    occupied = targets["shape"] != n_shapes  # (N, G*G)
    result = {
        name: (predicted[name] == targets[name])[occupied].float().mean().item()
        for name in ATTRIBUTES
    }
    result["cell"] = (
        ((predicted["shape"] != n_shapes) == occupied).float().mean().item()
    )
    exact = (
        torch.stack([predicted[name] == targets[name] for name in ATTRIBUTES])
        .all(0)
        .all(-1)
    )
    result["scene"] = exact.float().mean().item()
    return result


@torch.no_grad()
def evaluate(
    oracle: Oracle, scenes: Scenes, batch_size: int = 1024
) -> dict[str, float]:
    """Accuracies (see `accuracy`) of the oracle on rendered scenes."""
    check_instance("oracle", oracle, Oracle)
    check_instance("scenes", scenes, Scenes)
    batch_size = check_int("batch_size", batch_size)
    device = next(oracle.parameters()).device
    chunks = [
        oracle.read(scenes.images[i : i + batch_size].to(device))
        for i in range(0, len(scenes), batch_size)
    ]
    predicted = {
        name: torch.cat([c[name] for c in chunks]).cpu() for name in ATTRIBUTES
    }
    return accuracy(predicted, scenes.cell_targets(), len(oracle.world.shapes))


def train_oracle(
    world: ShapesWorld,
    steps: int,
    batch_size: int = 128,
    lr: float = 2e-3,
    width: int = 32,
    precision: Precision | None = None,
    progress: bool = True,
    seed: int = 0,
    checkpoint: str | Path | None = None,
    checkpoint_every: int | None = None,
) -> tuple[Oracle, History]:
    """Train on fresh renders every step (the world is unlimited, so there is
    nothing to overfit to).

    AdamW (Loshchilov & Hutter 2019) with a one-cycle (Smith & Topin 2019)
    learning-rate schedule; split "train" for training, never "test".
    seed: the initial weights (the batches are the world's first scenes).
    checkpoint: a file to resume from and save to (every `checkpoint_every` steps).
    """
    check_instance("world", world, ShapesWorld)
    check_training_arguments(
        steps=steps, batch_size=batch_size, lr=lr, seed=seed, precision=precision,
        progress=progress, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
    )  # fmt: skip
    precision = precision or choose_precision()
    seed_everything(seed)
    oracle = Oracle(world, width).to(precision.device)
    oracle = oracle.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(oracle.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=steps
    )

    def loss_fn(step: int) -> torch.Tensor:
        indices = range(step * batch_size, (step + 1) * batch_size)
        batch = world.scenes(indices, split="train")
        images = batch.images.to(
            precision.device, memory_format=torch.channels_last
        )
        targets = {
            k: v.to(precision.device) for k, v in batch.cell_targets().items()
        }
        return oracle_loss(oracle(images), targets)

    oracle.history = train(
        oracle, loss_fn, steps=steps, optimizer=optimizer, scheduler=schedule,
        precision=precision, progress=progress, desc="oracle",
        checkpoint=checkpoint, checkpoint_every=checkpoint_every,
    )  # fmt: skip
    return oracle.eval(), oracle.history


def _cache_path(world: ShapesWorld, steps: int, width: int, seed: int) -> Path:
    stem = f"oracle-{world.resolution}px-{steps}steps-seed{seed}"
    return cache_path(stem, (asdict(world), steps, width, seed))


def load_oracle(
    world: ShapesWorld,
    steps: int,
    width: int = 32,
    path: str | Path | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    seed: int = 0,
) -> Oracle:
    """The oracle for `world` trained for `steps`: loaded from `path`, or trained
    and saved there first if the file is absent.

    path: default a file in `cache_folder()` named by the world, steps, width and
    seed. An interrupted training resumes from a checkpoint next to `path` (written
    every CACHE_CHECKPOINT_EVERY steps), which is deleted once the oracle is saved.
    """
    check_instance("world", world, ShapesWorld)
    check_int("steps", steps)
    check_int("width", width)
    check_bool("progress", progress)
    check_int("seed", seed, 0, 2**32 - 1)
    if path is None:
        path = _cache_path(world, steps, width, seed)
    path = check_path("path", path)
    precision = choose_precision(device)
    if path.exists():
        oracle = Oracle(world, width).to(precision.device)
        saved = load_checkpoint(path, oracle, map_location=precision.device)
        oracle.history = saved["history"]
        return oracle.eval()
    check_writable(path.parent, "the trained oracle")
    unfinished = path.with_name(path.stem + ".training.pt")
    oracle, history = train_oracle(
        world, steps, width=width, precision=precision, progress=progress,
        seed=seed, checkpoint=unfinished, checkpoint_every=CACHE_CHECKPOINT_EVERY,
    )  # fmt: skip
    save_checkpoint(path, oracle, step=steps, history=history)
    unfinished.unlink(missing_ok=True)
    return oracle


# ----------------------------------------------------------------------------------
# Judging generated images: does the oracle read a valid scene, and which
# attributes does it see?


@torch.no_grad()
def parse(
    oracle: Oracle,
    images: torch.Tensor,
    threshold: float = 0.9,
    batch_size: int = 1024,
) -> dict[str, torch.Tensor]:
    """Read images cell by cell and say which images are valid scenes: a dict of
    tensors on the CPU.

    "shape", "colour", "size": (N, G*G) labels as in `Oracle.read` (-1 for colour
        and size of empty cells);
    "confident": (N,) bool, every cell's shape-or-empty probability >= threshold,
        and for each occupied cell the colour and size probabilities too;
    "count": (N,) objects read;
    "valid": (N,) bool, confident and min_objects <= count <= max_objects of the
        oracle's world.
    A blurry blob, two shapes melted together or a colour between two palette
    colours make the oracle unsure, so they fail "confident" even when its argmax
    names something.
    """
    check_instance("oracle", oracle, Oracle)
    check_tensor("images", images, dims=4, shape="(N, 3, H, W)")
    if len(images) == 0:
        raise ValueError("images must hold at least one image, got an empty batch")
    check_float("threshold", threshold, 0.0, 1.0, open_min=True, open_max=True)
    batch_size = check_int("batch_size", batch_size)
    world, n_shapes = oracle.world, len(oracle.world.shapes)
    device = next(oracle.parameters()).device
    chunks = []
    with eval_mode(oracle):
        for start in range(0, len(images), batch_size):
            logits = oracle(images[start : start + batch_size].to(device))
            # (B, G*G, K) each
            probs = {
                name: value.float().softmax(-1) for name, value in logits.items()
            }
            # values, indices: (B, G*G) each
            best = {name: p.max(-1) for name, p in probs.items()}
            occupied = best["shape"].indices != n_shapes  # (B, G*G)
            sure = best["shape"].values >= threshold
            for name in ("colour", "size"):
                # attributes count where occupied
                sure &= ~occupied | (best[name].values >= threshold)
            chunks.append(
                {
                    "shape": best["shape"].indices,
                    "colour": best["colour"].indices.masked_fill(~occupied, -1),
                    "size": best["size"].indices.masked_fill(~occupied, -1),
                    "confident": sure.all(-1),
                    "count": occupied.sum(-1),
                }
            )
    result = {
        name: torch.cat([c[name] for c in chunks]).cpu() for name in chunks[0]
    }
    result["valid"] = (
        result["confident"]
        & (result["count"] >= world.min_objects)
        & (result["count"] <= world.max_objects)
    )
    return result


def first_object(
    cells: dict[str, torch.Tensor], world: ShapesWorld
) -> dict[str, torch.Tensor]:
    """The shape, colour and size read in the first occupied cell of each image,
    (N,) each; -1 where no cell is.

    cells: per-cell labels (N, G*G) as from `parse`. For images meant to show one
    object (a class-conditional sample), compare the result with the requested
    labels: an image without an object never matches.
    """
    _check_cell_labels("cells", cells, _class_counts(world)["shape"])
    occupied = cells["shape"] != len(world.shapes)  # (N, G*G)
    first = occupied.float().argmax(dim=1, keepdim=True)  # (N, 1), 0 if none
    found = occupied.any(dim=1)
    return {
        name: torch.where(found, cells[name].gather(1, first)[:, 0], -1)
        for name in ATTRIBUTES
    }


def attribute_frequencies(
    cells: dict[str, torch.Tensor], world: ShapesWorld
) -> dict[str, torch.Tensor]:
    """The share of objects with each shape, colour and size:
    {"shape": (S,), "colour": (C,), "size": (Z,)}.

    cells: per-cell labels (N, G*G) as from `parse`, `Oracle.read` or
    `Scenes.cell_targets` (the data's own, for comparison); empty cells are skipped.
    Each vector sums to 1 (all zeros if there is no object).
    """
    classes = _class_counts(world)
    _check_cell_labels("cells", cells, classes["shape"], classes)
    occupied = cells["shape"] != len(world.shapes)  # (N, G*G)
    frequencies = {}
    for name, n in classes.items():
        labels = cells[name][occupied].flatten()
        counts = torch.bincount(labels, minlength=n).double()
        frequencies[name] = counts / counts.sum().clamp(min=1)
    return frequencies


# ----------------------------------------------------------------------------------
# Checks of the per-cell dicts


def _class_counts(world: ShapesWorld) -> dict[str, int]:
    """The classes of each attribute; shape's last class, len(world.shapes), is
    "empty"."""
    check_instance("world", world, ShapesWorld)
    return {
        "shape": len(world.shapes),
        "colour": len(world.colours),
        "size": len(world.sizes),
    }


def _check_cells(name: str, cells: Any, what: str) -> None:
    """A dict holding a tensor for each of ATTRIBUTES."""
    check_instance(name, cells, dict, f"a dict of {what} (shape, colour, size)")
    missing = [attribute for attribute in ATTRIBUTES if attribute not in cells]
    if missing:
        raise ValueError(
            f"{name} must hold {what} for {', '.join(ATTRIBUTES)}; "
            f"{', '.join(missing)} missing"
        )
    for attribute in ATTRIBUTES:
        check_tensor(f"{name}[{attribute!r}]", cells[attribute])


def _check_cell_labels(
    name: str,
    cells: Any,
    n_shapes: int,
    classes: dict[str, int] | None = None,
    like: torch.Tensor | None = None,
) -> None:
    """Per-cell labels: integer tensors (N, G*G) of one shape (that of `like` if
    given); shape in [0, n_shapes] (n_shapes: empty), colour and size >= -1 (-1:
    empty) and below `classes[attribute]` if given."""
    _check_cells(name, cells, "per-cell labels")
    shape = tuple(cells["shape"].shape if like is None else like.shape)
    for attribute in ATTRIBUTES:
        labels = cells[attribute]
        if (
            labels.is_floating_point()
            or labels.is_complex()
            or labels.dtype == torch.bool
        ):
            raise TypeError(
                f"{name}[{attribute!r}] must hold integer labels, got "
                f"{labels.dtype}"
            )
        if labels.dim() != 2 or tuple(labels.shape) != shape:
            raise ValueError(
                f"{name}[{attribute!r}] must have shape (N, G*G) = {shape}, got "
                f"{tuple(labels.shape)}"
            )
        low, high = (0, n_shapes) if attribute == "shape" else (-1, None)
        if classes is not None and attribute != "shape":
            high = classes[attribute] - 1
        if not labels.numel():
            continue
        smallest, largest = labels.min().item(), labels.max().item()
        if smallest < low or (high is not None and largest > high):
            valid = f">= {low}" if high is None else f"in [{low}, {high}]"
            raise ValueError(
                f"{name}[{attribute!r}] must hold labels {valid}, got values from "
                f"{smallest} to {largest}"
            )


def _check_logits(
    logits: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]
) -> None:
    """Per-cell logits (B, G*G, classes) and targets (B, G*G) of the same cells."""
    _check_cells("logits", logits, "per-cell logits")
    _check_cells("targets", targets, "per-cell targets")
    for attribute in ATTRIBUTES:
        scores, labels = logits[attribute], targets[attribute]
        if not scores.is_floating_point() or labels.is_floating_point():
            raise TypeError(
                f"logits[{attribute!r}] must be floating point and "
                f"targets[{attribute!r}] integer, got {scores.dtype} and "
                f"{labels.dtype}"
            )
        if scores.dim() != 3 or tuple(labels.shape) != tuple(scores.shape[:2]):
            raise ValueError(
                f"logits[{attribute!r}] must be (B, G*G, classes) and "
                f"targets[{attribute!r}] (B, G*G), got {tuple(scores.shape)} and "
                f"{tuple(labels.shape)}"
            )
