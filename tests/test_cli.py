"""The command line end to end: generated videos in, subtitle files out (tiny model)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import srt

from captioner import __version__
from captioner.pipeline import Caption, Captioner
from captioner.weights import read_manifest
from clitools import cli, files_under, isolate_cli  # noqa: F401  (isolate_cli is a fixture)
from videos import make_video, shot_frame


@pytest.fixture(autouse=True)
def _isolated(isolate_cli):
    yield


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """2 s, two shots; the tests copy it where they need it."""
    return make_video(tmp_path_factory.mktemp("clip") / "clip.mp4", [("red", 1.0), ("checker", 1.0)]).path


def _copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(src.read_bytes())
    return dst


def test_help_lists_commands_and_options() -> None:
    top = cli("--help")
    assert top.exit_code == 0
    for command in ("run", "image", "info"):
        assert f"  {command} " in top.stdout
    run_help = cli("run", "--help")
    assert run_help.exit_code == 0
    for option in ("--output-dir", "--output-format", "--fps", "--beam-size", "--max-segment", "--min-duration",
                   "--shot-threshold", "--max-line-width", "--max-line-count", "--model", "--quiet", "--verbose"):
        assert option in run_help.stdout, option
    assert "--beam-size" in cli("image", "--help").stdout


def test_help_fits_80_columns_and_names_every_command_whole(monkeypatch) -> None:
    """The command list cut summaries mid-phrase ("Caption photos (files, or folders of..."), and batch's help had
    lines of 83-89 columns in an 80-column terminal (its blocks are not re-wrapped)."""
    from click.testing import CliRunner

    from captioner.cli import main

    monkeypatch.setenv("COLUMNS", "80")
    commands = ("run", "batch", "image", "info", "search")
    for args in [(), *((c,) for c in commands)]:
        text = CliRunner().invoke(main, [*args, "--help"], terminal_width=80).stdout
        assert max(map(len, text.splitlines())) <= 80, (args, [l for l in text.splitlines() if len(l) > 80])
    listed = CliRunner().invoke(main, ["--help"], terminal_width=80).stdout.split("Commands:", 1)[1]
    assert "..." not in listed and all(f"  {c} " in listed for c in commands), listed


def test_version() -> None:
    result = cli("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"captioner, version {__version__}"


def test_run_writes_srt_beside_the_video(tmp_path, clip, tiny_model) -> None:
    video = _copy(clip, tmp_path / "talk.mp4")
    result = cli("run", video, "--model", tiny_model, "--beam-size", "1")
    assert result.exit_code == 0, result.stderr
    assert files_under(tmp_path) == ["talk.mp4", "talk.srt"]
    cues = list(srt.parse((tmp_path / "talk.srt").read_text(encoding="utf-8")))
    assert cues and cues[0].start.total_seconds() == 0.0
    assert cues[-1].end.total_seconds() <= 2.0 + 1e-6
    assert result.stdout == ""  # subtitles go to files; stdout stays clean
    assert result.stderr == f"{tmp_path / 'talk.srt'}  ({len(cues)} cue{'' if len(cues) == 1 else 's'})\n"


def test_run_into_output_dir(tmp_path, clip, tiny_model) -> None:
    video = _copy(clip, tmp_path / "in" / "talk.mp4")
    out = tmp_path / "subs" / "nested"  # created, parents included
    result = cli("run", video, "-o", out, "--model", tiny_model, "--beam-size", "1", "-q")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""  # -q: nothing but errors
    assert files_under(tmp_path) == ["in/talk.mp4", "subs/nested/talk.srt"]


def test_all_formats_parse_back(tmp_path, clip, tiny_model) -> None:
    video = _copy(clip, tmp_path / "talk.mp4")
    result = cli("run", video, "-o", tmp_path / "out", "-f", "all", "--model", tiny_model, "--fps", "2")
    assert result.exit_code == 0, result.stderr
    out = tmp_path / "out"
    assert files_under(out) == ["talk.html", "talk.json", "talk.srt", "talk.txt", "talk.vtt"]
    cues = list(srt.parse((out / "talk.srt").read_text(encoding="utf-8")))
    data = json.loads((out / "talk.json").read_text(encoding="utf-8"))
    vtt = (out / "talk.vtt").read_text(encoding="utf-8")
    txt = (out / "talk.txt").read_text(encoding="utf-8")
    assert len(cues) == len(data["cues"]) >= 1
    assert [c["text"] for c in data["cues"]] == [c.content.replace("\n", " ") for c in cues]
    assert [(c["start"], c["end"]) for c in data["cues"]] == [
        (c.start.total_seconds(), c.end.total_seconds()) for c in cues]
    assert all(0.0 <= c["confidence"] <= 1.0 for c in data["cues"])
    assert data["metadata"]["model"]["name"] == "tiny-test"
    assert data["metadata"]["model"]["encoder_precision"] == "float32"  # the default
    assert data["metadata"]["video"]["width"] == 64 and data["metadata"]["video"]["duration"] == 2.0
    assert vtt.startswith("WEBVTT\n\n") and vtt.count(" --> ") == len(cues)
    assert txt.splitlines() == [c["text"] for c in data["cues"]]


def test_repeated_format_options_add_up(tmp_path, clip, tiny_model) -> None:
    """``-f srt -f vtt`` (as ffmpeg users write it) is ``-f srt,vtt``: it had kept only the last one."""
    video = _copy(clip, tmp_path / "talk.mp4")
    result = cli("run", video, "-o", tmp_path / "out", "-f", "srt", "-f", "vtt,json", "-f", "srt",
                 "--model", tiny_model, "-q")
    assert result.exit_code == 0, result.stderr
    assert files_under(tmp_path / "out") == ["talk.json", "talk.srt", "talk.vtt"]


def test_max_line_width_is_respected(tmp_path, clip, tiny_model, monkeypatch) -> None:
    # the tiny model says one or two words; give it something worth wrapping
    long = "a man in a red shirt is riding a bicycle down a busy street"
    monkeypatch.setattr(Captioner, "caption_batch", lambda self, items, **_: [Caption(long, 0.5) for _ in items])
    video = _copy(clip, tmp_path / "talk.mp4")
    result = cli("run", video, "-f", "srt,vtt,txt", "--model", tiny_model, "--max-line-width", "16",
                 "--max-line-count", "4")
    assert result.exit_code == 0, result.stderr
    (cue,) = list(srt.parse((tmp_path / "talk.srt").read_text(encoding="utf-8")))
    lines = cue.content.split("\n")
    assert len(lines) > 1 and all(len(line) <= 16 for line in lines), lines
    assert " ".join(lines) == long  # wrapped, nothing dropped
    vtt_lines = (tmp_path / "talk.vtt").read_text(encoding="utf-8").split("\n\n")[1].splitlines()[1:]
    assert vtt_lines == lines
    assert (tmp_path / "talk.txt").read_text(encoding="utf-8") == long + "\n"  # txt is never wrapped


def test_min_confidence_leaves_out_unsure_cues(tmp_path, clip, tiny_model, monkeypatch) -> None:
    # the clip's two shots get one unsure and one sure caption
    said = [Caption("a red wall", 0.3), Caption("a checkered floor", 0.8)]
    monkeypatch.setattr(Captioner, "caption_batch", lambda self, items, **_: said[: len(items)])
    video = _copy(clip, tmp_path / "talk.mp4")
    texts = {}
    for threshold in ("0", "0.5", "0.9"):
        out = tmp_path / threshold
        result = cli("run", video, "-o", out, "-f", "json,srt", "--model", tiny_model, "--min-duration", "0.5",
                     "--min-confidence", threshold, "-q")
        assert result.exit_code == 0, result.stderr
        texts[threshold] = [c["text"] for c in json.loads((out / "talk.json").read_text(encoding="utf-8"))["cues"]]
        assert [c.content for c in srt.parse((out / "talk.srt").read_text(encoding="utf-8"))] == texts[threshold]
    assert texts == {"0": ["a red wall", "a checkered floor"], "0.5": ["a checkered floor"], "0.9": []}
    said_all = cli("run", video, "-o", tmp_path / "none", "--model", tiny_model, "--min-confidence", "0.9")
    assert said_all.exit_code == 0 and "no captions" in said_all.stderr  # an empty file is not silent
    bad = cli("run", video, "--model", tiny_model, "--min-confidence", "1.5")
    assert bad.exit_code == 2 and "min-confidence" in bad.stderr


def test_min_confidence_judges_cues_as_written(tmp_path, clip, tiny_model, monkeypatch) -> None:
    """--min-confidence filtered each segment's caption before neighbours with the same text were merged into the
    cue the files show, with its time-weighted confidence: a cue written at 0.64 lost a 4 s stretch at 0.5 (a
    tester, video9560), and the counts logged were of segments. Cues are judged as written."""
    said = [Caption("a red wall", 0.3), Caption("a red wall", 0.9)]  # the clip's two shots, one caption
    monkeypatch.setattr(Captioner, "caption_batch", lambda self, items, **_: said[: len(items)])
    video = _copy(clip, tmp_path / "talk.mp4")
    cues = {}
    for threshold in ("0", "0.5"):
        out = tmp_path / threshold
        result = cli("run", video, "-o", out, "-f", "json", "--model", tiny_model, "--min-duration", "0.5",
                     "--min-confidence", threshold, "-q")
        assert result.exit_code == 0, result.stderr
        cues[threshold] = json.loads((out / "talk.json").read_text(encoding="utf-8"))["cues"]
    assert len(cues["0"]) == 1 and 0.5 < cues["0"][0]["confidence"] < 0.9  # one cue, the two segments' mean
    assert cues["0.5"] == cues["0"]  # was: the second shot's piece alone, at 0.9


def test_several_videos_one_bad(tmp_path, clip, tiny_model) -> None:
    a = _copy(clip, tmp_path / "a.mp4")
    bad = tmp_path / "b.mp4"
    bad.write_text("not a video\n")
    c = _copy(clip, tmp_path / "c.mp4")
    result = cli("run", a, bad, c, "--model", tiny_model, "--beam-size", "1", "-q")
    assert result.exit_code == 1
    assert result.stderr == f"error: {bad}: not a video file or unsupported codec\n"
    assert files_under(tmp_path) == ["a.mp4", "a.srt", "b.mp4", "c.mp4", "c.srt"]


DIALOGUE = "1\n00:00:01,000 --> 00:00:02,000\nWhere are you going?\n"


def test_run_never_replaces_a_films_dialogue_subtitles_unasked(tmp_path, clip, tiny_model) -> None:
    """<name>.srt beside a video is where players find its dialogue: run leaves a file captioner did not write
    alone (one error line, the other videos captioned), replaces its own, and replaces anything with --overwrite."""
    film = _copy(clip, tmp_path / "film.mp4")
    (tmp_path / "film.srt").write_text(DIALOGUE)
    talk = _copy(clip, tmp_path / "talk.mp4")
    result = cli("run", film, talk, "--model", tiny_model, "--beam-size", "1", "-f", "srt,json", "-q")
    assert result.exit_code == 1
    assert result.stderr == (f"error: {tmp_path / 'film.srt'}: exists and captioner did not write it (dialogue "
                             "subtitles? edited by hand?); --overwrite replaces it, -o DIR writes elsewhere\n")
    assert (tmp_path / "film.srt").read_text() == DIALOGUE and not (tmp_path / "film.json").exists()
    assert (tmp_path / "talk.srt").exists() and (tmp_path / "talk.json").exists()
    again = cli("run", talk, "--model", tiny_model, "--beam-size", "1", "-f", "srt,json", "-q")
    assert again.exit_code == 0 and again.stderr == ""  # its own files: replaced as before
    forced = cli("run", film, "--model", tiny_model, "--beam-size", "1", "--overwrite", "-q")
    assert forced.exit_code == 0 and list(srt.parse((tmp_path / "film.srt").read_text()))[0].content != "Where are you going?"


def test_a_fifo_or_device_where_an_output_goes_is_not_read(tmp_path, clip, tiny_model) -> None:
    """Deciding whether captioner wrote the file read it: a FIFO named film.srt hung the run for good, a link to
    /dev/zero filled the memory. Neither is captioner's: refused, as a film's dialogue subtitles are."""
    import os
    import stat
    import subprocess
    import sys

    from captioner.writers import captioner_wrote

    film = _copy(clip, tmp_path / "film.mp4")
    os.mkfifo(tmp_path / "film.srt")
    (tmp_path / "film.html").symlink_to("/dev/zero")
    result = subprocess.run([sys.executable, "-m", "captioner.cli", "run", str(film), "--model", str(tiny_model),
                             "--beam-size", "1", "-f", "srt,html", "-q"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and result.stderr.startswith(f"error: {tmp_path / 'film.srt'}: exists and captioner")
    assert stat.S_ISFIFO(os.lstat(tmp_path / "film.srt").st_mode)
    assert not captioner_wrote(tmp_path / "film.html")  # -f srt is refused first: the page asked apart


def test_a_full_disk_under_stdout_is_one_error_line(tiny_model) -> None:
    """captioner image photos/ > list.txt on a full disk (here /dev/full) ended in an OSError traceback."""
    import subprocess
    import sys

    for args in (["info", "--model", str(tiny_model)], ["--help"], ["--version"]):  # the last two: before a command
        with open("/dev/full", "w") as full:
            done = subprocess.run([sys.executable, "-m", "captioner.cli", *args],
                                  stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
        assert done.returncode == 1 and done.stderr == "error: cannot write the output: No space left on device\n", args


def _raises(exc: BaseException):
    """A stand-in for a function: whatever it is called with, it raises ``exc``."""

    def stand_in(*args, **kwargs):
        raise exc

    return stand_in


def test_running_out_of_memory_is_one_line_wherever_it_happens(tmp_path, tiny_model, clip, monkeypatch) -> None:
    """Memory running out (ulimit -v, a full machine) read as 'not a valid safetensors file', 'the model does not
    load (MemoryError)' or an ONNX Runtime traceback; now one line that says so and what may help, exit 1."""
    import cv2
    import safetensors.numpy
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail
    from safetensors import SafetensorError

    from captioner.batch.job import failure_reason
    from captioner.encoder import Encoder
    from captioner.errors import OUT_OF_MEMORY, PHOTO_OUT_OF_MEMORY
    from captioner.pipeline import Captioner

    line = f"error: {OUT_OF_MEMORY}\n"
    assert "ran out of memory" in line and "--workers" in line
    video = _copy(clip, tmp_path / "talk.mp4")
    run = ("run", video, "-o", tmp_path / "out", "--model", tiny_model, "--beam-size", "1", "-q")
    with monkeypatch.context() as m:  # the encoder's arena (ONNX Runtime) while captioning
        m.setattr(Encoder, "encode_batch", _raises(Fail(
            "[ONNXRuntimeError] : 1 : FAIL : bfc_arena.cc:360 Failed to allocate memory for requested buffer")))
        result = cli(*run)
    assert (result.exit_code, result.stderr) == (1, line)
    with monkeypatch.context() as m:  # safetensors' memory map, loading the weights
        m.setattr(safetensors.numpy, "load_file", _raises(SafetensorError("Cannot allocate memory (os error 12)")))
        for args in (run, ("info", "--model", tiny_model)):
            result = cli(*args)
            assert (result.exit_code, result.stderr) == (1, line), args
    with monkeypatch.context() as m:  # NumPy, in a part of the model that the pipeline's loader blames
        m.setattr(Captioner, "_load", staticmethod(_raises(MemoryError("Unable to allocate 1.2 GiB"))))
        result = cli(*run)
    assert (result.exit_code, result.stderr) == (1, line)
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(cv2.imencode(".jpg", np.zeros((48, 64, 3), np.uint8))[1].tobytes())
    with monkeypatch.context() as m:  # OpenCV decoding a photo: that photo's line, the others captioned
        m.setattr(cv2, "imdecode", _raises(cv2.error(
            "OpenCV(5.1.0) alloc.cpp:73: error: (-4:Insufficient memory) Failed to allocate 432000000 bytes")))
        result = cli("image", photo, "--model", tiny_model, "--beam-size", "1")
    assert (result.exit_code, result.stderr) == (1, f"error: {photo}: {PHOTO_OUT_OF_MEMORY}\n")  # not --batch-size
    assert failure_reason(MemoryError(), video) == OUT_OF_MEMORY  # a batch's report and error line
    assert files_under(tmp_path) == ["photo.jpg", "talk.mp4"]


