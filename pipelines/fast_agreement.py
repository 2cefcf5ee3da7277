"""How often `--fast` (key frames only) shows the caption the normal mode shows, on real clips.

    python -m pipelines.fast_agreement

Captions every clip in ``../shared/data/video`` both ways (in-process, default options)
and compares the cue text at 200 evenly spaced instants per clip (exact equality: a
strict measure). Prints the share of time they agree and the captioning time of each.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from captioner.config import CaptionConfig
from captioner.pipeline import Captioner

from .common import same_caption_steps, video_clips


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    clips = video_clips(required=True)
    base = CaptionConfig()
    normal = Captioner(base)
    fast = Captioner(replace(base, sampling=replace(base.sampling, fast=True)))
    total = same = 0
    t_normal = t_fast = 0.0
    for path in clips:
        t0 = time.perf_counter()
        a = normal.caption_video(path)
        t_normal += time.perf_counter() - t0
        t0 = time.perf_counter()
        b = fast.caption_video(path)
        t_fast += time.perf_counter() - t0
        same += same_caption_steps(a.cues, b.cues, a.duration, 200)
        total += 200
    print(f"{len(clips)} clips: --fast shows the normal mode's caption {100 * same / max(1, total):.0f} % of the time; "
          f"captioning time normal {t_normal:.1f} s, fast {t_fast:.1f} s")


if __name__ == "__main__":
    main()
