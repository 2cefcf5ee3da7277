"""Tokenizer and vocabulary, shared by training and inference.

One tokenizer for both sides: a caption is lower-cased and split into runs of
letters/digits (apostrophes kept inside words), so "A dog's toy." -> a dog's toy.
Punctuation carries no visual meaning in a subtitle and only dilutes the vocabulary.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:  # the rule's type only: the vocabulary (which config reads for its styles) needs no search code
    from .search import Follow

PAD, START, END, UNK = "<pad>", "<start>", "<end>", "<unk>"
SPECIALS = (PAD, START, END, UNK)
# Style tokens: a decoder trained with them starts a caption with "<video>", "<photo>" or
# "<web>" instead of <start>, so one network learns how each source's captions read (MSR-VTT's
# "a man is talking", Flickr/COCO's "a dog runs on the grass", alt text's "actor attends the
# premiere") and the caller picks the style. Appended after the words: older models lack them.
STYLES = ("video", "photo", "web")
CHOSEN_STYLES = ("video", "photo")  # the ones a user picks (--style); "web" is learnt only

#: The verb slot a model's grammar list guards (model.json "grammar", pipelines.grammar).
BE = ("is", "are")
#: The articles whose next word a model's grammar entry may restrict (model.json "grammar" "after_article").
ARTICLES = ("a", "an")

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
        # multi-word entries ("teddy bear", "hot dog") are single tokens: one concept, one
        # decision, and never confused with the "bear" or "dog" they end in
        phrases: dict[str, list[tuple[str, ...]]] = {}
        for w in self.itos[len(SPECIALS) :]:
            if " " in w:
                parts = tuple(w.split())
                phrases.setdefault(parts[0], []).append(parts)
        for v in phrases.values():
            v.sort(key=len, reverse=True)
        object.__setattr__(self, "_phrases", phrases)

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

    def start_for(self, style: str | None) -> int:
        """The token a caption in ``style`` starts with: its style token, or <start> if the model has none.

        ``style`` must be one of ``STYLES`` (or None): a typo ("vdieo") silently gave other captions, and
        "end" would have started a caption with <end>.
        """
        if style and style not in STYLES:
            raise ValueError(f"unknown caption style {style!r}: use {', '.join(STYLES)}")
        return self._stoi.get(f"<{style}>", self.start_id) if style else self.start_id  # type: ignore[attr-defined]

    @property
    def style_ids(self) -> tuple[int, ...]:
        """Ids of the style tokens this vocabulary has: never part of a caption, so never emitted."""
        return tuple(self._stoi[f"<{s}>"] for s in STYLES if f"<{s}>" in self._stoi)  # type: ignore[attr-defined]

    def words(self, text: str) -> list[str]:
        """Tokens of a caption, with the vocabulary's multi-word entries joined into one."""
        toks = tokenize(text)
        phrases = self._phrases  # type: ignore[attr-defined]
        if not phrases:
            return toks
        out: list[str] = []
        i = 0
        while i < len(toks):
            for p in phrases.get(toks[i], ()):
                if tuple(toks[i : i + len(p)]) == p:
                    out.append(" ".join(p))
                    i += len(p)
                    break
            else:
                out.append(toks[i])
                i += 1
        return out

    def encode(self, text: str, max_length: int | None = None, style: str | None = None) -> list[int]:
        """<start> w1 .. wn <end> (<start> = ``style``'s token if given), words beyond ``max_length`` dropped."""
        ids = [self.index(t) for t in self.words(text)]
        if max_length is not None:
            ids = ids[:max_length]
        return [self.start_for(style), *ids, self.end_id]

    def decode(self, ids: Sequence[int]) -> str:
        """Words up to the first <end>, specials removed."""
        words = []
        for i in ids:
            i = int(i)
            if i == self.end_id:
                break
            if i >= len(SPECIALS) and not self.itos[i].startswith("<"):  # a style token is no word
                words.append(self.itos[i])
        return " ".join(words)


#: Spellings that start with a vowel letter but a consonant sound ("a unicycle", "a ukulele", "a urinal",
#: "a utility truck", "a european", "a one way street"), and those of them that do not ("an unidentified").
_YOU_SOUND = ("uni", "use", "usu", "usa", "uten", "uti", "uto", "ute", "uk", "urin", "ura", "ure", "uf", "eu", "ewe",
              "one", "once")