def test_image_captions_a_large_jpeg_decoded_reduced(tmp_path, tiny_model, monkeypatch) -> None:
    """captioner image decoded a photo whole before squashing it to the encoder's 224 x 224: a 20000 x 20000 JPEG
    took 1.2 GB. A 6000 x 4000 one is decoded 8 times smaller (500 px: still twice the input) and captioned."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    big = cv2.resize(small, (6000, 4000), interpolation=cv2.INTER_LINEAR)
    (tmp_path / "big.jpg").write_bytes(cv2.imencode(".jpg", big)[1].tobytes())
    flags = []
    imdecode = cv2.imdecode
    monkeypatch.setattr(cv2, "imdecode", lambda data, flag: flags.append(flag) or imdecode(data, flag))
    result = cli("image", tmp_path / "big.jpg", "--model", tiny_model, "--beam-size", "1")
    assert result.exit_code == 0 and result.stdout.startswith(f"{tmp_path / 'big.jpg'}\t"), result.output
    assert flags == [cv2.IMREAD_REDUCED_COLOR_8]


def test_output_that_cannot_be_written_is_never_exit_0(tmp_path, tiny_model) -> None:
    """image, search and info with stdout closed (>&-) lost their output and exited 0. A closed stdout or a full
    disk is one error line and exit 1; a reader gone before the output (| true) is a quiet exit 1, as click makes
    it; run, which writes nothing to stdout, still captions."""
    import os
    import subprocess
    import sys

    ok, png = cv2.imencode(".png", cv2.cvtColor(shot_frame("red", 0, (64, 48)), cv2.COLOR_RGB2BGR))
    (tmp_path / "photo.png").write_bytes(png.tobytes())
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "beach.json").write_text(json.dumps({"metadata": {"video": {"path": "/videos/beach.mp4"}}, "cues": [
        {"start": 0.0, "end": 4.0, "text": "a dog is running on the beach", "confidence": 0.5}]}), encoding="utf-8")
    commands = {"image": ["image", str(tmp_path / "photo.png"), "--model", str(tiny_model), "--beam-size", "1"],
                "search": ["search", "a dog", str(subs), "-q"], "info": ["info", "--model", str(tiny_model)]}

    def captioner(args, **how):
        return subprocess.run([sys.executable, "-m", "captioner.cli", *args], stderr=subprocess.PIPE, text=True,
                              timeout=300, **how)

    for name, args in commands.items():
        closed = captioner(args, preexec_fn=lambda: os.close(1))
        assert (closed.returncode, closed.stderr) == (1, "error: cannot write the output: standard output is closed\n"), name
        with open("/dev/full", "w") as full:
            done = captioner(args, stdout=full)
        assert (done.returncode, done.stderr) == (1, "error: cannot write the output: No space left on device\n"), name
        read, write = os.pipe()
        os.close(read)  # the reader has gone before the first line
        try:
            gone = captioner(args, stdout=write)
        finally:
            os.close(write)
        assert (gone.returncode, gone.stderr) == (1, ""), name
    video = make_video(tmp_path / "v.mp4", [("red", 1.0)]).path
    ran = captioner(["run", str(video), "--model", str(tiny_model), "--beam-size", "1", "--threads", "1", "-q"],
                    preexec_fn=lambda: os.close(1))
    assert ran.returncode == 0 and (tmp_path / "v.srt").is_file(), ran.stderr


def test_outputs_that_could_not_be_written_are_found_before_captioning(tmp_path, clip, tiny_model, monkeypatch) -> None:
    """A read-only folder beside the videos, an output name too long, a folder where an output goes: each was found
    when writing, after the captioning, with some formats already written."""
    import os

    from captioner import outputs

    long = _copy(clip, tmp_path / ("x" * 251 + ".mp4"))  # a legal name; its .json (256 bytes) is not
    (tmp_path / "dir.srt").mkdir()
    in_the_way = _copy(clip, tmp_path / "dir.mp4")
    captioned = []
    monkeypatch.setattr("captioner.batch.job.caption_one", lambda *a, **k: captioned.append(a) or ([], 0))
    result = cli("run", long, "--model", tiny_model, "-f", "vtt,json", "--overwrite", "-q")
    assert result.exit_code == 1 and not captioned and not list(tmp_path.glob("*.vtt"))
    assert result.stderr.splitlines() == [
        f"error: {tmp_path / ('x' * 251 + '.json')}: file name too long (over 255 bytes); rename the video or -o DIR "
        "with shorter names"]
    result = cli("run", in_the_way, "--model", tiny_model, "-f", "srt", "--overwrite", "-q")
    assert result.stderr == f"error: {tmp_path / 'dir.srt'}: a folder is in the way of the output\n"  # was --overwrite's hint
    real_access = os.access
    monkeypatch.setattr(outputs.os, "access", lambda p, m: False if Path(p) == tmp_path else real_access(p, m))
    result = cli("run", in_the_way, "--model", tiny_model, "-f", "vtt", "-q")  # as on a read-only disk
    assert result.stderr == f"error: {tmp_path}: cannot write there (read-only or not permitted); -o DIR writes elsewhere\n"
    assert result.exit_code == 1 and not captioned
    result = cli("run", in_the_way, "--model", tiny_model, "-f", "vtt", "-o", tmp_path / "subs", "-q")
    assert result.exit_code == 0 and len(captioned) == 1  # its -o is another folder


def test_same_stem_twice_keeps_extensions_like_batch(tmp_path, clip, tiny_model, monkeypatch) -> None:
    """One naming rule for run and batch: talk.mp4 and talk.avi give talk.mp4.srt and talk.avi.srt;
    the JSON records the video's absolute path whichever command wrote it."""
    mp4 = _copy(clip, tmp_path / "talk.mp4")
    avi = make_video(tmp_path / "talk.avi", [("blue", 1.0)]).path
    monkeypatch.chdir(tmp_path)
    result = cli("run", "talk.mp4", avi, mp4, "-o", "subs", "-f", "srt,json", "--model", tiny_model,
                 "--beam-size", "1", "-q")
    assert result.exit_code == 0, result.stderr
    assert files_under(tmp_path / "subs") == ["talk.avi.json", "talk.avi.srt", "talk.mp4.json", "talk.mp4.srt"]
    recorded = json.loads((tmp_path / "subs" / "talk.mp4.json").read_text())["metadata"]["video"]["path"]
    assert recorded == str(mp4) and Path(recorded).is_absolute()
    batched = cli("batch", tmp_path, "-o", tmp_path / "b", "-f", "srt,json", "--model", tiny_model,
                  "--beam-size", "1", "-q")
    assert batched.exit_code == 0, batched.stderr
    assert {n for n in files_under(tmp_path / "b") if n.startswith("talk")} == set(files_under(tmp_path / "subs"))
    for name in files_under(tmp_path / "subs"):
        assert (tmp_path / "b" / name).read_bytes() == (tmp_path / "subs" / name).read_bytes()


