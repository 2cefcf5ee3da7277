"""Stage 3: fine-tune the decoder on CIDEr itself (self-critical sequence training).

Stages 1 and 2 (``pipelines.train``, ``pipelines.train_video``) teach the decoder
with cross-entropy: predict each reference word given the previous *reference*
words. That objective rewards the safest phrasing of the most common captions
("a man is talking" for a fifth of MSR-VTT val), and the decoder never sees its own
mistakes. Self-critical sequence training (Rennie et al. 2017, "Self-critical
sequence training for image captioning"; the baseline of Luo 2020, "A better
variant of SCST") optimises the metric instead: for each picture or video the
decoder *samples* K captions, each is scored with CIDEr-D against all the
references, and the log-probability of a caption is raised in proportion to how
much better it scored than the mean of the other K - 1 samples. CIDEr weighs
n-grams by how rare they are across the corpus, so "a man is talking" earns little
and "a man is cooking noodles in a pan" a lot when that is what the references say.

Data: MSR-VTT train videos (a video's frames as one set, as ``captioner run`` feeds
a segment) and Flickr8k train photos, both with all their references; concept
slots from the *shipped* detectors (the low-rank ones that run at run time) and the
encoder's ImageNet words, through ``detect.concept_inputs`` as at run time.
Selection: greedy CIDEr on MSR-VTT val + Flickr8k dev, as in stage 2. Every epoch
writes ``last.pt`` (``--resume`` continues) and the best epoch ``best.pt``;
``--out`` exports the best one with the initial model's detectors.

    python -m pipelines.train_scst --init weights --run .cache/runs/scst --out .cache/models/scst
    python -m pipelines.train_scst --run .cache/runs/scst --resume
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from captioner.config import DecoderConfig
from captioner.decoder import CaptionDecoder
from captioner.detect import AbsentWords, load_detectors
from captioner.search import Follow
from captioner.vocab import Vocabulary, follow_rules, tokenize
from captioner.weights import checkpoint_encoder, load_model, read_manifest, save_model

from .common import (
    CACHE, DATA, captions_by_file, carry_companions, count, flickr_split, out_folder, positive_int, read_checkpoint, read_tsv,
    save_torch, staged_model,
)
from .extract_features import feature_rows
from .prepare_data import held_out_clips, msrvtt_ids
from .train import collate
from .train_video import Pictures, greedy_captions, selection_scores

log = logging.getLogger("train_scst")


# -- CIDEr-D with corpus document frequencies -------------------------------------------
def ngrams(words: list[str], n: int = 4) -> Counter:
    return Counter(tuple(words[i : i + k]) for k in range(1, n + 1) for i in range(len(words) - k + 1))


class CiderD:
    """CIDEr-D (Vedantam et al. 2015) as ``pycocoevalcap``'s ``CiderScorer`` computes it.

    The one difference is where document frequencies come from: pycocoevalcap counts
    them over the batch it is given; a reward needs them fixed, so they come from
    all the training items' reference sets (as in Rennie et al.'s "coco-train-df").
    Items are indexed once (their references' tf-idf vectors), then any number of
    candidates is scored against an item cheaply.
    """

    sigma = 6.0

    def __init__(self, refs_per_item: list[list[list[str]]]) -> None:
        df: Counter = Counter()
        for refs in refs_per_item:
            df.update({g for r in refs for g in ngrams(r)})
        self.df = df
        self.ref_len = math.log(float(len(refs_per_item)))
        self.refs = [[self._vec(ngrams(r)) for r in refs] for refs in refs_per_item]

    def _vec(self, counts: Counter) -> tuple[list[dict], list[float], int]:
        vec: list[dict] = [{}, {}, {}, {}]
        norm = [0.0] * 4
        length = 0
        for g, tf in counts.items():
            n = len(g) - 1
            v = float(tf) * (self.ref_len - math.log(max(1.0, self.df.get(g, 0.0))))
            vec[n][g] = v
            norm[n] += v * v
            if n == 1:  # sic: pycocoevalcap counts bigrams here; kept so scores match it
                length += tf
        return vec, [math.sqrt(x) for x in norm], length

    def score(self, item: int, words: list[str]) -> float:
        vh, nh, lh = self._vec(ngrams(words))
        total = 0.0
        refs = self.refs[item]
        for vr, nr, lr in refs:
            pen = math.exp(-((lh - lr) ** 2) / (2 * self.sigma ** 2))
            s = 0.0
            for n in range(4):
                val = 0.0
                ref_n = vr[n]
                for g, v in vh[n].items():
                    r = ref_n.get(g)
                    if r is not None:
                        val += min(v, r) * r
                if nh[n] and nr[n]:
                    val /= nh[n] * nr[n]
                s += val * pen
            total += s / 4
        return 10.0 * total / len(refs)


#: Filler the reward learns to love: "talking about a" is common in MSR-VTT's references, so CIDEr pays for
#: "a woman is talking about a woman" though it says nothing (the first SCST run's tails rose from 21 to 76 of 244).
TAIL = ("talking", "about")


def tail_penalty(words: list[str], penalty: float) -> float:
    """``penalty`` for a caption with "talking about a/an/the ...", else 0."""
    for i in range(len(words) - 2):
        if (words[i], words[i + 1]) == TAIL and words[i + 2] in ("a", "an", "the"):
            return penalty
    return 0.0


def sample(model: CaptionDecoder, vocab: Vocabulary, feats: torch.Tensor, mask: torch.Tensor | None,
           cids: torch.Tensor | None, cprobs: torch.Tensor | None, k: int, max_words: int,
           banned: list[int], temperature: float = 1.0, start: torch.Tensor | None = None,
           row_banned: list[tuple[int, ...]] | None = None,
           follow: Follow | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``k`` captions sampled per picture: token ids [B*k, max_words] (pad after <end>) and their summed log-probs [B*k].

    Picture j's samples are rows j*k .. j*k+k-1. The rules of greedy decoding hold
    (no empty caption, never the same word twice in a row, ``banned`` never; per
    picture, ``row_banned`` never: the words presence-aware decoding rules out; after
    a token of ``follow``, only the words it allows: the one-word grammar rules of
    search.py, not its rules for a pair of words, "a makeup" + a noun), so the reward
    judges captions the decoder could nearly always really say. ``start`` [B]: each
    picture's first token (its style token), else <start>. The log-probabilities keep
    their graph: the policy gradient flows through them. ``temperature`` < 1 samples
    nearer the decoder's own best guesses (the log-probabilities are the tempered
    policy's): with a weak decoder, samples at 1 are mostly word salad whose rewards
    are all near zero and teach little.
    """
    state = model.init_state(feats, mask, cids, cprobs)
    B = feats.shape[0]
    state = state.select(torch.arange(B).repeat_interleave(k))
    n = B * k
    tokens = (start.repeat_interleave(k) if start is not None
              else torch.full((n,), vocab.start_id, dtype=torch.long))
    ban = torch.zeros(n, len(vocab), dtype=torch.bool)
    ban[:, banned] = True
    for j, ids in enumerate(row_banned or []):
        if ids:
            ban[j * k : (j + 1) * k, list(ids)] = True
    # the one-word rules only: a pair's rule ("a makeup" + a noun) is the search's, not needed to sample
    follow_t = {tok: torch.from_numpy(blocked) for tok, blocked in (follow or {}).items() if isinstance(tok, int)}
    done = torch.zeros(n, dtype=torch.bool)
    out = torch.full((n, max_words), vocab.pad_id, dtype=torch.long)
    logp_sum = torch.zeros(n)
    for t in range(max_words):
        logits, state, _ = model.step(tokens, state)
        logits = logits.masked_fill(ban, float("-inf"))
        if t == 0:
            logits[:, vocab.end_id] = float("-inf")
        else:
            logits[torch.arange(n), tokens] = float("-inf")
            for tok, blocked in follow_t.items():
                rows = (tokens == tok).nonzero().squeeze(1)
                if len(rows):
                    logits[rows.unsqueeze(1), blocked.unsqueeze(0)] = float("-inf")
        logp = (logits / temperature).log_softmax(-1)
        nxt = torch.multinomial(logp.detach().exp(), 1).squeeze(1)
        lp = logp.gather(1, nxt.unsqueeze(1)).squeeze(1)
        logp_sum = logp_sum + lp.masked_fill(done, 0.0)
        nxt = nxt.masked_fill(done, vocab.pad_id)
        out[:, t] = nxt
        done = done | (nxt == vocab.end_id)
        tokens = nxt.masked_fill(nxt == vocab.pad_id, vocab.end_id)
        if bool(done.all()):
            break
    return out, logp_sum


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--init", type=Path, default=Path("weights"), help="model folder to continue (stage 2)")
    ap.add_argument("--run", type=out_folder, default=CACHE / "runs" / "scst")
    ap.add_argument("--resume", action="store_true", help="continue the run in --run from its last.pt")
    ap.add_argument("--out", type=out_folder, default=None, help="export the best epoch here (with the --init detectors)")
    ap.add_argument("--epochs", type=positive_int, default=8)
    ap.add_argument("--batch", type=positive_int, default=24, help="pictures per step (each sampled --samples times)")
    ap.add_argument("--samples", type=positive_int, default=5)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--temperature", type=float, default=0.5, help="sampling temperature (see sample())")
    ap.add_argument("--xe-weight", type=float, default=0.5,
                    help="weight of cross-entropy on one reference per picture, added to keep captions fluent")
    ap.add_argument("--flickr-per-epoch", type=count, default=1500)
    ap.add_argument("--max-frames", type=positive_int, default=4, help="most frames of a video in one training example")
    ap.add_argument("--max-words", type=positive_int, default=16)
    ap.add_argument("--limit", type=positive_int, default=None, help="first N items of each set (smoke runs)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=positive_int, default=2)
    ap.add_argument("--name", default="msrvtt-cc3m-flickr8k-lite0-detectors-scst")
    ap.add_argument("--export-only", action="store_true")
    ap.add_argument("--presence", action=argparse.BooleanOptionalAction, default=True,
                    help="sample no word presence-aware decoding rules out (person words where nobody is seen)")
    ap.add_argument("--tail-penalty", type=float, default=0.3,
                    help="taken off the reward (CIDEr-D / 10) of a caption with 'talking about a/an/the' (see TAIL)")
    ap.add_argument("--grammar", action=argparse.BooleanOptionalAction, default=True,
                    help="sample after is/are only the words the --init model's grammar list allows")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = random.Random(args.seed)
    lim = lambda xs: xs[: args.limit] if args.limit else xs  # noqa: E731
    init_dir = args.init
    if args.resume or args.export_only:
        recorded = args.run / "init.json"
        if not recorded.is_file():
            raise SystemExit(f"error: {recorded}: no such file; nothing to {'--resume' if args.resume else 'export'} "
                             "(train into --run first)")
        init_dir = Path(json.loads(recorded.read_text())["init"])
    # what is resumed or exported, read before the data (a damaged file: one line, in seconds)
    ckpt = (read_checkpoint(args.run / ("best.pt" if args.export_only else "last.pt"))
            if args.resume or args.export_only else None)
    args.run.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(init_dir)  # before it is recorded: a bad --init must not replace a good run's record
    if not (args.resume or args.export_only):
        (args.run / "init.json").write_text(json.dumps({"init": str(args.init)}))
    det = load_detectors(init_dir, manifest)
    if det is None:
        raise SystemExit(f"error: {init_dir} has no detectors; SCST continues a stage-2 model")
    if args.export_only:
        if not args.out:
            ap.error("--export-only needs --out")
        export(args, init_dir, {}, ckpt)
        return

    # -- data ---------------------------------------------------------------------------
    items = Pictures(manifest["encoder"], det)  # the shipped detectors' outputs, as at run time
    fl_caps = captions_by_file(DATA / "flickr8k" / "captions.tsv")
    fl_train = lim([n for n in flickr_split("train") if n in feature_rows(items.encoder, "flickr8k")])
    fl_dev = lim(flickr_split("dev"))
    mv_caps: dict[str, list[str]] = {}
    for vid, c in read_tsv(DATA / "text" / "msrvtt_captions_all.tsv"):
        mv_caps.setdefault(vid, []).append(c)
    frames: dict[str, list[str]] = {}
    for f in feature_rows(items.encoder, "msrvtt"):
        frames.setdefault(f.split("/")[0], []).append(f)
    held = held_out_clips()
    mv_train = lim([v for v in msrvtt_ids("train", frames, held) if v in mv_caps])
    mv_val = lim([v for v in msrvtt_ids("val", frames, held) if v in mv_caps])
    # the training manifest: tests/test_training_data.py fails if a val/test or demo-clip id is in it
    (args.run / "msrvtt_train_ids.txt").write_text("\n".join(mv_train) + "\n")

    def frames_of(v: str) -> list[str]:
        return sorted(frames[v], key=lambda f: (f.split("/")[1].rsplit("_", 1)[0], int(f.rsplit("_", 1)[1][:-4])))

    sets: dict[str, list[tuple[tuple[int, ...], list[str]]]] = {}
    rows = items.add("flickr8k", fl_train + fl_dev)
    sets["flickr"] = [((r,), fl_caps[n]) for r, n in zip(rows, fl_train)]
    sets["flickr_dev"] = [((r,), fl_caps[n]) for r, n in zip(rows[len(fl_train):], fl_dev)]
    for key, vids in (("msrvtt", mv_train), ("msrvtt_val", mv_val)):
        names = [f for v in vids for f in frames_of(v)]
        it = iter(items.add("msrvtt", names))
        sets[key] = [(tuple(next(it) for _ in frames_of(v)), mv_caps[v]) for v in vids]
    items.freeze()
    train = sets["msrvtt"] + sets["flickr"]
    n_video = len(sets["msrvtt"])
    t0 = time.time()
    cider = CiderD([[tokenize(c) for c in caps] for _, caps in train])
    log.info("items: %s; CIDEr-D index of %d training items in %.0f s", {k: len(v) for k, v in sets.items()},
             len(train), time.time() - t0)

    # -- model ----------------------------------------------------------------------------
    last = args.run / "last.pt"
    if ckpt is not None:
        config = DecoderConfig(**ckpt["config"])
        vocab = Vocabulary(tuple(ckpt["vocab"]))
        checkpoint_encoder(ckpt, manifest["encoder"], last)  # Lite0/1/2 all give 1280-d features: refuse a mix
        model = CaptionDecoder(config)
        model.load_state_dict(ckpt["state"])
        log.info("resumed %s after epoch %d", last, len(ckpt["history"]) - 1)
    else:
        model, vocab, info = load_model(init_dir)
        config = model.config
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    history: list[dict] = []
    if ckpt is not None:
        opt.load_state_dict(ckpt["opt"])
        history = ckpt["history"]
        rng.setstate(ckpt["rng"])
        torch.set_rng_state(ckpt["torch_rng"])
    slots, det_slots = config.concept_slots, config.detector_slots
    banned = [vocab.pad_id, vocab.start_id, vocab.unk_id, *vocab.style_ids]
    # each source's style token (a decoder without them starts with <start>), as at run time
    video_start, photo_start = vocab.start_for("video"), vocab.start_for("photo")
    absent = AbsentWords.build(det, vocab.index, vocab.unk_id,
                               with_person=(manifest.get("grammar") or {}).get("before_person", ())) if args.presence else None
    follow = follow_rules(vocab, manifest.get("grammar") or {}) if args.grammar else None
    log.info("styles: %s; presence-aware sampling: %s; grammar rule: %s", vocab.style_ids or "none",
             absent is not None, sorted(vocab.itos[t] for t in follow if isinstance(t, int)) if follow else "none")

    def row_bans(rows_list: list[tuple[int, ...]], feats: torch.Tensor, mask: torch.Tensor) -> list[tuple[int, ...]]:
        """The words presence-aware decoding rules out for each picture of a batch.

        Its detector probabilities are the frames' mean, as ``Detectors.probs`` computes
        them, taken from ``items`` (computed once for every frame) instead of again.
        """
        if absent is None:
            return []
        return [absent(f[m].numpy(), items.det_all[list(r)].mean(0)) for r, f, m in zip(rows_list, feats, mask)]

    def batch_inputs(rows_list: list[tuple[int, ...]]):
        return items.inputs(rows_list, det, vocab.index, slots, det_slots)

    def words_of(ids: list[int]) -> list[str]:
        return tokenize(vocab.decode(ids))

    def greedy(key: str, style: str) -> list[str]:
        return greedy_captions(model, vocab, items, det, sets[key], slots, det_slots, 20, style)

    def evaluate() -> dict:
        mv, fl = greedy("msrvtt_val", "video"), greedy("flickr_dev", "photo")
        mc, mb = selection_scores(mv, [c for _, c in sets["msrvtt_val"]])
        fc, fb = selection_scores(fl, [c for _, c in sets["flickr_dev"]])
        top = Counter(mv).most_common(3)
        log.info("val e.g. %s; most frequent: %s; distinct %d of %d", mv[:6], top, len(set(mv)), len(mv))
        return {"msrvtt_val_cider": round(mc, 2), "msrvtt_val_bleu4": round(mb, 2),
                "flickr_dev_cider": round(fc, 2), "flickr_dev_bleu4": round(fb, 2),
                "msrvtt_val_distinct": len(set(mv)), "select": round(mc + fc, 2)}

    def save(name: str, extra: dict | None = None) -> None:
        payload = {"state": model.state_dict(), "vocab": list(vocab.itos), "config": asdict(config),
                   "history": history, "name": args.name, "encoder": manifest["encoder"], **(extra or {})}
        save_torch(payload, args.run / name)

    if not history:
        start = evaluate()
        log.info("before SCST: %s", start)
        history.append({"epoch": 0, **start})
        save("best.pt")
    best = max(h["select"] for h in history)
    for epoch in range(len(history), args.epochs + 1):
        t0 = time.time()
        jobs = list(range(n_video))
        jobs += [n_video + i for i in rng.sample(range(len(sets["flickr"])), min(args.flickr_per_epoch, len(sets["flickr"])))]
        rng.shuffle(jobs)
        # a batch holds one kind (video or photo) with similar frame counts: less padding
        jobs.sort(key=lambda i: (i >= n_video, min(len(train[i][0]), args.max_frames)))
        batches = [jobs[s : s + args.batch] for s in range(0, len(jobs), args.batch)]
        rng.shuffle(batches)
        rewards_log: list[float] = []
        for step, chunk in enumerate(batches):
            model.train()
            rows_list = []
            for i in chunk:
                r = train[i][0]
                k = rng.randint(1, min(args.max_frames, len(r)))
                rows_list.append(tuple(sorted(rng.sample(r, k))))
            feats, mask, cids, cprobs = batch_inputs(rows_list)
            start = torch.tensor([video_start if i < n_video else photo_start for i in chunk])
            seqs, logp = sample(model, vocab, feats, mask, cids, cprobs, args.samples, args.max_words, banned,
                                args.temperature, start, row_bans(rows_list, feats, mask), follow)
            K = args.samples
            said = [words_of(seqs[j].tolist()) for j in range(len(seqs))]
            rewards = torch.tensor([cider.score(chunk[j // K], w) - tail_penalty(w, args.tail_penalty)
                                    for j, w in enumerate(said)])
            r = rewards.view(-1, K)
            baseline = (r.sum(1, keepdim=True) - r) / (K - 1)  # mean of the other samples
            adv = (r - baseline).view(-1)
            loss = -(adv * logp).mean()
            if args.xe_weight:
                _, caps, lengths = collate([(0, vocab.encode(rng.choice(train[i][1]), args.max_words,
                                                             "video" if i < n_video else "photo")) for i in chunk])
                logits, _ = model(feats, caps, lengths, mask=mask, cids=cids, cprobs=cprobs)
                xe = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), caps[:, 1:].reshape(-1),
                                                       ignore_index=0)
                loss = loss + args.xe_weight * xe
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            rewards_log.append(float(r.mean()))
            if step % 20 == 0:
                log.info("epoch %d step %d/%d mean reward %.3f (%.2f s/step) e.g. %r", epoch, step, len(batches),
                         sum(rewards_log[-20:]) / len(rewards_log[-20:]), (time.time() - t0) / (step + 1),
                         vocab.decode(seqs[0].tolist()))
        scores = evaluate()
        entry = {"epoch": epoch, "mean_reward": round(sum(rewards_log) / len(rewards_log), 4), **scores,
                 "lr": opt.param_groups[0]["lr"], "seconds": round(time.time() - t0)}
        history.append(entry)
        log.info("epoch %d done: %s", epoch, entry)
        (args.run / "history.json").write_text(json.dumps(history, indent=1))
        if scores["select"] > best:
            best = scores["select"]
            save("best.pt")
        save("last.pt", {"opt": opt.state_dict(), "rng": rng.getstate(), "torch_rng": torch.get_rng_state()})
    log.info("best selection score %.2f", best)
    if args.out:
        export(args, init_dir, {k: len(v) for k, v in sets.items()})


def export(args, init_dir: Path, counts: dict, ckpt: dict | None = None) -> None:
    """Write the best epoch as a model folder, with the detectors, presence head, search vectors and grammar list of the model it continued."""
    ckpt = ckpt or read_checkpoint(args.run / "best.pt")
    manifest = read_manifest(init_dir)
    prev = manifest.get("extra", {}).get("training", {})
    extra = {"training": {**prev, "stage3_scst": {
        "data": f"MSR-VTT train videos ({counts.get('msrvtt', '?')}) and Flickr8k train photos "
                f"({args.flickr_per_epoch} a epoch of {counts.get('flickr', '?')}), all references; "
                "selection on MSR-VTT val + Flickr8k dev (greedy CIDEr)",
        "history": ckpt["history"],
        "hyperparameters": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}}}
    encoder = checkpoint_encoder(ckpt, manifest["encoder"], args.run / "best.pt")
    with staged_model(args.out) as stage:  # model.json last: never one without its detectors
        save_model(stage, ckpt["state"], Vocabulary(tuple(ckpt["vocab"])), DecoderConfig(**ckpt["config"]),
                   name=ckpt["name"], encoder=encoder, extra=extra)
        carry_companions(init_dir, stage, manifest, args.out)
    log.info("exported %s (epoch %d) to %s", ckpt["name"], len(ckpt["history"]) - 1, args.out)


if __name__ == "__main__":
    main()
