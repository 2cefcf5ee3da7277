"""Train the visual concept detectors (``captioner/detect.py``) on every paired picture.

Multiple-instance learning (Fang et al. 2015): a picture is a bag of 49 grid cells,
labelled with the caption words its captions mention; a word's unit fires on the
cells that show it, pooled by noisy-OR. Data (cached encoder features,
``pipelines.extract_features``):

| set | train | held out (calibration, AP, thresholds) |
|---|---|---|
| Flickr8k | train split (6,000) | dev split (1,000) |
| MSR-VTT frames | train videos, each frame labelled with its video's captions | val videos |
| Conceptual Captions | keys not divisible by 20 | keys divisible by 20 |

A word is "in" a picture when at least ``min_share`` of its captions mention it
(any form: "dogs" counts for "dog"): 1 of Flickr8k's 5, 2 of MSR-VTT's ~20, CC3M's
one. "person" is a label of its own: any person word (``detect.PERSON_WORDS``).
Words: the ``--words`` most frequent content words over the training labels.

After training, each word is Platt-calibrated on the held-out pictures, its average
precision (AP) there is reported, and the person threshold is set so that the held-out
pictures with a person keep ``--person-recall`` of their person words. Detector
outputs of every cached picture are written beside the features
(``<set>_det.npy``) for the decoder's training.

    python -m pipelines.train_detectors              # ~10 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from captioner.detect import PERSON_WORDS, Detectors
from captioner.outputs import write_atomic
from captioner.vocab import tokenize
from captioner.weights import sha256_file

from .common import (
    CACHE, DATA, captions_by_file, flickr_split, out_folder, positive_int, read_tsv, save_npy, save_npz, share,
)
from .extract_features import feature_dir, feature_rows
from .prepare_data import PREPARED, held_out_clips, msrvtt_split

log = logging.getLogger("detectors")

#: Where `train_detectors` writes the detectors, and `train_video` and `detector_rank` read them.
DETECTORS = CACHE / "runs" / "detectors" / "detectors.npz"

#: Words that say nothing about what is visible (function words, counts, "video", "shown").
STOPWORDS = frozenset("""a an the of in on at with and or to it its it's this that these those there their his her he she
they them is are was were be been being has have had do does doing who whom what which while as by for from into onto
out up down over under near next front back some two three four five several many one each other another something
someone very about through around off top side then than so but not no all also just only can will would could
image images photo photos picture pictures video videos clip shown show shows showing seen stock illustration vector
being gets get got getting way thing things part lot lots your you we our us i my me how what when where why
who's here""".split())


#: Words ending in "s" that are not plurals of another caption word.
NOT_PLURAL = frozenset("his this is was has as us yes its bus gas glass dress grass class boss news pants jeans shorts "
                       "glasses sunglasses goggles clothes series species always across".split())


def lemma_map(counts: Counter) -> dict[str, str]:
    """Plural -> singular for words whose singular is itself a caption word ("dogs" -> "dog")."""
    out = {}
    for w in counts:
        if w in NOT_PLURAL or len(w) < 4:
            continue
        if w.endswith("ies") and w[:-3] + "y" in counts:
            out[w] = w[:-3] + "y"
        elif w.endswith("es") and w[:-2] in counts and counts[w[:-2]] >= counts[w]:
            out[w] = w[:-2]
        elif w.endswith("s") and not w.endswith("ss") and w[:-1] in counts:
            out[w] = w[:-1]
    for plural, single in (("men", "man"), ("women", "woman"), ("children", "child")):
        out[plural] = single
    return out


def mentions(captions: list[str], lemma: dict[str, str]) -> list[set[str]]:
    """Per caption, the set of (singular) words it says, plus "person" when it names one."""
    out = []
    for c in captions:
        toks = tokenize(c)
        words = {lemma.get(t, t) for t in toks}
        if any(t in PERSON_WORDS for t in toks):
            words.add("person")
        out.append(words)
    return out


