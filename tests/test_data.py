"""Tests of minigen.data: hashing, labels, captions, rendering, splits, the photo and the torchvision adapters."""

import math
import os
import pickle
import re
import urllib.error

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.path import Path as Polygon

from minigen.data.photo import grace_hopper
from minigen.data.shapes import (
    COLOURS,
    SHAPES,
    SIZE_FRACTION,
    SIZES,
    SceneObject,
    Scenes,
    ShapesWorld,
    _mix64,
    _uniform,
    caption,
    cell_names,
    coverage,
    min_resolution,
    render,
    sdf_circle,
    sdf_cross,
    sdf_diamond,
    sdf_square,
    sdf_triangle,
)
from minigen.data.torchvision import load_torchvision

RGB = torch.tensor(list(COLOURS.values()))  # (colours, 3)
NAMES_3X3 = [
    "top left",
    "top",
    "top right",
    "left",
    "centre",
    "right",
    "bottom left",
    "bottom",
    "bottom right",
]


def assert_same_scenes(a: Scenes, b: Scenes) -> None:
    for name in (
        "images",
        "shape",
        "colour",
        "size",
        "cell",
        "offset",
        "count",
        "masks",
    ):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert a.captions == b.captions


def one_object(
    shape: str, size: str, cell: int, offset=(0.0, 0.0), colour: str = "red"
) -> dict:
    """render() arguments for a single object per scene."""
    return dict(
        shape=torch.tensor([[SHAPES.index(shape)]]),
        colour=torch.tensor([[list(COLOURS).index(colour)]]),
        size=torch.tensor([[SIZES.index(size)]]),
        cell=torch.tensor([[cell]]),
        offset=torch.tensor([[offset]], dtype=torch.float32),
    )


# --- counter-based hashing -------------------------------------------------------------------


def test_mix64_reproduces_splitmix64():
    """Vigna's splitmix64 seeded with 1234567 outputs these words; state_i = seed + i * gamma mod 2**64."""
    expected = [
        6457827717110365317, 3203168211198807973, 9817491932198370423, 4593380528125082431, 16408922859458223821
    ]  # fmt: skip
    states = [(1234567 + i * 0x9E3779B97F4A7C15) % 2**64 for i in range(1, 6)]
    signed = torch.tensor([s - 2**64 if s >= 2**63 else s for s in states])
    assert [word % 2**64 for word in _mix64(signed).tolist()] == expected


def test_uniform_draws_fill_unit_interval_evenly():
    u = _uniform(_mix64(torch.arange(100_000)))
    assert u.min() >= 0 and u.max() < 1
    counts = torch.histc(u, bins=10, min=0, max=1)
    chi_square = ((counts - 10_000) ** 2 / 10_000).sum()
    assert chi_square < 40  # 9 degrees of freedom: p < 1e-5 for a uniform source


# --- determinism --------------------------------------------------------------------------------


def test_a_scene_is_a_pure_function_of_seed_split_and_index():
    world = ShapesWorld()
    batch = world.scenes(range(10))
    assert_same_scenes(ShapesWorld().scenes(10), batch)  # an int n means range(n)
    assert_same_scenes(world.scenes(indices=[5]), batch[5])
    assert_same_scenes(world.scenes(range(3, 8)), batch[3:8])
    order = torch.tensor([7, 2, 9, 2])
    assert_same_scenes(world.scenes(order), batch[order])


def test_seeds_and_splits_draw_different_scenes():
    scenes = {
        "seed 0": ShapesWorld(seed=0).sample_labels(300),
        "seed 1": ShapesWorld(seed=1).sample_labels(300),
        "val": ShapesWorld(seed=0).sample_labels(300, split="val"),
        "test": ShapesWorld(seed=0).sample_labels(300, split="test"),
    }
    names = list(scenes)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            same = (scenes[a].shape == scenes[b].shape).all(1) & (
                scenes[a].cell == scenes[b].cell
            ).all(1)
            # chance agreement is about 1/5 * 1/9 * ... per scene
            assert same.float().mean() < 0.2, (a, b)


def test_labels_do_not_depend_on_resolution():
    low, high = (
        ShapesWorld(resolution=32).sample_labels(200),
        ShapesWorld(resolution=64).sample_labels(200),
    )
    for name in ("shape", "colour", "size", "cell", "offset", "count"):
        assert torch.equal(getattr(low, name), getattr(high, name))


# --- labels ---------------------------------------------------------------------------------------


def test_labels_are_in_range_with_one_object_per_cell():
    world = ShapesWorld(
        resolution=64, grid=4, min_objects=2, max_objects=5, jitter=0.05
    )
    labels = world.sample_labels(2000)
    assert set(labels.count.tolist()) == {2, 3, 4, 5}
    filled = torch.arange(5) < labels.count[:, None]
    for name, n_values in (("shape", 5), ("colour", 6), ("size", 2), ("cell", 16)):
        values = getattr(labels, name)
        assert torch.equal(values >= 0, filled), name
        assert values[filled].min() == 0 and values[filled].max() == n_values - 1, (
            name
        )
        assert (values[~filled] == -1).all(), name
    for cells, count in zip(labels.cell.tolist(), labels.count.tolist()):
        assert len(set(cells[:count])) == count
    assert labels.offset.abs().max() <= 0.05 and (labels.offset[~filled] == 0).all()
    # the jitter is used, not ignored
    assert labels.offset[filled].abs().max() > 0.045


# --- captions -------------------------------------------------------------------------------------

PHRASE = r"a (small|large) (\w+) (\w+)"


