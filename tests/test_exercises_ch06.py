"""Chapter 6 exercises (minigen.exercises.ch06_clip): CLIP's symmetric InfoNCE loss, one step
of BPE training and zero-shot classification with prompt ensembling. Right answers, written
here independently of the checkers' references, pass, minigen's own loss and merges
included; classic mistakes are caught with a true counterexample, and never raise."""

from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from minigen.exercises import ch06_clip as ch06
from minigen.exercises import (
    check_info_nce,
    check_merge_step,
    check_zero_shot_classify,
)

# --- right answers, written here (the checkers use F.cross_entropy, a Counter and loops)


def info_nce_log_softmax(images, texts, logit_scale):
    images = images / images.norm(dim=1, keepdim=True)
    texts = texts / texts.norm(dim=1, keepdim=True)
    logits = logit_scale * images @ texts.T
    rows = -logits.log_softmax(dim=1).diagonal().mean()
    columns = -logits.log_softmax(dim=0).diagonal().mean()
    return (rows + columns) / 2


def merge_step_by_index(words):
    counts = {}
    for word, n in words.items():
        for pair in zip(word, word[1:]):
            counts[pair] = counts.get(pair, 0) + n
    pair = sorted(counts, key=lambda p: (-counts[p], p))[0]
    merged = {}
    for word, n in words.items():
        out, i = [], 0
        while i < len(word):
            if tuple(word[i : i + 2]) == pair:
                out.append(pair[0] + pair[1])
                i += 2
            else:
                out.append(word[i])
                i += 1
        merged[tuple(out)] = merged.get(tuple(out), 0) + n
    return pair, merged


def zero_shot_vectorised(images, prompts):
    classes = F.normalize(
        F.normalize(prompts, dim=-1).mean(dim=1), dim=-1
    )  # (C, E)
    return torch.einsum("ne,ce->nc", F.normalize(images, dim=-1), classes).argmax(
        dim=1
    )


def test_right_answers_pass_including_minigens_own():
    from minigen.models import clip
    from minigen.tokenizers import bpe

    def minigen_info_nce(images, texts, logit_scale):
        logits = (
            logit_scale * F.normalize(images, dim=1) @ F.normalize(texts, dim=1).T
        )
        return clip.contrastive_loss(logits)

    def minigen_merge_step(words):
        (pair,) = bpe.learn_merges(Counter(words), 1)  # the same tie rule
        return pair, {tuple(bpe._merge(word, pair)): n for word, n in words.items()}

    for check, right in [
        (check_info_nce, info_nce_log_softmax),
        (check_info_nce, minigen_info_nce),
        (check_merge_step, merge_step_by_index),
        (check_merge_step, minigen_merge_step),
        (check_zero_shot_classify, zero_shot_vectorised),
    ]:
        result = check(right)
        assert result.passed, result
        assert repr(result).startswith("✅")


def assert_close_caught(result, wrong, right):
    """The check failed at a case where the wrong function really differs from the right one."""
    assert not result.passed and result.attempted, result
    case = list(result.counterexample.values())
    got, expected = wrong(*case), right(*case)
    assert got.shape != expected.shape or not torch.allclose(got, expected)


def assert_caught(result, wrong, right):
    assert not result.passed and result.attempted, result
    case = list(result.counterexample.values())
    assert wrong(*case) != right(*case)


# --- InfoNCE


def info_nce_rows_only(images, texts, logit_scale):
    logits = logit_scale * F.normalize(images, dim=1) @ F.normalize(texts, dim=1).T
    return F.cross_entropy(logits, torch.arange(len(logits)))


def info_nce_unnormalised(images, texts, logit_scale):
    logits = logit_scale * images @ texts.T
    target = torch.arange(len(logits))
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


@pytest.mark.parametrize(
    "wrong",
    [
        info_nce_unnormalised,  # forgets to normalise: raw dot products
        info_nce_rows_only,  # image -> text only
        lambda i, t, s: info_nce_rows_only(t, i, s),  # text -> image only
        lambda i, t, s: info_nce_log_softmax(i, t, 1.0),  # ignores the scale
        lambda i, t, s: info_nce_log_softmax(
            i, t, torch.tensor(s).exp()
        ),  # exp(scale)
        lambda i, t, s: 2 * info_nce_log_softmax(i, t, s),  # the sum, not halved
    ],
    ids=[
        "no-normalisation",
        "rows-only",
        "columns-only",
        "no-scale",
        "exp-scale",
        "not-halved",
    ],
)
def test_info_nce_mistakes_are_caught(wrong):
    assert_close_caught(check_info_nce(wrong), wrong, info_nce_log_softmax)


