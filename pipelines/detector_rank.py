"""What a low-rank copy of the concept detectors costs in accuracy and buys in speed (a measurement).

The detectors' cell scores are a [cells, 1280] x [1280, D] product per frame: at D = 600 the
largest matrix product of a run after the encoder. A rank-r factorisation W ~ U_r S_r V_r^T
(truncated SVD) does the same with (1280 + D) r multiply-adds per cell. For each rank this
prints, on the held-out pictures of ``pipelines.train_detectors`` (Flickr8k dev, MSR-VTT val
frames, CC3M held-out): mAP, the person AP, the mean absolute change of the calibrated
probabilities, and the time of one 8-frame segment on one thread.

    python -m pipelines.detector_rank
"""

from __future__ import annotations

import argparse
import time
import numpy as np
from threadpoolctl import threadpool_limits

from .train_detectors import average_precision, labelled_sets, load_trained, stack


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", default="efficientnet-lite0")
    ap.add_argument("--ranks", default="64,128,192,256,0")
    args = ap.parse_args()
    det = load_trained()
    sets, labels = labelled_sets(args.encoder)
    x, y, _ = stack(args.encoder, sets, labels, list(det.words), "heldout")
    full = np.concatenate([det.frame_probs(x[s : s + 256]) for s in range(0, len(x), 256)])
    seg = np.maximum(np.random.default_rng(0).normal(size=(8, 49, det.weight.shape[0])), 0).astype(np.float32)
    print("| rank | mAP | person AP | mean abs change of P | ms per 8-frame segment (1 thread) |")
    print("|---|---|---|---|---|")
    for r in [int(v) for v in args.ranks.split(",")]:
        d = det if r == 0 else det.low_rank(r)
        p = full if r == 0 else np.concatenate([d.frame_probs(x[s : s + 256]) for s in range(0, len(x), 256)])
        aps = [average_precision(p[:, j], y[:, j]) for j in range(p.shape[1])]
        with threadpool_limits(1):
            d.frame_probs(seg)
            t = time.perf_counter()
            for _ in range(10):
                d.frame_probs(seg)
            ms = (time.perf_counter() - t) / 10 * 1000
        print(f"| {r or 'full'} | {100 * np.nanmean(aps):.2f} | {100 * aps[0]:.1f} | {np.abs(p - full).mean():.4f} | {ms:.1f} |")


if __name__ == "__main__":
    main()
