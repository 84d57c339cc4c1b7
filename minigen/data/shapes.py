"""The book's data: a procedurally generated world of captioned shapes, one photo, torchvision adapters.

The shapes world draws scenes of coloured shapes on a coarse grid, one object per cell, with exact
labels and a caption ("a small red circle at the top left"). Techniques it is built from:

- Counter-based random numbers: every attribute is a hash of (seed, split, index, field), so a scene
  is a pure function of its index (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
  SC 2011), hashed with the output function of splitmix64 (Steele, Lea & Flood, "Fast splittable
  pseudorandom number generators", OOPSLA 2014).
- Signed distance functions of 2-D shapes (Inigo Quilez's catalogue of 2-D distance functions) and
  anti-aliasing by analytic coverage, coverage = clamp(1/2 - sdf, 0, 1) with the sdf in pixels
  (Green, "Improved alpha-tested magnification for vector textures and special effects", 2007).
- Painting later objects over earlier ones with the "over" operator (Porter & Duff, "Compositing
  digital images", SIGGRAPH 1984).
- Held-out (colour, shape) combinations to measure compositional generalisation, as in CLEVR-CoGenT
  (Johnson et al., "CLEVR", CVPR 2017).

Also here: `grace_hopper()`, the photo matplotlib ships, and `load_torchvision` for MNIST,
Fashion-MNIST and CIFAR-10 when the internet is reachable.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

import torch
from torch import Tensor

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross")
COLOURS: dict[str, tuple[float, float, float]] = {  # the six saturated corners of the RGB cube
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
    "yellow": (1.0, 1.0, 0.0),
    "magenta": (1.0, 0.0, 1.0),
    "cyan": (0.0, 1.0, 1.0),
}
SIZES: tuple[str, ...] = ("small", "large")
SIZE_FRACTION: dict[str, float] = {"small": 0.5, "large": 0.8}  # side of the shape's box / side of the cell
MIN_OBJECT_PIXELS = 4.0  # a small shape must span 4 px; at 2-3 px triangle, diamond and circle are one blur
_RESOLUTION_WHY = f"so that the smallest object spans {MIN_OBJECT_PIXELS:g} pixels"
SPLITS: tuple[str, ...] = ("train", "val", "test", "holdout")
CELL_NAMES_3X3: tuple[str, ...] = (
    "top left", "top", "top right",
    "left", "centre", "right",
    "bottom left", "bottom", "bottom right",
)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Counter-based randomness: a hash of (seed, split, index, field) instead of a global RNG.
# ---------------------------------------------------------------------------------------------


def _as_int64(word: int) -> int:
    """The int64 with the same 64 bits as the unsigned `word` (torch int64 arithmetic wraps mod 2**64)."""
    return word - (1 << 64) if word >= 1 << 63 else word


_GOLDEN_GAMMA = _as_int64(0x9E3779B97F4A7C15)  # 2**64 / golden ratio, splitmix64's increment
_MIX_1 = _as_int64(0xBF58476D1CE4E5B9)
_MIX_2 = _as_int64(0x94D049BB133111EB)
_FIELD_COUNT, _FIELD_CELL, _FIELD_PAIR, _FIELD_SIZE, _FIELD_OFFSET = range(5)


def _shift_right(z: Tensor, bits: int) -> Tensor:
    """Logical right shift of int64 words (torch's >> is arithmetic: it copies the sign bit)."""
    return (z >> bits) & ((1 << (64 - bits)) - 1)


def _mix64(z: Tensor) -> Tensor:
    """splitmix64's output function: a bijection of 64-bit words in which every input bit flips ~half the output."""
    z = (z ^ _shift_right(z, 30)) * _MIX_1
    z = (z ^ _shift_right(z, 27)) * _MIX_2
    return z ^ _shift_right(z, 31)


def _hash(*keys: int | Tensor) -> Tensor:
    """One pseudo-random int64 word per combination of the (broadcast) integer keys."""
    word = torch.as_tensor(0, dtype=torch.int64)
    for key in keys:
        word = _mix64(word + key + _GOLDEN_GAMMA)  # h_{j+1} = mix(h_j + key_j + gamma)
    return word


def _uniform(word: Tensor) -> Tensor:
    """Floats uniform in [0, 1) from the top 24 bits of each word (exact in float32)."""
    return _shift_right(word, 40).to(torch.float32) * 2.0**-24  # u = floor(h / 2**40) / 2**24


# ---------------------------------------------------------------------------------------------
# Geometry: signed distance functions (SDFs) in pixels, negative inside; Euclidean distances (inside the
# cross, a bound). x: (n, 1, P) and y: (n, P, 1) are pixel centres relative to the shape's centre (y grows
# downwards, as in an image), half: (n, 1, 1). Every shape fits the box of side 2 * half centred on (0, 0).
# ---------------------------------------------------------------------------------------------


def _sdf_box(excess_x: Tensor, excess_y: Tensor) -> Tensor:
    """Signed distance to a box, given how far a point lies beyond its half extents: q = |p| - half extents."""
    outside = torch.sqrt(excess_x.clamp(min=0) ** 2 + excess_y.clamp(min=0) ** 2)  # |max(q, 0)|
    inside = torch.maximum(excess_x, excess_y).clamp(max=0)  # min(max(q_x, q_y), 0)
    return outside + inside


def sdf_circle(x: Tensor, y: Tensor, half: Tensor) -> Tensor:
    """Signed distance to a disc of radius `half`."""
    return torch.sqrt(x * x + y * y) - half  # |p| - r


def sdf_square(x: Tensor, y: Tensor, half: Tensor) -> Tensor:
    """Signed distance to an axis-aligned square of side 2 * half."""
    return _sdf_box(x.abs() - half, y.abs() - half)


def sdf_diamond(x: Tensor, y: Tensor, half: Tensor) -> Tensor:
    """Signed distance to a square standing on a corner, with corners at (+-half, 0) and (0, +-half)."""
    x, y = x.abs(), y.abs()
    along, across = (x + y) / math.sqrt(2), (x - y).abs() / math.sqrt(2)  # coordinates rotated by 45 degrees
    return _sdf_box(along - half / math.sqrt(2), across - half / math.sqrt(2))  # a square of half side h / sqrt(2)


def sdf_triangle(x: Tensor, y: Tensor, half: Tensor) -> Tensor:
    """Signed distance to the isosceles triangle with base 2 * half at the bottom and its apex at the top."""
    x = x.abs()  # mirror-symmetric: measure in the right half, to the base (0, h)-(h, h) and the side (0, -h)-(h, h)
    to_base = (x - half).clamp(min=0) ** 2 + (y - half) ** 2  # squared distance to the base segment
    t = ((x + 2 * (y + half)) / (5 * half)).clamp(0, 1)  # nearest point A + t (B - A) of the side, B - A = (h, 2h)
    to_side = (x - t * half) ** 2 + (y + half - 2 * t * half) ** 2  # squared distance to the side segment
    distance = torch.sqrt(torch.minimum(to_base, to_side))
    inside = torch.maximum(y - half, 2 * x - y - half) < 0  # above the base and inside the side 2|x| = y + h
    return torch.where(inside, -distance, distance)


def sdf_cross(x: Tensor, y: Tensor, half: Tensor) -> Tensor:
    """Signed distance to a plus sign: two bars of length 2 * half and width 2 * half / 3."""
    x, y, arm = x.abs(), y.abs(), half / 3  # arm: half the width of a bar
    across, down = _sdf_box(x - half, y - arm), _sdf_box(x - arm, y - half)
    return torch.minimum(across, down)  # union of two shapes = min of their distances


SHAPE_SDFS: dict[str, Callable[[Tensor, Tensor, Tensor], Tensor]] = {
    "circle": sdf_circle,
    "square": sdf_square,
    "triangle": sdf_triangle,
    "diamond": sdf_diamond,
    "cross": sdf_cross,
}


def coverage(sdf: Tensor) -> Tensor:
    """Fraction of each pixel inside the shape, from the signed distance of its centre in pixels."""
    return (0.5 - sdf).clamp_(0.0, 1.0)  # a = clamp(1/2 - d, 0, 1): exact for an edge along a pixel axis


# ---------------------------------------------------------------------------------------------
# Cells and captions
# ---------------------------------------------------------------------------------------------


class SceneObject(NamedTuple):
    """One object of a scene, by name; `cell` counts row by row from the top left (row * grid + column)."""

    shape: str
    colour: str
    size: str
    cell: int


def cell_names(grid: int) -> tuple[str, ...]:
    """Names of the cells row by row: "top left" … "bottom right" for 3x3, else "row r, column c" (from 1)."""
    _check_int("grid", grid, minimum=1)
    if grid == 3:
        return CELL_NAMES_3X3
    return tuple(f"row {row + 1}, column {column + 1}" for row in range(grid) for column in range(grid))


@functools.cache
def _locations(grid: int) -> tuple[str, ...]:
    """ "at the top left", … for each cell (cached: captions are written by the thousand)."""
    article = "the " if grid == 3 else ""
    return tuple(f"at {article}{name}" for name in cell_names(grid))


def _relation(first_cell: int, second_cell: int, grid: int) -> str:
    """Where the first object is seen from the second: columns decide left/right, otherwise rows above/below."""
    (row_1, column_1), (row_2, column_2) = divmod(first_cell, grid), divmod(second_cell, grid)
    if column_1 != column_2:
        return "to the left of" if column_1 < column_2 else "to the right of"
    return "above" if row_1 < row_2 else "below"


def caption(objects: Sequence[SceneObject], grid: int = 3) -> str:
    """The caption of a scene.

    One object: "a small red circle at the top left". Two: their spatial relation, "a small red circle
    to the left of a large blue square". More: each object with its cell, joined by " and ".
    """
    _check_int("grid", grid, minimum=1)
    if not objects:
        raise ValueError("a caption needs at least one object, got none")
    for obj in objects:
        _check_object(obj, grid)
    cells = [obj.cell for obj in objects]
    if len(set(cells)) != len(cells):
        raise ValueError(f"two objects share a cell (cells {cells}); each cell holds at most one object")
    return _join_phrases([f"a {obj.size} {obj.colour} {obj.shape}" for obj in objects], cells, grid)


def _join_phrases(phrases: Sequence[str], cells: Sequence[int], grid: int) -> str:
    """A caption from each object's phrase ("a small red circle") and cell."""
    if len(phrases) == 2:
        return f"{phrases[0]} {_relation(cells[0], cells[1], grid)} {phrases[1]}"
    locations = _locations(grid)
    return " and ".join(f"{phrase} {locations[cell]}" for phrase, cell in zip(phrases, cells))


def _check_object(obj: SceneObject, grid: int) -> None:
    for field, vocabulary in (("shape", SHAPES), ("colour", tuple(COLOURS)), ("size", SIZES)):
        _check_names(field, (getattr(obj, field),), vocabulary)
    if not 0 <= obj.cell < grid * grid:
        raise ValueError(f"cell {obj.cell} is outside a {grid}x{grid} grid; valid cells are 0..{grid * grid - 1}")


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------


def min_resolution(grid: int, sizes: Sequence[str] = SIZES) -> int:
    """Smallest image side at which the smallest of `sizes` spans MIN_OBJECT_PIXELS pixels."""
    smallest = min(SIZE_FRACTION[size] for size in sizes)
    return math.ceil(MIN_OBJECT_PIXELS * grid / smallest - 1e-9)  # side * fraction / grid >= min pixels


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
    """Paint scenes from their labels; returns images (N, 3, H, W) and visible coverage masks (N, K, H, W).

    shape, colour, size, cell: (N, K) long indices into `shapes`, `colours`, `sizes` and the cells,
    -1 in empty slots. offset: (N, K, 2) shift (x, y) of each centre from its cell centre, in cell
    sides (None: centred). Slot k is painted over slots < k on a black background.
    """
    _check_render_inputs(shape, colour, size, cell, offset, resolution, grid, shapes, colours, sizes)
    n_scenes, n_slots = shape.shape
    device = shape.device
    offset = torch.zeros(n_scenes, n_slots, 2, device=device) if offset is None else offset.float()
    palette = torch.tensor([COLOURS[name] for name in colours], device=device)  # (colours, 3)

    masks = torch.zeros(n_scenes, n_slots, resolution, resolution, device=device)  # (N, K, H, W)
    for k in range(n_slots):  # coverage a_k of each object on its own
        _draw_coverage(masks[:, k], shape[:, k], size[:, k], cell[:, k], offset[:, k], grid, shapes, sizes)
    see_through = torch.ones(n_scenes, resolution, resolution, device=device)  # (N, H, W) transmittance above
    for k in reversed(range(n_slots)):  # painted last = on top: visible_k = a_k * prod_{j > k} (1 - a_j)
        masks[:, k] *= see_through
        see_through -= masks[:, k]  # T <- T (1 - a_k) = T - visible_k
    rgb = palette[colour.clamp(min=0)]  # (N, K, 3)
    images = torch.zeros(n_scenes, 3, resolution, resolution, device=device)  # (N, 3, H, W)
    for k in range(n_slots):
        images.addcmul_(masks[:, k, None], rgb[:, k, :, None, None])  # image = sum_k visible_k * colour_k
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
    """Write the coverage of one object per scene into `out` (N, H, W), which holds zeros.

    An object never leaves its cell, so its anti-aliased rim stays within half a pixel of the cell:
    the SDF is evaluated on a P x P patch of pixels around the cell only (about grid**2 times less
    work than the whole image), then scattered into place.
    """
    n_scenes, resolution = out.shape[0], out.shape[-1]
    cell_side = resolution / grid  # in pixels
    patch = min(math.ceil(cell_side) + 2, resolution)  # pixels a cell and its rim can touch, per axis
    steps = torch.arange(patch, device=out.device)  # (P,)
    row, column = cell.clamp(min=0) // grid, cell.clamp(min=0) % grid  # (N,)
    left = (torch.floor(column * cell_side) - 1).clamp(0, resolution - patch).long()  # (N,) patch's first column
    top = (torch.floor(row * cell_side) - 1).clamp(0, resolution - patch).long()  # (N,) patch's first row
    centre_x = (column + 0.5 + offset[:, 0]) * cell_side  # (N,) object centre in pixels
    centre_y = (row + 0.5 + offset[:, 1]) * cell_side
    x = (left[:, None] + steps + 0.5 - centre_x[:, None])[:, None, :]  # (N, 1, P) pixel centres, relative
    y = (top[:, None] + steps + 0.5 - centre_y[:, None])[:, :, None]  # (N, P, 1)
    half_sides = torch.tensor([SIZE_FRACTION[name] * cell_side / 2 for name in sizes], device=out.device)
    half = half_sides[size.clamp(min=0)][:, None, None]  # (N, 1, 1)

    alpha = torch.zeros(n_scenes, patch, patch, device=out.device)  # (N, P, P), stays 0 in an empty slot
    for index, name in enumerate(shapes):
        scenes = (shape == index).nonzero().squeeze(1)  # the scenes whose object has this shape
        if scenes.numel():
            alpha[scenes] = coverage(SHAPE_SDFS[name](x[scenes], y[scenes], half[scenes]))
    pixel = (top[:, None, None] + steps[:, None]) * resolution + left[:, None, None] + steps  # (N, P, P) in H * W
    flat = (n_scenes, patch * patch)
    out.view(n_scenes, resolution * resolution).scatter_(1, pixel.view(flat), alpha.view(flat))


def _check_render_inputs(
    shape: Tensor,
    colour: Tensor,
    size: Tensor,
    cell: Tensor,
    offset: Tensor | None,
    resolution: int,
    grid: int,
    shapes: Sequence[str],
    colours: Sequence[str],
    sizes: Sequence[str],
) -> None:
    _check_int("grid", grid, minimum=1)
    _check_names("shape", shapes, SHAPES)
    _check_names("colour", colours, tuple(COLOURS))
    _check_names("size", sizes, SIZES)
    _check_int("resolution", resolution, minimum=min_resolution(grid, sizes), why=_RESOLUTION_WHY)
    labels = {"shape": (shape, len(shapes)), "colour": (colour, len(colours)), "size": (size, len(sizes))}
    labels["cell"] = (cell, grid * grid)
    for name, (values, n_values) in labels.items():
        if not isinstance(values, Tensor) or values.dtype != torch.long or values.dim() != 2:
            raise TypeError(f"{name} must be a (N, K) long tensor, got {_describe(values)}")
        if values.shape != shape.shape:
            raise ValueError(f"{name} has shape {tuple(values.shape)} but shape has {tuple(shape.shape)}")
        if values.numel() and not (-1 <= values.min() and values.max() < n_values):
            raise ValueError(f"{name} indices must lie in -1..{n_values - 1} (-1 = empty slot)")
    empty = shape < 0
    if any(((values < 0) != empty).any() for values, _ in labels.values()):
        raise ValueError("an empty slot must be -1 in shape, colour, size and cell alike")
    sorted_cells = cell.sort(dim=1).values  # (N, K)
    if ((sorted_cells[:, 1:] == sorted_cells[:, :-1]) & (sorted_cells[:, 1:] >= 0)).any():
        raise ValueError("two objects of a scene share a cell; each cell holds at most one object")
    if offset is None:
        return
    if not isinstance(offset, Tensor) or not offset.is_floating_point() or offset.shape != (*shape.shape, 2):
        raise TypeError(f"offset must be a float tensor of shape {(*shape.shape, 2)}, got {_describe(offset)}")
    half_box = torch.tensor([SIZE_FRACTION[name] / 2 for name in sizes], device=shape.device)[size.clamp(min=0)]
    if (~empty[..., None] & (offset.abs() + half_box[..., None] > 0.5 + 1e-6)).any():
        raise ValueError("an object would leave its cell: need |offset| + size fraction / 2 <= 0.5 (in cell sides)")


# ---------------------------------------------------------------------------------------------
# Labels and scenes
# ---------------------------------------------------------------------------------------------


@dataclass
class SceneLabels:
    """The labels of N scenes with up to K objects; -1 (offset 0) in empty slots."""

    shape: Tensor  # (N, K) long, index into the world's shapes
    colour: Tensor  # (N, K) long
    size: Tensor  # (N, K) long
    cell: Tensor  # (N, K) long, row * grid + column
    offset: Tensor  # (N, K, 2) float, (x, y) shift of the centre from the cell centre, in cell sides
    count: Tensor  # (N,) long, objects in the scene; slots 0..count-1 are filled


@dataclass
class Scenes:
    """A batch of rendered scenes with exact labels (see `SceneLabels`) and captions."""

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
        """The scenes selected by an int, a slice, indices or a boolean mask, as a (smaller) batch."""
        rows = torch.arange(len(self), device=self.images.device)[item].reshape(-1)  # (M,)
        tensors = {name: getattr(self, name)[rows] for name in _TENSOR_FIELDS}
        return Scenes(**tensors, captions=[self.captions[i] for i in rows.tolist()], world=self.world)

    def to(self, device: torch.device | str) -> Scenes:
        """The same scenes with every tensor on `device`."""
        return replace(self, **{name: getattr(self, name).to(device) for name in _TENSOR_FIELDS})

    def cell_targets(self, grid: int | None = None) -> dict[str, Tensor]:
        """Per-cell labels (N, grid * grid): "shape" (len(shapes) = empty cell), "colour" and "size" (-1 = empty)."""
        grid = self.world.grid if grid is None else grid
        if grid != self.world.grid:
            raise ValueError(f"these scenes lie on a {self.world.grid}x{self.world.grid} grid, not {grid}x{grid}")
        filled = self.cell >= 0  # (N, K)
        scene = torch.arange(len(self), device=self.cell.device)[:, None].expand_as(self.cell)[filled]
        cell = self.cell[filled]
        targets = {}
        for name, empty in (("shape", len(self.world.shapes)), ("colour", -1), ("size", -1)):
            target = torch.full((len(self), grid * grid), empty, dtype=torch.long, device=self.cell.device)
            target[scene, cell] = getattr(self, name)[filled]
            targets[name] = target
        return targets


_TENSOR_FIELDS = ("images", "shape", "colour", "size", "cell", "offset", "count", "masks")


@dataclass(frozen=True)
class ShapesWorld:
    """A world of captioned scenes: every scene is a pure function of (seed, split, index).

    `jitter` is the largest shift of an object's centre from its cell centre, in cell sides; it may
    not push an object out of its cell. `holdout` lists (colour, shape) pairs that never occur in the
    "train", "val" and "test" splits: there each object's (colour, shape) pair is drawn uniformly from
    the other pairs. In the "holdout" split the first object's pair is drawn uniformly from `holdout`
    and the other objects' pairs as in training, so each holdout scene holds exactly one new pair.
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
        _check_int("grid", self.grid, minimum=1)
        _check_int("min_objects", self.min_objects, minimum=1)
        _check_int("max_objects", self.max_objects, minimum=1)
        if self.min_objects > self.max_objects:
            raise ValueError(f"min_objects ({self.min_objects}) must not exceed max_objects ({self.max_objects})")
        if self.max_objects > self.grid * self.grid:
            raise ValueError(
                f"grid too small for the objects: a {self.grid}x{self.grid} grid holds at most "
                f"{self.grid * self.grid} objects (one per cell), but max_objects={self.max_objects}"
            )
        for field, vocabulary in (("shape", SHAPES), ("colour", tuple(COLOURS)), ("size", SIZES)):
            names = getattr(self, field + "s")
            _check_names(field, names, vocabulary)
            object.__setattr__(self, field + "s", tuple(names))
        self._check_holdout()
        object.__setattr__(self, "holdout", tuple(tuple(pair) for pair in self.holdout))
        _check_int("resolution", self.resolution, minimum=min_resolution(self.grid, self.sizes), why=_RESOLUTION_WHY)
        largest_jitter = (1 - max(SIZE_FRACTION[size] for size in self.sizes)) / 2
        if isinstance(self.jitter, bool) or not isinstance(self.jitter, (int, float)):
            raise TypeError(f"jitter must be a number, got {self.jitter!r}")
        if not 0 <= self.jitter <= largest_jitter + 1e-12:
            raise ValueError(
                f"jitter must lie in [0, {largest_jitter:g}] so that a {max(self.sizes, key=SIZE_FRACTION.get)} "
                f"object stays inside its cell, got {self.jitter}"
            )
        _check_int("seed", self.seed, minimum=0)
        if self.seed >= 1 << 63:
            raise ValueError(f"seed must be below 2**63, got {self.seed}")

    def _check_holdout(self) -> None:
        for pair in self.holdout:
            if isinstance(pair, str) or len(pair) != 2:
                raise ValueError(
                    "holdout must be a sequence of (colour, shape) pairs, e.g. holdout=(('yellow', 'triangle'),); "
                    f"got the entry {pair!r}"
                )
            _check_names("colour", pair[:1], self.colours, where="holdout")
            _check_names("shape", pair[1:], self.shapes, where="holdout")
        if len({tuple(pair) for pair in self.holdout}) == len(self.colours) * len(self.shapes):
            raise ValueError("holdout lists every (colour, shape) pair; leave at least one for training")

    @property
    def cell_names(self) -> tuple[str, ...]:
        """Names of the grid cells, row by row from the top left."""
        return cell_names(self.grid)

    def _pairs(self, held_out: bool, device: torch.device) -> Tensor:
        """(colour, shape) index pairs, (P, 2): the held-out ones, or all the others."""
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
        """The labels of the scenes `indices` (an int n means range(n)) of `split`, without rendering."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
        if split == "holdout" and not self.holdout:
            raise ValueError(
                "the 'holdout' split needs held-out pairs, e.g. ShapesWorld(holdout=(('yellow', 'triangle'),))"
            )
        index = _index_tensor(indices, device)[:, None]  # (N, 1)
        device = index.device
        key = (self.seed, SPLITS.index(split), index)
        slots = torch.arange(self.max_objects, device=device)  # (K,)

        n_counts = self.max_objects - self.min_objects + 1
        count = self.min_objects + (_uniform(_hash(*key, _FIELD_COUNT)) * n_counts).long()[:, 0]  # (N,)
        cells = torch.arange(self.grid * self.grid, device=device)
        random_order = _hash(*key, _FIELD_CELL, cells).argsort(dim=1, stable=True)  # (N, cells): a random permutation
        cell = random_order[:, : self.max_objects]  # (N, K) distinct cells

        pair_u = _uniform(_hash(*key, _FIELD_PAIR, slots))  # (N, K)
        training_pairs = self._pairs(held_out=False, device=device)  # (P, 2)
        pair = training_pairs[(pair_u * len(training_pairs)).long()]  # (N, K, 2): uniform over the allowed pairs
        if split == "holdout":
            held_out_pairs = self._pairs(held_out=True, device=device)
            pair[:, 0] = held_out_pairs[(pair_u[:, 0] * len(held_out_pairs)).long()]
        size = (_uniform(_hash(*key, _FIELD_SIZE, slots)) * len(self.sizes)).long()  # (N, K)
        axes = torch.arange(2 * self.max_objects, device=device)  # one stream per slot and axis (x, y)
        offset = (2 * _uniform(_hash(*key, _FIELD_OFFSET, axes)) - 1) * self.jitter  # (N, 2K), in [-jitter, jitter)
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

    def scenes(
        self,
        indices: int | range | Sequence[int] | Tensor,
        split: str = "train",
        device: torch.device | str | None = None,
    ) -> Scenes:
        """The rendered scenes `indices` (an int n means range(n)) of `split`, drawn on `device`."""
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
        phrase = [[[f"a {z} {c} {s}" for z in self.sizes] for c in self.colours] for s in self.shapes]
        rows = zip(*(t.tolist() for t in (labels.shape, labels.colour, labels.size, labels.cell, labels.count)))
        return [
            _join_phrases([phrase[s[k]][c[k]][z[k]] for k in range(count)], cells[:count], self.grid)
            for s, c, z, cells, count in rows
        ]


def _index_tensor(indices: int | range | Sequence[int] | Tensor, device: torch.device | str | None) -> Tensor:
    """Scene indices as a (N,) int64 tensor; an int n means range(n)."""
    if isinstance(indices, bool):
        raise TypeError(f"indices must be an int, a range, a sequence of ints or an integer tensor, got {indices!r}")
    if isinstance(indices, int):
        _check_int("the number of scenes", indices, minimum=0)
        return torch.arange(indices, device=device)
    if isinstance(indices, range):
        index = torch.arange(indices.start, indices.stop, indices.step, device=device)
    elif isinstance(indices, Tensor):
        if indices.dtype in (torch.bool, torch.uint8) or indices.is_floating_point() or indices.is_complex():
            raise TypeError(f"an index tensor must hold integers, got dtype {indices.dtype}")
        if indices.dim() != 1:
            raise ValueError(f"an index tensor must be 1-D, got shape {tuple(indices.shape)}")
        index = indices.to(device=device if device is not None else indices.device, dtype=torch.long)
    else:
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in indices):
            raise TypeError(f"indices must be ints, got {list(indices)!r}")
        index = torch.tensor(list(indices), dtype=torch.long, device=device)
    if index.numel() and index.min() < 0:
        raise ValueError(f"scene indices must be >= 0, got {index.min().item()}")
    return index


# ---------------------------------------------------------------------------------------------
# Validation helpers
# ---------------------------------------------------------------------------------------------


def _check_int(name: str, value: object, minimum: int, why: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}{' ' + why if why else ''}, got {value}")


def _check_names(field: str, names: Sequence[str], valid: Sequence[str], where: str = "") -> None:
    if isinstance(names, str):
        raise TypeError(f"{field}s must be a sequence of names like {tuple(valid[:2])}, got the string {names!r}")
    if not names:
        raise ValueError(f"no {field}s given; valid {field}s: {', '.join(valid)}")
    unknown = [name for name in names if name not in valid]
    if unknown:
        place = f" in {where}" if where else ""
        raise ValueError(f"unknown {field} {unknown[0]!r}{place}; valid {field}s: {', '.join(valid)}")
    if len(set(names)) != len(names):
        raise ValueError(f"{field}s must not repeat, got {tuple(names)}")


def _describe(value: object) -> str:
    if isinstance(value, Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return repr(value)
