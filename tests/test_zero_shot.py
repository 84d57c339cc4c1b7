"""Zero-shot classification and retrieval, judged with a fake CLIP that knows the truth: its text embedding
is the one-hot reading of a caption (parsed from the decoded tokens), its image embedding the one-hot truth
of the nearest known scene. A perfect model must score 1; a model blind to one attribute must score chance
on it and 1 on the others. Ranks and recalls are checked against a brute-force count."""

import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from minigen.data import captions
from minigen.data.shapes import ShapesWorld
from minigen.eval import zero_shot
from minigen.tokenizers.bpe import BPETokenizer

WORLD = ShapesWorld(max_objects=1)
SCENES = WORLD.scenes(range(240), split="test")
CORPUS = [
    captions.describe_scene(o, 3, lang)
    for o in captions.scene_objects(WORLD.sample_labels(400), WORLD)
    for lang in captions.LANGUAGES
]
TOKENIZER = BPETokenizer.train(CORPUS, 600)
ZH = {"圆形": "circle", "正方形": "square", "三角形": "triangle", "菱形": "diamond", "十字形": "cross",
      "红色": "red", "绿色": "green", "蓝色": "blue", "黄色": "yellow", "品红色": "magenta", "青色": "cyan", "小": "small", "大": "large"}  # fmt: skip
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
SIZES = {"shape": 5, "colour": 6, "size": 2, "cell": 9}


def one_hot(shape, colour, size, cell, blind=()):
    values = {
        "shape": WORLD.shapes.index(shape),
        "colour": WORLD.colours.index(colour),
        "size": WORLD.sizes.index(size),
        "cell": cell,
    }
    parts = [
        torch.zeros(n)
        if name in blind
        else F.one_hot(torch.tensor(values[name]), n).float()
        for name, n in SIZES.items()
    ]
    return torch.cat(parts)


def read_caption(text):
    english = re.fullmatch(r"a (\w+) (\w+) (\w+) at the (.+)", text)
    if english:
        size, colour, shape, cell = english.groups()
        return shape, colour, size, WORLD.cell_names.index(cell)
    cell, size, colour, shape = re.fullmatch(
        r"(.+?)有一个(.)的(.+?色)(.+)", text
    ).groups()
    return ZH[shape], ZH[colour], ZH[size], CELLS_ZH.index(cell)


class TruthCLIP(nn.Module):
    def __init__(self, blind=()):
        super().__init__()
        self.blind = blind
        self.dummy = nn.Parameter(torch.zeros(1))

    def encode_text(self, tokens):
        rows = [
            one_hot(*read_caption(TOKENIZER.decode(row.tolist())), blind=self.blind)
            for row in tokens
        ]
        return F.normalize(torch.stack(rows) + 1e-6, dim=-1)

    def encode_image(self, images):
        nearest = torch.cdist(images.flatten(1), SCENES.images.flatten(1)).argmin(1)
        rows = [
            one_hot(
                WORLD.shapes[SCENES.shape[i, 0]],
                WORLD.colours[SCENES.colour[i, 0]],
                WORLD.sizes[SCENES.size[i, 0]],
                SCENES.cell[i, 0].item(),
            )
            for i in nearest
        ]
        return F.normalize(torch.stack(rows), dim=-1)


def test_class_prompts_cover_every_other_attribute_or_one_with_single():
    prompts = zero_shot.class_prompts(WORLD, "colour", 2, "en")  # blue
    assert len(prompts) == 5 * 2 * 9 and all(" blue " in p for p in prompts)
    assert (
        zero_shot.class_prompts(WORLD, "colour", 2, "en", single=True)
        == prompts[:1]
    )
    cells = zero_shot.class_prompts(WORLD, "cell", 4, "zh")
    assert len(cells) == 5 * 6 * 2 and all(p.startswith("正中间有") for p in cells)
    assert zero_shot.class_names(WORLD, "cell")[0] == "top left"


@pytest.mark.parametrize("language", captions.LANGUAGES)
def test_a_model_that_knows_the_truth_classifies_every_attribute(language):
    for attribute in zero_shot.ATTRIBUTES:
        accuracy = zero_shot.zero_shot_accuracy(
            TruthCLIP(), TOKENIZER, SCENES, attribute, language
        )
        assert accuracy == 1.0, attribute