def parse_caption(
    text: str, grid: int
) -> tuple[list[tuple[str, str, str]], list[int] | str]:
    """Objects (size, colour, shape) and either their cells or, for two objects, the relation word."""
    pair = re.fullmatch(
        f"{PHRASE} (to the left of|to the right of|above|below) {PHRASE}", text
    )
    if pair:
        words = pair.groups()
        return [words[0:3], words[4:7]], words[3]
    names = (
        NAMES_3X3
        if grid == 3
        else [
            f"row {r}, column {c}"
            for r in range(1, grid + 1)
            for c in range(1, grid + 1)
        ]
    )
    objects, cells = [], []
    for part in text.split(" and "):
        match = re.fullmatch(f"{PHRASE} at (?:the )?(.+)", part)
        assert match, part
        objects.append(match.groups()[:3])
        cells.append(names.index(match.group(4)))
    return objects, cells


def expected_relation(first: int, second: int, grid: int) -> str:
    (row_1, col_1), (row_2, col_2) = divmod(first, grid), divmod(second, grid)
    if col_1 < col_2:
        return "to the left of"
    if col_1 > col_2:
        return "to the right of"
    return "above" if row_1 < row_2 else "below"


@pytest.mark.parametrize(
    "world",
    [
        ShapesWorld(),
        ShapesWorld(min_objects=3, max_objects=4),
        ShapesWorld(resolution=40, grid=4, max_objects=3),
    ],
    ids=["3x3, 1-2 objects", "3x3, 3-4 objects", "4x4, 1-3 objects"],
)
def test_captions_parse_back_into_the_labels(world):
    scenes = world.scenes(300)
    for i, text in enumerate(scenes.captions):
        objects, cells_or_relation = parse_caption(text, world.grid)
        count = scenes.count[i].item()
        assert len(objects) == count, text
        for k, (size, colour, shape) in enumerate(objects):
            assert size == world.sizes[scenes.size[i, k]], text
            assert colour == world.colours[scenes.colour[i, k]], text
            assert shape == world.shapes[scenes.shape[i, k]], text
        cells = scenes.cell[i, :count].tolist()
        if count == 2:
            assert cells_or_relation == expected_relation(*cells, world.grid), text
        else:
            assert cells_or_relation == cells, text


def test_caption_examples():
    red_circle = SceneObject("circle", "red", "small", 0)
    assert caption([red_circle]) == "a small red circle at the top left"
    assert caption([red_circle, SceneObject("square", "blue", "large", 2)]) == (
        "a small red circle to the left of a large blue square"
    )
    assert caption(
        [
            SceneObject("cross", "cyan", "large", 1),
            SceneObject("diamond", "green", "small", 7),
        ]
    ) == ("a large cyan cross above a small green diamond")
    three = [
        red_circle,
        SceneObject("square", "blue", "large", 4),
        SceneObject("triangle", "yellow", "small", 8),
    ]
    assert caption(three) == (
        "a small red circle at the top left and a large blue square at the centre "
        "and a small yellow triangle at the bottom right"
    )
    assert (
        caption([SceneObject("circle", "red", "small", 3)], grid=2)
        == "a small red circle at row 2, column 2"
    )


def test_cell_names():
    assert cell_names(3) == tuple(NAMES_3X3)
    assert cell_names(2) == (
        "row 1, column 1",
        "row 1, column 2",
        "row 2, column 1",
        "row 2, column 2",
    )
    assert ShapesWorld(grid=4, resolution=40).cell_names == cell_names(4)


@pytest.mark.parametrize(
    "objects, error",
    [
        ([], "at least one object"),
        (
            [
                SceneObject("circle", "red", "small", 0),
                SceneObject("cross", "red", "small", 0),
            ],
            "share a cell",
        ),
        (
            [SceneObject("circle", "purple", "small", 0)],
            "colour must be one of 'red', 'green', .*got str 'purple'",
        ),
        (
            [SceneObject("circle", "red", "small", 9)],
            "cell 9 is outside a 3x3 grid",
        ),
    ],
)
def test_caption_rejects_bad_objects(objects, error):
    with pytest.raises(ValueError, match=error):
        caption(objects)


# --- rendering ------------------------------------------------------------------------------------


def analytic_area(shape: str, half: float) -> float:
    """Area of each shape in a box of side 2h (the cross: bars of width 2h/3)."""
    bar = 2 * half / 3
    return {
        "circle": math.pi * half**2,
        "square": (2 * half) ** 2,
        "triangle": (2 * half) ** 2 / 2,
        "diamond": (2 * half) ** 2 / 2,
        "cross": 2 * (2 * half) * bar - bar**2,
    }[shape]


# 32 px: 5-pixel shapes, corners weigh in
@pytest.mark.parametrize("resolution, tolerance", [(96, 0.02), (32, 0.08)])
@pytest.mark.parametrize("shape", SHAPES)
def test_coverage_sums_to_the_analytic_area(shape, resolution, tolerance):
    generator = torch.Generator().manual_seed(0)
    n = 40
    size = torch.arange(n)[:, None] % 2
    labels = dict(
        shape=torch.full((n, 1), SHAPES.index(shape)),
        colour=torch.zeros(n, 1, dtype=torch.long),
        size=size,
        cell=torch.randint(0, 9, (n, 1), generator=generator),
        offset=(torch.rand(n, 1, 2, generator=generator) * 2 - 1)
        * 0.1,  # sub-pixel positions
    )
    _, masks = render(**labels, resolution=resolution)
    half = (
        torch.tensor([SIZE_FRACTION[s] for s in SIZES])[size[:, 0]]
        * resolution
        / 3
        / 2
    )
    expected = torch.tensor([analytic_area(shape, h) for h in half.tolist()])
    assert torch.allclose(masks.sum((1, 2, 3)), expected, rtol=tolerance)