def test_info_on_the_tiny_model(tiny_model) -> None:
    result = cli("info", "--model", tiny_model)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"model:     tiny-test  ({tiny_model})"
    assert f"sha256:    {read_manifest(tiny_model)['sha256']}" in lines
    assert any(line.startswith("decoder:   attention LSTM, hidden 32") for line in lines)
    assert any(line.startswith("runtime:   NumPy decoder; encoder on ONNX Runtime, ") for line in lines)


def test_info_says_of_how_many_pictures_a_share_of_invented_people_is(tiny_model, tmp_path) -> None:
    import shutil

    from captioner.weights import update_manifest

    model = tmp_path / "m"
    shutil.copytree(tiny_model, model)
    update_manifest(model, lambda m: m.setdefault("extra", {}).__setitem__("metrics", {
        "MSVD 18 clips": {"METEOR": 28.86, "invented_person": 100.0, "n_without_person": 1, "person_recall": 86.7},
        "old set": {"METEOR": 20.0, "invented_person": 12.5}}))
    result = cli("info", "--model", model)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "MSVD 18 clips: METEOR 28.86, invented_person 100.0 (of 1 without a person), person_recall 86.7" in lines
    assert "old set: METEOR 20.0, invented_person 12.5" in lines  # no base recorded: the share alone


