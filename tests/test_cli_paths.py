"""The paths ``run``, ``batch``, ``image`` and ``search`` are given and write: case, the input itself, ``-``,
empty names (tiny model, generated clips)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from captioner import outputs
from clitools import cli, files_under, isolate_cli  # noqa: F401  (isolate_cli is a fixture)
from videos import make_video


@pytest.fixture(autouse=True)
def _isolated(isolate_cli):
    yield


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("clip") / "clip.mp4", [("red", 1.0)]).path


def _copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(src.read_bytes())
    return dst


def _insensitive(monkeypatch) -> None:
    """As on a macOS or Windows disk: names that differ only in case are one file."""
    monkeypatch.setattr(outputs, "ignores_case", lambda folder: True)


def test_the_probe_tells_this_file_system_and_leaves_nothing(tmp_path) -> None:
    assert outputs.ignores_case(tmp_path) is False  # the tests' Linux file system tells case apart
    assert outputs.ignores_case(tmp_path / "not" / "made") is False  # probed where it will be made
    assert list(tmp_path.iterdir()) == []
    key = outputs.case_keys()
    assert key(tmp_path / "a.srt") != key(tmp_path / "A.srt")


def test_a_folder_that_cannot_be_probed_is_taken_to_ignore_case(tmp_path, monkeypatch) -> None:
    """No file can be made there (read-only): names that differ in case are kept apart, never written as one."""
    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(outputs.tempfile, "mkstemp", refused)
    assert outputs.ignores_case(tmp_path) is True
    key = outputs.case_keys()
    assert key(tmp_path / "a.srt") == key(tmp_path / "A.srt")


def test_case_is_probed_folder_by_folder(tmp_path, monkeypatch) -> None:
    """ext4's chattr +F and Windows make single folders ignore case: probed once per file system, a case-sensitive
    folder probed first let a case-insensitive one's a.mp4 and A.mp4 write one file (found by a reviewing helper)."""
    (tmp_path / "plain").mkdir()
    (tmp_path / "folded").mkdir()
    monkeypatch.setattr(outputs, "ignores_case", lambda folder: Path(folder).name == "folded")
    key = outputs.case_keys()
    assert key(tmp_path / "plain" / "a.srt") != key(tmp_path / "plain" / "A.srt")
    assert key(tmp_path / "folded" / "a.srt") == key(tmp_path / "folded" / "A.srt")
    assert key(tmp_path / "folded" / "new" / "a.srt") == key(tmp_path / "folded" / "new" / "A.srt")  # inherits it


def test_names_that_differ_in_case_are_captioned_where_case_counts(tmp_path, clip, tiny_model) -> None:
    """cam/day/clip.mp4 and cam/DAY/clip.mp4 (or a.mp4 and A.mp4) failed every run on Linux: 'its subtitles
    would overwrite those of …', the other named clip.mp4.srt."""
    cam = tmp_path / "cam"
    for name in ("day/clip.mp4", "DAY/clip.mp4", "a.mp4", "A.mp4"):
        _copy(clip, cam / name)
    result = cli("batch", cam, "--model", tiny_model, "-q")
    assert (result.exit_code, result.stderr) == (0, "")
    assert files_under(cam) == ["A.mp4", "A.srt", "DAY/clip.mp4", "DAY/clip.srt", "a.mp4", "a.srt",
                                "captioner-report.json", "day/clip.mp4", "day/clip.srt"]
    out = tmp_path / "out"
    result = cli("run", cam / "day/clip.mp4", cam / "DAY/clip.mp4", cam / "a.mp4", cam / "A.mp4", "-o", out,
                 "--model", tiny_model, "-q")
    # -o flattens: day/clip and DAY/clip are one name there (the second fails); a and A are not
    assert files_under(out) == ["A.srt", "a.srt", "clip.srt"], result.stderr


def test_where_the_file_system_ignores_case_they_still_clash(tmp_path, clip, tiny_model, monkeypatch) -> None:
    _insensitive(monkeypatch)
    for name in ("a.mp4", "A.mp4"):
        _copy(clip, tmp_path / "in" / name)
    result = cli("run", tmp_path / "in" / "a.mp4", tmp_path / "in" / "A.mp4", "--model", tiny_model, "-q")
    assert result.exit_code == 1
    assert result.stderr == (f"error: {tmp_path / 'in' / 'A.mp4'}: its subtitles would overwrite those of "
                             f"{tmp_path / 'in' / 'a.mp4'}\n")
    assert files_under(tmp_path / "in") == ["A.mp4", "a.mp4", "a.srt"]  # their extensions would not tell them apart
    (tmp_path / "in" / "a.srt").unlink()
    result = cli("batch", tmp_path / "in", "--model", tiny_model, "-q")
    assert result.exit_code == 1 and "its subtitles would overwrite those of" in result.stderr
    rows = json.loads((tmp_path / "in" / "captioner-report.json").read_text())["videos"]
    assert sorted(r["status"] for r in rows) == ["failed", "ok"]


