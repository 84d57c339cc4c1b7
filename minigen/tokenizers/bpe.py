"""Byte-level byte-pair encoding (BPE), trained on a corpus, with openai/CLIP's
conventions.

- BPE: start from single symbols and repeatedly merge the most frequent adjacent
  pair into a new symbol (R. Sennrich, B. Haddow, A. Birch, "Neural Machine
  Translation of Rare Words with Subword Units", ACL 2016).
- Byte level: the symbols start as the UTF-8 bytes of the text, each shown as a
  printable character, so that any text can be encoded and nothing is unknown
  (A. Radford et al., "Language Models are Unsupervised Multitask Learners", 2019).
- CLIP's conventions (A. Radford et al., "Learning Transferable Visual Models From
  Natural Language Supervision", ICML 2021; openai/CLIP's simple_tokenizer): text
  lower-cased and its whitespace collapsed; an end-of-word marker "</w>" fused to
  the last symbol of a word, so "red" at the end of a word is another token than
  "red" inside one; start and end tokens; a fixed context length, and truncation
  that keeps the end token, where the text encoder reads its features.

Two changes from CLIP. CLIP splits letters from digits and punctuation and marks the
end of every piece, so decoding "a,b" gives "a , b"; here a piece gets the marker
only when whitespace follows it, so decoding restores the text exactly:
decode(encode(text)) == clean(text) for every text. And every CJK ideograph is a
piece of its own, as in BERT's tokenizer (J. Devlin et al., "BERT", NAACL 2019):
Chinese has no spaces, and merges across characters would memorise whole phrases of
a small caption corpus instead of its words.
"""

from __future__ import annotations

import functools
import heapq
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from minigen.core.validators import check_instance, check_int, describe

START, END = "<|startoftext|>", "<|endoftext|>"
END_OF_WORD = "</w>"
CONTEXT_LENGTH = 77  # CLIP's
# CJK ideographs, one per piece, as BERT splits them (Devlin et al. 2019)
_IDEOGRAPH = "[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f]"
# one ideograph | other letters | one digit | underscores | other non-spaces
PIECE = re.compile(
    f"{_IDEOGRAPH}|(?:(?!{_IDEOGRAPH})[^\\W\\d_])+|\\d|_+|[^\\w\\s]+"
)