def test_info_on_a_hand_edited_card_prints_no_half_of_it(tiny_model, tmp_path) -> None:
    """A metrics table that is a number printed 14 lines of the card, then the error; since, a card field of another
    shape is passed over (run uses such a model), the rest of the card printed whole."""
    import shutil

    from captioner.weights import update_manifest

    model = tmp_path / "m"
    shutil.copytree(tiny_model, model)
    update_manifest(model, lambda m: m.setdefault("extra", {}).__setitem__("metrics", {"x": 5}))
    result = cli("info", "--model", model)
    assert result.exit_code == 0 and result.stdout.startswith("model:     tiny-test")
    assert not [line for line in result.stdout.splitlines() if line.startswith("x:")]


def test_info_on_a_missing_model(tmp_path) -> None:
    result = cli("info", "--model", tmp_path / "nope")
    assert result.exit_code == 1
    assert result.stderr == f"error: {tmp_path / 'nope'}: no such model folder\n"


def test_image_on_a_folder(tmp_path, tiny_model) -> None:
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    for name, look in [("b.png", "blue"), ("a.jpg", "red"), ("sub/c.jpeg", "checker"), ("d.webp", "green"),
                       ("sub/e.tif", "red")]:
        rgb = shot_frame(look, 0, (64, 48))
        assert cv2.imwrite(str(photos / name), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    (photos / "notes.txt").write_text("not an image")
    (photos / "._a.jpg").write_bytes(b"\x00\x05\x16\x07Mac OS X")  # macOS metadata: the run failed on it
    (photos / ".thumbs").mkdir()
    assert cv2.imwrite(str(photos / ".thumbs" / "h.jpg"), shot_frame("red", 0, (64, 48)))  # hidden, as batch skips
    result = cli("image", photos, "--model", tiny_model, "--beam-size", "1")
    assert result.exit_code == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert [r[0] for r in rows] == [str(photos / n) for n in ("a.jpg", "b.png", "d.webp", "sub/c.jpeg", "sub/e.tif")]
    assert all(len(r) == 2 and r[1] and r[1] == r[1].strip() for r in rows)


def test_image_json_lines_keep_names_with_tabs_and_line_breaks_whole(tmp_path, tiny_model) -> None:
    """'<path>\\t<caption>' cannot be split back when a name holds a tab or a line break; --json lines can."""
    names = ["a\tb.png", "x\ny.png", "plain.png"]
    for name in names:
        assert cv2.imwrite(str(tmp_path / name), cv2.cvtColor(shot_frame("red", 0, (64, 48)), cv2.COLOR_RGB2BGR))
    result = cli("image", tmp_path, "--model", tiny_model, "--beam-size", "1", "--json")
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["path"] for r in rows] == [str(tmp_path / n) for n in sorted(names)]
    assert all(r["caption"] and 0 <= r["confidence"] <= 1 for r in rows)
    text = cli("image", tmp_path, "--model", tiny_model, "--beam-size", "1").stdout
    assert [line.split("\t")[0] for line in text.splitlines()] != [str(tmp_path / n) for n in sorted(names)]


