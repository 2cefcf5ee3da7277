"""The HTML review page (``-f html``) and a batch's archive index.

A review page is one more subtitle writer (``writers.WRITERS["html"]`` is
``write_page``): one self-contained file beside the other outputs that plays the
source video (by relative path) with the captions as a ``<track>``, and lists the
cues with a thumbnail, times, confidence and the concept words the encoder saw.
Captions can be edited in place; the edits are kept in the browser's
``localStorage`` (keyed by the video's path and the model's checksum) and can be
downloaded as .srt or .vtt. Nothing is fetched from the network: styles, script,
thumbnails (JPEG, base64) and the WebVTT track (a ``data:`` URL) are inside the
file, and a Content-Security-Policy with the hashes of the page's own style and
script forbids anything else, so even a text that escaped escaping could not run.

The thumbnails and concept words come from the run itself (``Snapshot``, kept by
``Captioner.caption_video`` while it reads the video: no second decode).

``write_index`` writes a batch's ``index.html`` (batch/report.py says which
videos): every video with its first thumbnail, duration, cue count and status, a
filter over all captions, and links to the pages. It reads each page's embedded
data, so videos skipped as up to date are listed like the ones captioned in this run.

All text goes through ``html.escape`` (markup) or ``_json_for_html`` (the data
block); the page's script only ever sets ``textContent``.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import html
import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from captioner.config import OutputConfig, ReviewConfig
from captioner.errors import OutputError
from captioner.outputs import (INDEX_FALLBACK_NAME, INDEX_NAME, json_number, json_surrogates, parse_json,
                               write_atomic)

if TYPE_CHECKING:
    from captioner.writers import Document

__all__ = ["INDEX_NAME", "IndexEntry", "Snapshot", "format_html", "format_index", "page_data", "snapshots_for",
           "write_index", "write_page"]

logger = logging.getLogger(__name__)

_DATA = Path(__file__).parent / "data"

#: Marks every page this module writes (the index only overwrites such files).
GENERATOR = "captioner"
#: Marks a results page of ``captioner search --html`` (``find.py`` writes them), so that it is taken for no review page
#: and ``--html`` replaces its own pages and nothing else.
RESULTS_GENERATOR = f"{GENERATOR} search"

#: The status line's instruction (review.js keeps the text it finds there and writes it back).
HINT = ("Click a caption, or press Enter on it, to go there; Space on it plays from there and pauses again; click or "
        "Tab to its text to edit it (Enter finishes the edit, Esc takes it back).")

_DATA_RE = re.compile(r'<script type="application/json" id="captioner-data">(.*?)</script>', re.S)
_THUMB_RE = re.compile(r'<img class="thumb" src="data:image/jpeg;base64,([A-Za-z0-9+/=]*)"')


@dataclass(frozen=True)
class Snapshot:
    """What the model saw of one segment of a video: a thumbnail and its concept words.

    ``start``/``end``: the segment (seconds); ``time``: the frame the thumbnail
    shows (inside the segment); ``jpeg``: that frame as a small JPEG (``b""`` when
    thumbnails are off); ``concepts``: the words a concept decoder attended over for
    the segment's caption (its concept slots: detected or ImageNet concept words) with
    their probabilities, most probable first; for a plain decoder, the encoder's top
    ImageNet caption words over the caption's frames.
    """

    start: float
    end: float
    time: float
    jpeg: bytes
    concepts: tuple[tuple[str, float], ...] = ()
    vector: str = ""  # the segment's visual vector for search (vse.encode_vector), "" without one


# --------------------------------------------------------------------------- data from a run


def thumbnail_size(width: int, height: int, review: ReviewConfig) -> tuple[int, int]:
    """(w, h) of a thumbnail of a ``width`` x ``height`` video: the box of ``review``, aspect kept."""
    if width <= 0 or height <= 0:
        width, height = 16, 9
    scale = min(review.thumbnail_width / width, review.thumbnail_height / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def shrink(image: Any, size: tuple[int, int]) -> Any:
    """An RGB frame (any size, e.g. already squashed to the encoder's) resized to ``size`` (w, h)."""
    import cv2

    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def encode_jpeg(image: Any, quality: int) -> bytes:
    """An RGB uint8 image as JPEG bytes."""
    import cv2

    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return buf.tobytes() if ok else b""


def snapshots_for(cues: Sequence[Any], snapshots: Sequence[Snapshot]) -> list[Snapshot | None]:
    """For each cue, the snapshot of the segment it came from (``None`` if none overlaps it).

    Cues are segments merged and trimmed, so a cue is matched to the segment that
    overlaps it most among those whose thumbnail frame lies inside the cue (then
    among all); ties go to the earlier one. Works for any cues with ``start`` and
    ``end`` (the ones a writer receives, or edited ones). Segments do not overlap,
    so both their starts and their ends are sorted.
    """
    ordered = sorted(snapshots, key=lambda s: s.start)
    starts = [s.start for s in ordered]
    ends = [s.end for s in ordered]
    out: list[Snapshot | None] = []
    for cue in cues:
        best, best_key = None, None
        for s in ordered[bisect.bisect_right(ends, cue.start):bisect.bisect_left(starts, cue.end)]:
            key = (cue.start <= s.time < cue.end, min(cue.end, s.end) - max(cue.start, s.start))
            if best_key is None or key > best_key:
                best, best_key = s, key
        out.append(best)
    return out


# --------------------------------------------------------------------------- page assets


@lru_cache(maxsize=None)
def _asset(name: str) -> str:
    return (_DATA / name).read_text(encoding="utf-8")


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def _csp(style: str, script: str) -> str:
    """No network, no plugins, no frames; only this page's own style and script run."""
    return ("default-src 'none'; img-src data:; media-src 'self' file: data: blob:; "
            f"style-src {_csp_hash(style)}; script-src {_csp_hash(script)}; "
            "base-uri 'none'; form-action 'none'")


def _json_for_html(value: Any) -> str:
    """JSON that is safe inside ``<script type="application/json">`` (no ``</script>``, no ``<!--``)."""
    text = json_surrogates(json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=str))
    return (text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _clock(seconds: float, decimals: int = 1) -> str:
    """``M:SS.s`` (``H:MM:SS.s`` from an hour on)."""
    if not math.isfinite(seconds) or seconds < 0:
        seconds = 0.0
    tenths = round(seconds * 10 ** decimals)
    whole, frac = divmod(tenths, 10 ** decimals)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    tail = f".{frac:0{decimals}d}" if decimals else ""
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}{tail}"
    return f"{minutes}:{secs:02d}{tail}"


