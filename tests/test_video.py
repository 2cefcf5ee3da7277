"""Tests for captioner.video on tiny synthetic files (see tests/videos.py)."""

from __future__ import annotations

import json
import os
import struct
import logging
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from captioner import video
from captioner.errors import VideoError
from captioner.video import Frame, VideoInfo, iter_frames, open_video, sample_times_hint
from videos import (
    corrupt_middle,
    joined_recordings,
    make_audio,
    make_timed_video,
    make_video,
    patch_avi_header,
    pyav_video,
    rotate_video,
    shifted_copy,
    shot_frame,
    truncate_video,
    write_garbage,
)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory):
    """3 s at 10 fps: 1 s red, 1 s green, 1 s blue (30 frames)."""
    folder = tmp_path_factory.mktemp("clip")
    return make_video(folder / "clip.mp4", [("red", 1.0), ("green", 1.0), ("blue", 1.0)])


@pytest.fixture(scope="module")
def clip_avi(tmp_path_factory: pytest.TempPathFactory):
    """Same content as ``clip`` as MJPG/AVI, whose header is easy to patch."""
    folder = tmp_path_factory.mktemp("clip_avi")
    return make_video(folder / "clip.avi", [("red", 1.0), ("green", 1.0), ("blue", 1.0)])


class SpyCapture:
    """Wraps a real capture and counts calls, to see what iter_frames decodes."""

    def __init__(self, inner):
        self.inner = inner
        self.grabs = 0
        self.retrieves = 0
        self.released = False

    def grab(self):
        self.grabs += 1
        return self.inner.grab()

    def retrieve(self):
        self.retrieves += 1
        return self.inner.retrieve()

    def release(self):
        self.released = True
        self.inner.release()

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> list[SpyCapture]:
    """Every capture iter_frames opens, wrapped in a SpyCapture."""
    opened: list[SpyCapture] = []
    real_open = video._open_capture

    def open_spy(path, timeout_s):
        cap = SpyCapture(real_open(path, timeout_s))
        opened.append(cap)
        return cap

    monkeypatch.setattr(video, "_open_capture", open_spy)
    return opened


class FakeCapture:
    """A capture with scripted metadata and timestamps, for lies no real file tells."""

    def __init__(self, n, *, fps=10.0, count=None, msec=None, grab_fails=(), retrieve_ok=True):
        self.n = n
        self.props = {
            video.cv2.CAP_PROP_FPS: fps,
            video.cv2.CAP_PROP_FRAME_COUNT: n if count is None else count,
            video.cv2.CAP_PROP_FRAME_WIDTH: 8,
            video.cv2.CAP_PROP_FRAME_HEIGHT: 6,
        }
        self.msec = msec  # function of the frame index, or None for "backend has no clock" (-1)
        self.grab_fails = set(grab_fails)  # grab() call numbers (0-based) that fail
        self.retrieve_ok = retrieve_ok
        self.calls = 0
        self.index = -1

    def isOpened(self):
        return True

    def get(self, prop):
        if prop == video.cv2.CAP_PROP_POS_MSEC:
            return -1.0 if self.msec is None else float(self.msec(self.index))
        return float(self.props.get(prop, 0.0))

    def grab(self):
        call = self.calls
        self.calls += 1
        if call in self.grab_fails or self.index + 1 >= self.n:
            return False
        self.index += 1
        return True

    def retrieve(self):
        if not self.retrieve_ok:
            return False, None
        return True, np.full((6, 8, 3), (255, 0, 0), np.uint8)  # pure blue in BGR

    def release(self):
        pass


def fake(monkeypatch: pytest.MonkeyPatch, cap: FakeCapture, tmp_path: Path) -> Path:
    """Make iter_frames read ``cap`` for a (real, non-empty) dummy file."""
    monkeypatch.setattr(video, "_open_capture", lambda path, timeout_s: cap)
    path = tmp_path / "fake.mp4"
    path.write_bytes(b"x")
    return path


# --------------------------------------------------------------------------- metadata


def test_open_video_reports_metadata(clip) -> None:
    info = open_video(clip.path)
    assert info == VideoInfo(path=clip.path, width=64, height=48, fps=10.0,
                             frame_count=30, duration=3.0)


def test_open_video_accepts_str(clip) -> None:
    assert open_video(str(clip.path)).frame_count == 30


@pytest.mark.parametrize("fps, expected", [(1.0, 3), (2.0, 6), (3.0, 9), (10.0, 30), (25.0, 30)])
def test_sample_times_hint(clip, fps: float, expected: int) -> None:
    assert sample_times_hint(open_video(clip.path), fps) == expected


def test_sample_times_hint_unknown_is_zero(tmp_path: Path) -> None:
    unknown = VideoInfo(path=tmp_path, width=1, height=1, fps=0.0, frame_count=0, duration=0.0)
    assert sample_times_hint(unknown, 1.0) == 0


# --------------------------------------------------------------------------- sampling


@pytest.mark.parametrize("fps", [1.0, 2.0, 3.0, 4.0])
def test_sampling_count_and_times(clip, fps: float) -> None:
    frames = list(iter_frames(clip.path, fps))
    assert abs(len(frames) - clip.duration * fps) <= 1
    assert len(frames) == sample_times_hint(open_video(clip.path), fps)
    times = [f.time for f in frames]
    assert times == sorted(times)
    interval = 1.0 / fps
    for k, frame in enumerate(frames):
        assert abs(frame.time - k * interval) <= interval
        # With timestamps from the stream, the frame's time matches its index exactly.
        assert frame.time == pytest.approx(frame.index / clip.fps, abs=1e-6)
    assert [f.index for f in frames] == sorted({f.index for f in frames})


def test_first_frame_always_sampled(clip) -> None:
    first = next(iter(iter_frames(clip.path, 0.1)))
    assert (first.index, first.time) == (0, 0.0)


def test_frames_are_rgb_uint8(clip) -> None:
    frames = list(iter_frames(clip.path, 1.0))
    assert all(f.image.shape == (48, 64, 3) and f.image.dtype == np.uint8 for f in frames)
    # Top-left corner is away from the moving noise square: red, green, blue shots, in RGB order.
    means = [f.image[:8, :8].reshape(-1, 3).mean(axis=0) for f in frames]
    assert [int(np.argmax(m)) for m in means] == [0, 1, 2]


def test_only_sampled_frames_are_retrieved(clip, spy: list[SpyCapture]) -> None:
    frames = list(iter_frames(clip.path, 2.0))
    (cap,) = spy
    assert cap.grabs >= clip.frame_count  # every frame decoded (plus the final failing grabs)
    assert cap.retrieves == len(frames) == 6
    assert cap.released


def test_iteration_streams_and_releases(clip, spy: list[SpyCapture]) -> None:
    frames = iter_frames(clip.path, 1.0)
    assert not spy  # nothing is opened until iteration starts
    first = next(frames)
    (cap,) = spy
    assert first.index == 0 and cap.grabs == 1
    frames.close()
    assert cap.released