def polygon(shape: str, half: float) -> list[tuple[float, float]]:
    """Corners of each shape around (0, 0), y downwards (the triangle points up)."""
    h, w = half, half / 3
    return {
        "square": [(-h, -h), (h, -h), (h, h), (-h, h)],
        "triangle": [(0, -h), (h, h), (-h, h)],
        "diamond": [(h, 0), (0, h), (-h, 0), (0, -h)],
        "cross": [(-w, -h), (w, -h), (w, -w), (h, -w), (h, w), (w, w), (w, h), (-w, h), (-w, w), (-h, w), (-h, -w),
                  (-w, -w)],
    }[shape]  # fmt: skip


def supersampled_coverage(
    shape: str, half: float, centre: tuple[float, float], resolution: int
) -> torch.Tensor:
    """Fraction of 16 x 16 sample points per pixel that fall inside the shape: the box-filtered image."""
    samples = (np.arange(resolution * 16) + 0.5) / 16
    x, y = np.meshgrid(samples - centre[0], samples - centre[1])
    if shape == "circle":
        inside = x**2 + y**2 <= half**2
    else:
        inside = (
            Polygon(polygon(shape, half))
            .contains_points(np.stack([x.ravel(), y.ravel()], 1))
            .reshape(x.shape)
        )
    return torch.from_numpy(
        inside.reshape(resolution, 16, resolution, 16).mean((1, 3))
    ).float()


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("shape", SHAPES)
def test_coverage_matches_supersampled_geometry(shape, size):
    # one 40-pixel cell; the centre off the pixel grid
    resolution, offset = (40, (0.07, -0.04))
    _, masks = render(
        **one_object(shape, size, 0, offset), resolution=resolution, grid=1
    )
    half = SIZE_FRACTION[size] * resolution / 2
    centre = ((0.5 + offset[0]) * resolution, (0.5 + offset[1]) * resolution)
    reference = supersampled_coverage(shape, half, centre, resolution)
    difference = (masks[0, 0] - reference).abs()
    # worst at corners, where distance-based coverage is approximate
    assert difference.max() < 0.3
    assert difference.sum() < 0.02 * reference.sum()  # L1 error
    assert abs(masks.sum() - reference.sum()) < 0.01 * reference.sum()


def test_images_are_the_masks_painted_in_their_colours():
    scenes = ShapesWorld(max_objects=4).scenes(200)
    colours = RGB[scenes.colour.clamp(min=0)]  # (N, K, 3)
    painted = torch.einsum("nkhw,nkc->nchw", scenes.masks, colours)
    assert torch.allclose(scenes.images, painted, atol=1e-6)
    assert (
        scenes.images.dtype == torch.float32
        and scenes.images.min() >= 0
        and scenes.images.max() <= 1
    )
    pixels = scenes.images.permute(0, 2, 3, 1)  # (N, H, W, 3)
    for k in range(4):
        # (N, H, W) pixels fully covered by object k
        inside = scenes.masks[:, k] == 1
        assert torch.equal(
            pixels[inside], colours[:, k, None, None].expand(-1, 32, 32, 3)[inside]
        )
    background = scenes.masks.sum(1) == 0  # (N, H, W)
    assert (pixels[background] == 0).all()
    assert background.float().mean() > 0.5  # mostly black
    assert (scenes.masks[scenes.shape == -1] == 0).all()  # empty slots draw nothing


def test_edges_are_anti_aliased():
    scenes = ShapesWorld().scenes(50)
    fractional = (scenes.masks > 0) & (scenes.masks < 1)
    for i in range(50):
        for k in range(scenes.count[i]):
            # every object has partly covered edge pixels
            assert fractional[i, k].sum() >= 4


def test_each_object_stays_in_its_cell_at_its_position():
    world = ShapesWorld(resolution=96)
    scenes = world.scenes(100)
    side = 96 / 3
    centres = torch.arange(96) + 0.5
    for i in range(100):
        for k in range(scenes.count[i]):
            row, col = divmod(scenes.cell[i, k].item(), 3)
            mask = scenes.masks[i, k]
            outside_x = (centres < col * side - 0.5) | (
                centres > (col + 1) * side + 0.5
            )
            outside_y = (centres < row * side - 0.5) | (
                centres > (row + 1) * side + 0.5
            )
            assert mask[:, outside_x].sum() == 0 and mask[outside_y].sum() == 0
            if (
                world.shapes[scenes.shape[i, k]] != "triangle"
            ):  # symmetric shapes: centroid = centre
                dx, dy = scenes.offset[i, k].tolist()
                centroid_x = (mask.sum(0) * centres).sum() / mask.sum()
                centroid_y = (mask.sum(1) * centres).sum() / mask.sum()
                assert abs(centroid_x - (col + 0.5 + dx) * side) < 0.1  # pixels
                assert abs(centroid_y - (row + 0.5 + dy) * side) < 0.1  # pixels


def test_later_objects_are_painted_over_earlier_ones():
    # Two large squares pushed against the border of their cells share the pixel column 17 (centre x = 17.5).
    labels = dict(
        shape=torch.tensor([[1, 1]]),
        colour=torch.tensor([[0, 2]]),  # red under blue
        size=torch.tensor([[1, 1]]),
        cell=torch.tensor([[0, 1]]),
        offset=torch.tensor([[[0.1, 0.0], [-0.1, 0.0]]]),
    )
    images, masks = render(**labels, resolution=35, grid=2)
    # blue covers half of the pixel
    assert masks[0, 1, 8, 17].item() == pytest.approx(0.5, abs=1e-5)
    # red: half, under blue's half
    assert masks[0, 0, 8, 17].item() == pytest.approx(0.25, abs=1e-5)
    assert images[0, :, 8, 17].tolist() == pytest.approx([0.25, 0.0, 0.5], abs=1e-5)


