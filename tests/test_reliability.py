"""Bad input gets one clear line and no output; odd but usable input still gets subtitles.

Every input is generated here (tests/videos.py). Errors are checked through the real
command line: the exit code, the exact stderr line, no traceback (``CliRunner`` would
swallow one into ``result.exception``) and no file written.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import srt

from captioner import outputs, video
from captioner.errors import OutputError, VideoError
from captioner.outputs import output_base
from captioner.weights import read_manifest, sha256_file
from clitools import (  # noqa: F401  (isolate_cli is a fixture)
    REPO, captioner_command, cli, files_under, isolate_cli, run_subprocess, subprocess_env,
)
from conftest import make_tiny_model
from videos import corrupt_middle, make_video, patch_avi_header, truncate_video, write_garbage


@pytest.fixture(autouse=True)
def _isolated(isolate_cli):
    yield


@pytest.fixture(scope="module")
def clip_avi(tmp_path_factory) -> Path:
    """2 s at 10 fps (20 frames), MJPG/AVI: easy to damage or patch."""
    return make_video(tmp_path_factory.mktemp("avi") / "clip.avi", [("red", 1.0), ("checker", 1.0)]).path


@pytest.fixture(scope="module")
def clip_mp4(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("mp4") / "clip.mp4", [("red", 1.0), ("checker", 1.0)]).path


def run_cli(*args, model: Path):
    return cli("run", "--model", model, "--beam-size", "1", *args)  # later options win


def assert_one_error(result, line: str, code: int = 1) -> None:
    """Exit ``code``, exactly ``error: <line>`` on stderr, nothing on stdout, no traceback."""
    assert isinstance(result.exception, SystemExit), result.exception  # anything else would be a traceback
    assert result.exit_code == code
    assert result.stderr == f"error: {line}\n"
    assert result.stdout == ""


def srt_cues(path: Path) -> list[srt.Subtitle]:
    cues = list(srt.parse(path.read_text(encoding="utf-8")))
    assert cues, f"{path} has no cues"
    ends = [c.end.total_seconds() for c in cues]
    starts = [c.start.total_seconds() for c in cues]
    assert starts[0] == 0.0 and all(s < e for s, e in zip(starts, ends))
    assert all(e <= s for e, s in zip(ends, starts[1:]))  # ordered, non-overlapping
    return cues


# =========================================================================== one line, no file


def test_missing_path(tmp_path, tiny_model) -> None:
    missing = tmp_path / "nope.mp4"
    assert_one_error(run_cli(missing, model=tiny_model), f"{missing}: no such file")
    assert files_under(tmp_path) == []


def test_a_file_name_that_is_not_utf8(tmp_path, tiny_model) -> None:
    """A Latin-1 name from an old disk ("caf\xe9.mp4"): OpenCV's binding crashed the process on it (a segmentation
    fault, no error line); the review page's link and the search index must keep the name's own bytes."""
    raw = os.fsencode(tmp_path) + b"/caf\xe9.mp4"
    try:
        make_video(tmp_path / "plain.mp4", [("red", 1.0), ("blue", 1.0)])
        os.rename(tmp_path / "plain.mp4", raw)
    except (OSError, UnicodeError):
        pytest.skip("this file system takes UTF-8 names only")
    video = Path(os.fsdecode(raw))
    out = tmp_path / "out"
    result = run_cli(video, "-o", out, "-f", "all", "-q", model=tiny_model)
    assert result.exit_code == 0, result.stderr
    page = out / os.fsdecode(b"caf\xe9.html")
    assert {p.name for p in out.iterdir()} == {os.fsdecode(b"caf\xe9." + f) for f in (b"srt", b"vtt", b"json", b"txt", b"html")}
    assert "caf%E9.mp4" in page.read_text(encoding="utf-8")  # the link a browser resolves to the file's bytes
    found = cli("search", "a red thing", out, "-n", "1", "--json")
    assert found.exit_code == 0, found.stderr
    assert json.loads(found.stdout)["results"][0]["output"] == str(out / os.fsdecode(b"caf\xe9.json"))  # its bytes, back
    again = cli("search", "a red thing", out, "-n", "1")  # from the index it saved: the name read back whole
    assert again.exit_code == 0 and again.stdout_bytes.startswith(os.fsencode(out) + b"/caf\xe9.json  ")


@pytest.mark.parametrize("url", ["https://example.com/talk.mp4", "rtsp://camera.local/stream"])
def test_a_url_is_named_as_one(tmp_path, tiny_model, monkeypatch, url) -> None:
    """The tool runs offline: a URL gets "no such file" and why, not a network attempt or a bare "no such file"."""
    monkeypatch.chdir(tmp_path)
    result = run_cli(url, model=tiny_model)
    assert_one_error(result, f"{url}: no such file (a URL: captioner reads local files only; download it first)")
    assert files_under(tmp_path) == []
    image = cli("image", url.replace(".mp4", ".jpg"), "--model", tiny_model)
    assert image.exit_code == 1 and image.stderr == (f"error: {url.replace('.mp4', '.jpg')}: no such file or folder "
                                                     "(a URL: captioner reads local files only; download it first)\n")


def test_a_file_url_is_named_as_typed_with_its_path(tmp_path, tiny_model, monkeypatch) -> None:
    """file:///x lost a slash (a Path keeps file:/x) and was told to be downloaded."""
    monkeypatch.chdir(tmp_path)
    result = run_cli("file:///no/where/talk.mp4", model=tiny_model)
    assert_one_error(result, "file:///no/where/talk.mp4: no such file (a file: URL: give the path itself, "
                             "/no/where/talk.mp4)")