def test_one_frame_video(tmp_path: Path) -> None:
    one = make_video(tmp_path / "one.mp4", [("green", 0.1)])
    assert one.frame_count == 1
    frames = list(iter_frames(one.path, 1.0))
    assert [(f.index, f.time) for f in frames] == [(0, 0.0)]
    assert sample_times_hint(open_video(one.path), 1.0) == 1


def test_video_slower_than_requested_fps_gives_every_frame(tmp_path: Path) -> None:
    slow = make_video(tmp_path / "slow.mp4", [("red", 1.0), ("blue", 1.0)], fps=5)
    frames = list(iter_frames(slow.path, 10.0))
    assert [f.index for f in frames] == list(range(10))
    assert [f.time for f in frames] == pytest.approx([i * 0.2 for i in range(10)])


def test_avi_container(clip_avi) -> None:
    frames = list(iter_frames(clip_avi.path, 1.0))
    assert [f.index for f in frames] == [0, 10, 20]


def test_invalid_arguments(clip) -> None:
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError):
            iter_frames(clip.path, bad)
    with pytest.raises(ValueError):
        iter_frames(clip.path, 1.0, max_frame_seconds=0)


# --------------------------------------------------------------------------- lying metadata


@pytest.mark.parametrize("count", [0, 5, 1000])
def test_wrong_frame_count_is_ignored(clip_avi, tmp_path: Path, count: int) -> None:
    liar = patch_avi_header(clip_avi.path, tmp_path / f"n{count}.avi", frame_count=count)
    assert open_video(liar).frame_count == count
    frames = list(iter_frames(liar, 10.0))
    assert len(frames) == clip_avi.frame_count


def test_absurd_fps_is_treated_as_unknown(clip_avi, tmp_path: Path) -> None:
    liar = patch_avi_header(clip_avi.path, tmp_path / "f1000.avi", fps=1000)
    info = open_video(liar)
    assert (info.fps, info.duration) == (0.0, 0.0)
    assert sample_times_hint(info, 1.0) == 0
    # FFmpeg takes its timestamps from the same lie (1 ms apart): still survives.
    frames = list(iter_frames(liar, 1000.0))
    assert len(frames) == clip_avi.frame_count
    assert frames[-1].time == pytest.approx(0.029)


def test_zero_fps_falls_back(clip_avi, tmp_path: Path) -> None:
    liar = patch_avi_header(clip_avi.path, tmp_path / "f0.avi", fps=0)
    frames = list(iter_frames(liar, 25.0))
    assert len(frames) == clip_avi.frame_count


def test_no_timestamps_uses_index_over_fps(monkeypatch, tmp_path: Path) -> None:
    path = fake(monkeypatch, FakeCapture(20, fps=10.0), tmp_path)
    frames = list(iter_frames(path, 2.0))
    assert [f.index for f in frames] == [0, 5, 10, 15]
    assert [f.time for f in frames] == pytest.approx([0.0, 0.5, 1.0, 1.5])
    assert frames[0].image.tolist()[0][0] == [0, 0, 255]  # BGR blue became RGB blue


@pytest.mark.parametrize("fps", [0.0, math.nan, 90000.0])
def test_no_timestamps_and_no_fps_uses_25(monkeypatch, tmp_path: Path, fps: float) -> None:
    path = fake(monkeypatch, FakeCapture(50, fps=fps, count=0), tmp_path)
    frames = list(iter_frames(path, 1.0))
    assert [f.index for f in frames] == [0, 25]


def test_times_never_go_backwards(monkeypatch, tmp_path: Path) -> None:
    jumpy = {0: 0, 1: 100, 2: 50, 3: 300, 4: 250, 5: 500}
    path = fake(monkeypatch, FakeCapture(6, msec=jumpy.__getitem__), tmp_path)
    frames = list(iter_frames(path, 100.0))
    # A frame stamped before its predecessor is pinned to the predecessor's time,
    # which is already sampled, so it is skipped rather than yielded out of order.
    assert [f.index for f in frames] == [0, 1, 3, 5]
    assert [f.time for f in frames] == pytest.approx([0.0, 0.1, 0.3, 0.5])


def test_transient_grab_failure_is_retried(monkeypatch, tmp_path: Path) -> None:
    path = fake(monkeypatch, FakeCapture(10, grab_fails={3}), tmp_path)
    assert len(list(iter_frames(path, 100.0))) == 10


def test_short_stream_keeps_frames_and_warns(monkeypatch, tmp_path: Path, caplog) -> None:
    path = fake(monkeypatch, FakeCapture(10, count=100), tmp_path)
    with caplog.at_level(logging.WARNING, logger="captioner.video"):
        frames = list(iter_frames(path, 100.0))
    assert len(frames) == 10
    assert "10 of the 100 frames" in caplog.text


def test_undecodable_samples_raise(monkeypatch, tmp_path: Path) -> None:
    path = fake(monkeypatch, FakeCapture(10, retrieve_ok=False), tmp_path)
    with pytest.raises(VideoError, match="no decodable frames"):
        list(iter_frames(path, 1.0))


# --------------------------------------------------------------------------- bad files