def test_info_nce_wrong_types_and_shapes_fail_without_raising():
    as_float = check_info_nce(lambda i, t, s: info_nce_log_softmax(i, t, s).item())
    assert (
        not as_float.passed
        and "expected a tensor of shape (), got a float" in as_float.message
    )

    def per_pair(i, t, s):  # not reduced over the batch
        logits = s * F.normalize(i, dim=1) @ F.normalize(t, dim=1).T
        target = torch.arange(len(logits))
        return (
            F.cross_entropy(logits, target, reduction="none")
            + F.cross_entropy(logits.T, target, reduction="none")
        ) / 2

    per_row = check_info_nce(per_pair)
    assert not per_row.passed and "shape mismatch" in per_row.message


# --- one BPE merge step


def merge_with(words, pair, right_to_left=False, first_only=False):
    merged = {}
    for word, n in words.items():
        symbols = list(word[::-1] if right_to_left else word)
        target = pair[::-1] if right_to_left else pair
        out, i, done = [], 0, False
        while i < len(symbols):
            if not done and tuple(symbols[i : i + 2]) == target:
                out.append(pair[0] + pair[1])
                i += 2
                done = first_only
            else:
                out.append(symbols[i])
                i += 1
        merged[tuple(out[::-1] if right_to_left else out)] = n
    return merged


def pair_counts(words, weighted=True):
    counts = Counter()
    for word, n in words.items():
        for pair in zip(word, word[1:]):
            counts[pair] += n if weighted else 1
    return counts


def ignoring_counts(words):
    counts = pair_counts(words, weighted=False)
    pair = min(counts, key=lambda p: (-counts[p], p))
    return pair, merge_with(words, pair)


def first_seen_on_tie(words):
    ((pair, _),) = pair_counts(words).most_common(1)  # insertion order on a tie
    return pair, merge_with(words, pair)


def last_sorted_on_tie(words):
    counts = pair_counts(words)
    pair = max(counts, key=lambda p: (counts[p], p))
    return pair, merge_with(words, pair)


def right_to_left(words):
    pair = merge_step_by_index(words)[0]
    return pair, merge_with(
        words, pair, right_to_left=True
    )  # ("a","a","a") -> ("a","aa")


def first_occurrence_only(words):
    pair = merge_step_by_index(words)[0]
    return pair, merge_with(words, pair, first_only=True)


def non_overlapping_counts(words):  # counts ("a","a") once in ("a","a","a")
    counts = Counter()
    for word, n in words.items():
        for pair in set(zip(word, word[1:])):
            (merged,) = merge_with({word: 1}, pair)
            counts[pair] += n * (len(word) - len(merged))
    pair = min(counts, key=lambda p: (-counts[p], p))
    return pair, merge_with(words, pair)


@pytest.mark.parametrize(
    "wrong",
    [
        ignoring_counts,
        right_to_left,
        first_seen_on_tie,
        last_sorted_on_tie,
        first_occurrence_only,
        non_overlapping_counts,
    ],
)
def test_merge_step_mistakes_are_caught(wrong):
    result = check_merge_step(wrong)
    assert_caught(result, wrong, merge_step_by_index)


def test_the_named_mistakes_fail_on_their_corner():
    corners = [case["words"] for case in ch06._merge_step_cases()[:7]]
    assert right_to_left(corners[0])[1] == {("a", "aa"): 1}
    assert (
        check_merge_step(right_to_left).cases == 1
    )  # the overlapping "aaa" comes first
    for wrong in (ignoring_counts, first_seen_on_tie, last_sorted_on_tie):
        assert any(
            wrong(words) != merge_step_by_index(words) for words in corners
        ), wrong


@pytest.mark.parametrize(
    "answer, message",
    [
        (
            lambda words: (
                list(merge_step_by_index(words)[0]),
                merge_step_by_index(words)[1],
            ),
            "the right value, but return it as a tuple",
        ),
        (lambda words: merge_step_by_index(words)[0], "expected the pair"),
        (lambda words: (*merge_step_by_index(words), 0), "got a tuple of 3 values"),
        (
            lambda words: (
                merge_step_by_index(words)[0],
                list(merge_step_by_index(words)[1].items()),
            ),
            "merged_words must be a dict",
        ),
        (
            lambda words: (
                merge_step_by_index(words)[0],
                {**merge_step_by_index(words)[1], ("z",): 1},
            ),
            "also holds ('z',)",
        ),
        (lambda words: (merge_step_by_index(words)[0], {}), "merged_words lacks"),
        (
            lambda words: (
                merge_step_by_index(words)[0],
                dict.fromkeys(merge_step_by_index(words)[1], 0),
            ),
            "with count 0",
        ),
        (lambda words: "".join(merge_step_by_index(words)[0]), "got a str"),
    ],
)
def test_merge_step_wrong_types_fail_without_raising(answer, message):
    result = check_merge_step(answer)
    assert not result.passed and result.attempted
    assert message in result.message, result.message


