"""Find the moment: search the JSON outputs of a captioned archive (``captioner search``).

A search reads every captioner JSON output under the folders it is given and
ranks their cues against a query by meaning and by words:

- **meaning**: cosine similarity between the query's sentence embedding and the
  cue's (all-MiniLM-L6-v2 in NumPy, ``embed.py``), over the caption and, where the
  JSON carries them, the cue's concept words;
- **words**: BM25 over the caption and concept words (lower-cased, light
  stemming, stop words dropped), scaled to 0..1 and added with a weight.

The weights are ``SearchConfig``'s (config.py), chosen on the MSR-VTT validation
videos by ``pipelines/retrieval.py`` (README: Search).

**The index.** Each folder gets one index file, ``.captioner-search/index.npz``
inside it (hidden: batch skips it), or, if that cannot be written, one under
the cache folder (``~/.cache/captioner/search/<hash of the folder's path>/``), which
starts from the folder's own index if it carries one. Its paths are relative to the
folder, so a moved or renamed archive keeps its index. It
holds per JSON file its signature (size, modification and change times, inode), its cues, and
one embedding per distinct text. Every search checks every file's signature, so
the index is never stale: new and changed files are read and only texts never
seen before are embedded; removed files are dropped. The index is written
atomically (temporary file, then rename) and any index that cannot be read or
does not fit (damaged, another model, another format version) is rebuilt.

The library never prints: problems with single files come back as
``SearchResult.errors``; ``CaptionerError`` for problems that stop a search.
"""

from __future__ import annotations

import errno
import hashlib
import html
import io
import json
import logging
import math
import os
import re
import stat
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence
from urllib.parse import quote

import numpy as np

from .config import SearchConfig, is_whole
from .errors import CANNOT_LIST, CaptionerError, OutputError, cannot_list, path_list, printable
from .outputs import count_text, walk, walked_into
from .progress import Progress, ProgressCallback
from .review import RESULTS_GENERATOR
from .vse import decode_vector, quantize

log = logging.getLogger(__name__)

INDEX_VERSION = 4  # 2: per-cue visual vectors; 3: their neighbourhoods (context); 4: int8 text vectors
#: A temporary index file this many seconds old is left over, not being written (``Index.save``).
STALE_INDEX_S = 3600.0
INDEX_FOLDER = ".captioner-search"
INDEX_FILE = "index.npz"
#: Dimensions of a cue's visual vector (the sentence-embedding space of all-MiniLM-L6-v2).
VECTOR_DIM = 384
#: JSON files a batch writes that are not caption outputs (skipped without a word, when they are one:
#: a video named captioner-report.mp4 in a sub-folder has its caption output under that name).
NOT_OUTPUTS = frozenset({"captioner-report.json"})

_STOP = frozenset(
    "a an the is are was were be been being am of in on at to into onto for from with by and or "
    "as it its this that these those there here he she they his her their them him who whom which "
    "while some something someone one two up down out over about very".split()
)
_WORD = re.compile(r"[a-z0-9]+")


# --------------------------------------------------------------------------- words


def stem(word: str) -> str:
    """A light suffix stripper: plays/playing/played -> play, dogs -> dog, dishes -> dish."""
    for suffix, keep in (("ing", 3), ("ed", 3), ("es", 3), ("s", 3)):
        if word.endswith(suffix) and len(word) - len(suffix) >= keep:
            base = word[: -len(suffix)]
            if suffix == "es" and not base.endswith(("sh", "ch", "x", "ss", "z")):
                base = word[:-1]  # "games" -> "game", but "dishes" -> "dish"
            if suffix in ("ing", "ed") and len(base) > 2 and base[-1] == base[-2] and base[-1] not in "lsz":
                base = base[:-1]  # running -> run
            return base
    return word


def terms(text: str) -> list[str]:
    """The words BM25 matches: lower case, stop words dropped, stemmed."""
    return [stem(w) for w in _WORD.findall(text.lower()) if w not in _STOP]


# --------------------------------------------------------------------------- reading outputs


@dataclass(frozen=True)
class CueRecord:
    start: float
    end: float
    text: str
    concepts: tuple[str, ...] = ()
    vector: np.ndarray | None = None  # the segment's visual vector (vse.py), int8 x 127; None if the JSON has none


#: Cue times beyond any video (31,000 years): a hand-edited or damaged file's, rejected with it.
_MAX_SECONDS = 1e12


def _json_int(digits: str) -> int | float:
    """A JSON integer; one too long for Python's int (over 4,300 digits, an error that named
    ``sys.set_int_max_str_digits``) as a float, infinite, which no cue time passes."""
    return int(digits) if len(digits) <= 4000 else float(digits)


def read_output(path: Path) -> tuple[str, list[CueRecord]]:
    """(the video's path, its cues) from one captioner JSON output; ``ValueError`` if it is not one."""
    try:  # utf-8-sig: a file saved by an editor that starts UTF-8 with a byte-order mark is still JSON
        data = json.loads(Path(path).read_text(encoding="utf-8-sig"), parse_int=_json_int)
    except UnicodeDecodeError as exc:
        raise ValueError("not UTF-8 text") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON (line {exc.lineno}: {exc.msg})") from exc
    except RecursionError:  # '[[[[...' a thousand deep: Python's parser gives up (and took the search with it)
        raise ValueError("not a captioner output (JSON nested too deep)") from None
    except MemoryError:
        raise ValueError("too large to read") from None
    if not isinstance(data, dict) or not isinstance(data.get("cues"), list) or not isinstance(data.get("metadata"), dict):
        raise ValueError("not a captioner output (no \"metadata\" and \"cues\")")
    video = data["metadata"].get("video")
    video_path = str(video.get("path", "")) if isinstance(video, dict) else str(video or "")
    try:  # a non-UTF-8 file name is kept as \udcXX escapes (as captioner writes it); a lone "\ud800" is no name
        video_path.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise ValueError("not a captioner output (its video's path is not valid text)") from None
    cues = []
    for i, c in enumerate(data["cues"]):
        try:
            if isinstance(c["start"], bool) or isinstance(c["end"], bool):
                raise TypeError  # float(true) is 1.0: no time
            start, end, text = float(c["start"]), float(c["end"]), c["text"]
            if not isinstance(text, str) or not (0 <= start <= end <= _MAX_SECONDS):
                raise TypeError  # NaN fails too; 1e308 s overflowed the clock of every line that showed it
            words = tuple(str(w[0]) for w in c.get("concepts", ()) if isinstance(w, (list, tuple)) and w)
            for t in (text, *words):
                t.encode("utf-8")  # a lone surrogate (a "\ud800" escape) is no text: the embedder rejects it
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError):
            raise ValueError(f"cue {i + 1} is not a captioner cue (start, end, text)") from None
        vector = None
        if c.get("vector") is not None:
            if not isinstance(c["vector"], str):
                raise ValueError(f"cue {i + 1}: bad \"vector\" (not a base64 text)")
            try:
                vector = quantize(decode_vector(c["vector"], VECTOR_DIM))
            except (ValueError, AttributeError) as exc:
                raise ValueError(f"cue {i + 1}: bad \"vector\" ({exc})") from None
        cues.append(CueRecord(start, end, " ".join(text.split()), words, vector))
    return video_path, cues