@pytest.mark.parametrize("name, fmt", [("v.srt", "srt"), ("notes.txt", "txt")])
def test_the_video_itself_is_never_its_own_output(tmp_path, clip, tiny_model, name, fmt) -> None:
    """A video named v.srt: the error offered --overwrite, and with it the video was replaced by its own subtitles."""
    video = _copy(clip, tmp_path / name)
    other = _copy(clip, tmp_path / "other.mp4")
    for extra in ([], ["--overwrite"], ["-o", tmp_path]):
        result = cli("run", video, other, "-f", fmt, "--model", tiny_model, "-q", *extra)
        assert result.exit_code == 1
        assert result.stderr == (f"error: {video}: the output would replace the video itself; rename the video, "
                                 "or -o DIR writes elsewhere\n")
        assert video.read_bytes() == clip.read_bytes() and (tmp_path / f"other.{fmt}").is_file()
    result = cli("run", video, "-f", fmt, "--model", tiny_model, "-q", "-o", tmp_path / "out")
    assert result.exit_code == 0 and (tmp_path / "out" / name).is_file()


def test_a_batch_never_writes_over_the_video_through_a_link(tmp_path, clip, tiny_model) -> None:
    tree = tmp_path / "in"
    video = _copy(clip, tree / "clip.mp4")
    (tree / "clip.srt").symlink_to("clip.mp4")  # its output is the video
    _copy(clip, tree / "other.mp4")
    result = cli("batch", tree, "--overwrite", "--model", tiny_model, "-q")
    assert result.exit_code == 1
    assert result.stderr == (f"error: {video}: {tree / 'clip.srt'}: the output would replace the video itself; "
                             "rename the video, or -o DIR writes elsewhere\n")
    assert (tree / "clip.srt").is_symlink() and (tree / "other.srt").is_file()
    rows = {Path(r["path"]).name: r["status"] for r in json.loads((tree / "captioner-report.json").read_text())["videos"]}
    assert rows == {"clip.mp4": "failed", "other.mp4": "ok"}


@pytest.mark.parametrize("args, option, what", [
    (["image", ""], "PATHS...", "file or folder name"),
    (["run", ""], "VIDEOS...", "file name"),
    (["run", "a.mp4", "--model", ""], "--model", "model folder name"),
    (["image", "a.jpg", "--model", ""], "--model", "model folder name"),
    (["info", "--model", ""], "--model", "model folder name"),
    (["search", "car", ".", "--html", ""], "--html", "file name"),
    (["batch", ""], "DIR...", "folder name"),
    (["search", "car", " "], "FOLDERS...", "folder name"),
])
def test_an_empty_name_is_a_usage_error(tmp_path, monkeypatch, args, option, what) -> None:
    """image "" (an unset shell variable) captioned every photo in the current folder, exit 0; run "" said
    '.: is a directory'; --model "" looked for a model in the current folder; as -o "" and batch "" are, each is
    now a usage error naming the argument."""
    monkeypatch.chdir(tmp_path)
    result = cli(*args)
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == f"Error: Invalid value for {option!r}: an empty {what}".replace('"', "'")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, option, message", [
    (["run", "a.mp4", "-o", "-"], "-o' / '--output-dir", "writing to standard output is not supported: give a folder"),
    (["batch", ".", "-o", "-"], "-o' / '--output-dir", "writing to standard output is not supported: give a folder"),
    (["search", "car", ".", "--html", "-"], "--html", "writing to standard output is not supported: give a file name"),
    (["run", "-"], "VIDEOS...", "reading from standard input is not supported: give a file"),
    (["image", "-"], "PATHS...", "reading from standard input is not supported: give a file or folder"),
    (["batch", "-"], "DIR...", "reading from standard input is not supported: give a folder"),
])
def test_a_dash_is_not_taken_for_a_file_name(tmp_path, monkeypatch, args, option, message) -> None:
    """-o - made a folder named '-', search --html - wrote a file named '-', run - said '-: no such file':
    a Unix user means standard input or output; captioner reads and writes files only."""
    monkeypatch.chdir(tmp_path)
    result = cli(*args)
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1].startswith(f"Error: Invalid value for '{option}': {message}")
    assert list(tmp_path.iterdir()) == []


def test_a_file_named_dash_is_still_read_and_dot_slash_dash_written(tmp_path, clip, tiny_model, monkeypatch) -> None:
    (tmp_path / "in").mkdir()
    monkeypatch.chdir(tmp_path / "in")
    _copy(clip, tmp_path / "in" / "-")
    result = cli("run", "-", "--model", tiny_model, "-q")
    assert (result.exit_code, result.stderr) == (0, "")
    assert files_under(tmp_path / "in") == ["-", "-.srt"]
    monkeypatch.chdir(tmp_path)
    result = cli("run", "in/-", "-o", "./-", "-f", "json", "--model", tiny_model, "-q")
    assert (result.exit_code, result.stderr) == (0, "")
    assert (tmp_path / "-" / "-.json").is_file()


