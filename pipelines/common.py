"""Paths and small readers shared by the offline jobs (never imported by the runtime).

The jobs' work folder is the checkout's git-ignored ``.cache/`` (``$CAPTIONER_WORK``
moves it). It is not captioner's cache folder (``$CAPTIONER_CACHE``, the encoder
exports: ``captioner.outputs.cache_dir``), which the jobs leave to the runtime.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from captioner.config import VIDEO_EXTENSIONS

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("CAPTIONER_DATA", ROOT.parent / "shared" / "data"))
#: The offline jobs' work folder: data taken out of the mirrors, features, runs, bench videos.
CACHE = Path(os.environ.get("CAPTIONER_WORK", ROOT / ".cache"))


def positive_int(text: str) -> int:
    """An argparse type for counts that must be at least 1 (epochs, batch sizes, threads, folds):
    0 or less gave tracebacks deep in a job (ZeroDivisionError, an empty range) or, worse, silently
    wrote nothing or all-zero features and exited 0."""
    return _whole_number(text, 1, "must be at least 1")


def count(text: str) -> int:
    """An argparse type for counts that may be 0 (sentences per epoch, captions per picture): -5 was taken as 0
    or failed deep in a job."""
    return _whole_number(text, 0, "must be 0 or more")


def _whole_number(text: str, least: int, rule: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"{rule}, got {value}")
    return value


def positive_seconds(text: str) -> float:
    """An argparse type for a length in seconds (a bench video's): -5 built two copies of the clip and reported a
    table as if the run were valid."""
    import argparse
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


def share(text: str) -> float:
    """An argparse type for a share between 0 and 1 (a recall to keep): 1.5 failed only after the fit."""
    import argparse
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and 0 <= value <= 1):
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def out_folder(text: str) -> Path:
    """An argparse type for a folder a job writes at its end (a model, a run): one that could not be
    written (a file's name, a folder without write permission) failed only after the hours of work."""
    import argparse

    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: not a folder")
    existing = next(p for p in (path.absolute(), *path.absolute().parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{text}: cannot write in {existing}")
    return path


def stop_on_sigterm() -> None:
    """Make SIGTERM (``kill``, a scheduler's stop) end the job as Ctrl-C does, through its ``finally`` and
    ``except BaseException`` blocks: killed outright it left its scratch files (a gigabyte
    ``<set>_grid.tmp.npy``). Exit status 143, as a SIGTERM death."""
    import signal

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def out_file(text: str) -> Path:
    """An argparse type for a file a job writes at its end (a JSON report): a folder's name or a missing or
    unwritable folder failed only after the scoring, with a traceback."""
    import argparse

    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: a folder, not a file")
    parent = path.absolute().parent
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: no such folder {parent}")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise argparse.ArgumentTypeError(f"{text}: cannot write it")
    return path


def refuse_full_model(out: Path) -> None:
    """``SystemExit`` if ``out`` holds a full model (detectors, search vectors, banks): a stage-1 export
    (decoder and vocabulary) would rewrite its model.json without them, their files left unnamed."""
    from captioner.errors import ModelError
    from captioner.weights import MANIFEST, read_manifest

    if not (Path(out) / MANIFEST).is_file():
        return
    try:
        held = [k for k in COMPANION_ENTRIES + BANK_ENTRIES if k in read_manifest(out)]
    except ModelError:
        return  # not a model's manifest: replaced, as any other file of a stage-1 export
    if held:
        raise SystemExit(f"error: {out}: holds a full model ({', '.join(held)}); a stage-1 export would "
                         "drop them from its model.json: give another --out")


def save_torch(obj, path: Path) -> None:
    """``torch.save`` through a temporary file renamed into place: a job stopped mid-write (Ctrl-C, a
    full disk) leaves the previous file whole, not a truncated one that ends every later
    ``--resume``, export or average with a traceback."""
    import torch

    from captioner.outputs import atomic_path

    with atomic_path(Path(path)) as tmp:
        torch.save(obj, tmp)


def read_checkpoint(path: Path, weights_only: bool = False) -> dict:
    """``torch.load`` of a run's checkpoint; one line, not a traceback, for a missing or damaged one.

    Jobs read what they resume or export before loading any data, so that a damaged file is found in
    seconds, not after minutes of features."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except FileNotFoundError:
        raise SystemExit(f"error: {path}: no such file") from None
    except IsADirectoryError:
        raise SystemExit(f"error: {path}: a folder, not a checkpoint") from None
    except Exception as exc:  # truncated: "PytorchStreamReader failed ...", BadZipFile, EOFError, UnpicklingError
        raise SystemExit(f"error: {path}: damaged checkpoint ({exc.__class__.__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}); train again or restore it") from None


def save_npy(path: Path, array) -> None:
    """``np.save`` to exactly ``path``, atomically (as ``save_torch``)."""
    import numpy as np

    from captioner.outputs import atomic_path

    with atomic_path(Path(path)) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array)


def save_npz(path: Path, **arrays) -> None:
    """``np.savez`` to exactly ``path``, atomically (as ``save_torch``)."""
    import numpy as np

    from captioner.outputs import atomic_path

    with atomic_path(Path(path)) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


#: How a staging folder of ``staged_model`` ends (git-ignored: ``.*.export.tmp/``).
STAGE_SUFFIX = ".export.tmp"


@contextmanager
def staged_model(out: Path, start: Path | None = None) -> Iterator[Path]:
    """A temporary folder for an export to write the model folder ``out`` into; on success its files are renamed
    into ``out`` one by one (readable by all), ``model.json`` last.

    An export wrote ``model.json`` first and its detectors, search vectors and grammar after: stopped
    between (Ctrl-C, a full disk) it left a model.json without them, or a 0-byte detectors file, and
    ``captioner run`` then ran without detectors, saying nothing. Stopped before the renames, ``out`` is
    as it was; stopped during them, its model.json is still the previous one, whose checksums name the
    replaced files: loading it fails with a checksum error rather than running degraded.
    The stage is a hidden folder inside ``out`` (its real folder: a symlink or a mount point of another file
    system made the renames fail with EXDEV after the whole training), or, for an ``out`` not there yet, beside
    it, renamed to ``out`` whole. A stage a killed export left (``.*.export.tmp``, git-ignored) is removed.
    ``start``: the model folder an export adds to (a presence head, search vectors): its model.json is copied
    into the stage first, and, where it is not ``out``, its other files too.
    """
    import shutil
    import tempfile

    from captioner.weights import MANIFEST

    out = Path(out)
    real = out.resolve()
    fresh = not real.is_dir()
    real.parent.mkdir(parents=True, exist_ok=True)
    stale = [*real.parent.glob(f".{real.name}.*{STAGE_SUFFIX}"), *([] if fresh else real.glob(f".*{STAGE_SUFFIX}"))]
    for old in stale:  # a killed export's (SIGKILL, a power cut): a model copy of up to 60 MB
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{real.name}." if fresh else ".", suffix=STAGE_SUFFIX,
                                  dir=real.parent if fresh else real))
    try:
        if start is not None:
            other = Path(start).resolve() != real
            for f in sorted(Path(start).iterdir()):
                if f.is_file() and (other or f.name == MANIFEST):
                    shutil.copyfile(f, stage / f.name)
        yield stage
        for f in stage.iterdir():
            f.chmod(0o644)  # safetensors writes its files private; a shipped model is readable by all
        if fresh and not real.exists():
            stage.chmod(0o755)  # mkdtemp's folder is private
            os.replace(stage, real)  # whole: model.json with all it names, or no folder
            return
        real.mkdir(exist_ok=True)
        for f in sorted(stage.iterdir(), key=lambda f: f.name == MANIFEST):
            os.replace(f, real / f.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def copy_atomic(source: Path, target: Path) -> None:
    """``shutil.copyfile`` through a temporary file renamed into place: never a half-copied ``target``."""
    import shutil

    from captioner.outputs import atomic_path

    with atomic_path(Path(target)) as tmp:
        shutil.copyfile(source, tmp)


def video_clips(required: bool = False) -> list[Path]:
    """The real MSVD / MSR-VTT clips in ../shared/data/video (validation and demos only), sorted.

    ``required``: none is an error (one line) for a job that measures on them, rather than
    "0 clips: 0 %" or "nan %" reported as a result.
    """
    clips = sorted(p for p in (DATA / "video").rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS)
    if required and not clips:
        raise SystemExit(f"error: no video clips under {DATA / 'video'} (set CAPTIONER_DATA; see its README.md)")
    return clips


def read_tsv(path: Path, ncols: int = 2) -> list[list[str]]:
    """Rows of a tab-separated file; the last column may itself contain tabs.

    A missing file ends the job with one line saying where the data should be (a fresh machine
    without ../shared/data met a FileNotFoundError traceback from every job that reads it).
    """
    if not Path(path).is_file():
        where = (f"; the data is read from {DATA} (set CAPTIONER_DATA to move it; see its README.md)"
                 if Path(path).is_relative_to(DATA) else "")
        raise SystemExit(f"error: {path}: no such file{where}")
    data = Path(path).read_bytes()
    try:  # utf-8-sig: a byte-order mark (an editor's) is not part of the first id
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SystemExit(f"error: {path}, line {line}: not UTF-8 text ({exc.reason}); save it as UTF-8") from None
    rows = []
    for number, line in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), 1):
        if line:
            row = line.split("\t", ncols - 1)
            if len(row) < ncols:  # a caption file of another shape (a JSON passed as refs): not a traceback
                raise SystemExit(f"error: {path}, line {number}: {ncols} tab-separated columns expected, "
                                 f"found {len(row)}")
            rows.append(row)
    return rows


def flickr_split(name: str) -> list[str]:
    """The photo names of an official Flickr8k split (train, dev, test)."""
    return [row[0].strip() for row in read_tsv(DATA / "flickr8k" / "splits" / f"{name}.txt", 1) if row[0].strip()]


def captions_by_file(path: Path) -> dict[str, list[str]]:
    """{file or video id: its captions}; an empty caption is no reference (CIDEr ended in a ValueError on them)."""
    out: dict[str, list[str]] = {}
    for f, c in read_tsv(path):
        if c.strip():
            out.setdefault(f, []).append(c)
    return out


#: Caption-only corpora in ../shared/data/text that the decoder's language side may learn from.
TEXT_CORPORA = ("coco", "msvd", "msrvtt")


def text_corpora(text: str) -> str:
    """An argparse type for a comma list of ``TEXT_CORPORA`` (empty: none), spaces allowed: a typo was a
    ValueError traceback after the features had loaded."""
    import argparse

    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in TEXT_CORPORA]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown corpus {unknown[0]!r} (known: {', '.join(TEXT_CORPORA)})")
    return ",".join(names)


def text_sentences(corpora: Sequence[str] = TEXT_CORPORA) -> list[tuple[str, str]]:
    """(corpus, sentence) from the caption-only corpora, minus everything we test on.

    Excluded so no test caption is ever trained on: the captions of the 249
    coco-val2017-mini photos (the COCO corpus is all of val2017), the MSVD test split
    (which holds the 18 clips in video/msvd), and the MSR-VTT videos in video/msrvtt;
    and, to be sure, any sentence that equals one of those test captions (ignoring
    case, spacing and the final full stop), whatever file it is filed under.
    """
    test_refs = [DATA / "coco-val2017-mini" / "captions.tsv", DATA / "video" / "msvd" / "captions.tsv",
                 DATA / "video" / "msrvtt" / "captions.tsv"]
    test_text = {_norm(c) for p in test_refs for _, c in read_tsv(p)}
    out: list[tuple[str, str]] = []
    text = DATA / "text"
    for name in corpora:
        if name == "coco":
            held_out = set(captions_by_file(DATA / "coco-val2017-mini" / "captions.tsv"))
            out += [(name, c) for f, c in read_tsv(text / "coco_val2017_captions.tsv") if f not in held_out]
        elif name == "msvd":
            held_out = set(captions_by_file(DATA / "video" / "msvd" / "captions.tsv"))
            out += [(name, c) for cid, split, c in read_tsv(text / "msvd_captions.tsv", 3)
                    if split == "train" and cid not in held_out]
        elif name == "msrvtt":
            held_out = {p.stem for p in (DATA / "video" / "msrvtt" / "clips").iterdir()}
            held_out |= set(captions_by_file(DATA / "video" / "msrvtt" / "captions.tsv"))
            out += [(name, c) for vid, c in read_tsv(text / "msrvtt_captions_video0-1267.tsv") if vid not in held_out]
        else:
            raise ValueError(f"unknown text corpus {name!r} (known: {', '.join(TEXT_CORPORA)})")
    return [(name, c) for name, c in out if _norm(c) not in test_text]


def _norm(caption: str) -> str:
    return " ".join(caption.lower().split()).strip(" .")


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


#: What a model folder holds beside its decoder, kept as it was when a job fine-tunes only the decoder:
#: the tensor files and the model.json entries that describe them (and the is/are word list).
COMPANION_ENTRIES = ("detectors", "vse", "grammar")
BANK_ENTRIES = ("bank", "photo_bank")  # token ids and n-gram keys in the decoder's vocabulary: valid for that one only


def carry_companions(init: Path, out: Path, init_manifest: dict, final: Path | None = None) -> None:
    """Copy ``init``'s detectors, presence head, search vectors and is/are list into the model folder ``out``.

    ``init_manifest`` is ``init``'s model.json as read *before* ``out`` was written (``out`` may be ``init``;
    an export writes ``out`` as ``staged_model``'s folder, so that model.json names them the moment it is there).
    The caption banks come too when ``out``'s vocabulary is ``init``'s: they hold token ids and
    n-gram keys of that vocabulary, so a fine-tune that added words drops them (log: rebuild them
    with ``pipelines.caption_bank``) rather than ship banks that mean other words. ``final``: the model
    folder ``out`` stages (``staged_model``), as the log names it.
    """
    from captioner.consensus import PHOTO_TENSORS as PHOTO_BANK_TENSORS, TENSORS as BANK_TENSORS
    from captioner.detect import PRESENCE_TENSORS, TENSORS as DETECTOR_TENSORS
    from captioner.vse import TENSORS as VSE_TENSORS
    from captioner.weights import read_manifest, update_manifest

    same_vocab = read_manifest(out).get("vocab") == init_manifest.get("vocab")
    entries = COMPANION_ENTRIES + (BANK_ENTRIES if same_vocab else ())
    names = [DETECTOR_TENSORS, PRESENCE_TENSORS, VSE_TENSORS]
    if same_vocab:
        names += [BANK_TENSORS, PHOTO_BANK_TENSORS]
    elif any(k in init_manifest for k in BANK_ENTRIES):
        logging.getLogger("pipelines").warning(
            "%s: the vocabulary changed, so %s's caption banks were not carried over; rebuild them with "
            "python -m pipelines.caption_bank --model %s [--photos]", final or out, init, final or out)
    if Path(init).resolve() != Path(out).resolve():
        for name in names:
            if (Path(init) / name).exists():
                copy_atomic(Path(init) / name, Path(out) / name)

    def carry(m: dict) -> None:
        if not same_vocab:
            for k in BANK_ENTRIES:
                m.pop(k, None)
        m.update({k: init_manifest[k] for k in entries if k in init_manifest})

    update_manifest(out, carry)


def rewrite_vse(folder: Path, manifest: dict, emb, **sections: dict) -> None:
    """Write ``emb`` (``captioner.vse.SegmentEmbedder``) into the model folder's vse.safetensors in place.

    The model.json entry keeps what it said of the search vectors (data, val numbers, other
    sections), with ``sections`` (``memory=``, ``words=``: what the caller built) set anew.
    """
    from captioner.vse import save_vse
    from captioner.weights import update_manifest

    kept = {k: v for k, v in manifest["vse"].items() if k not in ("sha256", "dim", "space")}
    entry = save_vse(folder, emb, {**kept, **sections})
    update_manifest(folder, lambda m: m.update(vse=entry))
    (folder / "vse.safetensors").chmod(0o644)
