"""Train the attention-LSTM caption decoder on cached Flickr8k features (+ caption-only text).

One readable script (nanoGPT style): data -> model -> loop -> select on dev -> export.
Run ``python -m pipelines.extract_features`` first (``make train`` does both).

    python -m pipelines.train --out .cache/models/stage1   # stage 1 of `make train` (see the Makefile)
    python -m pipelines.train --epochs 1 --limit 200   # smoke run
    python -m pipelines.train --concepts 0 --text ""   # the plain Flickr8k decoder

Open vocabulary (``--concepts K``, default 5): the decoder attends over the K most
probable ImageNet concept words of each photo and may copy them (decoder.py). Photos
teach it how concepts relate to pictures; the caption-only corpora (COCO, MSVD,
MSR-VTT sentences, test captions excluded: ``common.text_sentences``) teach it to
talk about things Flickr8k never shows. A sentence has no picture, so it is
trained from concepts alone: the concept words it mentions, each with a made-up
encoder probability, some dropped and the rest of the K slots filled with the
distractors the encoder really produces on Flickr8k photos, at low probability
(``text_concepts``). That is the detector's noise, learnt from both sides.

Deterministic on CPU for a given seed and thread count. Model selection is by dev
BLEU-4 (greedy decoding, our tokenizer) after every epoch; the learning rate halves
when dev stops improving and training stops after ``--patience`` bad epochs.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from captioner.concepts import class_words, concept_inputs
from captioner.config import DecoderConfig
from captioner.decoder import CaptionDecoder
from captioner.vocab import Vocabulary, tokenize
from captioner.errors import ModelError
from captioner.weights import checkpoint_encoder, save_model

from .common import (
    CACHE, DATA, TEXT_CORPORA, captions_by_file, count, flickr_split, out_folder, positive_int, read_checkpoint, refuse_full_model,
    save_torch, staged_model, text_corpora, text_sentences,
)
from .extract_features import feature_dir, feature_rows

log = logging.getLogger("train")


def load_split(encoder: str, split: str, limit: int | None = None) -> tuple[list[str], torch.Tensor]:
    """(file names, float16 features [n, N, C]) of one Flickr8k split, held in RAM."""
    index = feature_rows(encoder, "flickr8k")
    names = [f for f in flickr_split(split) if f in index][: limit or None]
    grid = np.load(feature_dir(encoder) / "flickr8k_grid.npy", mmap_mode="r")
    rows = np.array([index[f] for f in names])
    return names, torch.from_numpy(np.ascontiguousarray(grid[np.sort(rows)]))[np.argsort(np.argsort(rows))]


def load_concepts(encoder: str, names: Sequence[str], vocab: Vocabulary, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Concept inputs ([n, k] ids, [n, k] probabilities) of Flickr8k photos, from their cached ImageNet probabilities."""
    index = feature_rows(encoder, "flickr8k")
    probs = np.load(feature_dir(encoder) / "flickr8k_probs.npy")
    ids = torch.zeros(len(names), k, dtype=torch.long)
    ps = torch.zeros(len(names), k)
    for j, n in enumerate(names):
        i, p = concept_inputs(probs[index[n]].astype(np.float64), vocab.index, k)
        ids[j, : len(i)] = torch.tensor(i, dtype=torch.long)
        ps[j, : len(p)] = torch.tensor(p)
    return ids, ps


class TextConcepts:
    """Made-up concept inputs for a caption-only sentence (see the module docstring).

    Mentioned concept words get a probability drawn from U(0.2, 0.95) and are
    dropped with probability ``drop`` (the encoder misses things); the remaining
    slots hold distractors drawn from ``distractors`` (the words the encoder
    actually ranks high on Flickr8k photos, with repetition, so common confusions
    come up often) with probabilities from 0.15 * U^2, mostly near zero.
    """

    def __init__(self, vocab: Vocabulary, distractors: Sequence[int], k: int, drop: float = 0.15) -> None:
        heads = {w for w, _ in class_words()}
        self.concept_ids = {vocab.index(h) for h in heads if h in vocab}
        self.plural_of = {}
        for h in heads:
            if h in vocab:
                for form in (h + "s", h + "es"):
                    if form in vocab and form not in heads:
                        self.plural_of[vocab.index(form)] = vocab.index(h)
        self.distractors = list(distractors)
        self.k, self.drop = k, drop

    def mentioned(self, caption_ids: Sequence[int]) -> list[int]:
        """Concept ids a sentence mentions, in order ("two bears" -> bear)."""
        out: list[int] = []
        for t in caption_ids:
            t = self.plural_of.get(t, t)
            if t in self.concept_ids and t not in out:
                out.append(t)
        return out

    def sample(self, mentioned: Sequence[int], rng: random.Random) -> tuple[list[int], list[float]]:
        pairs = [(t, rng.uniform(0.2, 0.95)) for t in mentioned[: self.k] if rng.random() >= self.drop]
        have = {t for t, _ in pairs}
        for _ in range(10 * self.k):  # bounded: the distractor list may hold fewer distinct words than slots
            if len(pairs) >= self.k or not self.distractors:
                break
            t = rng.choice(self.distractors)
            if t not in have:
                have.add(t)
                pairs.append((t, 0.15 * rng.random() ** 2))
        pairs.sort(key=lambda x: -x[1])
        return [t for t, _ in pairs], [p for _, p in pairs]


