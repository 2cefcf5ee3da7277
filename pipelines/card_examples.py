"""Ten fixed MSR-VTT val videos, captioned before and after: a Markdown table for the model card.

Reads two ``pipelines.evaluate`` reports (``--sets msrvtt-val``) and prints, for the first
ten val videos by number (fixed, not chosen by how they came out), one reference caption
and both models' captions.

    python -m pipelines.card_examples --before .cache/eval/baseline-val.json --after .cache/eval/new-val.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import captions_by_file
from .evaluate import MSRVTT_VIDEOS

SET = "MSR-VTT val (497 ids, 244 with frames; video, validation)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", type=Path, required=True)
    ap.add_argument("--after", type=Path, required=True)
    ap.add_argument("-n", type=int, default=10)
    args = ap.parse_args()
    before = json.loads(args.before.read_text())["captions"][SET]
    after = json.loads(args.after.read_text())["captions"][SET]
    refs = captions_by_file(MSRVTT_VIDEOS / "val" / "refs.tsv")
    ids = sorted(set(before) & set(after), key=lambda v: int(v[5:]))[: args.n]
    print("| video | a reference (first of ~20) | before | after |")
    print("|---|---|---|---|")
    for v in ids:
        print(f"| {v} | {refs[v][0]} | {before[v]} | {after[v]} |")


if __name__ == "__main__":
    main()
