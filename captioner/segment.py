"""Group sampled frames into time segments, each of which becomes one subtitle cue.

Works on plain numbers (sample times and pooled CNN features) and knows
nothing about videos, so it can be tested with synthetic arrays and reused
for any sequence of frames.

``segment_frames`` segments a whole sequence; ``StreamingSegmenter`` does it window by
window while the frames stream in (what a video run uses: flat memory).

Three passes, each fixing what the previous one cannot see:

1. **Cut at shots.** A large cosine distance between the features of two
   consecutive samples means the picture changed; the cut is put halfway
   between them, the best guess with one sample per interval, unless the
   reader says no frame came between them (``since``: a screen recording's
   frames come only when the screen changes), then at the second.
2. **Split long pieces.** A two-minute static shot would otherwise get one
   caption for two minutes; it is cut into equal parts no longer than
   ``max_segment`` so the viewer still gets a cue every few seconds.
3. **Merge short pieces.** Flicker, flashes and fast cutting make pieces too
   short to read; each is folded into the neighbour it looks most like.

The result always covers ``[0, duration]`` without gaps or overlaps and every
segment has at least one frame to caption.
"""

from __future__ import annotations

import bisect
import heapq
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from captioner.config import SegmentConfig

log = logging.getLogger(__name__)

#: Lengths within this many seconds of a limit count as meeting it (float noise).
_EPS = 1e-9


@dataclass(frozen=True)
class Segment:
    """A span of the video and the sampled frames that describe it."""

    start: float  # seconds
    end: float  # seconds
    frames: tuple[int, ...]  # sorted indexes into the list of sampled frames


def shot_boundaries(pooled: np.ndarray) -> np.ndarray:
    """Cosine distances (0 = same direction, up to 2) between consecutive feature rows.

    Args:
        pooled: ``[N, D]`` features of consecutive samples.

    Returns:
        ``[N - 1]`` float64 distances; empty for ``N <= 1``. Two all-zero rows
        are identical (distance 0); a zero row next to a non-zero one is
        distance 1 (nothing in common).
    """
    x = _as_features(pooled)
    if len(x) < 2:
        return np.zeros(0, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1)
    unit = x / np.where(norms > 0, norms, 1.0)[:, None]
    cos = np.einsum("ij,ij->i", unit[:-1], unit[1:])
    both_zero = (norms[:-1] == 0) & (norms[1:] == 0)
    cos = np.where(both_zero, 1.0, cos)
    return np.clip(1.0 - cos, 0.0, 2.0)


def segment_frames(
    times: Sequence[float],
    pooled: np.ndarray,
    duration: float,
    config: SegmentConfig,
    since: Sequence[float] | None = None,
) -> list[Segment]:
    """Split ``[0, duration]`` into segments of visually coherent samples.

    Args:
        times: non-decreasing time in seconds of each sample.
        pooled: ``[N, D]`` pooled features of the same samples.
        since: per sample, the earliest time its picture can have appeared (the first frame after the
            sample before it; ``-inf``: not known): a cut before it goes no earlier.
        duration: length of the video in seconds (0 if unknown); extended to
            ``times[-1] + one sample interval`` so the last sample is inside.
        config: shot threshold and segment length limits. ``max_segment <= 0``
            disables splitting, ``min_duration <= 0`` disables merging (a
            zero-length piece is merged regardless).

    Returns:
        Ordered, contiguous segments covering ``[0, max(duration, ...)]``,
        each with at least one frame. A frame can belong to two segments when
        a long shot is split into more parts than it has samples; a piece
        with a single sample is never split.
        A merge can make a segment up to ``min_duration`` longer than
        ``max_segment``: readable beats uniform.

    Raises:
        ValueError: empty input, mismatched lengths, non-finite values or
            decreasing times (all programming errors upstream).
    """
    t = np.asarray(times, dtype=np.float64)
    x = _as_features(pooled)
    if t.ndim != 1 or len(t) == 0:
        raise ValueError("segment_frames needs at least one sample time")
    if len(t) != len(x):
        raise ValueError(f"{len(t)} times but {len(x)} feature rows")
    if not np.all(np.isfinite(t)) or t[0] < 0:
        raise ValueError("sample times must be finite and non-negative")
    if np.any(np.diff(t) < 0):
        raise ValueError("sample times must be non-decreasing")

    step = _sample_interval(t, config)
    given = float(duration) if math.isfinite(duration) and duration > 0 else 0.0
    end = max(given, float(t[-1]) + step)

    after = None if since is None else np.asarray(since, dtype=np.float64)
    if after is not None and after.shape != t.shape:
        raise ValueError(f"{len(t)} times but {len(after)} since values")
    pieces = _cut_at_shots(t, x, end, config.shot_threshold, after)
    if config.max_segment > 0:
        pieces = [part for piece in pieces for part in _split(piece, t, config.max_segment)]
    pieces = _merge_short(pieces, x, config.min_duration)
    segments = [Segment(start=s, end=e, frames=tuple(sorted(f))) for s, e, f in pieces]
    log.debug("%d samples -> %d segments over %.2f s", len(t), len(segments), end)
    return segments