def test_image_shrinks_each_photo_before_batching_them(tmp_path, tiny_model, monkeypatch) -> None:
    """A batch holds photos at the encoder's size, not as decoded: 16 phone photos held whole took over 1 GB."""
    seen = []
    original = Captioner.caption_images

    def spy(self, images):
        seen.extend(img.shape for img in images)
        return original(self, images)

    monkeypatch.setattr(Captioner, "caption_images", spy)
    for i in range(3):
        assert cv2.imwrite(str(tmp_path / f"p{i}.jpg"), cv2.resize(shot_frame("red", i), (1200, 900)))
    result = cli("image", tmp_path, "--model", tiny_model, "--beam-size", "1", "--batch-size", "2")
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.splitlines()) == 3 and seen == [(224, 224, 3)] * 3


def test_image_reports_bad_files_and_goes_on(tmp_path, tiny_model) -> None:
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), shot_frame("red", 0))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    heic = tmp_path / "phone.heic"  # an iPhone photo: OpenCV cannot decode HEIC
    heic.write_bytes(b"\x00\x00\x00\x18ftypheic" + bytes(16))
    import os

    os.mkfifo(tmp_path / "pipe.png")  # was "no such file or folder"
    result = cli("image", good, bad, tmp_path / "missing.png", tmp_path / "pipe.png", heic, "--model", tiny_model,
                 "--beam-size", "1")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"error: {tmp_path / 'missing.png'}: no such file or folder",
                                          f"error: {tmp_path / 'pipe.png'}: not a regular file",
                                          f"error: {bad}: not a readable image",
                                          f"error: {heic}: not a readable image (HEIC is not supported: convert it to JPEG)"]
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == [str(good)]


def test_caption_options_reach_the_config():
    from captioner.cli import build_config

    cfg = build_config(fps=2.0, beam_size=1, max_segment=5.0, min_duration=0.5, shot_threshold=0.4,
                       max_line_width=30, max_line_count=3, model_dir=Path("m"), formats=("srt", "json"),
                       threads=1, concepts=False)
    assert cfg.sampling.fps == 2.0 and cfg.decoding.beam_size == 1
    assert (cfg.segments.max_segment, cfg.segments.min_duration, cfg.segments.shot_threshold) == (5.0, 0.5, 0.4)
    assert cfg.output.formats == ("srt", "json") and cfg.output.max_line_width == 30 and cfg.output.max_line_count == 3
    assert cfg.grounding.enabled is False and cfg.model_dir == Path("m") and cfg.threads == 1


def test_int8_flag_runs_the_quantized_encoder(tmp_path, clip, tiny_model, monkeypatch) -> None:
    from captioner import encoder as encoder_mod

    monkeypatch.setattr(encoder_mod, "INT8_MIN_COSINE", -1.0)  # whatever this CPU makes of it (test_encoder.py)
    video = _copy(clip, tmp_path / "talk.mp4")
    result = cli("run", video, "-o", tmp_path / "out", "-f", "json", "--model", tiny_model, "--int8")
    assert result.exit_code == 0, result.stderr
    data = json.loads((tmp_path / "out" / "talk.json").read_text(encoding="utf-8"))
    assert data["metadata"]["model"]["encoder_precision"] == "int8"
    assert data["cues"]


def test_int8_flag_on_a_cpu_where_int8_is_inaccurate(tmp_path, clip, tiny_model, monkeypatch) -> None:
    from captioner import encoder as encoder_mod

    monkeypatch.setattr(encoder_mod, "int8_agreement", lambda quantized, reference, x: 0.64)
    video = _copy(clip, tmp_path / "talk.mp4")
    result = cli("run", video, "-o", tmp_path / "out", "-f", "json", "--model", tiny_model, "--int8")
    assert result.exit_code == 0, result.stderr
    data = json.loads((tmp_path / "out" / "talk.json").read_text(encoding="utf-8"))
    assert data["metadata"]["model"]["encoder_precision"] == "float32"
    warned = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warned) == 1 and "inaccurate on this CPU" in warned[0] and "using float32" in warned[0]


def test_a_closed_stderr_does_not_stop_a_run(tmp_path, tiny_model, clip) -> None:
    """With 2>&- Python's sys.stderr is None: run, batch and search exited 1 having written nothing."""
    import os
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "captioner.cli", "run", str(clip), "-o", str(tmp_path / "out"),
                           "--model", str(tiny_model), "--beam-size", "1"],
                          preexec_fn=lambda: os.close(2), capture_output=False, timeout=300)
    assert done.returncode == 0 and (tmp_path / "out" / "clip.srt").is_file()


