"""Bring the big training sets out of their git mirrors into ``.cache/data/`` as 224x224 JPEGs.

Two public repositories (../shared/data/README.md), fetched as bare git mirrors:

- **MSR-VTT frames** (``BennoKrojer/imagecode-msrvtt-pairs``): mostly two 320x240 frames side
  by side per JPEG. Each frame is cut out, squashed to 224x224 (the encoder's input, as
  ``captioner run`` squashes a video frame) and written as
  ``msrvtt/<videoN>/<shot>_<frame>.jpg``. Train and val videos only: the test split is
  captioned through the CLI from videos rebuilt by ``../shared/tools/msrvtt_videos.py``, and
  the demo/validation clips in ``../shared/data/video/msrvtt`` never reach this folder.
- **Conceptual Captions shard** (``heon01px2020/csci1470-prismer-final-project``): 256x256
  letterboxed web photos; the white bars are cut off using the original size stored beside
  each photo, then the picture is squashed to 224x224: ``cc3m/<key>.jpg`` and
  ``cc3m/captions.tsv``.

Re-running skips files already written. Where the mirrors are: ``--msrvtt-mirror`` and
``--cc3m-mirror`` (defaults: ``/work/.mirror/...``, where the session's ``fetch`` puts them).

    python -m pipelines.prepare_data                  # both sets (~10 min on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import subprocess
import time
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np

from .common import CACHE, DATA

log = logging.getLogger("prepare")

MSRVTT_COMMIT = "4ecb35fced1f5f902a24d67543b48dc1a78b3f4d"
CC3M_COMMIT = "e059e1606aef04521e399c2b421438a46658a018"
MIRRORS = Path("/work/.mirror")
#: MSR-VTT official split (Xu et al. 2016), inclusive video-number ranges.
MSRVTT_SPLITS = {"train": (0, 6512), "val": (6513, 7009), "test": (7010, 9999)}
SIZE = 224
PREPARED = CACHE / "data"


def msrvtt_split(video_id: str) -> str:
    """'train', 'val' or 'test' for an id like ``video123``."""
    number = video_id.removeprefix("video")
    n = int(number) if video_id.startswith("video") and number.isdigit() else -1
    for name, (lo, hi) in MSRVTT_SPLITS.items():
        if lo <= n <= hi:
            return name
    raise ValueError(f"{video_id!r}: not an MSR-VTT video id (video0-video9999)")


def held_out_clips() -> set[str]:
    """Ids of the MSR-VTT clips in ../shared/data/video/msrvtt: validation/demo only, never trained on."""
    clips = DATA / "video" / "msrvtt" / "clips"
    return {p.stem for p in clips.iterdir()} if clips.is_dir() else set()


def msrvtt_ids(split: str, ids: Iterable[str], held_out: set[str]) -> list[str]:
    """The ids of ``split`` among ``ids``, minus the held-out demo clips, sorted by number.

    The one rule that decides which MSR-VTT videos a job may use: training sees only
    the official train split, and never a demo clip even if it is numbered there.
    """
    try:
        keep = {i for i in ids if msrvtt_split(i) == split and i not in held_out}
    except ValueError as exc:  # a header line in a caption file: ValueError "invalid literal for int()" before
        raise SystemExit(f"error: {exc}, among the MSR-VTT ids (a header line, or another file's rows, in "
                         f"{DATA / 'text' / 'msrvtt_captions_all.tsv'} or a refs.tsv?)") from None
    return sorted(keep, key=lambda i: int(i.removeprefix("video")))


def _cat_file(mirror: Path, commit: str, paths: list[str]) -> Iterator[tuple[str, bytes]]:
    """(path, bytes) of many blobs through one ``git cat-file --batch`` process."""
    proc = subprocess.Popen(["git", "--git-dir", str(mirror), "cat-file", "--batch"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    assert proc.stdin and proc.stdout
    try:
        for path in paths:
            proc.stdin.write(f"{commit}:{path}\n".encode())
            proc.stdin.flush()
            header = proc.stdout.readline().split()
            if len(header) < 3 or header[1] != b"blob":
                raise SystemExit(f"error: {mirror}: {path} missing at {commit[:8]}")
            data = proc.stdout.read(int(header[2]))
            proc.stdout.read(1)  # the newline after each blob
            yield path, data
    finally:
        proc.stdin.close()
        proc.wait()


def _ls(mirror: Path, commit: str) -> list[str]:
    return _git(mirror, "ls-tree", "-r", "--name-only", commit).splitlines()


def _run_git(mirror: Path, *command: str) -> subprocess.CompletedProcess:
    """A git command in ``mirror``, its output and error bytes captured."""
    return subprocess.run(["git", "--git-dir", str(mirror), *command], capture_output=True)


def _git(mirror: Path, *command: str) -> str:
    """A git command's output in ``mirror``; ``SystemExit`` with git's own first line if it fails (a
    CalledProcessError traceback with git's stderr swallowed)."""
    done = _run_git(mirror, *command)
    if done.returncode:
        said = next((line for line in done.stderr.decode("utf-8", "replace").splitlines() if line.strip()), "")
        raise SystemExit(f"error: {mirror}: git {command[0]} failed: {said or f'exit status {done.returncode}'}")
    return done.stdout.decode()


def check_mirror(mirror: Path, commit: str, flag: str) -> None:
    """``SystemExit`` unless ``mirror`` is a git mirror holding ``commit`` (the pinned data), before any set
    is prepared."""
    if not (mirror / "HEAD").exists():
        raise SystemExit(f"error: {mirror}: no git mirror there (fetch the repository named in "
                         f"{DATA / 'README.md'} and pass {flag})")
    if _run_git(mirror, "cat-file", "-e", f"{commit}^{{commit}}").returncode:
        raise SystemExit(f"error: {mirror}: does not hold the pinned commit {commit[:12]} (fetch the repository "
                         f"named in {DATA / 'README.md'} again, or pass {flag})")


def prepared_dir(size: int = SIZE) -> Path:
    """Where frames squashed to ``size`` x ``size`` live: ``.cache/data/`` for the shipped encoder's
    224, ``.cache/data<size>/`` for a larger encoder's input (the encoder comparison in the model card)."""
    return PREPARED if size == SIZE else CACHE / f"data{size}"


def _write_jpeg(path: Path, bgr: np.ndarray, size: int = SIZE) -> None:
    img = cv2.resize(bgr, (size, size), interpolation=cv2.INTER_AREA)
    tmp = path.with_suffix(".tmp.jpg")
    if not cv2.imwrite(str(tmp), img, [cv2.IMWRITE_JPEG_QUALITY, 92]):
        raise RuntimeError(f"could not write {tmp}")
    tmp.replace(path)


def prepare_msrvtt(mirror: Path, splits: tuple[str, ...] = ("train", "val"), size: int = SIZE) -> Path:
    out = prepared_dir(size) / "msrvtt"
    pattern = re.compile(r"(video\d+)-(shot[^/]*)/([^/]*\.jpg)$")
    wanted: dict[str, list[tuple[str, str, list[int]]]] = {}
    held = held_out_clips()
    names = _ls(mirror, MSRVTT_COMMIT)
    out.mkdir(parents=True, exist_ok=True)
    all_ids = {m.group(1) for n in names if (m := pattern.search(n))}
    keep = {i for s in splits for i in msrvtt_ids(s, all_ids, held)}
    for n in names:
        m = pattern.search(n)
        if m and m.group(1) in keep:
            idx = [int(x) for x in re.findall(r"img(\d+)", m.group(3))]
            wanted.setdefault(m.group(1), []).append((n, m.group(2), idx))
    todo = []
    for vid, items in wanted.items():
        for n, shot, idx in items:
            if not all((out / vid / f"{shot}_{i}.jpg").exists() for i in idx):
                todo.append(n)
    log.info("msrvtt: %d videos (%s), %d source JPEGs to cut", len(wanted), "+".join(splits), len(todo))
    t0 = time.time()
    for k, (n, data) in enumerate(_cat_file(mirror, MSRVTT_COMMIT, todo)):
        m = pattern.search(n)
        assert m
        vid, shot = m.group(1), m.group(2)
        idx = [int(x) for x in re.findall(r"img(\d+)", m.group(3))]
        im = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if im is None:
            log.warning("%s: not a readable JPEG, skipped", n)
            continue
        halves = [im] if len(idx) == 1 else [im[:, : im.shape[1] // 2], im[:, im.shape[1] // 2:]]
        (out / vid).mkdir(exist_ok=True)
        for i, h in zip(idx, halves):
            _write_jpeg(out / vid / f"{shot}_{i}.jpg", h, size)
        if k % 2000 == 0:
            log.info("msrvtt %d/%d (%.0f s)", k, len(todo), time.time() - t0)
    return out


def _crop_letterbox(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """The picture inside a square letterbox of an original ``width`` x ``height`` image."""
    h, w = img.shape[:2]
    scale = min(w / width, h / height)
    cw, ch = max(1, round(width * scale)), max(1, round(height * scale))
    x0, y0 = (w - cw) // 2, (h - ch) // 2
    return img[y0 : y0 + ch, x0 : x0 + cw]


def prepare_cc3m(mirror: Path) -> Path:
    out = PREPARED / "cc3m"
    names = _ls(mirror, CC3M_COMMIT)
    out.mkdir(parents=True, exist_ok=True)
    keys = sorted(n[: -len(".jpg")] for n in names if re.match(r"data/0000\d/\d+\.jpg$", n))
    have = {n for n in names}
    keys = [k for k in keys if k + ".json" in have]
    todo = [k for k in keys if not (out / (Path(k).name + ".jpg")).exists()]
    log.info("cc3m: %d photos, %d to prepare", len(keys), len(todo))
    meta: dict[str, dict] = {}
    for path, data in _cat_file(mirror, CC3M_COMMIT, [k + ".json" for k in keys]):
        meta[path[: -len(".json")]] = json.loads(data)
    t0 = time.time()
    for j, (path, data) in enumerate(_cat_file(mirror, CC3M_COMMIT, [k + ".jpg" for k in todo])):
        key = path[: -len(".jpg")]
        m = meta[key]
        im = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if im is None:
            log.warning("%s: not a readable JPEG, skipped", path)
            continue
        im = _crop_letterbox(im, int(m.get("original_width") or im.shape[1]), int(m.get("original_height") or im.shape[0]))
        _write_jpeg(out / (Path(key).name + ".jpg"), im)
        if j % 2000 == 0:
            log.info("cc3m %d/%d (%.0f s)", j, len(todo), time.time() - t0)
    rows = [f"{Path(k).name}.jpg\t{' '.join(meta[k]['caption'].split())}" for k in keys
            if (out / (Path(k).name + ".jpg")).exists() and meta[k].get("caption")]
    (out / "captions.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--msrvtt-mirror", type=Path, default=MIRRORS / "BennoKrojer+imagecode-msrvtt-pairs" / "repo")
    ap.add_argument("--cc3m-mirror", type=Path, default=MIRRORS / "heon01px2020+csci1470-prismer-final-project" / "repo")
    ap.add_argument("--set", action="append", choices=("msrvtt", "cc3m"))
    ap.add_argument("--size", type=int, default=SIZE,
                    help="MSR-VTT frames' side in pixels (a larger encoder's input: 240 Lite1, 260 Lite2) -> .cache/data<size>/")
    args = ap.parse_args(argv)
    if args.size != SIZE and set(args.set or ["msrvtt", "cc3m"]) != {"msrvtt"}:
        ap.error("--size is for MSR-VTT frames only: add --set msrvtt")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    sets = list(dict.fromkeys(args.set or ["msrvtt", "cc3m"]))
    for s in sets:  # every mirror checked before the first set's minutes of work
        check_mirror(args.msrvtt_mirror if s == "msrvtt" else args.cc3m_mirror,
                     MSRVTT_COMMIT if s == "msrvtt" else CC3M_COMMIT, f"--{s}-mirror")
    for s in sets:
        mirror = args.msrvtt_mirror if s == "msrvtt" else args.cc3m_mirror
        if s == "msrvtt":
            prepare_msrvtt(mirror, size=args.size)
        else:
            prepare_cc3m(mirror)


if __name__ == "__main__":
    main()