def picture_labels(caps: list[str], lemma: dict[str, str], min_share: float) -> Counter:
    """Word -> 1 for every word at least ``min_share`` of the captions mention."""
    per = mentions(caps, lemma)
    counts = Counter(w for s in per for w in s)
    need = max(1, math.ceil(min_share * len(caps) - 1e-9))
    return Counter({w: 1 for w, n in counts.items() if n >= need})


def load_sets(encoder: str) -> list[dict]:
    """Per set: names, grid memmap, captions per name, split per name ('train' / 'heldout')."""
    sets = []
    fl = captions_by_file(DATA / "flickr8k" / "captions.tsv")
    split = {n: "train" for n in flickr_split("train")} | {n: "heldout" for n in flickr_split("dev")}
    sets.append(dict(name="flickr8k", caps=fl, split=split, share=0.2))
    mv: dict[str, list[str]] = {}
    for vid, c in read_tsv(DATA / "text" / "msrvtt_captions_all.tsv"):
        mv.setdefault(vid, []).append(c)
    held = held_out_clips()
    rows = feature_rows(encoder, "msrvtt")
    mcaps, msplit = {}, {}
    for f in rows:
        vid = f.split("/")[0]
        s = msrvtt_split(vid)
        if vid in held or s == "test" or vid not in mv:
            continue
        mcaps[f] = mv[vid]
        msplit[f] = "train" if s == "train" else "heldout"
    sets.append(dict(name="msrvtt", caps=mcaps, split=msplit, share=0.1))
    cc = {f: [c] for f, c in read_tsv(PREPARED / "cc3m" / "captions.tsv")} if (PREPARED / "cc3m" / "captions.tsv").exists() else {}
    csplit = {f: ("heldout" if int(Path(f).stem) % 20 == 0 else "train") for f in cc}
    sets.append(dict(name="cc3m", caps=cc, split=csplit, share=1.0))
    missing = [s["name"] for s in sets if not (feature_dir(encoder) / f"{s['name']}_files.txt").exists()]
    if missing:
        log.warning("no cached features for %s: trained without (run pipelines.extract_features)", ", ".join(missing))
        sets = [s for s in sets if s["name"] not in missing]
    for s in sets:
        rows = feature_rows(encoder, s["name"])
        s["names"] = [n for n in rows if n in s["split"]]
        s["rows"] = np.array([rows[n] for n in s["names"]], dtype=np.int64)
    return sets


def labelled_sets(encoder: str) -> tuple[list[dict], dict[str, list[Counter]]]:
    """The sets of ``load_sets`` and every picture's word labels (plurals folded by the training captions)."""
    sets = load_sets(encoder)
    all_caps = [c for s in sets for n in s["names"] if s["split"][n] == "train" for c in s["caps"][n]]
    lemma = lemma_map(Counter(t for c in all_caps for t in tokenize(c)))
    labels = {s["name"]: [picture_labels(s["caps"][n], lemma, s["share"]) for n in s["names"]] for s in sets}
    return sets, labels


def stack(encoder: str, sets: list[dict], labels: dict, words: list[str],
          split: str) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """(grids [n, 49, C] float16, labels [n, D], (set, name)) of one split's pictures."""
    widx = {w: j for j, w in enumerate(words)}
    feats, ys, who = [], [], []
    for s in sets:
        keep = [j for j, n in enumerate(s["names"]) if s["split"][n] == split]
        grid = np.load(feature_dir(encoder) / f"{s['name']}_grid.npy", mmap_mode="r")
        rows = s["rows"][keep]
        order = np.argsort(rows)
        feats.append(np.asarray(grid[rows[order]])[np.argsort(order)])
        y = np.zeros((len(keep), len(words)), np.float32)
        for i, j in enumerate(keep):
            for w in labels[s["name"]][j]:
                if w in widx:
                    y[i, widx[w]] = 1
        ys.append(y)
        who += [(s["name"], s["names"][j]) for j in keep]
        log.info("%s %s: %d pictures", s["name"], split, len(keep))
    return np.concatenate(feats), np.concatenate(ys), who


