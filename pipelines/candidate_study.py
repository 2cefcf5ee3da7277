"""How much a better choice among each segment's finished captions could give, and whether other weights find it.

For a video segment the beam search and the consensus (captions of the nearest training
videos) leave ~11 finished candidates; ``Captioner._rerank`` takes the one with the best
decoder score + ``rerank_weight`` x cos(its word vectors, the segment's vector) +
``consensus_weight`` x its consensus. This job captions a split's videos in-process as
``captioner run`` does and records, for every candidate of every segment, those three parts
and two that the choice does not use:

* ``prior``: the decoder's score of the caption from no picture and no concepts (its
  language prior); score - w x prior is PMI (mutual-information) decoding, which
  penalises what the decoder says of anything ("a person is playing a video game");
* ``minilm``: the cosine of the caption's own all-MiniLM-L6-v2 embedding with the segment's
  vector (the word vectors are a bag-of-words fit of it).

Each candidate of the segment whose caption became the video's longest cue (what the CLI
protocol scores) gets its CIDEr-D against the video's references with the official scorer
(document frequencies over the split's references, as in the corpus score). It prints the
shipped choice's CIDEr (equal to ``score_json``'s), the oracle (each video's best
candidate), and for weight grids of the parts the in-sample best and the 5-fold
cross-validated CIDEr (weights chosen on four fifths of the videos, scored on the rest).

    python -m pipelines.candidate_study --split val --out .cache/runs/candidate_study.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from captioner.config import CaptionConfig
from captioner.pipeline import Captioner
from captioner.search import Hypothesis, run_searches, score_steps
from captioner.vocab import fix_articles

from .evaluate import MSRVTT_VIDEOS, longest_text

log = logging.getLogger("candidate_study")


class RecordingCaptioner(Captioner):
    """A Captioner that keeps every segment's candidates and their score parts (``records``, per video)."""

    def __init__(self, config: CaptionConfig, embedder: Any) -> None:
        super().__init__(config)
        self.embedder = embedder
        self.video = ""
        self.records: dict[str, list[dict]] = {}
        self._prior_state = self.decoder.start(np.zeros((0, self.decoder._feat_w.shape[0]), np.float32))

    def _rerank(self, hyp: Hypothesis, vector: np.ndarray | None, weight: float,
                consensus: dict[tuple[int, ...], float] | None = None, agree: float = 0.0) -> Hypothesis:
        chosen = super()._rerank(hyp, vector, weight, consensus, agree)
        if vector is None:
            return chosen
        cands = [h for h in (hyp, *hyp.alternatives) if np.isfinite(h.score)]
        seqs = list(dict.fromkeys(h.tokens for h in cands))
        start = self.vocab.start_for(self.config.decoding.video_style)
        prior = run_searches(self.decoder.log_probs, [score_steps(
            self._prior_state, start, self.vocab.end_id, seqs, length_penalty=self.config.decoding.length_penalty)])[0]
        prior_of = {h.tokens: h.score for h in (prior, *prior.alternatives)}
        texts = [fix_articles(self.vocab.decode(h.tokens)) for h in cands]
        minilm = self.embedder.embed(texts) @ vector
        words = self.vse.caption_vectors([h.tokens for h in cands]) @ vector
        self.records.setdefault(self.video, []).append({
            "chosen": fix_articles(self.vocab.decode(chosen.tokens)),
            "candidates": [{"text": t, "score": h.score, "cos": float(c), "consensus": (consensus or {}).get(h.tokens, 0.0),
                            "prior": prior_of[h.tokens], "minilm": float(m)}
                           for h, t, c, m in zip(cands, texts, words, minilm)]})
        return chosen


PARTS = ("score", "cos", "consensus", "prior", "minilm")


def candidate_table(records: dict[str, list[dict]], longest: dict[str, str]) -> dict[str, list[dict]]:
    """Video -> the candidates of the segment whose chosen caption is the video's longest cue's text."""
    out = {}
    for video, text in longest.items():
        segs = [s for s in records.get(video, []) if s["chosen"] == text]
        if segs:
            out[video] = segs[0]["candidates"]
    return out