def assert_one_line_naming(exc: pytest.ExceptionInfo, path: Path, reason: str) -> None:
    message = str(exc.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert reason in message


@pytest.mark.parametrize("call", [open_video, lambda p: list(iter_frames(p, 1.0))])
def test_missing_file(tmp_path: Path, call) -> None:
    path = tmp_path / "x.mp4"
    with pytest.raises(VideoError) as exc:
        call(path)
    assert_one_line_naming(exc, path, "no such file")


def test_directory(tmp_path: Path) -> None:
    path = tmp_path / "folder.mp4"
    path.mkdir()
    with pytest.raises(VideoError) as exc:
        open_video(path)
    assert_one_line_naming(exc, path, "directory")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    path.touch()
    with pytest.raises(VideoError) as exc:
        iter_frames(path, 1.0)
    assert_one_line_naming(exc, path, "empty file")


@pytest.mark.parametrize("call", [open_video, lambda p: list(iter_frames(p, 1.0))])
def test_random_bytes(tmp_path: Path, call) -> None:
    path = write_garbage(tmp_path / "noise.mp4")
    with pytest.raises(VideoError) as exc:
        call(path)
    assert_one_line_naming(exc, path, "not a video file or unsupported codec")


@pytest.mark.parametrize("suffix", [".avi", ".mp4"])
@pytest.mark.parametrize("call", [open_video, lambda p: list(iter_frames(p, 1.0))])
def test_truncated_file(clip, clip_avi, tmp_path: Path, suffix: str, call) -> None:
    src = clip_avi if suffix == ".avi" else clip
    path = truncate_video(src.path, tmp_path / f"cut{suffix}")
    with pytest.raises(VideoError) as exc:
        call(path)
    assert_one_line_naming(exc, path, "no decodable frames")


@pytest.mark.parametrize("suffix", [".avi", ".mp4"])
def test_corrupted_middle_yields_frames(clip, clip_avi, tmp_path: Path, suffix: str, caplog) -> None:
    src = clip_avi if suffix == ".avi" else clip
    path = corrupt_middle(src.path, tmp_path / f"bad{suffix}")
    with caplog.at_level(logging.WARNING, logger="captioner.video"):
        frames = list(iter_frames(path, 10.0))
    assert 0 < len(frames) <= src.frame_count
    assert frames[0].index == 0
    times = [f.time for f in frames]
    assert times == sorted(times)
    if len(frames) < 0.9 * src.frame_count:  # decoding stopped at the damage: say so
        assert "damaged" in caplog.text


def test_frame_is_frozen() -> None:
    frame = Frame(index=0, time=0.0, image=np.zeros((1, 1, 3), np.uint8))
    with pytest.raises(AttributeError):
        frame.index = 1  # type: ignore[misc]


# --------------------------------------------------------------------------- key frames (--fast)


class _FakeAvFrame:
    time = None  # a stream without timestamps

    def to_ndarray(self, format):
        return np.zeros((6, 8, 3), np.uint8)


class _FakePacket:
    def __init__(self, key: bool, size: int = 100):
        self.size, self.is_keyframe, self.pts, self.duration = size, key, None, 0

    def decode(self):
        return [_FakeAvFrame()] if self.is_keyframe else []


class _FakeContainer:
    """A PyAV container whose packets carry no timestamps: 100 frames, a key frame every 25."""

    def __init__(self, rate: float = 25.0, n: int = 100, every: int = 25):
        from types import SimpleNamespace

        self.packets = [_FakePacket(i % every == 0) for i in range(n)] + [_FakePacket(False, size=0)]
        stream = SimpleNamespace(codec_context=SimpleNamespace(skip_frame=""), time_base=None,
                                 average_rate=rate, frames=n)
        self.streams = SimpleNamespace(video=[stream])

    def demux(self, stream):
        return iter(self.packets)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("rate, expected", [(25.0, 25.0), (0.0, 25.0), (10.0, 10.0), (90000.0, 25.0)])
def test_key_frames_without_timestamps_keep_the_timeline(monkeypatch, tmp_path: Path, rate, expected) -> None:
    """No timestamps: a key frame's time is its place among *all* frames over the frame rate, as in iter_frames."""
    av = pytest.importorskip("av")
    monkeypatch.setattr(av, "open", lambda path: _FakeContainer(rate))
    path = tmp_path / "fake.mp4"
    path.write_bytes(b"x")
    stats = video.DecodeStats()
    frames = list(video.iter_keyframes(path, 1.0, stats=stats))
    assert [f.index for f in frames] == [0, 25, 50, 75]
    assert [f.time for f in frames] == pytest.approx([i / expected for i in (0, 25, 50, 75)])
    assert stats.decoded == 100 and stats.end_time == pytest.approx(100 / expected) and not stats.short


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_fast_mode_turns_a_rotated_video_upright_as_normal_mode_does(tmp_path: Path, degrees) -> None:
    """A phone's portrait video (landscape pixels + a display rotation): --fast sees it as normal mode and players do.

    PyAV leaves the rotation to the caller; --fast captioned such videos lying on their side."""
    pytest.importorskip("av")
    path = make_video(tmp_path / "phone.mp4", [("red", 1.0)], size=(64, 48)).path
    upright = next(video.iter_frames(path, 1.0)).image
    rotate_video(path, degrees)
    normal = next(video.iter_frames(path, 1.0)).image
    fast = next(video.iter_keyframes(path, 1.0)).image
    turned = np.rot90(upright, {90: 1, 180: 2, 270: 3}[degrees])  # what ffmpeg's own autorotation shows
    assert normal.shape == turned.shape and np.abs(normal.astype(int) - turned.astype(int)).mean() < 3.0
    assert fast.shape == normal.shape
    assert np.abs(fast.astype(int) - normal.astype(int)).mean() < 3.0  # the same picture, the same way up


@pytest.mark.parametrize("name, url", [("https://example.com/a.mp4", True), ("rtsp://cam/stream", True),
                                       (Path("http://example.com/a.mp4"), True),  # a Path keeps "http:/..."
                                       ("C:/videos/a.mp4", False), ("clip:1.mp4", False), ("videos/a.mp4", False)])
def test_urls_are_told_from_file_names(name, url) -> None:
    assert video.looks_like_url(name) is url


@pytest.mark.parametrize("suffix", [".mp3", ".mp4"])
def test_an_audio_file_with_cover_art_is_named_as_one(tmp_path: Path, suffix) -> None:
    """Music files carry their album cover as a one-frame picture stream: OpenCV opened them as
    a 40 ms video and a batch wrote a one-cue subtitle file for every song."""
    pytest.importorskip("av")
    path = make_audio(tmp_path / f"song{suffix}", cover=True)
    with pytest.raises(VideoError) as exc:
        video.open_video(path)
    assert_one_line_naming(exc, path, "no video stream (an audio file; its only picture is the cover art)")


@pytest.mark.parametrize("suffix", [".wav", ".m4a"])
def test_an_audio_file_is_named_as_one(tmp_path: Path, suffix) -> None:
    """A sound file given by mistake gets told apart from a damaged or unknown one."""
    pytest.importorskip("av")
    path = make_audio(tmp_path / f"talk{suffix}")
    with pytest.raises(VideoError) as exc:
        video.open_video(path)
    assert_one_line_naming(exc, path, "no video stream (an audio file)")
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    with pytest.raises(VideoError) as exc:
        video.open_video(noise)
    assert "not a video file or unsupported codec" in str(exc.value)


def test_fast_mode_warns_when_key_frames_leave_long_stretches_unseen(tmp_path: Path, monkeypatch, caplog) -> None:
    """A screen recording has one key frame: --fast captions all of it from that frame, and says so."""
    pytest.importorskip("av")
    path = make_video(tmp_path / "clip.mp4", [("red", 2.0), ("blue", 2.0)]).path
    times = [f.time for f in video.iter_keyframes(path, 1.0)]
    longest = max(np.diff(times + [4.0]))
    with caplog.at_level("WARNING", logger="captioner.video"):
        list(video.iter_keyframes(path, 1.0))
    assert not caplog.records  # key frames often enough for the default threshold
    monkeypatch.setattr(video, "FAST_GAP_WARNING_S", longest - 0.01)
    with caplog.at_level("WARNING", logger="captioner.video"):
        list(video.iter_keyframes(path, 1.0))
    (record,) = caplog.records
    assert f"--fast: {len(times)} key frame(s) in 4 s, {longest:.0f} s without one" in record.getMessage()


@pytest.mark.parametrize("fast, gop", [(False, None), (True, None), (True, 1000)])
def test_recordings_joined_end_to_end_are_all_read(tmp_path: Path, caplog, fast, gop) -> None:
    """``cat a.ts b.ts``: the second part's timestamps start again at 0. Held at the time before the join, none of
    its frames was ever sampled: the second recording was silently left out. Now it follows the first. With one key
    frame a part (screen recordings) --fast saw the second part's start at the first's time, held it there, and
    captioned the whole file from the first part's frame."""
    pytest.importorskip("av")
    path = joined_recordings(tmp_path / "joined.ts", ["red", "blue"], gop=gop)  # 3 s each at 10 fps
    stats = video.DecodeStats()
    with caplog.at_level("WARNING", logger="captioner.video"):
        read = video.iter_keyframes if fast else video.iter_frames
        frames = list(read(path, 1.0, stats=stats))
    times = [f.time for f in frames]
    # both parts, one after the other (one key frame a part: at 0 and 3 s)
    assert times == sorted(times) and times[0] == 0.0 and times[-1] >= (3.0 if gop else 5.0)
    assert stats.end_time == pytest.approx(6.0, abs=0.2)
    blue = [f for f in frames if f.time >= 3.0]
    assert blue and all(f.image[..., 2].mean() > f.image[..., 0].mean() for f in blue)  # the second part's frames
    assert any("timestamps start again 1 time(s)" in r.getMessage() for r in caplog.records)


def test_a_picture_that_starts_after_the_sound_is_timed_as_players_show_it(tmp_path: Path) -> None:
    """The sound starts at 0 and the picture 2 s later (TS recordings, ffmpeg -itsoffset): OpenCV counts from
    the picture's first frame, players from the container's start, and every cue came 2 s early."""
    pytest.importorskip("av")
    path = make_timed_video(tmp_path / "late.mp4", video_start=2.0, seconds=4.0)
    for read in (video.iter_frames, video.iter_keyframes):
        stats = video.DecodeStats()
        frames = list(read(path, 1.0, stats=stats))
        assert frames[0].time == pytest.approx(2.0, abs=0.05), read
        assert stats.end_time == pytest.approx(6.0, abs=0.05), read


def test_a_file_whose_own_clock_starts_late_says_where(tmp_path: Path) -> None:
    """A cut part of a recording (-f segment), a stream copy with -output_ts_offset: the container starts 5 s in.
    Cue times count from there, as players show them; a browser plays on the timestamps themselves, so the
    review page must know where they start (``VideoInfo.clock_start``, the JSON's ``clock_start``)."""
    pytest.importorskip("av")
    plain = make_video(tmp_path / "a.webm", [("red", 1.0), ("blue", 1.0)], fps=10, codec="VP80").path
    moved = shifted_copy(plain, tmp_path / "b.webm", 5.0)
    assert open_video(plain).clock_start == 0.0
    assert open_video(moved).clock_start == pytest.approx(5.0)
    frames = list(iter_frames(moved, 1.0))
    assert [round(f.time, 2) for f in frames] == [0.0, 1.0]  # cue times as players show them, not moved
    # a container that starts before 0 (an MKV's sound at -0.061 s) has no late clock
    assert open_video(make_timed_video(tmp_path / "neg.mkv", video_start=3.0, sound_start=-0.061)).clock_start == 0.0


def test_an_mkv_whose_timestamps_start_late_is_whole(tmp_path: Path, caplog) -> None:
    """An MKV remuxed with -copyts from a recording 10 minutes in gives its length from 0 (604 s for 4 s of
    picture starting at 600): a whole file was "damaged or truncated", and a stretch's duration 604 s."""
    pytest.importorskip("av")
    plain = make_video(tmp_path / "a.mkv", [("red", 2.0), ("blue", 2.0)], fps=10, codec="VP80").path
    late = shifted_copy(plain, tmp_path / "late.mkv", 600.0)
    with caplog.at_level(logging.WARNING, logger="captioner.video"):
        stats = video.DecodeStats()
        frames = list(iter_frames(late, 1.0, stats=stats))
    assert "damaged" not in caplog.text and stats.end_time == pytest.approx(4.0, abs=0.05)
    assert [round(f.time, 2) for f in frames] == [0.0, 1.0, 2.0, 3.0]
    assert video._stream_timing(late)[1] == pytest.approx(4.0, abs=0.05)  # the picture's length, as a stretch says
    data = late.read_bytes()  # and one cut off mid-way is still said to be
    (tmp_path / "cut.mkv").write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="captioner.video"):
        list(iter_frames(tmp_path / "cut.mkv", 1.0))
    assert "the file may be damaged or truncated" in caplog.text


