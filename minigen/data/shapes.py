"""The shapes world: a procedurally generated world of captioned scenes.

The world draws scenes of coloured shapes on a coarse grid, one object per cell,
with exact labels and a caption ("a small red circle at the top left"). Techniques
it is built from:

- Counter-based random numbers: every attribute is a hash of (seed, split, index,
  field), so a scene is a pure function of its index (Salmon et al., "Parallel
  random numbers: as easy as 1, 2, 3", SC 2011), hashed with the output function of
  splitmix64 (Steele, Lea & Flood, "Fast splittable pseudorandom number generators",
  OOPSLA 2014).
- Signed distance functions of 2-D shapes (Inigo Quilez's catalogue of 2-D distance
  functions) and anti-aliasing by analytic coverage,
  coverage = clamp(1/2 - sdf, 0, 1) with the sdf in pixels (Green, "Improved
  alpha-tested magnification for vector textures and special effects", 2007).
- Painting later objects over earlier ones with the "over" operator (Porter & Duff,
  "Compositing digital images", SIGGRAPH 1984).
- Held-out (colour, shape) combinations to measure compositional generalisation, as
  in CLEVR-CoGenT (Johnson et al., "CLEVR", CVPR 2017).
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

import torch
from torch import Tensor

from minigen.core.runtime import as_device
from minigen.core.text import ColumnRepr
from minigen.core.validators import (
    check_choice,
    check_float,
    check_instance,
    check_int,
    check_tensor,
    describe,
)

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross")
# the six saturated corners of the RGB cube
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
    "yellow": (1.0, 1.0, 0.0),
    "magenta": (1.0, 0.0, 1.0),
    "cyan": (0.0, 1.0, 1.0),
}
SIZES: tuple[str, ...] = ("small", "large")
# side of the shape's box / side of the cell
SIZE_FRACTION: dict[str, float] = {"small": 0.5, "large": 0.8}
# a small shape must span 4 px; at 2-3 px triangle, diamond and circle are one blur
MIN_OBJECT_PIXELS = 4.0
_RESOLUTION_WHY = f"so that the smallest object spans {MIN_OBJECT_PIXELS:g} pixels"
SPLITS: tuple[str, ...] = ("train", "val", "test", "holdout")
MAX_RESOLUTION = 2048  # an image side; larger asks for gigabytes: fail before that
MAX_GRID = 256  # the finest grid whose small objects span 4 px at MAX_RESOLUTION
MAX_SEED = 2**63 - 1  # seeds and scene indices are int64 words of the hash
CELL_NAMES_3X3: tuple[str, ...] = (
    "top left", "top", "top right",
    "left", "centre", "right",
    "bottom left", "bottom", "bottom right",
)  # fmt: skip


# ----------------------------------------------------------------------------------
# Counter-based randomness: a hash of (seed, split, index, field), not a global RNG
# ----------------------------------------------------------------------------------


def _as_int64(word: int) -> int:
    """The int64 with the same 64 bits as the unsigned `word` (torch int64
    arithmetic wraps mod 2**64)."""
    return word - (1 << 64) if word >= 1 << 63 else word


# 2**64 / golden ratio, splitmix64's increment
_GOLDEN_GAMMA = _as_int64(0x9E3779B97F4A7C15)
_MIX_1 = _as_int64(0xBF58476D1CE4E5B9)
_MIX_2 = _as_int64(0x94D049BB133111EB)
_FIELD_COUNT, _FIELD_CELL, _FIELD_PAIR, _FIELD_SIZE, _FIELD_OFFSET = range(5)
_FIELD_PHRASING = 5  # the caption's phrasing (minigen.data.captions)


def _shift_right(z: Tensor, bits: int) -> Tensor:
    """Logical right shift of int64 words (torch's >> is arithmetic: it copies the
    sign bit)."""
    return (z >> bits) & ((1 << (64 - bits)) - 1)


def _mix64(z: Tensor) -> Tensor:
    """splitmix64's output function: a bijection of 64-bit words in which every
    input bit flips ~half the output."""
    z = (z ^ _shift_right(z, 30)) * _MIX_1
    z = (z ^ _shift_right(z, 27)) * _MIX_2
    return z ^ _shift_right(z, 31)


def _hash(*keys: int | Tensor) -> Tensor:
    """One pseudo-random int64 word per combination of the (broadcast) integer
    keys."""
    word = torch.as_tensor(0, dtype=torch.int64)
    for key in keys:
        # h_{j+1} = mix(h_j + key_j + gamma)
        word = _mix64(word + key + _GOLDEN_GAMMA)
    return word


def _uniform(word: Tensor) -> Tensor:
    """Floats uniform in [0, 1) from the top 24 bits of each word (exact in
    float32)."""
    # u = floor(h / 2**40) / 2**24
    return _shift_right(word, 40).to(torch.float32) * 2.0**-24


# ----------------------------------------------------------------------------------
# Geometry: signed distance functions (SDFs) in pixels, negative inside; Euclidean
# distances (inside the cross, a bound). x: (n, 1, P) and y: (n, P, 1) are pixel
# centres relative to the shape's centre (y grows downwards, as in an image), half:
# (n, 1, 1). Every shape fits the box of side 2 * half centred on (0, 0).
# ----------------------------------------------------------------------------------


def _sdf_box(excess_x: Tensor, excess_y: Tensor) -> Tensor:
    """Signed distance to a box, given how far a point lies beyond its half extents:
    q = |p| - half extents."""
    # |max(q, 0)|
    outside = torch.sqrt(excess_x.clamp(min=0) ** 2 + excess_y.clamp(min=0) ** 2)
    inside = torch.maximum(excess_x, excess_y).clamp(max=0)  # min(max(q_x, q_y), 0)
    return outside + inside


def _check_points(x: Tensor, y: Tensor, half: Tensor) -> None:
    for name, value in (("x", x), ("y", y), ("half", half)):
        check_tensor(name, value, floating=True)


def sdf_circle(x: Tensor, y: Tensor, half: Tensor) -> Tensor:
    """Signed distance to a disc of radius `half`."""
    _check_points(x, y, half)
    return torch.sqrt(x * x + y * y) - half  # |p| - r


def sdf_square(x: Tensor, y: Tensor, half: Tensor) -> Tensor:
    """Signed distance to an axis-aligned square of side 2 * half."""
    _check_points(x, y, half)
    return _sdf_box(x.abs() - half, y.abs() - half)


def sdf_diamond(x: Tensor, y: Tensor, half: Tensor) -> Tensor:
    """Signed distance to a square standing on a corner, with corners at (+-half, 0)
    and (0, +-half)."""
    _check_points(x, y, half)
    x, y = x.abs(), y.abs()
    # coordinates rotated by 45 degrees
    along, across = (x + y) / math.sqrt(2), (x - y).abs() / math.sqrt(2)
    # a square of half side h / sqrt(2)
    return _sdf_box(along - half / math.sqrt(2), across - half / math.sqrt(2))


def sdf_triangle(x: Tensor, y: Tensor, half: Tensor) -> Tensor:
    """Signed distance to the isosceles triangle with base 2 * half at the bottom
    and its apex at the top."""
    _check_points(x, y, half)
    # mirror-symmetric: measure in the right half, to the base (0, h)-(h, h) and the
    # side (0, -h)-(h, h)
    x = x.abs()
    # squared distance to the base segment
    to_base = (x - half).clamp(min=0) ** 2 + (y - half) ** 2
    # nearest point A + t (B - A) of the side, B - A = (h, 2h)
    t = ((x + 2 * (y + half)) / (5 * half)).clamp(0, 1)
    # squared distance to the side segment
    to_side = (x - t * half) ** 2 + (y + half - 2 * t * half) ** 2
    distance = torch.sqrt(torch.minimum(to_base, to_side))
    # above the base and inside the side 2|x| = y + h
    inside = torch.maximum(y - half, 2 * x - y - half) < 0
    return torch.where(inside, -distance, distance)


def sdf_cross(x: Tensor, y: Tensor, half: Tensor) -> Tensor:
    """Signed distance to a plus sign: two bars of length 2 * half and width 2 *
    half / 3."""
    _check_points(x, y, half)
    x, y, arm = x.abs(), y.abs(), half / 3  # arm: half the width of a bar
    across, down = _sdf_box(x - half, y - arm), _sdf_box(x - arm, y - half)
    # union of two shapes = min of their distances
    return torch.minimum(across, down)


SHAPE_SDFS: dict[str, Callable[[Tensor, Tensor, Tensor], Tensor]] = {
    "circle": sdf_circle,
    "square": sdf_square,
    "triangle": sdf_triangle,
    "diamond": sdf_diamond,
    "cross": sdf_cross,
}


def coverage(sdf: Tensor) -> Tensor:
    """Fraction of each pixel inside the shape, from the signed distance of its
    centre in pixels."""
    check_tensor("sdf", sdf, floating=True)
    # a = clamp(1/2 - d, 0, 1): exact for an edge along a pixel axis
    return (0.5 - sdf).clamp_(0.0, 1.0)


# ----------------------------------------------------------------------------------
# Cells and captions
# ----------------------------------------------------------------------------------


class SceneObject(NamedTuple):
    """One object of a scene, by name; `cell` counts row by row from the top left
    (row * grid + column)."""

    shape: str
    colour: str
    size: str
    cell: int


def cell_names(grid: int) -> tuple[str, ...]:
    """Names of the cells row by row: "top left" … "bottom right" for 3x3, else
    "row r, column c" (from 1)."""
    grid = _check_grid(grid)
    if grid == 3:
        return CELL_NAMES_3X3
    cells = [(row, column) for row in range(grid) for column in range(grid)]
    return tuple(f"row {row + 1}, column {column + 1}" for row, column in cells)


@functools.cache
def _locations(grid: int) -> tuple[str, ...]:
    """ "at the top left", … for each cell (cached: captions are written by the
    thousand)."""
    article = "the " if grid == 3 else ""
    return tuple(f"at {article}{name}" for name in cell_names(grid))


def relation(first_cell: int, second_cell: int, grid: int) -> str:
    """Where the first object is seen from the second: columns decide left/right,
    otherwise rows above/below."""
    row_1, column_1 = divmod(first_cell, grid)
    row_2, column_2 = divmod(second_cell, grid)
    if column_1 != column_2:
        return "to the left of" if column_1 < column_2 else "to the right of"
    return "above" if row_1 < row_2 else "below"


def caption(objects: Sequence[SceneObject], grid: int = 3) -> str:
    """The caption of a scene.

    One object: "a small red circle at the top left". Two: their spatial relation,
    "a small red circle to the left of a large blue square". More: each object with
    its cell, joined by " and ".
    """
    grid = _check_grid(grid)
    if isinstance(objects, str) or not isinstance(objects, Sequence):
        raise TypeError(
            f"objects must be a sequence of SceneObject, got {describe(objects)}"
        )
    if not objects:
        raise ValueError("a caption needs at least one object, got none")
    for obj in objects:
        check_object(obj, grid)
    cells = [obj.cell for obj in objects]
    if len(set(cells)) != len(cells):
        raise ValueError(
            f"two objects share a cell (cells {cells}); "
            "each cell holds at most one object"
        )
    phrases = [f"a {obj.size} {obj.colour} {obj.shape}" for obj in objects]
    return _join_phrases(phrases, cells, grid)


def _join_phrases(phrases: Sequence[str], cells: Sequence[int], grid: int) -> str:
    """A caption from each object's phrase ("a small red circle") and cell."""
    if len(phrases) == 2:
        return f"{phrases[0]} {relation(cells[0], cells[1], grid)} {phrases[1]}"
    locations = _locations(grid)
    placed = [f"{phrase} {locations[cell]}" for phrase, cell in zip(phrases, cells)]
    return " and ".join(placed)


