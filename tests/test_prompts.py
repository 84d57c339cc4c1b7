"""Prompt scoring against the scenes' own labels: an oracle that reads the truth scores every
prompt right; a planted change (another cell, swapped colours, an extra object, objects moved
across) is caught by exactly the scores it should change."""

import pytest
import torch

from minigen.data.shapes import ShapesWorld, relation
from minigen.eval import prompts
from minigen.models.oracle import Oracle

WORLD = ShapesWorld(max_objects=2)


@pytest.fixture
def read_truth(monkeypatch):
    """Make the oracle read exactly the cells passed to it (images are ignored)."""
    truth = {}

    def fake_parse(judge, images):
        return {name: value.clone() for name, value in truth.items()}

    monkeypatch.setattr(prompts, "parse", fake_parse)
    return truth


def scenes_of(labels):
    return WORLD.scenes(torch.tensor(labels))


def test_prompt_labels_are_the_first_scenes_with_that_many_objects():
    labels = prompts.prompt_labels(WORLD, 20, objects=1, split="test")
    everything = WORLD.sample_labels(200, "test")
    first = torch.nonzero(everything.count == 1)[:20, 0]
    assert (labels.count == 1).all() and len(labels.count) == 20
    assert torch.equal(labels.shape, everything.shape[first])
    assert torch.equal(labels.cell, everything.cell[first])
    held_out = ShapesWorld(holdout=(("yellow", "triangle"),))
    two = prompts.prompt_labels(held_out, 7, objects=2, split="holdout")
    assert (two.count == 2).all() and (two.shape[:, 0] == 2).all()  # triangles
    with pytest.raises(ValueError, match="1 or 2"):
        prompts.prompt_labels(WORLD, 5, objects=3)


def targets(labels):
    """The per-cell truth of the scenes of `labels`, as parse returns it."""
    scenes = WORLD.scenes(torch.arange(len(labels.count)))
    for name in ("shape", "colour", "size", "cell", "offset", "count"):
        setattr(scenes, name, getattr(labels, name))
    return scenes.cell_targets()


def test_the_truth_scores_every_one_object_prompt_right_and_changes_are_caught(
    read_truth,
):
    labels = prompts.prompt_labels(WORLD, 30, objects=1)
    judge = Oracle(WORLD)
    images = torch.zeros(30, 3, 32, 32)
    read_truth.update(targets(labels))
    hits = prompts.prompt_hits(judge, images, labels)
    assert all(hits[name].all() for name in prompts.ONE_OBJECT)
    # row 0 read one cell further on: only its cell (and all) fail
    moved = {name: value.clone() for name, value in targets(labels).items()}
    cell = labels.cell[0, 0].item()
    other = (cell + 1) % 9
    for name in moved:
        moved[name][0, other] = moved[name][0, cell]
        moved[name][0, cell] = len(WORLD.shapes) if name == "shape" else -1
    read_truth.update(moved)
    hits = prompts.prompt_hits(judge, images, labels)
    assert not hits["cell"][0] and not hits["all"][0]
    assert hits["shape"][0] and hits["colour"][0] and hits["size"][0]
    assert hits["all"][1:].all()
    # row 1 with a wrong colour, row 2 with an extra object
    wrong = {name: value.clone() for name, value in targets(labels).items()}
    wrong["colour"][1, labels.cell[1, 0]] = (labels.colour[1, 0] + 1) % 6
    spare = (labels.cell[2, 0].item() + 4) % 9
    wrong["shape"][2, spare], wrong["colour"][2, spare], wrong["size"][2, spare] = (
        0,
        0,
        0,
    )
    read_truth.update(wrong)
    hits = prompts.prompt_hits(judge, images, labels)
    assert not hits["colour"][1] and hits["shape"][1] and not hits["all"][1]
    assert not hits["all"][2]
    assert hits["all"][3:].all()