def test_same_named_videos_of_two_folders_under_one_output_folder(tmp_path, clip, tiny_model) -> None:
    """run d1/clip.mp4 d2/clip.mp4 -o out wrote out/clip.mp4.srt for the first (the extension told nothing
    apart) and the second's error gave no way out."""
    one, two = _copy(clip, tmp_path / "d1" / "clip.mp4"), _copy(clip, tmp_path / "d2" / "clip.mp4")
    out = tmp_path / "out"
    result = cli("run", one, two, "-o", out, "--model", tiny_model, "-q")
    assert result.exit_code == 1
    assert result.stderr == (f"error: {two}: its subtitles would overwrite those of {one}; give them separate -o "
                             "folders, or caption their folder with batch (it keeps sub-folders)\n")
    assert files_under(out) == ["clip.srt"]
    avi = _copy(clip, tmp_path / "d2" / "clip.avi")  # an extension that tells it apart: both keep theirs
    result = cli("run", one, avi, "-o", tmp_path / "out2", "--model", tiny_model, "-q")
    assert result.exit_code == 0 and files_under(tmp_path / "out2") == ["clip.avi.srt", "clip.mp4.srt"]


def test_one_cue_is_said_in_the_singular(tmp_path, clip, tiny_model, monkeypatch) -> None:
    """'talk.srt  (1 cues)'."""
    from captioner.pipeline import Caption, Captioner

    monkeypatch.setattr(Captioner, "caption_batch", lambda self, items, **_: [Caption("a dog", 0.5) for _ in items])
    video = _copy(clip, tmp_path / "talk.mp4")  # one shot, one caption: one cue
    result = cli("run", video, "--model", tiny_model, "-f", "srt,txt")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == f"{tmp_path / 'talk.srt'}  (1 cue)\n{tmp_path / 'talk.txt'}  (1 cue)\n"
    # and where its one cue is left out, and a search's page (both said "1 cues")
    result = cli("run", video, "--model", tiny_model, "-f", "json", "--min-confidence", "1", "-o", tmp_path / "out")
    assert "warning: " in result.stderr and "the one cue has confidence under 1 (--min-confidence)" in result.stderr
    # the threshold as given (it said "under 0.71" for 0.715)
    result = cli("run", video, "--model", tiny_model, "-f", "json", "--min-confidence", "0.715", "-o", tmp_path / "o2")
    assert "the one cue has confidence under 0.715 (--min-confidence)" in result.stderr
    result = cli("run", video, "--model", tiny_model, "-f", "json", "-o", tmp_path / "found")
    assert cli("search", "dog", tmp_path / "found", "--html", tmp_path / "r.html").exit_code == 0
    assert "<p>1 cue searched.</p>" in (tmp_path / "r.html").read_text(encoding="utf-8")


def test_captioners_own_files_are_not_counted_as_ignored_inputs(tmp_path, clip, tiny_model) -> None:
    """run --start's a.0.5s-end.srt, a format not asked for this time and an old report in DIR were among the
    summary's 'non-video file(s) ignored' and the report's ignored files (meant for videos in containers
    captioner does not look for)."""
    tree = tmp_path / "in"
    _copy(clip, tree / "a.mp4")
    _copy(clip, tree / "sub" / "b.avi")
    assert cli("run", tree / "a.mp4", "--start", "500ms", "-f", "srt,json", "--model", tiny_model, "-q").exit_code == 0
    assert cli("run", tree / "sub" / "b.avi", "-f", "vtt", "--model", tiny_model, "-q").exit_code == 0
    assert cli("batch", tree, "-f", "html", "--model", tiny_model, "-q").exit_code == 0  # a report and an index in DIR
    for name in ("notes.txt", "sub/b.avi.srt.bak", "index.srt"):  # not captioner's
        (tree / name).write_text("x\n")
    result = cli("batch", tree, "-o", tmp_path / "out", "--model", tiny_model)
    assert result.exit_code == 0, result.stderr
    assert "3 non-video file(s) ignored" in result.stderr.splitlines()[-1]
    report = json.loads((tmp_path / "out" / "captioner-report.json").read_text())
    assert sorted(Path(p).relative_to(tree).as_posix() for p in report["ignored"]) == [
        "index.srt", "notes.txt", "sub/b.avi.srt.bak"]
    assert report["totals"]["ignored"] == 3


def test_run_clears_what_a_killed_run_of_the_same_video_left(tmp_path, tiny_model, isolate_cli) -> None:
    """A run killed outright while it wrote left '.x.srt.<random>.captioner.tmp' for good: only batch cleared them.
    One a minute old is a killed run's; a younger one may be another run's write in progress."""
    import os
    import time

    clip = make_video(tmp_path / "x.mp4", [("red", 1.0)]).path
    old, young = tmp_path / ".x.srt.abcd1234.captioner.tmp", tmp_path / ".x.json.efgh5678.captioner.tmp"
    for leftover in (old, young):
        leftover.write_text("1\n00:00:00,000 --> 00:", encoding="utf-8")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    assert cli("run", clip, "--model", tiny_model, "--beam-size", "1").exit_code == 0
    assert not old.exists() and young.exists() and (tmp_path / "x.srt").is_file()