@pytest.mark.parametrize("name", ["videos", ".", ".."])
def test_directory_is_not_a_video(tmp_path, tiny_model, monkeypatch, name) -> None:
    (tmp_path / "work" / "videos").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "work")
    assert_one_error(run_cli(name, model=tiny_model), f"{name}: is a directory, not a video file")
    assert files_under(tmp_path) == []


def test_fifo_does_not_block(tmp_path, tiny_model) -> None:
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    assert_one_error(run_cli(fifo, model=tiny_model), f"{fifo}: not a regular file")


def test_empty_file(tmp_path, tiny_model) -> None:
    empty = tmp_path / "empty.mp4"
    empty.touch()
    assert_one_error(run_cli(empty, model=tiny_model), f"{empty}: empty file")
    assert files_under(tmp_path) == ["empty.mp4"]


@pytest.mark.parametrize("name, content", [
    ("notes.mp4", "text"), ("notes.avi", "text"), ("noise.mp4", "random"), ("noise.avi", "random"),
])
def test_not_a_video(tmp_path, tiny_model, name, content) -> None:
    path = tmp_path / name
    if content == "text":
        path.write_text("These are my notes, not a video.\n" * 20, encoding="utf-8")
    else:
        write_garbage(path)
    assert_one_error(run_cli(path, "-f", "all", model=tiny_model), f"{path}: not a video file or unsupported codec")
    assert files_under(tmp_path) == [name]


@pytest.mark.parametrize("suffix", [".avi", ".mp4"])
def test_truncated_header_only(tmp_path, tiny_model, clip_avi, clip_mp4, suffix) -> None:
    """The header opens (size, fps, count), but not one frame decodes."""
    src = clip_avi if suffix == ".avi" else clip_mp4
    cut = truncate_video(src, tmp_path / f"cut{suffix}")
    assert_one_error(run_cli(cut, model=tiny_model), f"{cut}: no decodable frames")
    assert files_under(tmp_path) == [cut.name]


def test_output_dir_cannot_be_created(tmp_path, tiny_model, clip_avi) -> None:
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "subs"
    assert_one_error(run_cli(clip_avi, "-o", out, model=tiny_model),
                     f"{out}: cannot create output folder (Not a directory)")
    assert files_under(tmp_path) == ["afile"]
    assert not clip_avi.with_suffix(".srt").exists()


def _model_copy(tiny_model: Path, folder: Path) -> Path:
    return Path(shutil.copytree(tiny_model, folder))


