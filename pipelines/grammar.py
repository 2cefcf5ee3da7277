"""Which words may follow "is"/"are", and "a"/"an", in a caption, learnt from the training captions.

The decoder copies concept words ("onions", "gate", "people") from its concept
slots. In a short segment it sometimes copies one into the verb slot: "a woman is
green onions", "a man is people on a balance beam". A word belongs after "is"/"are"
if the training captions put it there often enough *for that word*: "playing"
follows "is"/"are" in 51 % of its MSR-VTT uses, "inside" in 4.5 %, "people" in
0.5 %, "onions" never. The list is written into the model's ``model.json``
(``"grammar": {"after_be": [...]}``) and the search (``search.py``, rule
``follow``) lets only these words follow "is"/"are".

The same counts keep plural and mass nouns from following "a"/"an" ("a woman is
talking about a makeup", "a man in a sunglasses"): a word the training captions
almost never put after "a"/"an" ("sunglasses" 0 of 315 uses, "people" 0.2 %) may not
follow it (``"after_article": {"banned": [...]}``); a word they put there in a small
share of its uses, as a noun's modifier ("a makeup tutorial", "a hair dryer", "a food
dish": 7.5, 3.6, 5.9 %), may follow "a"/"an" only before a word the training
captions put after that pair ("then": "a makeup" + "tutorial", never "a makeup" and the
end, while "a dough" and the end is said 12 times). Adjectives and countable nouns
("a red car", "a dress") follow "a"/"an" in a large share of their uses and are free,
unless there they almost always begin one of a few phrases ("a swimming pool", "a group
of": then they get a "then" list too). A plural too rare to judge ("sneakers") is banned
when it never follows "a"/"an" and its singular is free there.

And they say which words lead only to a person: when the presence head sees nobody,
the person words are banned, and a word that the training captions put almost only
before a person word ("young": 92 % of its uses; "elderly", "bearded", "teenage") was
left without its noun ("a black and white photo of a young little talking"). Such
words (``"before_person"``: before a person word, or before another such word, as in
"a young blonde haired woman") are banned with the person words (``detect.AbsentWords``).

Counts come from training text only: MSR-VTT train-split captions (no demo clip),
Flickr8k train captions, and the caption-only COCO and MSVD sentences minus
everything tested on (``common.text_sentences``).

    python -m pipelines.grammar --model weights
"""

from __future__ import annotations

import argparse
import logging
from collections import Counter, defaultdict
from typing import Any, Callable, Collection, Iterable

from captioner.detect import PERSON_WORDS
from captioner.vocab import ARTICLES, BE, END, Vocabulary, tokenize
from captioner.weights import read_manifest, update_manifest

from .common import DATA, captions_by_file, flickr_split, read_tsv, text_sentences
from .prepare_data import held_out_clips, msrvtt_ids

log = logging.getLogger("grammar")


def after_be(captions: Iterable[str], min_count: int = 5, min_share: float = 0.01) -> list[str]:
    """Words that follow "is"/"are" at least ``min_count`` times and in at least ``min_share`` of their uses.

    The share, not the count, is what separates "a man is cooking" from "a man is
    people": common nouns follow "is" now and then ("the grass is green"), but in a
    tiny share of their uses.
    """
    uses: Counter = Counter()
    after: Counter = Counter()
    for c in captions:
        words = tokenize(c)
        uses.update(words)
        after.update(b for a, b in zip(words, words[1:]) if a in BE)
    return sorted(w for w, n in after.items() if n >= min_count and n / uses[w] >= min_share)


