"""Tests for captioner.segment on synthetic feature arrays (no video, no model)."""

from __future__ import annotations

import ast
import inspect
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from captioner import segment
from captioner.config import SegmentConfig
from captioner.segment import Segment, segment_frames, shot_boundaries

#: No splitting, no merging: only shot cuts.
CUTS_ONLY = SegmentConfig(shot_threshold=0.25, max_segment=0.0, min_duration=0.0)

D = 16


def shots(lengths: list[int], step: float = 0.5, *, noise: float = 0.05, seed: int = 0):
    """Times and features for consecutive shots of ``lengths`` samples.

    Shot k points along basis vector k (so shots are orthogonal: distance ~1)
    with a little noise (consecutive samples of one shot: distance ~0.01).
    """
    rng = np.random.default_rng(seed)
    rows = []
    for k, n in enumerate(lengths):
        base = np.zeros(D)
        base[k % D] = 1.0
        rows.append(base + noise * rng.random((n, D)))
    feats = np.concatenate(rows)
    times = [i * step for i in range(len(feats))]
    return times, feats


def check_invariants(segs: list[Segment], times, duration: float) -> None:
    """Coverage, contiguity, order, non-empty frames, every sample inside its segment."""
    n = len(times)
    gaps = np.diff(times)[np.diff(times) > 0]
    step = float(np.median(gaps)) if len(gaps) else 1.0
    assert segs[0].start == 0.0
    assert segs[-1].end == pytest.approx(max(duration, times[-1] + step))
    for a, b in zip(segs, segs[1:]):
        assert a.end == b.start
    for s in segs:
        assert s.start < s.end
        assert s.frames and list(s.frames) == sorted(set(s.frames))
        assert all(0 <= f < n for f in s.frames)
    for i, t in enumerate(times):
        assert any(i in s.frames and s.start <= t <= s.end for s in segs), i


# --------------------------------------------------------------------------- shot_boundaries


def test_shot_boundaries_values() -> None:
    x = np.array([[1.0, 0], [2.0, 0], [0, 3.0], [0, -1.0], [0, 0], [0, 0]])
    assert shot_boundaries(x) == pytest.approx([0.0, 1.0, 2.0, 1.0, 0.0])


def test_shot_boundaries_shapes() -> None:
    assert shot_boundaries(np.ones((1, 4))).shape == (0,)
    assert shot_boundaries(np.ones((5, 4), np.float32)).shape == (4,)
    with pytest.raises(ValueError):
        shot_boundaries(np.ones(4))
    with pytest.raises(ValueError):
        shot_boundaries(np.array([[np.nan, 1.0], [1.0, 1.0]]))


# --------------------------------------------------------------------------- cuts


def test_cuts_at_known_shot_changes() -> None:
    step = 0.5
    times, feats = shots([5, 7, 4], step)
    segs = segment_frames(times, feats, 8.0, CUTS_ONLY)
    assert [s.frames for s in segs] == [tuple(range(0, 5)), tuple(range(5, 12)), tuple(range(12, 16))]
    true_cuts = [5 * step, 12 * step]  # first sample of each new shot
    for seg, cut in zip(segs[1:], true_cuts):
        assert abs(seg.start - cut) <= step
        assert seg.start == pytest.approx(cut - step / 2)  # halfway between the two samples
    check_invariants(segs, times, 8.0)


def test_no_cut_below_threshold() -> None:
    times, feats = shots([20], noise=0.2)
    segs = segment_frames(times, feats, 10.0, CUTS_ONLY)
    assert len(segs) == 1 and segs[0].frames == tuple(range(20))


# --------------------------------------------------------------------------- split


def test_long_static_shot_is_split() -> None:
    times, feats = shots([30], step=1.0)
    config = SegmentConfig(max_segment=8.0, min_duration=1.0)
    segs = segment_frames(times, feats, 30.0, config)
    assert len(segs) == 4  # 30 s into ceil(30 / 8) equal parts of 7.5 s
    assert all(s.end - s.start <= 8.0 + 1e-9 for s in segs)
    assert [len(s.frames) for s in segs] == [8, 7, 8, 7]
    check_invariants(segs, times, 30.0)