def test_a_container_that_starts_before_zero_is_not_offset_twice(tmp_path: Path) -> None:
    """An MKV whose sound starts at -0.061 s and picture at 3 s: OpenCV already counts from the container's start
    (3.061 s), so the probe's offset must not be added again (cues came 3 s late and ran past the end)."""
    pytest.importorskip("av")
    path = make_timed_video(tmp_path / "neg.mkv", video_start=3.0, sound_start=-0.061, seconds=4.0)
    for read in (video.iter_frames, video.iter_keyframes):
        stats = video.DecodeStats()
        frames = list(read(path, 1.0, stats=stats))
        assert frames[0].time == pytest.approx(3.061, abs=0.03), read
        assert stats.end_time == pytest.approx(7.061, abs=0.05), read


def test_an_mkv_whose_sound_outlasts_its_picture_is_not_called_damaged(tmp_path: Path, caplog) -> None:
    """An MKV gives no frame count: OpenCV estimates one from the file's length, which counts the sound, so a whole
    file was reported as damaged. One cut off mid-way is still reported."""
    pytest.importorskip("av")
    path = make_timed_video(tmp_path / "long.mkv", seconds=4.0, sound_end=10.0)
    assert open_video(path).frame_count > 150  # the estimate: 10 s of frames
    with caplog.at_level(logging.WARNING, logger="captioner.video"):
        stats = video.DecodeStats()
        list(iter_frames(path, 1.0, stats=stats))
    assert "damaged" not in caplog.text and stats.end_time == pytest.approx(4.0, abs=0.05)
    data = path.read_bytes()
    (tmp_path / "cut.mkv").write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="captioner.video"):
        list(iter_frames(tmp_path / "cut.mkv", 1.0))
    assert "the file may be damaged or truncated" in caplog.text


