"""Video -> cues through the real pipeline (real encoder, tiny decoder, generated videos)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import srt

from captioner.config import CaptionConfig, SamplingConfig, SegmentConfig
from captioner.errors import VideoError
from captioner.pipeline import Captioner, Progress
from videos import make_video


def test_cues_cut_at_shot_changes(tmp_path, tiny_model):
    # each shot from its own frames (no --context): with its scene around it, the tiny decoder says
    # "red" of all three shots, and one 9 s caption is shown as two equal cues (max_segment 8)
    captioner = Captioner(replace(CaptionConfig(), model_dir=tiny_model, sampling=SamplingConfig(context_seconds=0)))
    video = make_video(tmp_path / "shots.mp4", [("red", 3), ("checker", 3), ("blue", 3)], fps=10)
    fps = captioner.config.sampling.fps
    result = captioner.caption_video(video.path)
    assert result.frames_sampled == pytest.approx(video.duration * fps, abs=1)
    boundaries = [c.start for c in result.cues[1:]]
    # the shots look different, so their captions differ and cues cannot all merge
    assert len(result.cues) >= 2, result.cues
    # every cue boundary sits at a real cut, within one sample interval (no invented cuts)
    for b in boundaries:
        assert any(abs(b - cut) <= 1.0 / fps + 1e-6 for cut in video.cut_times), (boundaries, video.cut_times)
    assert result.cues[0].start == 0.0
    assert result.cues[-1].end <= result.duration + 1e-6
    for a, b in zip(result.cues, result.cues[1:]):
        assert a.end <= b.start and a.text != b.text  # ordered, non-overlapping, equal neighbours merged


def test_segments_follow_shots_exactly(tmp_path, tiny_model):
    """Segmentation alone (before captions merge): one segment per shot."""
    from captioner.segment import segment_frames

    cap = Captioner(replace(CaptionConfig(), model_dir=tiny_model, sampling=SamplingConfig(fps=2)))
    video = make_video(tmp_path / "s.avi", [("red", 4), ("stripes", 4), ("green", 4)], fps=10)
    from captioner.video import iter_frames

    frames = list(iter_frames(video.path, 2))
    enc = cap.encoder.encode([f.image for f in frames])
    segs = segment_frames([f.time for f in frames], enc.pooled, video.duration, cap.config.segments)
    starts = [s.start for s in segs[1:]]
    assert len(segs) == 3
    for got, cut in zip(starts, video.cut_times):
        assert abs(got - cut) <= 0.5 + 1e-6


def test_long_static_shot_gets_several_segments_that_merge(tmp_path, tiny_model):
    cfg = replace(CaptionConfig(), model_dir=tiny_model, segments=SegmentConfig(max_segment=3.0, min_duration=1.0))
    cap = Captioner(cfg)
    video = make_video(tmp_path / "static.mp4", [("grey", 10)], fps=10)
    seen = []
    result = cap.caption_video(video.path, progress=seen.append)
    stages = {p.stage for p in seen}
    assert stages == {"frames", "segments"}
    seg_reports = [p for p in seen if p.stage == "segments"]
    assert seg_reports[-1].total >= 4  # 10 s / 3 s -> at least 4 segments were captioned
    # the frames are the same picture, so the captions agree: one caption, shown as equal cues of at most
    # max_segment (--max-segment is the longest cue, also after merging)
    assert len({c.text for c in result.cues}) == 1 and len(result.cues) == 4
    assert all(c.end - c.start <= 3.0 for c in result.cues)
    assert all(a.end == b.start for a, b in zip(result.cues, result.cues[1:]))
    assert result.cues[0].start == 0.0 and result.cues[-1].end == pytest.approx(result.duration, abs=0.05)


def test_srt_from_pipeline_parses(tmp_path, captioner):
    from captioner.subtitles import format_srt

    video = make_video(tmp_path / "v.mp4", [("red", 2), ("gradient", 2)], fps=10)
    result = captioner.caption_video(video.path)
    subs = list(srt.parse(format_srt(result.cues)))
    assert [s.index for s in subs] == list(range(1, len(subs) + 1))
    assert all(s.content.strip() for s in subs)
    assert subs[-1].end.total_seconds() <= result.duration + 1e-3


def test_unreadable_video_raises_video_error(tmp_path, captioner):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    with pytest.raises(VideoError, match="bad.mp4"):
        captioner.caption_video(bad)


def test_caption_images_gives_text(captioner):
    from videos import shot_frame

    caps = captioner.caption_images([shot_frame("red", 0, (64, 48)), shot_frame("checker", 0, (100, 30))])
    assert len(caps) == 2 and all(isinstance(c.text, str) for c in caps)
    assert all("<unk>" not in c.text for c in caps)


def test_streaming_windows_cut_where_whole_video_cuts(tmp_path, tiny_model, monkeypatch):
    """Captioning in windows (flat memory) finds the same shot changes as all at once.

    Captions are replaced by a counter so no cues merge: the cue boundaries are then
    exactly the segment boundaries, independent of the (random) test decoder.
    """
    from captioner.pipeline import Caption

    shots = [("red", 5), ("checker", 7), ("blue", 4), ("stripes", 9), ("green", 5)]
    video = make_video(tmp_path / "long.avi", shots, fps=4, size=(32, 24))
    results = {}
    for window in (8, 10_000):
        counter = iter(range(10_000))
        monkeypatch.setattr(Captioner, "caption_batch",
                            lambda self, items, **_: [Caption(f"cue {next(counter)}", 1.0) for _ in items])
        cfg = replace(CaptionConfig(), model_dir=tiny_model,
                      sampling=SamplingConfig(fps=2, window_frames=window),
                      segments=SegmentConfig(max_segment=4.0, min_duration=1.0, stable_threshold=0.0))
        results[window] = Captioner(cfg).caption_video(video.path).cues
    for cues in results.values():
        starts = [c.start for c in cues]
        assert starts[0] == 0.0 and cues[-1].end == pytest.approx(video.duration, abs=0.5)
        assert all(a.end == b.start for a, b in zip(cues, cues[1:]))  # contiguous
        assert all(c.end - c.start <= 4.0 + 1.0 + 1e-6 for c in cues)  # max_segment (+ a merged short piece)
        for cut in video.cut_times:
            assert any(abs(s - cut) <= 0.5 + 1e-6 for s in starts), (cut, starts)
    assert abs(len(results[8]) - len(results[10_000])) <= 2


def test_fast_mode_decodes_key_frames_only(tmp_path, tiny_model):
    pytest.importorskip("av", reason="PyAV not installed: --fast is unavailable")
    from captioner.video import iter_keyframes

    video = make_video(tmp_path / "k.mp4", [("red", 4), ("checker", 4)], fps=10)
    keys = list(iter_keyframes(video.path, fps=10))
    assert 1 <= len(keys) < 80  # far fewer than the 80 frames a full decode reads
    assert keys[0].time == 0.0 and all(a.time < b.time for a, b in zip(keys, keys[1:]))
    cap = Captioner(replace(CaptionConfig(), model_dir=tiny_model, sampling=SamplingConfig(fps=1, fast=True)))
    result = cap.caption_video(video.path)
    spaced = [k for i, k in enumerate(keys) if i == 0 or k.time >= 1.0]  # at most one key frame per second
    assert 1 <= result.frames_sampled <= len(keys) and result.frames_sampled <= max(len(spaced), int(video.duration) + 1)
    assert result.cues and result.cues[0].start == 0.0
    assert result.cues[-1].end == pytest.approx(video.duration, abs=0.2)


def test_fast_mode_rejects_garbage(tmp_path, captioner):
    pytest.importorskip("av")
    from captioner.video import iter_keyframes

    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00garbage" * 500)
    with pytest.raises(VideoError, match="bad.mp4"):
        list(iter_keyframes(bad, 1.0))


def test_pieces_of_a_static_shot_are_captioned_once(tmp_path, tiny_model, monkeypatch):
    """A long unchanging shot is split every max_segment seconds, but searched for one caption, not one per piece."""
    from captioner.pipeline import Caption

    video = make_video(tmp_path / "static.avi", [("red", 12), ("checker", 12)], fps=4, size=(32, 24))
    counts = {}
    for threshold in (0.0, 0.02):
        asked = []
        monkeypatch.setattr(Captioner, "caption_batch",
                            lambda self, items, **_: asked.extend(items) or [Caption("x", 1.0) for _ in items])
        cfg = replace(CaptionConfig(), model_dir=tiny_model, sampling=SamplingConfig(fps=2),
                      segments=SegmentConfig(max_segment=4.0, stable_threshold=threshold))
        cues = Captioner(cfg).caption_video(video.path).cues
        counts[threshold] = len(asked)
        assert cues[0].start == 0.0 and cues[-1].end == pytest.approx(video.duration, abs=0.5)
    assert counts[0.0] >= 6  # 2 shots of 12 s, pieces of at most 4 s
    assert counts[0.02] == 2  # one search per shot


def test_a_short_shot_is_captioned_with_its_scene(tmp_path, tiny_model, monkeypatch):
    """With ``context_seconds`` a shot of one second is captioned from its frame and those of the
    neighbouring shots within that time; with 0, from its own frames only. Cues stay per shot."""
    from captioner.pipeline import Caption

    video = make_video(tmp_path / "scene.avi", [("red", 6), ("checker", 1), ("blue", 6)], fps=4, size=(32, 24))
    frames, starts = {}, {}
    for context in (0.0, 2.0):
        asked = []
        monkeypatch.setattr(Captioner, "caption_batch",
                            lambda self, items, **_: asked.extend(items) or [Caption(f"c{i}", 1.0) for i in range(len(items))])
        cfg = replace(CaptionConfig(), model_dir=tiny_model, sampling=SamplingConfig(fps=1, context_seconds=context),
                      segments=SegmentConfig(max_segment=8.0, min_duration=0.5, stable_threshold=0.0))
        cues = Captioner(cfg).caption_video(video.path).cues
        frames[context] = [len(probs) for _, probs in asked]  # frames each caption saw
        starts[context] = [c.start for c in cues]
    assert starts[0.0] == starts[2.0] and len(frames[0.0]) == len(frames[2.0]) == 3  # the same three shots
    assert frames[0.0][1] == 1 and frames[2.0][1] == 1 + 2 + 2  # the short shot: its frame, then 2 s either side
    assert all(b > a for a, b in zip(frames[0.0], frames[2.0]))  # the long shots see their neighbours too


def test_greedy_reports_real_confidences(tmp_path, tiny_model):
    """--beam-size 1: every cue and photo gets its geometric-mean word probability (was 1.0 for cues, NaN for photos)."""
    from videos import shot_frame

    cfg = CaptionConfig()
    cap = Captioner(replace(cfg, model_dir=tiny_model, decoding=replace(cfg.decoding, beam_size=1)))
    photos = cap.caption_images([shot_frame("red", 0, (64, 48)), shot_frame("checker", 0, (100, 30))])
    assert all(0.0 < c.confidence < 1.0 for c in photos), photos
    video = make_video(tmp_path / "g.mp4", [("red", 2), ("checker", 2)], fps=10)
    cues = cap.caption_video(video.path).cues
    assert cues and all(0.0 < c.confidence < 1.0 for c in cues), cues


def test_threads_beyond_the_cpus_are_not_used(tiny_model, caplog, monkeypatch):
    # more threads than CPUs only queue: on 2 CPUs --threads 16 made a 10 s clip take 48 s instead of 1.2 s
    import captioner.pipeline as pipeline

    monkeypatch.setattr(pipeline, "usable_cpus", lambda: 2)
    with caplog.at_level("WARNING", logger="captioner.pipeline"):
        cap = Captioner(replace(CaptionConfig(), model_dir=tiny_model, threads=16))
    assert cap.config.threads == 2 and cap.encoder.threads == 2
    assert "--threads 16: this process may use 2 CPU(s); using 2" in caplog.text
    caplog.clear()
    assert Captioner(replace(CaptionConfig(), model_dir=tiny_model, threads=2)).config.threads == 2
    assert "--threads" not in caplog.text


def test_an_interrupted_wait_leaves_the_loader_running_to_be_waited_for(tiny_model, monkeypatch):
    """Ctrl-C or SIGTERM during Thread.join (Python 3.11) marked the still-running loader as stopped; the
    interpreter then exited without waiting for it and aborted (exit 134) while it was in native code."""
    import signal
    import threading

    release = threading.Event()
    original = Captioner._load

    def slow_load(m):
        release.wait(5)
        original(m)

    monkeypatch.setattr(Captioner, "_load", staticmethod(slow_load))
    cap = Captioner(replace(CaptionConfig(), model_dir=tiny_model), wait=False)

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        with pytest.raises(KeyboardInterrupt):
            cap.wait()
        assert cap._loader.is_alive()  # still known to be running: the interpreter will wait for it
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        release.set()
    cap.wait()
    assert cap.decoder is not None


def test_a_failure_the_caller_keeps_does_not_keep_the_video_open(tmp_path, tiny_model):
    """A progress callback that raises (a user's Cancel): the kept exception's traceback held the reader's
    generator, and with it the open file, for as long as the exception lived (a REPL keeps the last ones)."""
    import os

    video = make_video(tmp_path / "long.mp4", [("red", 6.0), ("blue", 6.0)], fps=10).path
    captioner = Captioner(replace(CaptionConfig(model_dir=tiny_model),
                                  sampling=SamplingConfig(fps=10.0, window_frames=16)))

    def cancel(progress: Progress) -> None:
        raise RuntimeError("cancelled")

    def open_copies() -> int:
        fds = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                fds.append(os.readlink(f"/proc/self/fd/{fd}"))
            except OSError:
                pass
        return fds.count(str(video))

    kept = []
    for _ in range(2):
        try:
            captioner.caption_video(video, progress=cancel)
        except RuntimeError as exc:
            kept.append(exc)
    assert len(kept) == 2 and all(e.__traceback__ is not None for e in kept)
    assert open_copies() == 0


def test_overlapping_decodes_give_the_applications_blas_threads_back():
    """Two threads decoding at once (or a decode beside a search query) each saved the other's limit as the
    original and restored them out of order: the application's own NumPy was left on one BLAS thread for good."""
    from threadpoolctl import ThreadpoolController, threadpool_info

    from captioner.native import blas_limited

    def blas_threads() -> list[int]:
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    before = blas_threads()
    if not before or max(before) < 2:
        pytest.skip("BLAS runs one thread here: nothing to give back")
    # a decode (the Captioner's controller) and a search query (embed.py, its own) in two threads
    first, second = blas_limited(1, ThreadpoolController()), blas_limited(1)
    first.__enter__()
    second.__enter__()  # the other thread's work begins while the first runs
    assert max(blas_threads()) == 1
    first.__exit__(None, None, None)  # ... and ends after it
    assert max(blas_threads()) == 1  # still decoding
    second.__exit__(None, None, None)
    assert blas_threads() == before


def test_a_variable_rate_slideshow_ends_where_its_last_picture_does(tmp_path, captioner):
    """Four pictures shown 2, 30, 1 and 0.04 s: the header's frame count over its average rate says 34.04 s, the
    stream 33.04 s. Normal mode's cues ran to 34.04 s (--fast's to 33.04 s)."""
    import numpy as np

    from videos import pyav_video

    images = [np.full((48, 64, 3), 60 * i, np.uint8) for i in range(4)]
    path = pyav_video(tmp_path / "slides.mp4", "libx264", images, rate=25, pts_ms=[0, 2000, 32000, 33000])
    for fast in (False, True):
        run = Captioner(replace(captioner.config, sampling=replace(captioner.config.sampling, fast=fast)))
        result = run.caption_video(path)
        assert result.duration == pytest.approx(33.04, abs=0.01), fast
        assert result.cues[-1].end == pytest.approx(33.04, abs=0.01), fast


@pytest.mark.parametrize("feats, says", [
    ("nan", "features 0: must be finite numbers, got NaN or infinity"),  # was the caption '' with confidence nan
    ("none", "features 0: expected an array of shape (vectors, 1280) with at least one vector, got none"),
    ("row", "features 0: expected an array of shape (vectors, 1280), got shape (1280,); one vector: feats[None]"),
    ("narrow", "features 0: expected an array of shape (vectors, 1280), got shape (49, 512)"),
])
def test_caption_features_says_what_features_it_takes(captioner, feats, says):
    """NaN features were captioned '' with confidence nan, none at all printed NumPy's RuntimeWarnings to stderr
    (and captioned nothing), one vector without its axis raised IndexError deep in the decoder."""
    import warnings

    import numpy as np

    given = {"nan": np.full((49, 1280), np.nan, np.float32), "none": np.zeros((0, 1280), np.float32),
             "row": np.zeros(1280, np.float32), "narrow": np.zeros((49, 512), np.float32)}[feats]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing on stderr on the way
        with pytest.raises(ValueError) as caught:
            captioner.caption_features(given, video=True)
    assert str(caught.value) == says


def test_a_library_result_records_the_video_by_its_absolute_path(tmp_path, captioner, monkeypatch):
    """caption_video("b.mp4") then write_subtitles: the JSON said "b.mp4", which a search run from elsewhere could
    not find (only the CLI made it absolute); README says the JSON records the absolute path."""
    from videos import make_video

    make_video(tmp_path / "b.mp4", [("red", 1.0)])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PWD", str(tmp_path))
    assert captioner.caption_video("b.mp4").metadata()["video"]["path"] == str(tmp_path / "b.mp4")


_FORKED: list = []  # the Captioner a forked child inherits (it cannot be pickled to it)


def _model_in_child():
    # the model as the child has it: the decoder's words (not a caption: inference in a forked child after the
    # parent's ONNX Runtime or torch thread pools ran is not reliable, whatever captioner does)
    return _FORKED[0].vocab.decode(range(8))


def test_a_captioner_still_loading_when_the_process_forks_has_its_model_in_the_child(tmp_path, tiny_model,
                                                                                   monkeypatch):
    """Captioner(wait=False), then a fork (a multiprocessing pool, as on Linux by default before Python 3.14): the
    loader thread is not in the child, which waited for the model for ever."""
    import multiprocessing
    import time

    real_load = Captioner._load

    def slow_load(m):  # still loading when the pool forks
        time.sleep(1.5)
        real_load(m)

    monkeypatch.setattr(Captioner, "_load", staticmethod(slow_load))
    loading = Captioner(replace(CaptionConfig(), model_dir=tiny_model), wait=False)
    _FORKED[:] = [loading]
    try:
        with multiprocessing.get_context("fork").Pool(1) as pool:
            words = pool.apply_async(_model_in_child).get(timeout=60)
    finally:
        _FORKED.clear()
    assert words == loading.vocab.decode(range(8))


def test_a_captioner_cannot_be_pickled_and_says_what_to_do(captioner):
    """A spawn worker given one failed deep in multiprocessing: "Can't pickle local object 'CDLL.__init__...'"."""
    import pickle

    with pytest.raises(TypeError, match="^a Captioner cannot be pickled .*make one in each worker process"):
        pickle.dumps(captioner)


def test_progress_says_the_total_is_unknown_until_the_end_when_the_stream_has_no_frame_count(tmp_path, tiny_model):
    """A raw .h264 (no container, no frame count): every progress call said total == done, 100 % all along."""
    import numpy as np

    from captioner.video import open_video, sample_times_hint
    from videos import pyav_video

    images = [np.full((48, 64, 3), (i * 5) % 256, np.uint8) for i in range(40)]
    path = pyav_video(tmp_path / "clip.h264", "libx264", images, rate=10, gop=10, container="h264")
    assert sample_times_hint(open_video(path), 10.0) == 0
    calls = []
    cap = Captioner(replace(CaptionConfig(), model_dir=tiny_model, sampling=SamplingConfig(fps=10.0)))
    cap.caption_video(path, progress=lambda p: calls.append((p.stage, p.done, p.total)))
    frames = [(done, total) for stage, done, total in calls if stage == "frames"]
    assert len(frames) >= 2 and all(total == 0 for _, total in frames[:-1]), frames
    assert frames[-1][0] == frames[-1][1] > 16


def test_the_json_path_is_the_video_captioned_after_a_change_of_folder(tmp_path, tiny_model, monkeypatch):
    """VideoResult.metadata() made a relative name absolute when called: after os.chdir the JSON named another file."""
    make_video(tmp_path / "clip.mp4", [("red", 1.0)])
    monkeypatch.chdir(tmp_path)
    result = Captioner(replace(CaptionConfig(), model_dir=tiny_model)).caption_video("clip.mp4")
    monkeypatch.chdir(tmp_path.parent)
    assert result.metadata()["video"]["path"] == str(tmp_path / "clip.mp4")


def test_min_confidence_compares_the_confidence_the_json_shows(tmp_path, tiny_model, monkeypatch):
    """--min-confidence 0.585 left out a cue the JSON shows as 0.585: merged cues' confidences (duration-weighted
    means, 0.58497) were compared unrounded."""
    from captioner import pipeline

    real = pipeline.merge_cues
    monkeypatch.setattr(pipeline, "merge_cues", lambda cues: [replace(c, confidence=0.58497) for c in real(cues)])
    video = make_video(tmp_path / "clip.mp4", [("red", 1.0)]).path
    config = replace(CaptionConfig(), model_dir=tiny_model)
    config = replace(config, output=replace(config.output, min_confidence=0.585))
    cues = Captioner(config).caption_video(video).cues
    assert len(cues) == 1  # kept (was left out: no cues)


def test_a_captioner_can_be_copied(captioner, tmp_path):
    """copy.copy(captioner) (to swap a part on the copy alone) raised "cannot be pickled" once pickling said why."""
    import copy

    video = make_video(tmp_path / "clip.mp4", [("red", 1.0)]).path
    twin = copy.copy(captioner)
    assert twin is not captioner and twin.decoder is captioner.decoder
    assert [c.text for c in twin.caption_video(video).cues] == [c.text for c in captioner.caption_video(video).cues]