def stable_runs(segments: Sequence[Segment], pooled: np.ndarray, threshold: float) -> list[list[int]]:
    """Indexes of consecutive segments grouped where the picture does not change.

    A long shot is split every ``max_segment`` seconds so that it can get a new
    caption when something happens; when nothing happens the pieces are the same
    picture, and captioning each one separately only makes the subtitle flicker
    between equally likely sentences (on the real clips, 3 of 10 near-identical
    neighbours got the same caption: ``python -m pipelines.stability``). A segment joins the run
    before it while its mean feature stays within cosine distance ``threshold`` of
    the run's first segment; ``threshold <= 0`` keeps every segment alone.
    """
    if not segments:
        return []
    x = _as_features(pooled)
    means = [x[list(seg.frames)].mean(axis=0) for seg in segments]
    runs = [[0]]
    for i in range(1, len(segments)):
        if threshold > 0 and 1.0 - _cosine(means[runs[-1][0]], means[i]) < threshold:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


@dataclass(frozen=True)
class Window:
    """Segments that can no longer change, ready to caption, and the buffered frames they index.

    ``segments`` are relative to ``offset`` (seconds) and their ``frames`` index the
    per-frame data of this window: ``times`` (absolute seconds), ``pooled`` and the
    arrays or lists given to ``StreamingSegmenter.push`` (``data``). That data may hold
    frames in no segment: the stretch after the last one, and with a segmenter's
    ``context`` a few frames before the first (the scene ``run_frames`` adds). ``runs`` groups
    consecutive segments that show the same picture (``stable_runs``): each run is
    captioned once, from the frames of all its segments (``run_frames``).
    """

    segments: list[Segment]
    offset: float
    runs: list[list[int]]
    times: list[float]
    pooled: np.ndarray
    data: dict[str, Any]

    def run_frames(self, run: Sequence[int], context: float = 0.0) -> tuple[int, ...]:
        """The frames of a run's segments, sorted; with ``context`` (seconds), also the window's
        frames sampled that long before the run's start or after its end (its scene)."""
        own = {f for i in run for f in self.segments[i].frames}
        if context > 0 and run:
            start = min(self.segments[i].start for i in run) + self.offset - context
            end = max(self.segments[i].end for i in run) + self.offset + context
            own |= {j for j, t in enumerate(self.times) if start <= t <= end}
        return tuple(sorted(own))

    def span(self, segment: Segment) -> tuple[float, float]:
        """A segment's start and end in seconds since the start of the video."""
        return segment.start + self.offset, segment.end + self.offset