def make_pairs(names: Sequence[str], caps: dict[str, list[str]], vocab: Vocabulary, max_words: int) -> list[tuple[int, list[int]]]:
    return [(i, vocab.encode(c, max_words)) for i, n in enumerate(names) for c in caps[n]]


def batches(pairs: list[tuple[int, list[int]]], batch_size: int, rng: random.Random) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Shuffled (image index, padded captions, lengths) batches."""
    order = list(range(len(pairs)))
    rng.shuffle(order)
    for s in range(0, len(order), batch_size):
        yield collate([pairs[i] for i in order[s : s + batch_size]])


def collate(chunk: Sequence[tuple[int, list[int]]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(c) for _, c in chunk])
    caps = torch.zeros(len(chunk), int(lengths.max()), dtype=torch.long)
    for j, (_, c) in enumerate(chunk):
        caps[j, : len(c)] = torch.tensor(c)
    return torch.tensor([i for i, _ in chunk]), caps, lengths


def mixed_batches(pairs: list[tuple[int, list[int]]], text_pairs: list[tuple[int, list[int]]], text_per_epoch: int,
                  batch_size: int, rng: random.Random) -> Iterator[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """All photo batches and ``text_per_epoch`` sentences' batches, in one shuffled order.

    Each batch is one kind ("image" or "text"), so a text batch attends over its
    few concept slots only instead of 49 empty grid cells.
    """
    jobs = [("image", b) for b in batches(pairs, batch_size, rng)]
    if text_pairs and text_per_epoch:
        chosen = rng.sample(range(len(text_pairs)), min(text_per_epoch, len(text_pairs)))
        for s in range(0, len(chosen), batch_size):
            jobs.append(("text", collate([text_pairs[i] for i in chosen[s : s + batch_size]])))
    rng.shuffle(jobs)
    for kind, (idx, caps, lengths) in jobs:
        yield kind, idx, caps, lengths


def loss_fn(model: CaptionDecoder, feats: torch.Tensor, caps: torch.Tensor, lengths: torch.Tensor,
            alpha_c: float = 1.0, label_smoothing: float = 0.0,
            cids: torch.Tensor | None = None, cprobs: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy on the next word + doubly stochastic attention regulariser (SAT eq. 14).

    The regulariser covers the picture's cells only (not the concept slots), and
    is skipped for caption-only batches, which have none.
    """
    logits, alphas = model(feats, caps, lengths, cids=cids, cprobs=cprobs)
    target = caps[:, 1:]
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=0,
                         label_smoothing=label_smoothing)
    n_vis = feats.shape[1]
    reg = ((1.0 - alphas[:, :, :n_vis].sum(1)) ** 2).mean() if alpha_c and n_vis else 0.0
    return ce + alpha_c * reg


def train_steps(model: CaptionDecoder, opt: torch.optim.Optimizer, feats_all: torch.Tensor,
                batch_iter, max_steps: int | None = None, clip: float = 5.0, on_step=None,
                concepts: tuple[torch.Tensor, torch.Tensor] | None = None,
                text: tuple[list[list[int]], TextConcepts, random.Random] | None = None) -> list[float]:
    """Run optimisation steps; returns the loss of each step.

    ``batch_iter`` yields (index, captions, lengths), or (kind, index, captions,
    lengths) with kind "image" or "text" for mixed training; ``concepts`` holds the
    photos' concept inputs, ``text`` each sentence's mentioned concepts, the sampler
    and its random generator.
    """
    model.train()
    losses = []
    for step, batch in enumerate(batch_iter):
        if max_steps is not None and step >= max_steps:
            break
        kind, (idx, caps, lengths) = (batch[0], batch[1:]) if len(batch) == 4 else ("image", batch)
        cids = cprobs = None
        if kind == "image":
            feats = feats_all[idx].float()
            if concepts is not None:
                cids, cprobs = concepts[0][idx], concepts[1][idx]
        else:
            assert text is not None
            mentioned, sampler, trng = text
            feats = torch.zeros(len(idx), 0, feats_all.shape[2])
            cids = torch.zeros(len(idx), sampler.k, dtype=torch.long)
            cprobs = torch.zeros(len(idx), sampler.k)
            for j, i in enumerate(idx.tolist()):
                ids, ps = sampler.sample(mentioned[i], trng)
                cids[j, : len(ids)] = torch.tensor(ids, dtype=torch.long)
                cprobs[j, : len(ps)] = torch.tensor(ps)
        loss = loss_fn(model, feats, caps, lengths, cids=cids, cprobs=cprobs)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        losses.append(loss.item())
        if on_step:
            on_step(step, losses)
    return losses