def check_object(obj: SceneObject, grid: int) -> None:
    """Refuse anything but a SceneObject of known names in a cell of the grid."""
    what = "a SceneObject(shape, colour, size, cell)"
    check_instance("every object", obj, SceneObject, what)
    check_choice("shape", obj.shape, SHAPES)
    check_choice("colour", obj.colour, tuple(COLOURS))
    check_choice("size", obj.size, SIZES)
    check_int("cell", obj.cell, minimum=None, maximum=None)
    if not 0 <= obj.cell < grid * grid:
        raise ValueError(
            f"cell {obj.cell} is outside a {grid}x{grid} grid; "
            f"valid cells are 0..{grid * grid - 1}"
        )


# ----------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------


def min_resolution(grid: int, sizes: Sequence[str] = SIZES) -> int:
    """Smallest image side at which the smallest of `sizes` spans MIN_OBJECT_PIXELS
    pixels."""
    grid, sizes = _check_grid(grid), _check_names("sizes", sizes, SIZES)
    smallest = min(SIZE_FRACTION[size] for size in sizes)
    # side * fraction / grid >= min pixels
    return math.ceil(MIN_OBJECT_PIXELS * grid / smallest - 1e-9)


def render(
    shape: Tensor,
    colour: Tensor,
    size: Tensor,
    cell: Tensor,
    offset: Tensor | None = None,
    *,
    resolution: int = 32,
    grid: int = 3,
    shapes: Sequence[str] = SHAPES,
    colours: Sequence[str] = tuple(COLOURS),
    sizes: Sequence[str] = SIZES,
) -> tuple[Tensor, Tensor]:
    """Paint scenes from their labels; returns images (N, 3, H, W) and visible
    coverage masks (N, K, H, W).

    shape, colour, size, cell: (N, K) long indices into `shapes`, `colours`, `sizes`
    and the cells, -1 in empty slots. offset: (N, K, 2) shift (x, y) of each centre
    from its cell centre, in cell sides (None: centred). Slot k is painted over
    slots < k on a black background.
    """
    labels, names = (shape, colour, size, cell), (shapes, colours, sizes)
    resolution, grid = _check_render_args(labels, offset, resolution, grid, names)
    n_scenes, n_slots = shape.shape
    device = shape.device
    if offset is None:
        offset = torch.zeros(n_scenes, n_slots, 2, device=device)
    offset = offset.float()
    # (colours, 3)
    palette = torch.tensor([COLOURS[name] for name in colours], device=device)

    # (N, K, H, W): the coverage a_k of each object on its own, then what is seen
    masks = torch.zeros(n_scenes, n_slots, resolution, resolution, device=device)
    for k in range(n_slots):
        slot = (shape[:, k], size[:, k], cell[:, k], offset[:, k])
        _draw_coverage(masks[:, k], *slot, grid, shapes, sizes)
    # (N, H, W) transmittance above
    see_through = torch.ones(n_scenes, resolution, resolution, device=device)
    # painted last = on top: visible_k = a_k * prod_{j > k} (1 - a_j)
    for k in reversed(range(n_slots)):
        masks[:, k] *= see_through
        see_through -= masks[:, k]  # T <- T (1 - a_k) = T - visible_k
    rgb = palette[colour.clamp(min=0)]  # (N, K, 3)
    # (N, 3, H, W)
    images = torch.zeros(n_scenes, 3, resolution, resolution, device=device)
    for k in range(n_slots):
        # image = sum_k visible_k * colour_k
        images.addcmul_(masks[:, k, None], rgb[:, k, :, None, None])
    return images, masks


