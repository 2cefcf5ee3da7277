"""Out-of-fold detector outputs for every training picture (cross-fitting the concept detectors).

The detectors (``pipelines.train_detectors``) are trained on the MSR-VTT train frames and
Flickr8k train photos, and everything downstream of them (the search map, the decoder's
concept slots, the caption memory's keys) was trained or keyed on their outputs *on those
same pictures*. There they are far cleaner than on a video they never saw: MSR-VTT
train frames mAP 51.4 in-sample against 12.6 out-of-fold, on the same 594 words
(the model card, 2026-12-04, fourth session). Two consequences:

* a "held-out" pool made of train videos (``train_vse --holdout``) is contaminated: its
  videos' detector outputs are in-sample. ``train_vse --clean-pool DIR`` scores that pool
  with this job's outputs instead, as a test video would be scored;
* a model that learns from detector outputs can learn from out-of-fold ones
  (``train_video --detector-outputs DIR``), as noisy as at run time.

Each of ``--folds`` detectors is trained as ``train_detectors`` trains the shipped ones
(same words, epochs, learning rate, Platt step on the held-out pictures) on the training
pictures outside its fold (MSR-VTT by video, Flickr8k by photo); its fold's pictures get
its outputs. Pictures no detector trained on (val, dev, test, CC3M) get those of the
model's own detectors (``--model``), as at run time, except CC3M, which the folds leave
out: it gets fold 0's. Writes ``<out>/<set>_det.npy`` (float16, rows as the cached features).

    python -m pipelines.crossfit_detectors --model weights --out .cache/runs/crossfit   # ~12 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import zlib
from pathlib import Path

import numpy as np
import torch

from captioner.detect import Detectors, load_detectors
from captioner.weights import read_manifest

from .common import CACHE, out_folder, positive_int, save_npy
from .extract_features import feature_dir, feature_rows
from .train_detectors import average_precision, detector_outputs, fit, labelled_sets, stack

log = logging.getLogger("crossfit")


def fold_of(set_name: str, name: str, folds: int) -> int:
    """A picture's fold: by video for MSR-VTT frames (a video's frames share one), by file otherwise."""
    key = name.split("/")[0] if set_name == "msrvtt" else name
    return zlib.crc32(key.encode()) % folds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=Path("weights"), help="model folder whose detectors' words are used")
    ap.add_argument("--out", type=out_folder, default=CACHE / "runs" / "crossfit")
    ap.add_argument("--folds", type=positive_int, default=5)
    ap.add_argument("--epochs", type=positive_int, default=4)
    ap.add_argument("--batch", type=positive_int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=positive_int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    manifest = read_manifest(args.model)
    shipped = load_detectors(args.model, manifest)
    if shipped is None:
        raise SystemExit(f"error: {args.model} has no detectors")
    enc, words = manifest["encoder"], list(shipped.words)
    sets, labels = labelled_sets(enc)
    paired = [s for s in sets if s["name"] in ("msrvtt", "flickr8k")]  # CC3M: one alt text a photo, left out
    xtr, ytr, who = stack(enc, paired, labels, words, "train")
    xho, yho, _ = stack(enc, paired, labels, words, "heldout")
    fold = np.array([fold_of(s, n, args.folds) for s, n in who])
    log.info("%d training pictures in folds of %s; %d held out", len(xtr), np.bincount(fold).tolist(), len(xho))
    oof = np.zeros((len(xtr), len(words)), np.float16)
    report: dict = {"folds": [], "words": len(words)}
    fold0: Detectors | None = None
    for k in range(args.folds):
        t0 = time.time()
        det, _, aps = fit(xtr, ytr, xho, yho, words, args.epochs, args.batch, args.lr, rng, rows=np.flatnonzero(fold != k))
        mine = np.flatnonzero(fold == k)
        oof[mine] = detector_outputs(det, xtr, mine)
        if fold0 is None:
            fold0 = det
        report["folds"].append({"fold": k, "pictures": int(len(mine)), "heldout_mAP": round(100 * float(np.nanmean(aps)), 2),
                                "seconds": round(time.time() - t0)})
        log.info("fold %d: %s", k, report["folds"][-1])
    del xtr, xho
    args.out.mkdir(parents=True, exist_ok=True)
    for s in sets:
        grid = np.load(feature_dir(enc) / f"{s['name']}_grid.npy", mmap_mode="r")
        full = detector_outputs(fold0 if s["name"] == "cc3m" else shipped, grid)
        if s in paired:
            rows = feature_rows(enc, s["name"])
            mine = [i for i, (sn, _) in enumerate(who) if sn == s["name"]]
            full[[rows[who[i][1]] for i in mine]] = oof[mine]
        save_npy(args.out / f"{s['name']}_det.npy", full)
        log.info("%s: %d pictures written", s["name"], len(full))
    # how much cleaner the in-sample outputs are, on the same training frames and words (>= 3 positives)
    msr = [i for i, (sn, _) in enumerate(who) if sn == "msrvtt"]
    if msr:
        y = ytr[msr]
        keep = [j for j in range(len(words)) if y[:, j].sum() >= 3]
        grid = np.load(feature_dir(enc) / "msrvtt_grid.npy", mmap_mode="r")
        rows = feature_rows(enc, "msrvtt")
        ins = detector_outputs(shipped, grid, np.array([rows[who[i][1]] for i in msr]))
        report["msrvtt_train_mAP"] = {
            "in_sample": round(100 * float(np.nanmean([average_precision(ins[:, j], y[:, j]) for j in keep])), 2),
            "out_of_fold": round(100 * float(np.nanmean([average_precision(oof[msr][:, j], y[:, j]) for j in keep])), 2),
            "words": len(keep)}
        log.info("MSR-VTT train frames: %s", report["msrvtt_train_mAP"])
    (args.out / "report.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