def _href(target: Path, folder: Path) -> str:
    """A URL for ``target`` relative to ``folder`` (percent-encoded), or a file: URL when none exists."""
    try:
        rel = os.path.relpath(os.path.abspath(target), os.path.abspath(folder))
    except ValueError:  # another drive (Windows)
        return Path(os.path.abspath(target)).as_uri()
    return quote(os.fsencode(rel.replace(os.sep, "/")))  # the name's own bytes, even when they are not UTF-8


def _page(title: str, body: str, data: Any, style: str, script: str, lang: str = "en") -> str:
    from captioner import __version__

    return (
        "<!DOCTYPE html>\n"
        f'<html lang="{lang}">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_csp(style, script)}">\n'  # no " or < in it
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta name="generator" content="{GENERATOR} {_e(__version__)}">\n'
        '<meta name="referrer" content="no-referrer">\n'
        f"<title>{_e(title)}</title>\n<style>{style}</style>\n</head>\n<body>\n{body}\n"
        f'<script type="application/json" id="captioner-data">{_json_for_html(data)}</script>\n'
        f"<script>{script}</script>\n</body>\n</html>\n"
    )


# --------------------------------------------------------------------------- the review page


def page_data(cues: Sequence[Any], metadata: Mapping[str, Any], snapshots: Sequence[Snapshot],
              output: OutputConfig, review: ReviewConfig, page: Path) -> dict[str, Any]:
    """What a review page embeds (and what ``write_index`` reads back from it)."""
    video = dict(metadata.get("video") or {})
    model = dict(metadata.get("model") or {})
    shift = _clock_start(video)
    named = str(video.get("path") or "")  # Path("") is "." (the page linked its own folder as the video)
    video_path = Path(named)
    shots = snapshots_for(cues, snapshots)
    return {
        "version": 1,
        "video": {
            "name": video_path.name if named else "",
            "path": os.path.abspath(video_path) if named else "",
            "src": _href(video_path, page.parent) if named else "",
            "stem": page.name[: -len(".html")] if page.name.endswith(".html") else page.stem,
            "duration": video.get("duration"),
            # a browser plays on the file's own timestamps: cue times plus this (review.js, and the track below)
            **({"clock_start": shift} if shift else {}),
            "width": video.get("width"),
            "height": video.get("height"),
            # the stretch captioned (run --start/--end): its page keeps its edits apart from the whole video's
            **({"captioned": list(video["captioned"])} if video.get("captioned") else {}),
        },
        "model": {"name": model.get("name"), "sha256": model.get("sha256")},
        "low_confidence": review.low_confidence,
        # (cps: the reading speed the cues were laid out for; an edit longer than its cue can be read is marked)
        "line": {"width": output.max_line_width, "count": output.max_line_count, "cps": output.max_chars_per_second},
        "cues": [
            {"start": round(c.start, 3), "end": round(c.end, 3), "text": c.text,
             "confidence": round(float(c.confidence), 4),
             "concepts": [[w, round(float(p), 3)] for w, p in (s.concepts if s else ())]}
            for c, s in zip(cues, shots)
        ],
    }