# --- zero-shot classification


def single_prompt(images, prompts):
    return zero_shot_vectorised(images, prompts[:, :1])


def no_renormalisation(images, prompts):
    classes = F.normalize(prompts, dim=-1).mean(dim=1)
    return (F.normalize(images, dim=-1) @ classes.T).argmax(dim=1)


def no_prompt_normalisation(images, prompts):
    classes = F.normalize(prompts.mean(dim=1), dim=-1)
    return (F.normalize(images, dim=-1) @ classes.T).argmax(dim=1)


ZERO_SHOT_MISTAKES = [single_prompt, no_renormalisation, no_prompt_normalisation]


@pytest.mark.parametrize("wrong", ZERO_SHOT_MISTAKES)
def test_zero_shot_mistakes_are_caught(wrong):
    result = check_zero_shot_classify(wrong)
    assert not result.passed and result.attempted, result
    case = list(result.counterexample.values())
    assert not torch.equal(wrong(*case), zero_shot_vectorised(*case))


@pytest.mark.parametrize(
    "wrong, corner",
    [(single_prompt, 0), (no_prompt_normalisation, 1), (no_renormalisation, 2)],
)
def test_each_zero_shot_mistake_has_a_corner_of_its_own(wrong, corner):
    case = list(ch06._zero_shot_cases()[corner].values())
    assert not torch.equal(wrong(*case), zero_shot_vectorised(*case))


def test_zero_shot_wrong_types_and_shapes_fail_without_raising():
    as_float = check_zero_shot_classify(
        lambda i, p: zero_shot_vectorised(i, p).float()
    )
    assert (
        not as_float.passed
        and "the right classes, but dtype torch.float32" in as_float.message
    )
    column = check_zero_shot_classify(
        lambda i, p: zero_shot_vectorised(i, p)[:, None]
    )
    assert not column.passed and "shape mismatch" in column.message
    as_list = check_zero_shot_classify(
        lambda i, p: zero_shot_vectorised(i, p).tolist()
    )
    assert not as_list.passed and "got a list" in as_list.message


# --- every checker: a crash is reported, never raised


@pytest.mark.parametrize(
    "check", [check_info_nce, check_merge_step, check_zero_shot_classify]
)
def test_a_crash_is_reported_not_raised(check):
    def crashes(*args):
        raise KeyError("oops")

    result = check(crashes)
    assert not result.passed and result.attempted and result.cases == 1
    assert "but your function raised KeyError" in result.message


# --- the references and the cases


def test_the_references_agree_with_the_right_answers():
    for case in ch06._info_nce_cases():
        assert torch.allclose(
            ch06._cross_entropy_info_nce(**case),
            info_nce_log_softmax(*case.values()),
        )
    for case in ch06._merge_step_cases():
        assert ch06._brute_force_merge_step(**case) == merge_step_by_index(**case)
    for case in ch06._zero_shot_cases():
        assert torch.equal(
            ch06._loop_zero_shot(**case), zero_shot_vectorised(*case.values())
        )


def test_the_cases_cover_the_corners():
    info = ch06._info_nce_cases()
    assert any(len(c["image_embeddings"]) == 1 for c in info)  # one pair: loss 0
    assert ch06._cross_entropy_info_nce(**info[0]).abs() < 1e-12
    norms = torch.cat([c["image_embeddings"].norm(dim=1) for c in info])
    assert norms.min() < 0.5 and norms.max() > 5  # not of unit length
    asymmetric = info[2]
    assert not torch.allclose(
        info_nce_rows_only(*asymmetric.values()),
        info_nce_rows_only(
            asymmetric["text_embeddings"],
            asymmetric["image_embeddings"],
            asymmetric["logit_scale"],
        ),
    )
    assert {info[3]["logit_scale"], info[4]["logit_scale"]} == {1.0, 100.0}
    assert torch.equal(info[3]["image_embeddings"], info[4]["image_embeddings"])

    merges = [c["words"] for c in ch06._merge_step_cases()]
    assert merges[0] == {("a", "a", "a"): 1}
    ties = [
        w
        for w in merges
        if Counter(pair_counts(w).values())[max(pair_counts(w).values())] > 1
    ]
    assert len(ties) >= 5  # the random cases tie too
    assert any(
        len(s) > 1 for w in merges[7:] for word in w for s in word
    )  # after merges
    assert all(any(len(word) > 1 for word in w) for w in merges)  # a pair to merge

    for case in ch06._zero_shot_cases():  # no near ties: one right answer
        assert ch06._margin(**case) > 1e-4