def find_outputs(root: Path, errors: list[tuple[str, str]] | None = None) -> list[Path]:
    """The JSON outputs under ``root`` (recursive; hidden files and folders and batch reports skipped), sorted.

    As in ``batch``, symlinked folders are not followed (no loops); a folder that cannot be listed
    is reported in ``errors`` (its outputs would otherwise be missing from every result unsaid).
    """
    return [p for p, _, _ in _stat_outputs(root, errors)]


def _stat_outputs(root: Path, errors: list[tuple[str, str]] | None = None
                  ) -> list[tuple[Path, os.stat_result | OSError, bool]]:
    """``find_outputs`` with each file's ``stat`` (one a file: the index's signatures come from it), or
    the ``OSError`` it raised (a broken link: reading it fails, and that is reported), and whether the
    name is a symlink. FIFOs, sockets and devices are left out (opening a FIFO waits for a writer
    forever), and so is a second name of a file already found (a link to it: its every cue was listed
    twice). Of a symlink and the file it names, the file is kept: its review page lies beside it; of two
    names of one file (hard links), one with a review page beside it (a picks/car.json linked to clip.json
    was shown without its link to clip.html)."""
    found: list[tuple[Path, os.stat_result | OSError, bool]] = []

    def onerror(exc: OSError) -> None:
        if errors is not None:
            errors.append((str(exc.filename or root), cannot_list(exc)))

    for folder, dirs, files in walk(root, onerror):
        if not _may(folder, os.X_OK):  # names listed, but none can be opened: the folder is the error
            onerror(PermissionError(errno.EACCES, os.strerror(errno.EACCES), folder))
            dirs[:] = []
            continue
        dirs[:] = sorted(d for d in dirs if walked_into(d))
        for f in files:
            if not f.lower().endswith(".json") or f.startswith("."):
                continue
            path = Path(folder, f)
            link = False
            try:
                st: os.stat_result | OSError = os.lstat(path)
                if stat.S_ISLNK(st.st_mode):
                    link = True
                    st = os.stat(path)
            except OSError as exc:
                st = exc
            if not isinstance(st, OSError) and not stat.S_ISREG(st.st_mode):
                continue  # before _is_report, which reads: a FIFO named captioner-report.json hung the search
            if f in NOT_OUTPUTS and (isinstance(st, OSError) or _is_report(path)):
                continue
            found.append((path, st, link))
    names: dict[tuple[int, int], int] = {}
    for _, st, _ in found:
        if not isinstance(st, OSError):
            names[st.st_dev, st.st_ino] = names.get((st.st_dev, st.st_ino), 0) + 1

    def preference(item: tuple[Path, os.stat_result | OSError, bool]) -> tuple[bool, bool, Path]:
        path, st, link = item  # files before links, then (a file with several names only) one with its page
        several = not isinstance(st, OSError) and names[st.st_dev, st.st_ino] > 1
        return link, several and not os.path.isfile(path.with_name(path.name[: -len(".json")] + ".html")), path

    seen: set[tuple[int, int]] = set()
    unique = []
    for path, st, link in sorted(found, key=preference):
        if not isinstance(st, OSError):
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
        unique.append((path, st, link))
    return sorted(unique, key=lambda item: item[0])


def _uid() -> int:
    return os.geteuid() if hasattr(os, "geteuid") else 0


def _may(path: str | Path, mode: int) -> bool:
    """``os.access`` for the effective user and capabilities, those every open is checked against: plain
    ``access()`` asks for the real user's, and as root for every capability it could take up again."""
    return os.access(path, mode, effective_ids=os.access in os.supports_effective_ids)


def _is_report(path: Path) -> bool:
    """Whether ``path`` is a batch report, not a caption output (which begins with its ``metadata``); one
    that cannot be read is passed over as a report, as before such names were read at all."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(256)
    except OSError:
        return True
    return b'"metadata"' not in head


# --------------------------------------------------------------------------- the index


#: A file whose modification or change time is within this of its index's writing is read again (``update_index``):
#: times kept to the second (FAT keeps two) cannot tell two writes in one second apart.
RACY_NS = 2_000_000_000


def _signature(st: os.stat_result) -> tuple[int, int, int, int]:
    """What tells a changed file: size, modification time, inode, and the inode's change time, which
    an in-place rewrite moves even when it keeps the size and sets the modification time back."""
    return (int(st.st_size), int(st.st_mtime_ns), int(st.st_ino), int(st.st_ctime_ns))


def _mtime(path: Path) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


def cache_home() -> Path:
    """Where indexes of folders that cannot be written go: ``search/`` in captioner's cache folder."""
    from .outputs import cache_dir

    return cache_dir() / "search"


def index_path(root: Path) -> Path:
    """Where ``root``'s index lives: inside it if it can be written there, else in the cache folder.

    "Written there" is decided by the folder that takes the file: ``.captioner-search`` if it exists
    (left root-owned by one ``sudo`` search, it made every later search embed the new texts again
    and fail to save them), else ``root``. A folder that cannot even be looked into (mode 000) goes
    to the cache too: asking about its contents raised ``PermissionError`` and ended the search."""
    root = Path(root).resolve()
    inside = root / INDEX_FOLDER / INDEX_FILE
    try:  # a regular file or anything else of that name but a folder (or a link to one) is not ours to write into
        writable = stat.S_ISDIR(os.stat(inside.parent).st_mode) and _may(inside.parent, os.W_OK | os.X_OK)
    except FileNotFoundError:  # (a broken link of that name cannot be made a folder either)
        writable = not os.path.lexists(inside.parent) and _may(root, os.W_OK | os.X_OK)
    except OSError:  # root cannot be searched: nothing can be written inside it either
        writable = False
    if writable:
        return inside
    try:
        return cache_home() / hashlib.sha256(os.fsencode(root)).hexdigest()[:20] / INDEX_FILE
    except CaptionerError:  # no cache folder either (no home): searched all the same, the index not kept (a warning)
        return inside