def _clock_start(video: Mapping[str, Any]) -> float:
    """A video's ``clock_start`` as its metadata gives it (seconds, > 0), else 0.0 (absent, or not a number)."""
    value = video.get("clock_start")
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    return float(value) if ok else 0.0


def _video_tag(v: Mapping[str, Any]) -> str:
    """The page's ``<video>`` tag for its data's ``video`` (``format_html``; ``_rewrite_page`` writes it again)."""
    return f'<video id="video" controls preload="metadata" src="{_e(v["src"])}" aria-label="video {_e(v["name"] or "")}">'


def _page_title(v: Mapping[str, Any]) -> str:
    return f"{v['name'] or 'video'} · captions"


def _heading(v: Mapping[str, Any]) -> str:
    # a right-to-left name reads in its own order (the index's links do; the heading showed "שלום עולם.mp4")
    return f'<bdi>{_e(v["name"])}</bdi>' if v["name"] else "video"


def format_html(cues: Sequence[Any], metadata: Mapping[str, Any], snapshots: Sequence[Snapshot] = (), *,
                output: OutputConfig = OutputConfig(), review: ReviewConfig = ReviewConfig(),
                page: Path = Path("video.html")) -> str:
    """The review page of one video (cues as ``normalize_cues`` gives them; ``page``: where it will be written)."""
    from captioner.cues import Cue
    from captioner.writers import format_vtt  # writers.py imports this module for its registry

    data = page_data(cues, metadata, snapshots, output, review, Path(page))
    shots = snapshots_for(cues, snapshots)
    v, m = data["video"], data["model"]
    low = [c for c in data["cues"] if c["confidence"] < review.low_confidence]
    shift = _clock_start(v)
    on_clock = [Cue(c.start + shift, c.end + shift, c.text) for c in cues] if shift else cues
    vtt = format_vtt(on_clock, max_line_width=output.max_line_width, max_line_count=output.max_line_count)
    track = "data:text/vtt;base64," + base64.b64encode(vtt.encode("utf-8")).decode("ascii")
    facts = [f"{_clock(v['duration'] or 0.0, 1)}", f"{len(cues)} cue{'s' * (len(cues) != 1)}"]
    if v.get("captioned"):  # one stretch (run --start/--end): the page says which, beside the video's length
        facts.insert(1, f"captioned {_clock(v['captioned'][0], 1)} – {_clock(v['captioned'][1], 1)}")
    if v.get("width") and v.get("height"):
        facts.append(f"{v['width']}×{v['height']}")
    if low:
        facts.append(f"{len(low)} to check")
    model_text = f"model {m['name'] or 'unknown'}" + (f" · {str(m['sha256'])[:12]}" if m.get("sha256") else "")

    rows = []
    for i, (cue, shot, c) in enumerate(zip(cues, shots, data["cues"])):
        flagged = c["confidence"] < review.low_confidence
        thumb = (f'<img class="thumb" src="data:image/jpeg;base64,{base64.b64encode(shot.jpeg).decode("ascii")}" '
                 f'alt="frame at {_clock(shot.time)}">' if shot is not None and shot.jpeg
                 else '<div class="thumb none" aria-hidden="true"></div>')
        # the probability on hover (title) and, for screen readers, as text after the word (a title on the item
        # became its name: "probability 0.42", without the word)
        concepts = "".join(f'<li><span title="probability {p:.2f}">{_e(w)}</span>'
                           f'<span class="vh">, probability {p:.2f}</span></li>' for w, p in c["concepts"])
        rows.append(
            f'<li class="cue{" low" if flagged else ""}" id="cue-{i + 1}" data-index="{i}" tabindex="0" '
            # named by its time and caption (the text as edited: the name follows it), told what keys do
            # (and "check" where the caption is to be checked: the page's "look at these first"), its confidence said
            # after it: the name replaced the row's contents, and a screen reader tabbing through never heard either
            f'aria-labelledby="cue-{i + 1}-time cue-{i + 1}-text{f" cue-{i + 1}-flag" if flagged else ""}" '
            f'aria-describedby="cue-{i + 1}-conf cue-{i + 1}-slow cue-help">'
            f"{thumb}<div class=\"body\"><div class=\"meta\">"
            f'<span class="num">{i + 1}</span>'
            f'<span class="time" id="cue-{i + 1}-time">{_clock(cue.start)} – {_clock(cue.end)}</span>'
            f'<span class="conf" id="cue-{i + 1}-conf" title="confidence: how likely the caption says something the picture shows">'
            f"<span class=\"vh\">confidence </span>{_two_places(c['confidence'])}</span>"
            + (f'<span class="flag" id="cue-{i + 1}-flag" title="confidence below '
               f'{review.low_confidence:.2f}: check this caption">check</span>' if flagged else "")
            + '<span class="edited-badge">edited</span>'
            f'<span class="slow-badge" id="cue-{i + 1}-slow"></span></div>'
            f'<p class="text" id="cue-{i + 1}-text" dir="auto">{_e(cue.text)}</p>'
            + (f'<ul class="concepts" aria-label="concept words the encoder saw">{concepts}</ul>' if concepts else "")
            + "</div></li>"
        )
    empty = "" if rows else ('<p class="empty">No captions: nothing was recognised in this video, '
                              'or every caption was under --min-confidence.</p>')
    # a long video's cues to check are few among many: a reviewer goes through them first
    filter_box = (f'<label class="filter"><input type="checkbox" id="only-check"> show only the {len(low)} '
                  f'cue{"s" * (len(low) != 1)} to check</label>\n' if low else "")
    body = f"""<header class="bar">
<div class="title"><h1>{_heading(v)}</h1>
<p class="facts">{' · '.join(_e(f) for f in facts)} · <span class="model">{_e(model_text)}</span></p></div>
<div class="actions">
<button type="button" id="dl-srt">Download .srt</button>
<button type="button" id="dl-vtt">Download .vtt</button>
<button type="button" id="discard" class="quiet" disabled>Discard edits</button>
</div>
</header>
<main class="review">
<section class="player">
{_video_tag(v)}
<track kind="captions" srclang="en" label="Captions" default src="{_e(track)}">
</video>
<p id="video-error" class="notice" role="alert" hidden></p>
<p id="hint" class="hint"{'' if rows else ' hidden'}>{_e(HINT if rows else '')}</p>
<p id="status" class="hint" aria-live="polite" tabindex="-1" hidden></p>
<dl class="legend">
<dt><span class="flag">check</span></dt><dd>confidence below {review.low_confidence:.2f} (how likely the caption says something the picture shows, from how close its words sit to the picture): look at these first</dd>
<dt><span class="chip">word</span></dt><dd>concept words the model was given for this caption: objects recognised in the cue's frames (probability on hover)</dd>
<dt>edits</dt><dd>are kept in this browser for this video and model until discarded; the downloads contain them</dd>
</dl>
</section>
<section class="list">
<h2 id="cues-heading" class="vh">Captions</h2>
<p id="cue-help" class="vh">Enter: go to this cue; Space: play from it, or pause; Tab to its text to edit it.</p>
{filter_box}{empty}<ol id="cues" class="cues" aria-labelledby="cues-heading">
{chr(10).join(rows)}
</ol>
</section>
</main>"""
    return _page(_page_title(v), body, data, _asset("review.css"),
                 _asset("bar.js") + _asset("review.js"))