def after_article(captions: Iterable[str], words: Callable[[str], list[str]] = tokenize, *, min_uses: int = 50,
                  ban_share: float = 0.01, modifier_share: float = 0.1, min_next: int = 2, min_after: int = 20,
                  top: int = 3, top_share: float = 0.9, end_share: float = 0.05, min_plural: int = 3) -> dict[str, Any]:
    """What may follow "a"/"an": {"banned": words never after it, "then": {word: words allowed after "a word"}}.

    Only words used at least ``min_uses`` times are judged: a rarer word's share says
    little. One that follows "a"/"an" in under ``ban_share`` of its uses is banned after
    it; one under ``modifier_share`` is said there as a modifier, so "a word" must go on
    with a word (or ``<end>``) that the captions put after it at least ``min_next`` times.
    So does a word that follows "a"/"an" often but, there, as the first word of a few
    phrases: at least ``min_after`` times after "a"/"an", ending the caption in under
    ``end_share`` of them, its ``top`` most usual next words in at least ``top_share``
    ("a swimming" + pool 155 of 175, "a frying" + pan, "a group" + of; the model's "a person
    is making a swimming cut into pieces"). A noun ("a car", "a man") goes on in many ways.
    A plural too rare to judge by its share (``min_plural`` to ``min_uses`` uses) is banned too when the
    captions never put it after "a"/"an" and its singular ("sneaker" of "sneakers", "berry" of "berries")
    is judged and said there freely (277 such words in the training captions: "balloons", "backpacks", "cameras").
    ``words`` splits a caption as the model's vocabulary does ("a teddy bear": one word).
    """
    uses: Counter = Counter()
    after: Counter = Counter()
    then: defaultdict[str, Counter] = defaultdict(Counter)
    for c in captions:
        ws = words(c) + [END]
        uses.update(ws[:-1])
        for a, b, nxt in zip(ws, ws[1:], ws[2:] + [END]):
            if a in ARTICLES:
                after[b] += 1
                then[b][nxt] += 1
    judged = sorted(w for w, n in uses.items() if n >= min_uses)
    banned = [w for w in judged if after[w] / uses[w] < ban_share]

    def singular_free(w: str) -> bool:
        forms = [w[:-3] + "y"] if w.endswith("ies") else []
        forms += [w[:-1], w[:-2]] if w.endswith("es") else [w[:-1]]
        return any(uses[f] >= min_uses and after[f] / uses[f] >= modifier_share for f in forms)

    banned += [w for w, n in uses.items() if min_plural <= n < min_uses and not after[w] and w.endswith("s")
               and not w.endswith("ss") and singular_free(w)]
    banned.sort()

    def phrase_start(w: str) -> bool:
        n = after[w]
        return (n >= min_after and then[w][END] < end_share * n
                and sum(k for _, k in then[w].most_common(top)) >= top_share * n)

    modifiers = [w for w in judged if ban_share <= after[w] / uses[w] < modifier_share
                 or (after[w] / uses[w] >= modifier_share and phrase_start(w))]
    return {"banned": banned,
            "then": {w: sorted(n for n, k in then[w].items() if k >= min_next) for w in modifiers}}


def before_person(captions: Iterable[str], person_words: Collection[str], words: Callable[[str], list[str]] = tokenize,
                  *, min_uses: int = 20, min_share: float = 0.8) -> list[str]:
    """Words used at least ``min_uses`` times, at least ``min_share`` of them just before a person word or a word
    that is itself one of these ("a young little girl"): found by growing the list until it stops changing."""
    caps = [words(c) for c in captions]
    uses = Counter(w for c in caps for w in c)
    found: set[str] = set()
    while True:
        leads = set(person_words) | found
        before = Counter(a for c in caps for a, b in zip(c, c[1:]) if b in leads)
        grown = {w for w, n in uses.items() if n >= min_uses and w not in person_words and before[w] / n >= min_share}
        if grown == found:
            return sorted(found)
        found = grown


def training_captions() -> list[str]:
    """The training text the rule is counted over (see the module docstring)."""
    mv = [(vid, c) for vid, c in read_tsv(DATA / "text" / "msrvtt_captions_all.tsv")]
    train_ids = set(msrvtt_ids("train", {vid for vid, _ in mv}, held_out_clips()))
    caps = [c for vid, c in mv if vid in train_ids]
    fl = captions_by_file(DATA / "flickr8k" / "captions.tsv")
    caps += [c for n in flickr_split("train") for c in fl.get(n, [])]
    caps += [c for _, c in text_sentences(("coco", "msvd"))]
    return caps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="model folder whose model.json gets the list")
    ap.add_argument("--min-count", type=int, default=5)
    ap.add_argument("--min-share", type=float, default=0.01)
    ap.add_argument("--person-share", type=float, default=0.8,
                    help="share of a word's uses before a person word that bans it with them")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    caps = training_captions()
    words = after_be(caps, args.min_count, args.min_share)
    vocab = Vocabulary(tuple(read_manifest(args.model)["vocab"]))
    article = after_article(caps, vocab.words)
    article = {"banned": [w for w in article["banned"] if w in vocab],
               "then": {w: [n for n in nxt if n in vocab or n == END]
                        for w, nxt in article["then"].items() if w in vocab}}
    person = [w for w in before_person(caps, PERSON_WORDS, vocab.words, min_share=args.person_share) if w in vocab]
    update_manifest(args.model, lambda m: m.update(grammar={
        "after_be": words, "after_article": article, "before_person": person,
        "source": f"pipelines.grammar over {len(caps)} training captions "
                  f"(min count {args.min_count}, min share {args.min_share}; after a/an: after_article's defaults; "
                  f"before a person word: share {args.person_share})"}))
    log.info("%d words may follow is/are; after a/an %d are banned and %d only as a modifier; %d go with the person "
             "words (of %d captions); written to %s/model.json",
             len(words), len(article["banned"]), len(article["then"]), len(person), len(caps), args.model)


if __name__ == "__main__":
    main()