@dataclass
class Index:
    """The searchable cues of one folder (see the module's docstring). Arrays are row-aligned per cue."""

    root: Path
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # rel path -> {sig, video, first, count}
    starts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    ends: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    file_of: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))  # index into ``paths``
    text_of: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))  # caption -> ``texts``
    doc_of: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))  # caption + concepts -> ``texts``
    concepts: list[tuple[str, ...]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    # one MiniLM embedding per text, int8 with a scale per row (``quantize_rows``): a quarter of float32's
    # memory, and a query converts 4x fewer bytes than from float16 (pipelines.search_bench)
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 384), np.int8))
    # per cue: its segment's visual vector (int8, x 127) and whether the JSON had one
    visual: np.ndarray = field(default_factory=lambda: np.zeros((0, VECTOR_DIM), np.int8))
    has_visual: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    paths: list[str] = field(default_factory=list)
    model: str = ""
    # per cue, its picture's neighbourhood (``context_windows``): the rows [ctx_lo, ctx_hi) of the
    # same file within ``context_seconds``, and 1 / (their visual cues x |mean of their vectors|)
    ctx_lo: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    ctx_hi: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    ctx_scale: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    context_seconds: float = 0.0
    # how many concept words each cue's second text holds (``doc_text``): an index made with another count
    # holds other texts, and is rebuilt (a library search with 0 left its index to every later CLI search)
    concept_words: int = SearchConfig.concept_words
    vector_scale: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # per text: vectors row x scale
    # JSON files that are no captioner output (a package.json, a damaged file): rel path -> {sig, reason}.
    # Kept so that an unchanged one is reported from here, not read again, and does not make every
    # search rewrite the whole index (a 200 MB foreign JSON made each search take 10 s).
    rejected: dict[str, dict[str, Any]] = field(default_factory=dict)
    # not stored: per file of this search, (device, inode, whether its name is a symlink), so that a
    # file reached from two of the folders searched is searched once (``Searcher``)
    ids: dict[str, tuple[int, int, bool]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.starts)

    def text_sims(self, query_vec: np.ndarray) -> np.ndarray:
        """Cosine of a unit query vector with every text's embedding [texts] (float32)."""
        return _dot(self.vectors, np.asarray(query_vec, np.float32)) * self.vector_scale

    # -- file format: one .npz, strings as a UTF-8 JSON blob -------------------------
    def save(self, path: Path) -> None:
        meta = {"version": INDEX_VERSION, "model": self.model, "root": str(self.root), "files": self.files,
                "rejected": self.rejected, "context_seconds": self.context_seconds,
                "concept_words": self.concept_words,
                "paths": self.paths, "texts": self.texts, "concepts": [list(c) for c in self.concepts]}
        # surrogateescape: a file name that is not UTF-8 is stored as its own bytes and read back the same
        blob = np.frombuffer(json.dumps(meta, ensure_ascii=False).encode("utf-8", "surrogateescape"), np.uint8)
        buf = io.BytesIO()
        np.savez(buf, meta=blob, starts=self.starts, ends=self.ends, file_of=self.file_of, text_of=self.text_of,
                 doc_of=self.doc_of, vectors=self.vectors, vector_scale=self.vector_scale, visual=self.visual,
                 has_visual=self.has_visual, ctx_lo=self.ctx_lo, ctx_hi=self.ctx_hi, ctx_scale=self.ctx_scale)
        from .outputs import atomic_path, remove_stale_temp_files

        path.parent.mkdir(parents=True, exist_ok=True)
        # a search killed outright (SIGKILL, power loss) while it wrote leaves its temporary file, as large as
        # the index; one an hour old is no other search's write in progress
        remove_stale_temp_files(path.parent, [path.name], older_than=STALE_INDEX_S)
        remove_stale_temp_files(path.parent, [path.name], older_than=STALE_INDEX_S, suffix=".tmp")  # before 2026-12-05
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:  # as readable as the outputs beside it
            handle.write(buf.getvalue())
            handle.flush()
            os.fsync(handle.fileno())

    @classmethod
    def load(cls, path: Path, root: Path, model: str, context_seconds: float = SearchConfig.context_seconds,
             concept_words: int = SearchConfig.concept_words) -> Index | None:
        """The index stored at ``path``, or ``None`` if there is none or it is damaged or does not fit.

        Paths in it are relative to the folder, and the folder it was made for is not checked: an
        archive moved, renamed or mounted elsewhere keeps its index (every file's signature is
        still checked, and a text embedded once is never embedded again)."""
        try:  # non-blocking: opening a FIFO of that name waited for a writer forever
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        except OSError as exc:  # none yet, or one in a folder this user may not enter: start afresh
            if not isinstance(exc, FileNotFoundError):
                log.info("%s: cannot read the index (%s)", path, exc.strerror or exc)
            return None
        try:
            with os.fdopen(fd, "rb") as handle:
                if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                    log.info("%s: not a file, rebuilding the index", path)
                    return None
                with np.load(handle, allow_pickle=False) as z:
                    meta = json.loads(bytes(z["meta"]).decode("utf-8", "surrogateescape"))
                    arrays = {k: z[k] for k in ("starts", "ends", "file_of", "text_of", "doc_of", "vectors", "visual",
                                                "has_visual", "ctx_lo", "ctx_hi", "ctx_scale", "vector_scale")}
        except Exception as exc:  # damaged in any way (zipfile raises NotImplementedError for a bad method)
            log.info("%s: damaged index, rebuilding (%s: %s)", path, exc.__class__.__name__, exc)
            return None
        try:
            if (meta["version"] != INDEX_VERSION or meta["model"] != model
                    or meta["context_seconds"] != context_seconds
                    # an index from before the count was stored was made with the default
                    or meta.get("concept_words", SearchConfig.concept_words) != concept_words):
                return None
            # as stored, no copies: the text vectors stay int8 (a float32 copy of a 100,000-cue
            # index is 300 MB of fresh memory, over a second of a new process's start); see _dot
            a = {k: np.asarray(arrays[k], dtype) for k, dtype in (
                ("starts", np.float64), ("ends", np.float64), ("file_of", np.int32), ("text_of", np.int32),
                ("doc_of", np.int32), ("vectors", np.int8), ("visual", np.int8), ("has_visual", bool),
                ("ctx_lo", np.int32), ("ctx_hi", np.int32), ("ctx_scale", np.float32), ("vector_scale", np.float32))}
            idx = cls(Path(root), dict(meta["files"]), a["starts"], a["ends"], a["file_of"], a["text_of"], a["doc_of"],
                      [tuple(c) for c in meta["concepts"]], list(meta["texts"]), a["vectors"], a["visual"],
                      a["has_visual"], list(meta["paths"]), model, a["ctx_lo"], a["ctx_hi"], a["ctx_scale"],
                      float(meta["context_seconds"]), int(concept_words), a["vector_scale"],
                      dict(meta.get("rejected", {})))
            n, t = len(idx.starts), len(idx.texts)
            ok = (all(len(a) == n for a in (idx.ends, idx.file_of, idx.text_of, idx.doc_of, idx.concepts, idx.visual,
                                            idx.has_visual, idx.ctx_lo, idx.ctx_hi, idx.ctx_scale))
                  and (n == 0 or (0 <= idx.ctx_lo.min() and idx.ctx_hi.max() <= n
                                  and bool(np.all(idx.ctx_lo <= np.arange(n))) and bool(np.all(np.arange(n) < idx.ctx_hi))))
                  and idx.visual.ndim == 2 and idx.visual.shape[1] == VECTOR_DIM
                  and idx.vectors.ndim == 2 and len(idx.vectors) == t and len(idx.vector_scale) == t
                  and (n == 0 or (0 <= idx.text_of.min() and idx.text_of.max() < t and 0 <= idx.doc_of.min()
                                  and idx.doc_of.max() < t and 0 <= idx.file_of.min() and idx.file_of.max() < len(idx.paths)))
                  and sum(int(f["count"]) for f in idx.files.values()) == n
                  and _entries_fit(idx))
        except Exception as exc:  # metadata of the wrong types: the index is rebuilt, never trusted
            log.info("%s: damaged index, rebuilding (%s: %s)", path, exc.__class__.__name__, exc)
            return None
        if not ok:
            log.info("%s: inconsistent index, rebuilding", path)
            return None
        return idx


