"""Captioning one stretch of a video (``run --start/--end``, ``SamplingConfig.start``/``end``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click
import numpy as np
import pytest
import srt

from captioner import video
from captioner.cli import _Time
from captioner.cues import Cue, layout_cues
from captioner.video import DecodeStats, Frame, iter_frames, within
from clitools import cli, files_under, isolate_cli  # noqa: F401  (isolate_cli is a fixture)
from videos import joined_recordings, make_timed_video, make_video


@pytest.fixture(autouse=True)
def _isolated(isolate_cli):
    yield


@pytest.fixture(scope="module")
def film(tmp_path_factory) -> Path:
    """12 s in four 3 s shots."""
    return make_video(tmp_path_factory.mktemp("film") / "film.mp4",
                      [("red", 3.0), ("checker", 3.0), ("blue", 3.0), ("green", 3.0)], fps=10).path


@pytest.mark.parametrize("text, seconds", [
    ("90", 90.0), ("90.5", 90.5), ("1:30", 90.0), ("01:02:03.5", 3723.5), ("0:00:04,250", 4.25), (".5", 0.5),
    ("0", 0.0), ("100:00", 6000.0),
])
def test_times_read_as_ffmpeg_reads_them(text: str, seconds: float) -> None:
    assert _Time().convert(text, None, None) == pytest.approx(seconds)


@pytest.mark.parametrize("text, seconds", [
    ("90s", 90.0), ("1500ms", 1.5), ("1m30s", 90.0), ("1h02m30s", 3750.0), ("2m05.5s", 125.5), ("100m", 6000.0),
    ("1h", 3600.0), ("0s", 0.0), ("1M30S", 90.0),
])
def test_times_with_units_as_the_output_names_write_them(text: str, seconds: float) -> None:
    """--start 90s, 1500ms or 1m30s (the form of captioner's own output names, a.1m30s-end.srt) was 'not a time'."""
    from captioner.outputs import stretch_label

    assert _Time().convert(text, None, None) == pytest.approx(seconds)
    for start in (0.0, 1.5, 90.0, 125.5, 3750.25):
        assert _Time().convert(stretch_label(start, None).split("-")[0], None, None) == pytest.approx(start)


@pytest.mark.parametrize("text", ["", "abc", "-3", "1:75", "1:60:00", "1::2", "1e3", "inf", "nan", "1:2:3:4",
                                  "9" * 400 + ":00:00", "s", "ms", "1m60s", "1h60m", "1h90s", "1h2", "1s30m", "9" * 400 + "h",
                                  "9" * 5000 + "m", "9" * 5000 + ":00:00", "1:" + "9" * 5000 + ":00"])  # int(): over 4,300 digits
def test_what_is_not_a_time_is_refused(text: str) -> None:
    with pytest.raises(click.BadParameter):
        _Time().convert(text, None, None)


def test_run_captions_only_the_stretch_asked_for(tmp_path, film, tiny_model) -> None:
    result = cli("run", film, "-o", tmp_path, "-f", "srt,json", "--model", tiny_model, "--beam-size", "1",
                 "--fps", "2", "--start", "4", "--end", "0:08.5", "--min-duration", "0")
    assert result.exit_code == 0, result.stderr
    assert files_under(tmp_path) == ["film.4s-8.5s.json", "film.4s-8.5s.srt"]  # never in the whole video's place
    cues = list(srt.parse((tmp_path / "film.4s-8.5s.srt").read_text(encoding="utf-8")))
    assert cues[0].start.total_seconds() == 4.0  # the stretch's start, on the video's clock
    assert cues[-1].end.total_seconds() == 8.5
    data = json.loads((tmp_path / "film.4s-8.5s.json").read_text(encoding="utf-8"))
    video = data["metadata"]["video"]
    assert video["captioned"] == [4.0, 8.5] and video["duration"] == 12.0  # the video's own length kept
    assert video["frames_sampled"] == 9  # 4.0, 4.5, ... 8.0
    assert all(4.0 <= c["start"] < c["end"] <= 8.5 for c in data["cues"])


def test_the_name_the_json_and_the_cues_round_a_stretch_alike(tmp_path, film, tiny_model) -> None:
    """--start 2.0485 --end 2.0595: the outputs were named 2.049s-2.059s and the JSON said [2.049, 2.059], while the
    cue ran 2.048 --> 2.060 (round(t, 3) for the first two, whole milliseconds of t * 1000 for the cues)."""
    result = cli("run", film, "-o", tmp_path, "-f", "srt,json", "--model", tiny_model, "--beam-size", "1",
                 "--start", "2.0485", "--end", "2.0595", "--min-duration", "0")
    assert result.exit_code == 0, result.stderr
    (name,) = [p.name for p in tmp_path.glob("*.json")]
    data = json.loads((tmp_path / name).read_text(encoding="utf-8"))
    start, end = data["metadata"]["video"]["captioned"]
    assert name == f"film.{start:g}s-{end:g}s.json"
    assert (data["cues"][0]["start"], data["cues"][-1]["end"]) == (start, end)


def test_a_whole_run_says_no_stretch(tmp_path, film, tiny_model) -> None:
    result = cli("run", film, "-o", tmp_path, "-f", "json", "--model", tiny_model, "--beam-size", "1")
    assert result.exit_code == 0, result.stderr
    assert "captioned" not in json.loads((tmp_path / "film.json").read_text())["metadata"]["video"]


def test_fast_mode_keeps_to_the_stretch_too(tmp_path, film, tiny_model) -> None:
    result = cli("run", film, "-o", tmp_path, "--fast", "--model", tiny_model, "--beam-size", "1",
                 "--start", "6", "--min-duration", "0")
    assert result.exit_code == 0, result.stderr
    cues = list(srt.parse((tmp_path / "film.6s-end.srt").read_text(encoding="utf-8")))
    assert cues and cues[0].start.total_seconds() == 6.0 and cues[-1].end.total_seconds() == 12.0


def test_a_start_past_the_end_is_one_line(tmp_path, film, tiny_model) -> None:
    result = cli("run", film, "-o", tmp_path / "out", "--model", tiny_model, "--start", "12")
    assert result.exit_code == 1
    assert result.stderr == f"error: {film}: --start 12 s is past the end of the video (12 s)\n"
    assert not (tmp_path / "out").exists()
    # under a millisecond before it, subtitles' precision: an empty film.12s-end.srt was written, exit 0
    result = cli("run", film, "-o", tmp_path / "out", "--model", tiny_model, "--start", "11.9999")
    assert result.exit_code == 1
    assert result.stderr == f"error: {film}: --start 11.9999 s leaves less than a millisecond of the video (it ends at 12 s)\n"
    assert not (tmp_path / "out").exists()


def test_an_end_before_the_start_is_bad_usage(tmp_path, film, tiny_model) -> None:
    result = cli("run", film, "-o", tmp_path, "--model", tiny_model, "--start", "5", "--end", "5")
    assert result.exit_code == 2
    assert "Invalid value for '--end': 5 s is not after --start (5 s)" in result.stderr
    assert files_under(tmp_path) == []


def test_reading_stops_at_the_end_of_the_stretch(film) -> None:
    stats = DecodeStats()
    frames = list(within(iter_frames(film, 1.0, stats=stats), 2.0, 5.0))
    assert [f.time for f in frames] == [2.0, 3.0, 4.0]
    assert stats.decoded == 51  # frame 50 (5.0 s) ended the reading; the 120-frame video was not read on


def test_no_cue_is_moved_before_the_start_to_be_read() -> None:
    """A caption too long for its time borrows the silence after it, then before it, but not before ``start``."""
    text = "a man in a red jacket is riding a bicycle down a busy street"  # 60 characters: 3 s at 20/s
    rules = dict(max_duration=8.0, min_duration=1.0, max_chars_per_second=20.0, max_line_width=42, max_line_count=2)
    assert [(c.start, c.end) for c in layout_cues([Cue(10.0, 12.0, text)], 12.0, **rules)] == [(9.0, 12.0)]
    cues = layout_cues([Cue(10.0, 12.0, text)], 12.0, **rules, start=10.0)
    assert cues == [Cue(10.0, 12.0, text)]  # the only caption keeps what there is


@pytest.mark.parametrize("start, end", [(-1.0, None), (5.0, 3.0), (float("nan"), None), (0.0, float("inf"))])
def test_the_library_refuses_a_stretch_that_is_not_one(start, end) -> None:
    from captioner.config import configure

    with pytest.raises(ValueError, match=r"SamplingConfig\.(start|end) must be a finite number"):
        configure(start=start, end=end)


def test_a_stretch_between_two_samples_gets_the_picture_shown_there(tmp_path, film, tiny_model) -> None:
    """No sample fell inside a stretch shorter than the sampling interval (or between two key frames with
    --fast): the run failed with "--start ... is past the end of the video". The last sample before it
    stands in, timed at the stretch's start."""
    stats = DecodeStats()
    frames = list(within(iter_frames(film, 0.25, stats=stats), 5.0, 6.5, stats))
    assert [(f.index, f.time) for f in frames] == [(40, 5.0)]  # the sample at 4.0 s, frame 40
    result = cli("run", film, "-o", tmp_path, "--model", tiny_model, "--beam-size", "1", "--fps", "0.25",
                 "--start", "5", "--end", "6.5", "--min-duration", "0")
    assert result.exit_code == 0, result.stderr
    cues = list(srt.parse((tmp_path / "film.5s-6.5s.srt").read_text(encoding="utf-8")))
    assert [(c.start.total_seconds(), c.end.total_seconds()) for c in cues] == [(5.0, 6.5)]
    past = DecodeStats()
    assert list(within(iter_frames(film, 0.25, stats=past), 12.5, None, past)) == []  # the stream ends at 12 s
    result = cli("run", film, "-o", tmp_path / "past", "--model", tiny_model, "--fps", "0.25", "--start", "12.5")
    assert result.exit_code == 1 and "--start 12.5 s is past the end of the video" in result.stderr


def test_a_stretch_is_named_apart_from_the_whole_video(tmp_path, film, tiny_model) -> None:
    """Under the video's own name a scene's subtitles replaced the whole film's, and batch then took them
    (newer than the video, captioner's own) for the finished video's."""
    from captioner.outputs import stretch_label

    video = tmp_path / "in" / "film.mp4"
    video.parent.mkdir()
    video.write_bytes(film.read_bytes())
    assert cli("run", video, "--model", tiny_model, "--beam-size", "1", "-q").exit_code == 0
    whole = (tmp_path / "in" / "film.srt").read_bytes()
    assert cli("run", video, "--model", tiny_model, "--beam-size", "1", "-q", "--start", "0:03",
               "--end", "7.25").exit_code == 0
    assert (tmp_path / "in" / "film.srt").read_bytes() == whole
    assert (tmp_path / "in" / "film.3s-7.25s.srt").is_file()
    assert [stretch_label(*s) for s in ((0, None), (90, 125.5), (3750, 3900), (59.9996, 61), (7200.5, None))] == [
        "0s-end", "1m30s-2m05.5s", "1h02m30s-1h05m00s", "1m00s-1m01s", "2h00m00.5s-end"]


def test_an_end_past_the_video_ends_the_cues_with_the_video(tmp_path, film, tiny_model) -> None:
    """--end past the end of a 12 s video sampled every 3.3 s: the cues end with the video, not a sampling interval
    after its last sample (13.3 s)."""
    result = cli("run", film, "-o", tmp_path, "--model", tiny_model, "--beam-size", "1", "--fps", "0.3",
                 "--start", "1", "--end", "100")
    assert result.exit_code == 0, result.stderr
    cues = list(srt.parse((tmp_path / "film.1s-1m40s.srt").read_text(encoding="utf-8")))
    assert cues[0].start.total_seconds() == 1.0 and cues[-1].end.total_seconds() == 12.0


# --------------------------------------------------------------------------- jumping to the start (seeking)


class _Capture:
    """A real capture that counts the frames it gives Python and may misplace or refuse a jump."""

    def __init__(self, inner, *, late: float = 0.0, refuse: bool = False) -> None:
        self.inner, self.late, self.refuse = inner, late, refuse
        self.grabs, self.jumps = 0, []

    def grab(self):
        ok = self.inner.grab()
        self.grabs += bool(ok)
        return ok

    def set(self, prop, value):
        if prop == video.cv2.CAP_PROP_POS_MSEC:
            self.jumps.append(value / 1000.0)
            if self.refuse:
                return False
            value += self.late * 1000.0
        return self.inner.set(prop, value)

    def __getattr__(self, name):
        return getattr(self.inner, name)


class _Opened(list):
    """The captures opened so far; ``settings`` are given to the next ones (``_Capture``'s keywords)."""

    def __init__(self) -> None:
        super().__init__()
        self.settings: dict = {}


@pytest.fixture
def captures(monkeypatch) -> _Opened:
    """Every capture the reader opens, wrapped."""
    opened = _Opened()
    real_open = video._open_capture

    def open_capture(path, timeout_s):
        opened.append(_Capture(real_open(path, timeout_s), **opened.settings))
        return opened[-1]

    monkeypatch.setattr(video, "_open_capture", open_capture)
    monkeypatch.setattr(video, "SEEK_MIN_S", 1.0)  # the 12 s film is long enough to jump in
    return opened


def _read(path: Path, fps: float, start: float, seek: float) -> list[tuple[float, bytes]]:
    stats = DecodeStats()
    return [(f.time, f.image.tobytes()) for f in within(iter_frames(path, fps, stats=stats, seek=seek), start, None,
                                                         stats)]


@pytest.mark.parametrize("start", [5.0, 7.3, 11.0])
def test_a_start_far_in_is_jumped_to_with_the_frames_a_whole_reading_gives(film, captures, start) -> None:
    whole = _read(film, 2.0, start, seek=0.0)
    assert captures[-1].jumps == [] and captures[-1].grabs == 120  # every frame decoded
    jumped = _read(film, 2.0, start, seek=start)
    assert jumped == whole and whole  # the same samples: times and pixels
    assert captures[-1].jumps == [pytest.approx(start - 2.0)]  # two samples and a second before
    assert captures[-1].grabs < 120 - 10 * (start - 3.0)  # the frames before the jump were not read


@pytest.mark.parametrize("settings, second", [({"late": 2.5}, [2.0]), ({"late": 6.0}, []), ({"refuse": True}, [])])
def test_a_jump_that_lands_late_or_nowhere_is_made_again_further_back_or_not_at_all(film, captures, settings,
                                                                                   second) -> None:
    whole = _read(film, 2.0, 9.0, seek=0.0)
    captures.settings.update(settings)
    assert _read(film, 2.0, 9.0, seek=9.0) == whole
    # 2.5 s late: twice that further back lands early enough; 6 s late: that would be before the film
    assert [c.jumps for c in captures[1:]] == [[pytest.approx(7.0)], [pytest.approx(j) for j in second]]
    assert (captures[-1].grabs == 120) == (not second)


def test_no_jump_in_a_container_without_an_index(tmp_path, captures) -> None:
    clip = make_video(tmp_path / "film.avi", [("red", 6.0), ("blue", 6.0)], fps=10).path
    frames = _read(clip, 2.0, 9.0, seek=9.0)
    assert [round(t, 3) for t, _ in frames] == [9.0, 9.5, 10.0, 10.5, 11.0, 11.5]
    assert captures[-1].jumps == []


def test_run_start_jumps_and_captions_as_a_whole_reading_does(tmp_path, film, tiny_model, captures,
                                                             monkeypatch) -> None:
    args = ("-f", "json", "--model", tiny_model, "--beam-size", "1", "--fps", "2", "--start", "7.5")
    assert cli("run", film, "-o", tmp_path / "jumped", *args).exit_code == 0
    assert captures[-1].jumps == [pytest.approx(5.5)]
    monkeypatch.setattr(video, "SEEK_MIN_S", 1e9)
    assert cli("run", film, "-o", tmp_path / "whole", *args).exit_code == 0
    assert captures[-1].jumps == []
    jumped, whole = ((tmp_path / f / "film.7.5s-end.json").read_text(encoding="utf-8") for f in ("jumped", "whole"))
    assert json.loads(jumped)["cues"] == json.loads(whole)["cues"] and json.loads(whole)["cues"]


# --------------------------------------------------------------------------- found by a hunt (2026-12-05)


def test_a_start_beyond_the_header_s_length_is_captioned_where_the_picture_goes_on(tmp_path, tiny_model) -> None:
    """Joined recordings (each part's clock starts again) and a picture that starts after the sound last longer
    than the header says: --start there was refused as past the end, though a whole run captions it."""
    joined = joined_recordings(tmp_path / "joined.ts", ["red", "blue"], seconds=3.0)  # header: 3 s; picture: 6 s
    late = make_timed_video(tmp_path / "late.mp4", video_start=2.0, seconds=3.0)  # picture 2-5 s
    for clip, start, end in ((joined, 4.0, 6.0), (late, 4.0, 5.0)):
        result = cli("run", clip, "-o", tmp_path / "out", "-f", "json", "--model", tiny_model, "--beam-size", "1",
                     "--start", start, "--min-duration", "0")
        assert result.exit_code == 0, result.stderr
        data = json.loads(next((tmp_path / "out").glob(f"{clip.stem}.*.json")).read_text(encoding="utf-8"))
        assert data["cues"] and data["cues"][0]["start"] == start and data["cues"][-1]["end"] == pytest.approx(end)
    result = cli("run", late, "-o", tmp_path / "past", "--model", tiny_model, "--start", "5.04")
    assert result.stderr == f"error: {late}: --start 5.04 s is past the end of the video (5 s)\n"  # what was read


def test_the_picture_on_screen_at_the_start_opens_the_stretch() -> None:
    """Key frames at 0 and 5 s (--fast): a stretch from 1 to 5.2 s was captioned from 1 s on with the 5 s picture,
    a later shot; the one before is on screen until where a whole video's cues change (half-way, 2.5 s)."""
    image = np.zeros((2, 2, 3), np.uint8)
    frames = [Frame(0, 0.0, image), Frame(125, 5.0, image)]
    assert [(f.index, f.time) for f in within(iter(frames), 1.0, 5.2)] == [(0, 1.0), (125, 5.0)]
    assert [(f.index, f.time) for f in within(iter(frames), 3.0, 5.2)] == [(125, 5.0)]  # past half-way: the next
    assert [(f.index, f.time) for f in within(iter(frames), 1.0, 4.9)] == [(0, 1.0)]  # no sample in it, as before
    assert [(f.index, f.time) for f in within(iter(frames), 5.0, None)] == [(125, 5.0)]  # a sample right there


def test_a_stretch_tells_the_video_s_length_as_the_container_does(tmp_path, tiny_model) -> None:
    """Reading stops at --end: the length was where reading stopped, or the header's count of frames (a picture
    starting after the sound: 3.0 s, where a whole run says 5.0)."""
    late = make_timed_video(tmp_path / "late.mp4", video_start=2.0, seconds=3.0)
    lengths = []
    for args in ((), ("--start", "2.5", "--end", "3.5")):
        assert cli("run", late, "-o", tmp_path / "o", "-f", "json", "--model", tiny_model, *args).exit_code == 0
        lengths += [json.loads(p.read_text(encoding="utf-8"))["metadata"]["video"]["duration"]
                    for p in sorted((tmp_path / "o").glob("*.json"), key=lambda p: p.stat().st_mtime)][-1:]
    assert lengths == [pytest.approx(5.0), pytest.approx(5.0)]


def test_a_stretch_across_a_join_says_so(tmp_path, tiny_model, caplog) -> None:
    joined = joined_recordings(tmp_path / "joined.ts", ["red", "blue"], seconds=3.0)
    with caplog.at_level(logging.WARNING, logger="captioner"):
        frames = list(within(iter_frames(joined, 1.0), 2.0, 4.5))
    assert [f.time for f in frames] == [2.0, 3.0, 4.0]
    assert "the timestamps start again 1 time(s)" in caplog.text


@pytest.mark.parametrize("args, message", [
    (("--start", "1:00:00.25", "--end", "1:00:00.125"), "3600.125 s is not after --start (3600.25 s)"),
    # not a millisecond: no subtitle; as given (it was "5 s is not after --start (5 s)", rounded)
    (("--start", "5", "--end", "5.0004"), "5.0004 s is not at least a millisecond after --start (5 s)"),
    (("--start", "2", "--end", "2.0009"), "2.0009 s is not at least a millisecond after --start (2 s)"),
    (("--start", "1", "--end", "1.0000001"), "1.0000001 s is not at least a millisecond after --start (1 s)"),
    (("--start", "1234567", "--end", "1234566"), "1234566 s is not after --start (1234567 s)"),
])
def test_times_in_messages_are_given_to_the_millisecond(tmp_path, film, args, message) -> None:
    result = cli("run", film, "-o", tmp_path, *args)
    assert result.exit_code == 2 and message in result.stderr


def test_a_stretch_of_one_millisecond_is_one() -> None:
    """0.008 + 0.001 is above 0.009 in floats: --start 0.008 --end 0.009 was 'not after', as 2,906 of the 20,000
    one-millisecond stretches of the first 20 s."""
    from captioner.config import SamplingConfig

    for k in range(20000):
        SamplingConfig(start=k / 1000, end=(k + 1) / 1000)
    assert _Time().convert("0.009", None, None) - _Time().convert("0.008", None, None) < 0.001


def test_a_stretch_s_page_opens_at_the_stretch_and_says_which_it_is(tmp_path, film, tiny_model) -> None:
    result = cli("run", film, "-o", tmp_path, "-f", "html", "--model", tiny_model, "--beam-size", "1",
                 "--start", "4", "--end", "8.5")
    assert result.exit_code == 0, result.stderr
    page = (tmp_path / "film.4s-8.5s.html").read_text(encoding="utf-8")
    assert "0:12.0 · captioned 0:04.0 – 0:08.5 ·" in page


def test_a_start_past_the_end_is_found_near_the_end(film, captures, tmp_path, tiny_model) -> None:
    """A jump past the end lands nowhere: the whole video was then read from its start to learn that."""
    assert _read(film, 2.0, 20.0, seek=20.0) == []
    assert [c.jumps for c in captures] == [[pytest.approx(18.0)], [pytest.approx(11.5)]]  # half a SEEK_MIN_S before
    assert captures[-1].grabs == 6  # 11.5 - 12 s: to learn where the picture ends
    result = cli("run", film, "-o", tmp_path, "--model", tiny_model, "--start", "20")
    assert result.exit_code == 1 and "--start 20 s is past the end of the video (12 s)" in result.stderr


def test_a_jump_into_a_variable_rate_video_judges_its_end_as_a_whole_reading_does(tmp_path, captures, caplog) -> None:
    """After a jump the frames before it are not counted (their number is FFmpeg's estimate from the average rate):
    a whole file that slows from 50 to 5 frames a second was called cut off ("decoding stopped after ... the
    file may be damaged or truncated") and given its last frame's end for its length."""
    from videos import pyav_video, shot_frame

    times = [20 * i for i in range(300)] + [6000 + 200 * i for i in range(20)]  # 6 s at 50 fps, 4 s at 5 fps
    clip = pyav_video(tmp_path / "slows.mp4", "mpeg4", [shot_frame("checker", i) for i in range(320)],
                      pts_ms=times, gop=25)
    whole, jumped = DecodeStats(), DecodeStats()
    with caplog.at_level(logging.WARNING, logger="captioner"):
        a = [f.time for f in within(iter_frames(clip, 2.0, stats=whole), 8.0, None, whole)]
        b = [f.time for f in within(iter_frames(clip, 2.0, stats=jumped, seek=8.0), 8.0, None, jumped)]
    assert captures[-1].jumps and a == b == [8.0, 8.6, 9.0, 9.6]  # it jumped; frames every 0.2 s
    assert (jumped.short, jumped.end_time) == (whole.short, whole.end_time)
    assert "damaged or truncated" not in caplog.text


def test_a_start_past_an_avi_s_header_length_is_read(tmp_path, captures, tiny_model) -> None:
    """A start past the end of an AVI was said from its header at once (reading took 8.5 s for a 4-minute 720p
    one), but a header can be stale (a live recording's FLV, an AVI header never finished): 'past the end (3 s)'
    of a 12 s video. The file is read to find out."""
    from videos import patch_avi_header

    clip = make_video(tmp_path / "film.avi", [("red", 6.0), ("blue", 6.0)], fps=10).path
    stale = patch_avi_header(clip, tmp_path / "stale.avi", frame_count=30)  # the header: 3 s
    assert [f.time for f in within(iter_frames(stale, 1.0, seek=8.0), 8.0)] == [8.0, 9.0, 10.0, 11.0]
    result = cli("run", clip, "-o", tmp_path / "o", "--model", tiny_model, "--start", "20")
    assert (result.exit_code, result.stderr) == (1, f"error: {clip}: --start 20 s is past the end of the video (12 s)\n")


def test_a_start_past_the_end_of_a_file_without_an_index_is_told_from_its_packets(tmp_path, captures,
                                                                                  tiny_model) -> None:
    """MPEG-TS, AVI: no jump, so a start past the end was found by decoding the whole file (25 s for 8 minutes of
    720p TS) before 'past the end'. The packets' timestamps say it in a moment; the picture is not decoded."""
    ts = joined_recordings(tmp_path / "film.ts", ["red"], seconds=12.0)  # one recording: not joined
    avi = make_video(tmp_path / "film.avi", [("red", 6.0), ("blue", 6.0)], fps=10).path
    for clip in (ts, avi):
        result = cli("run", clip, "-o", tmp_path / "o", "--model", tiny_model, "--start", "20")
        assert (result.exit_code, result.stderr) == (1, f"error: {clip}: --start 20 s is past the end of the video "
                                                        "(12 s)\n")
        assert captures[-1].grabs == 1  # the first frame only, for the clock
    # timestamps that start again (joined recordings) say nothing of the length: read, as before
    joined = joined_recordings(tmp_path / "joined.ts", ["red", "blue"], seconds=3.0)  # 6 s of picture
    assert video._packet_length(joined) is None
    intro = joined_recordings(tmp_path / "intro.ts", ["red"], seconds=1.5)  # a short intro before a recording:
    recording = joined_recordings(tmp_path / "recording.ts", ["blue"], seconds=6.0)  # its times go back 1.5 s only
    (tmp_path / "both.ts").write_bytes(intro.read_bytes() + recording.read_bytes())
    assert video._packet_length(tmp_path / "both.ts") is None and video._packet_length(recording) == pytest.approx(6.0)
    stats = DecodeStats()
    assert [f.time for f in within(iter_frames(joined, 1.0, stats=stats, seek=7.0), 7.0, None, stats)] == []
    assert captures[-1].grabs == 60 and stats.end_time == pytest.approx(6.0)