class StreamingSegmenter:
    """Segments frames while they stream in, a window at a time: memory stays flat for any length.

    ``push`` adds a batch of frames (times, pooled features and any other per-frame
    arrays or lists, kept for the caller: grids, probabilities, thumbnails). Once
    ``window`` frames are buffered it segments them and hands back every segment but
    the last (a later frame may still extend it or merge into it) as a ``Window``,
    then forgets the frames only those segments used. ``finish(duration)`` hands back
    the rest. Cuts land where segmenting the whole video at once would put them, up to
    the odd merge at a window's edge. Knows nothing about models or videos.

    ``context`` (seconds): frames handed back that long before the next window's first
    segment stay buffered and come with that window (in its ``times`` and data, in no
    segment), so ``Window.run_frames(run, context)`` sees a window's first run's scene
    as it sees any other's.
    """

    def __init__(self, config: SegmentConfig, window: int = 64, context: float = 0.0, origin: float = 0.0) -> None:
        self.config = config
        self.window = max(2, window)
        self.context = max(0.0, context)
        # start time of the buffered, not yet handed back stretch: where the first segment begins, the
        # start of the video or of the stretch asked for (no frame is pushed before it)
        self.origin = float(origin)
        self._lead = 0  # buffered frames before that stretch: context for its first segments only
        self.times: list[float] = []
        self.since: list[float] = []  # per frame, segment_frames' ``since`` (-inf: not known)
        self._chunks: dict[str, list[Any]] = {"pooled": []}
        self._lists: dict[str, list[Any]] = {}

    def __len__(self) -> int:
        """Frames buffered."""
        return len(self.times)

    def push(self, times: Sequence[float], pooled: np.ndarray, since: Sequence[float | None] | None = None,
             **data: Any) -> Window | None:
        """Add frames; a ``Window`` when some segments are finished, else None.

        ``since``: per frame, the earliest time its picture can have appeared (``video.Frame.since``; None: not
        known). ``data``: per-frame NumPy arrays (concatenated along their first axis) or
        lists (extended), one entry per frame; None entries are skipped.
        """
        self.times.extend(times)
        self.since.extend(-math.inf if s is None else s for s in (since or [None] * len(times)))
        self._chunks["pooled"].append(pooled)
        for name, value in data.items():
            if value is None:
                continue
            if isinstance(value, np.ndarray):
                self._chunks.setdefault(name, []).append(value)
            else:
                self._lists.setdefault(name, []).extend(value)
        if len(self) - self._lead < self.window:
            return None
        segments = self._segments(None)
        if len(segments) < 2:
            return None
        done = self._window(segments[:-1])
        keep = segments[-1]
        self.origin += keep.start
        first = min(keep.frames)
        lead_from = bisect.bisect_left(self.times, self.origin - self.context, 0, first) if self.context else first
        self._drop_before(lead_from)
        self._lead = first - lead_from
        return done

    def finish(self, duration: float) -> Window:
        """Every buffered frame's segments, up to ``duration`` seconds (or past the last frame)."""
        if not self.times:
            raise ValueError("StreamingSegmenter.finish: no frames were pushed")
        return self._window(self._segments(duration))

    def _segments(self, duration: float | None) -> list[Segment]:
        """The buffered stretch's segments (after the lead frames), frames indexing the whole buffer;
        up to ``duration`` (None: the last frame)."""
        lead = self._lead
        # the kept segment of the last window may hold only a sample from before it starts (``_split`` lends a part
        # with no sample of its own the nearest one, when samples come further apart than ``max_segment``): it
        # stands for the stretch from its start, as it did there (its time before the stretch ended a run in a
        # traceback: an 11-minute static video under --fast, 1 fps under --max-segment 0.5)
        rel = [max(t - self.origin, 0.0) for t in self.times[lead:]]
        since = [s - self.origin for s in self.since[lead:]]
        end = rel[-1] if duration is None else max(duration - self.origin, rel[-1])
        segments = segment_frames(rel, self._array("pooled")[lead:], end, self.config, since)
        return [Segment(s.start, s.end, tuple(f + lead for f in s.frames)) for s in segments] if lead else segments

    def _window(self, segments: list[Segment]) -> Window:
        pooled = self._array("pooled")
        data: dict[str, Any] = {name: self._array(name) for name in self._chunks if name != "pooled"}
        data.update(self._lists)
        return Window(segments, self.origin, stable_runs(segments, pooled, self.config.stable_threshold),
                      self.times, pooled, data)

    def _array(self, name: str) -> np.ndarray:
        parts = self._chunks[name]
        if len(parts) > 1:
            parts[:] = [np.concatenate(parts)]
        return parts[0]

    def _drop_before(self, index: int) -> None:
        """Forget frames [0, index): segment frame indexes then count from the new first frame.

        New lists and arrays: a ``Window`` handed back keeps the old ones.
        """
        self.times = self.times[index:]
        self.since = self.since[index:]
        for name in self._chunks:
            self._chunks[name] = [self._array(name)[index:].copy()]
        for name in self._lists:
            self._lists[name] = self._lists[name][index:]


# --------------------------------------------------------------------------- internals

# A piece under construction: (start, end, frame indexes).
_Piece = tuple[float, float, list[int]]