_NOT_YOU_SOUND = ("unin", "unimp", "unid")
_SILENT_H = ("hour", "honest", "honor", "honour", "heir")
#: Single letters said with a vowel sound ("an x box", "an m", but "a u turn", "a t shirt").
_VOWEL_LETTERS = frozenset("aefhilmnorsx")
#: Words said letter by letter whose first letter's name starts with a vowel ("an nba game", "an suv", "an xbox").
_LETTER_WORDS = frozenset("fps hbo hd hr lmfao mma mtv nba nbc nfl rv suv xbox".split())
_DIGITS = re.compile(r"\d+")


def _number_starts_with_a_vowel(digits: str) -> bool:
    """Whether a number is read starting with a vowel: eight..., eleven, eighteen ("an 8 year old", "an 80s song",
    "an 18 wheeler", "an 1800s house", "an 11000 foot peak"; "a 180", "a 100", "a 1989 car").

    Read in groups of three from the right (a four-digit number as a year: "18|00"): the first group decides.
    """
    lead = digits[:2] if len(digits) == 4 else digits[: len(digits) % 3 or 3]
    return lead.startswith("8") or lead in ("11", "18")


def _vowel_sound(word: str) -> bool:
    """Whether "an" goes before ``word`` (by spelling, with the usual exceptions)."""
    number = _DIGITS.match(word)
    if number:
        return _number_starts_with_a_vowel(number.group())
    if len(word) == 1:
        return word in _VOWEL_LETTERS
    if word in _LETTER_WORDS or word.startswith(_SILENT_H):
        return True
    return word[:1] in "aeiou" and not (word.startswith(_YOU_SOUND) and not word.startswith(_NOT_YOU_SOUND))


def fix_articles(text: str) -> str:
    """"a elephant" -> "an elephant", "an dog" -> "a dog", by how the next word starts when said:
    "a ukulele", "an hour", "an 8 year old boy", "an x box".

    The decoder picks the article before it picks the noun, and a copied concept
    word ("elephant", "umbrella") may not be the noun it had in mind.
    """
    words = text.split(" ")
    for i in range(len(words) - 1):
        if words[i] not in ("a", "an"):
            continue
        words[i] = "an" if _vowel_sound(words[i + 1]) else "a"
    return " ".join(words)


def follow_rules(vocab: Vocabulary, grammar: Mapping[str, Any]) -> Follow | None:
    """The search's ``follow`` rule from a model's ``grammar`` entry (pipelines.grammar).

    {id of is/are: ids NOT allowed after it (every word but the listed ones, and
    ``<end>``: a caption does not stop mid-sentence)}; {id of a/an: the ids of the
    words banned after it ("a sunglasses")}; {(id of a/an, id of a modifier): the only
    ids allowed after the pair ("a makeup" + "tutorial", not + ``<end>``)}. None when
    the model lists nothing (every older model): nothing is restricted.
    """
    if not grammar:
        return None
    rules: Follow = {}
    words = grammar.get("after_be")
    if words:
        allowed = {vocab.index(w) for w in words} - {vocab.unk_id}
        blocked = np.array(sorted(set(range(len(vocab))) - allowed), dtype=np.int64)
        rules.update({vocab.index(w): blocked for w in BE if vocab.index(w) != vocab.unk_id})
    article = grammar.get("after_article") or {}
    articles = [vocab.index(w) for w in ARTICLES if vocab.index(w) != vocab.unk_id]
    banned = {vocab.index(w) for w in article.get("banned", ())} - {vocab.unk_id}
    for word, after in (article.get("then") or {}).items():
        if word in vocab:
            only = np.array(sorted({vocab.end_id if w == END else vocab.index(w) for w in after} - {vocab.unk_id}),
                            dtype=np.int64)
            if len(only):
                rules.update({(a, vocab.index(word)): only for a in articles})
            else:  # nothing may follow "a <word>" (189 of the shipped 452): the pair left no word at all
                banned.add(vocab.index(word))
    if banned:
        rules.update({a: np.array(sorted(banned), dtype=np.int64) for a in articles})
    return rules or None
