"""Text-to-video retrieval with ``captioner search`` on MSR-VTT (issue #16).

The query is each video's first reference caption (``refs.tsv``: ``video<TAB>caption``),
the target that video; every video's JSON output (``captioner batch -f json``) is indexed
by find.py and a video is scored by the best of its cues (``--pool max``) or their mean.
Prints R@1, R@5, R@10 and the median rank, for the shipped ``SearchConfig`` and, with
``--grid``, for other weights (to choose them on val; never on test).

    python -m pipelines.retrieval --json /tmp/val-json --refs .cache/msrvtt/val/refs.tsv --grid
    python -m pipelines.retrieval --json .cache/msrvtt/test-json --refs .cache/msrvtt/test/refs.tsv

The index is kept in a scratch folder (``--index``), not inside the JSON folder.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from captioner.config import SearchConfig
from captioner.embed import TextEmbedder
from captioner.find import Searcher, WordScorer, cue_scores
from captioner.outputs import write_atomic

from .common import CACHE, out_file, read_tsv


def first_refs(path: Path) -> dict[str, str]:
    refs: dict[str, str] = {}
    for row in read_tsv(path):  # a missing file: one line, not a traceback
        if len(row) == 2 and row[0] and row[1] and row[0] not in refs:
            refs[row[0]] = row[1].strip()
    return refs


def ranks(video_scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """1-based rank of each query's target among all videos (ties count against the target)."""
    t = video_scores[np.arange(len(targets)), targets]
    return (video_scores >= t[:, None]).sum(1)


def summary(r: np.ndarray) -> dict[str, float]:
    return {"R@1": 100 * float((r <= 1).mean()), "R@5": 100 * float((r <= 5).mean()),
            "R@10": 100 * float((r <= 10).mean()), "median_rank": float(np.median(r))}


def pool_scores(scores: np.ndarray, video_of: np.ndarray, n_videos: int, pool: str) -> np.ndarray:
    """[queries, cues] -> [queries, videos]: max or mean over each video's cues."""
    out = np.full((scores.shape[0], n_videos), -np.inf, np.float32)
    if pool == "max":
        for v in range(n_videos):
            cols = video_of == v
            if cols.any():
                out[:, v] = scores[:, cols].max(1)
    else:
        for v in range(n_videos):
            cols = video_of == v
            if cols.any():
                out[:, v] = scores[:, cols].mean(1)
    return out