def _draw_coverage(
    out: Tensor,
    shape: Tensor,
    size: Tensor,
    cell: Tensor,
    offset: Tensor,
    grid: int,
    shapes: Sequence[str],
    sizes: Sequence[str],
) -> None:
    """Write the coverage of one object per scene into `out` (N, H, W), which holds
    zeros.

    An object never leaves its cell, so its anti-aliased rim stays within half a
    pixel of the cell: the SDF is evaluated on a P x P patch of pixels around the
    cell only (about grid**2 times less work than the whole image), then scattered
    into place.
    """
    n_scenes, resolution = out.shape[0], out.shape[-1]
    cell_side = resolution / grid  # in pixels
    # pixels a cell and its rim can touch, per axis
    patch = min(math.ceil(cell_side) + 2, resolution)
    steps = torch.arange(patch, device=out.device)  # (P,)
    row, column = cell.clamp(min=0) // grid, cell.clamp(min=0) % grid  # (N,)
    # (N,) patch's first column
    left = (torch.floor(column * cell_side) - 1).clamp(0, resolution - patch).long()
    # (N,) patch's first row
    top = (torch.floor(row * cell_side) - 1).clamp(0, resolution - patch).long()
    # (N,) object centre in pixels
    centre_x = (column + 0.5 + offset[:, 0]) * cell_side
    centre_y = (row + 0.5 + offset[:, 1]) * cell_side
    # pixel centres relative to the object's centre: (N, 1, P) and (N, P, 1)
    x = (left[:, None] + steps + 0.5 - centre_x[:, None])[:, None, :]
    y = (top[:, None] + steps + 0.5 - centre_y[:, None])[:, :, None]
    half_sides = [SIZE_FRACTION[name] * cell_side / 2 for name in sizes]
    half_sides = torch.tensor(half_sides, device=out.device)
    half = half_sides[size.clamp(min=0)][:, None, None]  # (N, 1, 1)

    # (N, P, P), stays 0 in an empty slot
    alpha = torch.zeros(n_scenes, patch, patch, device=out.device)
    for index, name in enumerate(shapes):
        # the scenes whose object has this shape
        scenes = (shape == index).nonzero().squeeze(1)
        if scenes.numel():
            sdf = SHAPE_SDFS[name](x[scenes], y[scenes], half[scenes])
            alpha[scenes] = coverage(sdf)
    rows = top[:, None, None] + steps[:, None]  # (N, P, 1)
    pixel = rows * resolution + left[:, None, None] + steps  # (N, P, P) in H * W
    flat = (n_scenes, patch * patch)
    image = out.view(n_scenes, resolution * resolution)
    image.scatter_(1, pixel.view(flat), alpha.view(flat))


