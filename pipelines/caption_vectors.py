"""Give a model's search vectors a vector per vocabulary word, for choosing among beam captions (``captioner/vse.py``).

At run time the pipeline picks, among the captions a beam search finished for a video
segment, the one whose score plus ``DecodingConfig.rerank_weight`` x cos(caption,
segment vector) is highest. Running MiniLM on every candidate would cost ~10 ms a
caption on 2 cores (~5x the decoder's time per segment), so a caption's vector is
the mean of its words' vectors instead, and those are fitted here: ridge regression
from each training caption's bag of words (decoder vocabulary, each word 1/n) to its
MiniLM embedding, over MSR-VTT train captions and Flickr8k train captions
(the embeddings ``train_vse`` caches; missing ones are embedded). The job reports how
close the fitted vectors come to MiniLM on held-out captions (mean cosine).

    python -m pipelines.caption_vectors --model weights --text-cache .cache/runs/vse
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from captioner.vocab import Vocabulary
from captioner.vse import load_vse
from captioner.weights import read_manifest

from .common import CACHE, DATA, captions_by_file, flickr_split, rewrite_vse
from .train_vse import msrvtt_videos, text_embeddings

log = logging.getLogger("caption_vectors")


def bag_of_words(vocab: Vocabulary, captions: list[str]):
    """Sparse [N, V]: each caption's known words, 1/n each (a caption of n known words sums to 1)."""
    from scipy import sparse

    rows, cols = [], []
    for i, text in enumerate(captions):
        ids = [j for j in (vocab.index(w) for w in vocab.words(text)) if j != vocab.unk_id]
        rows += [i] * len(ids)
        cols += ids
    x = sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(captions), len(vocab)))
    n = np.maximum(np.asarray(x.sum(1)).ravel(), 1.0)
    return sparse.diags((1.0 / n).astype(np.float32)) @ x


def fit_word_vectors(x, y: np.ndarray, ridge: float) -> np.ndarray:
    """[V, D] minimising |x W - y|^2 + ridge |W|^2 (normal equations: V is a few thousand)."""
    a = (x.T @ x).toarray().astype(np.float64) + ridge * np.eye(x.shape[1])
    return np.linalg.solve(a, np.asarray(x.T @ y, np.float64)).astype(np.float32)


def mean_cosine(x, w: np.ndarray, y: np.ndarray) -> float:
    p = np.asarray(x @ w)
    p /= np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-9)
    return float((p * y).sum(1).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="model folder with vse.safetensors; written in place")
    ap.add_argument("--text-cache", type=Path, default=CACHE / "runs" / "vse",
                    help="folder with train_vse's caption embeddings (msrvtt_train_text.npy, flickr8k_train_text.npy)")
    ap.add_argument("--ridge", type=float, default=0.01, help="L2 weight (chosen by held-out cosine: 0.01 > 0.1 > 1)")
    ap.add_argument("--held-out", type=int, default=4000, help="captions kept out of the fit to report it")
    ap.add_argument("--dry-run", action="store_true", help="report the held-out cosine only; leave the model alone")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    manifest = read_manifest(args.model)
    vse = load_vse(args.model, manifest)
    if vse is None:
        raise SystemExit(f"error: {args.model} has no search vectors (vse.safetensors)")
    vocab = Vocabulary(manifest["vocab"])

    _, caps, train, _ = msrvtt_videos(manifest["encoder"])
    msrvtt = [c for v in train for c in caps[v]]
    flickr_refs = captions_by_file(DATA / "flickr8k" / "captions.tsv")
    flickr = [c for n in flickr_split("train") for c in flickr_refs.get(n, [])]
    captions = msrvtt + flickr
    t0 = time.time()
    y = np.concatenate([text_embeddings(msrvtt, args.text_cache / "msrvtt_train_text.npy"),
                        text_embeddings(flickr, args.text_cache / "flickr8k_train_text.npy")])
    log.info("%d captions (MSR-VTT train %d, Flickr8k train %d) embedded: %.0f s",
             len(captions), len(msrvtt), len(flickr), time.time() - t0)
    x = bag_of_words(vocab, captions)
    order = np.random.default_rng(0).permutation(len(captions))
    held, fit = order[: args.held_out], order[args.held_out:]
    w = fit_word_vectors(x[fit], y[fit], args.ridge)
    held_cos = mean_cosine(x[held], w, y[held])
    log.info("held-out captions (%d): mean cos(word vectors, MiniLM) %.3f", len(held), held_cos)
    if args.dry_run:
        return
    w = fit_word_vectors(x, y, args.ridge)  # all captions for the shipped table
    rewrite_vse(args.model, manifest, vse.with_words(w), words={
        "data": f"MSR-VTT train captions ({len(msrvtt)}) and Flickr8k train captions ({len(flickr)})",
        "ridge": args.ridge, "held_out_mean_cos": round(held_cos, 4),
        "command": f"python -m pipelines.caption_vectors --model {args.model}"})
    log.info("wrote word vectors (%d words) into %s/vse.safetensors", len(w), args.model)


if __name__ == "__main__":
    main()
