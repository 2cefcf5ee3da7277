"""Encode every training/evaluation photo once and cache the feature maps.

The encoder is frozen, so its outputs are computed once (≈ 5 min for Flickr8k on
2 cores with Lite0) and the decoder trains on the cache. The cache lives in
``.cache/features/<encoder>/`` (git-ignored): ``<set>_grid.npy`` float16
[N, 49, C], ``<set>_probs.npy`` float16 [N, 1000], ``<set>_files.txt``.

    python -m pipelines.extract_features --set flickr8k --set coco
"""

from __future__ import annotations

import argparse
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from captioner.config import IMAGE_EXTENSIONS, EncoderConfig
from captioner.encoder import Encoder, input_size, load_image
from captioner.outputs import write_atomic

from .common import CACHE, DATA, positive_int, save_npy, stop_on_sigterm
from .prepare_data import PREPARED

log = logging.getLogger("extract")

SETS = {
    "flickr8k": DATA / "flickr8k" / "images",
    "coco": DATA / "coco-val2017-mini" / "images",
    # prepared from git mirrors by pipelines.prepare_data; names are relative paths (videoN/shot_frame.jpg)
    "msrvtt": PREPARED / "msrvtt",
    "cc3m": PREPARED / "cc3m",
}


def feature_dir(encoder: str) -> Path:
    return CACHE / "features" / encoder


def feature_rows(encoder: str, set_name: str) -> dict[str, int]:
    """File name -> row of the cached ``<set>_grid.npy`` / ``<set>_probs.npy``; one line naming the command if not cached."""
    listing = feature_dir(encoder) / f"{set_name}_files.txt"
    if not listing.exists():
        raise SystemExit(f"error: no cached {encoder} features of {set_name} in {listing.parent}; run "
                         f"python -m pipelines.extract_features --set {set_name} --encoder {encoder}")
    files = [f for f in listing.read_text().split("\n") if f]  # one a line: a name may hold a space
    return {f: i for i, f in enumerate(files)}


def pooled_cells(encoder: str, set_name: str, rows: np.ndarray | None = None, det=None,
                 chunk: int = 1024) -> dict[str, np.ndarray]:
    """Per picture of a cached set (``rows`` of its grid, default all): its mean cell and max cell
    (``"pooled"``, ``"maxed"``: [N, C]) and, given ``det`` (``captioner.detect.Detectors``), its
    detector probabilities (``"det"``: [N, D]). The grid is read in row order, ``chunk`` pictures at a time.
    """
    grid = np.load(feature_dir(encoder) / f"{set_name}_grid.npy", mmap_mode="r")
    rows = np.arange(len(grid)) if rows is None else np.asarray(rows)
    out = {"pooled": np.zeros((len(rows), grid.shape[2]), np.float32),
           "maxed": np.zeros((len(rows), grid.shape[2]), np.float32)}
    if det is not None:
        out["det"] = np.zeros((len(rows), len(det.words)), np.float32)
    order = np.argsort(rows, kind="stable")
    for a in range(0, len(rows), chunk):
        sel = order[a : a + chunk]
        g = np.asarray(grid[rows[sel]], dtype=np.float32)
        out["pooled"][sel] = g.mean(1)
        out["maxed"][sel] = g.max(1)
        if det is not None:
            out["det"][sel] = det.frame_probs(g)
    return out


