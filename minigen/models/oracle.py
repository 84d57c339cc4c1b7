"""The oracle: a small CNN that reads a shapes-world image back into labels.

Convolution and pooling layers (LeCun et al. 1998) turn the image into a coarse feature map whose
grid matches the scene grid; per cell, three heads predict the shape (or "empty"), the colour and
the size. Because every scene of `minigen.data` is exactly parseable, the oracle turns "does this
generated image show what the caption says?" into accuracies that later chapters report.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from minigen.data.shapes import SceneObject, Scenes, ShapesWorld, caption
from minigen.core.runtime import Precision, choose_precision
from minigen.core.train import History, load_checkpoint, save_checkpoint, train

ATTRIBUTES = ("shape", "colour", "size")


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    """Two 3x3 'same' convolutions with batch norm and ReLU, then 2x2 max pooling (halves H and W)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class Oracle(nn.Module):
    """CNN: image (B, 3, H, W) -> per-cell logits for shape (+ empty), colour and size."""

    def __init__(self, world: ShapesWorld, width: int = 32):
        super().__init__()
        self.world = world
        self.history: History | None = None   # how it was trained, once trained or loaded
        self.features = nn.Sequential(                      # (B, 3, H, W)
            conv_block(3, width),                            # (B, w, H/2, W/2)
            conv_block(width, 2 * width),                    # (B, 2w, H/4, W/4)
            conv_block(2 * width, 4 * width),                # (B, 4w, H/8, W/8)
        )
        self.to_cells = nn.AdaptiveAvgPool2d(world.grid)     # (B, 4w, G, G): one feature vector per cell
        hidden = 4 * width
        self.heads = nn.ModuleDict({
            "shape": self._head(hidden, len(world.shapes) + 1),   # the last class means "empty cell"
            "colour": self._head(hidden, len(world.colours)),
            "size": self._head(hidden, len(world.sizes)),
        })

    @staticmethod
    def _head(c_in: int, n_classes: int) -> nn.Sequential:
        """A per-cell MLP written as 1x1 convolutions."""
        return nn.Sequential(nn.Conv2d(c_in, c_in, 1), nn.ReLU(inplace=True), nn.Conv2d(c_in, n_classes, 1))

    def cell_features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 4w, G, G) per-cell features (also the features later chapters compare)."""
        expected = (3, self.world.resolution, self.world.resolution)
        if images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(f"the oracle reads images of shape (B, {', '.join(map(str, expected))}), "
                             f"got {tuple(images.shape)}")
        return self.to_cells(self.features(images))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        cells = self.cell_features(images)                                  # (B, C, G, G)
        return {name: head(cells).flatten(2).transpose(1, 2)                # (B, G*G, classes)
                for name, head in self.heads.items()}

    @torch.no_grad()
    def read(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Predicted per-cell labels, (B, G*G) long each; -1 for colour and size of empty cells.

        The same layout as `Scenes.cell_targets`, so predictions and truth compare directly.
        """
        was_training = self.training
        self.eval()
        logits = self(images)
        self.train(was_training)
        shape = logits["shape"].argmax(-1)
        empty = shape == len(self.world.shapes)
        return {
            "shape": shape,
            "colour": logits["colour"].argmax(-1).masked_fill(empty, -1),
            "size": logits["size"].argmax(-1).masked_fill(empty, -1),
        }

    def describe(self, images: torch.Tensor) -> list[str]:
        """What the oracle reads in each image, as a caption (objects in cell order; "nothing" if it sees none)."""
        world, cells = self.world, self.read(images)
        captions = []
        for shapes, colours, sizes in zip(*(cells[name].tolist() for name in ATTRIBUTES)):
            objects = [SceneObject(world.shapes[s], world.colours[c], world.sizes[z], cell)
                       for cell, (s, c, z) in enumerate(zip(shapes, colours, sizes)) if s < len(world.shapes)]
            captions.append(caption(objects, world.grid) if objects else "nothing")
        return captions