def test_closed_standard_streams_are_held_on_dev_null(tmp_path) -> None:
    """<&- >&- 2>&-: the stand-in for stderr took descriptor 0, so the next file opened (the batch's lock, a
    video, an output's temporary file) became descriptor 2 and received what FFmpeg and OpenCV write there."""
    import os
    import subprocess
    import sys

    out = tmp_path / "fds.txt"
    code = ("import os, sys\n"
            "from captioner.cli import _standard_streams\n"
            "_standard_streams()\n"
            f"f = open({str(tmp_path / 'next.bin')!r}, 'wb')\n"
            f"with open({str(out)!r}, 'w') as o:\n"
            "    o.write(' '.join([str(f.fileno()), *(os.readlink(f'/proc/self/fd/{n}') for n in (0, 1, 2))]))\n")
    done = subprocess.run([sys.executable, "-c", code], timeout=120,
                          preexec_fn=lambda: [os.close(fd) for fd in (0, 1, 2)])
    assert done.returncode == 0
    number, *held = out.read_text().split()
    assert int(number) > 2 and held == [os.devnull] * 3


def test_a_usage_error_keeps_its_exit_code_when_stderr_is_full(tmp_path) -> None:
    """2>/dev/full: click's usage message could not be written, and the exit was 1 (a video failed), not 2."""
    import subprocess
    import sys

    for args in (["run", str(tmp_path / "x.mp4"), "--fps", "0"], ["batch", str(tmp_path / "missing")]):
        with open("/dev/full", "w") as full:
            done = subprocess.run([sys.executable, "-m", "captioner.cli", *args], stderr=full, timeout=120)
        assert done.returncode == 2, args


def test_a_long_file_name_leaves_the_progress_bar_room(monkeypatch) -> None:
    """A name as wide as the terminal was the whole bar: no count, percentage or time left ever showed."""
    import os
    import shutil

    from captioner.cli import _ProgressBar
    from captioner.progress import Progress

    monkeypatch.setattr(shutil, "get_terminal_size", lambda *a, **k: os.terminal_size((80, 24)))
    name = "2019-05-12 Interview with John Smith about the town hall history, part 2.mp4"
    bar = _ProgressBar(name)
    bar(Progress("frames", 1, 10))
    try:
        desc = bar._bar.desc
    finally:
        bar.close()
    assert len(desc) <= 26 and desc.startswith("2019-05-") and desc.endswith("part 2.mp4") and "…" in desc


def test_image_on_a_stdout_that_is_not_utf8_escapes_what_it_cannot_hold(tmp_path, tiny_model) -> None:
    """PYTHONIOENCODING=latin-1 and a file name that is not UTF-8 (or not Latin-1): a traceback after the first line."""
    import os
    import subprocess
    import sys

    ok, png = cv2.imencode(".png", cv2.cvtColor(shot_frame("red", 0, (64, 48)), cv2.COLOR_RGB2BGR))
    for name in (b"lat\xe9.png", "\u65e5\u672c.png".encode(), b"plain.png"):
        with open(os.path.join(os.fsencode(tmp_path), name), "wb") as fh:  # by bytes: any name
            fh.write(png.tobytes())
    done = subprocess.run([sys.executable, "-m", "captioner.cli", "image", str(tmp_path), "--model", str(tiny_model),
                           "--beam-size", "1"], capture_output=True, timeout=300,
                          env={**os.environ, "PYTHONIOENCODING": "latin-1"})
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 3, done.stderr
    for encoding in ("latin-1", "utf-8"):  # --json stays JSON: no raw bytes, no \U escapes of the stream's
        done = subprocess.run([sys.executable, "-m", "captioner.cli", "image", str(tmp_path), "--model",
                               str(tiny_model), "--beam-size", "1", "--json"], capture_output=True, timeout=300,
                              env={**os.environ, "PYTHONIOENCODING": encoding})
        rows = [json.loads(line) for line in done.stdout.decode(encoding).splitlines()]
        assert sorted(os.fsencode(r["path"]) for r in rows) == sorted(
            os.path.join(os.fsencode(tmp_path), n) for n in (b"lat\xe9.png", "\u65e5\u672c.png".encode(), b"plain.png"))


def test_file_names_on_stderr_keep_their_bytes(tmp_path, clip, tiny_model) -> None:
    """The written-file lines on stderr showed a Latin-1 name as a literal "\\udce9" (only stdout kept the bytes)."""
    import os
    import subprocess
    import sys

    video = os.path.join(os.fsencode(tmp_path), b"caf\xe9.mp4")
    with open(video, "wb") as fh:
        fh.write(Path(clip).read_bytes())
    done = subprocess.run([sys.executable, "-m", "captioner", "run", os.fsdecode(video), "--model", str(tiny_model),
                           "--beam-size", "1"], capture_output=True, timeout=300, env={**os.environ, "LC_ALL": "C.UTF-8"})
    assert done.returncode == 0 and done.stderr.startswith(os.path.join(os.fsencode(tmp_path), b"caf\xe9.srt  (")), done.stderr


@pytest.mark.parametrize("signal_kind, code, line", [("Terminated", 143, "terminated"), ("HungUp", 129, "hung up")])
def test_a_sigterm_that_arrives_as_a_plain_interrupt_still_exits_143(tmp_path, monkeypatch, signal_kind, code,
                                                                      line) -> None:
    """Ray's signal check re-raises a SIGTERM landing in ray.wait as a plain KeyboardInterrupt: 'interrupted', 130.
    A SIGHUP too (a tester's Ray batch, once in seven)."""
    import captioner.cli as cli_mod
    import captioner.errors as errors_mod

    def stopped(*args, **kwargs):
        cli_mod._INTERRUPTED.append(getattr(errors_mod, signal_kind))
        raise KeyboardInterrupt

    monkeypatch.setattr("captioner.batch.run_batch", stopped)
    make_video(tmp_path / "in" / "a.mp4", [("red", 1.0)])
    result = cli("batch", tmp_path / "in", "-q")
    assert result.exit_code == code and result.stderr == f"{line}\n"


