"""Captions in several phrasings and two languages, and hard negatives, checked by parsing every caption
back into facts with regular expressions written here from the vocabulary alone: each phrasing must state
exactly the scene's facts, each negative exactly the changed scene's."""

import re
from collections import Counter

import pytest
import torch

from minigen.data import captions
from minigen.data.shapes import SceneObject, ShapesWorld

WORLD = ShapesWorld(max_objects=3)
SHAPES_ZH = {
    "圆形": "circle",
    "正方形": "square",
    "三角形": "triangle",
    "菱形": "diamond",
    "十字形": "cross",
}
COLOURS_ZH = {
    "红色": "red",
    "绿色": "green",
    "蓝色": "blue",
    "黄色": "yellow",
    "品红色": "magenta",
    "青色": "cyan",
}
SIZES_ZH = {"小": "small", "大": "large"}
CELLS_EN = [
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
CELLS_ZH = [
    "左上角",
    "上方中间",
    "右上角",
    "左侧中间",
    "正中间",
    "右侧中间",
    "左下角",
    "下方中间",
    "右下角",
]
RELATIONS_ZH = {
    "左边": "to the left of",
    "右边": "to the right of",
    "上方": "above",
    "下方": "below",
}


def alternatives(words):
    return (
        "(" + "|".join(sorted(map(re.escape, words), key=len, reverse=True)) + ")"
    )


OBJECT_EN = f"a {alternatives(['small', 'large'])} {alternatives(WORLD.colours)} {alternatives(WORLD.shapes)}"
OBJECT_ZH = f"一个{alternatives(SIZES_ZH)}的{alternatives(COLOURS_ZH)}{alternatives(SHAPES_ZH)}"


INVERSE = {
    "to the left of": "to the right of",
    "to the right of": "to the left of",
    "above": "below",
    "below": "above",
}


def relation(a, b):
    """Where cell a lies seen from cell b on a 3x3 grid: columns first, then rows."""
    (row_a, column_a), (row_b, column_b) = divmod(a, 3), divmod(b, 3)
    if column_a != column_b:
        return "to the left of" if column_a < column_b else "to the right of"
    return "above" if row_a < row_b else "below"


def placed_facts(placed):
    """What a caption of objects (size, colour, shape, cell) says: each object in its cell, or for two
    objects what each is and where it lies from the other."""
    if len(placed) == 2:
        (*a, cell_a), (*b, cell_b) = placed
        return {
            (tuple(a), relation(cell_a, cell_b), tuple(b)),
            (tuple(b), relation(cell_b, cell_a), tuple(a)),
        }
    return set(placed)


def related_facts(a, rel, b):
    return {(tuple(a), rel, tuple(b)), (tuple(b), INVERSE[rel], tuple(a))}


def as_facts(objects):
    return placed_facts([(o.size, o.colour, o.shape, o.cell) for o in objects])


def parse_en(text):
    two = re.fullmatch(f"{OBJECT_EN} {alternatives(INVERSE)} {OBJECT_EN}", text)
    if two:
        return related_facts(two.groups()[:3], two.group(4), two.groups()[4:])
    body = text.removeprefix("there is ")
    at = "at the " + alternatives(CELLS_EN)
    position = (
        "in the "
        + alternatives(c.replace(" ", "-") for c in CELLS_EN)
        + " position"
    )
    first = re.fullmatch(
        f"{at}, {OBJECT_EN}", body
    )  # "at the top left, a small red circle"
    if first:
        return placed_facts([(*first.groups()[1:], CELLS_EN.index(first.group(1)))])
    placed = []
    for part in re.split(r", | and ", body):
        match = re.fullmatch(f"{OBJECT_EN} {at}", part) or re.fullmatch(
            f"{OBJECT_EN} {position}", part
        )
        assert match, f"cannot parse {part!r} in {text!r}"
        placed.append(
            (*match.groups()[:3], CELLS_EN.index(match.group(4).replace("-", " ")))
        )
    return placed_facts(placed)


def read_zh(size, colour, shape):
    return SIZES_ZH[size], COLOURS_ZH[colour], SHAPES_ZH[shape]


def parse_zh(text):
    two = re.fullmatch(
        f"{OBJECT_ZH}在{OBJECT_ZH}的{alternatives(RELATIONS_ZH)}", text
    )
    if two:
        groups = two.groups()
        return related_facts(
            read_zh(*groups[:3]), RELATIONS_ZH[groups[6]], read_zh(*groups[3:6])
        )
    placed = []
    for part in text.split("，"):
        cell_first = re.fullmatch(f"{alternatives(CELLS_ZH)}有{OBJECT_ZH}", part)
        object_first = re.fullmatch(f"{OBJECT_ZH}在{alternatives(CELLS_ZH)}", part)
        assert cell_first or object_first, f"cannot parse {part!r} in {text!r}"
        if cell_first:
            cell, *attributes = cell_first.groups()
        else:
            *attributes, cell = object_first.groups()
        placed.append((*read_zh(*attributes), CELLS_ZH.index(cell)))
    return placed_facts(placed)


PARSERS = {"en": parse_en, "zh": parse_zh}
SCENES = captions.scene_objects(WORLD.sample_labels(300, "train"), WORLD)


@pytest.mark.parametrize("language", captions.LANGUAGES)
def test_every_phrasing_states_exactly_the_facts_of_the_scene(language):
    counts = Counter(len(objects) for objects in SCENES)
    assert set(counts) == {1, 2, 3}  # every branch of the writers is exercised
    texts = set()
    for objects in SCENES:
        for phrasing in range(captions.phrasing_count(len(objects), language)):
            text = captions.describe_scene(objects, 3, language, phrasing)
            assert PARSERS[language](text) == as_facts(objects), (
                objects,
                phrasing,
                text,
            )
            texts.add(text)
    phrasings = sum(
        captions.phrasing_count(len(objects), language) for objects in SCENES
    )
    assert len(texts) > 0.9 * phrasings  # the phrasings differ as text


def test_phrasing_zero_in_english_is_the_worlds_own_caption():
    labels = WORLD.sample_labels(200, "test")
    assert captions.captions(WORLD, labels) == WORLD.captions(labels)


def test_other_grids_name_rows_and_columns():
    objects = [
        SceneObject("circle", "red", "small", 5)
    ]  # row 2, column 2 of a 4x4 grid
    assert (
        captions.describe_scene(objects, 4, "zh", 0)
        == "第2行第2列有一个小的红色圆形"
    )
    assert (
        captions.describe_scene(objects, 4, "en", 2)
        == "a small red circle in row 2, column 2"
    )


def test_draws_are_a_pure_function_of_seed_split_and_index_and_spread_over_the_phrasings():
    draws = WORLD.phrasing_draws(range(3000), "train")
    assert torch.equal(
        draws[100:200], WORLD.phrasing_draws(range(100, 200), "train")
    )
    assert not torch.equal(draws[:100], WORLD.phrasing_draws(100, "test"))
    other_seed = ShapesWorld(max_objects=3, seed=1)
    assert not torch.equal(draws[:100], other_seed.phrasing_draws(100, "train"))
    labels = WORLD.sample_labels(3000, "train")
    written = captions.captions(WORLD, labels, "en", draws)
    one_object = [
        text for text, count in zip(written, labels.count.tolist()) if count == 1
    ]
    kinds = Counter(
        "there"
        if t.startswith("there is")
        else "at"
        if t.startswith("at ")
        else "position"
        if "position" in t
        else "plain"
        for t in one_object
    )
    n = len(one_object)
    for kind in (
        "plain",
        "at",
        "position",
        "there",
    ):  # four phrasings, a quarter each
        assert abs(kinds[kind] - n / 4) < 4 * (n * 3 / 16) ** 0.5, kinds


def test_swap_colours_keeps_every_colour_but_changes_who_has_it():
    for objects in SCENES:
        if len(objects) < 2 or objects[0].colour == objects[1].colour:
            with pytest.raises(ValueError, match="two objects|changes nothing"):
                captions.negative(objects, "swap_colours")
            continue
        changed = captions.negative(objects, "swap_colours")
        assert Counter(o.colour for o in changed) == Counter(
            o.colour for o in objects
        )
        assert [o[:1] + o[2:] for o in changed] == [o[:1] + o[2:] for o in objects]
        assert as_facts(changed) != as_facts(objects)


def test_swap_places_reverses_the_relation_of_two_objects():
    pairs = [
        objects
        for objects in SCENES
        if len(objects) == 2 and objects[0][:3] != objects[1][:3]
    ]
    assert len(pairs) > 20
    for objects in pairs:
        changed = captions.negative(objects, "swap_places")
        a, b = objects
        assert (
            relation(changed[0].cell, changed[1].cell)
            == relation(b.cell, a.cell)
            != relation(a.cell, b.cell)
        )
        for language in captions.LANGUAGES:
            text = captions.describe_scene(changed, 3, language, 0)
            assert PARSERS[language](text) == as_facts(changed) != as_facts(objects)
    alike = [
        SceneObject("circle", "red", "small", 0),
        SceneObject("circle", "red", "small", 4),
    ]
    with pytest.raises(ValueError, match="changes nothing"):
        captions.negative(alike, "swap_places")


def test_change_attribute_changes_one_attribute_of_the_first_object_to_each_other_value():
    objects = [
        SceneObject("circle", "red", "small", 0),
        SceneObject("square", "blue", "large", 4),
    ]
    seen = {"shape": set(), "colour": set(), "size": set()}
    for choice in range(60):
        changed = captions.negative(objects, "change_attribute", choice)
        assert changed[1:] == objects[1:] and changed[0].cell == 0
        differ = [
            f for f in seen if getattr(changed[0], f) != getattr(objects[0], f)
        ]
        assert len(differ) == 1
        seen[differ[0]].add(getattr(changed[0], differ[0]))
    assert seen == {
        "shape": set(WORLD.shapes) - {"circle"},
        "colour": set(WORLD.colours) - {"red"},
        "size": {"large"},
    }


def test_negative_captions_follow_the_scene_phrasing_and_mark_scenes_without_one():
    labels = WORLD.sample_labels(60, "val")
    draws = WORLD.phrasing_draws(60, "val")
    positives = captions.captions(WORLD, labels, "zh", draws)
    negatives = captions.negative_captions(
        WORLD, labels, "swap_colours", "zh", draws
    )
    scenes = captions.scene_objects(labels, WORLD)
    for objects, positive, negative in zip(scenes, positives, negatives):
        if len(objects) < 2 or objects[0].colour == objects[1].colour:
            assert negative is None
        else:
            assert negative != positive and sorted(negative) == sorted(
                positive
            )  # same characters


def test_bad_input_is_refused_with_a_reason():
    objects = [SceneObject("circle", "red", "small", 0)]
    with pytest.raises(ValueError, match="language must be one of 'en', 'zh'"):
        captions.describe_scene(objects, language="fr")
    with pytest.raises(ValueError, match="phrasing must be"):
        captions.describe_scene(objects, phrasing=4)
    with pytest.raises(ValueError, match="kind must be one of"):
        captions.negative(objects, "shuffle")
    with pytest.raises(ValueError, match="needs two objects, got 1"):
        captions.negative(objects, "swap_places")
    labels = WORLD.sample_labels(4, "train")
    with pytest.raises(ValueError, match=r"draws must be a \(4,\) tensor"):
        captions.captions(WORLD, labels, "en", torch.zeros(3))
    with pytest.raises(ValueError, match=r"draws must lie in \[0, 1\)"):
        captions.captions(WORLD, labels, "en", torch.ones(4))
    with pytest.raises(TypeError, match="SceneLabels"):
        captions.captions(WORLD, "labels")
    with pytest.raises(ValueError, match="split must be one of"):
        WORLD.phrasing_draws(4, "dev")


def test_a_caption_is_true_of_exactly_the_scenes_that_hold_its_meaning():
    for objects in SCENES:
        held = captions.meanings_held(objects)
        for phrasing in range(captions.phrasing_count(len(objects), "en")):
            assert captions.meaning(objects, phrasing) in held
        if len(objects) == 2 and objects[0].colour != objects[1].colour:
            swapped = captions.negative(objects, "swap_colours")
            assert held.isdisjoint(captions.meanings_held(swapped))
    left = [
        SceneObject("circle", "red", "small", 0),
        SceneObject("square", "blue", "large", 1),
    ]
    shifted = [
        left[0]._replace(cell=3),
        left[1]._replace(cell=5),
    ]  # the same relation, other cells
    assert captions.meaning(shifted, 0) in captions.meanings_held(
        left
    )  # "... to the left of ..." is true
    assert captions.meaning(shifted, 2) not in captions.meanings_held(
        left
    )  # its cells are not
    assert captions.meaning(
        captions.negative(left, "swap_places"), 1
    ) not in captions.meanings_held(left)


def test_one_language_per_scene_and_the_meanings_of_the_captions_written():
    labels, draws = (
        WORLD.sample_labels(80, "train"),
        WORLD.phrasing_draws(80, "train"),
    )
    mixed = ["en" if i % 3 else "zh" for i in range(80)]
    written = captions.captions(WORLD, labels, mixed, draws)
    by_language = {
        lang: captions.captions(WORLD, labels, lang, draws) for lang in ("en", "zh")
    }
    assert written == [by_language[lang][i] for i, lang in enumerate(mixed)]
    meanings = captions.caption_meanings(WORLD, labels, mixed, draws)
    scenes = captions.scene_objects(labels, WORLD)
    for text, lang, held, meant in zip(
        written, mixed, map(captions.meanings_held, scenes), meanings
    ):
        assert meant in held
        relational = re.search(
            r" (to the (left|right) of|above|below) |的(左边|右边|上方|下方)$", text
        )
        kind = "relation" if relational else "cells"
        assert meant[0] == kind, text
    with pytest.raises(
        ValueError, match=r"language must be one str or one per scene \(80\), got 2"
    ):
        captions.captions(WORLD, labels, ["en", "zh"])


@pytest.mark.parametrize("language", captions.LANGUAGES)
def test_swapped_places_keep_the_words_of_the_caption_in_another_order(language):
    labels, draws = (
        WORLD.sample_labels(200, "test"),
        WORLD.phrasing_draws(200, "test"),
    )
    positives = captions.captions(WORLD, labels, language, draws)
    negatives = captions.negative_captions(
        WORLD, labels, "swap_places", language, draws
    )
    scenes = captions.scene_objects(labels, WORLD)
    checked = 0
    for objects, positive, negative in zip(scenes, positives, negatives):
        if negative is None:
            continue
        assert negative != positive
        if (
            len(objects) == 2
        ):  # the same words (characters in Chinese), another order
            split = str.split if language == "en" else list
            assert sorted(split(negative)) == sorted(split(positive)), (
                positive,
                negative,
            )
            checked += 1
    assert checked > 30
