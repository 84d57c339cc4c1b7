"""Byte-level BPE: the byte alphabet against the `tokenizers` library's, the incremental merge learner
against a brute-force one that recounts every pair each time, the merges learned from the book's captions
against the `tokenizers` library's BPE trainer on the same words, exact round trips for any text
(hypothesis), and CLIP's start/end tokens, padding and truncation."""

import json
from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from minigen.data import captions
from minigen.data.shapes import ShapesWorld
from minigen.tokenizers import bpe

WORLD = ShapesWorld(max_objects=2)


def caption_corpus(n=1500):
    labels, draws = (
        WORLD.sample_labels(n, "train"),
        WORLD.phrasing_draws(n, "train"),
    )
    return [
        text
        for language in captions.LANGUAGES
        for text in captions.captions(WORLD, labels, language, draws)
    ]


CORPUS = caption_corpus()
TOKENIZER = bpe.BPETokenizer.train(CORPUS, 700)


def word_counts(corpus):
    return Counter(
        bpe.symbols(piece, ends)
        for text in corpus
        for piece, ends in bpe.pieces(text)
    )


def brute_force_merges(words, merges):
    """Recount every adjacent pair of every word before each merge; the largest count wins, ties to the
    smallest pair."""
    words = {tuple(w): n for w, n in words.items()}
    learned = []
    for _ in range(merges):
        counts = Counter()
        for word, n in words.items():
            for pair in zip(word, word[1:]):
                counts[pair] += n
        if not counts:
            break
        best = min(counts, key=lambda pair: (-counts[pair], pair))
        learned.append(best)
        merged = Counter()
        for word, n in words.items():
            merged[tuple(bpe._merge(word, best))] += n
        words = merged
    return learned


def counts_at_each_merge(words, merges):
    """The count each merge had when it was made, replaying the merges in order."""
    words = dict(words)
    counts = []
    for pair in merges:
        counts.append(
            sum(n * list(zip(w, w[1:])).count(pair) for w, n in words.items())
        )
        words = {tuple(bpe._merge(w, pair)): n for w, n in words.items()}
    return counts


def segment(word, merges):
    """A word's symbols after applying every merge in the order learned (the definition of BPE encoding)."""
    word = list(word)
    for pair in merges:
        word = bpe._merge(word, pair)
    return word


def test_the_byte_alphabet_is_the_one_of_gpt2_and_the_tokenizers_library():
    alphabet = bpe.byte_alphabet()
    assert len(set(alphabet)) == 256 and all(
        char.isprintable() and not char.isspace() for char in alphabet
    )
    assert set(alphabet) == set(pre_tokenizers.ByteLevel.alphabet())
    assert (
        alphabet[ord("a")] == "a" and alphabet[ord(" ")] == "Ġ"
    )  # space: the 33rd non-printable byte


def test_word_counts_are_the_initial_symbols_of_each_word_with_their_counts():
    words = bpe.word_counts(["A red circle", "a red  square", "红色"])
    assert words[("a</w>",)] == 2 and words[("r", "e", "d</w>")] == 2
    assert words[("c", "i", "r", "c", "l", "e</w>")] == 1  # the text's end ends it
    alphabet = bpe.byte_alphabet()
    # one piece per ideograph, marked only where the text ends
    assert words[tuple(alphabet[b] for b in "红".encode())] == 1
    assert sum(words.values()) == 3 + 3 + 2


def test_merge_counts_replay_the_counts_the_learner_ranked_by():
    words = word_counts(CORPUS)
    merges = bpe.learn_merges(words, 150)
    counts = bpe.merge_counts(words, merges)
    assert counts == counts_at_each_merge(words, merges)
    assert counts == sorted(counts, reverse=True)  # the largest count goes first
    assert bpe.merge_counts(Counter({("a", "a", "a"): 2}), [("a", "a")]) == [4]


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(
        st.text("abc", min_size=1, max_size=7),
        st.integers(1, 5),
        min_size=1,
        max_size=8,
    )
)
def test_incremental_learning_matches_recounting_every_pair(vocabulary):
    words = Counter(
        {
            tuple(word[:-1]) + (word[-1] + bpe.END_OF_WORD,): n
            for word, n in vocabulary.items()
        }
    )
    assert bpe.learn_merges(words, 12) == brute_force_merges(words, 12)


