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