def test_a_file_cut_without_reencoding_is_neither_damaged_nor_longer(tmp_path: Path, caplog) -> None:
    """ffmpeg -ss 8 -c copy keeps the frames before the cut, hidden by an edit list, in the frame count:
    normal mode warned of a damaged file; --fast timed every frame from the hidden first one (cues ran
    past the end) and took the container's count of frames as the length."""
    pytest.importorskip("av")
    path = make_timed_video(tmp_path / "cut.mp4", preroll=2.0, seconds=4.0, sound=False)
    assert open_video(path).frame_count == 150  # the hidden 50 counted
    with caplog.at_level(logging.WARNING, logger="captioner.video"):
        stats = video.DecodeStats()
        frames = list(iter_frames(path, 1.0, stats=stats))
    assert "damaged" not in caplog.text
    assert frames[0].time == 0.0 and stats.end_time == pytest.approx(4.0, abs=0.05)
    stats = video.DecodeStats()
    frames = list(video.iter_keyframes(path, 1.0, stats=stats))
    assert all(0.0 <= f.time < 4.0 for f in frames) and stats.short and stats.end_time == pytest.approx(4.0, abs=0.05)


def test_a_still_picture_is_not_captioned_as_a_video(tmp_path: Path) -> None:
    """captioner run photo.jpg wrote one 40 ms cue; the error now names the command for photos."""
    path = tmp_path / "photo.jpg"
    assert cv2.imwrite(str(path), np.full((48, 64, 3), 90, np.uint8))
    with pytest.raises(VideoError, match=r"photo.jpg: a still picture, not a video \(caption it with: captioner image"):
        open_video(path)
    for ext in (".jpg", ".png", ".bmp"):  # renamed: found by what the file holds
        assert cv2.imwrite(str(tmp_path / f"p{ext}"), np.full((48, 64, 3), 90, np.uint8))
        renamed = (tmp_path / f"p{ext}").rename(tmp_path / f"p{ext[1:]}.mp4")
        with pytest.raises(VideoError, match="a still picture, not a video"):
            open_video(renamed)


def test_a_one_frame_gif_is_a_still_picture_and_an_animated_one_a_video(tmp_path: Path) -> None:
    """A one-frame GIF was captioned as a 100 ms video; ``captioner image`` reads GIFs."""
    for name, frames in (("one.gif", 1), ("anim.gif", 6)):
        pyav_video(tmp_path / name, "gif", [np.full((32, 32, 3), 40 * i, np.uint8) for i in range(frames)], rate=5,
                   pix_fmt="rgb8")
    with pytest.raises(VideoError, match=r"one.gif: a still picture, not a video \(caption it with: captioner image"):
        open_video(tmp_path / "one.gif")
    assert open_video(tmp_path / "anim.gif").frame_count == 6


def test_fast_mode_decodes_only_key_frames_where_the_decoder_ignores_skip_frame(tmp_path: Path) -> None:
    """FFmpeg's VP9 decoder (YouTube's WebM) decodes every frame whatever skip_frame says: --fast sampled
    every second like normal mode, at normal mode's cost, instead of one look per key frame."""
    images = [np.full((48, 64, 3), (i * 3) % 256, np.uint8) for i in range(80)]
    path = pyav_video(tmp_path / "vp9.webm", "libvpx-vp9", images, gop=30,  # key frames at 0, 3, 6 s
                      options={"deadline": "realtime", "cpu-used": "8"})
    stats = video.DecodeStats()
    times = [f.time for f in video.iter_keyframes(path, 1.0, stats=stats)]
    assert times == pytest.approx([0.0, 3.0, 6.0], abs=0.01)  # was 0, 1, 2, ... 7
    assert stats.end_time == pytest.approx(8.0, abs=0.05)


def _h264_with_damage(tmp_path: Path, where: float, share: float, zero: bool) -> Path:
    """10 s of noisy 10 fps H.264 (key frame every 2 s) in an MP4, with ``share`` of its frame data from ``where``
    (a share of the ``mdat`` box) zeroed or replaced by noise."""
    from videos import _payload_span

    rng = np.random.default_rng(0)
    images = [np.clip((i * 5) % 200 + rng.integers(0, 60, (120, 160, 3)), 0, 255).astype(np.uint8) for i in range(100)]
    path = pyav_video(tmp_path / "clean.mp4", "libx264", images, gop=20, options={"preset": "ultrafast"})
    data = bytearray(path.read_bytes())
    lo, hi = _payload_span(bytes(data))
    a = lo + int((hi - lo) * where)
    b = a + int((hi - lo) * share)
    data[a:b] = bytes(b - a) if zero else rng.integers(0, 256, b - a, dtype=np.uint8).tobytes()
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    return damaged


def test_a_damaged_stretch_in_an_mp4_is_passed_over(tmp_path: Path, caplog) -> None:
    """A 64 KB hole in an MP4 ended the captions there (three failed reads in a row were taken for the end), and a
    decoder's stray frame from before the hole was taken for a join (the video timed 2.5 s longer)."""
    path = _h264_with_damage(tmp_path, where=0.45, share=0.05, zero=True)
    with caplog.at_level(logging.WARNING, logger="captioner.video"):
        stats = video.DecodeStats()
        times = [f.time for f in iter_frames(path, 1.0, stats=stats)]
    assert len(times) >= 9 and times[-1] >= 8.9 and stats.end_time == pytest.approx(10.0, abs=0.05)
    assert "damaged frame(s) could not be decoded and were passed over" in caplog.text
    assert "decoding stopped" not in caplog.text and "start again" not in caplog.text


def test_a_video_whose_first_frames_do_not_decode_starts_where_they_do(tmp_path: Path, caplog) -> None:
    """Noise over an MP4's first frames: 'no decodable frames', the file refused, where players show the rest."""
    path = _h264_with_damage(tmp_path, where=0.0, share=0.08, zero=False)
    assert open_video(path).frame_count == 100
    with caplog.at_level(logging.WARNING, logger="captioner.video"):
        times = [f.time for f in iter_frames(path, 1.0)]
    assert 0 < times[0] <= 4.0 and times[-1] >= 8.9
    assert "passed over" in caplog.text and "decoding stopped" not in caplog.text


def test_one_stray_frame_from_before_is_no_join() -> None:
    """After a damaged stretch H.264 gave one frame of 1.2 s before (8.52 among 9.72, 9.8): taken for a join, it
    moved every later frame 1.3 s later. A join holds when the next frame goes on from it."""
    timeline = video._Timeline(0.04)
    times = [timeline(t) for t in (7.96, 8.0, 9.4, 9.56, 9.72, 8.52, 9.8, 9.84)]
    assert timeline.joins == 0 and times[-2:] == [9.8, 9.84] and times == sorted(times)
    timeline = video._Timeline(0.04)
    times = [timeline(t) for t in (1.9, 1.94, 0.0, 0.04, 0.08)]  # joined: the second part goes on
    assert timeline.joins == 1 and times[2:] == pytest.approx([1.98, 2.02, 2.06])