def extract(set_name: str, encoder_name: str, batch: int = 32, limit: int | None = None,
            root: Path | None = None, source: str = "") -> Path:
    """Encode ``set_name``'s pictures (from ``root``, default ``SETS[set_name]``) into the feature cache.

    The cache is skipped only when it holds exactly these pictures, every row written. ``limit``
    (a speed measurement) encodes the first pictures and leaves the cache as it is: a 5-row cache
    written over the full one was then "complete" to every later run, and training and evaluation
    used or failed on the five. ``source`` names pictures other than the set's usual ones under the same
    names (``data240``: MSR-VTT frames prepared at 240 pixels, ``--msrvtt-size``): recorded in
    ``<set>_source.txt``, a cache of other pictures is not complete (it was: the names matched).
    """
    out = feature_dir(encoder_name)
    out.mkdir(parents=True, exist_ok=True)
    grid_path = out / f"{set_name}_grid.npy"
    root = root or SETS[set_name]
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                   if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.endswith(".tmp.jpg"))
    if not files:
        listing = out / f"{set_name}_files.txt"
        if not limit and listing.exists() and _complete(out, set_name, listing.read_text().split("\n")[:-1], source):
            # a machine that keeps the features but not the pictures (pruned, or never copied)
            log.warning("no images under %s; keeping the complete feature cache %s", root, grid_path)
            return grid_path
        raise SystemExit(f"error: no images under {root} (the {set_name} set: see ../shared/data/README.md, "
                         "and pipelines.prepare_data for the sets it makes)")
    if limit:
        files = files[:limit]
    elif _complete(out, set_name, files, source):
        log.info("%s exists, skipping", grid_path)
        return grid_path
    # the cache is the float32 reference: training must not depend on the run-time int8 default
    cfg = EncoderConfig(name=encoder_name, image_size=input_size(encoder_name), int8=False)
    enc = Encoder(cfg)
    n = len(files)
    probe = enc.encode([load_image(str(root / files[0]))])
    cells, dim = probe.grid.shape[1:]
    tmp_grid = out / f"{set_name}_grid.tmp.npy"
    grid = np.lib.format.open_memmap(tmp_grid, mode="w+", dtype=np.float16, shape=(n, cells, dim))
    probs = np.zeros((n, 1000), dtype=np.float16)
    t0 = time.time()
    try:
        with ThreadPoolExecutor(2) as pool:  # JPEG decoding overlaps the network
            for start in range(0, n, batch):
                names = files[start : start + batch]
                imgs = list(pool.map(lambda f: load_image(str(root / f)), names))
                res = enc.encode_batch(enc.preprocess(imgs))
                grid[start : start + len(names)] = res.grid.astype(np.float16)
                probs[start : start + len(names)] = res.probs.astype(np.float16)
                if (start // batch) % 20 == 0:
                    el = time.time() - t0
                    log.info("%s %d/%d  %.1f ms/img", set_name, start + len(names), n, 1000 * el / (start + len(names)))
        grid.flush()
    except BaseException:  # Ctrl-C, an unreadable picture: no gigabyte of scratch left behind
        del grid
        tmp_grid.unlink(missing_ok=True)
        raise
    del grid
    if limit:
        tmp_grid.unlink()
        log.info("%s: %d images in %.0f s (--limit: a measurement; the feature cache is unchanged)",
                 set_name, n, time.time() - t0)
        return grid_path
    # the listing first: stopped after the grid's rename, the cache must not read as complete (with the
    # listing and source record of the pictures it held before, it did, and the wrong features were kept)
    (out / f"{set_name}_files.txt").unlink(missing_ok=True)
    tmp_grid.replace(grid_path)
    save_npy(out / f"{set_name}_probs.npy", probs)
    if source:
        write_atomic(out / f"{set_name}_source.txt", source + "\n")
    else:
        (out / f"{set_name}_source.txt").unlink(missing_ok=True)
    write_atomic(out / f"{set_name}_files.txt", "\n".join(files) + "\n")  # last: the cache is whole
    log.info("%s: %d images in %.0f s -> %s", set_name, n, time.time() - t0, out)
    return grid_path


def _complete(out: Path, set_name: str, files: list[str], source: str = "") -> bool:
    """Whether the cache in ``out`` holds ``set_name``'s features for exactly ``files`` of ``source``, every row."""
    listing = out / f"{set_name}_files.txt"
    record = out / f"{set_name}_source.txt"
    try:
        if listing.read_text().split("\n")[:-1] != files:
            return False
        if (record.read_text().strip() if record.exists() else "") != source:
            return False
        grid = np.load(out / f"{set_name}_grid.npy", mmap_mode="r")
        probs = np.load(out / f"{set_name}_probs.npy", mmap_mode="r")
    except (OSError, ValueError):
        return False
    return len(grid) == len(probs) == len(files)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", action="append", choices=sorted(SETS), help="image set(s) to encode")
    ap.add_argument("--encoder", default="efficientnet-lite0")
    ap.add_argument("--batch", type=positive_int, default=32)
    ap.add_argument("--limit", type=positive_int, default=None, help="only the first N images (speed measurements)")
    ap.add_argument("--msrvtt-size", type=positive_int, default=None,
                    help="read MSR-VTT frames prepared at this size (prepare_data --size; e.g. 240 for Lite1)")
    args = ap.parse_args()
    stop_on_sigterm()  # a kill cleans the <set>_grid.tmp.npy as Ctrl-C does
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(2)
    from .prepare_data import prepared_dir

    for s in args.set or ["flickr8k", "coco"]:
        other = s == "msrvtt" and args.msrvtt_size and prepared_dir(args.msrvtt_size) != prepared_dir()
        root = prepared_dir(args.msrvtt_size) / "msrvtt" if other else None
        extract(s, args.encoder, args.batch, args.limit, root, source=prepared_dir(args.msrvtt_size).name if other else "")


if __name__ == "__main__":
    main()
