"""outputs.py: one owner for output names, atomic writes and their temporary files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from captioner.outputs import (
    atomic_path, cache_dir, output_base, output_file, remove_stale_temp_files, write_atomic,
)
from clitools import REPO

KILLED_MID_WRITE = """
import os, sys
from pathlib import Path
from captioner import outputs
os.fsync = lambda fd: os._exit(9)  # the process dies after the bytes went to the temporary file
outputs.write_atomic(Path(sys.argv[1]), "1\\n00:00:00,000 --> 00:00:01,000\\na dog\\n")
"""


def test_the_cleanup_removes_exactly_what_a_killed_write_leaves(tmp_path):
    """A write killed mid-way leaves its hidden temporary file; the next batch's cleanup finds that file, and only it."""
    target = tmp_path / "talk.srt"
    killed = subprocess.run([sys.executable, "-c", KILLED_MID_WRITE, str(target)], cwd=REPO, timeout=60)
    assert killed.returncode == 9
    (left,) = list(tmp_path.iterdir())
    assert left.name.startswith(".talk.srt.") and not target.exists()
    mine = [tmp_path / n for n in ("talk.srt.tmp", ".talk.srt.tmp", ".other.srt.abc.tmp",
                                   # a user's, deleted by batches before: the old .<name>.<word>.tmp pattern
                                   ".talk.srt.backup.tmp", ".talk.srt.v2_final.tmp", ".talk.srt.v2_final.old.tmp")]
    for path in mine:
        path.write_text("the user's")
    assert remove_stale_temp_files(tmp_path, [target.name, "talk.vtt"]) == 1
    assert sorted(tmp_path.iterdir()) == sorted(mine)
    write_atomic(target, "whole\n")
    assert target.read_text() == "whole\n" and remove_stale_temp_files(tmp_path, [target.name]) == 0


def test_the_cleanup_finds_the_temporary_files_of_a_name_with_a_newline(tmp_path):
    """A video named "new\\nline.mp4" (captioned like any other) left its outputs' temporary files on every run: the
    pattern's "." did not match the newline."""
    import tempfile

    from captioner.outputs import _tmp_prefix

    for name in ("new\nline.srt", "plain.srt"):
        fd, _ = tempfile.mkstemp(prefix=_tmp_prefix(name), suffix=".captioner.tmp", dir=tmp_path)
        os.close(fd)
    assert remove_stale_temp_files(tmp_path, ["new\nline.srt", "plain.srt"]) == 2 and not list(tmp_path.iterdir())


def test_atomic_path_renames_on_success_and_cleans_up_on_failure(tmp_path):
    target = tmp_path / "model.onnx"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("export failed")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".model.onnx.")
        tmp.write_bytes(b"whole")
    assert list(tmp_path.iterdir()) == [target] and target.read_bytes() == b"whole"


def test_output_names_append_the_format(tmp_path):
    base = output_base(Path("in/talk.v2.mp4"), tmp_path)
    assert base == tmp_path / "talk.v2" and output_file(base, "srt") == tmp_path / "talk.v2.srt"


