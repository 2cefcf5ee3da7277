"""Speed of ``captioner search`` (issue #16): indexing and a query over 100,000 cues.

    python -m pipelines.search_bench [--cues 100000] [--distinct 100000] [--sample 512]

1. Embedding speed: all-MiniLM-L6-v2 (embed.py) on ``--sample`` distinct caption-like
   texts (caption + concept words, as the index embeds them), texts/s: in NumPy (calls of
   fewer than ``ONNX_FROM`` texts, as queries) and on ONNX Runtime (larger calls, as indexing).
   Indexing costs one embedding per distinct text (two per cue: the caption, and
   the caption with its concept words); texts seen before are not embedded again.
2. An archive of ``--cues`` cues in 1,000 JSON files, ``--distinct`` distinct
   captions, is indexed by find.py with a stand-in embedder (random unit vectors,
   so that this step measures reading, bookkeeping and writing, not MiniLM) and
   the indexing time with the real model is estimated from (1).
3. With that index on disk: a search as the CLI does it (load the model, load the
   index, check every file's signature, embed the query, score every cue, keep
   the top 10), several queries, wall time each; and one changed file.

Run it on an idle machine; the numbers go into the README (Search).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import positive_int

SUBJECTS = ["a man", "a woman", "a girl", "a boy", "two men", "a group of people", "a dog", "a cat", "a child",
            "a person", "a team", "a chef", "a singer", "a band", "people", "a player", "a car", "a bird"]
VERBS = ["is playing", "is cooking", "is talking about", "is driving", "is running on", "is singing with",
         "is dancing in", "is showing", "is riding", "is walking on", "is swimming in", "is sitting on"]
OBJECTS = ["a guitar", "the beach", "a kitchen", "a road", "a stage", "a football", "the snow", "a table", "a horse",
           "a field", "a computer", "a pool", "a video game", "the street", "a bowl of soup", "a basketball court"]
CONCEPTS = ["guitar", "dog", "car", "beach", "stage", "ball", "kitchen", "bowl", "horse", "snow", "computer",
            "tree", "water", "food", "road", "shirt", "hat", "table", "phone", "bicycle"]


def captions(n: int, rng: random.Random) -> list[str]:
    """``n`` distinct caption-like sentences (numbered once the grammar runs out)."""
    out, seen = [], set()
    while len(out) < n:
        t = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}"
        if t in seen:
            t = f"{t} number {len(out)}"
        seen.add(t)
        out.append(t)
    return out


class RandomVectors:
    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)

    def embed(self, texts):
        v = self.rng.standard_normal((len(texts), 384)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cues", type=positive_int, default=100_000)
    ap.add_argument("--distinct", type=positive_int, default=100_000, help="distinct captions among the cues")
    ap.add_argument("--sample", type=positive_int, default=512, help="texts embedded to measure MiniLM's speed")
    ap.add_argument("--files", type=positive_int, default=1000)
    args = ap.parse_args()
    rng = random.Random(0)

    from captioner.embed import ONNX_FROM, TextEmbedder
    from captioner.find import Searcher, doc_text, update_index
    from captioner.vse import encode_vector

    t = time.perf_counter()
    embedder = TextEmbedder()
    t_load = time.perf_counter() - t
    sample = [doc_text(c, rng.sample(CONCEPTS, 3), 3) for c in captions(args.sample, rng)]
    embedder.embed(sample[:8])
    # NumPy: calls of fewer than ONNX_FROM texts (queries); ONNX Runtime: larger calls (indexing)
    t = time.perf_counter()
    for i in range(0, len(sample), ONNX_FROM - 1):
        embedder.embed(sample[i:i + ONNX_FROM - 1])
    numpy_per_s = len(sample) / (time.perf_counter() - t)
    t = time.perf_counter()
    embedder.embed(sample[:ONNX_FROM])  # makes or opens the ONNX Runtime copy
    t_session = time.perf_counter() - t
    t = time.perf_counter()
    embedder.embed(sample)
    t_embed = time.perf_counter() - t
    texts_per_s = len(sample) / t_embed
    engine = "ONNX Runtime" if embedder._session is not None else "NumPy (no ONNX Runtime copy)"

    pool = captions(args.distinct, rng)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "archive"
        per_file = args.cues // args.files
        visual = RandomVectors()
        for f in range(args.files):
            # each cue with a visual vector, as a model with vse.safetensors writes them (search scores it too)
            vecs = visual.embed([""] * per_file)
            cues = [{"start": 4.0 * i, "end": 4.0 * i + 4, "text": pool[(f * per_file + i) % len(pool)],
                     "confidence": 0.4, "concepts": [[w, 0.5] for w in rng.sample(CONCEPTS, 3)],
                     "vector": encode_vector(vecs[i])}
                    for i in range(per_file)]
            path = root / f"part{f // 100}" / f"video{f:05d}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"metadata": {"video": {"path": f"/archive/video{f:05d}.mp4"}}, "cues": cues}))
        t = time.perf_counter()
        idx, st = update_index(root, RandomVectors())
        t_index = time.perf_counter() - t
        n_texts = len(idx.texts)
        size = (root / ".captioner-search" / "index.npz").stat().st_size

        queries = ["a dog running on a beach", "someone cooking soup in a kitchen", "a band playing on stage",
                   "a car driving down the road in the snow", "kids playing football"]
        t = time.perf_counter()
        searcher = Searcher([root], embedder=embedder)  # what a fresh CLI process does (model already loaded)
        t_open = time.perf_counter() - t
        per_query = []
        for q in queries:
            t = time.perf_counter()
            hits = searcher.search(q, 10).hits
            per_query.append(time.perf_counter() - t)
        assert len(hits) == 10
        # one changed file: read again, its new texts embedded by the stand-in (bookkeeping cost only)
        changed = root / "part0" / "video00000.json"
        doc = json.loads(changed.read_text())
        doc["cues"][0]["text"] = "a brand new caption"
        changed.write_text(json.dumps(doc))
        t = time.perf_counter()
        _, st2 = update_index(root, RandomVectors())
        t_update = time.perf_counter() - t

    cold = t_load + t_open + per_query[0]
    rows = [
        ("MiniLM (NumPy) model load", f"{t_load:.2f} s"),
        ("embedding speed, queries (NumPy)", f"{numpy_per_s:.0f} texts/s ({len(sample)} caption + concept texts)"),
        (f"embedding speed, indexing ({engine})", f"{texts_per_s:.0f} texts/s; its session {t_session:.2f} s "
                                                   "(with the one-time export if not cached)"),
        ("archive", f"{len(idx)} cues in {args.files} JSON files, {n_texts} distinct texts to embed"),
        ("indexing without MiniLM (read, bookkeeping, write)", f"{t_index:.1f} s ({len(idx) / t_index:.0f} cues/s); index {size / 1e6:.1f} MB"),
        ("indexing with MiniLM, estimated", f"{t_index + n_texts / texts_per_s:.0f} s "
                                            f"({len(idx) / (t_index + n_texts / texts_per_s):.0f} cues/s)"),
        ("open the existing index (load, check every file)", f"{t_open:.2f} s"),
        ("one query (embed, score all cues, top 10)", f"{min(per_query) * 1000:.0f}-{max(per_query) * 1000:.0f} ms"),
        ("first search in a new process (model + index + query)", f"{cold:.2f} s"),
        ("update after one changed file", f"{t_update:.2f} s ({st2.changed} changed)"),
    ]
    for k, v in rows:
        print(f"{k:55s} {v}")


if __name__ == "__main__":
    main()
