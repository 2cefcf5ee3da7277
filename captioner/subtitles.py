"""Turn timed captions into subtitle files (SRT, WebVTT, JSON, plain text).

Everything a writer emits goes through the same two gates: ``clean_text`` for
the words and ``normalize_cues`` for the times. That way a caption the model
produced (or a user edited) can never yield a file a player mis-parses: no
"-->" inside a cue, no blank line inside a cue, no overlapping or backwards
cues, no times past the end of the video.

Conventions follow whisper's writers: SRT and VTT are wrapped to
``OutputConfig.max_line_width`` characters and ``max_line_count`` lines, JSON
and TXT carry the unwrapped text. Files are written atomically so an
interrupted run never leaves a half-written subtitle file behind that a later
``--skip-existing`` style check would mistake for a finished one.

This module deliberately imports neither torch nor cv2: it is used by the CLI
and by tests that must stay light.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import tempfile
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from captioner.config import OutputConfig
from captioner.errors import OutputError

__all__ = [
    "FORMATS",
    "Cue",
    "clean_text",
    "format_json",
    "format_srt",
    "format_txt",
    "format_vtt",
    "layout_cues",
    "merge_cues",
    "normalize_cues",
    "parse_formats",
    "wrap_text",
    "write_atomic",
    "write_subtitles",
]

logger = logging.getLogger(__name__)

#: Every subtitle format the tool can write, in the order ``"all"`` expands to.
FORMATS: tuple[str, ...] = ("srt", "vtt", "json", "txt", "html")

# Two cues whose gap is below half a millisecond are rendered with the same
# timestamp, so for merging they count as touching.
_TOUCH_TOLERANCE = 0.0005

# A run of two or more dashes followed by ">" is the SRT/VTT timing arrow. The
# whole run is replaced (not just "-->") so "--->" cannot turn back into "-->".
_ARROW_RE = re.compile(r"-{2,}>")

# An SRT line made only of a number reads as a cue index to lenient parsers
# (the ``srt`` library among them) when the next line starts like a timestamp,
# which splits the cue in two. Such a line is never left on its own (see
# ``_srt_lines``). Unicode digits are included because some parsers use ``\d``.
_INDEX_LINE_RE = re.compile(r"-?\d+(?:\.\d*)?")


@dataclass(frozen=True)
class Cue:
    """One caption shown from ``start`` to ``end`` (seconds from the video's start).

    ``confidence`` (0..1) is kept so the JSON output can tell a reviewer which
    captions to check first; SRT/VTT/TXT ignore it.
    """

    start: float
    end: float
    text: str
    confidence: float = 1.0

    @property
    def duration(self) -> float:
        """Length in seconds; negative for a malformed cue (``normalize_cues`` drops those)."""
        return self.end - self.start


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


# --------------------------------------------------------------------------- text


def clean_text(text: str) -> str:
    """Normalise caption text once, the same way for every writer.

    * whitespace of any kind (``\\r``, ``\\n``, ``\\t``, U+2028, NBSP, ...)
      becomes a single space and the ends are stripped, because a line break
      or blank line inside a cue is how SRT/VTT parsers find the end of a cue;
    * other control characters (NUL, BEL, ESC, DEL, ...) and lone surrogates
      are dropped: they are invisible at best and make the file unencodable or
      confuse players at worst;
    * any run of two or more dashes followed by ``>`` becomes ``->``, because
      ``-->`` is the timing arrow and a cue line containing it is read as the
      start of a new cue (WebVTT forbids it in cue text outright).

    The result is idempotent (``clean_text(clean_text(t)) == clean_text(t)``),
    so writers may apply it to text that is already clean.
    """
    kept = []
    for char in text:
        if char.isspace():
            kept.append(" ")
        elif unicodedata.category(char) in ("Cc", "Cs"):
            continue
        else:
            kept.append(char)
    collapsed = " ".join("".join(kept).split())
    return _ARROW_RE.sub("->", collapsed)


def _wrap_pieces(text: str, max_line_width: int, max_line_count: int) -> list[tuple[str, bool]]:
    """Greedy wrap that also says, per line, whether it continues a broken word.

    The flag is what lets later steps (the overflow line, the SRT index-line
    guard) glue lines back together without inserting a space into a word.
    """
    if max_line_width < 1:
        raise ValueError(f"max_line_width must be at least 1, got {max_line_width}")
    if max_line_count < 1:
        raise ValueError(f"max_line_count must be at least 1, got {max_line_count}")

    lines: list[tuple[str, bool]] = []
    current = ""
    current_continues = False
    for word in text.split():
        if current and len(current) + 1 + len(word) <= max_line_width:
            current += " " + word
            continue
        if current:
            lines.append((current, current_continues))
        # A word that does not fit on a line of its own starts a fresh line and
        # is cut into width-sized pieces; the last piece may share its line with
        # the following words.
        pieces = [word[i : i + max_line_width] for i in range(0, len(word), max_line_width)]
        for index, piece in enumerate(pieces[:-1]):
            lines.append((piece, index > 0))
        current = pieces[-1]
        current_continues = len(pieces) > 1
    if current:
        lines.append((current, current_continues))

    if len(lines) > max_line_count:
        head = lines[: max_line_count - 1]
        tail = lines[max_line_count - 1 :]
        head.append((_join_lines(tail), tail[0][1]))
        lines = head
    return lines


def _join_lines(lines: Sequence[tuple[str, bool]]) -> str:
    """Join wrapped lines into one, with a space only between different words."""
    joined = lines[0][0]
    for line, continues in lines[1:]:
        joined += line if continues else " " + line
    return joined


def wrap_text(text: str, max_line_width: int = 42, max_line_count: int = 2) -> list[str]:
    """Wrap ``text`` greedily into at most ``max_line_count`` lines of ``max_line_width`` characters.

    Width is counted in code points (as whisper does), not display cells.

    * Words are packed greedily, separated by single spaces.
    * A word longer than the width starts a new line and is cut into pieces of
      exactly the width (the last piece may be shorter and share its line).
    * When the text needs more than ``max_line_count`` lines, the lines past
      the limit are appended to the last allowed line. Subtitles must never
      lose words (a caption is short, the viewer can still read it), while a
      cue with more lines than configured would cover the picture and some
      players drop the extra lines silently; so the line count is the hard
      bound and only the last line may exceed the width.

    Returns ``[]`` for text without any non-whitespace character.
    """
    return [line for line, _ in _wrap_pieces(text, max_line_width, max_line_count)]


# --------------------------------------------------------------------------- cues


def _to_ms(seconds: float) -> int:
    """Round seconds to whole milliseconds, the resolution of every format written."""
    return int(round(seconds * 1000.0))


def merge_cues(cues: Sequence[Cue]) -> list[Cue]:
    """Merge neighbouring cues that show the same text without a gap.

    The segmenter cuts long shots into several cues, which often get the same
    caption; shown back to back they look like a flicker. Cues are sorted by
    start; a cue is folded into the previous one when their cleaned texts are
    equal and it starts no later than the previous one ends (plus half a
    millisecond, below the files' resolution). The merged cue spans both,
    carries the cleaned text and the duration-weighted mean confidence (a plain
    mean when all durations are zero). Different texts are never merged.
    """
    merged: list[Cue] = []
    # Per merged cue: (total duration, duration-weighted confidence sum,
    # number of cues, plain confidence sum), to recompute the mean exactly.
    weights: list[tuple[float, float, int, float]] = []
    for cue in sorted(cues, key=lambda c: c.start):
        text = clean_text(cue.text)
        length = max(cue.end - cue.start, 0.0)
        if merged:
            last = merged[-1]
            if text == last.text and cue.start <= last.end + _TOUCH_TOLERANCE:
                total, weighted, count, plain = weights[-1]
                total += length
                weighted += length * cue.confidence
                count += 1
                plain += cue.confidence
                confidence = weighted / total if total > 0 else plain / count
                merged[-1] = Cue(last.start, max(last.end, cue.end), text, confidence)
                weights[-1] = (total, weighted, count, plain)
                continue
        merged.append(Cue(cue.start, cue.end, text, cue.confidence))
        weights.append((length, length * cue.confidence, 1, cue.confidence))
    return merged


def normalize_cues(cues: Sequence[Cue], duration: float | None) -> list[Cue]:
    """Make cues safe to write: what every writer receives.

    Steps, in order:

    1. clean the text (``clean_text``) and drop cues left without text;
    2. clamp times into ``[0, duration]`` (only below by 0 when the duration is
       unknown) and drop cues with a non-finite time;
    3. round times to whole milliseconds, the resolution of SRT/VTT/JSON, so
       what is checked here is exactly what gets written, and drop cues whose
       length is then zero or negative;
    4. sort by start (stable, so equal starts keep their input order) and
       remove overlaps by ending each cue where the next one starts; a cue
       that this leaves without length is dropped. Cutting the earlier cue
       (rather than delaying the later one) keeps every caption appearing
       when its scene starts.

    Confidence is clamped to ``[0, 1]`` (NaN becomes 0) so the JSON stays valid.
    """
    if duration is not None and (math.isnan(duration) or duration < 0):
        raise ValueError(f"duration must be a non-negative number of seconds, got {duration}")

    prepared: list[Cue] = []
    for cue in cues:
        text = clean_text(cue.text)
        if not text:
            logger.debug("dropping cue without text at %.3f s", cue.start)
            continue
        start, end = max(cue.start, 0.0), max(cue.end, 0.0)
        if duration is not None:
            start, end = min(start, duration), min(end, duration)
        if not (math.isfinite(start) and math.isfinite(end)):
            logger.debug("dropping cue with non-finite time: %r", cue)
            continue
        start_ms, end_ms = _to_ms(start), _to_ms(end)
        if end_ms <= start_ms:
            logger.debug("dropping cue of no length at %.3f s: %r", start, text)
            continue
        confidence = cue.confidence
        confidence = 0.0 if math.isnan(confidence) else min(max(confidence, 0.0), 1.0)
        prepared.append(Cue(start_ms / 1000.0, end_ms / 1000.0, text, confidence))

    prepared.sort(key=lambda c: c.start)
    result: list[Cue] = []
    for cue in prepared:
        if result and result[-1].end > cue.start:
            previous = result.pop()
            if previous.start < cue.start:
                result.append(Cue(previous.start, cue.start, previous.text, previous.confidence))
            else:
                logger.debug("dropping cue hidden by one at the same start: %r", previous.text)
        result.append(cue)
    return result


# --------------------------------------------------------------------------- cue rules


def _pages(text: str, max_line_width: int, max_line_count: int, max_chars: int) -> list[str]:
    """``text`` cut into the pieces one cue can show: ``max_line_count`` lines of ``max_line_width``, ``max_chars`` in all.

    Lines are wrapped greedily at ``min(max_line_width, max_chars)`` and grouped in
    order; a piece is re-wrapped by the writers into at most ``max_line_count`` lines
    (a wider wrap never needs more lines).
    """
    lines = _wrap_pieces(text, min(max_line_width, max_chars), len(text) + 1)
    pages: list[str] = []
    current: list[tuple[str, bool]] = []
    for line in lines:
        if current and (len(current) >= max_line_count or len(_join_lines([*current, line])) > max_chars):
            pages.append(_join_lines(current))
            current = []
        current.append(line)
    if current:
        pages.append(_join_lines(current))
    return pages


def _spread(start: int, total: int, weights: Sequence[int], floors: Sequence[int]) -> list[int]:
    """Boundaries (ms) of consecutive parts of ``total`` ms from ``start``: each gets its floor, the rest by weight."""
    extra = total - sum(floors)
    if extra < 0:  # not enough time for the floors (a lone caption in a short video): by floor instead
        floors, extra = [0] * len(weights), total
        weights = [max(1, w) for w in weights]
    bounds, given, acc = [start], 0, 0
    for floor, weight in zip(floors, weights):
        acc += weight
        share = extra * acc // max(1, sum(weights)) - given
        given += share
        bounds.append(bounds[-1] + floor + share)
    return bounds


def layout_cues(
    cues: Sequence[Cue],
    duration: float | None,
    *,
    max_duration: float,
    min_duration: float,
    max_chars_per_second: float,
    max_line_width: int,
    max_line_count: int,
) -> list[Cue]:
    """Cues that keep every documented rule, from captions as the model gives them.

    1. Neighbouring cues with the same text merge (``merge_cues``) and the result is
       made safe (``normalize_cues``: clean text, inside the video, no overlaps).
    2. A caption too long for one cue (``max_line_count`` lines of ``max_line_width``
       characters, and no more characters than ``max_chars_per_second`` allows in
       ``max_duration``) is cut into pieces shown one after the other.
    3. Each caption gets the time its pieces need: every piece at least
       ``min_duration`` and ``len(text) / max_chars_per_second`` seconds. Time comes
       from the silence after it, then before it, then from what its neighbours can
       spare; a caption that cannot get enough time even so is dropped (its time is
       left to its neighbours), unless it is the only one.
    4. The pieces share their caption's time in proportion to their length, and a
       piece longer than ``max_duration`` is shown as several cues of equal length,
       each at least as long as the piece needs (a remainder too short for that is
       left empty).

    Every cue of the result is then at most ``max_duration`` long (``<= 0``: no
    limit), at least ``min_duration`` and readable at ``max_chars_per_second``
    (``<= 0``: no limit), except the only caption of a video too short for it; its
    text fits ``max_line_count`` lines of ``max_line_width``. Times are whole
    milliseconds.
    """
    if max_line_width < 1 or max_line_count < 1:
        raise ValueError("max_line_width and max_line_count must be at least 1")
    ready = normalize_cues(merge_cues(cues), duration)
    end_ms = _to_ms(duration) if duration is not None else None
    max_ms = math.floor(max_duration * 1000.0 + 1e-6) if max_duration > 0 else 0
    min_ms = max(0, math.ceil(min_duration * 1000.0 - 1e-6))
    if max_ms:
        min_ms = min(min_ms, max_ms)
    cps = max_chars_per_second if max_chars_per_second > 0 else 0.0
    max_chars = max_line_width * max_line_count
    if cps and max_ms:
        max_chars = max(1, min(max_chars, math.floor(cps * max_ms / 1000.0 + 1e-6)))

    def page_need(text: str) -> int:
        return max(min_ms, math.ceil(len(text) * 1000.0 / cps - 1e-6) if cps else 0)

    # [start ms, end ms, pieces, piece needs, confidence]
    caps = []
    for cue in ready:
        pages = _pages(cue.text, max_line_width, max_line_count, max_chars)
        caps.append([_to_ms(cue.start), _to_ms(cue.end), pages, [page_need(p) for p in pages], cue.confidence])

    i = 0
    while i < len(caps):
        cap = caps[i]
        short = sum(cap[3]) - (cap[1] - cap[0])
        if short > 0:
            later = caps[i + 1] if i + 1 < len(caps) else None
            earlier = caps[i - 1] if i > 0 else None
            limit = later[0] if later else (end_ms if end_ms is not None else cap[1] + short)
            grow = min(short, max(0, limit - cap[1]))
            cap[1] += grow
            short -= grow
            grow = min(short, max(0, cap[0] - (earlier[1] if earlier else 0)))
            cap[0] -= grow
            short -= grow
            if short > 0 and later:
                grow = min(short, max(0, later[1] - later[0] - sum(later[3])))
                later[0] += grow
                cap[1] += grow
                short -= grow
            if short > 0 and earlier:
                grow = min(short, max(0, earlier[1] - earlier[0] - sum(earlier[3])))
                earlier[1] -= grow
                cap[0] -= grow
                short -= grow
            if short > 0 and len(caps) > 1:
                logger.debug("dropping a caption with too little time to be read: %r", " ".join(cap[2]))
                del caps[i]
                continue
        i += 1

    result: list[Cue] = []
    for start, end, pages, needs, confidence in caps:
        bounds = _spread(start, end - start, [len(p) for p in pages], needs)
        for text, need, a, b in zip(pages, needs, bounds, bounds[1:]):
            length = b - a
            parts = 1
            if max_ms and length > max_ms:
                parts = math.ceil(length / max_ms)
                if need and parts * need > length:
                    parts = max(1, length // need)
                    length = min(length, parts * max_ms)
            for k in range(parts):
                s, e = a + length * k // parts, a + length * (k + 1) // parts
                if e > s:
                    result.append(Cue(s / 1000.0, e / 1000.0, text, confidence))
    return result


# --------------------------------------------------------------------------- writers


def _timestamp(seconds: float, separator: str) -> str:
    """``HH:MM:SS<sep>mmm``; hours grow past two digits rather than wrapping."""
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"cannot write a subtitle time of {seconds} s")
    ms = _to_ms(seconds)
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
    lines = _wrap_pieces(text, max_line_width, max_line_count)
    i = 0
    while i < len(lines) - 1:
        if _INDEX_LINE_RE.fullmatch(lines[i][0]):
            lines[i : i + 2] = [(_join_lines(lines[i : i + 2]), lines[i][1])]
        else:
            i += 1
    return [line for line, _ in lines]


def format_srt(cues: Sequence[Cue], *, max_line_width: int = 42, max_line_count: int = 2) -> str:
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


def format_vtt(cues: Sequence[Cue], *, max_line_width: int = 42, max_line_count: int = 2) -> str:
    """Render cues as WebVTT: ``WEBVTT`` header, ``HH:MM:SS.mmm`` times.

    Wrapping counts the characters the viewer sees, so it happens before
    ``&``, ``<`` and ``>`` are escaped as entities. Empty cues are skipped.
    """
    blocks = ["WEBVTT\n"]
    for cue in cues:
        lines = wrap_text(clean_text(cue.text), max_line_width, max_line_count)
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
                concepts: Sequence[Sequence[tuple[str, float]]] | None = None) -> str:
    """Render ``{"metadata": {...}, "cues": [...]}`` for programs that consume captions.

    Times are rounded to milliseconds (like the other formats) and confidence
    to four decimals. Metadata values JSON cannot hold (``Path``, ``datetime``)
    are written with ``str()`` so a caller can pass what it has; NaN or
    infinity raise ``ValueError`` instead of producing invalid JSON.
    ``concepts``, one list per cue (same order as ``cues``), adds each cue's
    concept words as ``"concepts": [[word, probability], ...]`` (what
    ``captioner search`` matches besides the caption).
    """
    rows = []
    for i, cue in enumerate(cues):
        text = clean_text(cue.text)
        if not text:
            continue
        row: dict[str, Any] = {
            "start": _to_ms(cue.start) / 1000.0,
            "end": _to_ms(cue.end) / 1000.0,
            "text": text,
            "confidence": round(float(cue.confidence), 4),
        }
        if concepts is not None:
            row["concepts"] = [[str(w), round(float(p), 4)] for w, p in concepts[i]]
        rows.append(row)
    payload = {"metadata": dict(metadata), "cues": rows}
    return json.dumps(payload, indent=2, ensure_ascii=False, allow_nan=False, default=str) + "\n"


# --------------------------------------------------------------------------- files


def _new_file_mode() -> int:
    """Permissions a plainly created file would get (0o666 minus the umask).

    ``mkstemp`` creates files readable by the owner only; subtitles are meant
    to be shared, so the final file gets the usual mode instead. The umask is
    read from /proc because ``os.umask`` can only be read by changing it, which
    races with other threads.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o644


def _one_line(exc: BaseException) -> str:
    """A short reason for an error, guaranteed not to span lines."""
    if isinstance(exc, OSError) and exc.strerror:
        reason = exc.strerror
    else:
        reason = str(exc) or type(exc).__name__
    return " ".join(reason.split())


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` so readers see the old file or the new one, never half.

    The text goes to a hidden temporary file (``.<name>.<random>.tmp``) in the
    same folder, so the final ``os.replace`` stays on one file system and is
    atomic; it is fsynced first so a crash cannot leave an empty file behind
    the new name. An existing file keeps its permissions, a new one gets the
    usual ``0o666 & ~umask``.

    The parent folder must already exist: creating folders is the caller's
    decision. Any failure removes the temporary file and raises ``OutputError``
    with a one-line message that starts with ``path``. An interrupt
    (``KeyboardInterrupt``) also removes the temporary file and propagates.
    """
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        raise OutputError(f"{path}: cannot write: folder {parent} does not exist")

    tmp_name: str | None = None
    try:
        data = text.encode("utf-8")
        try:
            mode = path.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = _new_file_mode()
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
        with os.fdopen(fd, "wb") as handle:
            if hasattr(os, "fchmod"):
                os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
        tmp_name = None
    except Exception as exc:
        raise OutputError(f"{path}: cannot write: {_one_line(exc)}") from exc
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                logger.warning("could not remove temporary file %s", tmp_name)
    _fsync_folder(parent)


def _fsync_folder(folder: Path) -> None:
    """Persist the rename itself; best effort, as not every platform allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _output_path(base: Path, fmt: str) -> Path:
    """``base`` plus ``.fmt``, appended rather than via ``with_suffix``.

    ``with_suffix`` would turn ``talk.v2`` into ``talk.srt`` and make two
    videos that differ only after a dot overwrite each other.
    """
    return base.with_name(f"{base.name}.{fmt}")


def write_subtitles(
    cues: Sequence[Cue],
    base: Path,
    formats: Sequence[str],
    output: OutputConfig,
    metadata: Mapping[str, Any],
    duration: float | None = None,
    *,
    snapshots: Sequence[Any] = (),
    review: Any = None,
) -> list[Path]:
    """Write ``base.<fmt>`` for each requested format and return the paths written.

    ``base`` is the output path without extension (``out/talk`` gives
    ``out/talk.srt``, ...); its folder must exist. Cues go through
    ``normalize_cues`` once, so all formats show identical cues. Formats are
    validated up front (``ValueError`` for an unknown one, before anything is
    written) and a format named twice is written once. Each file is written
    atomically; if one fails with ``OutputError``, files already written stay.
    Neighbouring identical captions are not merged here: call ``merge_cues``
    first if that is wanted. ``html`` (the review page, review.py) shows the
    thumbnails and concept words of ``snapshots`` (``VideoResult.snapshots``) and
    marks cues under ``review.low_confidence`` (a ``ReviewConfig``).
    """
    wanted = parse_formats(",".join(formats)) if formats else ()
    ready = normalize_cues(cues, duration)
    base = Path(base)
    written: list[Path] = []
    for fmt in wanted:
        if fmt == "srt":
            text = format_srt(
                ready, max_line_width=output.max_line_width, max_line_count=output.max_line_count
            )
        elif fmt == "vtt":
            text = format_vtt(
                ready, max_line_width=output.max_line_width, max_line_count=output.max_line_count
            )
        elif fmt == "json":
            from captioner.review import snapshots_for

            found = snapshots_for(ready, snapshots) if snapshots else None
            text = format_json(ready, metadata, None if found is None else [s.concepts if s else () for s in found])
        elif fmt == "html":  # the review page (review.py): thumbnails and concept words from ``snapshots``
            from captioner.config import ReviewConfig
            from captioner.review import format_html

            text = format_html(ready, metadata, snapshots, output=output, review=review or ReviewConfig(),
                               page=_output_path(base, fmt))
        else:
            text = format_txt(ready)
        path = _output_path(base, fmt)
        write_atomic(path, text)
        logger.debug("wrote %s (%d cues)", path, len(ready))
        written.append(path)
    return written