def test_a_model_blind_to_colour_guesses_colour_and_still_reads_the_rest():
    blind = TruthCLIP(blind=("colour",))
    colour = zero_shot.zero_shot_accuracy(blind, TOKENIZER, SCENES, "colour")
    assert colour == pytest.approx(
        (SCENES.colour[:, 0] == 0).float().mean().item()
    )  # ties: the first class
    assert zero_shot.zero_shot_accuracy(blind, TOKENIZER, SCENES, "shape") == 1.0


def test_class_embeddings_average_the_prompts_or_take_the_first():
    model = TruthCLIP()
    for single in (False, True):
        weights = zero_shot.class_embeddings(
            model, TOKENIZER, WORLD, "size", "zh", single
        )
        for index in range(2):
            prompts = zero_shot.class_prompts(WORLD, "size", index, "zh", single)
            embedded = model.encode_text(TOKENIZER(prompts, 32))
            assert torch.allclose(
                weights[index], F.normalize(embedded.mean(0), dim=0)
            )
    single = zero_shot.class_embeddings(
        model, TOKENIZER, WORLD, "size", single=True
    )
    ensemble = zero_shot.class_embeddings(model, TOKENIZER, WORLD, "size")
    assert not torch.allclose(single, ensemble)


def test_ranks_and_recalls_count_the_candidates_placed_above_the_best_relevant_one():
    g = torch.Generator().manual_seed(0)
    similarity = torch.randn(30, 50, generator=g)
    relevant = torch.rand(30, 50, generator=g) < 0.05
    relevant[torch.arange(30), torch.arange(30)] = True
    ranks = zero_shot.retrieval_ranks(similarity, relevant)
    for q in range(30):
        order = similarity[q].argsort(descending=True).tolist()
        first = min(order.index(c) for c in range(50) if relevant[q, c])
        assert ranks[q] == first
    scores = zero_shot.recall_at(ranks, (1, 5))
    assert scores["R@1"] == pytest.approx((ranks == 0).float().mean().item())
    assert scores["R@5"] == pytest.approx((ranks < 5).float().mean().item())
    assert scores["median rank"] == ranks.float().median().item() + 1
    # ties count against the query: a constant model ranks behind every wrong one
    tied = zero_shot.retrieval_ranks(torch.zeros(30, 50), relevant)
    assert torch.equal(tied, (~relevant).sum(dim=1))


def test_bad_input_is_refused_with_a_reason():
    with pytest.raises(ValueError, match="attribute must be one of"):
        zero_shot.class_prompts(WORLD, "texture", 0)
    with pytest.raises(ValueError, match="index must be"):
        zero_shot.class_prompts(WORLD, "size", 2)
    with pytest.raises(ValueError, match="one-object scenes only"):
        zero_shot.zero_shot_accuracy(
            TruthCLIP(), TOKENIZER, ShapesWorld(min_objects=2).scenes(4), "shape"
        )
    with pytest.raises(ValueError, match="every query needs"):
        zero_shot.retrieval_ranks(
            torch.zeros(2, 2), torch.zeros(2, 2, dtype=torch.bool)
        )
    with pytest.raises(ValueError, match="relevant must be a bool tensor"):
        zero_shot.retrieval_ranks(
            torch.zeros(2, 2), torch.ones(2, 3, dtype=torch.bool)
        )


PAIRS = ShapesWorld(min_objects=2, max_objects=2).scenes(range(120), split="test")


class CaptionLookupCLIP(nn.Module):
    """Embeds a caption as a bag of its token ids (bag=True) or as its own one-hot identity, and an image as
    the embedding of its scene's caption (the nearest known scene, phrasing 0)."""

    def __init__(self, bag):
        super().__init__()
        self.bag, self.known = bag, {}
        self.dummy = nn.Parameter(torch.zeros(1))

    def encode_text(self, tokens):
        rows = []
        for row in tokens:
            if self.bag:
                rows.append(
                    torch.bincount(row[row > 0], minlength=len(TOKENIZER)).float()
                )
            else:
                key = tuple(row[row > 0].tolist())  # the ids without padding
                vector = torch.zeros(2000)
                vector[self.known.setdefault(key, len(self.known))] = 1
                rows.append(vector)
        return F.normalize(torch.stack(rows), dim=-1)

    def encode_image(self, images):
        nearest = torch.cdist(images.flatten(1), PAIRS.images.flatten(1)).argmin(1)
        objects = captions.scene_objects(PAIRS, PAIRS.world)
        texts = [captions.describe_scene(objects[i], 3, "en") for i in nearest]
        return self.encode_text(TOKENIZER(texts, 40))