def _check_render_args(
    labels: tuple[Tensor, Tensor, Tensor, Tensor],
    offset: Tensor | None,
    resolution: int,
    grid: int,
    names: tuple[Sequence[str], Sequence[str], Sequence[str]],
) -> tuple[int, int]:
    """`render`'s checks; returns the resolution and the grid as Python ints."""
    (shape, colour, size, cell), (shapes, colours, sizes) = labels, names
    grid = _check_grid(grid)
    _check_names("shapes", shapes, SHAPES)
    _check_names("colours", colours, tuple(COLOURS))
    _check_names("sizes", sizes, SIZES)
    resolution = _check_resolution(resolution, grid, sizes)
    labels = {
        "shape": (shape, len(shapes)),
        "colour": (colour, len(colours)),
        "size": (size, len(sizes)),
        "cell": (cell, grid * grid),
    }
    for name, (values, n_values) in labels.items():
        check_tensor(name, values, dims=2, shape="(N, K)")
        if values.dtype != torch.long:
            raise TypeError(
                f"{name} must be a (N, K) long tensor, got {describe(values)}"
            )
        if values.shape != shape.shape:
            raise ValueError(
                f"{name} must have the shape of `shape`, {tuple(shape.shape)}, "
                f"got {tuple(values.shape)}"
            )
        if values.numel() and not (-1 <= values.min() and values.max() < n_values):
            raise ValueError(
                f"{name} indices must lie in -1..{n_values - 1} (-1 = empty slot)"
            )
    empty = shape < 0
    if any(((values < 0) != empty).any() for values, _ in labels.values()):
        raise ValueError(
            "an empty slot must be -1 in shape, colour, size and cell alike"
        )
    sorted_cells = cell.sort(dim=1).values  # (N, K)
    repeated = sorted_cells[:, 1:] == sorted_cells[:, :-1]
    if (repeated & (sorted_cells[:, 1:] >= 0)).any():
        raise ValueError(
            "two objects of a scene share a cell; a cell holds one object"
        )
    if offset is not None:
        _check_offset(offset, size, sizes)
    return resolution, grid