def test_an_empty_or_non_folder_output_dir_is_refused(tmp_path, tiny_model, clip, monkeypatch) -> None:
    """-o '' (an unset shell variable) wrote the outputs and a batch's report into the current folder unsaid;
    -o /dev/null said 'cannot create output folder (File exists)'."""
    monkeypatch.chdir(tmp_path)
    for command in ("run", "batch"):
        target = clip if command == "run" else clip.parent
        result = cli(command, target, "-o", "", "--model", tiny_model)
        assert result.exit_code == 2 and "an empty folder name" in result.stderr
    assert list(tmp_path.iterdir()) == []
    result = cli("run", clip, "-o", "/dev/null", "--model", tiny_model)  # a device: click lets it through
    assert (result.exit_code, result.stderr) == (1, "error: /dev/null: not a folder (-o names the folder the outputs go into)\n")


def test_paths_too_long_for_the_system_are_one_error_line_and_a_batch_goes_on(tmp_path, tiny_model, clip) -> None:
    """Python 3.11's Path.exists() and is_dir() raise on a path the system refuses for its length (a name over 255
    bytes, a path over 4,095): a traceback, and one such video ended the whole batch, its good videos uncaptioned
    and no report written. Each is one error line now; a batch captions the others."""
    import json
    import os

    deep = tmp_path / "in" / "/".join(["a" * 250] * 15)  # ~3,840 bytes: legal, its mirror under -o is not
    _copy(clip, deep / "clip.mp4")
    _copy(clip, tmp_path / "in" / "good.mp4")
    out = tmp_path / "out" / ("y" * 200) / ("y" * 200)
    result = cli("batch", tmp_path / "in", "-o", out, "--model", tiny_model, "-f", "srt", "-q")
    far = out / deep.relative_to(tmp_path / "in") / "clip.srt"
    reason = f"{far}: path too long ({len(os.fsencode(far)):,} bytes; at most 4,095); rename the video or -o DIR with shorter names"
    assert (result.exit_code, result.stderr) == (1, f"error: {deep / 'clip.mp4'}: {reason}\n")
    assert (out / "good.srt").is_file()
    rows = {Path(r["path"]).name: r for r in json.loads((out / "captioner-report.json").read_text())["videos"]}
    assert (rows["good.mp4"]["status"], rows["clip.mp4"]["status"], rows["clip.mp4"]["reason"]) == ("ok", "failed", reason)

    # a video whose .srt path is legal, but not its temporary file's (~25 bytes longer): was captioned, then
    # failed as 'clip.srt: cannot write: File name too long' (a name of 8 bytes)
    near, left = tmp_path / "near", 4086 - len(os.fsencode(tmp_path / "near" / "clip.srt"))  # whatever tmp_path is
    while left > 0:  # folders of at most 250 bytes, each with its slash, until the .srt path is 4,086 bytes
        n = min(250, left - 1) - (2 if 0 < left - min(250, left - 1) - 1 < 2 else 0)
        near, left = near / ("n" * n), left - n - 1
    near = near / "clip.mp4"
    assert len(os.fsencode(near.with_suffix(".srt"))) == 4086
    _copy(clip, near)
    result = cli("run", near, "--model", tiny_model, "-f", "srt", "-q")
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.stderr.startswith(f"error: {near.with_suffix('.srt')}: path too long (4,")
    assert "with the name of the temporary file written first; at most 4,095)" in result.stderr

    too_long = [  # (command, its one error line)
        (["run", clip, "-o", tmp_path / ("x" * 300)],
         f"{tmp_path / ('x' * 300)}: cannot create output folder: folder name too long (over 255 bytes)"),
        (["batch", clip.parent, "-o", tmp_path / ("x" * 300)],
         f"{tmp_path / ('x' * 300)}: cannot create output folder: folder name too long (over 255 bytes)"),
        (["run", clip, "-o", tmp_path / "/".join(["q" * 250] * 17)],
         f"{tmp_path / '/'.join(['q' * 250] * 17)}: cannot create output folder: path too long "
         f"({len(os.fsencode(tmp_path / '/'.join(['q' * 250] * 17))):,} bytes; at most 4,095)"),
        (["image", tmp_path / ("x" * 300 + ".jpg")], f"{tmp_path / ('x' * 300 + '.jpg')}: file name too long (over 255 bytes)"),
        (["search", "dog", tmp_path, "--html", tmp_path / "/".join(["q" * 250] * 17) / "r.html"],
         f"{tmp_path / '/'.join(['q' * 250] * 17) / 'r.html'}: cannot write: path too long "
         f"({len(os.fsencode(tmp_path / '/'.join(['q' * 250] * 17))):,} bytes; at most 4,095)"),
    ]
    for args, line in too_long:
        result = cli(*args, *(["--model", tiny_model] if args[0] in ("run", "batch") else []))
        assert (result.exit_code, result.stderr) == (1, f"error: {line}\n"), args
    # a video path over 4,095 bytes (through "b/.."): its outputs beside it, or the video itself under -o
    (deep / "b").mkdir()
    longer = Path(os.path.join(deep, "b/../" * 60, "clip.mp4"))
    result = cli("run", longer, "--model", tiny_model, "-q")
    assert result.exit_code == 1 and result.stderr.startswith(f"error: {longer.with_suffix('.srt')}: path too long (")
    result = cli("run", longer, "-o", tmp_path / "o", "--model", tiny_model, "-q")
    assert (result.exit_code, result.stderr) == (1, f"error: {longer}: cannot read file (file name too long)\n")


def test_a_long_failure_reason_keeps_its_cause(tmp_path, tiny_model, clip, monkeypatch) -> None:
    """A batch cut a failure's reason to its first 500 characters: with outputs ~450 characters deep on a full disk,
    the line and the report said 'error: in/talk.mp4: /…/Camera_B_C', never 'No space left on device'."""
    import json

    from captioner.errors import OutputError

    def full(files):
        raise OutputError(f"{files[0][0]}: cannot write: No space left on device")

    monkeypatch.setattr("captioner.writers.write_all_atomic", full)
    _copy(clip, tmp_path / "in" / "talk.mp4")
    out = tmp_path / "out" / "/".join(["Interview_2026_Camera_B_Closeup" * 4] * 4)
    result = cli("batch", tmp_path / "in", "-o", out, "--model", tiny_model, "-f", "srt", "-q")
    line, stop = result.stderr.splitlines()  # (a full disk stops the batch: the videos after it would fail alike)
    assert stop == "error: stopped: the disk the outputs go to is full; free some space and run the batch again " \
                   "(the videos done are kept)"
    assert result.exit_code == 1 and line.startswith(f"error: {tmp_path / 'in' / 'talk.mp4'}: {tmp_path}")
    assert line.endswith("Closeup/talk.srt: cannot write: No space left on device") and "…" in line
    (row,) = json.loads((out / "captioner-report.json").read_text())["videos"]
    assert line.endswith(row["reason"]) and len(row["reason"]) == 500  # still one short line