def write_page(cues: Sequence[Any], doc: "Document") -> str:
    """The ``html`` writer of ``writers.WRITERS``: ``format_html`` with the document's data."""
    return format_html(cues, doc.metadata, doc.snapshots, output=doc.output, review=doc.review, page=doc.path)


# --------------------------------------------------------------------------- the archive index


@dataclass(frozen=True)
class IndexEntry:
    """One video of a batch, as the index shows it."""

    shown: str  # the video's path as shown (relative to its input folder)
    status: str  # ok, skipped, failed, pending
    reason: str = ""
    page: Path | None = None  # its review page, when one exists


def _page_data_sound(data: dict[str, Any]) -> bool:
    """Whether a page's data has the types the index reads (a "low_confidence" of "0.5" in a page edited
    by hand ended the batch's index step in a TypeError)."""
    video = data.get("video", {})
    return (json_number(data.get("low_confidence", 0.0)) and isinstance(video, dict)
            and (video.get("duration") is None or json_number(video["duration"]))
            and all(isinstance(c, dict) and isinstance(c.get("text"), str) and json_number(c.get("start", 0))
                    and (c.get("confidence") is None or json_number(c["confidence"])) for c in data["cues"]))


def read_page_data(page: Path) -> dict[str, Any] | None:
    """The data a review page embeds, or ``None`` if ``page`` is missing or not one of ours.

    ``thumbnail`` is added: the base64 JPEG of the page's first thumbnail ("" if none),
    read from the cue list rather than stored twice in the page.
    """
    try:
        text = page.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    match = _DATA_RE.search(text)
    if not match:
        return None
    try:
        data = parse_json(match.group(1))
    except ValueError:
        return None
    if not (isinstance(data, dict) and data.get("version") == 1 and isinstance(data.get("cues"), list)):
        return None  # an archive index carries "videos", not "cues": it is no video's page
    if not _page_data_sound(data):
        return None  # edited or damaged: the index lists the video without its page's figures
    thumb = _THUMB_RE.search(text)
    data["thumbnail"] = thumb.group(1) if thumb else ""
    return data


