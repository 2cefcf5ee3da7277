"""Subtitle writers: cues to SRT, WebVTT, JSON, plain text and the HTML review page.

``WRITERS`` maps each format name to the function that renders it; adding a
format is one entry there. Every writer receives cues that went through
``cues.normalize_cues`` (clean text, safe times) and a ``Document`` with what
some formats need besides the cues (the video's metadata, the line box, the
review page's thumbnails). The review page (review.py) is one writer among them.

Conventions follow whisper's writers: SRT and VTT are wrapped to
``OutputConfig.max_line_width`` characters and ``max_line_count`` lines, JSON
and TXT carry each cue's text unwrapped. (A caption too long for one cue's box was
already cut into cues shown one after the other, ``cues.layout_cues``: every format
has those pieces.) ``write_subtitles`` writes the files
atomically (outputs.py), so an interrupted run never leaves a half-written
subtitle file behind that the batch's resume check would mistake for a
finished one.

This module deliberately imports neither torch nor cv2: it is used by the CLI
and by tests that must stay light.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from captioner.config import OutputConfig, ReviewConfig
from captioner.errors import OutputError
from captioner.cues import Cue, clean_text, join_lines, normalize_cues, to_ms, wrap_pieces, wrap_text
from captioner.outputs import json_surrogates, output_file, parse_json, write_all_atomic, write_atomic
from captioner.review import is_review_page, snapshots_for, write_page

__all__ = [
    "FORMATS",
    "WRITERS",
    "Document",
    "Writer",
    "format_json",
    "format_srt",
    "format_txt",
    "format_vtt",
    "captioner_wrote",
    "foreign_outputs",
    "foreign_reason",
    "parse_formats",
    "repoint_json",
    "write_subtitles",
]

logger = logging.getLogger(__name__)

#: The line box when nothing else is said (``OutputConfig``'s 42 / 2).
_BOX = OutputConfig()

# An SRT line made only of a number reads as a cue index to lenient parsers
# (the ``srt`` library among them) when the next line starts like a timestamp,
# which splits the cue in two. Such a line is never left on its own (see
# ``_srt_lines``). Unicode digits are included because some parsers use ``\d``.
_INDEX_LINE_RE = re.compile(r"-?\d+(?:\.\d*)?")


# --------------------------------------------------------------------------- formats


def parse_formats(spec: str) -> tuple[str, ...]:
    """Parse a ``--format`` value such as ``"srt"``, ``"srt,vtt"`` or ``"all"``.

    Names are case-insensitive, surrounding spaces are ignored and duplicates
    are dropped (first mention wins the position), so the caller can write each
    file exactly once. ``"all"`` expands to ``FORMATS`` at its position.

    Raises ``ValueError`` for an empty spec or an unknown name; the message lists
    the valid names so the CLI can show it to the user as is.
    """
    valid = ", ".join(FORMATS) + " or all"
    names = [part.strip().lower() for part in spec.split(",")]
    names = [name for name in names if name]
    if not names:
        raise ValueError(f"no subtitle format given; choose from {valid}")
    result: list[str] = []
    for name in names:
        if name == "all":
            expanded: tuple[str, ...] = FORMATS
        elif name in FORMATS:
            expanded = (name,)
        else:
            raise ValueError(f"unknown subtitle format {name!r}; choose from {valid}")
        result.extend(fmt for fmt in expanded if fmt not in result)
    return tuple(result)


# --------------------------------------------------------------------------- formats one by one



def _timestamp(seconds: float, separator: str) -> str:
    """``HH:MM:SS<sep>mmm``; hours grow past two digits rather than wrapping."""
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"cannot write a subtitle time of {seconds} s")
    ms = to_ms(seconds)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{ms:03d}"


def _srt_lines(text: str, max_line_width: int, max_line_count: int) -> list[str]:
    """Wrap for SRT, never leaving a number alone on a line that has a line after it.

    Lenient SRT parsers take ``<number>`` + ``<timestamp-like line>`` inside a
    cue for the start of the next cue. Joining such a number to the following
    line (with a space, or without when that line continues the same word)
    keeps every word and keeps the file parseable; it can make that line
    wider than the limit, which is rare (it needs a number right before a line
    break) and harmless.
    """
    lines = wrap_pieces(text, max_line_width, max_line_count, balance=True)
    i = 0
    while i < len(lines) - 1:
        if _INDEX_LINE_RE.fullmatch(lines[i][0]):
            lines[i : i + 2] = [(join_lines(lines[i : i + 2]), lines[i][1])]
        else:
            i += 1
    return [line for line, _ in lines]


def format_srt(cues: Sequence[Cue], *, max_line_width: int = _BOX.max_line_width,
               max_line_count: int = _BOX.max_line_count) -> str:
    """Render cues as SRT: indexes from 1, ``HH:MM:SS,mmm`` times, a blank line between cues.

    Cues are written in the order given (pass them through ``normalize_cues``
    first); a cue whose cleaned text is empty is skipped, because an empty cue
    body would merge with the next block.
    """
    blocks = []
    for cue in cues:
        lines = _srt_lines(clean_text(cue.text), max_line_width, max_line_count)
        if not lines:
            continue
        timing = f"{_timestamp(cue.start, ',')} --> {_timestamp(cue.end, ',')}"
        blocks.append(f"{len(blocks) + 1}\n{timing}\n" + "\n".join(lines) + "\n")
    return "\n".join(blocks)


def _vtt_escape(line: str) -> str:
    """Escape the characters WebVTT cue text reserves for tags and entities.

    Without this a caption such as "a <b> sign" would be rendered as markup.
    """
    return line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def format_vtt(cues: Sequence[Cue], *, max_line_width: int = _BOX.max_line_width,
               max_line_count: int = _BOX.max_line_count) -> str:
    """Render cues as WebVTT: ``WEBVTT`` header, ``HH:MM:SS.mmm`` times.

    Wrapping counts the characters the viewer sees, so it happens before
    ``&``, ``<`` and ``>`` are escaped as entities. Empty cues are skipped.
    """
    blocks = ["WEBVTT\n"]
    for cue in cues:
        lines = wrap_text(clean_text(cue.text), max_line_width, max_line_count, balance=True)
        if not lines:
            continue
        timing = f"{_timestamp(cue.start, '.')} --> {_timestamp(cue.end, '.')}"
        blocks.append(f"{timing}\n" + "\n".join(_vtt_escape(line) for line in lines) + "\n")
    return "\n".join(blocks)


def format_txt(cues: Sequence[Cue]) -> str:
    """One cleaned cue text per line (unwrapped, no times), for reading or grepping."""
    texts = [clean_text(cue.text) for cue in cues]
    return "".join(f"{text}\n" for text in texts if text)


def format_json(cues: Sequence[Cue], metadata: Mapping[str, Any],
                concepts: Sequence[Sequence[tuple[str, float]]] | None = None,
                vectors: Sequence[str] | None = None) -> str:
    """Render ``{"metadata": {...}, "cues": [...]}`` for programs that consume captions.

    Times are rounded to milliseconds (like the other formats) and confidence
    to four decimals. Metadata values JSON cannot hold (``Path``, ``datetime``)
    are written with ``str()`` so a caller can pass what it has; NaN or
    infinity raise ``ValueError`` instead of producing invalid JSON.
    ``concepts``, one list per cue (same order as ``cues``), adds each cue's
    concept words as ``"concepts": [[word, probability], ...]`` (what
    ``captioner search`` matches besides the caption). ``vectors``, one per cue,
    adds a non-empty one as ``"vector"``: where the cue's picture sits in the
    sentence-embedding space search ranks by (``vse.py``).
    """
    rows = []
    for i, cue in enumerate(cues):
        text = clean_text(cue.text)
        if not text:
            continue
        row: dict[str, Any] = {
            "start": to_ms(cue.start) / 1000.0,
            "end": to_ms(cue.end) / 1000.0,
            "text": text,
            "confidence": round(float(cue.confidence), 4),
        }
        if concepts is not None:
            row["concepts"] = [[str(w), round(float(p), 4)] for w, p in concepts[i]]
        if vectors is not None and vectors[i]:
            row["vector"] = vectors[i]
        rows.append(row)
    return _json_text({"metadata": dict(metadata), "cues": rows})


def _json_text(payload: Mapping[str, Any]) -> str:
    """A JSON output's text, as ``format_json`` writes it (and ``repoint_json`` writes it again)."""
    return json_surrogates(json.dumps(payload, indent=2, ensure_ascii=False, allow_nan=False, default=str)) + "\n"