def test_merges_of_the_captions_match_the_tokenizers_library_up_to_the_order_of_ties():
    words = word_counts(CORPUS)
    full = bpe.learn_merges(words, 400)
    counts = counts_at_each_merge(words, full)
    # cut where the count changes, so that no tie is split between learned and not learned
    cut = next(i for i in range(120, len(full)) if counts[i] != counts[i - 1])
    # the library's trainer on the same words: each initial symbol as one private-use character
    initial = sorted({symbol for word in words for symbol in word})
    char = {symbol: chr(0xE000 + i) for i, symbol in enumerate(initial)}
    back = {c: symbol for symbol, c in char.items()}
    lines = [
        " ".join(["".join(char[s] for s in word)] * n) for word, n in words.items()
    ]
    reference = Tokenizer(models.BPE())
    reference.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.BpeTrainer(
        vocab_size=len(initial) + cut,
        min_frequency=0,
        show_progress=False,
        limit_alphabet=len(initial),
    )
    reference.train_from_iterator(lines, trainer)
    theirs = [
        tuple("".join(back[c] for c in part) for part in pair)
        for pair in json.loads(reference.to_str())["model"]["merges"]
    ]
    mine = full[:cut]
    assert (
        counts_at_each_merge(words, theirs) == counts[:cut]
    )  # the same count at every step
    for word in words:  # and every word of the corpus split into the same tokens
        assert "|".join(segment(word, mine)) == "|".join(segment(word, theirs))
    same = len(set(mine) & set(theirs))
    assert (
        same >= 0.7 * cut
    )  # ties broken otherwise build a few words from other halves


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_decoding_restores_the_clean_text_exactly(text):
    assert TOKENIZER.decode(TOKENIZER.encode(text)) == bpe.clean(text)


def test_encoding_is_the_merges_applied_in_the_order_learned():
    for text in CORPUS[::50] + [
        "a small yellow cross, top-left",
        "右下角有一个大的青色菱形",
    ]:
        for piece, ends in bpe.pieces(text):
            expected = segment(bpe.symbols(piece, ends), TOKENIZER.merges)
            assert [
                TOKENIZER.tokens[i] for i in TOKENIZER._encode_piece(piece, ends)
            ] == expected


def test_captions_become_words_in_english_and_characters_in_chinese():
    english = "a small red circle to the left of a large blue square"
    assert [TOKENIZER.tokens[i] for i in TOKENIZER.encode(english)] == [
        w + bpe.END_OF_WORD for w in english.split()
    ]
    chinese = "左上角有一个小的红色圆形"
    assert len(TOKENIZER.encode(chinese)) == len(chinese)  # one token per character
    assert bpe.pieces("左上角，a,b  c") == [
        ("左", False),
        ("上", False),
        ("角", False),
        ("，", False),
        ("a", False),
        (",", False),
        ("b", True),
        ("c", True),
    ]


def test_batches_hold_start_text_end_and_padding_and_truncate_keeping_the_end():
    texts = ["a small red circle at the top left", "左上角有一个小的红色圆形"]
    batch = TOKENIZER(texts, context_length=16)
    assert batch.shape == (2, 16) and batch.dtype == torch.long
    for row, text in zip(batch, texts):
        ids = TOKENIZER.encode(text)
        assert row[0] == TOKENIZER.start and row[len(ids) + 1] == TOKENIZER.end
        assert (
            row[1 : len(ids) + 1].tolist() == ids and not row[len(ids) + 2 :].any()
        )
        assert (
            row.argmax() == len(ids) + 1
        )  # the end token has the largest id: CLIP reads features there
        assert TOKENIZER.decode(row.tolist()) == text
    cut = TOKENIZER(texts, context_length=5, truncate=True)
    assert (
        cut[:, -1].tolist() == [TOKENIZER.end] * 2
        and cut[0, :4].tolist() == batch[0, :4].tolist()
    )
    with pytest.raises(
        ValueError,
        match="text 0 needs 10 tokens with start and end, more than context_length=5",
    ):
        TOKENIZER(texts, context_length=5)


def test_bad_input_is_refused_with_a_reason():
    with pytest.raises(ValueError, match="vocabulary_size must be an int >= 514"):
        bpe.BPETokenizer.train(CORPUS, 100)
    with pytest.raises(TypeError, match="text must be"):
        TOKENIZER.encode(3)
    with pytest.raises(TypeError, match="texts must hold str"):
        TOKENIZER(["a", 3])
    with pytest.raises(ValueError, match=r"ids must lie in \[0, "):
        TOKENIZER.decode([len(TOKENIZER)])
    with pytest.raises(ValueError, match="every merge must be a pair"):
        bpe.BPETokenizer([("a", "b", "c")])


def test_the_vocabulary_counts_bytes_merges_and_the_two_special_tokens():
    assert len(TOKENIZER) == 512 + len(TOKENIZER.merges) + 2
    assert (
        TOKENIZER.end == len(TOKENIZER) - 1
        and TOKENIZER.tokens[TOKENIZER.start] == bpe.START
    )
    # 700 asked for, fewer made: merging stopped when every piece of the corpus was one token
    assert len(TOKENIZER) < 700
    assert all(
        len(TOKENIZER._encode_piece(*piece)) == 1
        for text in CORPUS
        for piece in bpe.pieces(text)
    )
    small = bpe.BPETokenizer.train(CORPUS, 600)
    assert len(small) == 600 and small.merges == TOKENIZER.merges[: 600 - 514]
    counts = [len(TOKENIZER.encode(text)) for text in CORPUS]
    assert (
        max(counts) + 2 <= bpe.CONTEXT_LENGTH
    )  # every caption fits CLIP's context