def test_cell_targets_label_every_cell():
    world = ShapesWorld(max_objects=3)
    scenes = world.scenes(100)
    targets = scenes.cell_targets(3)
    assert set(targets) == {"shape", "colour", "size"}
    for i in range(100):
        expected = {
            "shape": [len(SHAPES)] * 9,
            "colour": [-1] * 9,
            "size": [-1] * 9,
        }
        for k in range(scenes.count[i]):
            for name in expected:
                expected[name][scenes.cell[i, k]] = getattr(scenes, name)[
                    i, k
                ].item()
        for name in expected:
            assert targets[name][i].tolist() == expected[name]
    assert torch.equal(scenes.cell_targets()["shape"], targets["shape"])
    with pytest.raises(ValueError, match="3x3 grid, not 4x4"):
        scenes.cell_targets(4)


def test_scenes_index_and_move():
    scenes = ShapesWorld().scenes(12)
    assert len(scenes) == 12 and len(scenes[2:5]) == 3 and len(scenes[-1]) == 1
    picked = scenes[scenes.count == 2]
    assert len(picked) == (scenes.count == 2).sum() and (picked.count == 2).all()
    assert picked.captions == [
        c for c, n in zip(scenes.captions, scenes.count) if n == 2
    ]
    assert_same_scenes(scenes.to("cpu"), scenes)
    assert scenes[0].world is scenes.world
    assert len(ShapesWorld().scenes(0)) == 0 and ShapesWorld().scenes(
        0
    ).images.shape == (0, 3, 32, 32)


# --- splits and held-out combinations ----------------------------------------------------------------


def test_held_out_pairs_never_appear_in_training_splits():
    holdout = (("yellow", "triangle"), ("blue", "circle"))
    world = ShapesWorld(holdout=holdout)
    held = {(world.colours.index(c), world.shapes.index(s)) for c, s in holdout}
    for split in ("train", "val", "test"):
        labels = world.sample_labels(3000, split)
        filled = labels.shape >= 0
        pairs = set(
            zip(labels.colour[filled].tolist(), labels.shape[filled].tolist())
        )
        assert not pairs & held, split
        assert len(pairs) == 6 * 5 - 2, split  # every other pair occurs


def test_marginals_stay_near_uniform_with_held_out_pairs():
    world = ShapesWorld(holdout=(("yellow", "triangle"),))
    labels = world.sample_labels(20_000)
    filled = labels.shape >= 0
    colours = (
        torch.bincount(labels.colour[filled], minlength=6).float() / filled.sum()
    )
    shapes = (
        torch.bincount(labels.shape[filled], minlength=5).float() / filled.sum()
    )
    # uniform over the 29 allowed pairs: yellow 4/29 instead of 5/30, triangle 5/29 instead of 6/30
    assert torch.allclose(colours, torch.full((6,), 1 / 6), rtol=0.2)
    assert torch.allclose(shapes, torch.full((5,), 1 / 5), rtol=0.2)
    pairs = (
        torch.bincount(
            labels.colour[filled] * 5 + labels.shape[filled], minlength=30
        ).float()
        / filled.sum()
    )
    allowed = torch.ones(30)
    allowed[list(COLOURS).index("yellow") * 5 + SHAPES.index("triangle")] = 0
    assert torch.allclose(pairs, allowed / 29, atol=0.006)


def test_holdout_split_puts_a_held_out_pair_first():
    holdout = (("yellow", "triangle"), ("blue", "circle"))
    world = ShapesWorld(holdout=holdout, max_objects=3)
    scenes = world.scenes(400, split="holdout")
    first = set(zip(scenes.colour[:, 0].tolist(), scenes.shape[:, 0].tolist()))
    assert first == {
        (world.colours.index(c), world.shapes.index(s)) for c, s in holdout
    }
    rest = scenes.shape[:, 1:] >= 0
    others = set(
        zip(scenes.colour[:, 1:][rest].tolist(), scenes.shape[:, 1:][rest].tolist())
    )
    assert not others & first
    assert all(caption.startswith(("a small yellow triangle", "a large yellow triangle", "a small blue circle",
                                   "a large blue circle")) for caption in scenes.captions)  # fmt: skip
    with pytest.raises(ValueError, match="needs held-out pairs"):
        ShapesWorld().scenes(3, split="holdout")