def repoint_json(path: Path, video: Path) -> bool:
    """Make the JSON output ``path`` name ``video`` (absolute) as its video; whether the file was rewritten.

    After an archive is moved or renamed, ``batch`` finds its videos' records by their path inside the input
    folder and skips them as up to date (``batch.plan.moved_records``); their JSON still named the old place, and
    ``captioner search`` answered with a file that is not there. Only ``metadata.video.path`` changes: the cues,
    corrections made by hand included, stay as they are. A file that is not captioner's JSON is left alone.
    (The review page beside it is repointed by ``review.repoint_page``.) A path that
    names the same file another way (a folder reached through a link) is kept; a JSON that is a link is written
    where it points. Raises ``OSError`` or ``OutputError`` when the file cannot be read or written.
    """
    try:
        if not os.path.isfile(path):
            return False
        data = parse_json(Path(path).read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, ValueError):
        return False
    meta = data.get("metadata") if isinstance(data, dict) else None
    known = meta.get("video") if isinstance(meta, dict) else None
    if not isinstance(known, dict) or not isinstance(data.get("cues"), list) or not isinstance(known.get("path"), str):
        return False
    try:
        if known["path"] == str(video) or os.path.samefile(known["path"], video):
            return False
    except (OSError, ValueError):  # the old path is gone (moved), or not a path at all ("\0")
        pass
    known["path"] = str(video)
    try:
        text = _json_text(data)
    except ValueError:  # NaN or Infinity written by another tool: not ours to rewrite
        return False
    write_atomic(Path(os.path.realpath(path)), text)
    return True