def test_split_parts_without_samples_borrow_the_nearest() -> None:
    times = [0.0, 6.0]
    feats = np.ones((2, D))
    segs = segment_frames(times, feats, 12.0, SegmentConfig(max_segment=2.0, min_duration=0.0))
    assert len(segs) == 6
    assert all(s.end - s.start <= 2.0 + 1e-9 for s in segs)
    # Parts 2 and 3 have no sample: their middles (3 s, 5 s) borrow the nearer one
    # (a tie at 3 s goes to the earlier sample).
    assert [s.frames for s in segs] == [(0,), (0,), (1,), (1,), (1,), (1,)]
    check_invariants(segs, times, 12.0)


def test_single_sample_piece_is_not_split() -> None:
    segs = segment_frames([0.0], np.ones((1, D)), 30.0, SegmentConfig(max_segment=8.0))
    assert segs == [Segment(start=0.0, end=30.0, frames=(0,))]


# --------------------------------------------------------------------------- merge


def test_short_flash_is_merged() -> None:
    times, feats = shots([10, 1, 10], step=0.5)
    feats[11:] = feats[:10]  # shot A, one-sample flash B, shot A again
    segs = segment_frames(times, feats, 10.5, SegmentConfig(max_segment=0.0, min_duration=1.0))
    assert len(segs) == 2
    assert 10 in segs[0].frames or 10 in segs[1].frames
    assert all(s.end - s.start >= 1.0 for s in segs)
    check_invariants(segs, times, 10.5)


@pytest.mark.parametrize("mirror", [False, True])
def test_merge_goes_to_the_most_similar_neighbour(mirror: bool) -> None:
    a, c, d = np.array([1.0, 0, 0]), np.array([0.3, 1.0, 0]), np.array([0, 1.0, 1.0])
    rows = [a] * 6 + [c] + [d] * 6  # C is cut from both sides but closer to D
    if mirror:
        rows = rows[::-1]
    feats = np.array(rows)
    times = [i * 0.5 for i in range(len(rows))]
    config = SegmentConfig(shot_threshold=0.25, max_segment=0.0, min_duration=1.0)
    assert (shot_boundaries(feats) > 0.25).sum() == 2
    segs = segment_frames(times, feats, 6.5, config)
    assert len(segs) == 2
    d_side = segs[0] if mirror else segs[1]
    assert 6 in d_side.frames and len(d_side.frames) == 7
    check_invariants(segs, times, 6.5)


def test_everything_short_collapses_to_one() -> None:
    times, feats = shots([1, 1, 1, 1], step=0.25)
    segs = segment_frames(times, feats, 0.0, SegmentConfig(min_duration=5.0))
    assert segs == [Segment(start=0.0, end=1.0, frames=(0, 1, 2, 3))]


def test_zero_length_piece_is_merged_even_without_min_duration() -> None:
    times = [0.0, 1.0, 1.0, 1.0, 2.0]  # cuts on both sides of sample 2 meet at t = 1.0
    feats = np.eye(5)
    segs = segment_frames(times, feats, 0.0, CUTS_ONLY)
    check_invariants(segs, times, 0.0)
    assert sorted(f for s in segs for f in s.frames) == [0, 1, 2, 3, 4]
    assert len(segs) == 4


# --------------------------------------------------------------------------- invariants and edges


