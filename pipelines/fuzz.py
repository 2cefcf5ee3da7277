"""Fuzz the decoder path: mutated real clips through ``captioner batch --workers 2``.

    python -m pipelines.fuzz [--count 200] [--seed 0] [--model weights] [--out .cache/fuzz]

Each mutation (bit flips, a cut file, a zeroed header, two blocks swapped, a zeroed or
repeated stretch, garbage appended, a wrong extension) is applied to one of the real
clips in ``../shared/data/video`` (generated clips when the data is missing) and all of
them are captioned in one batch. What must hold, whatever the bytes:

* the batch ends (no hang: a wall-clock limit) with exit 0 or 1 and no traceback;
* every mutated file is in the report as ``ok`` or ``failed``, none ``pending``;
* every failure is named: exactly one ``error: <path>: <reason>`` line each;
* no partial file: every subtitle file parses, every ``ok`` video has all its files,
  and no temporary file is left.

The figures (and any broken rule) go to ``<out>/results.json``; exit 1 if a rule broke.
``tests/test_fuzz.py`` runs ten mutations of generated clips the same way.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Sequence

from pipelines.common import CACHE, ROOT, out_folder, positive_int, video_clips

# --------------------------------------------------------------------------- mutations


def _bit_flips(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 64)):
        i = rng.randrange(len(out))
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def _cut(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randint(1, max(1, len(data) - 1))]


def _zero_header(data: bytes, rng: random.Random) -> bytes:
    n = rng.choice([4, 8, 12, 32, 64, 256, 1024, 4096])
    return bytes(min(n, len(data))) + data[n:]


def _swap_blocks(data: bytes, rng: random.Random) -> bytes:
    """Two same-sized blocks swapped: boxes (mp4) or chunks (avi) out of order."""
    size = rng.randint(8, max(8, len(data) // 8))
    if len(data) < 2 * size:
        return data[::-1]
    a = rng.randrange(0, len(data) - 2 * size + 1)
    b = rng.randrange(a + size, len(data) - size + 1)
    return data[:a] + data[b:b + size] + data[a + size:b] + data[a:a + size] + data[b + size:]


def _zero_stretch(data: bytes, rng: random.Random) -> bytes:
    a = rng.randrange(len(data))
    b = min(len(data), a + rng.randint(1, max(1, len(data) // 4)))
    return data[:a] + bytes(b - a) + data[b:]


def _repeat_stretch(data: bytes, rng: random.Random) -> bytes:
    a = rng.randrange(len(data))
    b = min(len(data), a + rng.randint(1, max(1, len(data) // 8)))
    return data[:b] + data[a:b] + data[b:]


def _append_garbage(data: bytes, rng: random.Random) -> bytes:
    return data + rng.randbytes(rng.randint(1, 65536))


def _as_is(data: bytes, rng: random.Random) -> bytes:
    return data  # paired with a wrong extension


MUTATIONS: dict[str, Callable[[bytes, random.Random], bytes]] = {
    "bit_flips": _bit_flips, "cut": _cut, "zero_header": _zero_header, "swap_blocks": _swap_blocks,
    "zero_stretch": _zero_stretch, "repeat_stretch": _repeat_stretch, "append_garbage": _append_garbage,
    "wrong_extension": _as_is,
}
#: The wrong extensions a mutant may get: a few of ``VIDEO_EXTENSIONS`` whose demuxers guess differently
#: (a fixed list, so that a seed makes the same mutants whatever the runtime recognises).
_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".ts")


def make_mutants(sources: Sequence[Path], count: int, folder: Path, seed: int = 0) -> dict[str, dict]:
    """Write ``count`` mutated copies of ``sources`` into ``folder``; returns {file name: how it was made}."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    made: dict[str, dict] = {}
    names = sorted(MUTATIONS)
    for i in range(count):
        source = sources[i % len(sources)]
        kind = names[i % len(names)] if i < len(names) else rng.choice(names)
        data = MUTATIONS[kind](source.read_bytes(), rng)
        suffix = source.suffix.lower()
        if kind == "wrong_extension" or rng.random() < 0.1:
            suffix = rng.choice([s for s in _EXTENSIONS if s != suffix])
        name = f"m{i:03d}_{kind}{suffix}"
        (folder / name).write_bytes(data)
        made[name] = {"source": source.name, "mutation": kind, "bytes": len(data)}
    return made