# --------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class Document:
    """What a writer may need besides the cues: the same for every format of one video.

    ``metadata``: the video's and model's record (``VideoResult.metadata()``);
    ``output``: the line box; ``snapshots``: per segment a thumbnail and concept words
    (``VideoResult.snapshots``, for JSON's concept words and the review page);
    ``review``: the review page's settings; ``path``: where the file goes (the review
    page links to the video relative to it).
    """

    metadata: Mapping[str, Any]
    output: OutputConfig = field(default_factory=OutputConfig)
    snapshots: Sequence[Any] = ()
    review: ReviewConfig = field(default_factory=ReviewConfig)
    path: Path = Path("video")


#: A writer renders normalised cues as the text of one file.
Writer = Callable[[Sequence[Cue], Document], str]


def _srt(cues: Sequence[Cue], doc: Document) -> str:
    return format_srt(cues, max_line_width=doc.output.max_line_width, max_line_count=doc.output.max_line_count)


def _vtt(cues: Sequence[Cue], doc: Document) -> str:
    return format_vtt(cues, max_line_width=doc.output.max_line_width, max_line_count=doc.output.max_line_count)


def _json(cues: Sequence[Cue], doc: Document) -> str:
    """JSON, with each cue's concept words when the run kept snapshots."""
    found = snapshots_for(cues, doc.snapshots) if doc.snapshots else None
    if found is None:
        return format_json(cues, doc.metadata)
    return format_json(cues, doc.metadata, [s.concepts if s else () for s in found],
                       [s.vector if s else "" for s in found])


def _txt(cues: Sequence[Cue], doc: Document) -> str:
    return format_txt(cues)


#: Every format the tool can write and its writer, in the order ``"all"`` expands to.
WRITERS: Mapping[str, Writer] = {
    "srt": _srt,
    "vtt": _vtt,
    "json": _json,
    "txt": _txt,
    "html": write_page,  # the review page: thumbnails and concept words from ``doc.snapshots``
}

#: Every subtitle format the tool can write, in the order ``"all"`` expands to.
FORMATS: tuple[str, ...] = tuple(WRITERS)