_STATUS_TEXT = {"ok": "captioned", "skipped": "up to date", "failed": "failed", "pending": "not run"}


def format_index(entries: Sequence[IndexEntry], index: Path, title: str = "Captioned videos") -> str:
    """The archive index for ``entries``, to be written at ``index``."""
    folder = Path(index).parent
    rows, videos = [], []
    total_cues = total_check = 0
    counts: dict[str, int] = {}
    for entry in sorted(entries, key=lambda e: e.shown):
        counts[entry.status] = counts.get(entry.status, 0) + 1
        data = read_page_data(entry.page) if entry.page is not None else None
        href = _href(entry.page, folder) if data is not None else ""
        cues = data["cues"] if data else []
        total_cues += len(cues)
        low = data.get("low_confidence", 0.0) if data else 0.0
        to_check = sum(1 for c in cues if isinstance(c.get("confidence"), (int, float)) and c["confidence"] < low)
        total_check += to_check
        duration = (data or {}).get("video", {}).get("duration")
        thumb = (f'<img class="thumb" src="data:image/jpeg;base64,{_e(data["thumbnail"])}" alt="">'
                 if data and data.get("thumbnail") else '<div class="thumb none" aria-hidden="true"></div>')
        name = (f'<a href="{_e(href)}" dir="auto">{_e(entry.shown)}</a>' if href
                else f'<span dir="auto">{_e(entry.shown)}</span>')
        status = entry.status if entry.status in _STATUS_TEXT else "failed"
        reason = f'<p class="reason">{_e(entry.reason)}</p>' if entry.reason and status in ("failed", "pending") else ""
        first = f'<p class="first" dir="auto">{_e(cues[0]["text"])}</p>' if cues else ""
        rows.append(
            f'<tr class="video {status}" data-index="{len(videos)}">'
            f"<td class=\"t\">{thumb}</td>"
            f'<td class="name">{name}{first}{reason}<ul class="hits" hidden></ul></td>'
            f'<td class="num">{_e(_clock(duration, 0)) if isinstance(duration, (int, float)) else "–"}</td>'
            f'<td class="num">{len(cues) if data else "–"}</td>'
            f'<td class="num">{to_check if data else "–"}</td>'
            f'<td><span class="status {status}">{_STATUS_TEXT[status]}</span></td></tr>'
        )
        videos.append({"name": entry.shown, "href": href,
                       "captions": [[c.get("start", 0), c.get("text", "")] for c in cues]})
    summary = [f"{len(entries)} video{'s' * (len(entries) != 1)}", f"{total_cues} cue{'s' * (total_cues != 1)}",
               f"{total_check} to check"]
    summary += [f"{n} {_STATUS_TEXT.get(s, s)}" for s, n in sorted(counts.items()) if s != "ok"]
    body = f"""<header class="bar">
<div class="title"><h1>{_e(title)}</h1><p class="facts">{_e(' · '.join(summary))}</p></div>
<div class="actions"><input id="filter" type="search" placeholder="Filter: words in captions or names"
 aria-label="Filter videos by caption or name" autocomplete="off"><span id="count" class="count" role="status"></span></div>
</header>
<main class="index">
<table class="videos">
<thead><tr><th><span class="vh">picture</span></th><th>video</th><th class="num">length</th><th class="num">cues</th><th class="num" title="cues whose confidence is below the page's mark: look at these first">to check</th><th>status</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody>
</table>
<p id="nothing" class="empty" hidden>No video matches.</p>
</main>"""
    return _page(title, body, {"version": 1, "videos": videos}, _asset("review.css"),
                 _asset("bar.js") + _asset("index.js"))