@pytest.mark.parametrize("seed", range(12))
def test_invariants_on_random_inputs(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    step = float(rng.choice([0.25, 0.5, 1.0, 2.0]))
    times = list(np.cumsum(np.r_[rng.uniform(0, 1), rng.choice([0, step, step, 2 * step], n - 1)]))
    feats = rng.random((n, D)) ** 4  # sparse-ish: plenty of cuts
    duration = float(rng.choice([0.0, times[-1], times[-1] + 30.0]))
    config = SegmentConfig(
        shot_threshold=float(rng.uniform(0.05, 0.6)),
        max_segment=float(rng.choice([0.0, 1.5, 4.0, 8.0])),
        min_duration=float(rng.choice([0.0, 0.5, 1.0, 3.0])),
    )
    segs = segment_frames(times, feats, duration, config)
    positive = np.diff(times)[np.diff(times) > 0]
    last_step = float(np.median(positive)) if len(positive) else (config.min_duration or 1.0)
    assert segs[0].start == 0.0
    assert segs[-1].end == pytest.approx(max(duration, times[-1] + last_step))
    for a, b in zip(segs, segs[1:]):
        assert a.end == b.start
    for s in segs:
        assert s.start < s.end and s.frames
    for i, t in enumerate(times):
        assert any(i in s.frames and s.start <= t <= s.end for s in segs)


def test_one_sample() -> None:
    segs = segment_frames([0.0], np.ones((1, D)), 0.0, SegmentConfig())
    assert segs == [Segment(start=0.0, end=1.0, frames=(0,))]  # lasts min_duration
    segs = segment_frames([0.0], np.ones((1, D)), 3.0, SegmentConfig())
    assert segs == [Segment(start=0.0, end=3.0, frames=(0,))]


def test_duration_is_extended_past_the_last_sample() -> None:
    times, feats = shots([4], step=1.0)
    segs = segment_frames(times, feats, 2.0, CUTS_ONLY)  # metadata shorter than the stream
    assert segs[-1].end == 4.0


@pytest.mark.parametrize(
    "times, feats",
    [
        ([], np.zeros((0, D))),
        ([0.0, 1.0], np.zeros((3, D))),
        ([1.0, 0.5], np.zeros((2, D))),
        ([0.0, math.nan], np.zeros((2, D))),
        ([-1.0, 0.0], np.zeros((2, D))),
    ],
)
def test_bad_input(times, feats) -> None:
    with pytest.raises(ValueError):
        segment_frames(times, feats, 1.0, SegmentConfig())


def test_many_samples_stay_fast() -> None:
    # Two hours at 2 fps where every sample is a cut: thousands of merges.
    n = 14_400
    feats = np.eye(2)[np.arange(n) % 2]
    segs = segment_frames([i * 0.5 for i in range(n)], feats, 0.0, SegmentConfig())
    assert all(s.end - s.start >= 1.0 for s in segs)


# --------------------------------------------------------------------------- module boundaries


def test_segment_does_not_import_video_or_torch() -> None:
    tree = ast.parse(inspect.getsource(segment))
    imported = {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not any("video" in name or "torch" in name for name in imported)


def test_video_and_segment_load_without_torch() -> None:
    code = "import sys, captioner.video, captioner.segment; sys.exit('torch' in sys.modules)"
    root = Path(__file__).resolve().parent.parent
    assert subprocess.run([sys.executable, "-c", code], cwd=root, check=False).returncode == 0


def test_stable_runs_group_pieces_of_one_picture_only() -> None:
    Seg = segment.Segment
    a, b = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    pooled = np.stack([a, a * 1.01, a, b, b, a])  # frames 0-2: one picture; 3-4: another; 5: the first again
    segs = [Seg(0, 1, (0,)), Seg(1, 2, (1,)), Seg(2, 3, (2,)), Seg(3, 4, (3,)), Seg(4, 5, (4,)), Seg(5, 6, (5,))]
    assert segment.stable_runs(segs, pooled, 0.02) == [[0, 1, 2], [3, 4], [5]]  # only neighbours join
    assert segment.stable_runs(segs, pooled, 0.0) == [[i] for i in range(6)]  # off
    assert segment.stable_runs([], pooled, 0.02) == []
    # a slow drift: each step is small, but a run is measured from its first segment
    drift = np.stack([np.array([1.0, 0.15 * i, 0.0]) for i in range(6)])
    runs = segment.stable_runs(segs, drift, 0.02)
    assert len(runs) > 1 and sum(runs, []) == list(range(6))


# --------------------------------------------------------------------------- streaming


def _stream(times, feats, config, window=8, batch=3, duration=0.0, context=0.0):
    """Push frames in batches (with their global indexes as per-frame data); every window handed back."""
    seg = segment.StreamingSegmenter(config, window, context)
    windows, most = [], 0
    for s in range(0, len(times), batch):
        w = seg.push(times[s : s + batch], feats[s : s + batch], ids=np.arange(s, min(s + batch, len(times))),
                     names=[f"f{i}" for i in range(s, min(s + batch, len(times)))], skipped=None)
        most = max(most, len(seg))
        if w is not None:
            windows.append(w)
    windows.append(seg.finish(duration))
    return windows, most


def test_streaming_windows_cut_where_the_whole_sequence_cuts() -> None:
    times, feats = shots([9, 5, 14, 3, 11, 7])
    config = SegmentConfig(shot_threshold=0.25, max_segment=3.0, min_duration=1.0, stable_threshold=0.0)
    whole = segment_frames(times, feats, 0.0, config)
    windows, most = _stream(times, feats, config)
    assert len(windows) > 3 and most <= 8 + 3 + 8  # flat: a window, a batch and the kept last segment
    spans = [w.span(s) for w in windows for s in w.segments]
    assert spans[0][0] == 0.0 and spans[-1][1] == pytest.approx(whole[-1].end)
    assert all(a[1] == pytest.approx(b[0]) for a, b in zip(spans, spans[1:]))  # contiguous, in order
    whole_cuts = [s.start for s in whole[1:]]
    shot_cuts = [t for t in whole_cuts if any(t == pytest.approx((times[i] + times[i + 1]) / 2)
                                              for i in np.nonzero(shot_boundaries(feats) > 0.25)[0])]
    starts = [a for a, _ in spans]
    assert all(any(c == pytest.approx(s) for s in starts) for c in shot_cuts)  # every shot cut is a cut
    for w in windows:  # a segment's frames index the window's own per-frame data, and lie inside it
        for s in w.segments:
            start, end = w.span(s)
            for f in s.frames:
                i = int(w.data["ids"][f])
                assert w.times[f] == times[i] and w.data["names"][f] == f"f{i}"
                assert np.array_equal(w.pooled[f], feats[i]) and start - 1e-9 <= times[i] <= end + 1e-9
        assert "skipped" not in w.data


def test_streaming_groups_the_pieces_of_a_static_shot() -> None:
    times, feats = shots([30, 30], noise=0.001)
    config = SegmentConfig(shot_threshold=0.25, max_segment=2.0, min_duration=1.0, stable_threshold=0.02)
    windows, _ = _stream(times, feats, config, window=32, batch=16)
    assert len(windows) == 2  # the first shot's pieces, then the second's
    for w in windows:
        assert len(w.segments) >= 6 and w.runs == [list(range(len(w.segments)))]  # one caption each
        assert w.run_frames(w.runs[0]) == tuple(sorted({f for s in w.segments for f in s.frames}))


def test_run_frames_adds_the_scene_within_context() -> None:
    """``context`` seconds before a run's start and after its end bring the window's frames there in
    (times are absolute, segments relative to the window's offset); 0 keeps the run's own frames."""
    times = [10.5 + i for i in range(10)]  # one frame a second, the window starting at 10 s
    segs = [segment.Segment(0.0, 2.0, (0, 1)), segment.Segment(2.0, 3.0, (2,)), segment.Segment(3.0, 10.0, tuple(range(3, 10)))]
    w = segment.Window(segs, 10.0, [[0], [1], [2]], times, np.zeros((10, 4)), {})
    assert w.run_frames([1]) == w.run_frames([1], 0.0) == (2,)
    assert w.run_frames([1], 1.0) == (1, 2, 3)  # 11.5 and 13.5 lie within 1 s of [12, 13]
    assert w.run_frames([1], 3.0) == tuple(range(0, 6))
    assert w.run_frames([0, 1], 0.4) == (0, 1, 2)  # nothing within 0.4 s but its own frames
    assert w.run_frames([2], 100.0) == tuple(range(10))  # never past the window's frames


def test_streaming_keeps_the_scene_before_each_window() -> None:
    """With ``context`` a window's first segments see the frames before them that an earlier window
    handed back, as a segment inside a window does; those frames are in no segment twice, the cuts
    are those of a segmenter without context, and the buffer stays flat."""
    times, feats = shots([9, 5, 14, 3, 11, 7])  # a sample every 0.5 s
    config = SegmentConfig(shot_threshold=0.25, max_segment=3.0, min_duration=1.0, stable_threshold=0.0)
    ctx = 1.5
    plain, _ = _stream(times, feats, config)
    windows, most = _stream(times, feats, config, context=ctx)
    assert [w.span(s) for w in windows for s in w.segments] == [w.span(s) for w in plain for s in w.segments]
    assert most <= 8 + 3 + 8 + 3  # ... plus 1.5 s of frames
    owned = [int(w.data["ids"][f]) for w in windows for s in w.segments for f in s.frames]
    assert owned == list(range(len(times)))  # every frame in exactly one segment, in order
    lead = 0
    for w in windows:
        for k, s in enumerate(w.segments):
            start, end = w.span(s)
            seen = {int(w.data["ids"][f]) for f in w.run_frames([k], ctx)}
            assert {i for i, t in enumerate(times) if start - ctx - 1e-9 <= t < start} <= seen  # the scene before
            assert all(start - ctx - 1e-9 <= times[i] <= end + ctx + 1e-9 for i in seen)
        lead += min(s.frames[0] for s in w.segments) > 0
    assert lead >= 2  # windows after the first did carry frames from before their first segment


def test_streaming_needs_a_frame() -> None:
    with pytest.raises(ValueError, match="no frames"):
        segment.StreamingSegmenter(SegmentConfig()).finish(1.0)


@pytest.mark.parametrize("max_segment, min_duration, step", [(0.5, 0.5, 1.0), (8.0, 1.0, 10.0), (0.8, 0.8, 1.0)])
def test_streaming_samples_further_apart_than_the_longest_segment(max_segment, min_duration, step) -> None:
    """Samples further apart than --max-segment (1 fps under 0.5; --fast's key frames every 10 s of a static
    lecture): the part kept for the next window could hold only a sample from before it, lent by ``_split``, and
    the 127th frame ended the run in a traceback ("sample times must be finite and non-negative")."""
    config = SegmentConfig(max_segment=max_segment, min_duration=min_duration)
    streamer = segment.StreamingSegmenter(config, window=64)
    spans = []
    for i in range(300):
        window = streamer.push([i * step], np.ones((1, 8)))
        spans += [window.span(s) for s in window.segments] if window else []
    last = streamer.finish(300 * step)
    spans += [last.span(s) for s in last.segments]
    assert spans[0][0] == 0.0 and spans[-1][1] == 300 * step
    assert all(a[1] == pytest.approx(b[0]) and a[0] < a[1] for a, b in zip(spans, spans[1:]))


def test_a_cut_goes_no_earlier_than_the_first_frame_after_the_sample_before() -> None:
    """A screen recording stores a frame only when the screen changes: samples at 0 and 20 s with no frame between
    were cut at 10 s, the next cue ten seconds before its picture. ``since`` (the reader's) moves the cut to 20 s;
    with frames between (since just after the first sample), half-way as before."""
    pooled = np.array([[1.0, 0.0], [0.0, 1.0]])
    config = SegmentConfig(max_segment=0, min_duration=0)
    assert [s.start for s in segment_frames([0.0, 20.0], pooled, 30.0, config)] == [0.0, 10.0]
    assert [s.start for s in segment_frames([0.0, 20.0], pooled, 30.0, config, [0.0, 20.0])] == [0.0, 20.0]
    assert [s.start for s in segment_frames([0.0, 20.0], pooled, 30.0, config, [0.0, 0.04])] == [0.0, 10.0]
    assert [s.start for s in segment_frames([0.0, 20.0], pooled, 30.0, config, [0.0, 15.0])] == [0.0, 15.0]
    with pytest.raises(ValueError, match="since"):
        segment_frames([0.0, 20.0], pooled, 30.0, config, [0.0])
    streaming = segment.StreamingSegmenter(config, window=2)
    assert streaming.push([0.0], pooled[:1], [None]) is None
    done = streaming.push([20.0], pooled[1:], [20.0])
    rest = streaming.finish(30.0)
    assert [done.span(s) for s in done.segments] + [rest.span(s) for s in rest.segments] == [(0.0, 20.0), (20.0, 30.0)]