def greedy_captions(model: CaptionDecoder, feats: torch.Tensor, vocab: Vocabulary, max_len: int = 20, batch: int = 100,
                    concepts: tuple[torch.Tensor, torch.Tensor] | None = None) -> list[str]:
    model.eval()
    out = []
    for s in range(0, len(feats), batch):
        cids, cprobs = (None, None) if concepts is None else (concepts[0][s : s + batch], concepts[1][s : s + batch])
        ids = model.greedy(feats[s : s + batch].float(), vocab.start_id, vocab.end_id, max_len,
                           banned=(vocab.pad_id, vocab.start_id, vocab.unk_id), cids=cids, cprobs=cprobs)
        out.extend(vocab.decode(i) for i in ids)
    return out


def bleu4(hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> float:
    """Corpus BLEU-4 with the COCO scorer on our own tokenisation (no Java needed)."""
    from pycocoevalcap.bleu.bleu import Bleu

    gts = {i: [" ".join(tokenize(r)) for r in rs] for i, rs in enumerate(refs)}
    res = {i: [h if h else "a"] for i, h in enumerate(hyps)}
    score, _ = Bleu(4).compute_score(gts, res, verbose=0)
    return 100.0 * score[3]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", default="efficientnet-lite0")
    ap.add_argument("--out", type=out_folder, default=None, help="export the best model here (e.g. weights)")
    ap.add_argument("--run", type=out_folder, default=CACHE / "runs" / "default", help="checkpoints and log")
    ap.add_argument("--epochs", type=positive_int, default=8)
    ap.add_argument("--patience", type=positive_int, default=2)
    ap.add_argument("--batch", type=positive_int, default=64)
    ap.add_argument("--lr", type=float, default=4e-4)
    ap.add_argument("--min-count", type=int, default=5)
    ap.add_argument("--max-words", type=positive_int, default=20)
    ap.add_argument("--hidden", type=positive_int, default=512)
    ap.add_argument("--dropout", type=float, default=0.5)
    ap.add_argument("--limit", type=positive_int, default=None, help="train on the first N photos only (smoke runs)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=positive_int, default=2)
    ap.add_argument("--name", default="flickr8k-text-lite0-concepts")
    ap.add_argument("--concepts", type=count, default=5, help="concept slots the decoder attends over and may copy (0 = none)")
    ap.add_argument("--text", type=text_corpora, default=",".join(TEXT_CORPORA),
                    help="caption-only corpora to train the language side on (comma list; empty = none)")
    ap.add_argument("--text-per-epoch", type=count, default=30000, help="sentences drawn from the corpora per epoch")
    ap.add_argument("--resume", type=Path, default=None,
                    help="continue from a run's best.pt (weights, history; Adam's state is not saved, so it restarts)")
    args = ap.parse_args()
    if args.text and not args.concepts:  # said after the features had loaded before
        ap.error("--text needs --concepts > 0: a sentence without a picture is trained from its concepts")
    if args.out is not None:
        refuse_full_model(args.out)  # before the training: its export would drop a full model's parts
    resumed = read_checkpoint(args.resume, weights_only=True) if args.resume else None  # before the data
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    rng = random.Random(args.seed)
    t_start = time.time()

    caps = captions_by_file(DATA / "flickr8k" / "captions.tsv")
    train_names, train_feats = load_split(args.encoder, "train", args.limit)
    dev_names, dev_feats = load_split(args.encoder, "dev", None if args.limit is None else max(50, args.limit // 5))
    corpora = [c for c in args.text.split(",") if c]
    sentences = [c for _, c in text_sentences(corpora)] if corpora else []
    if args.limit and sentences:
        sentences = sentences[: args.limit * 5]
    vocab = Vocabulary.build([c for n in train_names for c in caps[n]] + sentences, args.min_count)
    if args.concepts:  # every concept must have a token to be fed and copied as
        missing = sorted({w for w, _ in class_words()} - set(vocab.itos))
        vocab = Vocabulary(vocab.itos + tuple(missing))
    pairs = make_pairs(train_names, caps, vocab, args.max_words)
    dev_refs = [caps[n] for n in dev_names]
    train_concepts = dev_concepts = None
    text_pairs: list[tuple[int, list[int]]] = []
    text_state = None
    if args.concepts:
        train_concepts = load_concepts(args.encoder, train_names, vocab, args.concepts)
        dev_concepts = load_concepts(args.encoder, dev_names, vocab, args.concepts)
        sampler = TextConcepts(vocab, [int(i) for i in train_concepts[0].flatten() if int(i)], args.concepts)
        text_pairs = [(i, vocab.encode(c, args.max_words)) for i, c in enumerate(sentences)]
        mentioned = [sampler.mentioned(ids[1:-1]) for _, ids in text_pairs]
        text_state = (mentioned, sampler, random.Random(args.seed + 1))
        log.info("text: %d sentences (%s), %.0f%% mention a concept word", len(text_pairs), ",".join(corpora),
                 100 * sum(bool(m) for m in mentioned) / max(1, len(mentioned)))
    log.info("train %d photos / %d captions, dev %d photos, vocab %d words", len(train_names), len(pairs), len(dev_names), len(vocab))

    config = DecoderConfig(feature_dim=train_feats.shape[2], embed_dim=args.hidden, hidden_dim=args.hidden,
                           attention_dim=args.hidden, dropout=args.dropout, vocab_size=len(vocab),
                           concept_slots=args.concepts)
    model = CaptionDecoder(config)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    data = ("Flickr8k train (6,000 photos x 5 captions), official split; selection on Flickr8k dev"
            + (f"; caption-only sentences: {len(text_pairs)} from {', '.join(corpora)} "
               f"(test captions excluded), {args.text_per_epoch} drawn per epoch" if text_pairs else ""))
    args.run.mkdir(parents=True, exist_ok=True)
    history: list[dict] = []
    best, best_state, bad = -1.0, None, 0
    if args.resume:
        ckpt = resumed
        if tuple(ckpt["vocab"]) != vocab.itos or DecoderConfig(**ckpt["config"]) != config:
            ap.error(f"{args.resume}: trained with another vocabulary or architecture than these options give")
        try:  # Lite0/1/2 features are all 1280-d: only the record tells them apart
            checkpoint_encoder(ckpt, args.encoder, args.resume)
        except ModelError as exc:
            raise SystemExit(f"error: {exc}") from None
        model.load_state_dict(ckpt["state"])
        history = list(ckpt["history"])
        best = max(h["dev_bleu4_greedy"] for h in history)
        best_state = {k: v.clone() for k, v in ckpt["state"].items()}
        log.info("resumed from %s after epoch %d (best dev BLEU-4 %.2f)", args.resume, len(history), best)
    steps_per_epoch = math.ceil(len(pairs) / args.batch) + math.ceil(min(len(text_pairs), args.text_per_epoch) / args.batch)
    for epoch in range(len(history) + 1, args.epochs + 1):
        t0 = time.time()

        def report(step: int, losses: list[float]) -> None:
            if step % 100 == 0:
                log.info("epoch %d step %d/%d loss %.3f (%.2f s/step)", epoch, step, steps_per_epoch,
                         sum(losses[-100:]) / len(losses[-100:]), (time.time() - t0) / (step + 1))

        losses = train_steps(model, opt, train_feats, mixed_batches(pairs, text_pairs, args.text_per_epoch, args.batch, rng),
                             on_step=report, concepts=train_concepts, text=text_state)
        hyps = greedy_captions(model, dev_feats, vocab, concepts=dev_concepts)
        score = bleu4(hyps, dev_refs)
        entry = {"epoch": epoch, "train_loss": sum(losses) / len(losses), "dev_bleu4_greedy": round(score, 2),
                 "lr": opt.param_groups[0]["lr"], "seconds": round(time.time() - t0, 1)}
        history.append(entry)
        log.info("epoch %d done: %s | e.g. %r", epoch, entry, hyps[:3])
        (args.run / "history.json").write_text(json.dumps(history, indent=1))
        if score > best:
            best, bad = score, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            save_torch({"state": best_state, "vocab": list(vocab.itos), "config": asdict(config), "history": history,
                        "data": data, "name": args.name, "encoder": args.encoder},
                       args.run / "best.pt")
        else:
            bad += 1
            for g in opt.param_groups:
                g["lr"] *= 0.5
            if bad >= args.patience:
                log.info("dev BLEU-4 did not improve for %d epochs: stopping", bad)
                break
    wall = time.time() - t_start
    log.info("best dev BLEU-4 (greedy) %.2f; wall time %.0f s", best, wall)
    if args.out and best_state is not None:
        extra = {
            "training": {
                "data": data,
                "epochs_run": len(history), "history": history, "wall_seconds": round(wall),
                "threads": args.threads, "seed": args.seed, "command": "make train",
                "hyperparameters": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            }
        }
        with staged_model(args.out) as stage:  # model.json last, every file readable by all
            save_model(stage, best_state, vocab, config, name=args.name, encoder=args.encoder, extra=extra)
        log.info("exported to %s", args.out)


if __name__ == "__main__":
    main()