def cider_per_candidate(table: dict[str, list[dict]], refs: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """CIDEr-D (x100) of every candidate against its video's references, with the official tokenizer and scorer.

    One scorer call per candidate rank (each video once in each, as in a corpus score, so the
    document frequencies are the split's); a video with fewer candidates repeats its first."""
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    videos = sorted(table)
    tok = PTBTokenizer()
    gts = tok.tokenize({v: [{"caption": c} for c in refs[v]] for v in videos})
    width = max(len(table[v]) for v in videos)
    scores = np.zeros((len(videos), width))
    for j in range(width):
        res = tok.tokenize({v: [{"caption": table[v][min(j, len(table[v]) - 1)]["text"] or "a"}] for v in videos})
        scores[:, j] = 100 * np.asarray(Cider().compute_score(gts, res)[1])
    return {v: scores[i, : len(table[v])] for i, v in enumerate(videos)}


def choose(parts: Sequence[np.ndarray], cider: Sequence[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """Each video's CIDEr when its candidate with the best parts . (1, weights) is chosen."""
    return np.array([y[int(np.argmax(p @ np.r_[1.0, weights]))] for p, y in zip(parts, cider)])


def cross_validated(parts: list[np.ndarray], cider: list[np.ndarray], grid: list[tuple[float, ...]],
                    folds: int = 5, seed: int = 0) -> tuple[float, list[tuple[float, ...]]]:
    """Mean CIDEr of choices whose weights were picked (best mean CIDEr in ``grid``) on the other folds."""
    fold = np.random.default_rng(seed).permutation(len(parts)) % folds
    got = np.zeros(len(parts))
    picked = []
    for k in range(folds):
        train = [i for i in range(len(parts)) if fold[i] != k]
        test = [i for i in range(len(parts)) if fold[i] == k]
        best = max(grid, key=lambda w: choose([parts[i] for i in train], [cider[i] for i in train], np.array(w)).mean())
        got[test] = choose([parts[i] for i in test], [cider[i] for i in test], np.array(best))
        picked.append(best)
    return float(got.mean()), picked


def study(table: dict[str, list[dict]], cider: dict[str, np.ndarray], shipped: dict[str, float]) -> dict[str, Any]:
    videos = sorted(table)
    parts = [np.array([[c[p] for p in PARTS] for c in table[v]]) for v in videos]
    ys = [cider[v] for v in videos]
    w_ship = np.array([shipped["cos"], shipped["consensus"], 0.0, 0.0])
    out: dict[str, Any] = {"videos": len(videos), "mean_candidates": float(np.mean([len(y) for y in ys])),
                           "shipped_choice": float(choose(parts, ys, w_ship).mean()),
                           "oracle": float(np.mean([y.max() for y in ys])),
                           "decoder_score_only": float(choose(parts, ys, np.zeros(4)).mean())}
    grids = {
        "cos, consensus, prior (PMI)": list(itertools.product(
            [0, 2.5, 5, 7.5], [0, 1.5, 3, 5], [-0.6, -0.4, -0.2, 0], [0])),
        "cos, consensus, MiniLM cosine": list(itertools.product(
            [0, 2.5, 5], [0, 3, 5], [0], [0, 2.5, 5, 7.5, 10])),
    }
    for name, grid in grids.items():
        best = max(grid, key=lambda w: choose(parts, ys, np.array(w)).mean())
        cv, picked = cross_validated(parts, ys, grid)
        out[name] = {"in_sample_best": {"weights": best, "cider": float(choose(parts, ys, np.array(best)).mean())},
                     "cross_validated": cv, "fold_weights": picked}
    return out


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("captioner").setLevel(logging.WARNING)  # not a line per video
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", default="val", help="folder under .cache/msrvtt with videoNNNN.mp4 and refs.tsv")
    ap.add_argument("--limit", type=int, default=0, help="only the first N videos (0: all)")
    ap.add_argument("--out", type=Path, help="write the numbers as JSON here")
    args = ap.parse_args()
    from captioner.embed import TextEmbedder

    folder = MSRVTT_VIDEOS / args.split
    videos = sorted(folder.glob("video*.mp4"))[: args.limit or None]
    if not videos:
        raise SystemExit(f"error: no videos in {folder}: build them with ../shared/tools/msrvtt_videos.py")
    refs: dict[str, list[str]] = {}
    for line in (folder / "refs.tsv").read_text(encoding="utf-8").splitlines():
        vid, _, cap = line.partition("\t")
        refs.setdefault(vid, []).append(cap)
    cap = RecordingCaptioner(CaptionConfig(), TextEmbedder())
    longest = {}
    for i, path in enumerate(videos):
        cap.video = path.stem
        longest[path.stem] = longest_text(cap.caption_video(path).cues)
        if i % 50 == 0:
            log.info("%d/%d videos", i, len(videos))
    table = candidate_table(cap.records, longest)
    d = cap.config.decoding
    report = study(table, cider_per_candidate(table, refs), {"cos": d.rerank_weight, "consensus": d.consensus_weight})
    print(f"{report['videos']} videos, {report['mean_candidates']:.1f} candidates a segment; CIDEr of the choice: "
          f"shipped {report['shipped_choice']:.2f}, oracle {report['oracle']:.2f}, "
          f"decoder score alone {report['decoder_score_only']:.2f}")
    for name in (k for k, v in report.items() if isinstance(v, dict)):
        r = report[name]
        print(f"weights of {name}: in-sample best {r['in_sample_best']['weights']} "
              f"{r['in_sample_best']['cider']:.2f}, 5-fold cross-validated {r['cross_validated']:.2f}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