def test_corrupted_weights(tmp_path, tiny_model, clip_avi) -> None:
    model = _model_copy(tiny_model, tmp_path / "model")
    tensors = model / "decoder.safetensors"
    data = bytearray(tensors.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the tensor data
    tensors.write_bytes(bytes(data))
    expected = read_manifest(model)["sha256"]
    result = cli("run", clip_avi, "-o", tmp_path / "out", "--model", model)
    assert_one_error(result, f"{tensors}: checksum mismatch (expected {expected[:12]}… for model 'tiny-test', "
                             f"got {sha256_file(tensors)[:12]}…); the file is corrupt or belongs to another model")
    assert not (tmp_path / "out").exists()


def test_weights_of_another_model(tmp_path, tiny_model, clip_avi) -> None:
    model = _model_copy(tiny_model, tmp_path / "model")
    other = make_tiny_model(tmp_path / "other", seed=1)
    shutil.copy(other / "decoder.safetensors", model / "decoder.safetensors")
    result = cli("run", clip_avi, "-o", tmp_path / "out", "--model", model)
    assert result.exit_code == 1 and "Traceback" not in result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: {model / 'decoder.safetensors'}: checksum mismatch (expected ")
    assert "for model 'tiny-test'" in line
    assert not (tmp_path / "out").exists()


def test_missing_model_folder(tmp_path, clip_avi) -> None:
    assert_one_error(run_cli(clip_avi, model=tmp_path / "nope"), f"{tmp_path / 'nope'}: no such model folder")


@pytest.mark.parametrize("args, complaint", [
    (["--fps", "-1"], "--fps"),
    (["--fps", "0"], "--fps"),
    (["--beam-size", "0"], "--beam-size"),
    (["-f", "docx"], "docx"),
    (["-f", "srt,pdf"], "pdf"),
    (["--max-line-width", "3"], "--max-line-width"),
    (["--max-segment", "-5"], "--max-segment"),
])
def test_invalid_options_are_usage_errors(tmp_path, tiny_model, clip_avi, args, complaint) -> None:
    result = run_cli(clip_avi, "-o", tmp_path / "out", *args, model=tiny_model)
    assert isinstance(result.exception, SystemExit)
    assert result.exit_code == 2
    assert result.stderr.startswith("Usage: ") and "Error: Invalid value" in result.stderr
    assert complaint in result.stderr and "Traceback" not in result.stderr
    assert files_under(tmp_path) == []


def test_no_arguments_is_a_usage_error() -> None:
    result = cli("run")
    assert result.exit_code == 2 and "Missing argument 'VIDEOS...'" in result.stderr


# =========================================================================== still captioned


def test_damaged_middle_keeps_what_decodes(tmp_path, tiny_model, clip_avi) -> None:
    damaged = corrupt_middle(clip_avi, tmp_path / "damaged.avi")
    result = run_cli(damaged, "-f", "srt,json", model=tiny_model)
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    warnings, written = [w for w in lines if w.startswith("warning: ")], [w for w in lines if not w.startswith("warning: ")]
    stopped = [w for w in warnings if w.startswith(f"warning: {damaged}: decoding stopped after ")]
    assert len(stopped) == 1 and stopped[0].endswith("captioning what was read"), warnings
    cues = srt_cues(tmp_path / "damaged.srt")
    assert written == [f"{tmp_path / 'damaged'}.{f}  ({len(cues)} cue{'' if len(cues) == 1 else 's'})" for f in ("srt", "json")]
    decoded = json.loads((tmp_path / "damaged.json").read_text())["metadata"]["video"]["duration"]
    assert decoded < 2.0  # the subtitles end where the frames did, not where the header says
    assert cues[-1].end.total_seconds() == decoded


@pytest.mark.parametrize("lie", [{"frame_count": 1000}, {"frame_count": 3}, {"fps": 1000}])
def test_lying_metadata(tmp_path, tiny_model, clip_avi, lie) -> None:
    liar = patch_avi_header(clip_avi, tmp_path / "liar.avi", **lie)
    result = run_cli(liar, "-q", model=tiny_model)
    assert result.exit_code == 0, result.stderr
    cues = srt_cues(tmp_path / "liar.srt")
    if "frame_count" in lie:
        # 20 frames really decode at 10 fps: 2 s, whatever the header says
        assert cues[-1].end.total_seconds() == 2.0
    else:
        assert cues[-1].end.total_seconds() <= 2.0


def test_no_fps_metadata(tmp_path, tiny_model, clip_avi) -> None:
    unknown = patch_avi_header(clip_avi, tmp_path / "nofps.avi", fps=0)
    result = run_cli(unknown, "-f", "srt,json", "-q", model=tiny_model)
    assert result.exit_code == 0, result.stderr
    cues = srt_cues(tmp_path / "nofps.srt")
    meta = json.loads((tmp_path / "nofps.json").read_text())["metadata"]["video"]
    assert meta["fps"] > 0  # FFmpeg's 25 fps fallback, never 0 or a division by zero
    assert cues[-1].end.total_seconds() == meta["duration"] == pytest.approx(20 / meta["fps"])


@pytest.mark.parametrize("seconds, frames", [(0.1, 1), (0.5, 5)])
def test_one_frame_and_sub_second_videos(tmp_path, tiny_model, seconds, frames) -> None:
    clip = make_video(tmp_path / "short.mp4", [("blue", seconds)])
    assert clip.frame_count == frames
    result = run_cli(clip.path, "-q", model=tiny_model)
    assert result.exit_code == 0, result.stderr
    (cue,) = srt_cues(tmp_path / "short.srt")
    assert cue.end.total_seconds() == pytest.approx(seconds)


def test_long_low_resolution_video(tmp_path, tiny_model) -> None:
    clip = make_video(tmp_path / "long.avi", [("red", 20), ("checker", 20), ("blue", 20)], fps=2, size=(32, 24))
    result = run_cli(clip.path, "-q", "--fps", "0.25", model=tiny_model)
    assert result.exit_code == 0, result.stderr
    cues = srt_cues(tmp_path / "long.srt")
    assert cues[-1].end.total_seconds() == 60.0


def test_unicode_and_spaces_in_path(tmp_path, tiny_model, clip_mp4) -> None:
    folder = tmp_path / "dossier été" / "日本 語"
    folder.mkdir(parents=True)
    video_path = folder / "vidéo clip ✓ 100% [final].mp4"
    shutil.copy(clip_mp4, video_path)
    result = run_cli(video_path, model=tiny_model)
    assert result.exit_code == 0, result.stderr
    out = folder / "vidéo clip ✓ 100% [final].srt"
    srt_cues(out)
    assert result.stderr.startswith(f"{out}  (")


def test_portrait_odd_sized_frames(tmp_path, tiny_model) -> None:
    clip = make_video(tmp_path / "portrait.avi", [("red", 1.0), ("stripes", 1.0)], size=(37, 91))
    result = run_cli(clip.path, "-q", "-f", "srt,json", model=tiny_model)
    assert result.exit_code == 0, result.stderr
    srt_cues(tmp_path / "portrait.srt")
    meta = json.loads((tmp_path / "portrait.json").read_text())["metadata"]["video"]
    assert meta["height"] > meta["width"] > 0


# =========================================================================== guarantees


def test_failure_mid_way_leaves_no_partial_file(tmp_path, tiny_model, clip_avi, monkeypatch) -> None:
    """srt is written whole; the vtt fails after its bytes went to the temporary file."""
    real_replace = os.replace
    attempts: list[str] = []

    def replace(src, dst):
        attempts.append(os.path.basename(src))
        if str(dst).endswith(".vtt"):
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(outputs.os, "replace", replace)
    out = tmp_path / "out"
    result = run_cli(clip_avi, "-o", out, "-f", "srt,vtt", "-q", model=tiny_model)
    # the formats are renamed together once all are written: a rename that fails says what it replaced already
    assert_one_error(result, f"{out / 'clip.vtt'}: cannot write: No space left on device "
                             f"({out / 'clip.srt'} replaced already)")
    assert attempts[-1].startswith(".clip.vtt.") and attempts[-1].endswith(".tmp")  # it got that far
    assert files_under(out) == ["clip.srt"]  # no .vtt, no temporary file
    srt_cues(out / "clip.srt")


def test_ctrl_c_exits_130_and_leaves_no_file(tmp_path, tiny_model, clip_avi, monkeypatch) -> None:
    """Ctrl-C while the subtitle file is being written (the worst moment)."""
    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(outputs.os, "fsync", interrupted)
    out = tmp_path / "out"
    result = run_cli(clip_avi, "-o", out, model=tiny_model)
    assert result.exit_code == 130
    assert result.stderr == "interrupted\n"
    assert files_under(out) == []


def test_sigint_in_a_real_process(tmp_path, tiny_model) -> None:
    """A real SIGINT while captioning: exit 130, one line, no subtitle file."""
    with _long_run(tmp_path, tiny_model, _sigint_as_in_a_terminal) as proc:
        proc.send_signal(signal.SIGINT)
        rest = proc.stderr.read()
        assert proc.wait(timeout=60) == 130
    assert rest == "interrupted\n"
    assert files_under(tmp_path) == ["long.mp4"]


@contextlib.contextmanager
def _long_run(tmp_path: Path, model: Path, preexec_fn):
    """``captioner run -v`` of a 60 s clip in a child process, once it is captioning; killed on the way out."""
    clip = make_video(tmp_path / "long.mp4", [("red", 30.0), ("blue", 30.0)], fps=10)  # 600 frames to encode
    proc = subprocess.Popen(captioner_command("run", "-v", "--fps", "10", "--model", model, clip.path),
                            stderr=subprocess.PIPE, text=True, env=subprocess_env(), cwd=REPO, preexec_fn=preexec_fn)
    try:
        first = proc.stderr.readline()
        assert first.startswith("info: loaded model tiny-test"), first
        time.sleep(0.3)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_ctrl_c_while_the_command_line_loads(tmp_path) -> None:
    """A Ctrl-C during the ~0.2 s of imports before the CLI's own handling: one line and 130, no traceback
    (the import is made to raise it, as a Ctrl-C landing there does)."""
    code = ("import importlib.abc, sys\n"
            "class Stop(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path, target=None):\n"
            "        if name == 'captioner.cli':\n"
            "            raise KeyboardInterrupt\n"
            "sys.meta_path.insert(0, Stop())\n"
            "import captioner\n"
            "captioner.console()\n")
    done = subprocess.run([sys.executable, "-c", code, "run", "x.mp4"], capture_output=True, text=True,
                          env=subprocess_env(), cwd=tmp_path, timeout=60)
    assert (done.returncode, done.stderr) == (130, "interrupted\n")
    import tomllib

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["captioner"] == "captioner:console"  # the installed command goes through it


def _sigint_as_in_a_terminal() -> None:
    """A child's Ctrl-C as a terminal gives it (CI may start the tests with SIGINT ignored, which children inherit)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_an_ignored_sigint_stays_ignored(tmp_path, tiny_model) -> None:
    """Started ignoring Ctrl-C (a shell's `captioner run … &`), a run goes on through it, as Python leaves it
    ignored; a SIGTERM still stops it with its one line."""
    with _long_run(tmp_path, tiny_model, lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) as proc:
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)
        assert proc.poll() is None  # still captioning
        proc.send_signal(signal.SIGTERM)
        rest = proc.stderr.read()
        assert proc.wait(timeout=60) == 143
    assert rest.endswith("terminated\n") and "interrupted" not in rest, rest
    assert files_under(tmp_path) == ["long.mp4"]


class _Payload:
    """Unpickling this creates ``marker``: the code a malicious weights file would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("kind", ["pickle", "torch.save"])
def test_pickle_weights_are_never_unpickled(tmp_path, tiny_model, clip_avi, kind) -> None:
    import torch

    model = _model_copy(tiny_model, tmp_path / "model")
    tensors = model / "decoder.safetensors"
    marker = tmp_path / "pwned"
    if kind == "pickle":
        tensors.write_bytes(pickle.dumps(_Payload(marker)))
    else:
        torch.save({"fc.weight": _Payload(marker)}, tensors)
    # make the checksum match, so only the file format stands between the file and the loader
    manifest = json.loads((model / "model.json").read_text())
    manifest["sha256"] = sha256_file(tensors)
    (model / "model.json").write_text(json.dumps(manifest))

    result = cli("run", clip_avi, "-o", tmp_path / "out", "--model", model)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: {tensors}: not a valid safetensors file (")
    assert not marker.exists()
    assert not (tmp_path / "out").exists()
    # the payload is live: unpickling the same bytes the unsafe way would have run it
    if kind == "pickle":
        pickle.loads(tensors.read_bytes())
        assert marker.exists()


@pytest.mark.parametrize("name", [
    "..mp4", ".mp4", "...", "a..mp4", "-rf.mp4", "talk.v2.mp4", "new\nline.mp4", "back\\slash.mp4",
])
def test_output_paths_stay_in_the_output_dir(tmp_path, name) -> None:
    out = tmp_path / "out"
    for video_path in (Path(name), tmp_path / "in" / name, Path("../../elsewhere") / name):
        base = output_base(video_path, out)
        for fmt in ("srt", "json"):
            written = (base.parent / f"{base.name}.{fmt}").resolve()
            assert written.parent == out.resolve(), (video_path, written)
        beside = output_base(video_path, None)
        assert beside.parent == video_path.parent and beside.name


def test_batch_mirroring_stays_in_the_output_dir(tmp_path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "outside.mp4").write_bytes(b"x")
    (root / "sub" / "link.mp4").symlink_to(tmp_path / "outside.mp4")
    out = tmp_path / "out"
    assert output_base(root / "sub" / "v.mp4", out, relative_to=root) == out / "sub" / "v"
    # a symlink is mirrored where it is listed, not where it points
    assert output_base(root / "sub" / "link.mp4", out, relative_to=root) == out / "sub" / "link"
    assert output_base(root / "sub" / ".." / "..mp4", out, relative_to=root) == out / "..mp4"
    with pytest.raises(OutputError, match="not inside"):
        output_base(tmp_path / "outside.mp4", out, relative_to=root)
    with pytest.raises(OutputError, match="not inside"):
        output_base(root / ".." / "outside.mp4", out, relative_to=root)


def test_a_file_named_dot_dot_mp4_is_captioned_inside_the_output_dir(tmp_path, tiny_model, clip_mp4) -> None:
    (tmp_path / "in").mkdir()
    shutil.copy(clip_mp4, tmp_path / "in" / "..mp4")
    result = run_cli(tmp_path / "in" / "..mp4", "-o", tmp_path / "out", "-q", model=tiny_model)
    assert result.exit_code == 0, result.stderr
    assert files_under(tmp_path) == ["in/..mp4", "out/..mp4.srt"]


def test_decoding_is_time_bounded(tmp_path, clip_avi, monkeypatch) -> None:
    """open_video and iter_frames hand OpenCV open and read timeouts (this build accepts them)."""
    real = cv2.VideoCapture
    calls: list[tuple] = []

    def spy(*args):
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(video.cv2, "VideoCapture", spy)
    video.open_video(clip_avi)
    frames = list(video.iter_frames(clip_avi, 1.0, max_frame_seconds=2.5))
    assert len(frames) == 2
    assert len(calls) == 2  # each opened at the first try, with the timeouts
    for args, seconds in zip(calls, (video.OPEN_TIMEOUT_S, 2.5)):
        params = dict(zip(args[2][::2], args[2][1::2]))
        assert params == {cv2.CAP_PROP_OPEN_TIMEOUT_MSEC: int(seconds * 1000),
                          cv2.CAP_PROP_READ_TIMEOUT_MSEC: int(seconds * 1000)}


class _WeirdCapture:
    """A capture whose frames OpenCV itself cannot handle."""

    def __init__(self, fail_on: str) -> None:
        self.fail_on = fail_on
        self.index = -1

    def isOpened(self):
        if self.fail_on == "isOpened":
            raise cv2.error("OpenCV(5.0.0) /src/cap.cpp:1: error: (-2:Unspecified error) bad stream in function 'x'")
        return True

    def get(self, prop):
        return {cv2.CAP_PROP_FPS: 10.0, cv2.CAP_PROP_FRAME_COUNT: 4.0}.get(prop, 0.0)

    def grab(self):
        self.index += 1
        return self.index < 4

    def retrieve(self):
        if self.fail_on == "retrieve" and self.index % 2:
            return True, np.zeros((6, 8, 2), np.uint8)  # two channels: cvtColor raises cv2.error
        return True, np.zeros((6, 8, 3), np.uint8)

    def release(self):
        pass


def test_opencv_errors_become_video_errors(tmp_path, monkeypatch) -> None:
    path = tmp_path / "weird.mp4"
    path.write_bytes(b"x")
    monkeypatch.setattr(video, "_open_capture", lambda p, timeout_s: _WeirdCapture("isOpened"))
    with pytest.raises(VideoError) as info:
        video.open_video(path)
    assert str(info.value) == f"{path}: OpenCV cannot read this file ((-2:Unspecified error) bad stream)"
    with pytest.raises(VideoError, match="OpenCV cannot decode this file"):
        list(video.iter_frames(path, 10.0))
    # a frame OpenCV cannot convert is skipped like any undecodable frame
    monkeypatch.setattr(video, "_open_capture", lambda p, timeout_s: _WeirdCapture("retrieve"))
    assert [f.index for f in video.iter_frames(path, 100.0)] == [0, 2]


def test_opencv_and_ffmpeg_noise_is_silenced(tmp_path, tiny_model, clip_mp4) -> None:
    """In a real process FFmpeg writes its own complaints to stderr; the user sees only ours."""
    garbage = write_garbage(tmp_path / "garbage.mp4")
    cut = truncate_video(clip_mp4, tmp_path / "cut.mp4")
    quiet = run_subprocess("run", garbage, cut, "--model", tiny_model)
    assert quiet.returncode == 1
    assert quiet.stderr.splitlines() == [f"error: {garbage}: not a video file or unsupported codec",
                                         f"error: {cut}: no decodable frames"]
    loud = run_subprocess("run", "-vv", garbage, "--model", tiny_model)  # debugging: let it all through
    assert loud.returncode == 1
    assert "moov atom not found" in loud.stderr
    # (the weights' debug lines may come after it: they load beside the first video)
    errors = [line for line in loud.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {garbage}: not a video file or unsupported codec"]
    assert files_under(tmp_path) == ["cut.mp4", "garbage.mp4"]


def test_swallowed_interrupt_still_stops_before_writing(tmp_path, tiny_model, clip_avi, monkeypatch) -> None:
    """A Ctrl-C whose KeyboardInterrupt was lost where it landed (a ``__del__``, a C callback) still ends the run."""
    from captioner import cli as cli_module
    from captioner.pipeline import Captioner

    real = Captioner.caption_video

    def interrupted_then_swallowed(self, path, progress=None):
        cli_module._INTERRUPTED.append(True)  # what the SIGINT handler records before raising
        return real(self, path, progress=progress)

    monkeypatch.setattr(Captioner, "caption_video", interrupted_then_swallowed)
    out = tmp_path / "out"
    result = run_cli(clip_avi, "-o", out, model=tiny_model)
    assert result.exit_code == 130
    assert result.stderr.endswith("interrupted\n")
    assert not out.exists() or files_under(out) == []


def test_the_library_keeps_ffmpegs_own_messages_off_stderr(tmp_path) -> None:
    """Only the CLI quieted FFmpeg and OpenCV: a library caller got "moov atom not found" and OpenCV's
    warnings on stderr for a file that is not a video (hundreds of lines for a damaged one)."""
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video\n")
    code = ("from captioner.video import open_video\n"
            "try:\n"
            f"    open_video({str(bad)!r})\n"
            "except Exception as exc:\n"
            "    print(type(exc).__name__)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(),
                          cwd=tmp_path, timeout=60)
    assert (done.stdout, done.stderr) == ("VideoError\n", "")


def test_ctrl_c_while_click_reads_the_command_line(monkeypatch) -> None:
    """Between the imports and the command's own handling, click turned a Ctrl-C into "Aborted!" and exit 1."""
    import click

    parse = click.Group.make_context

    def interrupted(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # the user's Ctrl-C while the options are read
        time.sleep(0.05)
        return parse(self, *args, **kwargs)

    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (CI may start us ignoring it)
    try:
        monkeypatch.setattr(click.Group, "make_context", interrupted)
        result = cli("info")
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # given back
    finally:
        signal.signal(signal.SIGINT, before)
    assert (result.exit_code, result.stderr) == (130, "interrupted\n")


def test_run_goes_on_when_what_reads_its_stderr_has_gone(tmp_path, tiny_model) -> None:
    """`captioner run a b c 2>&1 | head -1`: the second progress line met a closed pipe, click made that exit 1,
    and the third video was never captioned."""
    videos = [make_video(tmp_path / f"v{i}.mp4", [("red", 1.0)]).path for i in range(3)]
    proc = subprocess.Popen(captioner_command("run", *videos, "-o", tmp_path / "out", "--model", tiny_model),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=subprocess_env(), cwd=REPO)
    try:
        assert proc.stderr.readline().endswith("v0.srt  (1 cue)\n")
        proc.stderr.close()  # the reader is gone
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert files_under(tmp_path / "out") == ["v0.srt", "v1.srt", "v2.srt"]
