"""Tokenizer and vocabulary, shared by training and inference.

One tokenizer for both sides: a caption is lower-cased and split into runs of
letters/digits (apostrophes kept inside words), so "A dog's toy." -> a dog's toy.
Punctuation carries no visual meaning in a subtitle and only dilutes the vocabulary.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

PAD, START, END, UNK = "<pad>", "<start>", "<end>", "<unk>"
SPECIALS = (PAD, START, END, UNK)

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens of a caption."""
    return _TOKEN.findall(text.lower())


@dataclass(frozen=True)
class Vocabulary:
    """Index <-> word mapping; the first four entries are always the specials."""

    itos: tuple[str, ...]

    def __post_init__(self) -> None:
        if tuple(self.itos[: len(SPECIALS)]) != SPECIALS:
            raise ValueError("vocabulary must start with " + ", ".join(SPECIALS))
        object.__setattr__(self, "_stoi", {w: i for i, w in enumerate(self.itos)})

    pad_id, start_id, end_id, unk_id = 0, 1, 2, 3

    @classmethod
    def build(cls, captions: Iterable[str], min_count: int = 5) -> "Vocabulary":
        """Words seen at least ``min_count`` times, most frequent first (ties alphabetical, so deterministic)."""
        counts = Counter(tok for c in captions for tok in tokenize(c))
        words = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
        return cls(SPECIALS + tuple(words))

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, word: str) -> bool:
        return word in self._stoi  # type: ignore[attr-defined]

    def index(self, word: str) -> int:
        return self._stoi.get(word, self.unk_id)  # type: ignore[attr-defined]

    def encode(self, text: str, max_length: int | None = None) -> list[int]:
        """<start> w1 .. wn <end>, with words beyond ``max_length`` dropped."""
        ids = [self.index(t) for t in tokenize(text)]
        if max_length is not None:
            ids = ids[:max_length]
        return [self.start_id, *ids, self.end_id]

    def decode(self, ids: Sequence[int]) -> str:
        """Words up to the first <end>, specials removed."""
        words = []
        for i in ids:
            i = int(i)
            if i == self.end_id:
                break
            if i >= len(SPECIALS):
                words.append(self.itos[i])
        return " ".join(words)
