"""Cues: timed caption text, and the rules that make them safe and readable.

Everything a writer (writers.py) emits goes through the same two gates here:
``clean_text`` for the words and ``normalize_cues`` for the times. That way a
caption the model produced (or a user edited) can never yield a file a player
mis-parses: no "-->" inside a cue, no blank line inside a cue, no overlapping or
backwards cues, no times past the end of the video. ``layout_cues`` turns the
model's captions into cues that keep every documented cue rule (length,
reading speed, the line box); ``wrap_text`` is the line wrapping the SRT and VTT
writers share.

This module deliberately imports neither torch nor cv2: it is used by the CLI
and by tests that must stay light.
"""

from __future__ import annotations

import logging
import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable

from captioner.config import OutputConfig

__all__ = ["Cue", "clean_text", "join_lines", "layout_cues", "merge_cues", "normalize_cues", "to_ms", "wrap_pieces",
           "wrap_text"]

logger = logging.getLogger(__name__)

#: The line box a cue's text fits in when nothing else is said (``OutputConfig``'s 42 / 2).
_BOX = OutputConfig()

# Two cues whose gap is below half a millisecond are rendered with the same
# timestamp, so for merging they count as touching.
_TOUCH_TOLERANCE = 0.0005

# A run of two or more dashes followed by ">" is the SRT/VTT timing arrow. The
# whole run is replaced (not just "-->") so "--->" cannot turn back into "-->".
_ARROW_RE = re.compile(r"-{2,}>")


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


#: Words a subtitle line should not end on when the text could break elsewhere ("a woman in a" / "library"):
#: articles, prepositions, conjunctions, "is"/"are" and possessives (``balance_lines``; review.js has the same list).
WEAK_LINE_ENDS = frozenset("a an the and or of to in on at with by for from into onto is are his her its their each".split())
#: What a line ending on such a word costs in ``balance_lines``, in squared characters (a 20-character imbalance).
WEAK_END_COST = 400


def balance_lines(words: Sequence[str], count: int, max_line_width: int) -> list[str] | None:
    """``words`` in ``count`` lines of at most ``max_line_width`` characters, as even as they can be and not ending
    a line on a weak word (``WEAK_LINE_ENDS``) where another break will do: least sum of squared line lengths plus
    ``WEAK_END_COST`` a weak ending; of equal ones, the later break. None where they do not fit.

    Subtitle style guides ask for lines of similar length, broken where the sense breaks; the greedy wrap
    filled line one and left one word below ("a young boy is talking to a woman in a" / "library").
    """
    m = len(words)
    if count < 1 or m < count:
        return None
    inf = float("inf")
    best = [[inf] * (m + 1) for _ in range(count + 1)]
    cut = [[0] * (m + 1) for _ in range(count + 1)]
    best[0][0] = 0
    for k in range(1, count + 1):
        for i in range(k, m + 1):
            for j in range(k - 1, i):
                if best[k - 1][j] == inf:
                    continue
                length = sum(len(w) for w in words[j:i]) + (i - j - 1)
                if length > max_line_width:
                    continue
                cost = best[k - 1][j] + length * length + (WEAK_END_COST if i < m and words[i - 1] in WEAK_LINE_ENDS else 0)
                if cost <= best[k][i]:  # a tie: the later break (the longer first line)
                    best[k][i], cut[k][i] = cost, j
    if best[count][m] == inf:
        return None
    lines, i = [], m
    for k in range(count, 0, -1):
        j = cut[k][i]
        lines.append(" ".join(words[j:i]))
        i = j
    return lines[::-1]