def _check_offset(offset: Tensor, size: Tensor, sizes: Sequence[str]) -> None:
    check_tensor(
        "offset", offset, dims=3, floating=True, finite=True, shape="(N, K, 2)"
    )
    if offset.shape != (*size.shape, 2):
        expected = (*size.shape, 2)
        raise ValueError(
            f"offset must have shape {expected}, got {tuple(offset.shape)}"
        )
    half_boxes = [SIZE_FRACTION[name] / 2 for name in sizes]
    half_box = torch.tensor(half_boxes, device=size.device)[size.clamp(min=0)]
    filled = size[..., None] >= 0  # (N, K, 1)
    if (filled & (offset.abs() + half_box[..., None] > 0.5 + 1e-6)).any():
        raise ValueError(
            "an object would leave its cell: need "
            "|offset| + size fraction / 2 <= 0.5 (in cell sides)"
        )


# ----------------------------------------------------------------------------------
# Labels and scenes
# ----------------------------------------------------------------------------------


@dataclass
class SceneLabels:
    """The labels of N scenes with up to K objects; -1 (offset 0) in empty slots."""

    shape: Tensor  # (N, K) long, index into the world's shapes
    colour: Tensor  # (N, K) long
    size: Tensor  # (N, K) long
    cell: Tensor  # (N, K) long, row * grid + column
    offset: (
        Tensor  # (N, K, 2) float, shift (x, y) from the cell centre in cell sides
    )
    count: Tensor  # (N,) long, objects in the scene; slots 0..count-1 are filled