def repoint_page(page: Path, video: Path) -> bool:
    """Make the review page ``page`` play ``video`` (its new place or name); whether the page was rewritten.

    After an archive moved (outputs under another ``-o``) or a video was renamed (``a.mp4`` -> ``a.mkv``), ``batch``
    skips the video as up to date and repoints its JSON (``writers.repoint_json``); the page still linked the old
    place and could not play ("tried ../old/a.mp4 and a.mp4 from this page's folder"), and the index listed a.mkv
    under a page titled a.mp4. Its link, the name it shows and its title change; ``video.path``, the key its stored
    edits are kept under, does not (they stay with the page). A page that is not captioner's is left alone."""
    read = _read_page(page)
    if read is None or not isinstance(read[2].get("src"), str) or not isinstance(read[2].get("name"), str):
        return False
    text, match, v, data = read
    src, name = _href(video, Path(page).parent), Path(video).name
    if v["src"] == src and v["name"] == name:
        return False
    v["src"], v["name"] = src, name
    return _rewrite_page(page, text, match, data)


def restem_page(page: Path) -> bool:
    """After ``batch`` renamed the review page ``page`` (clip.html -> clip.mp4.html: a video of the same name came
    beside its video), its downloads take its new name (they were still saved as clip.srt, the name a player pairs
    with the other video); whether the page was rewritten."""
    read = _read_page(page)
    stem = Path(page).name[: -len(".html")] if Path(page).name.endswith(".html") else Path(page).stem
    if read is None or read[2].get("stem") == stem:
        return False
    text, match, v, data = read
    v["stem"] = stem
    return _rewrite_page(page, text, match, data)


def _read_page(page: Path) -> tuple[str, re.Match[str], dict[str, Any], dict[str, Any]] | None:
    """A video's review page captioner wrote: (its text, its data block's match, the data's ``video``, the data);
    None for any other file (an archive index included), or one that cannot be read."""
    read = _own_page(page)
    if read is None:
        return None
    text, match, data = read
    v = data.get("video") if isinstance(data.get("cues"), list) else None
    return (text, match, v, data) if isinstance(v, dict) else None


def _own_page(page: Path, errors: str = "strict") -> tuple[str, re.Match[str], dict[str, Any]] | None:
    """A page captioner wrote, read once: (its text, its data block's match, the data, a dict); None otherwise."""
    if not os.path.isfile(page):  # a FIFO of that name: reading it waited for a writer for ever
        return None
    try:
        text = Path(page).read_text(encoding="utf-8", errors=errors)
    except (OSError, UnicodeDecodeError):
        return None
    match = _DATA_RE.search(text)
    if not _ours(text[:2048]) or not match:
        return None
    try:
        data = parse_json(match.group(1))
    except ValueError:
        return None
    return (text, match, data) if isinstance(data, dict) else None