def test_the_cache_folder_has_one_default(monkeypatch, tmp_path):
    monkeypatch.delenv("CAPTIONER_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "captioner"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "captioner"
    monkeypatch.setenv("CAPTIONER_CACHE", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"
    from captioner.encoder import onnx_cache_dir

    assert onnx_cache_dir() == tmp_path / "mine" / "encoders"


def test_a_relative_or_tilde_cache_folder_is_not_made_in_each_folder(monkeypatch, tmp_path):
    """CAPTIONER_CACHE=relcache exported the encoder (18.6 MB, 11 s with torch) into every folder run in, and a
    quoted "~/x" into a folder named ~; a relative XDG_CACHE_HOME was already ignored, as the XDG spec says."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("CAPTIONER_CACHE", "relcache")
    assert cache_dir() == tmp_path / ".cache" / "captioner"
    monkeypatch.setenv("CAPTIONER_CACHE", "~/mine")
    assert cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("CAPTIONER_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", "~/xdg")
    assert cache_dir() == tmp_path / "xdg" / "captioner"


@pytest.mark.parametrize("length", [241, 242, 250, 255])
def test_a_long_but_legal_output_name_is_written(tmp_path, length) -> None:
    """An output name of 242-255 bytes is legal, but its temporary file (14 bytes longer) was not:
    the write failed with 'File name too long' after the video had been captioned."""
    import os
    import tempfile

    from captioner.outputs import _TMP_SUFFIX, _tmp_prefix, remove_stale_temp_files, write_atomic

    name = "é" * ((length - 4) // 2) + "v" * ((length - 4) % 2) + ".srt"  # two bytes a letter: cuts mid-letter too
    assert len(name.encode()) == length
    write_atomic(tmp_path / name, "1\n")
    assert (tmp_path / name).read_text() == "1\n" and os.listdir(tmp_path) == [name]
    # an interrupted write's leftover is still found and removed by the name it belongs to
    fd, left = tempfile.mkstemp(prefix=_tmp_prefix(name), suffix=_TMP_SUFFIX, dir=tmp_path)
    os.close(fd)
    assert remove_stale_temp_files(tmp_path, ["other.srt"]) == 0
    assert remove_stale_temp_files(tmp_path, [name]) == 1 and os.listdir(tmp_path) == [name]


def test_folders_made_before_a_failure_part_way_are_taken_back(tmp_path: Path) -> None:
    """A video's output folder under -o whose last level cannot be made (a name over 255 bytes): the levels above
    it were made and left behind, empty, by batch (prepare_output_dir alone cleaned up after itself)."""
    from captioner.outputs import make_folders

    target = tmp_path / "a" / "b" / ("x" * 300)
    with pytest.raises(OSError):
        make_folders(target)
    assert list(tmp_path.iterdir()) == []
    assert make_folders(tmp_path / "a" / "b") == [tmp_path / "a", tmp_path / "a" / "b"]


def test_an_output_folder_that_is_a_dangling_link_says_so(tmp_path: Path) -> None:
    """-o brokenlink (a link to a folder since removed): "cannot create output folder (Not a directory)" sent the
    user looking for a file."""
    from captioner.errors import OutputError
    from captioner.outputs import prepare_output_dir

    (tmp_path / "out").symlink_to(tmp_path / "gone")
    with pytest.raises(OutputError, match=f"^{tmp_path / 'out'}: a link to {tmp_path / 'gone'}, which does not exist$"):
        prepare_output_dir(tmp_path / "out")


def test_an_output_folder_that_exists_but_cannot_be_written_is_not_said_to_be_uncreatable(tmp_path: Path,
                                                                                        monkeypatch) -> None:
    """A read-only -o folder that exists was "cannot create output folder (Permission denied)": a typo to look for."""
    import tempfile

    from captioner.errors import OutputError
    from captioner.outputs import prepare_output_dir

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)  # what a folder of mode 555 does for a user not root
    (tmp_path / "there").mkdir()
    with pytest.raises(OutputError, match=r"^.*/there: cannot write there \(Permission denied\)$"):
        prepare_output_dir(tmp_path / "there")
    with pytest.raises(OutputError, match=r"^.*/new: cannot create output folder \(Permission denied\)$"):
        prepare_output_dir(tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_a_video_s_formats_are_replaced_together_or_not_at_all(tmp_path, monkeypatch) -> None:
    """A full disk (or ``ulimit -f``) at the third format left the first two new and the rest from the run
    before, under one error line that named only the third: a folder mixing two runs."""
    from captioner import outputs
    from captioner.config import OutputConfig
    from captioner.cues import Cue
    from captioner.errors import OutputError
    from captioner.writers import write_subtitles

    for ext in ("srt", "vtt", "txt"):
        (tmp_path / f"a.{ext}").write_text("old\n", encoding="utf-8")
    real = outputs._staged

    def disk_full_at_txt(path: Path, text: str) -> str:
        if path.suffix == ".txt":
            raise OutputError(f"{path}: cannot write: No space left on device")
        return real(path, text)

    monkeypatch.setattr(outputs, "_staged", disk_full_at_txt)
    cues = [Cue(0.0, 2.0, "a dog runs")]
    with pytest.raises(OutputError, match="a.txt: cannot write: No space left on device$"):
        write_subtitles(cues, tmp_path / "a", ["srt", "vtt", "json", "txt"], OutputConfig(), {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.srt", "a.txt", "a.vtt"]  # no temporary file, no a.json
    assert all(p.read_text(encoding="utf-8") == "old\n" for p in tmp_path.iterdir())
    monkeypatch.setattr(outputs, "_staged", real)
    real_replace = outputs.os.replace

    def immutable_vtt(src, dst):
        if str(dst).endswith(".vtt"):
            raise PermissionError(1, "Operation not permitted")
        return real_replace(src, dst)

    monkeypatch.setattr(outputs.os, "replace", immutable_vtt)
    with pytest.raises(OutputError, match=r"a.vtt: cannot write: .*\(.*a.srt replaced already\)$"):
        write_subtitles(cues, tmp_path / "a", ["srt", "vtt", "txt"], OutputConfig(), {})
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.srt", "a.txt", "a.vtt"]
    assert "a dog runs" in (tmp_path / "a.srt").read_text(encoding="utf-8")
    assert (tmp_path / "a.vtt").read_text(encoding="utf-8") == (tmp_path / "a.txt").read_text(encoding="utf-8") == "old\n"


def test_a_ctrl_c_between_a_videos_renames_comes_after_all_of_them(tmp_path, monkeypatch):
    """Ctrl-C landing between two renames left the SRT of the new video beside the JSON of the old one, although a
    video's formats are replaced together; it now comes once every one is renamed."""
    import signal

    import captioner.outputs as outputs_mod

    srt, js = tmp_path / "clip.srt", tmp_path / "clip.json"
    srt.write_text("old"), js.write_text("old")
    real = os.replace
    calls = []

    def replace_then_interrupt(src, dst):
        real(src, dst)
        calls.append(dst)
        if len(calls) == 1:
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(outputs_mod.os, "replace", replace_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        outputs_mod.write_all_atomic([(srt, "new"), (js, "new")])
    assert (srt.read_text(), js.read_text()) == ("new", "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.json", "clip.srt"]