@dataclass
class Scenes:
    """A batch of rendered scenes with exact labels (see `SceneLabels`) and
    captions."""

    images: Tensor  # (N, 3, H, W) float32 in [0, 1]
    shape: Tensor  # (N, K) long, -1 where the slot is empty
    colour: Tensor  # (N, K) long
    size: Tensor  # (N, K) long
    cell: Tensor  # (N, K) long
    offset: Tensor  # (N, K, 2) float
    count: Tensor  # (N,) long
    masks: Tensor  # (N, K, H, W) visible coverage of each object, in [0, 1]
    captions: list[str]
    world: ShapesWorld

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, item: int | slice | Sequence[int] | Tensor) -> Scenes:
        """The scenes selected by an int, a slice, indices or a boolean mask, as a
        (smaller) batch."""
        # (M,)
        rows = torch.arange(len(self), device=self.images.device)[item].reshape(-1)
        tensors = {name: getattr(self, name)[rows] for name in _TENSOR_FIELDS}
        return Scenes(
            **tensors,
            captions=[self.captions[i] for i in rows.tolist()],
            world=self.world,
        )

    def to(self, device: torch.device | str) -> Scenes:
        """The same scenes with every tensor on `device`."""
        device = as_device(device)
        moved = {name: getattr(self, name).to(device) for name in _TENSOR_FIELDS}
        return replace(self, **moved)

    def cell_targets(self, grid: int | None = None) -> dict[str, Tensor]:
        """Per-cell labels (N, grid * grid): "shape" (len(shapes) = empty cell),
        "colour" and "size" (-1 = empty)."""
        world_grid = self.world.grid
        grid = (
            world_grid
            if grid is None
            else check_int("grid", grid, maximum=MAX_GRID)
        )
        if grid != world_grid:
            raise ValueError(
                f"these scenes lie on a {world_grid}x{world_grid} grid, "
                f"not {grid}x{grid}"
            )
        filled = self.cell >= 0  # (N, K)
        scenes = torch.arange(len(self), device=self.cell.device)[:, None]  # (N, 1)
        scene = scenes.expand_as(self.cell)[filled]
        cell = self.cell[filled]
        targets = {}
        empty_values = {"shape": len(self.world.shapes), "colour": -1, "size": -1}
        for name, empty in empty_values.items():
            cells = (len(self), grid * grid)
            target = torch.full(
                cells, empty, dtype=torch.long, device=self.cell.device
            )
            target[scene, cell] = getattr(self, name)[filled]
            targets[name] = target
        return targets


_TENSOR_FIELDS = (
    "images",
    "shape",
    "colour",
    "size",
    "cell",
    "offset",
    "count",
    "masks",
)