def test_two_object_prompts_catch_swapped_colours_and_relations(read_truth):
    labels = prompts.prompt_labels(WORLD, 40, objects=2)
    judge = Oracle(WORLD)
    images = torch.zeros(40, 3, 32, 32)
    truth = targets(labels)
    read_truth.update(truth)
    hits = prompts.prompt_hits(judge, images, labels)
    assert hits["both"].all() and hits["relation"].all()
    assert not hits["binding_error"].any()
    # swap the two objects' colours where they differ in shape and colour
    swapped = {name: value.clone() for name, value in truth.items()}
    differ = (labels.shape[:, 0] != labels.shape[:, 1]) & (
        labels.colour[:, 0] != labels.colour[:, 1]
    )
    rows = torch.nonzero(differ)[:, 0]
    for row in rows.tolist():
        a, b = labels.cell[row].tolist()
        swapped["colour"][row, a], swapped["colour"][row, b] = (
            labels.colour[row, 1],
            labels.colour[row, 0],
        )
    read_truth.update(swapped)
    hits = prompts.prompt_hits(judge, images, labels)
    assert hits["binding_error"][rows].all() and not hits["both"][rows].any()
    assert hits["binding_error"].sum() == len(rows) > 0
    # exchange the two objects' places: the relation is the opposite one
    exchanged = {name: value.clone() for name, value in truth.items()}
    for row in range(40):
        a, b = labels.cell[row].tolist()
        for name in exchanged:
            exchanged[name][row, a], exchanged[name][row, b] = (
                truth[name][row, b],
                truth[name][row, a],
            )
    read_truth.update(exchanged)
    hits = prompts.prompt_hits(judge, images, labels)
    assert hits["both"].all()  # the same objects, in each other's places
    same_pair = (labels.shape[:, 0] == labels.shape[:, 1]) & (
        labels.colour[:, 0] == labels.colour[:, 1]
    )
    expected = (
        torch.tensor(
            [
                relation(b, a, 3) == relation(a, b, 3)
                for a, b in labels.cell.tolist()
            ]
        )
        | same_pair
    )
    assert torch.equal(hits["relation"], expected)
    assert not expected.all()


def test_prompts_are_first_phrasing_captions_and_bad_input_is_refused():
    labels = prompts.prompt_labels(WORLD, 3, objects=1)
    texts = prompts.prompts(WORLD, labels, "en")
    assert all(text.startswith("a ") and " at the " in text for text in texts)
    assert all(
        "在" in text or "有" in text
        for text in prompts.prompts(WORLD, labels, "zh")
    )
    judge = Oracle(WORLD)
    with pytest.raises(ValueError, match="one prompt"):
        prompts.prompt_hits(judge, torch.zeros(2, 3, 32, 32), labels)
    mixed = WORLD.sample_labels(10)
    assert len(mixed.count.unique()) == 2
    with pytest.raises(ValueError, match="object counts"):
        prompts.prompt_hits(judge, torch.zeros(10, 3, 32, 32), mixed)


def test_score_prompts_feeds_the_prompts_in_batches_and_scores_the_images(
    read_truth,
):
    indices = prompts.prompt_indices(WORLD, 7, objects=1)
    labels = WORLD.sample_labels(indices, "test")
    assert torch.equal(prompts.prompt_labels(WORLD, 7, 1).cell, labels.cell)
    scenes = WORLD.scenes(indices, "test")
    read_truth.update(scenes.cell_targets())
    calls = []

    def generate(texts):
        calls.append(list(texts))
        start = sum(len(c) for c in calls[:-1])
        return scenes.images[start : start + len(texts)]

    hits, images = prompts.score_prompts(
        generate, Oracle(WORLD), WORLD, labels, "en", batch_size=3
    )
    assert [len(c) for c in calls] == [3, 3, 1]
    assert sum(calls, []) == prompts.prompts(WORLD, labels, "en")
    assert torch.equal(images, scenes.images) and hits["all"].all()
    with pytest.raises(TypeError, match="generate"):
        prompts.score_prompts("draw", Oracle(WORLD), WORLD, labels)


