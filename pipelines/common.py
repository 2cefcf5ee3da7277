"""Paths and small readers shared by the offline jobs (never imported by the runtime)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("CAPTIONER_DATA", ROOT.parent / "shared" / "data"))
CACHE = Path(os.environ.get("CAPTIONER_CACHE", ROOT / ".cache"))


def read_tsv(path: Path, ncols: int = 2) -> list[list[str]]:
    """Rows of a tab-separated file; the last column may itself contain tabs."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.rstrip("\n")
            if line:
                rows.append(line.split("\t", ncols - 1))
    return rows


def flickr_split(name: str) -> list[str]:
    return [l.strip() for l in open(DATA / "flickr8k" / "splits" / f"{name}.txt") if l.strip()]


def captions_by_file(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f, c in read_tsv(path):
        out.setdefault(f, []).append(c)
    return out


def same_caption_steps(a, b, end: float, steps: int) -> int:
    """At how many of ``steps`` evenly spaced instants in [0, end) two cue lists show the same text.

    Cues are anything with ``start``, ``end`` and ``text`` (``subtitles.Cue``, or
    ``SimpleNamespace(**cue)`` from a JSON output). Exact equality: a strict measure.
    """

    def text_at(cues, t: float):
        return next((c.text for c in cues if c.start <= t < c.end), None)

    same = 0
    for i in range(steps):
        t = (i + 0.5) * end / steps
        ta = text_at(a, t)
        same += ta is not None and ta == text_at(b, t)
    return same
