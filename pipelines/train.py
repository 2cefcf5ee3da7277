"""Train the attention-LSTM caption decoder on cached Flickr8k features.

One readable script (nanoGPT style): data -> model -> loop -> select on dev -> export.
Run ``python -m pipelines.extract_features`` first (``make train`` does both).

    python -m pipelines.train --out weights            # what `make train` runs
    python -m pipelines.train --epochs 1 --limit 200   # smoke run

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
from dataclasses import asdict, replace
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from captioner.config import DecoderConfig
from captioner.decoder import CaptionDecoder
from captioner.vocab import Vocabulary, tokenize
from captioner.weights import save_model

from .common import CACHE, DATA, ROOT, captions_by_file, flickr_split
from .extract_features import feature_dir

log = logging.getLogger("train")


def load_split(encoder: str, split: str, limit: int | None = None) -> tuple[list[str], torch.Tensor]:
    """(file names, float16 features [n, N, C]) of one Flickr8k split, held in RAM."""
    fdir = feature_dir(encoder)
    files = (fdir / "flickr8k_files.txt").read_text().split()
    index = {f: i for i, f in enumerate(files)}
    names = [f for f in flickr_split(split) if f in index][: limit or None]
    grid = np.load(fdir / "flickr8k_grid.npy", mmap_mode="r")
    rows = np.array([index[f] for f in names])
    return names, torch.from_numpy(np.ascontiguousarray(grid[np.sort(rows)]))[np.argsort(np.argsort(rows))]


def make_pairs(names: Sequence[str], caps: dict[str, list[str]], vocab: Vocabulary, max_words: int) -> list[tuple[int, list[int]]]:
    return [(i, vocab.encode(c, max_words)) for i, n in enumerate(names) for c in caps[n]]


def batches(pairs: list[tuple[int, list[int]]], batch_size: int, rng: random.Random) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Shuffled (image index, padded captions, lengths) batches."""
    order = list(range(len(pairs)))
    rng.shuffle(order)
    for s in range(0, len(order), batch_size):
        chunk = [pairs[i] for i in order[s : s + batch_size]]
        lengths = torch.tensor([len(c) for _, c in chunk])
        caps = torch.zeros(len(chunk), int(lengths.max()), dtype=torch.long)
        for j, (_, c) in enumerate(chunk):
            caps[j, : len(c)] = torch.tensor(c)
        yield torch.tensor([i for i, _ in chunk]), caps, lengths


def loss_fn(model: CaptionDecoder, feats: torch.Tensor, caps: torch.Tensor, lengths: torch.Tensor,
            alpha_c: float = 1.0, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy on the next word + doubly stochastic attention regulariser (SAT eq. 14)."""
    logits, alphas = model(feats, caps, lengths)
    target = caps[:, 1:]
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=0,
                         label_smoothing=label_smoothing)
    reg = ((1.0 - alphas.sum(1)) ** 2).mean() if alpha_c else 0.0
    return ce + alpha_c * reg


def train_steps(model: CaptionDecoder, opt: torch.optim.Optimizer, feats_all: torch.Tensor,
                batch_iter, max_steps: int | None = None, clip: float = 5.0, on_step=None) -> list[float]:
    """Run optimisation steps; returns the loss of each step."""
    model.train()
    losses = []
    for step, (idx, caps, lengths) in enumerate(batch_iter):
        if max_steps is not None and step >= max_steps:
            break
        feats = feats_all[idx].float()
        loss = loss_fn(model, feats, caps, lengths)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        losses.append(loss.item())
        if on_step:
            on_step(step, losses)
    return losses


def greedy_captions(model: CaptionDecoder, feats: torch.Tensor, vocab: Vocabulary, max_len: int = 20, batch: int = 100) -> list[str]:
    model.eval()
    out = []
    for s in range(0, len(feats), batch):
        ids = model.greedy(feats[s : s + batch].float(), vocab.start_id, vocab.end_id, max_len, banned=(vocab.pad_id, vocab.start_id, vocab.unk_id))
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
    ap.add_argument("--out", type=Path, default=None, help="export the best model here (e.g. weights)")
    ap.add_argument("--run", type=Path, default=CACHE / "runs" / "default", help="checkpoints and log")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--patience", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=4e-4)
    ap.add_argument("--min-count", type=int, default=5)
    ap.add_argument("--max-words", type=int, default=20)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--dropout", type=float, default=0.5)
    ap.add_argument("--limit", type=int, default=None, help="train on the first N photos only (smoke runs)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--name", default="flickr8k-lite0-sat")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    rng = random.Random(args.seed)
    t_start = time.time()

    caps = captions_by_file(DATA / "flickr8k" / "captions.tsv")
    train_names, train_feats = load_split(args.encoder, "train", args.limit)
    dev_names, dev_feats = load_split(args.encoder, "dev", None if args.limit is None else max(50, args.limit // 5))
    vocab = Vocabulary.build((c for n in train_names for c in caps[n]), args.min_count)
    pairs = make_pairs(train_names, caps, vocab, args.max_words)
    dev_refs = [caps[n] for n in dev_names]
    log.info("train %d photos / %d captions, dev %d photos, vocab %d words", len(train_names), len(pairs), len(dev_names), len(vocab))

    config = DecoderConfig(feature_dim=train_feats.shape[2], embed_dim=args.hidden, hidden_dim=args.hidden,
                           attention_dim=args.hidden, dropout=args.dropout, vocab_size=len(vocab))
    model = CaptionDecoder(config)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    args.run.mkdir(parents=True, exist_ok=True)
    history: list[dict] = []
    best, best_state, bad = -1.0, None, 0
    steps_per_epoch = math.ceil(len(pairs) / args.batch)
    for epoch in range(1, args.epochs + 1):
        t0 = time.time()

        def report(step: int, losses: list[float]) -> None:
            if step % 100 == 0:
                log.info("epoch %d step %d/%d loss %.3f (%.2f s/step)", epoch, step, steps_per_epoch,
                         sum(losses[-100:]) / len(losses[-100:]), (time.time() - t0) / (step + 1))

        losses = train_steps(model, opt, train_feats, batches(pairs, args.batch, rng), on_step=report)
        hyps = greedy_captions(model, dev_feats, vocab)
        score = bleu4(hyps, dev_refs)
        entry = {"epoch": epoch, "train_loss": sum(losses) / len(losses), "dev_bleu4_greedy": round(score, 2),
                 "lr": opt.param_groups[0]["lr"], "seconds": round(time.time() - t0, 1)}
        history.append(entry)
        log.info("epoch %d done: %s | e.g. %r", epoch, entry, hyps[:3])
        (args.run / "history.json").write_text(json.dumps(history, indent=1))
        if score > best:
            best, bad = score, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            torch.save({"state": best_state, "vocab": list(vocab.itos), "config": asdict(config), "history": history},
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
                "data": "Flickr8k train (6,000 photos x 5 captions), official split; selection on Flickr8k dev",
                "epochs_run": len(history), "history": history, "wall_seconds": round(wall),
                "threads": args.threads, "seed": args.seed, "command": "make train",
                "hyperparameters": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            }
        }
        save_model(args.out, best_state, vocab, config, name=args.name, encoder=args.encoder, extra=extra)
        log.info("exported to %s", args.out)


if __name__ == "__main__":
    main()