# --- validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error",
    [
        (
            dict(colours=("red", "purple")),
            "every entry of colours must be one of 'red', 'green', 'blue'",
        ),
        (
            dict(shapes=("circle", "hexagon")),
            "every entry of shapes must be one of 'circle', 'square'.*'hexagon'",
        ),
        (
            dict(sizes=("tiny",)),
            "every entry of sizes must be one of 'small', 'large', got str 'tiny'",
        ),
        (dict(sizes=()), "sizes must hold at least one of small, large, got none"),
        (dict(colours=("red", "red")), "colours must not repeat"),
        (dict(grid=2, max_objects=5), "grid too small for the objects"),
        (
            dict(resolution=20),
            "resolution must be at least 24 so that the smallest object spans 4 pixels",
        ),
        (
            dict(min_objects=3, max_objects=2),
            r"min_objects \(3\) must not exceed max_objects \(2\)",
        ),
        (dict(min_objects=0), "min_objects must be an int >= 1, got 0"),
        (
            dict(holdout=(("purple", "circle"),)),
            "the colour of every holdout pair must be one of 'red'.*'purple'",
        ),
        (
            dict(holdout=(("red", "star"),)),
            "the shape of every holdout pair must be one of 'circle'.*'star'",
        ),
        (
            dict(holdout=(("red", "circle", "small"),)),
            r"holdout must be a sequence of \(colour, shape\) pairs.*got the entry \('red', 'circle', 'small'\)",
        ),
        (
            dict(
                colours=("red",), shapes=("circle",), holdout=(("red", "circle"),)
            ),
            "every .colour, shape. pair",
        ),
        (
            dict(jitter=0.2),
            r"jitter must lie in \[0, 0.1\] so that a large object stays inside its cell",
        ),
        (dict(seed=-1), "seed must be an int >= 0, got -1"),
        (dict(seed=2**63), "seed must be an int <= 9,223,372,036,854,775,807"),
        (dict(jitter=float("nan")), "jitter must be a finite number, got nan"),
        (dict(jitter=-0.01), r"jitter must lie in \[0, 0.1\]"),
        (dict(grid=10**9), "grid must be an int <= 256, got 1,000,000,000"),
        (dict(resolution=10**9), "resolution must be an int <= 2,048"),
    ],
)
def test_world_rejects_bad_settings(kwargs, error):
    with pytest.raises(ValueError, match=error):
        ShapesWorld(**kwargs)


def test_world_rejects_wrong_types():
    with pytest.raises(TypeError, match="resolution must be an int"):
        ShapesWorld(resolution=32.0)
    with pytest.raises(TypeError, match="shapes must be a sequence of names"):
        ShapesWorld(shapes="circle")
    # small objects alone may move further
    assert ShapesWorld(sizes=("small",), jitter=0.25).jitter == 0.25


def test_scenes_rejects_bad_indices_and_splits():
    world = ShapesWorld()
    with pytest.raises(
        ValueError,
        match="split must be one of 'train', 'val', 'test', 'holdout', got str 'training'",
    ):
        world.scenes(3, split="training")
    with pytest.raises(
        ValueError, match="every entry of indices must be an int >= 0, got -1"
    ):
        world.scenes([0, -1])
    with pytest.raises(
        ValueError, match="every entry of indices must be >= 0, got -1"
    ):
        world.scenes(torch.tensor([0, -1]))
    with pytest.raises(TypeError, match="must hold integers"):
        world.scenes(torch.tensor([1.0]))
    with pytest.raises(
        TypeError, match="every entry of indices must be an int, got float 1.5"
    ):
        world.scenes([1.5])


def test_render_rejects_inconsistent_labels():
    good = dict(shape=torch.tensor([[0, 1]]), colour=torch.tensor([[0, 1]]), size=torch.tensor([[0, 1]]),
                cell=torch.tensor([[0, 1]]))  # fmt: skip
    render(**good)
    with pytest.raises(ValueError, match="share a cell"):
        render(**{**good, "cell": torch.tensor([[4, 4]])})
    with pytest.raises(
        ValueError,
        match="empty slot must be -1 in shape, colour, size and cell alike",
    ):
        render(**{**good, "shape": torch.tensor([[0, -1]])})
    with pytest.raises(ValueError, match=r"cell indices must lie in -1..8"):
        render(**{**good, "cell": torch.tensor([[0, 9]])})
    with pytest.raises(TypeError, match="colour must be a .N, K. long tensor"):
        render(**{**good, "colour": torch.tensor([[0.0, 1.0]])})
    with pytest.raises(ValueError, match="would leave its cell"):
        render(**good, offset=torch.tensor([[[0.0, 0.0], [0.15, 0.0]]]))
    with pytest.raises(ValueError, match="resolution must be at least 24"):
        render(**good, resolution=16)


# --- any world ---------------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(grid=st.integers(1, 5), extra_pixels=st.integers(0, 30), choice=st.data())
def test_any_world_draws_consistent_scenes(grid, extra_pixels, choice):
    max_objects = choice.draw(
        st.integers(1, min(grid * grid, 4)), label="max_objects"
    )
    min_objects = choice.draw(st.integers(1, max_objects), label="min_objects")
    resolution = min_resolution(grid) + extra_pixels
    world = ShapesWorld(
        resolution=resolution,
        grid=grid,
        min_objects=min_objects,
        max_objects=max_objects,
    )
    scenes = world.scenes(range(100, 116))
    assert scenes.images.shape == (16, 3, resolution, resolution)
    assert scenes.masks.shape == (16, max_objects, resolution, resolution)
    assert scenes.shape.shape == scenes.cell.shape == (16, max_objects)
    assert ((scenes.count >= min_objects) & (scenes.count <= max_objects)).all()
    assert scenes.masks.min() >= 0 and scenes.masks.sum(1).max() <= 1 + 1e-6
    assert torch.allclose(
        scenes.images,
        torch.einsum(
            "nkhw,nkc->nchw", scenes.masks, RGB[scenes.colour.clamp(min=0)]
        ),
    )
    side = resolution / grid
    for i in range(16):
        assert (
            len(set(scenes.cell[i, : scenes.count[i]].tolist())) == scenes.count[i]
        )
        for k in range(scenes.count[i]):
            half = SIZE_FRACTION[world.sizes[scenes.size[i, k]]] * side / 2
            area = analytic_area(world.shapes[scenes.shape[i, k]], half)
            # at 4 px the corners weigh in
            assert scenes.masks[i, k].sum() == pytest.approx(area, rel=0.15)
    cells = scenes.cell_targets()["shape"]
    assert (
        cells.shape == (16, grid * grid)
        and ((cells < len(SHAPES)).sum(1) == scenes.count).all()
    )