# --------------------------------------------------------------------------- the batch and its rules


def run_batch(videos: Path, out: Path, model: Path | None, *, workers: int = 2, timeout: float = 1800,
              extra: Sequence[str] = ()) -> dict:
    """Caption ``videos`` with ``captioner batch`` in a child process; check every rule; return the figures."""
    cmd = [sys.executable, "-m", "captioner.cli", "batch", str(videos), "-o", str(out), "--workers", str(workers),
           "-f", "srt,json", "-q", *extra]
    if model is not None:
        cmd += ["--model", str(model)]
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
        code, stderr = proc.returncode, proc.stderr
    except subprocess.TimeoutExpired as exc:
        code, stderr = None, (exc.stderr or b"").decode("utf-8", "replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
    seconds = time.monotonic() - t0
    broken: list[str] = []
    if code is None:
        broken.append(f"the batch did not finish within {timeout:.0f} s (hang)")
    elif code not in (0, 1):
        broken.append(f"exit status {code}")
    if "Traceback" in stderr:
        broken.append("a traceback on stderr")
    report_path = out / "captioner-report.json"
    rows = []
    if report_path.exists():
        rows = json.loads(report_path.read_text())["videos"]
    else:
        broken.append("no report")
    names = {p.name for p in videos.iterdir() if p.is_file()}
    by_name = {Path(r["path"]).name: r for r in rows}
    if set(by_name) != names:
        broken.append(f"report lists {len(by_name)} of {len(names)} files")
    error_lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    other_lines = [line for line in stderr.splitlines() if line and not line.startswith(("error: ", "warning: "))]
    if other_lines:
        broken.append(f"{len(other_lines)} stray stderr line(s), e.g. {other_lines[0][:120]!r}")
    for name, row in sorted(by_name.items()):
        status = row["status"]
        if status == "pending":
            broken.append(f"{name}: pending")
        elif status == "failed":
            mine = [line for line in error_lines if line.startswith(f"error: {videos / name}: ")]
            if len(mine) != 1 or not row["reason"]:
                broken.append(f"{name}: failed with {len(mine)} error line(s) and reason {row['reason']!r}")
        elif status == "ok":
            for output in row["outputs"]:
                path = Path(output)
                if not path.exists():
                    broken.append(f"{name}: {path.name} missing")
                elif path.suffix == ".json":
                    try:
                        json.loads(path.read_text())
                    except ValueError:
                        broken.append(f"{name}: {path.name} is not whole JSON")
                elif path.suffix == ".srt":
                    broken += [f"{name}: {path.name}: {p}" for p in _srt_problems(path.read_text())]
    leftovers = [p.name for p in out.rglob("*.tmp")]
    if leftovers:
        broken.append(f"temporary files left: {leftovers[:5]}")
    statuses = Counter(r["status"] for r in rows)
    reasons = Counter(_reason_kind(r["reason"]) for r in rows if r["status"] == "failed")
    longest = max(rows, key=lambda r: r["seconds"], default=None)
    return {
        "files": len(names), "exit": code, "seconds": round(seconds, 1), "statuses": dict(statuses),
        "failure_reasons": dict(reasons.most_common()),
        "slowest_file": {"name": Path(longest["path"]).name, "seconds": longest["seconds"]} if longest else None,
        "broken": broken,
    }


def _srt_problems(text: str) -> list[str]:
    """What makes an SRT file not whole (parsed by hand: the runtime does not need the srt package)."""
    if not text.strip():
        return []  # a video with no cue writes an empty file
    problems = []
    for block in text.strip("\n").split("\n\n"):
        lines = block.split("\n")
        if len(lines) < 3 or not lines[0].isdigit() or " --> " not in lines[1]:
            problems.append(f"malformed cue {block[:60]!r}")
    return problems


def _reason_kind(reason: str) -> str:
    """A failure reason without file-specific details, for counting."""
    import re

    return re.sub(r"\d+", "N", reason.split(" (")[0])[:80]


#: The names ``make_mutants`` gives (``m007_cut.mp4``), and the start of every output ``captioner batch``
#: writes for one of them (``m007_cut.srt``, its hidden temporary files).
_MUTANT_RE = re.compile(r"m\d{3,}_[a-z_]+\.[a-z0-9]+")
_OUTPUT_RE = re.compile(r"\.?m\d{3,}_")


def strangers(out: Path) -> list[Path]:
    """The files under ``out/videos`` and ``out/subs`` that neither ``make_mutants`` nor the batch made.

    A run empties both folders first: an ``--out`` of the user's (``--out ~/clips``) lost whatever its
    ``videos/`` held.
    """
    from captioner.batch.lock import LOCK_NAME
    from captioner.outputs import INDEX_NAMES, REPORT_NAME

    found: list[Path] = []
    videos, subs = out / "videos", out / "subs"
    for folder in (videos, subs):
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            found.append(folder)
    if found:
        return found
    if videos.is_dir():
        found += [p for p in sorted(videos.iterdir()) if p.is_symlink() or not p.is_file()
                  or not _MUTANT_RE.fullmatch(p.name)]
    if subs.is_dir():
        for p in sorted(subs.rglob("*")):
            if p.is_dir() and not p.is_symlink():
                continue
            if p.is_symlink() or not (p.name in (REPORT_NAME, LOCK_NAME, *INDEX_NAMES) or _OUTPUT_RE.match(p.name)
                                      or p.name.endswith(".captioner.tmp")):
                found.append(p)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=positive_int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped one)")
    parser.add_argument("--out", type=out_folder, default=CACHE / "fuzz",
                        help="work folder (default: %(default)s); its videos/ and subs/ are emptied first, so it "
                             "is refused if they hold files that fuzz did not make")
    parser.add_argument("--workers", type=positive_int, default=2)
    args = parser.parse_args(argv)
    if args.model is not None:  # before any mutant: a bad model made every video "pending", told as a finding
        from captioner.config import CaptionConfig
        from captioner.pipeline import check_model
        from captioner.weights import resolve

        args.model = resolve(args.model).absolute()  # the batch runs in the repository, not the caller's folder
        check_model(CaptionConfig(model_dir=args.model))  # every part a run loads, every checksum
    found = strangers(args.out)
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise SystemExit(f"error: {found[0]}{more}: not made by pipelines.fuzz, and a run empties "
                         f"{args.out / 'videos'} and {args.out / 'subs'}: give an --out of its own")

    sources = video_clips()
    if not sources:
        sys.path.insert(0, str(ROOT / "tests"))
        from videos import make_video

        gen = args.out / "sources"
        sources = [make_video(gen / f"g{i}{ext}", [(look, 2.0), ("checker", 2.0)], seed=i).path
                   for i, (look, ext) in enumerate([("red", ".mp4"), ("blue", ".avi"), ("green", ".mp4")])]
    import shutil

    shutil.rmtree(args.out / "videos", ignore_errors=True)
    shutil.rmtree(args.out / "subs", ignore_errors=True)
    made = make_mutants(sources, args.count, args.out / "videos", args.seed)
    figures = run_batch(args.out / "videos", args.out / "subs", args.model, workers=args.workers)
    figures.update(seed=args.seed, sources=len(sources), mutations=dict(Counter(m["mutation"] for m in made.values())))
    (args.out / "results.json").write_text(json.dumps({"figures": figures, "files": made}, indent=1) + "\n")
    print(json.dumps(figures, indent=1))
    return 1 if figures["broken"] else 0


if __name__ == "__main__":
    sys.exit(main())