def _entries_fit(idx: Index) -> bool:
    """Every file entry names rows of the index and a signature of ints; every text, path and
    concept word is a string (an index whose metadata was edited or damaged is rebuilt)."""
    n = len(idx.starts)
    for entry in idx.files.values():
        first, count, sig = int(entry["first"]), int(entry["count"]), entry["sig"]
        if not (0 <= first and 0 <= count and first + count <= n and isinstance(entry["video"], str)
                and isinstance(sig, list) and all(type(v) is int for v in sig)):
            return False
    for entry in idx.rejected.values():
        if not (isinstance(entry["reason"], str) and isinstance(entry["sig"], list)
                and all(type(v) is int for v in entry["sig"])):
            return False
    return (all(isinstance(t, str) for t in idx.texts) and all(isinstance(p, str) for p in idx.paths)
            and all(isinstance(w, str) for c in idx.concepts for w in c))


def doc_text(text: str, concepts: Sequence[str], n: int) -> str:
    """What the second embedding of a cue reads: its caption and its first ``n`` concept words."""
    words = [w for w in concepts[:n] if w]
    return f"{text} ({', '.join(words)})" if words else text


@dataclass
class UpdateStats:
    files: int = 0
    added: int = 0
    changed: int = 0
    removed: int = 0
    cues: int = 0
    embedded: int = 0  # distinct new texts embedded
    seconds: float = 0.0
    written: bool = False


#: Texts embedded per call while indexing: each call reports progress, and each is large
#: enough for the embedder's ONNX Runtime path (embed.ONNX_FROM).
EMBED_CHUNK = 1024


def update_index(root: Path, embedder: Any, config: SearchConfig = SearchConfig(), *,
                 path: Path | None = None, errors: list[tuple[str, str]] | None = None,
                 progress: ProgressCallback | None = None) -> tuple[Index, UpdateStats]:
    """Bring ``root``'s index up to date with the JSON outputs under it and return it.

    Unreadable or foreign JSON files are left out and reported in ``errors`` as
    ``(path, reason)``, the path under ``root`` as given; a foreign one is read again only
    once it changes (its reason is kept in the index). Embedding the new
    texts is the long part (minutes for a large new archive): ``progress`` hears
    ``Progress("texts", done, total)`` after every ``EMBED_CHUNK`` of them.
    """
    import time

    from .embed import MODEL_NAME

    t0 = time.perf_counter()
    shown = Path(root)
    root = shown.resolve()
    errors = errors if errors is not None else []

    def said(p: str | Path) -> str:
        """``p`` (under the resolved folder) as the caller named the folder, as hits are shown."""
        try:
            return str(shown / Path(p).relative_to(root))
        except ValueError:
            return str(p)

    inside = root / INDEX_FOLDER / INDEX_FILE
    path = Path(path) if path is not None else index_path(root)
    old = None
    written = -1  # when the old index was written (ns)
    # a read-only archive may carry its own index: start from it, or from the cache's copy if newer
    for candidate in sorted({path, inside}, key=_mtime, reverse=True):
        old = Index.load(candidate, root, MODEL_NAME, config.context_seconds, config.concept_words)
        if old is not None:
            written = _mtime(candidate)
            break
    stats = UpdateStats()
    walk_errors: list[tuple[str, str]] = []
    outputs = _stat_outputs(root, walk_errors)
    errors.extend((said(p), reason) for p, reason in walk_errors)
    stats.files = len(outputs)
    current: dict[str, tuple[Path, tuple[int, int, int, int]]] = {}
    ids: dict[str, tuple[int, int, bool]] = {}
    for p, st, link in outputs:
        if isinstance(st, OSError):
            errors.append((said(p), st.strerror or str(st)))
        else:
            rel = p.relative_to(root).as_posix()
            current[rel] = (p, _signature(st))
            ids[rel] = (int(st.st_dev), int(st.st_ino), link)
    old_files = old.files if old is not None else {}
    old_rejected = old.rejected if old is not None else {}

    def settled(sig: tuple[int, ...]) -> bool:
        # a file changed within RACY_NS of the index's writing may have changed again since with the same signature
        # (git's "racily clean"): where times are kept to the second (FAT, exFAT, HFS+, many shares, ext4 with small
        # inodes), a caption corrected twice in one second kept its first correction in the index for good
        # (a time far past the index's writing is no such race: a file dated in the future, cp -p from a machine
        # whose clock is ahead, was read again and the index rewritten on every search)
        return all(not written - RACY_NS <= stamp <= written + RACY_NS for stamp in (sig[1], sig[3]))

    def unchanged(entries: dict[str, dict[str, Any]], rel: str, sig: tuple[int, ...]) -> bool:
        # a file one user may not read stays unread for that user only: the index is shared
        return (rel in entries and tuple(entries[rel]["sig"]) == sig and settled(sig)
                and entries[rel].get("uid", _uid()) == _uid())

    def readable(rel: str) -> bool:
        # an indexed file this process may not read (another user's index, the file made private since) is read
        # again, and fails as it does with a fresh index: its captions were shown from the shared index, exit 0
        return _may(current[rel][0], os.R_OK)

    if old is not None and len(old_files) + len(old_rejected) == len(current) and all(
            (unchanged(old_files, k, sig) and readable(k)) or unchanged(old_rejected, k, sig)
            for k, (_, sig) in current.items()):
        errors.extend((said(p), old_rejected[k]["reason"]) for k, (p, _) in current.items() if k in old_rejected)
        stats.cues, stats.seconds = len(old), time.perf_counter() - t0
        old.ids = ids
        return old, stats  # nothing changed: nothing to write

    known = {t: i for i, t in enumerate(old.texts)} if old is not None else {}
    new = Index(root, model=MODEL_NAME, context_seconds=config.context_seconds,
                concept_words=config.concept_words, ids=ids)
    texts: list[str] = []
    text_ids: dict[str, int] = {}
    reuse: list[int] = []  # per new text: its row in the old vectors, or -1
    starts, ends, file_of, text_of, doc_of = [], [], [], [], []
    visual: list[np.ndarray | None] = []

    def text_id(t: str) -> int:
        if t not in text_ids:
            text_ids[t] = len(texts)
            texts.append(t)
            reuse.append(known.get(t, -1))
        return text_ids[t]

    for rel, (p, sig) in current.items():
        entry = old_files.get(rel)
        if unchanged(old_rejected, rel, sig):
            errors.append((said(p), old_rejected[rel]["reason"]))
            new.rejected[rel] = old_rejected[rel]
            continue
        if entry is not None and tuple(entry["sig"]) == sig and settled(sig) and readable(rel):
            first, count = int(entry["first"]), int(entry["count"])
            rows = range(first, first + count)
            video = entry["video"]
            cues = [CueRecord(float(old.starts[r]), float(old.ends[r]), old.texts[old.text_of[r]], old.concepts[r],
                              old.visual[r] if old.has_visual[r] else None) for r in rows]
        else:
            try:
                video, cues = read_output(p)
            except OSError as exc:
                errors.append((said(p), exc.strerror or str(exc)))
                if exc.errno in (errno.EACCES, errno.EPERM):  # until chmod moves its change time: not read again
                    new.rejected[rel] = {"sig": list(sig), "reason": exc.strerror or str(exc), "uid": _uid()}
                continue  # other errors may pass (a disk's hiccup): read again next time
            except ValueError as exc:
                errors.append((said(p), str(exc)))
                new.rejected[rel] = {"sig": list(sig), "reason": str(exc)}
                continue
            if entry is None:
                stats.added += 1
            else:
                stats.changed += 1
        fid = len(new.paths)
        new.paths.append(rel)
        new.files[rel] = {"sig": list(sig), "video": video, "first": len(starts), "count": len(cues)}
        for c in cues:
            starts.append(c.start)
            ends.append(c.end)
            file_of.append(fid)
            text_of.append(text_id(c.text))
            doc_of.append(text_id(doc_text(c.text, c.concepts, config.concept_words)))
            new.concepts.append(tuple(c.concepts))
            visual.append(c.vector)
    stats.removed = len(set(old_files) - set(current))
    new.texts = texts
    new.vectors = np.zeros((len(texts), 384), np.int8)
    new.vector_scale = np.zeros(len(texts), np.float32)
    fresh = [i for i, r in enumerate(reuse) if r < 0]
    # -v says what a long first indexing does (on 2 cores ~400 texts a second: minutes for a big archive)
    log.info("%s: indexing %d JSON file(s): %d added, %d changed, %d removed; %d new caption text(s) to embed",
             root, len(current), stats.added, stats.changed, len(set(old_files) - set(current)), len(fresh))
    if old is not None:
        kept = [i for i, r in enumerate(reuse) if r >= 0]
        new.vectors[kept] = old.vectors[[reuse[i] for i in kept]]
        new.vector_scale[kept] = old.vector_scale[[reuse[i] for i in kept]]
    if fresh and progress is not None:  # the bar from the start: reports after each chunk alone showed none
        progress(Progress("texts", 0, len(fresh)))  # while the first (or only) chunk was embedded
    for start in range(0, len(fresh), EMBED_CHUNK):
        rows = fresh[start:start + EMBED_CHUNK]
        new.vectors[rows], new.vector_scale[rows] = quantize_rows(embedder.embed([texts[i] for i in rows]))
        if progress is not None:
            progress(Progress("texts", start + len(rows), len(fresh)))
    new.visual = np.zeros((len(visual), VECTOR_DIM), np.int8)
    new.has_visual = np.array([v is not None for v in visual], bool)
    for r, v in enumerate(visual):
        if v is not None:
            new.visual[r] = v
    new.starts = np.asarray(starts, np.float64)
    new.ends = np.asarray(ends, np.float64)
    new.file_of = np.asarray(file_of, np.int32)
    new.text_of = np.asarray(text_of, np.int32)
    new.doc_of = np.asarray(doc_of, np.int32)
    new.ctx_lo, new.ctx_hi, new.ctx_scale = context_windows(new, config.context_seconds)
    stats.embedded, stats.cues = len(fresh), len(new)
    if not current and old is None:  # nothing to index and no index to empty: leave the folder as it was
        stats.seconds = time.perf_counter() - t0
        return new, stats
    try:
        new.save(path)
        stats.written = True
        log.info("%s: index of %d cues written to %s in %.1f s", root, len(new), path, time.perf_counter() - t0)
    except OSError as exc:  # a read-only archive and cache: search anyway, from memory
        log.warning("cannot write the search index %s: %s", path, exc.strerror or exc)
    stats.seconds = time.perf_counter() - t0
    return new, stats


