"""Captions of shapes-world scenes in several phrasings, in English and in Chinese,
and hard negatives: the text side of CLIP (chapter 6) and of text to image
(chapters 7-8).

- Phrasings: one scene has several captions (word order, "at the top left" or "in
  the top-left position", a relation between two objects or each object's cell), so
  that a text encoder learns what a caption means rather than one template.
  Phrasing 0 is the world's own caption (`shapes.caption`).
- Chinese captions written from the same labels ("左上角有一个小的红色圆形"), so
  that one bilingual model serves both languages.
- Hard negatives: the caption of a nearly identical scene, with the colours of two
  objects swapped, their places swapped (for two objects: the relation reversed), or
  one attribute changed. These probe whether a model binds attributes to objects
  (Yuksekgonul et al., "When and why vision-language models behave like
  bags-of-words, and what to do about it", ICLR 2023, whose NegCLIP trains on such
  negatives).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from minigen.core.validators import (
    check_choice,
    check_instance,
    check_int,
    describe,
)
from minigen.data.shapes import (
    COLOURS,
    SHAPES,
    SIZES,
    SceneLabels,
    SceneObject,
    Scenes,
    ShapesWorld,
    caption,
    cell_names,
    check_object,
    relation,
)

LANGUAGES: tuple[str, ...] = ("en", "zh")
NEGATIVES: tuple[str, ...] = ("swap_colours", "swap_places", "change_attribute")

ZH_SHAPES = dict(zip(SHAPES, ("圆形", "正方形", "三角形", "菱形", "十字形")))
ZH_COLOURS = dict(zip(COLOURS, ("红色", "绿色", "蓝色", "黄色", "品红色", "青色")))
ZH_SIZES = dict(zip(SIZES, ("小", "大")))
ZH_CELLS_3X3 = (
    "左上角", "上方中间", "右上角",
    "左侧中间", "正中间", "右侧中间",
    "左下角", "下方中间", "右下角",
)  # fmt: skip
ZH_RELATIONS = {
    "to the left of": "左边",
    "to the right of": "右边",
    "above": "上方",
    "below": "下方",
}
INVERSE_RELATION = {
    "to the left of": "to the right of",
    "to the right of": "to the left of",
    "above": "below",
    "below": "above",
}
# phrasings per language and number of objects (1, 2, 3 or more)
_PHRASINGS = {"en": (4, 4, 4), "zh": (2, 4, 2)}


def phrasing_count(objects: int, language: str = "en") -> int:
    """How many phrasings `describe_scene` has for a scene of `objects` objects."""
    check_choice("language", language, LANGUAGES)
    return _PHRASINGS[language][min(check_int("objects", objects), 3) - 1]


def describe_scene(
    objects: Sequence[SceneObject],
    grid: int = 3,
    language: str = "en",
    phrasing: int = 0,
) -> str:
    """The caption of a scene in `language`, phrased the `phrasing`-th way (see
    `phrasing_count`). Every phrasing states the same facts; phrasing 0 in English
    is `shapes.caption`."""
    english = caption(objects, grid)  # checks the objects and the grid
    check_choice("language", language, LANGUAGES)
    count = phrasing_count(len(objects), language)
    phrasing = check_int("phrasing", phrasing, minimum=0, maximum=count - 1)
    if language == "en":
        return english if phrasing == 0 else _english(objects, grid, phrasing)
    return _chinese(objects, grid, phrasing)


def _english(objects: Sequence[SceneObject], grid: int, phrasing: int) -> str:
    phrases = [f"a {o.size} {o.colour} {o.shape}" for o in objects]
    names = cell_names(grid)
    article = "the " if grid == 3 else ""
    at = [f"at {article}{names[o.cell]}" for o in objects]  # "at the top left"
    if len(objects) == 1:
        position = names[objects[0].cell].replace(" ", "-")  # "top-left"
        return (
            f"{at[0]}, {phrases[0]}",
            f"{phrases[0]} in the {position} position"
            if grid == 3
            else f"{phrases[0]} in {names[objects[0].cell]}",
            f"there is {phrases[0]} {at[0]}",
        )[phrasing - 1]
    placed = [f"{phrase} {where}" for phrase, where in zip(phrases, at)]
    if len(objects) == 2:
        seen_from = relation(objects[1].cell, objects[0].cell, grid)
        return (
            f"{phrases[1]} {seen_from} {phrases[0]}",
            f"{placed[0]} and {placed[1]}",
            f"{placed[1]} and {placed[0]}",
        )[phrasing - 1]
    ordered = placed if phrasing % 2 == 0 else placed[::-1]
    if phrasing == 1:
        return " and ".join(ordered)
    return f"{', '.join(ordered[:-1])} and {ordered[-1]}"  # a list: "A, B and C"


def _chinese(objects: Sequence[SceneObject], grid: int, phrasing: int) -> str:
    phrases = [
        f"一个{ZH_SIZES[o.size]}的{ZH_COLOURS[o.colour]}{ZH_SHAPES[o.shape]}"
        for o in objects
    ]
    names = [_chinese_cell(o.cell, grid) for o in objects]
    if len(objects) == 1:
        return (f"{names[0]}有{phrases[0]}", f"{phrases[0]}在{names[0]}")[phrasing]
    if len(objects) == 2 and phrasing < 2:
        first, second = (0, 1) if phrasing == 0 else (1, 0)
        seen_from = relation(objects[first].cell, objects[second].cell, grid)
        return f"{phrases[first]}在{phrases[second]}的{ZH_RELATIONS[seen_from]}"
    placed = [f"{name}有{phrase}" for name, phrase in zip(names, phrases)]
    reverse = phrasing % 2 == 1 if len(objects) == 2 else phrasing == 1
    return "，".join(placed[::-1] if reverse else placed)


def _chinese_cell(cell: int, grid: int) -> str:
    if grid == 3:
        return ZH_CELLS_3X3[cell]
    row, column = divmod(cell, grid)
    return f"第{row + 1}行第{column + 1}列"


def negative(
    objects: Sequence[SceneObject],
    kind: str,
    choice: int = 0,
    world: ShapesWorld | None = None,
) -> list[SceneObject]:
    """The objects of a nearly identical scene that a caption must tell apart:

    "swap_colours": the first two objects trade colours (they must differ);
    "swap_places": the first two objects trade cells (they must look different),
      which for two objects reverses their relation;
    "change_attribute": the first object's shape, colour or size (choice % 3) takes
      another value of the world's (choice // 3 picks which).
    """
    check_choice("kind", kind, NEGATIVES)
    choice = check_int("choice", choice, minimum=0, maximum=None)
    world = world or ShapesWorld()
    changed = list(objects)
    for obj in changed:
        check_object(obj, world.grid)
    if kind == "change_attribute":
        if not changed:
            raise ValueError("a negative needs at least one object, got none")
        field = ("shape", "colour", "size")[choice % 3]
        values = getattr(world, field + "s")  # the world's shapes, colours, sizes
        others = [v for v in values if v != getattr(changed[0], field)]
        if not others:
            raise ValueError(
                f"the world has a single {field}: nothing to change to"
            )
        value = others[choice // 3 % len(others)]
        changed[0] = changed[0]._replace(**{field: value})
        return changed
    if len(changed) < 2:
        raise ValueError(f"{kind} needs two objects, got {len(changed)}")
    first, second = changed[:2]
    if kind == "swap_colours":
        if first.colour == second.colour:
            raise ValueError(
                f"both objects are {first.colour}: swapping changes nothing"
            )
        changed[0] = first._replace(colour=second.colour)
        changed[1] = second._replace(colour=first.colour)
        return changed
    if first[:3] == second[:3]:
        raise ValueError(
            f"both objects are a {first.size} {first.colour} {first.shape}: "
            "swapping their places changes nothing"
        )
    changed[0] = first._replace(cell=second.cell)
    changed[1] = second._replace(cell=first.cell)
    return changed


def meaning(objects: Sequence[SceneObject], phrasing: int, grid: int = 3) -> tuple:
    """What a caption of `objects` phrased the `phrasing`-th way states, in either
    language: for two objects in phrasings 0 and 1, what each is and where it lies
    seen from the other ("relation"); otherwise each object with its cell
    ("cells")."""
    if len(objects) == 2 and phrasing < 2:
        a, b = objects
        facts = {
            (a[:3], relation(a.cell, b.cell, grid), b[:3]),
            (b[:3], relation(b.cell, a.cell, grid), a[:3]),
        }
        return "relation", frozenset(facts)
    return "cells", frozenset(objects)


def meanings_held(objects: Sequence[SceneObject], grid: int = 3) -> set[tuple]:
    """Every meaning (see `meaning`) that is true of a scene: a caption is true of
    the scene if and only if its meaning is in this set."""
    held = {meaning(objects, phrasing=2, grid=grid)}  # each object in its cell
    if len(objects) == 2:
        held.add(meaning(objects, phrasing=0, grid=grid))
    return held


def scene_objects(
    labels: SceneLabels | Scenes, world: ShapesWorld
) -> list[list[SceneObject]]:
    """Each scene of `labels` (SceneLabels or rendered Scenes) as its list of
    SceneObject, by name."""
    what = "SceneLabels (from sample_labels) or Scenes"
    check_instance("labels", labels, (SceneLabels, Scenes), what)
    fields = labels.shape, labels.colour, labels.size, labels.cell, labels.count
    names = world.shapes, world.colours, world.sizes
    scenes = []
    for *attributes, cells, count in zip(*(field.tolist() for field in fields)):
        objects = []
        for k in range(count):
            shape, colour, size = (n[a[k]] for n, a in zip(names, attributes))
            objects.append(SceneObject(shape, colour, size, cells[k]))
        scenes.append(objects)
    return scenes


Languages = str | Sequence[str]  # one language for all scenes, or one per scene


def captions(
    world: ShapesWorld,
    labels: SceneLabels,
    language: Languages = "en",
    draws: Tensor | None = None,
) -> list[str]:
    """The caption of each scene of `labels` in `language` (or one language per
    scene): phrasing 0, or with `draws` (N,) in [0, 1) (from
    `world.phrasing_draws`), phrasing floor(draw * count)."""
    scenes = scene_objects(labels, world)
    languages, phrasings = _phrasings(scenes, language, draws)
    return [
        describe_scene(objects, world.grid, lang, phrasing)
        for objects, lang, phrasing in zip(scenes, languages, phrasings)
    ]


def caption_meanings(
    world: ShapesWorld,
    labels: SceneLabels,
    language: Languages = "en",
    draws: Tensor | None = None,
) -> list[tuple]:
    """The `meaning` of each caption that `captions` writes with these arguments."""
    scenes = scene_objects(labels, world)
    _, phrasings = _phrasings(scenes, language, draws)
    return [
        meaning(objects, phrasing, world.grid)
        for objects, phrasing in zip(scenes, phrasings)
    ]


def negative_captions(
    world: ShapesWorld,
    labels: SceneLabels,
    kind: str,
    language: Languages = "en",
    draws: Tensor | None = None,
) -> list[str | None]:
    """The caption of each scene's `negative` of `kind`, phrased as `captions`
    phrases the scene itself; None where the scene has no such negative (one
    object, or two alike). The changed attribute is chosen by the draw. Swapped
    places of two objects described by their relation take the other relation
    phrasing (`word_order_phrasing`), so that the negative holds the caption's
    words in another order."""
    check_choice("kind", kind, NEGATIVES)
    scenes = scene_objects(labels, world)
    languages, phrasings = _phrasings(scenes, language, draws)
    choices = (
        [0] * len(scenes) if draws is None else (draws * 2**20).long().tolist()
    )
    written = []
    for objects, lang, phrasing, choice in zip(
        scenes, languages, phrasings, choices
    ):
        try:
            changed = negative(objects, kind, choice, world)
        except ValueError:
            written.append(None)
            continue
        if kind == "swap_places":
            phrasing = word_order_phrasing(objects, phrasing)
        written.append(describe_scene(changed, world.grid, lang, phrasing))
    return written


def word_order_phrasing(objects: Sequence[SceneObject], phrasing: int) -> int:
    """The phrasing for the swapped-places negative of a caption in `phrasing`:
    for two objects and a relation ("A left of B"), the other relation phrasing,
    which says "B left of A", the same words in another order; otherwise the
    same phrasing (cells named in the same order: "A at L2 and B at L1")."""
    return 1 - phrasing if len(objects) == 2 and phrasing < 2 else phrasing


def _phrasings(
    scenes: list[list[SceneObject]], language: Languages, draws: Tensor | None
) -> tuple[list[str], list[int]]:
    """Each scene's language and phrasing."""
    if isinstance(language, str):
        languages = [check_choice("language", language, LANGUAGES)] * len(scenes)
    else:
        languages = [check_choice("language", lang, LANGUAGES) for lang in language]
        if len(languages) != len(scenes):
            raise ValueError(
                f"language must be one str or one per scene ({len(scenes)}), got "
                f"{len(languages)}"
            )
    if draws is None:
        return languages, [0] * len(scenes)
    if not isinstance(draws, Tensor) or draws.shape != (len(scenes),):
        raise ValueError(
            f"draws must be a ({len(scenes)},) tensor, one per scene, got "
            f"{describe(draws)}"
        )
    if draws.numel() and not (0 <= draws.min() and draws.max() < 1):
        raise ValueError("draws must lie in [0, 1) (phrasing_draws makes them)")
    counts = [
        phrasing_count(len(objects), lang)
        for objects, lang in zip(scenes, languages)
    ]
    return languages, [int(u * n) for u, n in zip(draws.tolist(), counts)]


__all__ = [
    "LANGUAGES",
    "NEGATIVES",
    "caption_meanings",
    "captions",
    "describe_scene",
    "meaning",
    "meanings_held",
    "negative",
    "negative_captions",
    "phrasing_count",
    "word_order_phrasing",
    "scene_objects",
]
