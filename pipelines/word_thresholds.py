"""Presence-aware decoding beyond people: a threshold per detector word under which the word is not said.

The decoder's language prior says "a man is playing a video game" or "a dog" over
footage that shows neither (issue #13). The concept detectors (``captioner/detect.py``)
can tell: this job gives each reliable detector word a threshold, set like the person
threshold, on held-out pictures (``pipelines.train_detectors``'s held-out split:
Flickr8k dev, MSR-VTT val frames, Conceptual Captions keys divisible by 20), so that
``--recall`` of the held-out pictures that show the word keep it. Only words whose
held-out average precision reaches ``--min-ap`` get one: a weak detector would ban
a word that is there.

Writes a copy of ``--model`` into ``--out`` with ``"word_thresholds"`` in its
detectors entry (the tensors are untouched), and a report of each word's AP and
threshold (``$CAPTIONER_WORK/runs/word_thresholds/<out name>.json``). The copy is evaluated like any model (``pipelines.evaluate --model``).

    python -m pipelines.word_thresholds --model weights --out .cache/models/words-95
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from captioner.detect import PERSON_WORDS, load_detectors
from captioner.weights import read_manifest, update_manifest

from .common import CACHE, out_folder, share, staged_model
from .train_detectors import average_precision, labelled_sets, stack

log = logging.getLogger("word_thresholds")


def thresholds(probs: np.ndarray, labels: np.ndarray, words: list[str], recall: float, min_ap: float,
               min_positives: int) -> tuple[dict[str, float], dict[str, dict]]:
    """Per word (person words excluded: presence has its own rule, and which person is not
    presence): the threshold keeping ``recall`` of its positives."""
    chosen, report = {}, {}
    for j, w in enumerate(words):
        pos = labels[:, j] > 0
        if w == "person" or w in PERSON_WORDS or pos.sum() < min_positives:
            continue
        ap = average_precision(probs[:, j], labels[:, j])
        t = float(np.quantile(probs[pos, j], 1 - recall))
        report[w] = {"AP": round(100 * ap, 1), "positives": int(pos.sum()), "threshold": round(t, 4),
                     "negatives_banned": round(float((probs[~pos, j] < t).mean()), 3)}
        if ap >= min_ap:
            chosen[w] = round(t, 4)
    return chosen, report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=Path("weights"))
    ap.add_argument("--out", type=out_folder, required=True, help="model folder to write (a copy of --model with the thresholds)")
    ap.add_argument("--recall", type=share, default=0.95, help="held-out pictures showing a word that keep it")
    ap.add_argument("--min-ap", type=float, default=0.5, help="held-out average precision a word's detector needs")
    ap.add_argument("--min-positives", type=int, default=20, help="held-out pictures showing the word, at least")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    manifest = read_manifest(args.model)
    det = load_detectors(args.model, manifest)
    if det is None:
        raise SystemExit(f"error: {args.model} has no detectors")
    words = list(det.words)
    sets, labels = labelled_sets(manifest["encoder"])
    x, y, _ = stack(manifest["encoder"], sets, labels, words, "heldout")
    probs = np.concatenate([det.frame_probs(x[s : s + 512]) for s in range(0, len(x), 512)])
    chosen, report = thresholds(probs, y, words, args.recall, args.min_ap, args.min_positives)
    log.info("%d held-out pictures; %d of %d words get a threshold (AP >= %.2f)", len(x), len(chosen), len(report), args.min_ap)
    rule = f"held-out pictures showing the word keep it for {args.recall:.0%} of them; words with held-out AP >= {args.min_ap}"
    with staged_model(args.out, start=args.model) as stage:  # a copy of --model with the thresholds; model.json last
        update_manifest(stage, lambda m: m["detectors"].update(word_thresholds=chosen, word_threshold_rule=rule))
    report_path = CACHE / "runs" / "word_thresholds" / f"{args.out.name}.json"
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(report, indent=1) + "\n")
    log.info("wrote %s (%s)", args.out, ", ".join(f"{w} {t:.2f}" for w, t in list(chosen.items())[:30]))


if __name__ == "__main__":
    main()