def test_binding_is_perfect_for_a_model_that_tells_captions_apart_and_chance_for_a_bag_of_words():
    for kind in ("swap_colours", "swap_places"):
        exact, n = zero_shot.binding_accuracy(
            CaptionLookupCLIP(bag=False), TOKENIZER, PAIRS, kind
        )
        bag, _ = zero_shot.binding_accuracy(
            CaptionLookupCLIP(bag=True), TOKENIZER, PAIRS, kind
        )
        expected = sum(
            1
            for o in captions.scene_objects(PAIRS, PAIRS.world)
            if (
                o[0].colour != o[1].colour
                if kind == "swap_colours"
                else o[0][:3] != o[1][:3]
            )
        )
        assert (exact, bag, n) == (1.0, 0.5, expected)
    with pytest.raises(ValueError, match="no scene has a swap_colours negative"):
        zero_shot.binding_accuracy(TruthCLIP(), TOKENIZER, SCENES, "swap_colours")


def test_retrieval_is_perfect_for_a_model_that_tells_captions_apart_and_counts_every_true_caption():
    scores = zero_shot.retrieval_scores(
        CaptionLookupCLIP(bag=False), TOKENIZER, PAIRS, context_length=40
    )
    for way in ("i->t", "t->i"):
        assert scores[f"{way} R@1"] == 1.0 and scores[f"{way} median rank"] == 1
    # chance: the share of (scene, caption) pairs where the caption is true of the scene
    objects = captions.scene_objects(PAIRS, PAIRS.world)
    texts = captions.captions(PAIRS.world, PAIRS, "en")
    true = sum(
        texts[j] in {captions.describe_scene(scene, 3, "en", p) for p in range(4)}
        or sorted(objects[i]) == sorted(objects[j])
        for i, scene in enumerate(objects)
        for j in range(len(objects))
    )
    assert scores["chance R@1"] == pytest.approx(true / len(objects) ** 2)
    # a bag of token ids confuses captions of the same words: worse, but far above chance
    bag = zero_shot.retrieval_scores(
        CaptionLookupCLIP(bag=True), TOKENIZER, PAIRS, context_length=40
    )
    assert scores["chance R@1"] < bag["i->t R@1"] < 1.0
    assert bag["i->t R@5"] >= bag["i->t R@1"]

    # both ways against a brute-force count, on a model whose similarities are not
    # symmetric (each image's bag moved by its own fixed noise)
    class NoisyBag(CaptionLookupCLIP):
        def encode_image(self, images):
            bags = super().encode_image(images)
            noise = torch.randn(
                bags.shape, generator=torch.Generator().manual_seed(0)
            )
            return F.normalize(bags + 0.05 * noise, dim=-1)

    model = NoisyBag(bag=True)
    bag = zero_shot.retrieval_scores(model, TOKENIZER, PAIRS, context_length=40)
    assert bag["i->t R@1"] != bag["t->i R@1"]
    images = model.encode_image(PAIRS.images)
    text = model.encode_text(TOKENIZER(texts, 40))
    similarity = images @ text.T
    true_of = [
        [
            texts[j] in {captions.describe_scene(s, 3, "en", p) for p in range(4)}
            or sorted(s) == sorted(objects[j])
            for j in range(len(objects))
        ]
        for s in objects
    ]
    n = len(objects)
    for way, sim, rel in (
        ("i->t", similarity, true_of),
        ("t->i", similarity.T, [list(r) for r in zip(*true_of)]),
    ):
        hits = 0
        for q in range(n):
            best = max(sim[q, c] for c in range(n) if rel[q][c])
            wrong_above = sum(sim[q, c] >= best and not rel[q][c] for c in range(n))
            hits += wrong_above == 0
        assert bag[f"{way} R@1"] == pytest.approx(hits / n), way