@dataclass(frozen=True)
class ShapesWorld(ColumnRepr):
    """A world of captioned scenes: every scene is a pure function of (seed, split,
    index).

    `jitter` is the largest shift of an object's centre from its cell centre, in
    cell sides; it may not push an object out of its cell. `holdout` lists (colour,
    shape) pairs that never occur in the "train", "val" and "test" splits: there
    each object's (colour, shape) pair is drawn uniformly from the other pairs. In
    the "holdout" split the first object's pair is drawn uniformly from `holdout`
    and the other objects' pairs as in training, so each holdout scene holds exactly
    one new pair.
    """

    resolution: int = 32
    grid: int = 3
    min_objects: int = 1
    max_objects: int = 2
    shapes: tuple[str, ...] = SHAPES
    colours: tuple[str, ...] = tuple(COLOURS)
    sizes: tuple[str, ...] = SIZES
    holdout: tuple[tuple[str, str], ...] = ()
    jitter: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        store = functools.partial(
            object.__setattr__, self
        )  # the fields, as checked
        store("grid", _check_grid(self.grid))
        store("min_objects", check_int("min_objects", self.min_objects))
        store("max_objects", check_int("max_objects", self.max_objects))
        cells = self.grid * self.grid
        if self.min_objects > self.max_objects:
            raise ValueError(
                f"min_objects ({self.min_objects}) must not exceed max_objects "
                f"({self.max_objects})"
            )
        if self.max_objects > cells:
            raise ValueError(
                "grid too small for the objects: "
                f"a {self.grid}x{self.grid} grid holds at most {cells} objects "
                f"(one per cell), but max_objects={self.max_objects}"
            )
        vocabularies = {"shapes": SHAPES, "colours": tuple(COLOURS), "sizes": SIZES}
        for field, vocabulary in vocabularies.items():
            store(field, _check_names(field, getattr(self, field), vocabulary))
        self._check_holdout()
        store("holdout", tuple(tuple(pair) for pair in self.holdout))
        store(
            "resolution", _check_resolution(self.resolution, self.grid, self.sizes)
        )
        largest = max(self.sizes, key=SIZE_FRACTION.get)
        largest_jitter = (1 - SIZE_FRACTION[largest]) / 2
        if not 0 <= check_float("jitter", self.jitter) <= largest_jitter + 1e-12:
            raise ValueError(
                f"jitter must lie in [0, {largest_jitter:g}] so that a {largest} "
                f"object stays inside its cell, got {self.jitter}"
            )
        store("seed", check_int("seed", self.seed, minimum=0, maximum=MAX_SEED))

    def _check_holdout(self) -> None:
        expected = (
            "a sequence of (colour, shape) pairs, e.g. (('yellow', 'triangle'),)"
        )
        if isinstance(self.holdout, str) or not isinstance(self.holdout, Sequence):
            raise TypeError(
                f"holdout must be {expected}; got {describe(self.holdout)}"
            )
        for pair in self.holdout:
            if isinstance(pair, str) or not isinstance(pair, Sequence):
                raise TypeError(
                    f"holdout must be {expected}; got the entry {pair!r}"
                )
            if len(pair) != 2:
                raise ValueError(
                    f"holdout must be {expected}; got the entry {pair!r}"
                )
            check_choice("the colour of every holdout pair", pair[0], self.colours)
            check_choice("the shape of every holdout pair", pair[1], self.shapes)
        pairs = len(self.colours) * len(self.shapes)
        if len({tuple(pair) for pair in self.holdout}) == pairs:
            raise ValueError(
                "holdout lists every (colour, shape) pair; leave at least one for "
                "training"
            )

    @property
    def cell_names(self) -> tuple[str, ...]:
        """Names of the grid cells, row by row from the top left."""
        return cell_names(self.grid)

    def _pairs(self, held_out: bool, device: torch.device) -> Tensor:
        """(colour, shape) index pairs (P, 2): the held-out ones, or all the
        others."""
        pairs = [
            (c, s)
            for c, colour in enumerate(self.colours)
            for s, shape in enumerate(self.shapes)
            if ((colour, shape) in self.holdout) == held_out
        ]
        return torch.tensor(pairs, dtype=torch.long, device=device)

    def sample_labels(
        self,
        indices: int | range | Sequence[int] | Tensor,
        split: str = "train",
        device: torch.device | str | None = None,
    ) -> SceneLabels:
        """The labels of the scenes `indices` (an int n means range(n)) of `split`,
        without rendering."""
        check_choice("split", split, SPLITS)
        if split == "holdout" and not self.holdout:
            raise ValueError(
                "the 'holdout' split needs held-out pairs, "
                "e.g. ShapesWorld(holdout=(('yellow', 'triangle'),))"
            )
        device = None if device is None else as_device(device)
        index = _index_tensor(indices, device)[:, None]  # (N, 1)
        device = index.device
        key = (self.seed, SPLITS.index(split), index)
        slots = torch.arange(self.max_objects, device=device)  # (K,)

        n_counts = self.max_objects - self.min_objects + 1
        count_u = _uniform(_hash(*key, _FIELD_COUNT))[:, 0]  # (N,)
        count = self.min_objects + (count_u * n_counts).long()  # (N,)
        cells = torch.arange(self.grid * self.grid, device=device)
        # (N, cells): a random permutation
        random_order = _hash(*key, _FIELD_CELL, cells).argsort(dim=1, stable=True)
        cell = random_order[:, : self.max_objects]  # (N, K) distinct cells

        pair_u = _uniform(_hash(*key, _FIELD_PAIR, slots))  # (N, K)
        training_pairs = self._pairs(held_out=False, device=device)  # (P, 2)
        # (N, K, 2): uniform over the allowed pairs
        pair = training_pairs[(pair_u * len(training_pairs)).long()]
        if split == "holdout":
            held_out_pairs = self._pairs(held_out=True, device=device)
            pair[:, 0] = held_out_pairs[(pair_u[:, 0] * len(held_out_pairs)).long()]
        size_u = _uniform(_hash(*key, _FIELD_SIZE, slots))  # (N, K)
        size = (size_u * len(self.sizes)).long()
        # one stream per slot and axis (x, y)
        axes = torch.arange(2 * self.max_objects, device=device)
        # (N, 2K), in [-jitter, jitter)
        offset = (2 * _uniform(_hash(*key, _FIELD_OFFSET, axes)) - 1) * self.jitter
        offset = offset.view(len(index), self.max_objects, 2)  # (N, K, 2)

        filled = slots < count[:, None]  # (N, K); the empty slots get -1 (offset 0)
        return SceneLabels(
            shape=torch.where(filled, pair[..., 1], -1),
            colour=torch.where(filled, pair[..., 0], -1),
            size=torch.where(filled, size, -1),
            cell=torch.where(filled, cell, -1),
            offset=torch.where(filled[..., None], offset, 0.0),
            count=count,
        )

    def phrasing_draws(
        self, indices: int | range | Sequence[int] | Tensor, split: str = "train"
    ) -> Tensor:
        """(N,) floats in [0, 1), one per scene `indices` of `split`: a pure
        function of (seed, split, index), like the scenes; `minigen.data.captions`
        turns a draw into one of a caption's phrasings."""
        check_choice("split", split, SPLITS)
        index = _index_tensor(indices, None)
        return _uniform(
            _hash(self.seed, SPLITS.index(split), index, _FIELD_PHRASING)
        )

    def scenes(
        self,
        indices: int | range | Sequence[int] | Tensor,
        split: str = "train",
        device: torch.device | str | None = None,
    ) -> Scenes:
        """The rendered scenes `indices` (an int n means range(n)) of `split`, drawn
        on `device`."""
        labels = self.sample_labels(indices, split, device)
        images, masks = render(
            labels.shape,
            labels.colour,
            labels.size,
            labels.cell,
            labels.offset,
            resolution=self.resolution,
            grid=self.grid,
            shapes=self.shapes,
            colours=self.colours,
            sizes=self.sizes,
        )
        return Scenes(
            images=images,
            shape=labels.shape,
            colour=labels.colour,
            size=labels.size,
            cell=labels.cell,
            offset=labels.offset,
            count=labels.count,
            masks=masks,
            captions=self.captions(labels),
            world=self,
        )

    def captions(self, labels: SceneLabels) -> list[str]:
        """The caption of each scene of `labels` (as `caption` writes them)."""
        check_instance(
            "labels", labels, SceneLabels, "SceneLabels (from sample_labels)"
        )
        # phrase[shape][colour][size] = "a small red circle"
        phrase = [
            [[f"a {z} {c} {s}" for z in self.sizes] for c in self.colours]
            for s in self.shapes
        ]
        fields = (
            labels.shape,
            labels.colour,
            labels.size,
            labels.cell,
            labels.count,
        )
        captions = []
        for s, c, z, cells, count in zip(*(field.tolist() for field in fields)):
            phrases = [phrase[s[k]][c[k]][z[k]] for k in range(count)]
            captions.append(_join_phrases(phrases, cells[:count], self.grid))
        return captions


