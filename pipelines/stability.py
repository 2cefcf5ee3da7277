"""Do captions flicker where the picture does not change, and what does sharing one caption cost?

On the real clips in ``../shared/data/video`` (validation only):

* without stable runs (``SegmentConfig.stable_threshold`` 0), how often two
  neighbouring segments whose mean features are within cosine distance 0.02 get the
  same caption;
* for thresholds 0, 0.02, 0.05: cues per minute over the 43 clips, wall time, and
  BLEU-4 / METEOR / CIDEr on the 9 captioned MSR-VTT clips.

    python -m pipelines.stability
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import replace
import numpy as np

from captioner.config import CaptionConfig, SegmentConfig
from captioner.pipeline import Captioner

from .common import video_clips
from .evaluate import eval_set


def flicker(cap: Captioner, near: float = 0.02) -> tuple[int, float]:
    """(near-identical neighbour pairs, fraction of them with the same caption), one segment per search."""
    pairs: list[bool] = []
    real = cap.caption_batch

    def spy(items, **options):  # whatever the pipeline passes (video=, threads=, ...) goes through
        caps = real(items, **options)
        prev = None
        for (feats, _), c in zip(items, caps):  # neighbours within a window
            f = np.asarray(feats, np.float32).reshape(-1, 49, feats.shape[-1]).mean((0, 1))
            f /= np.linalg.norm(f)
            if prev is not None and 1.0 - float(f @ prev[0]) < near:
                pairs.append(c.text == prev[1])
            prev = (f, c.text)
        return caps

    cap.caption_batch = spy  # type: ignore[method-assign]
    for p in video_clips():
        cap.caption_video(p)
    del cap.caption_batch
    return len(pairs), (sum(pairs) / len(pairs) if pairs else float("nan"))


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    video_clips(required=True)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("captioner").setLevel(logging.WARNING)
    base = Captioner(replace(CaptionConfig(), segments=replace(SegmentConfig(), stable_threshold=0.0)))
    n, same = flicker(base)
    print(f"without stable runs: {n} near-identical neighbour pairs, {100 * same:.0f} % with the same caption")
    print("| stable_threshold | cues over 43 clips (per min) | wall s | MSR-VTT-9 BLEU-4 / METEOR / CIDEr |")
    print("|---|---|---|---|")
    for th in (0.0, 0.02, 0.05):
        cap = Captioner(replace(CaptionConfig(), segments=replace(SegmentConfig(), stable_threshold=th)))
        t = time.perf_counter()
        results = [cap.caption_video(p) for p in video_clips()]
        wall = time.perf_counter() - t
        cues = sum(len(r.cues) for r in results)
        minutes = sum(r.duration for r in results) / 60
        v, _ = eval_set(cap, "msrvtt")
        print(f"| {th} | {cues} ({cues / minutes:.1f}) | {wall:.1f} | {v['BLEU-4']} / {v['METEOR']} / {v['CIDEr']} |",
              flush=True)


if __name__ == "__main__":
    main()