def wrap_pieces(text: str, max_line_width: int, max_line_count: int, balance: bool = False) -> list[tuple[str, bool]]:
    """Greedy wrap that also says, per line, whether it continues a broken word.

    The flag is what lets later steps (the overflow line, the SRT index-line
    guard) glue lines back together without inserting a space into a word.
    ``balance``: text that takes 2 to ``max_line_count`` lines with no word cut is
    laid out by ``balance_lines`` in as many lines (what the subtitle writers show).
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
        head.append((join_lines(tail), tail[0][1]))
        lines = head
    elif balance and len(lines) > 1 and not any(continues for _, continues in lines):
        even = balance_lines(text.split(), len(lines), max_line_width)
        if even is not None:
            lines = [(line, False) for line in even]
    return lines


def join_lines(lines: Sequence[tuple[str, bool]]) -> str:
    """Join wrapped lines into one, with a space only between different words."""
    joined = lines[0][0]
    for line, continues in lines[1:]:
        joined += line if continues else " " + line
    return joined


def wrap_text(text: str, max_line_width: int = _BOX.max_line_width,
              max_line_count: int = _BOX.max_line_count, balance: bool = False) -> list[str]:
    """Wrap ``text`` greedily into at most ``max_line_count`` lines of ``max_line_width`` characters
    (``balance``: then evened out, ``wrap_pieces``).

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
    return [line for line, _ in wrap_pieces(text, max_line_width, max_line_count, balance)]


# --------------------------------------------------------------------------- cues


def to_ms(seconds: float) -> int:
    """Round seconds to whole milliseconds, the resolution of every format written."""
    return int(round(seconds * 1000.0))


def _says_less_or_same(a: str, b: str) -> bool:
    """Whether one caption is the other, or its first words ("a man is talking" of "a man is talking to a woman")."""
    short, long_ = sorted((a.split(" "), b.split(" ")), key=len)
    return long_[: len(short)] == short


def _begins_with(a: str, b: str) -> bool:
    """Whether caption ``a`` is ``b`` or ``b`` and more words ("a man is talking about a car" of "a man is talking")."""
    words, first = a.split(" "), b.split(" ")
    return words[: len(first)] == first