# --- the photo ---------------------------------------------------------------------------------------


def test_grace_hopper_is_a_colour_photo_in_chw_layout():
    from matplotlib import cbook
    from PIL import Image

    photo = grace_hopper()
    with (
        cbook.get_sample_data("grace_hopper.jpg") as file,
        Image.open(file) as image,
    ):
        width, height = image.size
        pixel = image.convert("RGB").getpixel((200, 100))  # (x, y)
    assert photo.shape == (3, height, width) and photo.dtype == torch.float32
    assert photo.min() >= 0 and photo.max() <= 1 and photo.max() > 0.9
    assert photo[:, 100, 200].tolist() == pytest.approx(
        [value / 255 for value in pixel]
    )
    assert (photo[0] - photo[2]).abs().mean() > 0.05  # not grey


# --- torchvision adapters (tiny files written here; the network is never touched) ---------------------


@pytest.mark.parametrize(
    "name, folder", [("mnist", "MNIST"), ("Fashion-MNIST", "FashionMNIST")]
)
def test_load_torchvision_reads_idx_files(tmp_path, name, folder, write_idx):
    pytest.importorskip("torchvision")
    rng = np.random.default_rng(0)
    arrays = {}
    for prefix, n in (("train", 5), ("t10k", 3)):
        arrays[prefix] = (
            rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
            rng.integers(0, 10, n, dtype=np.uint8),
        )
        write_idx(
            tmp_path / folder / "raw" / f"{prefix}-images-idx3-ubyte",
            arrays[prefix][0],
        )
        write_idx(
            tmp_path / folder / "raw" / f"{prefix}-labels-idx1-ubyte",
            arrays[prefix][1],
        )
    for train, prefix in ((True, "train"), (False, "t10k")):
        # files present: no download
        images, labels = load_torchvision(name, tmp_path, train=train)
        pixels, digits = arrays[prefix]
        assert (
            images.shape == (len(pixels), 1, 28, 28)
            and images.dtype == torch.float32
        )
        assert torch.equal(images[:, 0], torch.from_numpy(pixels).float() / 255)
        assert labels.dtype == torch.long and labels.tolist() == digits.tolist()


def test_load_torchvision_reads_cifar10_batches(tmp_path, monkeypatch):
    torchvision = pytest.importorskip("torchvision")
    # torchvision checks the md5 sums of the real CIFAR-10 files; our tiny files only need to exist.
    monkeypatch.setattr(
        torchvision.datasets.cifar,
        "check_integrity",
        lambda path, md5=None: os.path.isfile(path),
    )
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batches[name] = {
            "data": rng.integers(0, 256, (2, 3 * 32 * 32), dtype=np.uint8),
            "labels": [1, 7],
        }
        (folder / name).write_bytes(pickle.dumps(batches[name]))
    (folder / "batches.meta").write_bytes(
        pickle.dumps({"label_names": ["airplane", "automobile"]})
    )
    images, labels = load_torchvision("CIFAR10", tmp_path, train=True)
    rows = np.concatenate([batches[f"data_batch_{i}"]["data"] for i in range(1, 6)])
    assert images.shape == (10, 3, 32, 32)
    # channel planes R, G, B
    assert torch.equal(
        images, torch.from_numpy(rows.reshape(10, 3, 32, 32)).float() / 255
    )
    assert labels.tolist() == [1, 7] * 5
    test_images, _ = load_torchvision("cifar10", tmp_path, train=False)
    assert torch.equal(
        test_images.flatten(1),
        torch.from_numpy(batches["test_batch"]["data"]).float() / 255,
    )


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST/raw"), ("fashion-mnist", "FashionMNIST/raw"),
                                          ("cifar10", "cifar-10-batches-py")])  # fmt: skip
def test_load_torchvision_offline_says_what_to_do(
    tmp_path, monkeypatch, name, folder
):
    torchvision = pytest.importorskip("torchvision")

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network in the tests")

    monkeypatch.setattr(
        torchvision.datasets.mnist, "download_and_extract_archive", no_network
    )
    monkeypatch.setattr(
        torchvision.datasets.cifar, "download_and_extract_archive", no_network
    )
    with pytest.raises(RuntimeError, match="seems to be offline") as error:
        load_torchvision(name, tmp_path, download=True)
    assert str(tmp_path / folder) in str(error.value) and "Colab" in str(
        error.value
    )
    with pytest.raises(RuntimeError, match="download=False"):
        load_torchvision(name, tmp_path, download=False)


def test_load_torchvision_rejects_unknown_names(tmp_path):
    with pytest.raises(
        ValueError,
        match="name .any case. must be one of 'mnist', 'fashion-mnist', 'cifar10', got str 'svhn'",
    ):
        load_torchvision("svhn", tmp_path)


# --- the scenes the chapters depend on, and bad input at every entry point --------------------


def test_the_default_world_draws_the_scenes_the_chapters_were_written_with():
    """Labels, captions and pixel sums of the first validation scenes, as every chapter drew them:
    a change of the hash, the geometry or the compositing fails here."""
    scenes = ShapesWorld().scenes(4, "val")
    assert scenes.captions == [
        "a large blue cross to the left of a small red triangle",
        "a large magenta square at the left",
        "a small blue diamond to the right of a small yellow cross",
        "a large green cross below a small magenta square",
    ]
    assert scenes.cell.tolist() == [[3, 2], [3, -1], [5, 4], [3, 0]]
    assert scenes.count.tolist() == [2, 1, 2, 2]
    assert scenes.offset[0, 0].tolist() == pytest.approx(
        [0.0656665, -7.7176e-05], abs=1e-7
    )
    sums = scenes.images.double().sum((1, 2, 3)).tolist()
    assert sums == pytest.approx(
        [55.431595, 146.591942, 45.705446, 97.811762], abs=1e-4
    )
    masks = scenes.masks.double().sum((2, 3)).flatten().tolist()
    assert masks == pytest.approx(
        [
            40.668417,
            14.763179,
            73.295971,
            0.0,
            14.160719,
            15.772364,
            40.711474,
            28.550144,
        ],
        abs=1e-4,
    )