def _remove_chain(top: Path, bottom: Path) -> None:
    """Remove the folders from ``bottom`` up to ``top`` (one sub-folder each) and their files, one level at a time:
    ``shutil.rmtree`` and pytest's own clean-up of old temporary folders recurse once per level, and a tree deeper
    than Python's limit ended them."""
    import os

    while not bottom.exists() and bottom != top:  # a tree made only part of the way down
        bottom = bottom.parent
    while bottom.exists():
        for entry in os.scandir(bottom):  # its one sub-folder was removed the level before
            os.unlink(entry.path)
        bottom.rmdir()
        if bottom == top:
            break
        bottom = bottom.parent


def test_a_folder_tree_deeper_than_pythons_recursion_limit_is_captioned(tmp_path, tiny_model, clip) -> None:
    """batch and image of a tree ~1,100 folders deep ended in a RecursionError traceback (os.walk recurses once per
    level, and so does making the mirrored output folders): no video captioned, no report. search walked it already."""
    import json
    import sys

    top = bottom = tmp_path / "in"
    top.mkdir()
    for _ in range(sys.getrecursionlimit() + 100):  # one level at a time: makedirs recurses too
        bottom = bottom / "d"
        bottom.mkdir()
    _copy(clip, top / "good.mp4")
    _copy(clip, bottom / "deep.mp4")
    cv2.imwrite(str(bottom / "photo.png"), shot_frame("red", 0)[..., ::-1])
    out = tmp_path / "out"
    try:
        result = cli("batch", top, "-o", out, "--model", tiny_model, "-f", "srt", "-q")
        assert (result.exit_code, result.stderr) == (0, ""), result.exception
        assert (out / "good.srt").is_file() and (out / bottom.relative_to(top) / "deep.srt").is_file()
        rows = json.loads((out / "captioner-report.json").read_text())["videos"]
        assert sorted((Path(r["path"]).name, r["status"]) for r in rows) == [("deep.mp4", "ok"), ("good.mp4", "ok")]
        result = cli("image", top, "--model", tiny_model, "-q")
        assert result.exit_code == 0, result.exception
        assert [line.split("\t")[0] for line in result.stdout.splitlines()] == [str(bottom / "photo.png")]
    finally:
        _remove_chain(top, bottom)
        _remove_chain(out, out / bottom.relative_to(top))


def test_an_archive_index_that_cannot_be_written_leaves_the_report_named(tmp_path, tiny_model, clip,
                                                                          monkeypatch) -> None:
    """When index.html could not be written, the line said 'cannot write the report: …/index.html: …' though
    captioner-report.json was written, and the summary left out 'report: …'."""
    from captioner.errors import OutputError

    def full(plan, results, roots, folder):
        raise OutputError(f"{folder / 'index.html'}: cannot write: No space left on device")

    monkeypatch.setattr("captioner.batch.report.write_batch_index", full)
    _copy(clip, tmp_path / "in" / "talk.mp4")
    out = tmp_path / "out"
    result = cli("batch", tmp_path / "in", "-o", out, "--model", tiny_model, "-f", "srt,html")
    error, summary = result.stderr.splitlines()
    assert result.exit_code == 1 and (out / "captioner-report.json").is_file()
    assert error == f"error: cannot write the archive index: {out / 'index.html'}: cannot write: No space left on device"
    assert summary.startswith("1 captioned, 0 up to date, 0 failed") and summary.endswith(
        f"; report: {out / 'captioner-report.json'}")


def test_one_input_folder_that_cannot_take_its_report_leaves_the_others(tmp_path, tiny_model, clip,
                                                                         monkeypatch) -> None:
    """batch A B without -o writes a report into each; A's failing (read-only) stopped at once: B's was never written."""
    from captioner.batch import report
    from captioner.errors import OutputError

    real = report.write_atomic

    def read_only_a(path, text, *args, **kwargs):
        if path.parent.name == "A":
            raise OutputError(f"{path}: cannot write: folder {path.parent} is not writable")
        return real(path, text, *args, **kwargs)

    monkeypatch.setattr(report, "write_atomic", read_only_a)
    for name in ("A", "B"):
        _copy(clip, tmp_path / name / "talk.mp4")
    result = cli("batch", tmp_path / "A", tmp_path / "B", "--model", tiny_model, "-f", "srt")
    assert result.exit_code == 1
    assert (tmp_path / "B" / "captioner-report.json").is_file()
    assert f"error: cannot write the report: {tmp_path / 'A' / 'captioner-report.json'}: cannot write" in result.stderr


def test_an_error_line_names_a_file_with_a_newline_as_the_other_lines_do(tmp_path, tiny_model) -> None:
    """A failing "c<newline>d.mp4" was named "c d.mp4" (a file that is not there); a written one as "a\\nb.srt"."""
    bad = tmp_path / "c\nd.mp4"
    bad.write_bytes(b"not a video")
    result = cli("run", bad, "-o", tmp_path / "o", "--model", tiny_model)
    assert result.exit_code == 1
    assert result.stderr == f"error: {tmp_path}/c\\nd.mp4: not a video file or unsupported codec\n"


def test_lines_said_while_a_progress_bar_shows_go_above_it(monkeypatch) -> None:
    """run's per-video bar: a warning was written onto the end of the bar's line, and the bar's clear-up then
    blanked the line below instead."""
    import io
    import logging

    from tqdm import tqdm

    import captioner.cli as cli_mod

    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    cli_mod._setup_logging(0, False)
    bar = tqdm(total=10, desc="clip.mp4", file=err, ncols=60, mininterval=0)
    try:
        bar.update(3)
        logging.getLogger("captioner.video").warning("clip.mp4: decoding stopped early")
        cli_mod._say("error: other.mp4: not a video file")
    finally:
        bar.close()
    text = err.getvalue()
    logging.getLogger("captioner.video").warning("%s: a name with a newline", "x\ny.mp4")
    assert "warning: x\\ny.mp4: a name with a newline\n" in err.getvalue()  # one line, the name as the others show it
    for line in ("warning: clip.mp4: decoding stopped early\n", "error: other.mp4: not a video file\n"):
        at = text.index(line)
        assert text[at - 1] == "\r", repr(text[max(0, at - 80): at + len(line)])  # the bar cleared first