def _index_tensor(
    indices: int | range | Sequence[int] | Tensor, device: torch.device | None
) -> Tensor:
    """Scene indices as a (N,) int64 tensor; an int n means range(n)."""
    if isinstance(indices, numbers.Integral) and not isinstance(indices, bool):
        return torch.arange(check_int("indices", indices, minimum=0), device=device)
    if isinstance(indices, range):
        check_int("the length of indices", len(indices), minimum=0)
        index = torch.arange(
            indices.start, indices.stop, indices.step, device=device
        )
    elif isinstance(indices, Tensor):
        integers = not (indices.is_floating_point() or indices.is_complex())
        if indices.dtype in (torch.bool, torch.uint8) or not integers:
            raise TypeError(
                f"an index tensor must hold integers, got {indices.dtype}"
            )
        check_tensor("indices", indices, dims=1, shape="(N,)")
        device = indices.device if device is None else device
        index = indices.to(device=device, dtype=torch.long)
    elif isinstance(indices, Sequence) and not isinstance(indices, str):
        entry = "every entry of indices"
        index = [check_int(entry, i, minimum=0, maximum=MAX_SEED) for i in indices]
        index = torch.tensor(index, dtype=torch.long, device=device)
    else:
        raise TypeError(
            "indices must be an int, a range, a sequence of ints or an integer "
            f"tensor, got {describe(indices)}"
        )
    if index.numel() and index.min() < 0:
        minimum = index.min().item()
        raise ValueError(f"every entry of indices must be >= 0, got {minimum}")
    return index


# ----------------------------------------------------------------------------------
# Validation helpers
# ----------------------------------------------------------------------------------


def _check_grid(grid: int) -> int:
    return check_int("grid", grid, maximum=MAX_GRID)


def _check_resolution(resolution: int, grid: int, sizes: Sequence[str]) -> int:
    resolution = check_int("resolution", resolution, maximum=MAX_RESOLUTION)
    smallest = min_resolution(grid, sizes)
    if resolution < smallest:
        raise ValueError(
            f"resolution must be at least {smallest} {_RESOLUTION_WHY}, "
            f"got {resolution}"
        )
    return resolution


def _check_names(
    name: str, names: Sequence[str], valid: Sequence[str]
) -> tuple[str, ...]:
    """A non-empty sequence of distinct names from `valid`, as a tuple."""
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise TypeError(
            f"{name} must be a sequence of names like {tuple(valid[:2])}, "
            f"got {describe(names)}"
        )
    if not names:
        raise ValueError(
            f"{name} must hold at least one of {', '.join(valid)}, got none"
        )
    for entry in names:
        check_choice(f"every entry of {name}", entry, valid)
    if len(set(names)) != len(names):
        raise ValueError(f"{name} must not repeat, got {tuple(names)}")
    return tuple(names)
