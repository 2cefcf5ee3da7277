"""Teach the decoder real video: MSR-VTT frames, web photos and detector concepts (stage 2 of ``make train``).

Stage 1 (``pipelines.train``) learns captions from Flickr8k photos and caption-only
text. Its whole visual world is 6,000 photos of people and dogs. This stage continues
that decoder on:

- **MSR-VTT train videos** (3,1xx, frames from ``pipelines.prepare_data``): one example
  is a video's frames *as a set*, exactly as ``captioner run`` feeds a segment (1 to
  ``--max-frames`` frames drawn at random, stacked 49 cells each), with one of its
  ~20 captions;
- **Conceptual Captions** web photos (train part, alt text) and **Flickr8k** train photos;
- caption-only sentences (COCO, MSVD; test captions excluded), from concepts alone;
  ``--msrvtt-text`` adds the captions of the MSR-VTT train videos that have no frames;

with the concept slots fed by the **visual concept detectors** (``detect.py``,
``pipelines.train_detectors``): the ``--detector-slots`` most probable detected words,
then ImageNet words. New words of the MSR-VTT and CC3M captions are appended to the
vocabulary (their embedding and output rows start neutral). Selection: greedy CIDEr on
**MSR-VTT val** (the whole video's frames, <= 8) plus Flickr8k dev CIDEr; every epoch
writes ``last.pt`` (model, optimiser, random state: ``--resume`` continues exactly) and
the best one ``best.pt``; ``--out`` exports the best with its detectors.

    python -m pipelines.train_video --init weights --run .cache/runs/video --out weights
    python -m pipelines.train_video --run .cache/runs/video --resume      # after a stop

``--resume`` and ``--export-only`` take the run's recorded settings (checkpoints keep them) for the
options left out, ``--epochs``, ``--keep-epochs`` and ``--out`` included (those three may be given anew:
``--resume --epochs 8`` goes on further), and refuse any other option given another value; a --run that holds an earlier run is refused
unless ``--overwrite`` (which deletes its checkpoints first, so ``--average`` never mixes two runs).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from captioner.concepts import class_words
from captioner.config import DecoderConfig
from captioner.decoder import CaptionDecoder
from captioner.detect import Detectors, concept_inputs, load_detectors, save_detectors
from captioner.vocab import STYLES, Vocabulary, tokenize
from captioner.errors import ModelError
from captioner.weights import MANIFEST, checkpoint_encoder, load_model, save_model, update_manifest

from .common import (
    CACHE, DATA, captions_by_file, carry_companions, count, flickr_split, out_folder, positive_int, read_checkpoint, read_tsv,
    save_torch, staged_model, text_sentences,
)
from .extract_features import feature_dir, feature_rows
from .prepare_data import PREPARED, held_out_clips, msrvtt_ids
from .train import TextConcepts, collate
from .train_detectors import check_outputs, load_trained

log = logging.getLogger("train_video")
CELLS = 49


#: The sets whose pictures a run feeds the decoder: a --detector-outputs folder has a <set>_det.npy for each.
PICTURE_SETS = ("flickr8k", "msrvtt", "cc3m")


def detector_outputs_file(folder: Path, set_name: str) -> Path:
    """``folder/<set>_det.npy``; ``SystemExit`` if it is missing (a mistyped --detector-outputs trained on the
    in-sample outputs and recorded the folder that was not there)."""
    path = Path(folder) / f"{set_name}_det.npy"
    if not path.is_file():
        raise SystemExit(f"error: --detector-outputs: {path}: no such file (pipelines.crossfit_detectors writes "
                         f"one for each of {', '.join(PICTURE_SETS)})")
    return path


class Pictures:
    """Every training/selection picture in one float16 array, with per-frame detector and ImageNet outputs.

    An *item* is a tuple of rows (one photo, or a video's frames) plus its captions.
    Detector outputs come from the ``<set>_det.npy`` that ``pipelines.train_detectors``
    wrote, or, given ``detectors``, are computed from the features (a model's shipped,
    low-rank detectors: what the decoder sees at run time).
    """

    def __init__(self, encoder: str, detectors: Detectors | None = None, outputs: Path | None = None) -> None:
        self.encoder = encoder
        self.detectors = detectors
        self.outputs = outputs
        self.grids: list[np.ndarray] = []
        self.det: list[np.ndarray] = []
        self.probs: list[np.ndarray] = []
        self.n = 0

    def add(self, set_name: str, names: list[str]) -> list[int]:
        """Load the rows of ``names`` from a cached set; returns their global row numbers."""
        rows = feature_rows(self.encoder, set_name)
        idx = np.array([rows[n] for n in names], dtype=np.int64)
        order = np.argsort(idx)
        d = feature_dir(self.encoder)
        take = lambda a: np.asarray(a[idx[order]])[np.argsort(order)]  # noqa: E731  (sorted reads of a memmap)
        grid = take(np.load(d / f"{set_name}_grid.npy", mmap_mode="r"))
        self.grids.append(grid)
        if self.outputs is not None:  # e.g. cross-fitted: as noisy on training pictures as on new ones
            given = detector_outputs_file(self.outputs, set_name)
            self.det.append(take(np.load(given, mmap_mode="r")))
        elif self.detectors is None:
            check_outputs(self.encoder, set_name)
            self.det.append(take(np.load(d / f"{set_name}_det.npy", mmap_mode="r")))
        else:
            self.det.append(np.concatenate([self.detectors.frame_probs(grid[s : s + 256])
                                            for s in range(0, len(grid), 256)]))
        self.probs.append(take(np.load(d / f"{set_name}_probs.npy", mmap_mode="r")))
        start = self.n
        self.n += len(names)
        return list(range(start, self.n))

    def freeze(self) -> None:
        self.grid_all = torch.from_numpy(np.concatenate(self.grids))
        self.det_all = np.concatenate(self.det).astype(np.float32)
        self.probs_all = np.concatenate(self.probs).astype(np.float32)
        del self.grids, self.det, self.probs

    def concepts(self, rows: tuple[int, ...], det: Detectors, index, slots: int,
                 detector_slots: int) -> tuple[list[int], list[float]]:
        """The concept slots of an item (its frames' mean detector and ImageNet outputs), as at run time."""
        r = list(rows)
        return concept_inputs(det, self.det_all[r].mean(0), self.probs_all[r].mean(0), index, slots, detector_slots)

    def inputs(self, rows_list: list[tuple[int, ...]], det: Detectors, index, slots: int, detector_slots: int):
        """(features [B, N, C], mask [B, N], concept ids [B, slots], probabilities) of some items, padded."""
        n = max(len(r) for r in rows_list) * CELLS
        feats = torch.zeros(len(rows_list), n, self.grid_all.shape[2])
        mask = torch.zeros(len(rows_list), n, dtype=torch.bool)
        cids = torch.zeros(len(rows_list), slots, dtype=torch.long)
        cprobs = torch.zeros(len(rows_list), slots)
        for j, r in enumerate(rows_list):
            g = self.grid_all[list(r)].float().reshape(-1, self.grid_all.shape[2])
            feats[j, : len(g)] = g
            mask[j, : len(g)] = True
            ids, ps = self.concepts(r, det, index, slots, detector_slots)
            cids[j, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            cprobs[j, : len(ps)] = torch.tensor(ps)
        return feats, mask, cids, cprobs


def greedy_captions(model: CaptionDecoder, vocab: Vocabulary, pics: Pictures, det: Detectors,
                    items: list[tuple[tuple[int, ...], list[str]]], slots: int, detector_slots: int,
                    max_words: int, style: str | None = None) -> list[str]:
    """Greedy captions of ``items`` (a video: its first 8 frames, as a segment) in ``style``, for epoch selection."""
    model.eval()
    out: list[str] = []
    with torch.inference_mode():
        for s in range(0, len(items), 50):
            feats, mask, cids, cprobs = pics.inputs([r[:8] for r, _ in items[s : s + 50]], det, vocab.index, slots,
                                                    detector_slots)
            ids = model.greedy(feats, vocab.start_for(style), vocab.end_id, max_words,
                               banned=(vocab.pad_id, vocab.start_id, vocab.unk_id, *vocab.style_ids), mask=mask,
                               cids=cids, cprobs=cprobs)
            out += [vocab.decode(i) for i in ids]
    return out


def selection_scores(hyps: list[str], refs: list[list[str]]) -> tuple[float, float]:
    """(CIDEr, BLEU-4) x 100 of greedy captions against their references: the epoch-selection score.

    Quick (our tokenizer, no Java), so it runs after every epoch; the reported metrics
    come from ``pipelines.evaluate`` (the official PTB tokenizer, METEOR).
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider

    gts = {i: [" ".join(tokenize(r)) for r in rs] for i, rs in enumerate(refs)}
    res = {i: [h or "a"] for i, h in enumerate(hyps)}
    return 100 * Cider().compute_score(gts, res)[0], 100 * Bleu(4).compute_score(gts, res, verbose=0)[0][3]


def extend(model: CaptionDecoder, vocab: Vocabulary, new_words: list[str], config: DecoderConfig) -> tuple[CaptionDecoder, Vocabulary]:
    """A copy of ``model`` with ``new_words`` appended to its vocabulary and ``config``'s slots.

    New embedding rows start at the mean embedding, new output rows at zero weight and
    the smallest existing bias: neutral, rare words until training says otherwise. A
    style token ("<video>") starts as <start>'s embedding: the model begins as it was.
    """
    big = Vocabulary(vocab.itos + tuple(new_words))
    cfg = replace(config, vocab_size=len(big))
    out = CaptionDecoder(cfg)
    state = model.state_dict()
    new = out.state_dict()
    for k, v in state.items():
        if k == "embed.weight":
            new[k][: len(vocab)] = v
            new[k][len(vocab):] = v.mean(0) + 0.01 * torch.randn(len(new_words), v.shape[1])
            for j, w in enumerate(new_words):
                if w.startswith("<"):
                    new[k][len(vocab) + j] = v[vocab.start_id]
        elif k == "fc.weight":
            new[k][: len(vocab)] = v
            new[k][len(vocab):] = 0
        elif k == "fc.bias":
            new[k][: len(vocab)] = v
            new[k][len(vocab):] = v.min()
        else:
            new[k] = v
    out.load_state_dict(new)
    return out, big


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, dict]:
    """The command line, and the options it gave (not left at their defaults): a run's recorded settings
    stand in for those left out on --resume and --export-only."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", default="efficientnet-lite0")
    ap.add_argument("--init", type=Path, default=Path("weights"), help="stage-1 model folder to continue")
    ap.add_argument("--run", type=out_folder, default=CACHE / "runs" / "video")
    ap.add_argument("--resume", action="store_true", help="continue the run in --run from its last.pt")
    ap.add_argument("--out", type=out_folder, default=None, help="export the best epoch here (with its detectors)")
    ap.add_argument("--epochs", type=positive_int, default=6)
    ap.add_argument("--batch", type=positive_int, default=64)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--slots", type=positive_int, default=8, help="concept slots in all")
    ap.add_argument("--detector-slots", type=count, default=5, help="of which detector words")
    ap.add_argument("--max-frames", type=positive_int, default=4, help="most frames of a video in one training example")
    ap.add_argument("--min-count", type=int, default=5)
    ap.add_argument("--max-words", type=positive_int, default=20)
    ap.add_argument("--flickr-caps", type=count, default=1, help="captions per Flickr8k photo per epoch")
    ap.add_argument("--msrvtt-caps", type=count, default=4, help="captions per MSR-VTT video per epoch")
    ap.add_argument("--text-per-epoch", type=count, default=6000)
    ap.add_argument("--msrvtt-text", action="store_true",
                    help="also train on the captions of the MSR-VTT train videos that have no frames, as caption-only "
                         "sentences in the video style")
    ap.add_argument("--cc3m", type=float, default=0.6, help="share of CC3M photos per epoch")
    ap.add_argument("--limit", type=positive_int, default=None, help="first N items of each set (smoke runs)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=positive_int, default=2)
    ap.add_argument("--name", default="msrvtt-cc3m-flickr8k-lite0-detectors")
    ap.add_argument("--detector-rank", type=int, default=192,
                    help="ship the detectors as a rank-R factorisation (pipelines.detector_rank; 0 = full)")
    ap.add_argument("--detector-outputs", type=Path, default=None,
                    help="folder of <set>_det.npy (rows as the cached features) to feed the concept slots instead of "
                         "running the detectors: pipelines.crossfit_detectors' out-of-fold outputs")
    ap.add_argument("--export-only", action="store_true", help="export the best epoch of --run to --out, no training")
    ap.add_argument("--keep-epochs", action="store_true",
                    help="also keep every epoch's weights as epoch<N>.pt (epoch 0: the model before training), "
                         "for --average")
    ap.add_argument("--average", default=None, metavar="N,M,...",
                    help="with --export-only: export the mean of the weights of these kept epochs (weight averaging, "
                         "as in SWA) instead of the best epoch")
    ap.add_argument("--styles", action=argparse.BooleanOptionalAction, default=True,
                    help="start captions with a style token by source (vocab.STYLES): video, photo, web (CC3M)")
    ap.add_argument("--shipped-detectors", action="store_true",
                    help="feed the --init model's own (shipped, low-rank) detectors and ship them, its presence head "
                         "and search vectors unchanged; for fine-tuning a released model without "
                         "pipelines.train_detectors' outputs")
    ap.add_argument("--overwrite", action="store_true",
                    help="start afresh in a --run that holds an earlier run: its checkpoints (last.pt, best.pt, "
                         "epoch<N>.pt) are deleted first (without it such a --run is refused)")
    args = ap.parse_args(argv)
    if args.average is not None and not args.export_only:
        ap.error("--average exports kept epochs: use it with --export-only --out M")
    if args.export_only and not args.out:
        ap.error("--export-only needs --out")
    if args.detector_slots > args.slots:
        ap.error(f"--detector-slots {args.detector_slots} is more than --slots {args.slots} (the concept slots in all)")
    if args.overwrite and (args.resume or args.export_only):
        ap.error("--overwrite starts a run afresh: not with --resume or --export-only")
    for action in ap._actions:  # parsed again with no defaults: what the command line itself gave
        action.default = argparse.SUPPRESS
    return args, vars(ap.parse_args(argv))


def main(argv: Sequence[str] | None = None) -> None:
    args, given = parse_args(argv)
    resumed = check_prerequisites(args, given)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = random.Random(args.seed)
    t_start = time.time()
    lim = lambda xs: xs[: args.limit] if args.limit else xs  # noqa: E731

    # -- data ---------------------------------------------------------------------------
    if args.shipped_detectors:
        det = load_detectors(args.init, json.loads((args.init / MANIFEST).read_text()))
        if det is None:
            raise SystemExit(f"error: {args.init} has no detectors to reuse")
        pics = Pictures(args.encoder, detectors=det, outputs=args.detector_outputs)
    else:
        det = load_trained()
        pics = Pictures(args.encoder, outputs=args.detector_outputs)
    fl_caps = captions_by_file(DATA / "flickr8k" / "captions.tsv")
    fl_train = lim([n for n in flickr_split("train") if n in feature_rows(args.encoder, "flickr8k")])
    fl_dev = lim(flickr_split("dev"))
    mv_caps: dict[str, list[str]] = {}
    for vid, c in read_tsv(DATA / "text" / "msrvtt_captions_all.tsv"):
        mv_caps.setdefault(vid, []).append(c)
    held = held_out_clips()
    frames: dict[str, list[str]] = {}
    for f in feature_rows(args.encoder, "msrvtt"):
        frames.setdefault(f.split("/")[0], []).append(f)
    mv_train = lim([v for v in msrvtt_ids("train", frames, held) if v in mv_caps])
    mv_val = lim([v for v in msrvtt_ids("val", frames, held) if v in mv_caps])
    # --msrvtt-text: the train videos with no frames lend their captions as caption-only sentences
    mv_text = lim(frameless_train_ids(mv_caps, frames, held)) if args.msrvtt_text else []
    args.run.mkdir(parents=True, exist_ok=True)
    # the training manifest: tests/test_training_data.py fails if a val/test or demo-clip id is in it
    (args.run / "msrvtt_train_ids.txt").write_text("\n".join(mv_train + mv_text) + "\n")
    cc_caps = {f: [c] for f, c in read_tsv(PREPARED / "cc3m" / "captions.tsv")}
    cc_train = lim([f for f in sorted(cc_caps) if int(Path(f).stem) % 20 and f in feature_rows(args.encoder, "cc3m")])

    def frames_of(v: str) -> list[str]:
        return sorted(frames[v], key=lambda f: (f.split("/")[1].rsplit("_", 1)[0], int(f.rsplit("_", 1)[1][:-4])))

    # caption-only sentences, each in its source's style: COCO reads like photos, MSVD like video
    corpus_style = {"coco": "photo", "msvd": "video"}
    sentences = [(corpus_style[corpus] if args.styles else None, c) for corpus, c in text_sentences(("coco", "msvd"))]
    sentences += [("video" if args.styles else None, c) for v in mv_text for c in mv_caps[v]]
    text_sources = "COCO, MSVD" + (f", MSR-VTT train videos without frames ({len(mv_text)})" if mv_text else "")
    if args.export_only:
        counts = {"flickr": len(fl_train), "msrvtt": len(mv_train), "cc3m": len(cc_train)}
        export(args.run, args.out, det, args, counts, len(sentences), average=parse_epochs(args.average),
               text_sources=text_sources)
        return
    items: dict[str, list[tuple[tuple[int, ...], list[str]]]] = {}
    rows = pics.add("flickr8k", fl_train + fl_dev)
    items["flickr"] = [((r,), fl_caps[n]) for r, n in zip(rows, fl_train)]
    items["flickr_dev"] = [((r,), fl_caps[n]) for r, n in zip(rows[len(fl_train):], fl_dev)]
    for key, vids in (("msrvtt", mv_train), ("msrvtt_val", mv_val)):
        names = [f for v in vids for f in frames_of(v)]
        rows = iter(pics.add("msrvtt", names))
        items[key] = [(tuple(next(rows) for _ in frames_of(v)), mv_caps[v]) for v in vids]
    rows = pics.add("cc3m", cc_train)
    items["cc3m"] = [((r,), cc_caps[n]) for r, n in zip(rows, cc_train)]
    pics.freeze()
    log.info("items: %s; %d sentences; %.1f GB of features", {k: len(v) for k, v in items.items()}, len(sentences),
             pics.grid_all.numel() * 2 / 1e9)

    # -- model ----------------------------------------------------------------------------
    args.run.mkdir(parents=True, exist_ok=True)
    last = args.run / "last.pt"
    if args.resume:
        ckpt = resumed
        config = DecoderConfig(**ckpt["config"])
        vocab = Vocabulary(tuple(ckpt["vocab"]))
        model = CaptionDecoder(config)
        model.load_state_dict(ckpt["state"])
        log.info("resumed %s after epoch %d", last, ckpt["history"][-1]["epoch"])
    else:
        base, base_vocab, info = load_model(args.init)
        if info.encoder != args.encoder:
            raise SystemExit(f"error: {args.init} was trained on {info.encoder} features, not {args.encoder}")
        counts: dict[str, int] = {}
        for caps in [c for _, cs in items["msrvtt"] for c in cs] + [c for _, cs in items["cc3m"] for c in cs]:
            for t in tokenize(caps):
                counts[t] = counts.get(t, 0) + 1
        new_words = sorted(w for w, c in counts.items() if c >= args.min_count and w not in base_vocab)
        new_words += sorted(w for w in det.words if w not in base_vocab and w not in new_words)
        if args.styles:
            new_words += [f"<{s}>" for s in STYLES if f"<{s}>" not in base_vocab]
        cfg = replace(base.config, concept_slots=args.slots, detector_slots=args.detector_slots)
        model, vocab = extend(base, base_vocab, new_words, cfg)
        config = model.config
        log.info("continuing %s (%s): vocabulary %d + %d new words (e.g. %s)", args.init, info.name, len(base_vocab),
                 len(new_words), ", ".join(new_words[:20]))
        ckpt = None
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    history: list[dict] = []
    best = -1.0
    if ckpt is not None:
        opt.load_state_dict(ckpt["opt"])
        history = ckpt["history"]
        best = max(h["select"] for h in history)
        rng.setstate(ckpt["rng"])
        torch.set_rng_state(ckpt["torch_rng"])

    concept_word_ids = {vocab.index(w) for w in det.words} | {vocab.index(w) for w, _ in class_words()}
    concept_word_ids.discard(vocab.unk_id)

    def concepts_of(rows: tuple[int, ...]) -> tuple[list[int], list[float]]:
        return pics.concepts(rows, det, vocab.index, args.slots, args.detector_slots)

    # distractors for caption-only sentences: the words the detectors really put in slots, with repetition
    sample_rows = [it[0] for k in ("flickr", "msrvtt", "cc3m") for it in items[k][:400]]
    distractors = [i for r in sample_rows for i in concepts_of(r)[0]]
    sampler = TextConcepts(vocab, distractors, args.slots)
    sampler.concept_ids = concept_word_ids
    text_pairs = [vocab.encode(c, args.max_words, style) for style, c in sentences]
    mentioned = [sampler.mentioned(ids[1:-1]) for ids in text_pairs]

    def picture_batch(chunk: list[tuple[tuple[int, ...], str, str | None]]):
        """(features [B, N, C], mask [B, N], cids, cprobs, captions, lengths) of (rows, caption, style) examples."""
        feats, mask, cids, cprobs = pics.inputs([r for r, _, _ in chunk], det, vocab.index, args.slots,
                                                args.detector_slots)
        _, caps, lengths = collate([(0, vocab.encode(c, args.max_words, style)) for _, c, style in chunk])
        return feats, mask, cids, cprobs, caps, lengths

    style = {s: (s if args.styles else None) for s in STYLES}  # the token each source starts with

    def epoch_jobs() -> list[tuple[str, list]]:
        photo: list[tuple[tuple[int, ...], str, str | None]] = []
        for r, caps in items["flickr"]:
            photo += [(r, c, style["photo"]) for c in rng.sample(caps, min(args.flickr_caps, len(caps)))]
        for r, caps in items["cc3m"]:
            if rng.random() < args.cc3m:
                photo.append((r, caps[0], style["web"]))
        video: list[tuple[tuple[int, ...], str, str | None]] = []
        for r, caps in items["msrvtt"]:
            for c in rng.sample(caps, min(args.msrvtt_caps, len(caps))):
                k = rng.randint(1, min(args.max_frames, len(r)))
                video.append((tuple(sorted(rng.sample(r, k))), c, style["video"]))
        rng.shuffle(photo)
        video.sort(key=lambda x: len(x[0]))  # similar frame counts share a batch: less padding
        vb = [video[s : s + args.batch] for s in range(0, len(video), args.batch)]
        jobs = [("picture", photo[s : s + args.batch]) for s in range(0, len(photo), args.batch)]
        jobs += [("picture", b) for b in vb]
        chosen = rng.sample(range(len(text_pairs)), min(args.text_per_epoch, len(text_pairs)))
        jobs += [("text", chosen[s : s + args.batch]) for s in range(0, len(chosen), args.batch)]
        rng.shuffle(jobs)
        return jobs

    def greedy(key: str, kind: str) -> list[str]:
        return greedy_captions(model, vocab, pics, det, items[key], args.slots, args.detector_slots, args.max_words,
                               style[kind])

    def evaluate() -> dict:
        mv = greedy("msrvtt_val", "video")
        fl = greedy("flickr_dev", "photo")
        mc, mb = selection_scores(mv, [c for _, c in items["msrvtt_val"]])
        fc, fb = selection_scores(fl, [c for _, c in items["flickr_dev"]])
        log.info("val e.g. %s", mv[:6])
        return {"msrvtt_val_cider": round(mc, 2), "msrvtt_val_bleu4": round(mb, 2),
                "flickr_dev_cider": round(fc, 2), "flickr_dev_bleu4": round(fb, 2), "select": round(mc + fc, 2)}

    def weights_record() -> dict:
        """What best.pt, epoch<N>.pt and (with the optimiser) last.pt hold: the model as it is now, and its record."""
        return {"state": model.state_dict(), "vocab": list(vocab.itos), "config": asdict(config),
                "history": history, "name": args.name, "encoder": args.encoder, "hyperparameters": hyperparameters(args)}

    if not history:
        if args.overwrite:
            clear_run(args.run)
        start = evaluate()
        log.info("before training: %s", start)
        history.append({"epoch": 0, **start})
        best = start["select"]
        # the starting model is the best so far: a fine-tune that never beats it exports it, not the
        # best.pt an earlier run left in this folder (or, on a fresh machine, a FileNotFoundError)
        save_torch(weights_record(), args.run / "best.pt")
        if args.keep_epochs:
            save_torch(weights_record(), args.run / "epoch0.pt")
    for epoch in range(len(history), args.epochs + 1):
        t0 = time.time()
        model.train()
        jobs = epoch_jobs()
        losses = []
        for step, (kind, chunk) in enumerate(jobs):
            if kind == "picture":
                feats, mask, cids, cprobs, caps, lengths = picture_batch(chunk)
            else:
                _, caps, lengths = collate([(0, text_pairs[i]) for i in chunk])
                feats = torch.zeros(len(chunk), 0, pics.grid_all.shape[2])
                mask = None
                cids = torch.zeros(len(chunk), args.slots, dtype=torch.long)
                cprobs = torch.zeros(len(chunk), args.slots)
                for j, i in enumerate(chunk):
                    ids, ps = sampler.sample(mentioned[i], rng)
                    cids[j, : len(ids)] = torch.tensor(ids, dtype=torch.long)
                    cprobs[j, : len(ps)] = torch.tensor(ps)
            logits, alphas = model(feats, caps, lengths, mask=mask, cids=cids, cprobs=cprobs)
            target = caps[:, 1:]
            ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=0)
            loss = ce
            if feats.shape[1] == CELLS:  # photos: doubly stochastic attention (SAT eq. 14), as in stage 1
                loss = loss + ((1.0 - alphas[:, :, :CELLS].sum(1)) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            losses.append(loss.item())
            if step % 100 == 0:
                log.info("epoch %d step %d/%d loss %.3f (%.2f s/step)", epoch, step, len(jobs),
                         sum(losses[-100:]) / len(losses[-100:]), (time.time() - t0) / (step + 1))
        scores = evaluate()
        entry = {"epoch": epoch, "train_loss": round(sum(losses) / len(losses), 4), **scores,
                 "lr": opt.param_groups[0]["lr"], "seconds": round(time.time() - t0)}
        history.append(entry)
        log.info("epoch %d done: %s", epoch, entry)
        (args.run / "history.json").write_text(json.dumps(history, indent=1))
        payload = weights_record()
        if args.keep_epochs:
            save_torch(payload, args.run / f"epoch{epoch}.pt")
        if scores["select"] > best:
            best = scores["select"]
            save_torch(payload, args.run / "best.pt")
        else:
            for g in opt.param_groups:
                g["lr"] *= 0.5
        save_torch({**payload, "opt": opt.state_dict(), "rng": rng.getstate(), "torch_rng": torch.get_rng_state()},
                   last)
    log.info("best selection score %.2f; wall time %.0f s", best, time.time() - t_start)
    if args.out:
        export(args.run, args.out, det, args, {k: len(v) for k, v in items.items()}, len(sentences),
               text_sources=text_sources)


def hyperparameters(args: argparse.Namespace) -> dict:
    """The command line's settings as JSON values: what a checkpoint and the exported model.json record."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}


def parse_epochs(text: str | None) -> list[int] | None:
    """``"0,2,3"`` → ``[0, 2, 3]`` (``--average``); None stays None."""
    if text is None:
        return None
    try:
        epochs = sorted({int(e) for e in text.split(",") if e.strip()})
    except ValueError:
        raise SystemExit(f"error: --average takes epoch numbers like 0,2,3, not {text!r}") from None
    if not epochs or min(epochs) < 0:
        raise SystemExit(f"error: --average takes epoch numbers like 0,2,3, not {text!r}")
    return epochs


def averaged_checkpoint(run: Path, epochs: list[int]) -> dict:
    """The checkpoint of ``run``'s last kept epoch of ``epochs`` with the mean of their weights.

    Epochs of one run from one start lie in one basin, where the mean of their weights often
    generalises better than each (Izmailov et al. 2018, SWA), at no run-time cost. Measured
    for the shipped decoder, it did not (model card, tenth update): score each mean on val.
    """
    paths = [run / f"epoch{e}.pt" for e in epochs]
    missing = [p.name for p in paths if not p.exists()]
    if missing:
        raise SystemExit(f"error: {run} has no {', '.join(missing)} (train with --keep-epochs)")
    ckpts = [read_checkpoint(p) for p in paths]
    if any(c["vocab"] != ckpts[0]["vocab"] or c["config"] != ckpts[0]["config"] for c in ckpts):
        raise SystemExit(f"error: epochs {epochs} of {run} differ in vocabulary or configuration")
    for e, c in zip(epochs, ckpts):  # one run's epochs: each one's history is the start of the last one's
        if ckpts[-1]["history"][: len(c["history"])] != c["history"]:
            raise SystemExit(f"error: {run}: epoch{e}.pt and epoch{epochs[-1]}.pt are of different runs (trained "
                             "again into the same --run); average the epochs of one run")
    out = dict(ckpts[-1])
    out["state"] = {k: sum(c["state"][k].float() for c in ckpts) / len(ckpts) for k in ckpts[0]["state"]}
    out["averaged_epochs"] = epochs
    return out


def frameless_train_ids(caps: Mapping[str, list[str]], frames: Mapping[str, list[str]], held: set[str]) -> list[str]:
    """The official train-split videos that have captions but no frames (``--msrvtt-text``), by number.

    Half the MSR-VTT train videos have no frames in the mirror; their captions can still
    teach how MSR-VTT describes video, as caption-only sentences. ``msrvtt_ids`` keeps the
    split rule: no val or test video and no demo clip, whatever the caption file holds.
    """
    return [v for v in msrvtt_ids("train", caps, held) if v not in frames]


#: Options of this call alone on --resume and --export-only (where the run is, what the call does, its
#: threads): never taken from a run's record.
CALL_OPTIONS = frozenset({"run", "resume", "threads", "export_only", "average", "overwrite"})
#: Options a resumed run may change (how long it goes on, what it keeps, where it exports): left out, the
#: recorded value is used (a resumed run took the defaults: it trained 6 epochs, not its 3, kept no
#: epoch<N>.pt for --average and exported nothing); given, the new value holds.
FREE_OPTIONS = frozenset({"out", "epochs", "keep_epochs"})
#: Every other option is the run's: left out, the recorded value is used; given otherwise, the call is
#: refused (epoch 2 trained on other detectors, an export shipped another detector set than model.json said).
PATH_OPTIONS = frozenset({"init", "run", "out", "detector_outputs"})


def _option(key: str, value) -> str:
    flag = "--" + key.replace("_", "-")
    if value is True:
        return flag
    if value is False:
        return "--no-" + flag[2:] if key == "styles" else f"no {flag}"
    return f"{flag} {value}"


def adopt_recorded(args: argparse.Namespace, given: Mapping, record: Mapping, source: Path, doing: str) -> None:
    """Set ``args``' options that shape a run to those ``record`` (a checkpoint's hyperparameters) holds;
    ``SystemExit`` naming them if the command line gave one another value."""

    def norm(key: str, value):
        return str(Path(value).resolve()) if key in PATH_OPTIONS and value is not None else value

    differ = []
    for key, value in record.items():
        if key in CALL_OPTIONS or key not in vars(args) or (key in FREE_OPTIONS and key in given):
            continue
        if key in given and norm(key, hyperparameters(argparse.Namespace(**{key: given[key]}))[key]) != norm(key, value):
            differ.append((key, value))
        elif key in PATH_OPTIONS:
            setattr(args, key, None if value is None else Path(value))
        else:
            setattr(args, key, value)
    if differ:
        raise SystemExit(f"error: {source} was trained with {', '.join(_option(k, v) for k, v in differ)}; "
                         f"{doing} keeps a run's settings: leave out "
                         f"{', '.join(_option(k, given[k]) for k, _ in differ)}")


def run_checkpoints(run: Path) -> list[Path]:
    """The checkpoints a training run leaves in its folder."""
    if not run.is_dir():
        return []
    return sorted(p for p in run.iterdir() if p.name in ("last.pt", "best.pt") or re.fullmatch(r"epoch\d+\.pt", p.name))


def clear_run(run: Path) -> None:
    """Delete an earlier run's checkpoints and history (--overwrite): a kept epoch<N>.pt of it would otherwise
    be averaged with the new run's by a later --export-only --average."""
    for p in run_checkpoints(run) + [run / "history.json"]:
        p.unlink(missing_ok=True)


def stopped_early(run: Path, earlier: list[Path]) -> str:
    """The error line for a --run stopped before its first epoch ended (no last.pt): --resume said "run without
    it", and without it the call said "--resume continues it"; only --overwrite starts it."""
    return (f"error: {run} holds a run stopped before its first epoch ended ({', '.join(p.name for p in earlier)}; "
            "no last.pt to --resume): --overwrite starts it afresh (deleting them), or give another --run")


def check_prerequisites(args, given: Mapping = {}) -> dict | None:
    """What a run needs that the command line names, checked before minutes of loading features (and,
    with --shipped-detectors, running the detectors over every picture): the model it starts from or
    the checkpoint it resumes (returned), and what --export-only exports. On --resume and --export-only
    the run's recorded settings replace those the command line left out (``adopt_recorded``)."""
    from captioner.weights import read_manifest

    resumed = None
    if args.export_only:
        wanted = ([args.run / f"epoch{n}.pt" for n in parse_epochs(args.average)] if args.average
                  else [args.run / "best.pt"])
        missing = [str(p) for p in wanted if not p.is_file()]
        if missing:
            raise SystemExit(f"error: nothing to export: {', '.join(missing)} missing (train into --run first)")
        adopt_recorded(args, given, read_checkpoint(wanted[-1]).get("hyperparameters") or {}, wanted[-1],
                       "--export-only")
    elif args.resume:
        last = args.run / "last.pt"
        if not last.is_file():
            earlier = run_checkpoints(args.run)
            if earlier:  # stopped during epoch 1: its best.pt is the starting model
                raise SystemExit(stopped_early(args.run, earlier))
            raise SystemExit(f"error: {last}: no such file; nothing to --resume (run without it to start)")
        resumed = read_checkpoint(last)
        adopt_recorded(args, given, resumed.get("hyperparameters") or {}, last, "--resume")
        done = (resumed.get("history") or [{}])[-1].get("epoch", 0)
        if done >= args.epochs and not args.out:  # it trained 3 more epochs and replaced best.pt
            raise SystemExit(f"error: {args.run}: the run has finished its {args.epochs} epochs; --epochs N (more "
                             "than that) goes on, --export-only --out M exports it")
        try:  # Lite0/1/2 features are all 1280-d: only the record tells them apart
            checkpoint_encoder(resumed, args.encoder, last)
        except ModelError as exc:
            raise SystemExit(f"error: {exc}") from None
        slots = (resumed["config"].get("concept_slots"), resumed["config"].get("detector_slots"))
        if slots != (args.slots, args.detector_slots):
            raise SystemExit(f"error: {last} was trained with --slots {slots[0]} --detector-slots {slots[1]}; "
                             "--resume must keep them")
    else:
        earlier = run_checkpoints(args.run)
        if earlier and not args.overwrite and not (args.run / "last.pt").is_file():
            raise SystemExit(stopped_early(args.run, earlier))
        if earlier and not args.overwrite:
            raise SystemExit(f"error: {args.run} holds an earlier run ({', '.join(p.name for p in earlier)}): "
                             "--resume continues it, --export-only exports it, --overwrite starts afresh "
                             "(deleting them), or give another --run")
    if args.detector_outputs is not None and not args.export_only:
        for set_name in PICTURE_SETS:
            detector_outputs_file(args.detector_outputs, set_name)
    if not args.resume or args.shipped_detectors:
        try:
            read_manifest(args.init)
        except ModelError as exc:
            raise SystemExit(f"error: --init: {exc}") from None
    return resumed


def export(run: Path, out: Path, det: Detectors, args, counts: dict, n_sentences: int,
           average: list[int] | None = None, text_sources: str = "COCO, MSVD") -> None:
    """Write the best epoch (or the mean of the kept epochs in ``average``) and its detectors as a model folder."""
    source = run / ("best.pt" if average is None else f"epoch{average[-1]}.pt")
    ckpt = read_checkpoint(source) if average is None else averaged_checkpoint(run, average)
    try:
        encoder = checkpoint_encoder(ckpt, args.encoder, source)
    except ModelError as exc:
        raise SystemExit(f"error: {exc}") from None
    vocab = Vocabulary(tuple(ckpt["vocab"]))
    config = DecoderConfig(**ckpt["config"])
    data = (f"stage 1: see training.stage1; stage 2: MSR-VTT train videos ({counts['msrvtt']}, frames), "
            f"Conceptual Captions photos ({counts['cc3m']}), Flickr8k train ({counts['flickr']}), "
            f"{n_sentences} caption-only sentences ({text_sources}; test captions excluded); "
            "selection on MSR-VTT val + Flickr8k dev")
    if args.shipped_detectors:  # a fine-tune of a released model: training.stage1 then holds that model's record
        data = (f"fine-tune of {args.init} ({'with style tokens ' + '/'.join(STYLES) if args.styles else 'no style tokens'}): "
                + data.split("; ", 1)[1])
    # read before --out is written (it may be --init): the previous stage's record, and a fine-tune's detectors
    init = json.loads((args.init / MANIFEST).read_text()) if (args.init / MANIFEST).exists() else {}
    extra = {"training": {"data": data, "history": ckpt["history"], "stage1": init.get("extra", {}).get("training", {}),
                          **({"averaged_epochs": average} if average is not None else {}),
                          # the training run's settings (checkpoints keep them), not those of an --export-only call
                          "hyperparameters": ckpt.get("hyperparameters") or hyperparameters(args),
                          "command": "make train"}}
    with staged_model(out) as stage:  # model.json last: never one without its detectors
        save_model(stage, ckpt["state"], vocab, config, name=ckpt["name"], encoder=encoder, extra=extra)
        if args.shipped_detectors:  # the --init model's detectors, presence head, search vectors and is/are list
            carry_companions(args.init, stage, init, out)
        else:
            report_path = CACHE / "runs" / "detectors" / "report.json"
            report = json.loads(report_path.read_text()) if report_path.exists() else {}
            if args.detector_rank:
                det = det.low_rank(args.detector_rank)
            entry = save_detectors(stage, det, {"heldout_mAP_full_rank": report.get("heldout_mAP"),
                                                "rank": args.detector_rank or None})
            update_manifest(stage, lambda m: m.update(detectors=entry))
    log.info("exported %s to %s%s", ckpt["name"], out, f" (detectors of {args.init})" if args.shipped_detectors else "")


if __name__ == "__main__":
    main()