def _rewrite_page(page: Path, text: str, match: re.Match[str], data: dict[str, Any]) -> bool:
    """Write ``page`` again with ``data`` (its data block found at ``match``) and the video's link, name and title
    that data gives; its cues, thumbnails and script as they are."""
    v = data["video"]
    head, tail = text[: match.start(1)], text[match.end(1):]
    # the tags as the page writes them, whatever they held (a name that is not UTF-8 was written with "?")
    head = re.sub(r'<video id="video" controls preload="metadata" src="[^"]*" aria-label="video [^"]*">',
                  lambda _: _video_tag(v), head, count=1)
    head = re.sub(r"<title>[^<]*</title>", lambda _: f"<title>{_e(_page_title(v))}</title>", head, count=1)
    head = re.sub(r'<div class="title"><h1>(?:<bdi>)?[^<]*(?:</bdi>)?</h1>', lambda _: f'<div class="title"><h1>{_heading(v)}</h1>', head,
                  count=1)
    write_atomic(Path(os.path.realpath(page)), head + _json_for_html(data) + tail)
    return True


def index_path(root: Path, pages: Sequence[Path]) -> Path:
    """Where a batch's index goes in ``root``: ``index.html``, else ``captioner-index.html``: the first that is new or an
    archive index written before, and no page of this batch (``pages``). A video's own page of that name (an
    index.mp4 captioned by ``run`` or by an earlier batch, since deleted) was written over, and so was a foreign
    captioner-index.html; ``OutputError`` where neither name is free."""
    taken = {os.path.abspath(p) for p in pages}
    for candidate in _index_candidates(root):
        if os.path.abspath(candidate) not in taken and (not os.path.lexists(candidate) or _archive_index(candidate)):
            return candidate
    raise OutputError(f"{root}: {INDEX_NAME} and {INDEX_FALLBACK_NAME} are both another page or file; the archive "
                      "index is not written (rename one)")


def _two_places(value: float) -> str:
    """``value`` to two places, cut, not rounded: a cue of 0.496 was shown "0.50" beside "check: confidence below
    0.50"; a number shown is never above the one the mark was compared with."""
    return f"{math.floor(value * 100 + 1e-6) / 100:.2f}"


def archive_index_in(root: Path) -> Path | None:
    """The archive index captioner wrote in ``root`` (``index.html`` or ``captioner-index.html``), if there is one."""
    return next((p for p in _index_candidates(root) if _archive_index(p)), None)


def _index_candidates(root: Path) -> tuple[Path, Path]:
    """Where an archive index goes in ``root``, in the order tried."""
    return Path(root) / INDEX_NAME, Path(root) / INDEX_FALLBACK_NAME


def _archive_index(path: Path) -> bool:
    """Whether ``path`` is an archive index captioner wrote (its data lists ``videos``; a video's page lists cues)."""
    read = _own_page(path, errors="replace")
    return read is not None and isinstance(read[2].get("videos"), list) and "cues" not in read[2]


def is_review_page(path: Path) -> bool:
    """Whether ``path`` is a page captioner wrote (its generator tag), which a new one may replace."""
    if not os.path.isfile(path):  # a FIFO named index.html: reading it waited for a writer for ever
        return False
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return _ours(handle.read(2048))
    except OSError:
        return False


def _ours(head: str) -> bool:
    """Whether a page's first 2,048 characters carry captioner's generator tag: a review page or an archive index;
    a search results page (``captioner search --html``, marked ``RESULTS_GENERATOR``) is neither."""
    return (f'<meta name="generator" content="{GENERATOR} ' in head
            and f'<meta name="generator" content="{RESULTS_GENERATOR}">' not in head)


def write_index(entries: Sequence[IndexEntry], root: Path, title: str = "Captioned videos") -> Path:
    """Write the archive index of ``entries`` into ``root`` (atomically); returns its path."""
    path = index_path(root, [e.page for e in entries if e.page is not None])
    write_atomic(path, format_index(entries, path, title))
    return path
