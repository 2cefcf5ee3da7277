"""The offline jobs on bad input: one ``error:`` line and a non-zero exit, never a traceback, never data lost,
and refused before the hours of work rather than after (bugs a QA helper found in pipelines/)."""

from __future__ import annotations

import pytest


def test_fuzz_refuses_an_out_holding_files_it_did_not_make(tmp_path):
    """``pipelines.fuzz --out DIR`` emptied DIR/videos and DIR/subs whatever they held."""
    from pipelines.fuzz import main, strangers

    mine = tmp_path / "u"
    (mine / "videos").mkdir(parents=True)
    (mine / "videos" / "IMPORTANT.txt").write_text("keep")
    with pytest.raises(SystemExit, match=r"IMPORTANT.txt: not made by pipelines.fuzz.*give an --out of its own"):
        main(["--count", "1", "--workers", "1", "--out", str(mine)])
    assert (mine / "videos" / "IMPORTANT.txt").read_text() == "keep"
    (mine / "videos" / "IMPORTANT.txt").unlink()
    (mine / "subs").mkdir()
    (mine / "subs" / "notes.srt").write_text("keep")
    assert strangers(mine) == [mine / "subs" / "notes.srt"]
    # an earlier run's own files are emptied as before
    fuzz = tmp_path / "fuzz"
    (fuzz / "videos").mkdir(parents=True)
    (fuzz / "subs").mkdir()
    (fuzz / "videos" / "m000_cut.mp4").write_bytes(b"x")
    for name in ("m000_cut.srt", "m000_cut.json", "captioner-report.json", ".m000_cut.srt.abcdefgh.captioner.tmp"):
        (fuzz / "subs" / name).write_text("x")
    assert strangers(fuzz) == []
    for bad in (["--count", "0"], ["--workers", "0"]):  # vacuous success; the CLI's usage error counted as a failure
        with pytest.raises(SystemExit) as stop:
            main([*bad, "--out", str(tmp_path / "new")])
        assert stop.value.code == 2
    assert not (tmp_path / "new").exists()