def hubness_rows(measure, shipped: np.ndarray, qv: np.ndarray, idx, base: SearchConfig) -> None:
    """Two corrections tried on val (not shipped; README: Search), with the shipped model's caption memory.

    - CSLS (Lample et al. 2018): a cue whose vector is close to many captions is a "hub" that
      tops many queries; its picture similarity loses ``beta`` x its mean cosine with its ``k``
      nearest memory captions (the training videos' mean caption embeddings).
    - Query expansion into the memory's keys: the query also looks for where its ``k`` nearest
      memory captions' videos sit under the map (softmax-weighted keys, temperature 0.05), mixed
      into the query with weight ``lam`` for the cue's own picture similarity.
    """
    from captioner.config import DEFAULT_WEIGHTS_DIR
    from captioner.vse import load_vse
    from captioner.weights import read_manifest

    emb = load_vse(DEFAULT_WEIGHTS_DIR, read_manifest(DEFAULT_WEIGHTS_DIR))
    if emb is None or emb.memory is None or not idx.has_visual.any():
        return
    unit = lambda m: m / np.linalg.norm(m, axis=-1, keepdims=True)  # noqa: E731
    bank, keys = unit(emb.memory.values.astype(np.float32)), unit(emb.memory.keys.astype(np.float32))
    vis = idx.visual.astype(np.float32) / 127.0
    near = np.sort(vis @ bank.T, axis=1)
    for k in (10, 50, 200):
        for beta in (0.25, 0.5, 1.0):
            measure(f"CSLS against the memory, k {k}, beta {beta}, max",
                    shipped - base.visual_weight * beta * near[:, -k:].mean(1)[None, :])
    sq = qv @ bank.T
    own = qv @ vis.T
    for k in (10, 50):
        top = np.argsort(-sq, axis=1)[:, :k]
        w = np.exp((np.take_along_axis(sq, top, 1) - sq.max(1, keepdims=True)) / 0.05)
        qk = unit(np.einsum("qk,qkd->qd", w / w.sum(1, keepdims=True), keys[top]))
        for lam in (0.25, 0.5):
            moved = unit((1 - lam) * qv + lam * qk) @ vis.T
            measure(f"query expanded into memory keys, k {k}, lam {lam}, max",
                    shipped + base.visual_weight * (1 - base.context_weight) * (moved - own))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, required=True, help="folder of captioner JSON outputs (videoNNNN.json)")
    ap.add_argument("--refs", type=Path, required=True, help="refs.tsv: video<TAB>reference caption")
    ap.add_argument("--index", type=Path, default=CACHE / "retrieval-index", help="scratch folder for the index")
    ap.add_argument("--grid", action="store_true", help="also try other weights (choose them on val only)")
    ap.add_argument("--out", type=out_file, help="write the numbers as JSON here")
    args = ap.parse_args()

    refs = first_refs(args.refs)
    embedder = TextEmbedder()
    base = SearchConfig()
    t0 = time.perf_counter()
    index_file = args.index / f"{args.json.resolve().name}.npz"
    searcher = Searcher([args.json], base, embedder, index_paths=[index_file])
    idx = searcher.indexes[0]
    t_index = time.perf_counter() - t0
    vids = [Path(p).name[: -len(".json")] for p in idx.paths]
    pos = {v: i for i, v in enumerate(vids)}
    queries = [(v, q) for v, q in refs.items() if v in pos]
    missing = sorted(set(refs) - set(pos))
    if not queries:  # np.stack of nothing: "need at least one array to stack"
        raise SystemExit(f"error: no JSON output in {args.json} for the videos of {args.refs} "
                         "(captioner batch VIDEOS -o FOLDER -f json)")
    targets = np.array([pos[v] for v, _ in queries])
    video_of = idx.file_of
    qv = embedder.embed([q for _, q in queries])
    sims = np.stack([idx.text_sims(q) for q in qv])  # [queries, texts]
    cap_sim, doc_sim = sims[:, idx.text_of], sims[:, idx.doc_of]
    words = WordScorer(idx, base)
    bm = np.stack([words.scores(q) for _, q in queries])
    results: dict[str, dict[str, float]] = {}

    def measure(name: str, cue: np.ndarray, pool: str = "max") -> None:
        results[name] = summary(ranks(pool_scores(cue, video_of, len(vids), pool), targets))

    # the shipped configuration, exactly as the CLI scores cues
    shipped = np.stack([cue_scores(idx, q, words, text, base) for q, (_, text) in zip(qv, queries)])
    measure("shipped SearchConfig (max over cues)", shipped)
    # query vs each cue's visual vector (vse.py); cues without one take their caption+concepts similarity
    vis_sim = np.where(idx.has_visual[None, :], (qv @ idx.visual.T.astype(np.float32)) / 127.0, doc_sim)
    if idx.has_visual.any():
        measure("picture only (visual vectors), max", vis_sim)
    if args.grid:
        for vw in (0.5, 0.7, 0.8, 0.9, 1.0):
            for cw in (0.0, 0.25, 0.5, 0.75, 1.0):
                conf = replace(base, visual_weight=vw, context_weight=cw)
                measure(f"visual_weight {vw}, context_weight {cw}, max",
                        np.stack([cue_scores(idx, q, words, text, conf) for q, (_, text) in zip(qv, queries)]))
        for vw in (0.5, 0.9):
            measure(f"visual_weight {vw} with the caption+concepts sentence, no context, mean",
                    (1 - vw) * doc_sim + vw * vis_sim, "mean")
        measure("caption only, first cue (one caption per video)",
                np.where(np.r_[True, video_of[1:] != video_of[:-1]][None, :], cap_sim, -np.inf))
        measure("caption only, max over cues", cap_sim)
        measure("caption only, mean over cues", cap_sim, "mean")
        measure("caption+concepts sentence only, max", doc_sim)
        measure("BM25 only, max", bm)
        hubness_rows(measure, shipped, qv, idx, base)
        for cw in (0.25, 0.5, 0.75):
            for ww in (0.0, 0.15, 0.3, 0.5):
                for pool in ("max", "mean"):
                    measure(f"concept_weight {cw}, word_weight {ww}, {pool}",
                            (1 - cw) * cap_sim + cw * doc_sim + ww * bm, pool)
    report = {"videos": len(vids), "queries": len(queries), "missing_outputs": len(missing), "cues": len(idx),
              "cues_with_vectors": int(idx.has_visual.sum()), "distinct_texts": len(idx.texts), "index_seconds": round(t_index, 2), "results": results,
              "config": base.__dict__}
    for name, r in results.items():
        print(f"{name:55s} R@1 {r['R@1']:5.1f}  R@5 {r['R@5']:5.1f}  R@10 {r['R@10']:5.1f}  median {r['median_rank']:.0f}")
    print(f"{len(queries)} queries over {len(vids)} videos, {len(idx)} cues ({len(idx.texts)} distinct texts); "
          f"{len(missing)} videos without output; index {t_index:.1f} s")
    if args.out:
        write_atomic(args.out, json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