def _as_features(pooled: np.ndarray) -> np.ndarray:
    """Features as a finite float64 ``[N, D]`` array (NaN means a bug upstream: fail loudly)."""
    x = np.asarray(pooled, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"pooled features must be [N, D], got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("pooled features contain NaN or infinity")
    return x


def _sample_interval(t: np.ndarray, config: SegmentConfig) -> float:
    """Typical spacing of the samples, i.e. how long the last sample 'lasts'.

    The median ignores the odd gap left by a frame that failed to decode.
    With a single sample there is no spacing to measure; it then lasts
    ``min_duration`` (so its cue is readable), or one second.
    """
    gaps = np.diff(t)
    gaps = gaps[gaps > 0]
    if len(gaps):
        return float(np.median(gaps))
    return config.min_duration if config.min_duration > 0 else 1.0


def cut_time(earlier: float, later: float, since: float | None = None) -> float:
    """Where the picture of a sample at ``earlier`` gives way to that of the next one at ``later``: half-way, the best
    guess with frames between them, but no earlier than ``since``, the first frame after ``earlier`` (None or
    ``-inf``: not known). ``video.within`` opens a stretch by the same rule."""
    middle = (earlier + later) / 2.0
    return middle if since is None or since <= middle else min(float(since), later)


def _cut_at_shots(t: np.ndarray, x: np.ndarray, end: float, threshold: float,
                  since: np.ndarray | None = None) -> list[_Piece]:
    """Pass 1: one piece per shot, cut between the samples either side (``cut_time``)."""
    cuts = np.nonzero(shot_boundaries(x) > threshold)[0]
    pieces: list[_Piece] = []
    start, first = 0.0, 0
    for i in cuts:
        at = cut_time(float(t[i]), float(t[i + 1]), None if since is None else float(since[i + 1]))
        pieces.append((start, at, list(range(first, i + 1))))
        start, first = at, i + 1
    pieces.append((start, end, list(range(first, len(t)))))
    return pieces


def _split(piece: _Piece, t: np.ndarray, max_segment: float) -> list[_Piece]:
    """Pass 2: cut a piece longer than ``max_segment`` into equal parts that are not.

    Each frame goes to the part its time falls in; a part no sample falls in
    borrows the piece's sample nearest to its middle, so it can still be captioned.
    A piece with a single sample is left whole: every part would caption that
    same frame, repeating one caption (this also keeps ``N == 1`` one segment).
    """
    start, end, frames = piece
    length = end - start
    if length <= max_segment + _EPS or len(frames) < 2:
        return [piece]
    count = math.ceil(length / max_segment - _EPS)
    bounds = [start + length * k / count for k in range(count)] + [end]
    members: list[list[int]] = [[] for _ in range(count)]
    for f in frames:
        k = int((t[f] - start) / length * count)
        members[min(max(k, 0), count - 1)].append(f)
    parts: list[_Piece] = []
    for k in range(count):
        if not members[k]:
            middle = (bounds[k] + bounds[k + 1]) / 2.0
            members[k] = [min(frames, key=lambda f: (abs(t[f] - middle), f))]
        parts.append((bounds[k], bounds[k + 1], members[k]))
    return parts


def _merge_short(pieces: list[_Piece], x: np.ndarray, min_duration: float) -> list[_Piece]:
    """Pass 3: fold pieces shorter than ``min_duration`` into their most similar neighbour.

    The shortest piece goes first (it is the least readable, and its merge may
    already lift a short neighbour over the limit). A heap and a linked list
    keep this O(n log n) for a feature-length film with thousands of flickery
    pieces; similarity is the cosine between the pieces' summed features,
    which equals that of their means. Ties go to the shorter neighbour, so a
    split static shot stays evenly split, then to the earlier one.
    """
    n = len(pieces)
    starts = [p[0] for p in pieces]
    ends = [p[1] for p in pieces]
    members = [set(p[2]) for p in pieces]
    sums = [x[sorted(m)].sum(axis=0) for m in members]
    prev = list(range(-1, n - 1))
    nxt = list(range(1, n)) + [-1]
    alive = [True] * n

    def is_short(i: int) -> bool:
        length = ends[i] - starts[i]
        return length <= 0 or length < min_duration - _EPS

    heap = [(ends[i] - starts[i], i) for i in range(n) if is_short(i)]
    heapq.heapify(heap)
    remaining = n
    while heap and remaining > 1:
        length, i = heapq.heappop(heap)
        if not alive[i] or length != ends[i] - starts[i] or not is_short(i):
            continue  # stale entry: the piece has grown or gone since it was queued
        neighbours = [j for j in (prev[i], nxt[i]) if j != -1]
        j = max(neighbours, key=lambda j: (round(_cosine(sums[i], sums[j]), 9),
                                           -(ends[j] - starts[j]), j == prev[i]))
        left, right = (j, i) if j == prev[i] else (i, j)
        shared = members[left] & members[right]
        ends[left] = ends[right]
        sums[left] = sums[left] + sums[right]
        if shared:
            sums[left] = sums[left] - x[sorted(shared)].sum(axis=0)
        members[left] |= members[right]
        nxt[left] = nxt[right]
        if nxt[right] != -1:
            prev[nxt[right]] = left
        alive[right] = False
        remaining -= 1
        if is_short(left):
            heapq.heappush(heap, (ends[left] - starts[left], left))

    out: list[_Piece] = []
    i = 0
    while i != -1:
        out.append((starts[i], ends[i], sorted(members[i])))
        i = nxt[i]
    return out


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity, 1.0 for two zero vectors (nothing distinguishes them)."""
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0 or nb == 0:
        return 1.0 if na == nb else 0.0
    return float(np.dot(a, b) / (na * nb))