def noisy_or_loss(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """BCE of P = 1 - exp(-sum_cells softplus(z)) against labels y; z [B, cells, D], y [B, D]."""
    s = F.softplus(z).sum(1).clamp_min(1e-6)
    log_p = torch.log(-torch.expm1(-s))
    return -(y * log_p - (1 - y) * s).mean()


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """AP of one word: mean precision at the rank of each positive (NaN without positives)."""
    pos = labels.sum()
    if pos == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    hits = labels[order]
    prec = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((prec * hits).sum() / pos)


def platt(logit: np.ndarray, y: np.ndarray, l2: float = 1.0, iters: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Per-word (a, b) of sigmoid(a * logit + b), fitted on held-out labels with an L2 pull toward (1, 0)."""
    x = torch.tensor(logit, dtype=torch.float64)
    t = torch.tensor(y, dtype=torch.float64)
    a = torch.ones(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([a, b], max_iter=iters, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(a * x + b, t, reduction="sum")
        loss = loss + l2 * (((a - 1) ** 2).sum() + (b ** 2).sum())
        loss.backward()
        return loss

    opt.step(closure)
    return a.detach().numpy(), b.detach().numpy()


def fit(xtr: np.ndarray, ytr: np.ndarray, xho: np.ndarray, yho: np.ndarray, words: list[str], epochs: int,
        batch: int, lr: float, rng: np.random.Generator, history: list[dict] | None = None,
        rows: np.ndarray | None = None) -> tuple[Detectors, np.ndarray, list[float]]:
    """Train detectors on the training pictures (``rows`` of ``xtr``, default all) and Platt-calibrate each
    word on the held-out ones (monotone, so AP is unchanged). Returns them, their uncalibrated held-out
    probabilities and each word's held-out AP; each epoch's held-out mAP is appended to ``history``."""
    rows = np.arange(len(xtr)) if rows is None else rows
    prior = ytr[rows].mean(0).clip(1e-4, 0.5)
    cell = 1 - (1 - prior) ** (1 / xtr.shape[1])
    weight = torch.zeros(xtr.shape[2], len(words), requires_grad=True)
    bias = torch.tensor(np.log(cell / (1 - cell)), dtype=torch.float32, requires_grad=True)
    opt = torch.optim.Adam([weight, bias], lr=lr)
    steps = math.ceil(len(rows) / batch) * epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    for epoch in range(1, epochs + 1):
        te = time.time()
        order = rng.permutation(rows)
        losses = []
        for s in range(0, len(order), batch):
            idx = np.sort(order[s : s + batch])
            x = torch.from_numpy(xtr[idx].astype(np.float32))
            y = torch.from_numpy(ytr[idx])
            loss = noisy_or_loss(x @ weight + bias, y) * len(words) + 1e-5 * (weight ** 2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        det = Detectors(tuple(words), weight.detach().numpy().copy(), bias.detach().numpy().copy(),
                        np.ones(len(words), np.float32), np.zeros(len(words), np.float32))
        pho = np.concatenate([det.frame_probs(xho[s : s + 512]) for s in range(0, len(xho), 512)])
        aps = [average_precision(pho[:, j], yho[:, j]) for j in range(len(words))]
        m = float(np.nanmean(aps))
        if history is not None:
            history.append({"epoch": epoch, "loss": float(np.mean(losses)), "heldout_mAP": round(100 * m, 2),
                            "seconds": round(time.time() - te)})
            log.info("epoch %d: %s", epoch, history[-1])
    logit = np.log(np.clip(pho, 1e-7, 1 - 1e-7)) - np.log(np.clip(1 - pho, 1e-7, 1))
    a, b = platt(logit, yho)
    return Detectors(tuple(words), det.weight, det.bias, a.astype(np.float32), b.astype(np.float32)), pho, aps


def detector_outputs(det: Detectors, grid: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """Per-picture detector probabilities (float16) of ``rows`` of a cached grid (default all), 512 at a time."""
    rows = np.arange(len(grid)) if rows is None else rows
    out = np.zeros((len(rows), len(det.words)), np.float16)
    for s in range(0, len(rows), 512):
        out[s : s + 512] = det.frame_probs(np.asarray(grid[rows[s : s + 512]])).astype(np.float16)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", default="efficientnet-lite0")
    ap.add_argument("--words", type=positive_int, default=600, help="detector vocabulary size (most frequent content words)")
    ap.add_argument("--min-positives", type=int, default=40)
    ap.add_argument("--epochs", type=positive_int, default=4)
    ap.add_argument("--batch", type=positive_int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--person-recall", type=share, default=0.95,
                    help="held-out pictures with a person that keep their person words")
    ap.add_argument("--out", type=out_folder, default=CACHE / "runs" / "detectors")
    ap.add_argument("--threads", type=positive_int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-cache-outputs", action="store_true", help="do not write <set>_det.npy (trial runs; an --out other than the default never does)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    t0 = time.time()

    sets, labels = labelled_sets(args.encoder)
    pos = Counter()
    for s in sets:
        for n, lab in zip(s["names"], labels[s["name"]]):
            if s["split"][n] == "train":
                pos.update(lab)
    words = ["person"] + [w for w, c in pos.most_common() if w != "person" and w not in STOPWORDS
                          and not w.isdigit() and len(w) > 1 and c >= args.min_positives][: args.words - 1]
    log.info("%d words; most frequent: %s", len(words), ", ".join(words[:40]))

    xtr, ytr, _ = stack(args.encoder, sets, labels, words, "train")
    xho, yho, who = stack(args.encoder, sets, labels, words, "heldout")
    history: list[dict] = []
    det, pho, aps = fit(xtr, ytr, xho, yho, words, args.epochs, args.batch, args.lr, rng, history)
    cal = np.concatenate([det.frame_probs(xho[s : s + 512]) for s in range(0, len(xho), 512)])
    person = cal[:, 0]
    has = yho[:, 0] > 0
    threshold = float(np.quantile(person[has], 1 - args.person_recall))
    det = Detectors(det.words, det.weight, det.bias, det.platt_a, det.platt_b, round(threshold, 4))
    without = ~has
    report = {
        "words": len(words), "train_pictures": int(len(xtr)), "heldout_pictures": int(len(xho)),
        "history": history, "heldout_mAP": round(100 * float(np.nanmean(aps)), 2),
        "heldout_AP": {w: round(100 * ap_, 1) for w, ap_ in zip(words, aps)},
        "heldout_AP_by_set": {}, "person_threshold": det.presence_threshold,
        "person_threshold_rule": f"held-out pictures with a person keep person words at P(person) >= t for {args.person_recall:.0%} of them",
        "person_heldout": {"with_person": int(has.sum()), "without": int(without.sum()),
                           "without_banned_share": round(float((person[without] < threshold).mean()), 3)},
        "calibration_mean_abs_error": round(float(np.abs(cal.mean(0) - yho.mean(0)).mean()), 4),
        "seconds": round(time.time() - t0),
    }
    for name in ("flickr8k", "msrvtt", "cc3m"):
        sel = np.array([w == name for w, _ in who])
        if sel.any():
            report["heldout_AP_by_set"][name] = round(100 * float(np.nanmean(
                [average_precision(pho[sel, j], yho[sel, j]) for j in range(len(words))])), 2)
    args.out.mkdir(parents=True, exist_ok=True)
    save_npz(args.out / "detectors.npz", words=np.array(words), weight=det.weight, bias=det.bias,
             platt_a=det.platt_a, platt_b=det.platt_b, threshold=np.float32(det.presence_threshold))
    (args.out / "report.json").write_text(json.dumps(report, indent=1))
    log.info("held-out mAP %.2f (by set %s); person threshold %.3f bans %.0f%% of held-out pictures without one",
             report["heldout_mAP"], report["heldout_AP_by_set"], threshold,
             100 * report["person_heldout"]["without_banned_share"])
    del xtr, xho
    write_outputs(args.encoder, det, args.out, args.no_cache_outputs)
    log.info("done in %.0f s", time.time() - t0)


def write_outputs(encoder: str, det: Detectors, out: Path, no_cache_outputs: bool = False) -> None:
    """Each cached set's ``<set>_det.npy`` from the detectors in ``out`` (``det``), where ``caches_outputs``:
    a trial ``--out`` leaves the shared ones, made by ``DETECTORS``, as they are."""
    if not caches_outputs(out, no_cache_outputs):
        if not no_cache_outputs:
            log.info("--out %s is not %s: the shared <set>_det.npy (made by those) are left as they are",
                     out, DETECTORS.parent)
        return
    made_by = sha256_file(Path(out) / "detectors.npz")
    for name in ("flickr8k", "coco", "msrvtt", "cc3m"):
        path = feature_dir(encoder) / f"{name}_grid.npy"
        if not path.exists():
            continue
        grid = np.load(path, mmap_mode="r")
        save_npy(feature_dir(encoder) / f"{name}_det.npy", detector_outputs(det, grid))
        _record_outputs(encoder, name, made_by)
        log.info("%s: detector outputs for %d pictures", name, len(grid))


def caches_outputs(out: Path, no_cache_outputs: bool = False) -> bool:
    """Whether a run writes the shared ``<set>_det.npy``: only the detectors that train_video and the other
    jobs read (``DETECTORS``) make them; a trial ``--out`` replaced them with its own outputs."""
    return not no_cache_outputs and Path(out).resolve() == DETECTORS.parent.resolve()


#: Beside the cached ``<set>_det.npy``: which ``detectors.npz`` (sha256) made each set's outputs.
OUTPUTS_RECORD = "det_outputs.json"


def _made_from(encoder: str, set_name: str, detectors_sha: str) -> dict:
    """What a set's cached detector outputs are made from: the detectors, and the features (size, time)."""
    st = (feature_dir(encoder) / f"{set_name}_grid.npy").stat()
    return {"detectors": detectors_sha, "features": [st.st_size, st.st_mtime_ns]}


def _record_outputs(encoder: str, set_name: str, made_by: str) -> None:
    record = feature_dir(encoder) / OUTPUTS_RECORD
    try:
        made = json.loads(record.read_text())
    except (OSError, ValueError):
        made = {}
    write_atomic(record, json.dumps({**made, set_name: _made_from(encoder, set_name, made_by)}, indent=1) + "\n")


def check_outputs(encoder: str, set_name: str, detectors: Path = DETECTORS) -> None:
    """Stop unless the cached ``<set>_det.npy`` was made by ``detectors``: ``train_detectors`` writes the
    detectors first and the outputs one set after another (minutes), so a run stopped between them,
    or one with ``--no-cache-outputs``, paired new detectors with old outputs (an IndexError in
    ``train_video``, or with as many words, a decoder trained silently on another detector's outputs)."""
    try:
        made = json.loads((feature_dir(encoder) / OUTPUTS_RECORD).read_text()).get(set_name)
        now = _made_from(encoder, set_name, sha256_file(detectors))
    except (OSError, ValueError, AttributeError):
        made, now = None, {}
    if made != now:
        raise SystemExit(f"error: the cached detector outputs of {set_name} ({feature_dir(encoder)}) were not made by "
                         f"{detectors} from the features there now; run python -m pipelines.train_detectors "
                         "(without --no-cache-outputs) again")


def load_trained(path: Path = DETECTORS) -> Detectors:
    if not path.is_file():
        raise SystemExit(f"error: {path}: no such file; train the detectors first (python -m pipelines.train_detectors)")
    z = np.load(path)
    return Detectors(tuple(str(w) for w in z["words"]), z["weight"], z["bias"], z["platt_a"], z["platt_b"],
                     round(float(z["threshold"]), 4))


if __name__ == "__main__":
    main()