# ----------------------------------------------------------------------------------
# Editing problems: inpainting a cell


def test_cell_masks_cover_every_pixel_that_overlaps_the_cell():
    world = WORLD
    cells = torch.arange(world.grid**2)
    masks = prompts.cell_masks(cells, world)  # (9, 1, 32, 32)
    side = world.resolution / world.grid
    for cell in range(world.grid**2):
        row, column = divmod(cell, world.grid)
        for y in range(world.resolution):
            for x in range(world.resolution):
                inside = (
                    y + 1 > row * side
                    and y < (row + 1) * side
                    and x + 1 > column * side
                    and x < (column + 1) * side
                )
                assert masks[cell, 0, y, x] == inside
    assert (masks.sum(0) >= 1).all()  # every pixel lies in some cell


def test_inpainting_task_removes_the_second_object_under_its_mask():
    world = WORLD
    sources, masks, labels = prompts.inpainting_task(world, 12)
    full = world.scenes(prompts.prompt_indices(world, 12, 2), "test").images
    assert torch.equal(labels.count, torch.full((12,), 2))
    assert torch.equal(masks, prompts.cell_masks(labels.cell[:, 1], world))
    # the second object lies inside its mask: outside it, source and scene agree
    assert torch.allclose(sources * (1 - masks), full * (1 - masks), atol=1e-6)
    assert (sources * masks).sum() < (full * masks).sum()  # removed from the cell
    assert (full * masks).sum() > 0  # there was an object to remove


def test_score_inpainting_reads_inside_kept_and_psnr_outside(read_truth):
    sources, masks, labels = prompts.inpainting_task(WORLD, 20)
    full = WORLD.scenes(prompts.prompt_indices(WORLD, 20, 2), "test")
    read_truth.update(full.cell_targets())
    judge = Oracle(WORLD)
    score = prompts.score_inpainting(judge, full.images, sources, masks, labels)
    assert score["inside"].all() and score["kept"].all()
    assert torch.isinf(score["psnr outside"]).all()  # identical outside the mask
    rows = torch.arange(20)
    second, first = labels.cell[:, 1], labels.cell[:, 0]
    read_truth["shape"][rows[:5], second[:5]] = len(WORLD.shapes)  # nothing drawn
    colours = read_truth["colour"]
    colours[rows[5:10], first[5:10]] = (colours[rows[5:10], first[5:10]] + 1) % 6
    score = prompts.score_inpainting(judge, full.images, sources, masks, labels)
    assert score["inside"].tolist() == [False] * 5 + [True] * 15
    assert score["kept"].tolist() == [True] * 5 + [False] * 5 + [True] * 10
    noisy = (sources + 0.1 * (1 - masks)).clamp(0, 1)
    got = prompts.score_inpainting(judge, noisy, sources, masks, labels)
    outside = 1 - masks
    error = ((noisy - sources) ** 2 * outside).sum((1, 2, 3))
    mse = error / (3 * outside.sum((1, 2, 3)))
    torch.testing.assert_close(got["psnr outside"], 10 * torch.log10(1 / mse))


def test_object_read_finds_each_object_in_its_cell_whatever_else_is_there(
    read_truth,
):
    full = WORLD.scenes(prompts.prompt_indices(WORLD, 10, 2), "test")
    labels = WORLD.sample_labels(prompts.prompt_indices(WORLD, 10, 2), "test")
    read_truth.update(full.cell_targets())
    judge = Oracle(WORLD)
    for slot in (0, 1):
        assert prompts.object_read(judge, full.images, labels, slot).all()
    read_truth["size"][torch.arange(3), labels.cell[:3, 1]] += 1  # wrong size
    found = prompts.object_read(judge, full.images, labels, 1)
    assert found.tolist() == [False] * 3 + [True] * 7
    assert prompts.object_read(judge, full.images, labels, 0).all()
    with pytest.raises(ValueError):
        prompts.object_read(judge, full.images, labels, 2)  # two slots only