@functools.cache
def byte_alphabet() -> tuple[str, ...]:
    """One printable character per byte value 0..255: printable Latin-1 bytes stand
    for themselves, the others (controls, space) for the characters from U+0100 on,
    in order; GPT-2's bytes_to_unicode, which CLIP uses."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    alphabet, spare = {}, 256
    for byte in range(256):
        if byte in printable:
            alphabet[byte] = chr(byte)
        else:
            alphabet[byte], spare = chr(spare), spare + 1
    return tuple(alphabet[byte] for byte in range(256))


def clean(text: str) -> str:
    """CLIP's normal form of a text: lower case, runs of whitespace as one space,
    none at either end."""
    check_instance("text", text, str)
    return " ".join(text.lower().split())


def pieces(text: str) -> list[tuple[str, bool]]:
    """The pieces BPE works within, each with whether whitespace follows it: the
    words of clean(text), each split into single CJK ideographs, runs of other
    letters, single digits, and runs of other characters."""
    split = []
    for word in clean(text).split(" "):
        found = PIECE.findall(word)
        split += [(piece, i == len(found) - 1) for i, piece in enumerate(found)]
    return split


def symbols(piece: str, ends_word: bool) -> tuple[str, ...]:
    """A piece as its initial BPE symbols: its UTF-8 bytes as alphabet characters,
    the last one marked "</w>" if the piece ends a word."""
    alphabet = byte_alphabet()
    chars = [alphabet[byte] for byte in piece.encode("utf-8")]
    if ends_word:
        chars[-1] += END_OF_WORD
    return tuple(chars)


def word_counts(corpus: Iterable[str]) -> Counter[tuple[str, ...]]:
    """How often each word (its initial symbols, `symbols`) occurs in the texts of
    `corpus`: what `learn_merges` learns from."""
    return Counter(
        symbols(piece, ends) for text in corpus for piece, ends in pieces(text)
    )


def merge_counts(
    words: Counter[tuple[str, ...]], merges: Sequence[tuple[str, str]]
) -> list[int]:
    """The count each merge had when it was made: the merges replayed in order on
    the word counts, each pair's adjacent occurrences counted (as `learn_merges`
    ranks them) before it is merged."""
    vocabulary = dict(words)
    found = []
    for pair in merges:
        found.append(
            sum(n * list(zip(w, w[1:])).count(pair) for w, n in vocabulary.items())
        )
        vocabulary = {tuple(_merge(w, pair)): n for w, n in vocabulary.items()}
    return found


def learn_merges(
    words: Counter[tuple[str, ...]], merges: int
) -> list[tuple[str, str]]:
    """Up to `merges` merges learned from word counts (symbol tuple -> count): each
    time the adjacent pair with the largest count, summed over the words it occurs
    in, becomes one symbol; ties go to the smallest pair (as strings). Counts are
    updated only in the words a merge touches (a heap of candidates, stale entries
    skipped when popped)."""
    check_int("merges", merges, minimum=0)
    vocabulary = [list(word) for word in words]  # symbols of each distinct word
    counts = list(words.values())
    pair_count: Counter[tuple[str, str]] = Counter()
    where = defaultdict(set)  # pair -> indices of the words holding it
    for i, word in enumerate(vocabulary):
        for pair in zip(word, word[1:]):
            pair_count[pair] += counts[i]
            where[pair].add(i)
    heap = [(-n, pair) for pair, n in pair_count.items()]
    heapq.heapify(heap)
    learned = []
    while heap and len(learned) < merges:
        negative, pair = heapq.heappop(heap)
        if pair_count.get(pair, 0) != -negative or -negative == 0:
            continue  # stale: the count changed since this entry was pushed
        learned.append(pair)
        changed = set()
        for i in where.pop(pair):
            word = vocabulary[i]
            for old in zip(word, word[1:]):
                pair_count[old] -= counts[i]
                changed.add(old)
            vocabulary[i] = word = _merge(word, pair)
            for new in zip(word, word[1:]):
                pair_count[new] += counts[i]
                where[new].add(i)
                changed.add(new)
        del pair_count[pair]
        for other in changed - {pair}:
            if pair_count[other] > 0:
                heapq.heappush(heap, (-pair_count[other], other))
    return learned


def _merge(word: Sequence[str], pair: tuple[str, str]) -> list[str]:
    """The word with every occurrence of `pair`, left to right, made one symbol."""
    merged, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            merged.append(word[i] + word[i + 1])
            i += 2
        else:
            merged.append(word[i])
            i += 1
    return merged


class BPETokenizer:
    """A byte-level BPE tokenizer from its merges. Its vocabulary: the 256 byte
    symbols, the same with "</w>", one symbol per merge, then the start and end
    tokens (the end token has the largest id, as in CLIP).

    encode(text) -> ids; decode(ids) -> text; tokenizer(texts) -> (N,
    context_length) ids with the start and end tokens, zero padded.
    """

    def __init__(self, merges: Sequence[tuple[str, str]]):
        check_instance("merges", merges, Sequence, "a sequence of (str, str) pairs")
        self.merges = [tuple(pair) for pair in merges]
        if any(len(pair) != 2 for pair in self.merges):
            raise ValueError("every merge must be a pair of symbols (str, str)")
        alphabet = byte_alphabet()
        tokens = [*alphabet, *(c + END_OF_WORD for c in alphabet)]
        tokens += ["".join(pair) for pair in self.merges] + [START, END]
        # two merges may make one symbol ("ab" + "c", "a" + "bc"): the first id
        self.vocabulary = {}
        for i, token in enumerate(tokens):
            self.vocabulary.setdefault(token, i)
        self.tokens = tokens
        self.rank = {pair: i for i, pair in enumerate(self.merges)}
        self.start, self.end = self.vocabulary[START], self.vocabulary[END]
        self._byte = {char: byte for byte, char in enumerate(alphabet)}
        self._cache: dict[tuple[str, bool], list[int]] = {}

    @classmethod
    def train(cls, corpus: Iterable[str], vocabulary_size: int) -> BPETokenizer:
        """Learn merges from `corpus` (texts) until the vocabulary holds
        `vocabulary_size` tokens (fewer if no pair is left to merge)."""
        base = 2 * 256 + 2  # byte symbols, with and without "</w>", start, end
        size = check_int("vocabulary_size", vocabulary_size, minimum=base)
        return cls(learn_merges(word_counts(corpus), size - base))

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> list[int]:
        """The ids of clean(text), without start and end tokens."""
        return [i for piece in pieces(text) for i in self._encode_piece(*piece)]

    def _encode_piece(self, piece: str, ends_word: bool) -> list[int]:
        key = (piece, ends_word)
        if key not in self._cache:
            word = list(symbols(piece, ends_word))
            while len(word) > 1:  # merge the earliest-learned pair present
                pairs = zip(word, word[1:])
                pair = min(pairs, key=lambda p: self.rank.get(p, len(self.rank)))
                if pair not in self.rank:
                    break
                word = _merge(word, pair)
            self._cache[key] = [self.vocabulary[symbol] for symbol in word]
        return self._cache[key]

    def decode(self, ids: Iterable[int]) -> str:
        """The text of `ids`; start, end and padding (0 after the end) ignored."""
        ids = [int(i) for i in ids]
        if any(not 0 <= i < len(self) for i in ids):
            raise ValueError(f"ids must lie in [0, {len(self)}), got {ids}")
        if self.end in ids:
            ids = ids[: ids.index(self.end)]
        text = "".join(self.tokens[i] for i in ids if i != self.start)
        words = text.split(END_OF_WORD)  # a word ends at every marker
        as_bytes = [bytes(self._byte[char] for char in word) for word in words]
        decoded = [word.decode("utf-8", errors="replace") for word in as_bytes]
        return " ".join(decoded).strip()

    def __call__(
        self,
        texts: str | Sequence[str],
        context_length: int = CONTEXT_LENGTH,
        truncate: bool = False,
    ) -> Tensor:
        """(N, context_length) long: start token, the text's ids, end token, zeros.
        A text longer than that raises ValueError, or with `truncate` is cut and
        its last id replaced by the end token (CLIP's truncate=True)."""
        texts = [texts] if isinstance(texts, str) else texts
        check_instance("texts", texts, Sequence, "a str or a sequence of str")
        length = check_int("context_length", context_length, minimum=2)
        rows = torch.zeros(len(texts), length, dtype=torch.long)
        for row, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts must hold str, got {describe(text)}")
            ids = [self.start, *self.encode(text), self.end]
            if len(ids) > length:
                if not truncate:
                    raise ValueError(
                        f"text {row} needs {len(ids)} tokens with start and end, "
                        f"more than context_length={length}; pass truncate=True "
                        "to cut it"
                    )
                ids = ids[:length]
                ids[-1] = self.end
            rows[row, : len(ids)] = torch.tensor(ids)
        return rows