def write_subtitles(
    cues: Sequence[Cue],
    base: Path,
    formats: Sequence[str],
    output: OutputConfig,
    metadata: Mapping[str, Any],
    duration: float | None = None,
    *,
    snapshots: Sequence[Any] = (),
    review: ReviewConfig | None = None,
    keep_foreign: bool = False,
) -> list[Path]:
    """Write ``base.<fmt>`` for each requested format and return the paths written.

    ``base`` is the output path without extension (``out/talk`` gives
    ``out/talk.srt``, ...); its folder must exist. Cues go through
    ``normalize_cues`` once, so all formats show identical cues. Formats are
    validated up front (``ValueError`` for an unknown one, before anything is
    written) and a format named twice is written once. The files are written
    together (``write_all_atomic``): if one cannot be written (``OutputError``), none is replaced.
    Neighbouring identical captions are not merged here: call ``merge_cues``
    first if that is wanted. ``html`` (the review page, review.py) shows the
    thumbnails and concept words of ``snapshots`` (``VideoResult.snapshots``) and
    marks cues under ``review.low_confidence`` (a ``ReviewConfig``). ``keep_foreign``: an output that captioner
    did not write (``foreign_outputs``) is an ``OutputError`` and nothing is written: the CLI checks before
    captioning, and checks again here, as a film's dialogue subtitles put there meanwhile (an hour into a batch)
    were replaced.
    """
    if isinstance(formats, str):  # "srt,json" as --format reads it (as configure and plan_batch take it), not s, r, t
        formats = (formats,)
    wanted = parse_formats(",".join(formats)) if formats else ()
    ready = normalize_cues(cues, duration)
    base = Path(base)
    texts: list[tuple[Path, str]] = []
    for fmt in wanted:
        path = output_file(base, fmt)
        doc = Document(metadata, output, snapshots, review or ReviewConfig(), path)
        texts.append((path, WRITERS[fmt](ready, doc)))
    if keep_foreign:
        foreign = foreign_outputs(base, wanted)
        if foreign:
            raise OutputError(foreign_reason(foreign[0]))
    write_all_atomic(texts)
    for path, _ in texts:
        logger.debug("wrote %s (%d cues)", path, len(ready))
    return [path for path, _ in texts]


# --------------------------------------------------------------------------- files captioner did not write

#: A caption line of captioner's own SRT, VTT and TXT files: the shipped vocabulary's characters (lower-case
#: ASCII letters, digits, apostrophes) and spaces. Dialogue subtitles have capitals, punctuation or other scripts.
_OWN_LINE_RE = re.compile(r"[a-z0-9' ]+")
_TIMING_RE = re.compile(r"\d+:\d\d:\d\d[,.]\d+ --> \d+:\d\d:\d\d[,.]\d+")
_OWN_MAX_BYTES = 32 << 20  # larger than any subtitle file captioner writes


def captioner_wrote(path: Path) -> bool:
    """Whether the existing output ``path`` reads as captioner wrote it, so that replacing it loses nothing.

    ``run`` writes ``<name>.srt`` beside the video by default: the very name under which
    players find a film's dialogue subtitles, which must not be lost to a caption run.
    Told by content, so it holds for files from any earlier run or machine: JSON with
    captioner's ``metadata``, a review page with its generator tag; SRT, VTT and TXT whose
    every caption line is made of the characters captions are made of (``_OWN_LINE_RE``).
    An empty file has nothing to lose. A file edited since (capitalised, punctuated) is not ours, nor
    one the review page downloaded (it begins with a byte-order mark, which captioner never writes:
    corrected captions saved beside the video were replaced by the next run), nor anything but a
    regular file (reading a FIFO there hung the run; /dev/zero filled the memory).
    """
    fmt = path.suffix.lower().lstrip(".")
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode) or st.st_size > _OWN_MAX_BYTES:
            return False
        if fmt == "html":
            return is_review_page(path)  # it reads the page's head only
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    if fmt == "json":
        try:
            data = parse_json(text)
        except ValueError:
            return False
        meta = data.get("metadata") if isinstance(data, dict) else None
        return isinstance(meta, dict) and "model" in meta and isinstance(data.get("cues"), list)
    if text.startswith("\ufeff"):
        return False
    lines = [line.strip() for line in text.splitlines()]
    if fmt == "vtt" and lines and lines[0] == "WEBVTT":
        lines = lines[1:]
    timed = fmt in ("srt", "vtt")
    return all(not line or _OWN_LINE_RE.fullmatch(line) or (timed and _TIMING_RE.fullmatch(line)) for line in lines)


def foreign_outputs(base: Path, formats: Sequence[str]) -> list[Path]:
    """The outputs ``base.<fmt>`` that exist and that captioner did not write (``captioner_wrote``); a folder
    in an output's place is not one of them (``outputs.output_problem`` says what it is)."""
    return [p for p in (output_file(Path(base), fmt) for fmt in dict.fromkeys(formats))
            if os.path.lexists(p) and not (p.is_dir() and not p.is_symlink()) and not captioner_wrote(p)]


def foreign_reason(path: Path) -> str:
    """The one-line reason a video is not captioned over ``path`` (the CLI's ``--overwrite`` overrides it)."""
    return f"{path}: exists and captioner did not write it (dialogue subtitles? edited by hand?); " \
           "--overwrite replaces it, -o DIR writes elsewhere"