def context_windows(index: Index, seconds: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each cue's picture neighbourhood: the cues of its file whose middles lie within ``seconds`` of its own.

    A cue's visual vector comes from a few frames, so one unlucky frame can hide
    what a whole shot or clip shows. ``cue_scores`` therefore also compares a query
    with the mean of the neighbourhood's vectors; that is the mean of the query's
    similarities with them divided by the mean vector's length, so only the window
    (rows [lo, hi), cues of a file being stored in time order) and that factor are
    kept: ``scale`` = 1 / (visual cues in the window x |their mean vector|), 0 when
    the window has none. A file whose cues are not in time order gets windows of one.
    """
    n = len(index)
    lo, hi = np.arange(n, dtype=np.int32), np.arange(1, n + 1, dtype=np.int32)
    scale = np.zeros(n, np.float32)
    if not n:
        return lo, hi, scale
    mid = (index.starts + index.ends) / 2
    bounds = np.flatnonzero(np.diff(index.file_of)) + 1
    for a, b in zip(np.r_[0, bounds], np.r_[bounds, n]):
        m = mid[a:b]
        if seconds > 0 and np.all(np.diff(m) >= 0):
            lo[a:b] = a + np.searchsorted(m, m - seconds, side="left")
            hi[a:b] = a + np.searchsorted(m, m + seconds, side="right")
        if not index.has_visual[a:b].any():
            continue  # no picture vectors (scale 0); float copies of a file's cues only, never of the whole index
        vis = index.visual[a:b].astype(np.float32) / 127.0
        sums = np.cumsum(np.r_[np.zeros((1, vis.shape[1]), np.float32), vis * index.has_visual[a:b, None]], 0)
        counts = np.cumsum(np.r_[0, index.has_visual[a:b].astype(np.int64)])
        k = counts[hi[a:b] - a] - counts[lo[a:b] - a]
        total = np.linalg.norm(sums[hi[a:b] - a] - sums[lo[a:b] - a], axis=1)  # k x |mean vector|
        ok = (k > 0) & (total > 1e-6 * np.maximum(k, 1))
        scale[a:b][ok] = 1.0 / total[ok]
    return lo, hi, scale


# --------------------------------------------------------------------------- scoring


class WordScorer:
    """BM25 over each cue's caption and concept words (``k1``, ``b`` from ``SearchConfig``)."""

    def __init__(self, index: Index, config: SearchConfig) -> None:
        self.k1, self.b = config.bm25_k1, config.bm25_b
        doc_terms = [terms(doc_text(index.texts[t], c, config.concept_words))
                     for t, c in zip(index.text_of, index.concepts)]
        self.lengths = np.array([len(d) for d in doc_terms], np.float32)
        self.avg = float(self.lengths.mean()) if len(self.lengths) else 1.0
        self.postings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        rows: dict[str, list[int]] = {}
        counts: dict[str, list[int]] = {}
        for i, d in enumerate(doc_terms):
            for term, k in Counter(d).items():
                rows.setdefault(term, []).append(i)
                counts.setdefault(term, []).append(k)
        for term in rows:
            self.postings[term] = (np.asarray(rows[term], np.int64), np.asarray(counts[term], np.float32))
        self.n = len(doc_terms)

    def scores(self, query: str) -> np.ndarray:
        """Per cue, BM25 of the query divided by the best a cue could score (0..1)."""
        out = np.zeros(self.n, np.float32)
        best = 0.0
        for term in set(terms(query)):
            if term not in self.postings:
                continue
            rows, tf = self.postings[term]
            idf = math.log(1.0 + (self.n - len(rows) + 0.5) / (len(rows) + 0.5))
            norm = tf + self.k1 * (1 - self.b + self.b * self.lengths[rows] / self.avg)
            out[rows] += idf * tf * (self.k1 + 1) / norm
            best += idf * (self.k1 + 1)
        return out / best if best > 0 else out


def quantize_rows(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows as int8 and one scale each (row ~ int8 row x scale): the largest value maps to +-127.

    A scale per row keeps about 8 bits of every vector however its values are spread;
    cosines move by about 1e-3 (tests/test_find.py).
    """
    v = np.asarray(vectors, np.float32)
    scale = np.abs(v).max(1) / 127.0
    scale[scale == 0] = 1.0
    return np.clip(np.rint(v / scale[:, None]), -127, 127).astype(np.int8), scale.astype(np.float32)


def _dot(rows: np.ndarray, vec: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """``rows @ vec`` for rows of any dtype (float16, int8), converted a slice at a time (bounded memory).

    Each row summed the same way (NumPy's einsum, not BLAS): BLAS sums a row in an order that depends on where
    it lies in the matrix, so two identical cues scored 0.442142516 and 0.442142546 and their tie came out in no
    order. einsum is also about 3x faster here than the matrix product was (34 against 114 ms over 100,000 int8 rows
    of 384, one run, /tmp script).
    """
    vec32 = np.asarray(vec, np.float32)
    out = np.empty(len(rows), np.float32)
    for s in range(0, len(rows), chunk):
        out[s : s + chunk] = np.einsum("ij,j->i", rows[s : s + chunk].astype(np.float32, copy=False), vec32)
    return out


def cue_scores(index: Index, query_vec: np.ndarray, words: WordScorer | None, query: str,
               config: SearchConfig) -> np.ndarray:
    """The score of every cue: caption similarity, concept-sentence similarity, picture similarity and words, weighted.

    The picture similarity is the query's cosine with the cue's visual vector; a cue
    whose JSON has none (an older model, another tool) gets its concept-sentence
    similarity in its place, so archives that mix both still rank on one scale.
    """
    sims = index.text_sims(query_vec)
    doc = sims[index.doc_of]
    score = (1.0 - config.concept_weight) * sims[index.text_of] + config.concept_weight * doc
    if config.visual_weight and len(index):
        own = _dot(index.visual, query_vec) / 127.0
        vis = np.where(index.has_visual, own, doc)
        if config.context_weight:
            csum = np.r_[0.0, np.cumsum(np.where(index.has_visual, own, 0.0), dtype=np.float64)]
            context = (csum[index.ctx_hi] - csum[index.ctx_lo]) * index.ctx_scale
            vis = np.where(index.ctx_scale > 0, (1.0 - config.context_weight) * vis + config.context_weight * context, vis)
        score = (1.0 - config.visual_weight) * score + config.visual_weight * vis
    if words is not None and config.word_weight:
        score = score + config.word_weight * words.scores(query)
    return score


# --------------------------------------------------------------------------- search


@dataclass(frozen=True)
class Hit:
    """One found cue: its JSON output, video, time, caption and score (higher is better)."""

    output: Path
    video: str
    start: float
    end: float
    text: str
    score: float
    concepts: tuple[str, ...] = ()

    @property
    def page(self) -> Path:
        """The video's review page (``-f html``) beside the JSON: ``clip.json`` -> ``clip.html``; for a
        JSON that is a symlink with no page beside it, the page beside the file it names."""
        own = self.output.with_name(self.output.name[: -len(".json")] + ".html")
        if own.is_file() or not self.output.is_symlink():
            return own
        real = Path(os.path.realpath(self.output))
        return real.with_name(real.name[: -len(".json")] + ".html") if real.name.lower().endswith(".json") else own


@dataclass
class SearchResult:
    hits: list[Hit]
    errors: list[tuple[str, str]]  # (JSON file, reason): files left out
    cues: int  # cues searched
    stats: list[UpdateStats]


def _distinct_roots(roots: Sequence[Path]) -> list[int]:
    """The positions of the folders to index: each folder once, and none that lies inside another
    given folder whose own walk reaches it (every file once, however the folders were typed)."""
    resolved = [Path(r).resolve() for r in roots]
    keep: list[int] = []
    for i, r in enumerate(resolved):
        if r in resolved[:i]:
            continue
        if any(o != r and r.is_relative_to(o) and _walk_reaches(o, r) for o in resolved):
            continue  # find_outputs of the outer folder walks into it
        keep.append(i)
    return keep


def _walk_reaches(outer: Path, inner: Path) -> bool:
    """Whether ``find_outputs(outer)`` walks into ``inner`` (resolved, inside it): no hidden folder on the
    way, and every folder on the way can be listed. A sub-folder named with a parent it cannot be reached
    from (a private/ of mode 711 between them) was dropped, and never searched."""
    parts = inner.relative_to(outer).parts
    if not all(walked_into(part) for part in parts):
        return False
    return all(_may(outer.joinpath(*parts[:k]), os.R_OK | os.X_OK) for k in range(len(parts)))


def _searched_rows(indexes: Sequence[Index]) -> list[np.ndarray | None]:
    """Per index, the rows to search (``None``: all): each file once across the folders, as within one
    (hard links in two folders, a symlink in one to a file in another listed every cue twice). A file
    goes to the first folder where it is no symlink, else to the first that has it."""
    owner: dict[tuple[int, int], tuple[bool, int]] = {}
    for k, idx in enumerate(indexes):
        for rel, (dev, ino, link) in idx.ids.items():
            if (dev, ino) not in owner or (owner[dev, ino][0] and not link):
                owner[dev, ino] = (link, k)
    out: list[np.ndarray | None] = []
    for k, idx in enumerate(indexes):
        keep = np.ones(len(idx), bool)
        for rel, (dev, ino, _) in idx.ids.items():
            if owner[dev, ino][1] != k and rel in idx.files:
                first = int(idx.files[rel]["first"])
                keep[first : first + int(idx.files[rel]["count"])] = False
        out.append(None if keep.all() else np.flatnonzero(keep))
    return out


def check_query(query: str) -> None:
    """``CaptionerError`` unless ``query`` is text worth searching for."""
    if not isinstance(query, str):  # b"dog", 3: AttributeErrors ('bytes' object has no attribute 'encode')
        raise CaptionerError(f"the query must be text (a str), got {type(query).__name__}")
    if not query or not query.strip():
        raise CaptionerError("the query is empty")
    try:
        query.encode("utf-8")
    except UnicodeEncodeError:
        raise CaptionerError("the query is not valid text (it holds bytes that are not UTF-8)") from None
    # zero-width spaces, a BOM, control characters, lone accents: nothing to read, and the embedder saw the
    # empty query in them (the same vector), answering with whatever scores best against nothing
    if not any(unicodedata.category(ch)[0] in "LNPS" for ch in query):
        raise CaptionerError("the query is empty")


def check_words(query: str, tokenizer: Any = None) -> None:
    """``CaptionerError`` unless the sentence model reads a word in ``query`` (``embed.knows_a_word``; ``tokenizer``:
    its tokenizer, read from the model if not given)."""
    from .embed import knows_a_word, read_tokenizer

    if not knows_a_word(tokenizer if tokenizer is not None else read_tokenizer(), query):
        if all(len(word) > LONGEST_WORD for word in query.split()):  # the tokenizer's unknown token too, and so said
            raise CaptionerError(f"the query's words are longer than the search model reads ({LONGEST_WORD} "
                                 f"characters at most): {query.strip()[:40]!r}")
        raise CaptionerError(f"the search model knows none of the query's characters ({query.strip()[:40]!r}); "
                             "captions are English: search with English words")


#: The longest word the sentence model's tokenizer reads (its WordPiece ``max_input_chars_per_word``); a longer one is
#: its unknown token.
LONGEST_WORD = 100


class Searcher:
    """Keeps the embedding model and the indexes of some folders; ``search(query)`` many times."""

    def __init__(self, roots: Sequence[Path], config: SearchConfig = SearchConfig(), embedder: Any = None,
                 index_paths: Sequence[Path] | None = None, progress: ProgressCallback | None = None) -> None:
        if embedder is None:
            from .embed import TextEmbedder

            embedder = TextEmbedder()
        self.config, self.embedder = config, embedder
        path_list(roots, "Searcher")
        roots = list(roots)  # a generator: "object of type 'generator' has no len()"
        if not len(roots):
            raise CaptionerError("no folders to search")
        self.errors: list[tuple[str, str]] = []
        self.stats: list[UpdateStats] = []
        self.indexes: list[Index] = []
        for root in roots:
            if not os.path.isdir(root):  # Path.is_dir() raises on a path too long for the system
                raise CaptionerError(f"{root}: not a folder")
        empty, no_cues = [], []
        self._shown: list[Path] = []  # each index's folder as the caller named it: hits are shown under it
        for i in _distinct_roots(roots):
            root = Path(roots[i])
            self._shown.append(root)
            before = len(self.errors)
            idx, st = update_index(root, embedder, config, path=index_paths[i] if index_paths else None,
                                   errors=self.errors, progress=progress)
            self.indexes.append(idx)
            self.stats.append(st)
            if not st.files:
                empty.append(str(root))
            elif not len(idx) and len(self.errors) == before:  # (a file in error has its own line)
                no_cues.append(str(root))
        unlisted = {p for p, reason in self.errors if reason.startswith(CANNOT_LIST)}
        if not any(st.files for st in self.stats):
            if unlisted:  # nothing could be read: say why, not that nothing is there
                path, reason = next((p, r) for p, r in self.errors if p in unlisted)
                raise CaptionerError(f"{path}: {reason}")
            raise CaptionerError(f"no captioner JSON outputs under {', '.join(str(r) for r in roots)}"
                                 " (caption with -f json first)")
        # one folder of several with nothing to search is a mistake worth a line (a typo, the wrong drive)
        self.errors.extend((r, "no captioner JSON outputs under it") for r in empty if r not in unlisted)
        # outputs without a single cue (every cue under --min-confidence): a search of only them printed nothing
        # and exited 0, as if it had looked and found nothing to show; beside folders with cues, a valid archive
        if any(len(idx) for idx in self.indexes):
            for r in no_cues:
                log.warning("%s: no cues in its captioner JSON outputs (nothing there to find)", r)
        else:
            self.errors.extend((r, "no cues in its captioner JSON outputs") for r in no_cues)
        self._words = [WordScorer(idx, config) if config.word_weight else None for idx in self.indexes]
        self._rows = _searched_rows(self.indexes)

    @property
    def cues(self) -> int:
        return sum(len(i) if rows is None else len(rows) for i, rows in zip(self.indexes, self._rows))

    def scores(self, query: str) -> list[np.ndarray]:
        """Per folder, every cue's score for ``query``."""
        q = self.embedder.embed([query])[0]
        return [cue_scores(idx, q, w, query, self.config) for idx, w in zip(self.indexes, self._words)]

    def search(self, query: str, n: int | None = None) -> SearchResult:
        """The ``n`` best cues for ``query``, best first (ties: folder, file, time order)."""
        check_query(query)
        tokenizer = getattr(self.embedder, "tokenizer", None)
        if tokenizer is not None:
            check_words(query, tokenizer)
        n = self.config.results if n is None else n
        if not is_whole(n, 1):
            # 2.5 failed in NumPy's partition (TypeError), True was taken as 1
            raise CaptionerError(f"the number of results must be a whole number of at least 1, got {n!r}")
        pool: list[tuple[float, int, int]] = []
        for k, (rows, s) in enumerate(zip(self._rows, self.scores(query))):
            if rows is not None:
                s = s[rows]
            if not len(s):
                continue
            if len(s) <= 4 * n:
                top = np.argsort(-s, kind="stable")
            else:  # partition for big indexes (a whole sort of 100,000 scores was made first, then thrown away)
                kth = -np.partition(-s, n - 1)[n - 1]  # the n-th best score
                above = np.flatnonzero(s > kth)
                part = np.concatenate([above, np.flatnonzero(s == kth)[: n - len(above)]])  # ties: earliest rows
                top = part[np.lexsort((part, -s[part]))]
            pool.extend((float(s[r]), k, int(r if rows is None else rows[r])) for r in top)
        pool.sort(key=lambda x: (-x[0], x[1], x[2]))
        hits = []
        for score, k, r in pool[:n]:
            idx = self.indexes[k]
            rel = idx.paths[idx.file_of[r]]
            hits.append(Hit(self._shown[k] / rel, idx.files[rel]["video"], float(idx.starts[r]), float(idx.ends[r]),
                            idx.texts[idx.text_of[r]], score, idx.concepts[r]))
        return SearchResult(hits, list(self.errors), self.cues, list(self.stats))


def search(query: str, roots: Sequence[Path], n: int | None = None, config: SearchConfig = SearchConfig(),
           embedder: Any = None) -> SearchResult:
    """One search over the JSON outputs under ``roots`` (indexes brought up to date first)."""
    path_list(roots, "search", f"{query!r}, " if isinstance(query, str) else "query, ")
    check_query(query)
    return Searcher(roots, config, embedder).search(query, n)


# --------------------------------------------------------------------------- output


def clock(seconds: float) -> str:
    """``HH:MM:SS.mmm``."""
    ms = int(round(max(0.0, seconds) * 1000))
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def hit_lines(hits: Iterable[Hit]) -> list[str]:
    """``path  start --> end  score  caption``, one per hit (the CLI's plain output)."""
    return [f"{printable(str(h.output))}  {clock(h.start)} --> {clock(h.end)}  {h.score:.3f}  {printable(h.text)}"
            for h in hits]


def hits_json(query: str, result: SearchResult, ascii_only: bool = False) -> str:
    """``--json``'s text. ``ascii_only`` for an output that is not UTF-8: every other character as a JSON
    escape (backslash-escaping by the stream made invalid JSON of an emoji)."""
    rows = [{"output": str(h.output), "video": h.video, "start": h.start, "end": h.end, "score": round(h.score, 4),
             "text": h.text, "concepts": list(h.concepts)} for h in result.hits]
    return json_text({"query": query, "cues_searched": result.cues, "results": rows,
                      "errors": [{"path": p, "reason": r} for p, r in result.errors]}, ascii_only, indent=2) + "\n"


def json_text(obj: Any, ascii_only: bool = False, indent: int | None = None) -> str:
    """JSON text for standard output that a JSON reader accepts: a file name that is not UTF-8 keeps its
    bytes as \\udcXX escapes (which a reader turns back into that name), never as raw bytes."""
    from .outputs import json_surrogates

    return json_surrogates(json.dumps(obj, indent=indent, ensure_ascii=ascii_only))


def _href(target: Path, page: Path, start: float) -> str:
    """``target`` at ``start`` relative to ``page`` as named, symlinks not resolved: a browser opens the page
    at that path (results/ a link to store/results: links made from the resolved page led nowhere)."""
    rel = os.path.relpath(os.path.abspath(target), os.path.dirname(os.path.abspath(page)))
    return quote(os.fsencode(Path(rel).as_posix())) + f"#t={start:.3f}".rstrip("0").rstrip(".")  # bytes: any name


def format_results_html(query: str, result: SearchResult, page: Path) -> str:
    """A self-contained results page: each hit links to its video's review page at the cue, if that page exists."""
    e = html.escape
    rows = []
    for h in result.hits:
        where = e(str(h.output))
        # a results page saved as clip.html (--html beside the outputs) is no review page of clip
        if h.page.is_file() and not is_results_page(h.page):  # named by its path from the page (a/ and b/ clip)
            shown = os.path.relpath(os.path.abspath(h.output), os.path.dirname(os.path.abspath(page)))[:-5]
            # the time inside the link's name too: a video's hits all read "out/b" in a screen reader's list of links
            where = (f'<a href="{e(_href(h.page, page, h.start))}">{e(shown)}'
                     f'<span class="vh"> at {e(clock(h.start))}</span></a>')
        # each time unbroken, the line free to break after the arrow (a phone's width)
        rows.append(f"<tr><td>{where}</td><td><span>{e(clock(h.start))} &rarr;</span> <span>{e(clock(h.end))}</span></td>"
                    f"<td>{h.score:.3f}</td><td dir=\"auto\">{e(h.text)}</td></tr>")
    body = "\n".join(rows) or '<tr><td colspan="4">no results</td></tr>'
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="{RESULTS_GENERATOR}">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>captioner search: {e(query)}</title>
<style>body{{font:14px system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}}
h1,td:first-child{{overflow-wrap:anywhere}}td:last-child{{overflow-wrap:break-word;min-width:8em}}
td:nth-child(2) span,td:nth-child(3){{white-space:nowrap}}
.vh{{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}}
@media (max-width:600px){{body{{margin:1em}}td,th{{padding:.3em .4em}}table{{display:block;overflow-x:auto}}}}</style></head>
<body><main><h1>Search: {e(query)}</h1><p>{count_text(result.cues, "cue")} searched.</p>
<table><thead><tr><th>video</th><th>time</th><th>score</th><th>caption</th></tr></thead>
<tbody>
{body}
</tbody></table></main></body></html>
"""




def _results_head(head: bytes) -> bool:
    """Whether ``head``, a page's first bytes, is a results page's (its mark, or the title of a page of a
    version before the mark, which had no generator tag: a review page of a video named "captioner search:
    talk.mp4" has that title too, and was written over by ``--html`` and its hits left unlinked)."""
    return (f'<meta name="generator" content="{RESULTS_GENERATOR}">'.encode() in head
            or (b"<title>captioner search: " in head and b'<meta name="generator" content="' not in head))


def is_results_page(page: Path) -> bool:
    """Whether ``page`` is a results page ``--html`` wrote."""
    try:
        with open(page, "rb") as handle:
            return _results_head(handle.read(4096))
    except OSError:
        return False


def check_results_page(page: Path) -> None:
    """``OutputError`` unless ``page`` can take a results page: its folder exists and can be written,
    it is not named ``.json``, and it is new or a results page written before. ``--html subs/clip.json``
    replaced a caption output (every later search then failed on it), and a review page or a batch's
    index went the same way, unsaid; a new ``subs/dog.json`` broke every later search the same way;
    a read-only folder was found out only after minutes of indexing."""
    from .outputs import too_long, write_problem

    if not os.path.isdir(page.parent):  # not Path.is_dir(): it raises on a path too long for the system
        reason = too_long(page.parent, folder=True) or (f"{page.parent} is not a folder" if os.path.lexists(page.parent)
                                                        else f"folder {page.parent} does not exist")
        raise OutputError(f"{page}: cannot write: {reason}")
    problem = write_problem(page)
    if problem:
        raise OutputError(f"{page}: cannot write: {problem}")
    if os.path.lexists(page):
        try:
            if _is_stdout(page):
                raise OutputError(f"{page}: writing to standard output is not supported: give a file name")
            if os.path.exists(page) and not os.path.isfile(page) and not os.path.isdir(page):
                # reading a FIFO (>(cat), mkfifo) to see whose page it is waited for a writer forever
                raise OutputError(f"{page}: cannot write: not a regular file (a pipe or a device)")
            with open(page, "rb") as handle:
                head = handle.read(4096)
        except OSError as exc:
            raise OutputError(f"{page}: cannot write: {exc.strerror or exc}") from None
        if not _results_head(head):
            raise OutputError(f"{page}: exists and is not a results page of captioner search; not replaced "
                              "(remove it or choose another name)")
    if page.name.lower().endswith(".json"):
        raise OutputError(f"{page}: a results page is HTML; a .json name is read by later searches as a "
                          "caption output (choose a .html name)")
    if not _may(page.parent, os.W_OK | os.X_OK):
        raise OutputError(f"{page}: cannot write: folder {page.parent} is not writable")


def _is_stdout(page: Path) -> bool:
    """Whether ``page`` is this process's standard output (``/dev/stdout``, ``/dev/fd/1``), whatever it goes to."""
    try:
        named, out = os.stat(page), os.fstat(1)
    except (OSError, ValueError):
        return False
    return (named.st_dev, named.st_ino) == (out.st_dev, out.st_ino)


def write_results_html(query: str, result: SearchResult, page: Path) -> None:
    from .outputs import write_atomic

    check_results_page(page)
    write_atomic(page, format_results_html(query, result, page))