def good_labels() -> dict:
    return dict(shape=torch.tensor([[0, 1]]), colour=torch.tensor([[0, 1]]), size=torch.tensor([[0, 1]]),
                cell=torch.tensor([[0, 1]]))  # fmt: skip


POINTS = dict(
    x=torch.zeros(1, 1, 4), y=torch.zeros(1, 4, 1), half=torch.ones(1, 1, 1)
)
WORLD = ShapesWorld()


@pytest.mark.parametrize(
    "call, error",
    [
        (
            lambda: caption("a small red circle"),
            "objects must be a sequence of SceneObject, got str",
        ),
        (
            lambda: caption([("circle", "red", "small", 0)]),
            r"every object must be a SceneObject\(shape, colour, size, cell\), got tuple",
        ),
        (
            lambda: caption([SceneObject("circle", "red", "small", 1.0)]),
            "cell must be an int, got float 1.0",
        ),
        (
            lambda: caption([SceneObject("circle", "red", "small", 0)], grid=3.0),
            "grid must be an int, got float 3.0",
        ),
        (lambda: cell_names(True), "grid must be an int, got bool True"),
        (lambda: cell_names("3"), "grid must be an int, got str '3'"),
        (lambda: min_resolution(3.5), "grid must be an int, got float 3.5"),
        (
            lambda: min_resolution(3, "small"),
            "sizes must be a sequence of names like .'small', 'large'., got str 'small'",
        ),
        (lambda: min_resolution(3, None), "sizes must be a sequence of names"),
        (
            lambda: ShapesWorld(holdout=None),
            r"holdout must be a sequence of \(colour, shape\) pairs.*got NoneType None",
        ),
        (
            lambda: ShapesWorld(holdout=("yellow", "triangle")),
            "got the entry 'yellow'",
        ),
        (
            lambda: ShapesWorld(jitter="0.1"),
            "jitter must be a number, got str '0.1'",
        ),
        (lambda: ShapesWorld(seed=1.0), "seed must be an int, got float 1.0"),
        (lambda: ShapesWorld(shapes=None), "shapes must be a sequence of names"),
        (
            lambda: WORLD.scenes(None),
            "indices must be an int, a range, a sequence of ints or an integer tensor, got NoneType",
        ),
        (
            lambda: WORLD.scenes(2.0),
            "indices must be an int, a range, .*got float 2.0",
        ),
        (
            lambda: WORLD.scenes(True),
            "indices must be an int, a range, .*got bool True",
        ),
        # a split is a name: ValueError below
        (lambda: WORLD.sample_labels(2, split=1), None),
        (
            lambda: WORLD.scenes(2, device=3),
            "device must be a device name or torch.device, got int 3",
        ),
        (
            lambda: WORLD.captions("labels"),
            r"labels must be SceneLabels \(from sample_labels\), got str",
        ),
        (
            lambda: WORLD.scenes(2).to(0),
            "device must be a device name or torch.device, got int 0",
        ),
        (
            lambda: WORLD.scenes(2).cell_targets(grid="3"),
            "grid must be an int, got str '3'",
        ),
        (
            lambda: render(**good_labels(), offset=[[[0.0, 0.0]]]),
            "offset must be a torch.Tensor",
        ),
        (
            lambda: render(
                **good_labels(), offset=torch.zeros(1, 2, 2, dtype=torch.long)
            ),
            "offset must be a floating-point tensor",
        ),
        (
            lambda: render(**{**good_labels(), "cell": [[0, 1]]}),
            r"cell must be a torch.Tensor \(N, K\), got list",
        ),
        (
            lambda: render(**good_labels(), resolution=32.0),
            "resolution must be an int, got float 32.0",
        ),
        (
            lambda: render(**good_labels(), shapes="circle"),
            "shapes must be a sequence of names",
        ),
        (
            lambda: sdf_circle(**{**POINTS, "x": "x"}),
            "x must be a torch.Tensor, got str 'x'",
        ),
        (
            lambda: sdf_square(**{**POINTS, "y": None}),
            "y must be a torch.Tensor, got NoneType None",
        ),
        (
            lambda: sdf_triangle(**{**POINTS, "half": 1.0}),
            "half must be a torch.Tensor, got float 1.0",
        ),
        (
            lambda: sdf_diamond(
                **{**POINTS, "x": torch.zeros(1, 1, 4, dtype=torch.long)}
            ),
            "x must be a floating-point tensor, got torch.int64",
        ),
        (
            lambda: sdf_cross(**{**POINTS, "half": [[[1.0]]]}),
            "half must be a torch.Tensor, got list",
        ),
        (lambda: coverage([0.5]), "sdf must be a torch.Tensor, got list"),
    ],
)
def test_wrong_types_get_a_type_error_that_names_the_argument(call, error):
    if error is None:
        with pytest.raises(
            ValueError,
            match="split must be one of 'train', 'val', 'test', 'holdout', got int 1",
        ):
            call()
        return
    with pytest.raises(TypeError, match=error):
        call()


