"""Chapter 6 exercises: CLIP's contrastive loss, one step of BPE training, and
zero-shot classification with prompt ensembling.

The answers are compared with ``F.cross_entropy`` applied to the rows and to the
columns of the logits (for the loss), with a brute-force count of every adjacent
pair in a ``collections.Counter`` and a left-to-right scan (for the merge), and
with plain loops over classes, prompts and images (for zero-shot classification),
never with the code the chapter teaches.

References: A. van den Oord, Y. Li and O. Vinyals, "Representation Learning with
Contrastive Predictive Coding", arXiv:1807.03748 (2018) (InfoNCE); A. Radford et
al., "Learning Transferable Visual Models From Natural Language Supervision", ICML
(2021) (CLIP); R. Sennrich, B. Haddow and A. Birch, "Neural Machine Translation of
Rare Words with Subword Units", ACL (2016) (BPE).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from minigen.exercises.engine import (
    Case,
    CheckResult,
    Mismatch,
    judge_close,
    judge_tensor,
    run,
    seeded,
)

# ---------------------------------------------------------------------------------
# The symmetric InfoNCE loss


def check_info_nce(fn: Callable[[Tensor, Tensor, float], Tensor]) -> CheckResult:
    """Check ``fn(image_embeddings, text_embeddings, logit_scale) -> Tensor``:
    CLIP's symmetric InfoNCE loss, a scalar tensor, for B pairs (image i, text i).

    The embeddings are (B, E), not of unit length: normalise each row first. The
    logits are logit_scale * images @ texts.T (B, B); the loss is half the sum of
    the mean cross-entropy of the rows (each image against every text, its own
    text i the target) and of the columns (each text against every image).
    Answers are compared with ``F.cross_entropy`` applied to the logits and to
    their transpose.
    """
    return run(
        "info_nce", fn, _info_nce_cases(), _cross_entropy_info_nce, judge_close
    )


def _cross_entropy_info_nce(
    image_embeddings: Tensor, text_embeddings: Tensor, logit_scale: float
) -> Tensor:
    images = F.normalize(image_embeddings, dim=1)
    texts = F.normalize(text_embeddings, dim=1)
    logits = logit_scale * images @ texts.T  # (B, B)
    targets = torch.arange(len(logits))  # pair (i, i) matches
    image_to_text = F.cross_entropy(logits, targets)
    text_to_image = F.cross_entropy(logits.T, targets)
    return (image_to_text + text_to_image) / 2


def _info_nce_cases(count: int = 30, seed: int = 0) -> list[Case]:
    randn = seeded(torch.randn, seed)

    def case(images: Tensor, texts: Tensor, logit_scale: float) -> Case:
        return dict(
            image_embeddings=images, text_embeddings=texts, logit_scale=logit_scale
        )

    norms = torch.tensor([[0.1], [3.0], [10.0], [0.5]], dtype=torch.float64)
    # one text close to every image: rows and columns disagree
    images = torch.eye(3, dtype=torch.float64)
    texts = torch.tensor(
        [[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, 0.0, 1.0]], dtype=torch.float64
    )
    same_images, same_texts = randn(5, 6), randn(5, 6)
    corners = [
        case(randn(1, 4), randn(1, 4), 10.0),  # one pair: nothing to tell apart
        case(norms * randn(4, 8), norms.flip(0) * randn(4, 8), 1.0),  # lengths
        case(images, texts, 10.0),  # not symmetric
        case(same_images, same_texts, 1.0),  # the same pairs at two scales
        case(same_images, same_texts, 100.0),
    ]
    cases = list(corners)
    rng = random.Random(seed)
    while len(cases) < count:
        batch, dims = rng.randint(2, 16), rng.randint(2, 32)
        # rows of lengths between about 0.1 and 10
        images = randn(batch, dims) * torch.exp(randn(batch, 1))
        texts = randn(batch, dims) * torch.exp(randn(batch, 1))
        cases.append(case(images, texts, math.exp(rng.uniform(0.0, math.log(100)))))
    return cases


# ---------------------------------------------------------------------------------
# One step of BPE training

Words = dict[tuple[str, ...], int]


def check_merge_step(
    fn: Callable[[Words], tuple[tuple[str, str], Words]],
) -> CheckResult:
    """Check ``fn(words) -> (pair, merged_words)``: one step of BPE training.

    words maps each word, a tuple of symbols (str), to its count in the corpus.
    pair is the most frequent pair of adjacent symbols, every adjacent position of
    every word counted with the word's count (in ("a", "a", "a") the pair ("a",
    "a") occurs twice); a tie goes to the pair that sorts first (the smallest
    tuple of strings, as minigen's ``learn_merges`` breaks ties). merged_words is
    words with the occurrences of pair merged into one symbol, scanning each word
    left to right: ("a", "a", "a") becomes ("aa", "a"). Answers are compared with
    a brute-force count in a ``collections.Counter`` and a left-to-right scan.
    """
    return run(
        "merge_step", fn, _merge_step_cases(), _brute_force_merge_step, _judge_merge
    )


def _brute_force_merge_step(words: Words) -> tuple[tuple[str, str], Words]:
    pairs: Counter[tuple[str, str]] = Counter()
    for word, count in words.items():
        for i in range(len(word) - 1):
            pairs[word[i], word[i + 1]] += count
    most = max(pairs.values())
    pair = min(p for p, n in pairs.items() if n == most)  # ties: sorts first
    merged: Counter[tuple[str, ...]] = Counter()
    for word, count in words.items():
        symbols: list[str] = []
        just_merged = False  # the last symbol was made by this merge
        for symbol in word:
            if symbols and not just_merged and (symbols[-1], symbol) == pair:
                symbols[-1] += symbol
                just_merged = True
            else:
                symbols.append(symbol)
                just_merged = False
        merged[tuple(symbols)] += count
    return pair, dict(merged)


def _judge_merge(
    expected: tuple[tuple[str, str], Words], got: Any
) -> Mismatch | None:
    """The pair, then every merged word and its count; a pair as a list is the
    right value in the wrong type. Never raises, whatever ``got`` is."""
    pair, words = expected
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        return Mismatch(f"expected a tuple (pair, merged_words), got {_kind(got)}")
    got_pair, got_words = got
    if not isinstance(got_pair, (tuple, list)) or not _same(
        list(got_pair), [*pair]
    ):
        return Mismatch(f"expected the pair {pair!r}, got {got_pair!r}")
    if not isinstance(got_words, dict):
        return Mismatch(
            f"the right pair, but merged_words must be a dict (word -> count), got "
            f"{_kind(got_words)}"
        )
    for word, count in words.items():
        got_count = _lookup(got_words, word)
        if got_count is None:
            return Mismatch(
                f"the right pair {pair!r}, but merged_words lacks {word!r} "
                f"(count {count})"
            )
        if not _same(got_count, count):
            return Mismatch(
                f"the right pair {pair!r}, but merged_words has {word!r} with "
                f"count {got_count!r}, expected {count}"
            )
    if len(got_words) != len(words):
        extra = next(
            (word for word in got_words if _lookup(words, word) is None), None
        )
        return Mismatch(
            f"the right pair {pair!r}, but merged_words also holds {extra!r}, "
            "which is no word after the merge"
        )
    if not isinstance(got_pair, tuple):
        return Mismatch(
            f"got the pair as a {type(got_pair).__name__}: the right value, but "
            "return it as a tuple (a list cannot be a dict key)",
            value_is_right=True,
        )
    return None


def _merge_step_cases(count: int = 40, seed: int = 0) -> list[Case]:
    corners: list[Words] = [
        {("a", "a", "a"): 1},  # overlapping occurrences: ("aa", "a")
        {("a", "a", "a", "a"): 2, ("b", "a"): 1},
        # a tie between four pairs: the one that sorts first
        {("c", "d", "e"): 2, ("b", "a"): 2, ("a", "b"): 2},
        {("a", "b", "a", "b"): 1, ("b", "c"): 1},  # twice in one word
        # the counts decide: 4 x ("c", "d") beats 3 x ("a", "b")
        {("a", "b", "a", "b", "a", "b"): 1, ("c", "d"): 4},
        {("x", "x", "x"): 2, ("a", "b"): 3},  # both ("x", "x") count: 4 > 3
        # symbols of several characters (after earlier merges), and a tie
        {("ab", "c", "ab", "c"): 1, ("c", "ab"): 1, ("c",): 5},
    ]
    cases = [dict(words=words) for words in corners]
    rng = random.Random(seed)
    while len(cases) < count:
        alphabet = "abcd"[: rng.randint(2, 4)]
        words: Words = {}
        for _ in range(rng.randint(1, 6)):
            word = tuple(rng.choice(alphabet) for _ in range(rng.randint(1, 7)))
            words[word] = rng.randint(1, 9)
        # some cases start after earlier merges, with longer symbols
        for _ in range(rng.choice([0, 0, 1, 2])):
            if _has_pair(words):
                words = _brute_force_merge_step(words)[1]
        if _has_pair(words):
            cases.append(dict(words=words))
    return cases


def _has_pair(words: Words) -> bool:
    return any(len(word) > 1 for word in words)


def _kind(value: Any) -> str:
    """What the reader returned, briefly: a type, with its length if it has one."""
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} values"
    return f"a {type(value).__name__}"


def _same(got: Any, expected: Any) -> bool:
    """``got == expected``, a comparison that fails counting as unequal."""
    try:
        return bool(got == expected)
    except Exception:
        return False


def _lookup(words: dict, word: Any) -> Any:
    """words[word], or None when it is missing (or cannot be looked up)."""
    try:
        return words.get(word)
    except Exception:
        return None


# ---------------------------------------------------------------------------------
# Zero-shot classification with prompt ensembling


def check_zero_shot_classify(
    fn: Callable[[Tensor, Tensor], Tensor],
) -> CheckResult:
    """Check ``fn(image_embeddings, prompt_embeddings) -> Tensor``: the class of
    each image by zero-shot classification with prompt ensembling.

    image_embeddings is (N, E); prompt_embeddings is (C, P, E), P prompts for each
    of C classes; none is of unit length. A class's embedding is the mean of its P
    prompt embeddings, each first normalised to unit length, normalised again;
    each image gets the class of the highest cosine similarity. The answer is (N,)
    class indices (torch.long). Answers are compared with plain loops over
    classes, prompts and images.
    """
    return run(
        "zero_shot_classify",
        fn,
        _zero_shot_cases(),
        _loop_zero_shot,
        _judge_classes,
    )


def _loop_zero_shot(image_embeddings: Tensor, prompt_embeddings: Tensor) -> Tensor:
    scores = _loop_cosines(image_embeddings, prompt_embeddings)
    best = []
    for row in scores:
        winner = 0
        for c, score in enumerate(row):
            if score > row[winner]:
                winner = c
        best.append(winner)
    return torch.tensor(best, dtype=torch.long)


def _loop_cosines(
    image_embeddings: Tensor, prompt_embeddings: Tensor
) -> list[list[float]]:
    """(N, C) cosines between each image and each class, as nested lists."""

    def unit(vector: list[float]) -> list[float]:
        length = math.sqrt(sum(x * x for x in vector))
        return [x / length for x in vector]

    classes = []
    for prompts in prompt_embeddings.tolist():  # (P, E)
        total = [0.0] * len(prompts[0])
        for prompt in prompts:
            total = [t + x for t, x in zip(total, unit(prompt))]
        classes.append(unit([t / len(prompts) for t in total]))
    return [
        [sum(i * c for i, c in zip(unit(image), cls)) for cls in classes]
        for image in image_embeddings.tolist()
    ]


def _judge_classes(expected: Tensor, got: Any) -> Mismatch | None:
    """Exactly the right classes, then the dtype of class indices."""
    mismatch = judge_tensor(expected, got)
    if mismatch is not None and mismatch.value_is_right:
        return Mismatch(
            f"the right classes, but dtype {got.dtype}: return class indices as "
            "torch.long (as argmax gives them)",
            value_is_right=True,
        )
    return mismatch


def _margin(image_embeddings: Tensor, prompt_embeddings: Tensor) -> float:
    """The smallest gap between an image's best and second-best class."""
    scores = _loop_cosines(image_embeddings, prompt_embeddings)
    gaps = [
        sorted(row)[-1] - sorted(row)[-2] if len(row) > 1 else math.inf
        for row in scores
    ]
    return min(gaps)


def _zero_shot_cases(count: int = 30, seed: int = 0) -> list[Case]:
    randn = seeded(torch.randn, seed)

    def at(*angles: float, length: float = 1.0) -> list[list[float]]:
        """Vectors of the plane at the angles (degrees), of the given length."""
        return [
            [length * math.cos(math.radians(a)), length * math.sin(math.radians(a))]
            for a in angles
        ]

    def case(images: list, classes: list) -> Case:
        return dict(
            image_embeddings=torch.tensor(images, dtype=torch.float64),
            prompt_embeddings=torch.tensor(classes, dtype=torch.float64),
        )

    corners = [
        # the ensemble disagrees with each class's first prompt
        case(at(0, length=3.0), [at(10, 80, 80), at(-30, -30, -30)]),
        # prompts of very different lengths
        case(at(0), [at(60, length=10.0) + at(-20), at(40, 40)]),
        # a class whose prompts disagree has a short mean
        case(at(0, length=0.5), [at(50, -50), at(30, 30)]),
        # one prompt per class
        case(at(0, 100, 200), [at(0), at(120), at(240)]),
    ]
    cases = list(corners)
    rng = random.Random(seed)
    while len(cases) < count:
        images, classes = rng.randint(1, 8), rng.randint(2, 6)
        prompts, dims = rng.randint(1, 5), rng.randint(2, 16)
        # lengths between about 0.1 and 10
        image_embeddings = randn(images, dims) * torch.exp(randn(images, 1))
        prompt_embeddings = randn(classes, prompts, dims) * torch.exp(
            randn(classes, prompts, 1)
        )
        if _margin(image_embeddings, prompt_embeddings) > 1e-4:  # else redraw
            cases.append(
                dict(
                    image_embeddings=image_embeddings,
                    prompt_embeddings=prompt_embeddings,
                )
            )
    return cases
