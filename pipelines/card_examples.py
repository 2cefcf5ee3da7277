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


def val_captions(path: Path) -> dict[str, str]:
    """The MSR-VTT val captions of an evaluate report; ``SystemExit`` (one line) for a missing file, another
    file, or a report without that set (``make eval``'s: a KeyError traceback)."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SystemExit(f"error: {path}: no such file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SystemExit(f"error: {path}: not an evaluate report ({exc.__class__.__name__})") from None
    captions = report.get("captions") if isinstance(report, dict) else None
    if not isinstance(captions, dict) or not isinstance(captions.get(SET), dict):
        held = ", ".join(captions) if isinstance(captions, dict) else "none"
        raise SystemExit(f"error: {path}: no {SET!r} captions (it holds: {held}); make it with "
                         "python -m pipelines.evaluate --sets msrvtt-val")
    return captions[SET]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", type=Path, required=True)
    ap.add_argument("--after", type=Path, required=True)
    ap.add_argument("-n", type=int, default=10)
    args = ap.parse_args(argv)
    before, after = val_captions(args.before), val_captions(args.after)
    refs = captions_by_file(MSRVTT_VIDEOS / "val" / "refs.tsv")
    ids = sorted(set(before) & set(after), key=lambda v: int(v[5:]))[: args.n]
    print("| video | a reference (first of ~20) | before | after |")
    print("|---|---|---|---|")
    for v in ids:
        print(f"| {v} | {refs[v][0]} | {before[v]} | {after[v]} |")


if __name__ == "__main__":
    main()