def fails_fast(call, seconds: float = 2.0) -> Exception:
    """The exception `call` raises, which must come within `seconds` (a hang fails the test)."""
    import signal

    def too_slow(*_):
        raise AssertionError(
            f"no error within {seconds} s: the size is not checked before the work"
        )

    previous = signal.signal(signal.SIGALRM, too_slow)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        with pytest.raises(ValueError) as info:
            call()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return info.value


@pytest.mark.parametrize(
    "call, error",
    [
        (
            lambda: cell_names(10**9),
            "grid must be an int <= 256, got 1,000,000,000",
        ),
        (
            lambda: caption([SceneObject("circle", "red", "small", 0)], grid=10**9),
            "grid must be an int <= 256",
        ),
        (
            lambda: render(**good_labels(), resolution=10**9),
            "resolution must be an int <= 2,048",
        ),
        (lambda: WORLD.scenes(10**9), "indices must be an int <= 1,000,000"),
        (
            lambda: WORLD.scenes(range(10**9)),
            "the length of indices must be an int <= 1,000,000",
        ),
        (
            lambda: WORLD.sample_labels([2**63]),
            "every entry of indices must be an int <= 9,223,372,036,854,775,807",
        ),
    ],
)
def test_huge_sizes_fail_fast(call, error):
    assert re.search(error, str(fails_fast(call)))


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda: cell_names(0), "grid must be an int >= 1, got 0"),
        (lambda: min_resolution(-1), "grid must be an int >= 1, got -1"),
        (
            lambda: min_resolution(3, []),
            "sizes must hold at least one of small, large, got none",
        ),
        (
            lambda: min_resolution(3, ["tiny"]),
            "every entry of sizes must be one of 'small', 'large', got str 'tiny'",
        ),
        (
            lambda: caption([SceneObject("circle", "red", "small", -1)]),
            "cell -1 is outside a 3x3 grid",
        ),
        (
            lambda: render(
                **good_labels(),
                offset=torch.tensor([[[float("nan"), 0.0], [0.0, 0.0]]]),
            ),
            "offset holds 1 NaN or infinite values",
        ),
        (
            lambda: render(
                **good_labels(),
                offset=torch.tensor([[[0.0, float("inf")], [0.0, 0.0]]]),
            ),
            "offset holds 1 NaN or infinite values",
        ),
        (
            lambda: render(**good_labels(), offset=torch.zeros(1, 2)),
            r"offset must be a 3-d tensor \(N, K, 2\), got shape \(1, 2\)",
        ),
        (
            lambda: render(**good_labels(), offset=torch.zeros(1, 3, 2)),
            r"offset must have shape \(1, 2, 2\), got \(1, 3, 2\)",
        ),
        (
            lambda: render(**{**good_labels(), "size": torch.tensor([[0, 1, 1]])}),
            r"size must have the shape of `shape`, \(1, 2\), got \(1, 3\)",
        ),
        (
            lambda: render(**{**good_labels(), "shape": torch.tensor([0, 1])}),
            r"shape must be a 2-d tensor \(N, K\), got shape \(2,\)",
        ),
        (
            lambda: WORLD.scenes(2, device="nonsense"),
            "device must name a torch device",
        ),
        (lambda: WORLD.scenes(2, split=""), "split must be one of"),
        (
            lambda: WORLD.scenes(torch.tensor([[0, 1]])),
            r"indices must be a 1-d tensor \(N,\), got shape \(1, 2\)",
        ),
        (
            lambda: ShapesWorld(jitter=float("inf")),
            "jitter must be a finite number, got inf",
        ),
        (
            lambda: ShapesWorld(max_objects=0),
            "max_objects must be an int >= 1, got 0",
        ),
    ],
)
def test_bad_values_get_a_value_error_that_says_what_is_right(call, error):
    with pytest.raises(ValueError, match=error):
        call()


def test_numpy_integers_are_ints_and_names_may_be_lists():
    world = ShapesWorld(
        resolution=np.int64(32),
        grid=np.int32(3),
        seed=np.int64(5),
        colours=["red", "blue"],
    )
    assert world.colours == ("red", "blue")
    assert_same_scenes(
        world.scenes(np.int64(3)),
        ShapesWorld(colours=("red", "blue"), seed=5).scenes(3),
    )
    assert cell_names(np.int64(2)) == cell_names(2)


def test_nan_offsets_were_a_silent_nan_image():
    """The bug the fuzz found: NaN passed the 'object stays in its cell' check and painted NaN pixels."""
    offset = torch.tensor([[[float("nan"), 0.0], [0.0, 0.0]]])
    with pytest.raises(ValueError, match="NaN"):
        render(**good_labels(), offset=offset)
    images, _ = render(**good_labels(), offset=torch.zeros(1, 2, 2))
    assert torch.isfinite(images).all()


@pytest.mark.parametrize(
    "kwargs, error",
    [
        (dict(name=None), "name must be str, got NoneType None"),
        (dict(name=3), "name must be str, got int 3"),
        (
            dict(root=None),
            r"root must be a file path \(str or Path\), got NoneType None",
        ),
        (dict(root=42), r"root must be a file path \(str or Path\), got int 42"),
        (dict(train="no"), "train must be True or False, got str 'no'"),
        (dict(download=1), "download must be True or False, got int 1"),
    ],
)
def test_load_torchvision_rejects_wrong_types_before_any_download(
    tmp_path, kwargs, error
):
    arguments = (
        dict(name="mnist", root=tmp_path, train=True, download=False) | kwargs
    )
    with pytest.raises(TypeError, match=error):
        load_torchvision(**arguments)
    with pytest.raises(
        ValueError, match="root must be a file path, got an empty string"
    ):
        load_torchvision("mnist", "", download=False)