def oracle_loss(logits: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum of per-cell cross-entropies; colour and size count only where a cell holds an object."""
    total = 0.0
    for name in ATTRIBUTES:
        total = total + F.cross_entropy(logits[name].flatten(0, 1).float(), targets[name].flatten(),
                                        ignore_index=-1)    # target -1: empty cell, no colour/size
    return total


def accuracy(predicted: dict[str, torch.Tensor], targets: dict[str, torch.Tensor], n_shapes: int) -> dict[str, float]:
    """Per-attribute accuracy over the objects, 'cell' occupancy accuracy over all cells, exact scenes.

    shape / colour / size: share of objects (occupied cells) whose attribute was read correctly.
    cell: share of grid cells whose occupancy (object or empty) was read correctly.
    scene: share of images in which every cell was read exactly.
    """
    occupied = targets["shape"] != n_shapes                                  # (N, G*G)
    result = {name: (predicted[name] == targets[name])[occupied].float().mean().item() for name in ATTRIBUTES}
    result["cell"] = ((predicted["shape"] != n_shapes) == occupied).float().mean().item()
    exact = torch.stack([predicted[name] == targets[name] for name in ATTRIBUTES]).all(0).all(-1)
    result["scene"] = exact.float().mean().item()
    return result


@torch.no_grad()
def evaluate(oracle: Oracle, scenes: Scenes, batch_size: int = 1024) -> dict[str, float]:
    """Accuracies (see `accuracy`) of the oracle on rendered scenes."""
    device = next(oracle.parameters()).device
    chunks = [oracle.read(scenes.images[i:i + batch_size].to(device)) for i in range(0, len(scenes), batch_size)]
    predicted = {name: torch.cat([c[name] for c in chunks]).cpu() for name in ATTRIBUTES}
    return accuracy(predicted, scenes.cell_targets(), len(oracle.world.shapes))


def train_oracle(world: ShapesWorld, steps: int, batch_size: int = 128, lr: float = 2e-3, width: int = 32,
                 precision: Precision | None = None, progress: bool = True) -> tuple[Oracle, History]:
    """Train on fresh renders every step (the world is unlimited, so there is nothing to overfit to).

    AdamW (Loshchilov & Hutter 2019) with a one-cycle (Smith & Topin 2019) learning-rate schedule; split "train" for training, never "test".
    """
    precision = precision or choose_precision()
    oracle = Oracle(world, width).to(precision.device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(oracle.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)

    def loss_fn(step: int) -> torch.Tensor:
        batch = world.scenes(range(step * batch_size, (step + 1) * batch_size), split="train")
        images = batch.images.to(precision.device, memory_format=torch.channels_last)
        targets = {k: v.to(precision.device) for k, v in batch.cell_targets().items()}
        return oracle_loss(oracle(images), targets)

    oracle.history = train(oracle, loss_fn, steps=steps, optimizer=optimizer, scheduler=schedule,
                           precision=precision, progress=progress, desc="oracle")
    return oracle.eval(), oracle.history


def _cache_path(world: ShapesWorld, steps: int, width: int) -> Path:
    key = hashlib.sha256(repr((asdict(world), steps, width)).encode()).hexdigest()[:12]
    root = Path(os.environ.get("MINIGEN_CACHE", Path.home() / ".cache" / "minigen"))
    return root / f"oracle-{world.resolution}px-{steps}steps-{key}.pt"


def load_oracle(world: ShapesWorld, steps: int, width: int = 32, path: str | Path | None = None,
                device: torch.device | str | None = None, progress: bool = True) -> Oracle:
    """The oracle for `world` trained for `steps`: loaded from `path` (default: the minigen cache,
    $MINIGEN_CACHE or ~/.cache/minigen, keyed by the world, steps and width), trained and saved first
    if the file is absent."""
    path = Path(path) if path is not None else _cache_path(world, steps, width)
    precision = choose_precision(device)
    oracle = Oracle(world, width).to(precision.device)
    if path.exists():
        oracle.history = load_checkpoint(path, oracle, map_location=precision.device)["history"]
        return oracle.eval()
    oracle, history = train_oracle(world, steps, width=width, precision=precision, progress=progress)
    save_checkpoint(path, oracle, step=steps, history=history)
    return oracle


# ---------------------------------------------------------------------------------------------
# Judging generated images: does the oracle read a valid scene, and which attributes does it see?


@torch.no_grad()
def parse(oracle: Oracle, images: torch.Tensor, threshold: float = 0.9,
          batch_size: int = 1024) -> dict[str, torch.Tensor]:
    """Read images cell by cell and say which images are valid scenes: a dict of tensors on the CPU.

    "shape", "colour", "size": (N, G*G) labels as in `Oracle.read` (-1 for colour and size of empty cells);
    "confident": (N,) bool, every cell's shape-or-empty probability >= threshold, and for each occupied
    cell the colour and size probabilities too; "count": (N,) objects read; "valid": (N,) bool,
    confident and min_objects <= count <= max_objects of the oracle's world.
    A blurry blob, two shapes melted together or a colour between two palette colours make the
    oracle unsure, so they fail "confident" even when its argmax names something.
    """
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be a probability in (0, 1), got {threshold!r}")
    world, n_shapes = oracle.world, len(oracle.world.shapes)
    device = next(oracle.parameters()).device
    was_training = oracle.training
    oracle.eval()
    chunks = []
    for start in range(0, len(images), batch_size):
        probs = {name: logits.float().softmax(-1)
                 for name, logits in oracle(images[start:start + batch_size].to(device)).items()}  # (B, G*G, K)
        best = {name: p.max(-1) for name, p in probs.items()}                 # values, indices: (B, G*G)
        occupied = best["shape"].indices != n_shapes                          # (B, G*G)
        sure = best["shape"].values >= threshold
        for name in ("colour", "size"):
            sure &= ~occupied | (best[name].values >= threshold)               # attributes count where occupied
        chunks.append({
            "shape": best["shape"].indices,
            "colour": best["colour"].indices.masked_fill(~occupied, -1),
            "size": best["size"].indices.masked_fill(~occupied, -1),
            "confident": sure.all(-1),
            "count": occupied.sum(-1),
        })
    oracle.train(was_training)
    result = {name: torch.cat([chunk[name] for chunk in chunks]).cpu() for name in chunks[0]}
    result["valid"] = result["confident"] & (result["count"] >= world.min_objects) & (
        result["count"] <= world.max_objects)
    return result


def first_object(cells: dict[str, torch.Tensor], world: ShapesWorld) -> dict[str, torch.Tensor]:
    """The shape, colour and size read in the first occupied cell of each image, (N,) each; -1 where no cell is.

    cells: per-cell labels (N, G*G) as from `parse`. For images meant to show one object (a class-conditional
    sample), compare the result with the requested labels: an image without an object never matches.
    """
    occupied = cells["shape"] != len(world.shapes)                               # (N, G*G)
    first = occupied.float().argmax(dim=1, keepdim=True)                         # (N, 1), 0 if none
    found = occupied.any(dim=1)
    return {name: torch.where(found, cells[name].gather(1, first)[:, 0], -1) for name in ATTRIBUTES}

def attribute_frequencies(cells: dict[str, torch.Tensor], world: ShapesWorld) -> dict[str, torch.Tensor]:
    """The share of objects with each shape, colour and size: {"shape": (S,), "colour": (C,), "size": (Z,)}.

    cells: per-cell labels (N, G*G) as from `parse`, `Oracle.read` or `Scenes.cell_targets` (the data's
    own, for comparison); empty cells are skipped. Each vector sums to 1 (all zeros if there is no object).
    """
    occupied = cells["shape"] != len(world.shapes)                              # (N, G*G)
    classes = {"shape": len(world.shapes), "colour": len(world.colours), "size": len(world.sizes)}
    frequencies = {}
    for name, n in classes.items():
        counts = torch.bincount(cells[name][occupied].flatten(), minlength=n).double()
        frequencies[name] = counts / counts.sum().clamp(min=1)
    return frequencies