def test_the_last_frame_of_a_sparse_video_ends_with_its_stream(tmp_path: Path) -> None:
    """Three frames at 0, 5 and 10 s (a slideshow, a variable-rate recording): normal mode gave the last one the
    average frame's length (cues to 13.3 s), --fast the length of another packet (MP4 lists them in decode order:
    15 s); the stream ends at 10.04 s."""
    images = [np.full((48, 64, 3), 80 * i, np.uint8) for i in range(3)]
    path = pyav_video(tmp_path / "slides.mp4", "libx264", images, rate=25, pts_ms=[0, 5000, 10000])
    for read in (video.iter_frames, video.iter_keyframes):
        stats = video.DecodeStats()
        list(read(path, 1.0, stats=stats))
        assert stats.end_time == pytest.approx(10.04, abs=0.01), read


def test_an_mp4_cut_before_its_index_says_so(clip, tmp_path: Path) -> None:
    """A download cut off (or a camera stopped) before the moov box was 'not a video file or unsupported codec'."""
    data = clip.path.read_bytes()
    assert data.find(b"moov") > len(data) // 2  # OpenCV's writer puts the index last, as cameras do
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError, match=r"cut.mp4: an unfinished MP4 \(its index is missing: an interrupted download"):
        open_video(cut)
    (tmp_path / "text.mp4").write_text("not a video at all")
    with pytest.raises(VideoError, match="not a video file or unsupported codec"):
        open_video(tmp_path / "text.mp4")


def test_a_frame_without_a_timestamp_follows_the_one_before(monkeypatch, tmp_path: Path) -> None:
    """A raw MPEG-2 stream's last frame has no timestamp (FFmpeg gives 0 for the frame flushed out of the decoder):
    timed by its number over FFmpeg's 25 fps placeholder, a 60 s clip's last frame came at 71.96 s (cues to 72 s)."""
    path = fake(monkeypatch, FakeCapture(60, fps=25.0, msec=lambda i: i * 1000 / 30 if i < 59 else 0.0), tmp_path)
    stats = video.DecodeStats()
    frames = list(iter_frames(path, 30.0, stats=stats))
    assert frames[-1].index == 59 and frames[-1].time == pytest.approx(58 / 30 + 1 / 25)  # was 59 / 25 = 2.36
    assert stats.end_time == pytest.approx(58 / 30 + 2 / 25)


@pytest.mark.parametrize("codec, container", [("libx264", "h264"), ("mpeg2video", "mpeg2video")])
def test_a_raw_stream_is_timed_by_its_codecs_frame_rate(tmp_path: Path, codec, container) -> None:
    """A raw .h264 (no container) has no timestamps and FFmpeg announces 25 fps for it: a 30 fps one was timed 1.2
    times too long in both modes (a 60 s clip captioned to 72 s). Its SPS (an .m2v's sequence header) says 30."""
    images = [np.full((48, 64, 3), (i * 3) % 256, np.uint8) for i in range(90)]
    path = pyav_video(tmp_path / f"clip.{container}", codec, images, rate=30, gop=30, container=container)
    info = open_video(path)
    assert info.fps == pytest.approx(30.0) and info.duration <= 3.05
    for read in (video.iter_frames, video.iter_keyframes):
        stats = video.DecodeStats()
        times = [f.time for f in read(path, 1.0, stats=stats)]
        # (OpenCV times an .m2v's frames one frame late: its first at 1/30 s)
        assert times[-1] < stats.end_time == pytest.approx(3.0, abs=0.05), (read, times, stats)


