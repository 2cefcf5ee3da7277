"""Which words may follow "is"/"are" in a caption, learnt from the training captions.

The decoder copies concept words ("onions", "gate", "people") from its concept
slots. In a short segment it sometimes copies one into the verb slot: "a woman is
green onions", "a man is people on a balance beam". A word belongs after "is"/"are"
if the training captions put it there often enough *for that word*: "playing"
follows "is"/"are" in 51 % of its MSR-VTT uses, "inside" in 4.5 %, "people" in
0.5 %, "onions" never. The list is written into the model's ``model.json``
(``"grammar": {"after_be": [...]}``) and the search (``search.py``, rule
``follow``) lets only these words follow "is"/"are".

Counts come from training text only: MSR-VTT train-split captions (no demo clip),
Flickr8k train captions, and the caption-only COCO and MSVD sentences minus
everything tested on (``common.text_sentences``).

    python -m pipelines.grammar --model weights
"""

from __future__ import annotations

import argparse
import logging
from collections import Counter
from typing import Iterable

from captioner.vocab import BE, tokenize
from captioner.weights import update_manifest

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
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    caps = training_captions()
    words = after_be(caps, args.min_count, args.min_share)
    update_manifest(args.model, lambda m: m.update(grammar={
        "after_be": words, "source": f"pipelines.grammar over {len(caps)} training captions "
                                     f"(min count {args.min_count}, min share {args.min_share})"}))
    log.info("%d words may follow is/are (of %d captions); written to %s/model.json", len(words), len(caps), args.model)


if __name__ == "__main__":
    main()