def merge_cues(cues: Sequence[Cue]) -> list[Cue]:
    """Merge neighbouring cues that show the same text, or one the other's beginning, without a gap.

    The segmenter cuts long shots into several cues, which often get the same
    caption; shown back to back they look like a flicker. A caption that is the
    other's first words ("a man is talking" beside "a man is talking about a car")
    says the same moment with less or more detail, and the pair reads as a stutter:
    they merge too, showing the caption that held most of their time (then the
    surer, then the longer). On MSR-VTT val 12 of 244 videos had such a pair. Picking
    the surer caption instead showed a short, generic one over detail that held most
    of the time ("a car is driving" for "a car is driving down the road"), and a 2.2 s
    caption across 8.5 s.

    Cues are sorted by start; a cue is folded into the previous one when it starts
    no later than the previous one ends (plus half a millisecond, below the files'
    resolution) and, for every text folded there so far, the two cleaned texts are
    equal or one begins, word for word, with the other (so "a man" between "a man is
    talking" and "a man is cooking" joins the first, and the third stays apart). The
    merged cue spans them all, carries the text so chosen and the duration-weighted
    mean confidence (a plain mean when all durations are zero). Other texts are
    never merged, but one: a caption that begins with the text shown, where that text held
    more than half of the group's time so far, joins it though it differs from a longer
    text the group hid ("a man is talking" for 5.5 s, "... about a car" for 2 s, then "...
    about something" stood apart, read as "a man is talking" then "a man is talking about
    something"); the text shown is then one that every text of the group begins or is
    begun by. A short generic caption is no such bridge (it holds half the time or less).
    """
    merged: list[Cue] = []
    # Per merged cue: (total duration, duration-weighted confidence sum, number of cues, plain confidence sum)
    # to recompute the mean exactly; per text of the group, (its time, its best confidence). Every text of a
    # group begins its longest one.
    weights: list[tuple[float, float, int, float]] = []
    texts: list[dict[str, tuple[float, float]]] = []
    for cue in sorted(cues, key=lambda c: c.start):
        text = clean_text(cue.text)
        length = max(cue.end - cue.start, 0.0)
        if (merged and cue.start <= merged[-1].end + _TOUCH_TOLERANCE
                and (all(_says_less_or_same(text, t) for t in texts[-1])
                     or (_begins_with(text, merged[-1].text) and 2 * texts[-1][merged[-1].text][0] > weights[-1][0]))):
            last = merged[-1]
            total, weighted, count, plain = weights[-1]
            total += length
            weighted += length * cue.confidence
            count += 1
            plain += cue.confidence
            confidence = weighted / total if total > 0 else plain / count
            held, sure = texts[-1].get(text, (0.0, -math.inf))
            texts[-1][text] = (held + length, max(sure, cue.confidence))
            group = texts[-1]
            shown = max(((t, v) for t, v in group.items() if all(_says_less_or_same(t, o) for o in group)),
                        key=lambda kv: (kv[1][0], kv[1][1], len(kv[0])))[0]
            merged[-1] = Cue(last.start, max(last.end, cue.end), shown, confidence)
            weights[-1] = (total, weighted, count, plain)
            continue
        merged.append(Cue(cue.start, cue.end, text, cue.confidence))
        weights.append((length, length * cue.confidence, 1, cue.confidence))
        texts.append({text: (length, cue.confidence)})
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
        start_ms, end_ms = to_ms(start), to_ms(end)
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

    Lines are wrapped at ``min(max_line_width, max_chars)``, as evenly as they can be and not ending on a weak
    word where another break will do (``balance_lines``, as within a cue: a page ending "... in a" before "library"
    came back at ``--max-line-count 1``), and grouped in order; a piece is re-wrapped by the writers into at most
    ``max_line_count`` lines (a wider wrap never needs more lines); a word longer than a line stays whole on
    one page, over the width.
    """
    # a word longer than a line is a line of its own, whole: cut into pieces ("skateboard" / "ing down" at
    # --max-line-width 10) it was split between cues, and the TXT and JSON kept the fragments (search missed it)
    width = min(max_line_width, max_chars)
    lines: list[tuple[str, bool]] = []
    run: list[str] = []
    for word in [*text.split(), ""]:
        if word and len(word) <= width:
            run.append(word)
            continue
        if run:
            lines += wrap_pieces(" ".join(run), width, len(text) + 1, balance=True)
            run = []
        if word:
            lines.append((word, False))
    pages: list[str] = []
    current: list[tuple[str, bool]] = []

    def too_many(page: list[tuple[str, bool]]) -> bool:
        """More lines than a cue shows: with a long word, as the writers wrap the page (the word cut there, its
        lines the page's lines: "skateboarding the street" at width 8 took "skateboa" / "rding" / "the street")."""
        if all(len(line) <= width for line, _ in page):
            return len(page) > max_line_count
        return len(wrap_pieces(join_lines(page), max_line_width, 10**6)) > max_line_count

    for line in lines:
        if current and (too_many([*current, line]) or len(join_lines([*current, line])) > max_chars):
            pages.append(join_lines(current))
            current = []
        current.append(line)
    if current:
        pages.append(join_lines(current))
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


def _capped(total: int, weights: Sequence[int], floors: Sequence[int], cap: int) -> list[int]:
    """Lengths (ms) of consecutive parts of ``total`` ms: each its floor, the rest by weight, none over ``cap``
    (``sum(floors) <= total <= len(weights) * cap``, every floor at most ``cap``)."""
    out = list(floors)
    left = total - sum(out)
    while left > 0:
        free = [j for j in range(len(out)) if out[j] < cap]
        if not free:  # more time than the cap allows (not the callers' case): the rest unassigned
            break
        weight = sum(max(1, weights[j]) for j in free)
        given = 0
        for j in free:
            add = min(cap - out[j], left * max(1, weights[j]) // weight)
            out[j] += add
            given += add
        if not given:  # shares rounded to nothing: a millisecond each, in order
            for j in free[:left]:
                out[j] += 1
                given += 1
        left -= given
    return out


def _rounds(start: int, length: int, pages: Sequence[str], needs: Sequence[int], max_ms: int) -> list[int] | None:
    """Boundaries (ms) of the cues of a caption of several pages held longer than its pages can be shown once each
    (``max_ms`` a cue): the pages in order, round after round, each at least its reading time (``needs``); None where
    that cannot be. Repeating each page on its own showed the first half-sentence several times, then its end once
    ("a dog is playing with a toy in" three times, then "the grass"), and could leave the last moments blank."""
    if any(n > max_ms for n in needs):
        return None
    rounds = -(-length // (len(pages) * max_ms))
    bounds = [start]
    if rounds * sum(needs) <= length:
        for k in range(rounds):
            span = length * (k + 1) // rounds - length * k // rounds
            for part in _capped(span, [len(p) for p in pages], needs, max_ms):
                bounds.append(bounds[-1] + part)
        return bounds
    # no time for whole rounds: as few showings as the time takes, the pages still in turn, the last round cut
    # short (held 8.5 s at 2 s a cue, 1.5 s each: was "... toy in" three times, "the grass" once, 0.8 s blank)
    showings = max(len(pages), -(-length // max_ms))
    floors = [needs[k % len(pages)] for k in range(showings)]
    if sum(floors) > length:
        return None
    for part in _capped(length, [len(pages[k % len(pages)]) for k in range(showings)], floors, max_ms):
        bounds.append(bounds[-1] + part)
    return bounds


#: How far a caption may move from where the model put it so that a caption beyond its neighbour gets the time
#: it needs (``layout_cues``): about a sample's worth. Unbounded, a montage of short shots pushed each caption
#: further off its picture than the one before (15.9 s late by the end of ten 1-s shots).
MAX_SHIFT_MS = 1000
#: How many captions may move for one (``layout_cues``): the time comes from close by, and a layout of thousands of
#: tightly packed captions stays linear.
MAX_MOVED = 8


def _push_later(caps: list[list[Any]], i: int, ms: int, end_ms: int | None, apply: bool = True) -> bool:
    """End caption ``i`` ``ms`` later, moving the captions after it on only as far as each then needs (rows of
    ``layout_cues``: [start, end, pages, needs, confidence, start given, end given, number]). False, and nothing moved,
    where one would end past ``end_ms`` or move more than ``MAX_SHIFT_MS`` from where it was given."""
    moves = [(i, caps[i][0], caps[i][1] + ms)]
    edge = moves[0][2]
    for j in range(i + 1, len(caps)):
        row = caps[j]
        if row[0] >= edge:
            break
        start, end = edge, max(row[1], edge + sum(row[3]))
        if start - row[5] > MAX_SHIFT_MS or end - row[6] > MAX_SHIFT_MS:
            return False
        moves.append((j, start, end))
        if end == row[1]:
            break
        if len(moves) > MAX_MOVED:
            return False
        edge = end
    if end_ms is not None and moves[-1][2] > end_ms:
        return False
    if apply:
        for j, start, end in moves:
            caps[j][0], caps[j][1] = start, end
    return True


def _pull_earlier(caps: list[list[Any]], i: int, ms: int, start_ms: int, apply: bool = True) -> bool:
    """``_push_later`` the other way: begin caption ``i`` ``ms`` earlier, moving the captions before it back, none
    before ``start_ms``."""
    moves = [(i, caps[i][0] - ms, caps[i][1])]
    edge = moves[0][1]
    for j in range(i - 1, -1, -1):
        row = caps[j]
        if row[1] <= edge:
            break
        start, end = min(row[0], edge - sum(row[3])), edge
        if row[5] - start > MAX_SHIFT_MS or row[6] - end > MAX_SHIFT_MS:
            return False
        moves.append((j, start, end))
        if start == row[0]:
            break
        if len(moves) > MAX_MOVED:
            return False
        edge = start
    if moves[-1][1] < start_ms:
        return False
    if apply:
        for j, start, end in moves:
            caps[j][0], caps[j][1] = start, end
    return True


#: Captions a layout tries again once the others are laid out (each costs a layout of the captions near it): a
#: caption dropped because the neighbour that held its time was dropped after it.
SECOND_CHANCES = 50
_NEAR = 2 * MAX_MOVED  # captions either side that a second chance is tried among


def _most(fits: Callable[[int], bool], most: int) -> int:
    """The largest ``n`` in 0..``most`` that ``fits`` (which holds for every number below one that fits)."""
    low, high = 0, most
    while low < high:
        mid = (low + high + 1) // 2
        if fits(mid):
            low = mid
        else:
            high = mid - 1
    return low


def _drop(caps: list[list[Any]], i: int) -> None:
    """Drop row ``i``; its time goes to the neighbours it touches (halved between two): a hole with no caption is
    no truer to the video than a neighbour's caption held on (silence beside it stays silence)."""
    cap = caps.pop(i)
    before = caps[i - 1] if i > 0 and caps[i - 1][1] >= cap[0] else None
    after = caps[i] if i < len(caps) and caps[i][0] <= cap[1] else None
    if before and after:
        before[1] = after[0] = (cap[0] + cap[1]) // 2
    elif before:
        before[1] = cap[1]
    elif after:
        after[0] = cap[0]


def _fit(caps: list[list[Any]], start_ms: int, end_ms: int | None, chain: bool,
         drop: frozenset[int] = frozenset()) -> list[list[Any]]:
    """Step 3 of ``layout_cues`` on its rows (changed in place, returned without the captions dropped); ``chain``:
    also from captions beyond the neighbours; ``drop``: the rows (by their number, row[7]) to drop at once."""
    for i in [i for i, row in enumerate(caps) if row[7] in drop][::-1]:
        _drop(caps, i)
    i = 0
    while i < len(caps):
        cap = caps[i]
        short = sum(cap[3]) - (cap[1] - cap[0])
        if short > 0:
            # what a caption that cannot be given its time leaves as it was: the rows it may move (its neighbours,
            # and MAX_MOVED either side), not every row (a copy of thousands per short caption)
            near = range(max(0, i - MAX_MOVED), min(len(caps), i + MAX_MOVED + 1))
            saved = [(j, caps[j][0], caps[j][1]) for j in near]
            later = caps[i + 1] if i + 1 < len(caps) else None
            earlier = caps[i - 1] if i > 0 else None
            limit = later[0] if later else (end_ms if end_ms is not None else cap[1] + short)
            grow = min(short, max(0, limit - cap[1]))
            cap[1] += grow
            short -= grow
            grow = min(short, max(0, cap[0] - (earlier[1] if earlier else start_ms)))
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
            if short > 0 and chain:  # from further along: those between shift, none over MAX_SHIFT_MS
                grow = _most(lambda ms: _push_later(caps, i, ms, end_ms, apply=False), short)
                _push_later(caps, i, grow, end_ms)
                short -= grow
            if short > 0 and chain:
                grow = _most(lambda ms: _pull_earlier(caps, i, ms, start_ms, apply=False), short)
                _pull_earlier(caps, i, grow, start_ms)
                short -= grow
            if short > 0 and len(caps) > 1:
                logger.debug("dropping a caption with too little time to be read: %r", " ".join(cap[2]))
                for j, a, b in saved:
                    caps[j][0], caps[j][1] = a, b
                _drop(caps, i)
                continue
        i += 1

    return caps


def layout_cues(
    cues: Sequence[Cue],
    duration: float | None,
    *,
    max_duration: float,
    min_duration: float,
    max_chars_per_second: float,
    max_line_width: int,
    max_line_count: int,
    start: float = 0.0,
) -> list[Cue]:
    """Cues that keep every documented rule, from captions as the model gives them.

    1. Neighbouring cues with the same text, or one the other's first words, merge
       (``merge_cues``: the text that held most of their time) and the result is
       made safe (``normalize_cues``: clean text, inside the video, no overlaps).
    2. A caption too long for one cue (``max_line_count`` lines of ``max_line_width``
       characters, and no more characters than ``max_chars_per_second`` allows in
       ``max_duration``) is cut into pieces shown one after the other.
    3. Each caption gets the time its pieces need: every piece at least
       ``min_duration`` and ``len(text) / max_chars_per_second`` seconds. Time comes
       from the silence after it, then before it, then from what its neighbours can
       spare, then from captions further along, later then earlier (those between
       shift, each keeping the time it needs and none more than ``MAX_SHIFT_MS`` from
       where it was given; at most ``MAX_MOVED`` of them); a caption that cannot
       get enough time even so is dropped, unless it is the only one, and its time
       goes to the neighbours it touches (shared between two; a silence beside it
       stays silent). Dropped captions then get a second chance, in order, among the
       captions near them (``SECOND_CHANCES``): one dropped because the neighbour that
       held its time was dropped after it is kept.
    4. The pieces share their caption's time in proportion to their length, and a
       piece longer than ``max_duration`` is shown as several cues of equal length,
       each at least as long as the piece needs; where equal cues would be shorter than
       that, the first gets the time the piece needs and the rest, repeats of a text just
       read, share what is left, each at least ``min_duration`` (only where even that
       cannot be, a ``min_duration`` close to ``max_duration``, is a remainder left empty).
       A caption of several pieces held longer than one showing of each (each under
       ``max_duration``) shows them in turn, round after round (``_rounds``). Equal cues
       that touch are joined where the two fit one cue (``_append``: a caption dropped
       in step 3 between two equal ones left them back to back).

    Every cue of the result is then at most ``max_duration`` long (``<= 0``: no
    limit), at least ``min_duration`` and readable at ``max_chars_per_second``
    (``<= 0``: no limit; a repeat of the cue before it needs only ``min_duration``),
    except the only caption of a video too short for it; its
    text fits ``max_line_count`` lines of ``max_line_width``. Times are whole
    milliseconds. No cue begins before ``start`` (the stretch of the video captioned) or
    ends after ``duration``.
    """
    if max_line_width < 1 or max_line_count < 1:
        raise ValueError("max_line_width and max_line_count must be at least 1")
    ready = normalize_cues(merge_cues(cues), duration)
    # where the cues as given end (shot cuts, the segmenter's own splits): a merged run cut again for max_duration
    # is cut there first; cut evenly, a cue began 1.25 s before the shot it describes
    joins = sorted({to_ms(c.end) for c in cues})
    end_ms = to_ms(duration) if duration is not None else None
    start_ms = to_ms(start)
    # seconds beyond any video (1e12: 31,000 years) are that bound: --max-segment 1e305 overflowed to inf ms
    max_ms = math.floor(min(max_duration, 1e12) * 1000.0 + 1e-6) if max_duration > 0 else 0
    min_ms = max(0, math.ceil(min(min_duration, 1e12) * 1000.0 - 1e-6))
    if max_ms:
        min_ms = min(min_ms, max_ms)
    cps = max_chars_per_second if max_chars_per_second > 0 else 0.0
    max_chars = max_line_width * max_line_count
    if cps and max_ms:
        max_chars = max(1, min(max_chars, math.floor(min(cps * max_ms / 1000.0, 1e12) + 1e-6)))  # 1e308 cps: no inf

    def page_need(text: str) -> int:
        need = max(min_ms, math.ceil(len(text) * 1000.0 / cps - 1e-6) if cps else 0)
        return min(need, max_ms) if max_ms else need  # a page over max_chars: a word longer than a cue can be read

    # [start ms, end ms, pieces, piece needs, confidence, start ms as given, end ms as given, number]
    caps = []
    for cue in ready:
        pages = _pages(cue.text, max_line_width, max_line_count, max_chars)
        start_given, end_given = to_ms(cue.start), to_ms(cue.end)
        caps.append([start_given, end_given, pages, [page_need(p) for p in pages], cue.confidence, start_given,
                     end_given, len(caps)])

    def fitted(rows: list[list[Any]], drop: frozenset[int] = frozenset(), lo: int = start_ms,
               hi: int | None = end_ms) -> list[list[Any]]:
        # time from captions beyond the neighbours must not cost captions elsewhere (taken greedily, it can)
        plain = _fit([row[:] for row in rows], lo, hi, False, drop)
        chained = _fit([row[:] for row in rows], lo, hi, True, drop)
        return plain if len(plain) > len(chained) else chained

    out = fitted(caps)
    kept = {row[7] for row in out}
    # a second chance, in order, for what was dropped: the time it needed was held by a neighbour dropped after it.
    # Tried among the captions near it, between the kept ones beyond (as given); the whole is laid out again after.
    for row in [r for r in caps if r[7] not in kept][:SECOND_CHANCES]:
        k = row[7]
        near = [r for r in caps[max(0, k - _NEAR): k + _NEAR + 1] if r[7] in kept or r is row]
        lo = max((r[6] for r in caps[:max(0, k - _NEAR)] if r[7] in kept), default=start_ms)
        hi = min((r[5] for r in caps[k + _NEAR + 1:] if r[7] in kept), default=end_ms)
        if len(fitted(near, lo=lo, hi=hi)) == len(near):
            kept.add(k)
    if len(kept) > len(out):
        again = fitted(caps, frozenset(r[7] for r in caps if r[7] not in kept))  # the rest drop, their time given
        if len(again) > len(out):
            out = again
    caps = out

    result: list[Cue] = []
    for start, end, pages, needs, confidence, *_ in caps:
        bounds = _spread(start, end - start, [len(p) for p in pages], needs)
        if max_ms and len(pages) > 1 and any(b - a > max_ms for a, b in zip(bounds, bounds[1:])):
            cycled = _rounds(start, end - start, pages, needs, max_ms)
            if cycled is not None:
                for k, (a, b) in enumerate(zip(cycled, cycled[1:])):
                    _append(result, Cue(a / 1000.0, b / 1000.0, pages[k % len(pages)], confidence), max_ms)
                continue
        for text, need, a, b in zip(pages, needs, bounds, bounds[1:]):
            length = b - a
            cuts = [a, b]
            # (each piece keeps the run's confidence: --min-confidence judged the merged run, and a piece rated
            # by its own shot was written under the threshold)
            if max_ms and length > max_ms and (at_joins := _cuts_at_joins(a, b, joins, max_ms, need, min_ms)):
                cuts = at_joins
            elif max_ms and length > max_ms:
                parts = math.ceil(length / max_ms)
                short = need and parts * need > length  # equal cues too short to read
                if short and need + (parts - 1) * min_ms <= length:
                    # the same text again is not read again: the first cue gets the reading time, the repeats
                    # share the rest (each under max_ms, as an even share would be) and need only min_ms; the
                    # rest was left blank ("--max-segment 2" on a 5 s shot: captions 0-4 s, nothing at 4-5 s)
                    cuts = [a] + [a + need + (length - need) * k // (parts - 1) for k in range(parts)]
                else:
                    if short:  # min_duration too close to max_duration here: equal cues that can be read, rest blank
                        parts = max(1, length // need)
                        length = min(length, parts * max_ms)
                    cuts = [a + length * k // parts for k in range(parts + 1)]
            for s, e in zip(cuts, cuts[1:]):
                if e > s:
                    _append(result, Cue(s / 1000.0, e / 1000.0, text, confidence), max_ms)
    return result


def _cuts_at_joins(a: int, b: int, joins: Sequence[int], max_ms: int, need: int, min_ms: int) -> list[int] | None:
    """Cut points (ms) of ``[a, b]`` into cues of at most ``max_ms``, each at one of ``joins`` (where the cues as
    given met), the first at least ``need`` long (its reading time), the rest ``min_ms`` (repeats of a text just
    read); the farthest join within reach each time. None where the joins cannot do it with as few cues as an even
    cut (more cues of one text flicker)."""
    cuts, most = [a], math.ceil((b - a) / max_ms) - 1  # no more cues than an even cut makes
    while b - cuts[-1] > max_ms and len(cuts) <= most:
        least = need if len(cuts) == 1 else min_ms
        reach = [t for t in joins if cuts[-1] + max(least, 1) <= t <= cuts[-1] + max_ms and b - t >= max(min_ms, 1)]
        if not reach:
            return None
        cuts.append(max(reach))
    if b - cuts[-1] > max_ms or b - cuts[-1] < min_ms:
        return None
    return cuts + [b]


def _append(result: list[Cue], cue: Cue, max_ms: int) -> None:
    """Add ``cue`` to the layout, joined to the cue before it where that shows the same text up to its start and the
    two fit one cue (``max_ms``; 0: no limit). A caption dropped for want of reading time gives its time to its
    neighbours, and two equal ones were left back to back (the flicker ``merge_cues`` prevents before layout)."""
    if result:
        last = result[-1]
        if (last.text == cue.text and to_ms(last.end) == to_ms(cue.start)
                and (not max_ms or to_ms(cue.end) - to_ms(last.start) <= max_ms)):
            total = cue.end - last.start
            confidence = ((last.confidence * (last.end - last.start) + cue.confidence * (cue.end - cue.start)) / total
                          if total > 0 else last.confidence)
            result[-1] = Cue(last.start, cue.end, cue.text, confidence)
            return
    result.append(cue)