def test_fast_mode_says_when_an_mkv_is_cut_off(tmp_path: Path, caplog) -> None:
    """An MKV or WebM gives no frame count: --fast captioned the first half of one cut in half without a word (normal
    mode warns). One whose sound outlasts its picture is whole."""
    pytest.importorskip("av")
    whole = make_timed_video(tmp_path / "whole.mkv", seconds=10.0, sound=False)
    data = whole.read_bytes()
    (tmp_path / "cut.mkv").write_bytes(data[: len(data) // 2])
    longer = make_timed_video(tmp_path / "sound.mkv", seconds=4.0, sound_end=10.0)
    for path in (whole, longer):
        with caplog.at_level(logging.WARNING, logger="captioner.video"):
            caplog.clear()
            list(video.iter_keyframes(path, 1.0))
        assert not caplog.text, path
    with caplog.at_level(logging.WARNING, logger="captioner.video"):
        stats = video.DecodeStats()
        list(video.iter_keyframes(tmp_path / "cut.mkv", 1.0, stats=stats))
    assert 3.0 < stats.end_time < 7.0
    assert f"the picture ends at {stats.end_time:.1f} s of the 10.0 s the container announces" in caplog.text
    assert "damaged or truncated" in caplog.text


def test_a_still_picture_hint_names_the_file_as_given(tmp_path: Path, monkeypatch) -> None:
    """'caption it with: captioner image photo.mp4' named the file without its folder: the command failed."""
    folder = tmp_path / "arch"
    folder.mkdir()
    for name in ("photo.mp4", "my photo.mp4", "-photo.mp4"):
        assert cv2.imwrite(str(folder / "p.jpg"), np.full((48, 64, 3), 90, np.uint8))
        (folder / "p.jpg").rename(folder / name)
    monkeypatch.chdir(folder)  # "captioner image -photo.mp4" is an unknown option -p
    with pytest.raises(VideoError, match=r"\(caption it with: captioner image ./-photo.mp4\)$"):
        open_video("-photo.mp4")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(VideoError, match=r"\(caption it with: captioner image arch/photo.mp4\)$"):
        open_video("arch/photo.mp4")
    with pytest.raises(VideoError, match=r"\(caption it with: captioner image 'arch/my photo.mp4'\)$"):
        open_video("arch/my photo.mp4")


def test_fast_mode_times_an_avi_as_normal_mode_does(tmp_path: Path) -> None:
    """AVI keeps no presentation times; FFmpeg (through PyAV) makes H.264's one frame later than its decode times:
    --fast put the first key frame at 1/15 s and the end a frame late (6.133 s for a 6.067 s MSVD clip)."""
    images = [np.full((48, 64, 3), (i * 7) % 256, np.uint8) for i in range(30)]
    path = pyav_video(tmp_path / "clip.avi", "libx264", images, rate=15, gop=15, options={"preset": "ultrafast"})
    for read in (video.iter_frames, video.iter_keyframes):
        stats = video.DecodeStats()
        times = [f.time for f in read(path, 1.0, stats=stats)]
        assert times == pytest.approx([0.0, 1.0]) and stats.end_time == pytest.approx(2.0), (read, times, stats)


def test_a_screen_recording_s_next_picture_is_cut_where_it_came(tmp_path: Path, tiny_model) -> None:
    """A screen recording stores a frame only when the screen changes (a variable frame rate): frames at 0, 20 and
    30 s were cut half-way between the samples, the second picture's cue starting at 10 s, ten seconds before it
    showed. Each sample now says when the first frame after the sample before it came (``Frame.since``), in both
    readers, and the cut goes no earlier."""
    from click.testing import CliRunner

    from captioner.cli import main

    looks = [shot_frame("red", 0, (64, 48)), shot_frame("checker", 0, (64, 48)), shot_frame("checker", 0, (64, 48))]
    path = pyav_video(tmp_path / "screen.mp4", "libx264", looks, gop=1, pts_ms=[0, 20000, 30000],
                      options={"preset": "ultrafast"})
    for keyframes in (False, True):
        frames = list(video.read_frames(path, 1.0, keyframes=keyframes))
        assert [v for f in frames for v in (f.time, f.since)] == pytest.approx([0.0, 0.0, 20.0, 20.0, 30.0, 30.0])
    steady = make_video(tmp_path / "steady.mp4", [("red", 2.0)], fps=10)  # frames between samples: as before
    assert [f.since for f in iter_frames(steady, 1.0)] == pytest.approx([0.0, 0.1])
    for extra in ([], ["--fast"]):
        result = CliRunner().invoke(main, ["run", str(path), "-o", str(tmp_path / "o"), "-f", "json", "--overwrite",
                                           "--model", str(tiny_model), "--beam-size", "1",
                                           "-q", *extra])
        assert result.exit_code == 0, result.output
        cues = json.loads((tmp_path / "o" / "screen.json").read_text())["cues"]
        assert 20.0 in [c["start"] for c in cues], (extra, cues)


def test_a_recording_that_holds_the_last_frame_of_each_burst_is_cut_where_the_picture_changed(tmp_path: Path) -> None:
    """A screen recording (or a slideshow with repeats dropped, ``mpdecimate``) stores a burst of frames as the
    picture changes, then holds the last one for seconds. The reader sampled the first frame of each burst and
    never the held one: the cut went half-way to the next burst (5 s early here), and a fade's end was missed
    (4.5 s late). Such a stream is read with PyAV, which samples the held frame too."""
    from captioner.segment import cut_time

    looks, pts = [], []
    for shot, look in enumerate(("red", "checker", "blue")):
        for k in range(5):  # a burst of five frames 40 ms apart, the last held until the next burst, 3 s on
            looks.append(shot_frame(look, 0, (64, 48)))
            pts.append(shot * 3000 + 40 * k)
    path = pyav_video(tmp_path / "screen.mp4", "libx264", looks, rate=25, pts_ms=pts, options={"preset": "ultrafast"})
    assert video.pyav_reason(path) == "bursts of frames, each last one held"
    frames = list(video.read_frames(path, 1.0))
    # (the last burst is not held: the file ends 40 ms after it)
    assert [round(f.time, 2) for f in frames] == [0.0, 0.16, 3.0, 3.16, 6.0]
    assert [round(f.since, 2) for f in frames] == [0.0, 0.04, 3.0, 3.04, 6.0]
    # the cut between the held picture (0.16) and the next burst (3.0): where that burst began, not half-way
    assert cut_time(frames[1].time, frames[2].time, frames[2].since) == pytest.approx(3.0)
    steady = make_video(tmp_path / "steady.mp4", [("red", 2.0)], fps=10)  # a steady rate: as before
    assert video.pyav_reason(steady) is None
    # an MKV gives its nominal rate as the average (and an MPEG-TS none): the packets' times tell, not the rates
    assert video.pyav_reason(shifted_copy(path, tmp_path / "screen.mkv", 0.0)) == "bursts of frames, each last one held"
    # a rate that changes (a 30 fps intro before 24 fps) holds nothing
    changing = [round(1000 * k / 30) for k in range(30)] + [1000 + round(1000 * k / 24) for k in range(48)]
    mixed = pyav_video(tmp_path / "mixed.mp4", "libx264", [shot_frame("red", k, (64, 48)) for k in range(78)],
                       rate=30, pts_ms=changing, options={"preset": "ultrafast"})
    assert video.pyav_reason(mixed) is None
    # one gap is a glitch (a phone's stalled second), a join or a timestamp wrap, not bursts: the reader that jumps
    stalled = [round(1000 * k / 30) for k in range(90) if not 30 <= k < 60]
    glitch = pyav_video(tmp_path / "glitch.mp4", "libx264", [shot_frame("red", k, (64, 48)) for k in range(60)],
                        rate=30, pts_ms=stalled, options={"preset": "ultrafast"})
    assert video.pyav_reason(glitch) is None


def _pyav_write(path: Path, codec: str, frames: list[np.ndarray], pix_fmt: str, fmt: str = "rgb24",
                colorspace: int | None = None) -> Path:
    """``frames`` (``fmt`` arrays) encoded by PyAV, 5 a second; ``colorspace``: FFmpeg's number, in the stream and
    in the conversion to ``pix_fmt``."""
    av = pytest.importorskip("av")
    if codec not in av.codecs_available:
        pytest.skip(f"no {codec} encoder in this PyAV")
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=5)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = pix_fmt
        if colorspace is not None:
            stream.codec_context.colorspace = stream.codec_context.color_primaries = colorspace
        for image in frames:
            frame = av.VideoFrame.from_ndarray(image, format=fmt)
            if colorspace is not None:
                frame = frame.reformat(format=pix_fmt, dst_colorspace=colorspace)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def test_streams_opencv_shows_otherwise_are_read_as_players_show_them(tmp_path: Path) -> None:
    """OpenCV converted BT.2020 colour (HDR, a phone's default) with another matrix (red came out 255, 65, 43), read
    a transparent clip (PNG in MOV, ProRes 4444) over black where photos are seen over white, and turned a mirrored
    recording upside down (it reads only an angle from the display matrix). Those streams are read with PyAV."""
    red_grey = np.zeros((48, 64, 3), np.uint8)
    red_grey[:, :32] = (255, 0, 0)
    red_grey[:, 32:] = (128, 128, 128)
    hdr = _pyav_write(tmp_path / "hdr.mp4", "libx264", [red_grey] * 10, "yuv420p", colorspace=9)  # BT2020_NCL
    assert video.pyav_reason(hdr) == "BT.2020 colour"
    image = next(iter(video.read_frames(hdr, 1.0))).image
    assert np.abs(image[24, 10].astype(int) - (255, 0, 0)).max() <= 6
    assert np.abs(image[24, 50].astype(int) - 128).max() <= 6

    sticker = np.zeros((48, 64, 4), np.uint8)
    sticker[10:38, 20:44] = (20, 20, 20, 255)  # a dark square on a transparent ground
    clip = _pyav_write(tmp_path / "sticker.mov", "png", [sticker] * 10, "rgba", fmt="rgba")
    assert video.pyav_reason(clip) == "transparency"
    frames = list(video.read_frames(clip, 1.0))
    assert [f.time for f in frames] == pytest.approx([0.0, 1.0])
    assert (frames[0].image[0, 0] == 255).all() and (frames[0].image[24, 32] == 20).all()

    # a left-right mirror in the track header (what -display_hflip writes): shown mirrored, as FFmpeg shows it
    plain = make_video(tmp_path / "plain.mp4", [("checker", 1.0)], size=(64, 48)).path
    stored = next(iter(iter_frames(plain, 1.0))).image
    data = bytearray(Path(plain).read_bytes())
    box = data.find(b"tkhd")
    at = box + 4 + (4 + 20 if data[box + 4] == 0 else 4 + 32) + 16
    data[at:at + 36] = struct.pack(">9i", -0x10000, 0, 0, 0, 0x10000, 0, 64 << 16, 0, 0x40000000)
    (tmp_path / "mirrored.mp4").write_bytes(bytes(data))
    assert video.pyav_reason(tmp_path / "mirrored.mp4") == "a mirrored display"
    for keyframes in (False, True):
        shown = next(iter(video.read_frames(tmp_path / "mirrored.mp4", 1.0, keyframes=keyframes))).image
        assert np.abs(shown.astype(int) - stored[:, ::-1]).mean() < 3, keyframes  # was turned 180 degrees
    assert video.pyav_reason(plain) is None  # an ordinary video: OpenCV's reader, as before


def test_fast_mode_on_a_file_only_opencv_decodes_says_to_run_without_it(tmp_path: Path, tiny_model) -> None:
    """An animated WebP: OpenCV reads it, PyAV's FFmpeg has no decoder for it, and --fast said only "no decodable
    key frames"."""
    from click.testing import CliRunner

    from captioner.cli import main

    image = pytest.importorskip("PIL.Image")
    frames = [image.fromarray(shot_frame(look, 0, (64, 48))) for look in ("red", "checker", "blue")]
    frames[0].save(tmp_path / "anim.webp", save_all=True, append_images=frames[1:], duration=500, loop=0)
    args = ["run", str(tmp_path / "anim.webp"), "-o", str(tmp_path / "o"), "--model", str(tiny_model), "-q"]
    normal = CliRunner().invoke(main, args)
    if normal.exit_code != 0:
        pytest.skip("this OpenCV does not read animated WebP either")
    fast = CliRunner().invoke(main, [*args, "--fast", "--overwrite"])
    if fast.exit_code == 0:
        pytest.skip("this PyAV decodes animated WebP")
    assert fast.exit_code == 1 and fast.stderr.rstrip().endswith("no decodable key frames; try without --fast")


def test_an_unused_alpha_byte_and_untimed_packets_are_not_taken_for_what_they_are_not(tmp_path: Path) -> None:
    """A 32-bit BI_RGB AVI (a screen grabber's 'uncompressed') decodes as bgra with a fourth byte of 0: taken as
    transparency, every frame came out white. A raw .h264 stream's packets carry no time: --fast said no frame came
    between samples (Frame.since = the sample's time), and every cut landed on the later sample."""
    picture = np.zeros((48, 64, 4), np.uint8)
    picture[:, :, :3] = shot_frame("checker", 0, (64, 48))  # alpha 0 everywhere
    avi = _pyav_write(tmp_path / "grab.avi", "rawvideo", [picture] * 10, "bgra", fmt="rgba")
    assert video.pyav_reason(avi) is None
    for keyframes in (False, True):
        image = next(iter(video.read_frames(avi, 1.0, keyframes=keyframes))).image
        assert np.abs(image.astype(int) - picture[:, :, :3]).mean() < 2, keyframes  # was 255 everywhere
    raw = pyav_video(tmp_path / "cam.h264", "libx264", [shot_frame("red", i, (64, 48)) for i in range(50)], rate=10,
                     gop=10, container="h264")
    frames = list(video.read_frames(raw, 1.0, keyframes=True))
    assert len(frames) >= 4 and all(f.since is None for f in frames)


def test_fast_mode_keeps_open_gop_key_frames_in_order(tmp_path: Path) -> None:
    """x265's default open GOP: skipping the frames between key frames, the decoder gave the key frame at 0 s after
    the one at 8.3 s, and --fast lost it (the timeline held it back): the first 8 s were captioned from 8.3 s."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    path = pyav_video(tmp_path / "hevc.mp4", "libx265", [np.roll(base, 2 * i, axis=1) for i in range(600)], rate=30,
                      options={"x265-params": "log-level=none"})
    av = pytest.importorskip("av")
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        keys = [float(p.pts * stream.time_base) for p in container.demux(stream) if p.is_keyframe and p.pts is not None]
    assert len(keys) >= 2
    assert [f.time for f in video.iter_keyframes(path, 1.0)] == pytest.approx(keys, abs=0.01)


@pytest.mark.parametrize("keyframes", [False, True])
def test_a_relative_name_that_begins_like_a_protocol_is_that_file(tmp_path, monkeypatch, keyframes):
    """FFmpeg read a relative "file:clip.mp4" as its file protocol: clip.mp4 (another video) was captioned under
    the name, exit 0; "http:example.mp4" was looked up on the network. The file named is read, offline."""
    monkeypatch.chdir(tmp_path)
    make_video(tmp_path / "clip.mp4", [("red", 1.0)], fps=10)
    make_video(tmp_path / "file:clip.mp4", [("blue", 3.0)], fps=10)
    assert open_video("file:clip.mp4").duration == pytest.approx(3.0, abs=0.15)
    frames = list(video.read_frames("file:clip.mp4", fps=1.0, keyframes=keyframes))
    assert frames and all(f.image[..., 2].mean() > 150 for f in frames)  # blue (RGB): clip.mp4 is red


def test_a_path_through_a_linked_folder_and_dot_dot_is_the_file_the_system_names(tmp_path, monkeypatch):
    """sub/link/../clip.mp4 with sub/link -> ../real/deep is real/clip.mp4; made absolute by its text (abspath) it
    became sub/clip.mp4: another video captioned, or a good one refused."""
    monkeypatch.chdir(tmp_path)
    make_video(tmp_path / "real" / "clip.mp4", [("blue", 3.0)], fps=10)
    (tmp_path / "real" / "deep").mkdir()
    make_video(tmp_path / "sub" / "clip.mp4", [("red", 1.0)], fps=10)
    (tmp_path / "sub" / "link").symlink_to(Path("..", "real", "deep"))
    assert open_video("sub/link/../clip.mp4").duration == pytest.approx(3.0, abs=0.15)
    # a name that is not UTF-8 goes through a link OpenCV can open: made to the same file
    latin = os.fsdecode(b"clip\xe9.mp4")
    os.rename(tmp_path / "real" / "clip.mp4", tmp_path / "real" / latin)
    os.rename(tmp_path / "sub" / "clip.mp4", tmp_path / "sub" / latin)
    assert open_video(f"sub/link/../{latin}").duration == pytest.approx(3.0, abs=0.15)
