"""The offline jobs on bad input: one ``error:`` line and a non-zero exit, never a traceback, never data lost,
and refused before the hours of work rather than after (bugs a QA helper found in pipelines/)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from videos import write_photos


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


def _video_run(folder, init, *options, epochs=(), history=None):
    """A train_video run folder with last.pt and best.pt (and epoch<N>.pt) recording ``options``."""
    import torch

    from pipelines.train_video import hyperparameters, parse_args

    folder.mkdir(parents=True, exist_ok=True)
    args, _ = parse_args(["--init", str(init), "--run", str(folder), *options])
    record = {"config": {"concept_slots": args.slots, "detector_slots": args.detector_slots},
              "encoder": args.encoder, "vocab": ["<pad>", "a"], "state": {"w": torch.zeros(2)},
              "history": history or [{"epoch": 0, "select": 1.0}], "hyperparameters": hyperparameters(args)}
    for name in ("last.pt", "best.pt", *(f"epoch{e}.pt" for e in epochs)):
        torch.save(record, folder / name)
    return record


def test_train_video_resume_and_export_only_keep_the_runs_settings(tmp_path, tiny_model):
    """--resume and --export-only took the defaults for what the command line left out: epoch 2 trained on
    other detectors and the export shipped them while model.json said shipped_detectors."""
    from pipelines.train_video import check_prerequisites, parse_args

    run = tmp_path / "run"
    _video_run(run, tiny_model, "--shipped-detectors", "--no-styles", "--max-frames", "2", "--detector-rank", "0")
    for call in (["--resume", "--epochs", "3"], ["--export-only", "--out", str(tmp_path / "m")]):
        args, given = parse_args(["--run", str(run), *call])
        check_prerequisites(args, given)
        assert (args.shipped_detectors, args.styles, args.max_frames, args.detector_rank) == (True, False, 2, 0)
        assert args.init == tiny_model and args.epochs == (3 if "--resume" in call else 6)
    # --epochs, --keep-epochs and --out left out are the run's too (a resumed run trained 6 epochs, not its 3,
    # kept no epoch<N>.pt and exported nothing); given, they hold
    _video_run(run, tiny_model, "--epochs", "3", "--keep-epochs", "--out", str(tmp_path / "model"))
    args, given = parse_args(["--run", str(run), "--resume"])
    check_prerequisites(args, given)
    assert (args.epochs, args.keep_epochs, args.out) == (3, True, tmp_path / "model")
    args, given = parse_args(["--run", str(run), "--resume", "--epochs", "5", "--out", str(tmp_path / "other")])
    check_prerequisites(args, given)
    assert (args.epochs, args.keep_epochs, args.out) == (5, True, tmp_path / "other")
    args, given = parse_args(["--run", str(run), "--export-only", "--out", str(tmp_path / "m")])
    check_prerequisites(args, given)
    assert (args.epochs, args.out) == (3, tmp_path / "m")
    # a finished run (epochs 0..3 done) is not trained 3 epochs more
    _video_run(run, tiny_model, "--epochs", "3", history=[{"epoch": e, "select": 1.0} for e in range(4)])
    args, given = parse_args(["--run", str(run), "--resume"])
    with pytest.raises(SystemExit, match=r"has finished its 3 epochs; --epochs N \(more than that\) goes on"):
        check_prerequisites(args, given)
    _video_run(run, tiny_model, "--shipped-detectors", "--no-styles", "--max-frames", "2", "--detector-rank", "0")
    for call, says in ((["--resume", "--styles"], "trained with --no-styles; --resume keeps a run's settings: "
                                                   "leave out --styles"),
                       (["--export-only", "--out", str(tmp_path / "m"), "--init", str(tmp_path)],
                        f"trained with --init {tiny_model}; --export-only keeps"),
                       (["--resume", "--max-frames", "4", "--shipped-detectors"], "trained with --max-frames 2;")):
        args, given = parse_args(["--run", str(run), *call])
        with pytest.raises(SystemExit, match=re.escape(says)):
            check_prerequisites(args, given)
    # the same values given again (the Makefile's --export-only line repeats the training options) are fine
    args, given = parse_args(["--run", str(run), "--resume", "--shipped-detectors", "--init", str(tiny_model)])
    check_prerequisites(args, given)


def test_train_video_refuses_a_run_folder_holding_an_earlier_run(tmp_path, tiny_model):
    """Training again into a --run replaced its best.pt and left the first run's epoch<N>.pt, which --average
    then mixed with the second run's."""
    from pipelines.train_video import averaged_checkpoint, check_prerequisites, clear_run, parse_args

    run = tmp_path / "run"
    _video_run(run, tiny_model, epochs=(1, 2), history=[{"epoch": 0, "select": 1.0}, {"epoch": 1, "select": 2.0}])
    (run / "notes.txt").write_text("mine")
    args, given = parse_args(["--init", str(tiny_model), "--run", str(run)])
    with pytest.raises(SystemExit, match=r"holds an earlier run \(best.pt, epoch1.pt, epoch2.pt, last.pt\): "
                                         r"--resume continues it, .* --overwrite starts afresh"):
        check_prerequisites(args, given)
    args, given = parse_args(["--init", str(tiny_model), "--run", str(run), "--overwrite"])
    check_prerequisites(args, given)
    with pytest.raises(SystemExit):  # --overwrite starts afresh: not with --resume
        parse_args(["--run", str(run), "--resume", "--overwrite"])
    # epochs of two runs (kept before this check existed) are not averaged
    _video_run(run, tiny_model, epochs=(2,), history=[{"epoch": 0, "select": 1.0}, {"epoch": 1, "select": 3.0},
                                                      {"epoch": 2, "select": 4.0}])
    with pytest.raises(SystemExit, match="epoch1.pt and epoch2.pt are of different runs"):
        averaged_checkpoint(run, [1, 2])
    clear_run(run)
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]
    # stopped during epoch 1 (best.pt only): --resume and a plain start both name --overwrite (they sent each
    # other: "run without it to start", "--resume continues it")
    _video_run(run, tiny_model)
    (run / "last.pt").unlink()
    for call in (["--resume"], ["--init", str(tiny_model)]):
        args, given = parse_args(["--run", str(run), *call])
        with pytest.raises(SystemExit, match=r"stopped before its first epoch ended \(best.pt; no last.pt to "
                                             r"--resume\): --overwrite starts it afresh"):
            check_prerequisites(args, given)


def test_an_interrupted_export_leaves_the_model_as_it_was(tmp_path, tiny_model, monkeypatch):
    """train_video's export wrote model.json first and the detectors after, copied straight onto their names:
    stopped between, the model ran without detectors (a 0-byte detectors.safetensors, a model.json without
    them), saying nothing."""
    import argparse
    import json
    import shutil
    import stat
    from dataclasses import asdict

    import torch

    import pipelines.common as common
    import pipelines.train_video as tv
    from captioner.weights import load_model

    init = shutil.copytree(tiny_model, tmp_path / "init")
    (init / "detectors.safetensors").write_bytes(b"detectors")
    (init / "model.json").write_text(json.dumps({**json.loads((init / "model.json").read_text()),
                                                 "detectors": {"file": "detectors.safetensors"}}))
    out = shutil.copytree(init, tmp_path / "out")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    model, vocab, _ = load_model(tiny_model)
    (tmp_path / "run").mkdir()
    torch.save({"state": model.state_dict(), "vocab": list(vocab.itos), "config": asdict(model.config),
                "history": [], "name": "again", "encoder": "efficientnet-lite0"}, tmp_path / "run" / "best.pt")
    args = argparse.Namespace(encoder="efficientnet-lite0", shipped_detectors=True, init=init, styles=True)
    counts = {"msrvtt": 1, "cc3m": 1, "flickr": 1}

    def stopped(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(tv, "carry_companions", stopped)
    with pytest.raises(KeyboardInterrupt):
        tv.export(tmp_path / "run", out, None, args, counts, 0)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["init", "out", "run"]  # no staging folder left
    monkeypatch.undo()
    copied = []
    def full_disk(source, target):
        copied.append(target)
        target.write_bytes(b"dete")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", full_disk)
    with pytest.raises(OSError):  # a full disk while copying the detectors: no 0-byte file under their name
        common.copy_atomic(init / "detectors.safetensors", out / "detectors.safetensors")
    assert (out / "detectors.safetensors").read_bytes() == b"detectors" and not copied[0].exists()
    monkeypatch.undo()
    tv.export(tmp_path / "run", out, None, args, counts, 0)
    manifest = json.loads((out / "model.json").read_text())
    assert manifest["name"] == "again" and manifest["detectors"] == {"file": "detectors.safetensors"}
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in out.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["init", "out", "run"]


def test_train_vse_checks_its_out_model_before_training(tmp_path, tiny_model):
    """--out that is no model failed after all the training (a SafetensorError traceback, or a half-installed
    vse.safetensors); a damaged best.pt gave a traceback on --export-only."""
    import shutil
    import subprocess
    import sys

    (tmp_path / "folder").mkdir()
    job = [sys.executable, "-m", "pipelines.train_vse", "--init", str(tiny_model), "--run", str(tmp_path / "run")]
    for out in (tmp_path / "new", tmp_path / "folder"):
        for extra in ([], ["--export-only"]):
            done = subprocess.run(job + ["--out", str(out), *extra], capture_output=True, text=True, timeout=120)
            assert done.returncode == 1 and done.stderr.startswith("error: --out: "), done.stderr
            assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1
    assert not (tmp_path / "run").exists() and list((tmp_path / "folder").iterdir()) == []
    model = shutil.copytree(tiny_model, tmp_path / "model")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "best.pt").write_bytes(b"PK\x03\x04 cut off")
    done = subprocess.run(job + ["--out", str(model), "--export-only"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "best.pt: damaged checkpoint" in done.stderr and "Traceback" not in done.stderr
    assert sorted(p.name for p in model.iterdir()) == sorted(p.name for p in tiny_model.iterdir())


def test_train_video_refuses_detector_outputs_that_are_not_there(tmp_path, tiny_model):
    """--detector-outputs naming a missing folder (or one without a set's outputs) was ignored: the run used the
    in-sample outputs and recorded the folder it never read."""
    from pipelines.train_video import check_prerequisites, parse_args

    outputs = tmp_path / "crossfit"
    args, given = parse_args(["--init", str(tiny_model), "--run", str(tmp_path / "run"),
                              "--detector-outputs", str(outputs)])
    with pytest.raises(SystemExit, match=r"--detector-outputs: .*crossfit/flickr8k_det.npy: no such file"):
        check_prerequisites(args, given)
    outputs.mkdir()
    for name in ("flickr8k", "msrvtt"):
        (outputs / f"{name}_det.npy").write_bytes(b"x")
    with pytest.raises(SystemExit, match=r"crossfit/cc3m_det.npy: no such file"):
        check_prerequisites(args, given)
    (outputs / "cc3m_det.npy").write_bytes(b"x")
    check_prerequisites(args, given)


def test_evaluate_checks_every_set_before_scoring_any(tmp_path, monkeypatch):
    """--sets flickr8k,cocoo scored flickr8k, then ended in a ValueError traceback and no report; a captions.tsv
    naming a clip not in clips/ gave a KeyError traceback."""
    import argparse

    import pipelines.evaluate as ev

    assert ev.set_names("flickr8k, coco") == ["flickr8k", "coco"]
    for bad in ("flickr8k,cocoo", ",", " "):
        with pytest.raises(argparse.ArgumentTypeError):
            ev.set_names(bad)
    with pytest.raises(SystemExit) as stop:
        ev.main(["--model", str(tmp_path), "--sets", "flickr8k,cocoo"])
    assert stop.value.code == 2
    monkeypatch.setattr(ev, "DATA", tmp_path)
    (tmp_path / "video" / "msvd" / "clips").mkdir(parents=True)
    (tmp_path / "video" / "msvd" / "clips" / "a.mp4").write_bytes(b"")
    (tmp_path / "video" / "msvd" / "captions.tsv").write_text("a\ta dog\nb\ta cat\n")
    monkeypatch.setattr(ev, "Captioner", lambda config: pytest.fail("scored before the sets were checked"))
    with pytest.raises(SystemExit, match=r"msvd/captions.tsv names clips that .*msvd/clips does not hold: b$"):
        ev.main(["--model", str(tmp_path), "--sets", "coco,msvd"])


def test_a_damaged_checkpoint_is_one_line_before_any_data(tmp_path, tiny_model):
    """train --resume, train_scst --resume / --export-only ended in a PytorchStreamReader (EOFError,
    UnpicklingError, FileNotFoundError) traceback, after all the data had been loaded."""
    import os
    import subprocess
    import sys

    import torch

    from pipelines.common import read_checkpoint

    good = tmp_path / "good.pt"
    torch.save({"state": {"w": torch.zeros(1000)}, "history": []}, good)
    damaged = {"cut.pt": good.read_bytes()[:600], "empty.pt": b"", "garbage.pt": b"\x80\x04garbage"}
    for name, data in damaged.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(SystemExit, match=rf"error: .*{name}: damaged checkpoint \(\w+: .*\); train again"):
            read_checkpoint(tmp_path / name)
    for path, says in ((tmp_path / "nothing.pt", "no such file"), (tmp_path, "a folder, not a checkpoint")):
        with pytest.raises(SystemExit, match=f"error: {path}: {says}"):
            read_checkpoint(path)
    assert read_checkpoint(good, weights_only=True)["history"] == []

    run = tmp_path / "run"
    run.mkdir()
    (run / "init.json").write_text(f'{{"init": "{tiny_model}"}}')
    for name in ("last.pt", "best.pt"):
        (run / name).write_bytes(damaged["cut.pt"])
    empty = tmp_path / "nodata"  # no data at all: the checkpoint is read before any of it
    for job in (["train", "--resume", str(run / "best.pt"), "--run", str(tmp_path / "r2")],
                ["train_scst", "--run", str(run), "--resume"],
                ["train_scst", "--run", str(run), "--export-only", "--out", str(tmp_path / "m")]):
        done = subprocess.run([sys.executable, "-m", f"pipelines.{job[0]}", *job[1:]], capture_output=True, text=True,
                              timeout=120, env={**os.environ, "CAPTIONER_DATA": str(empty),
                                                "CAPTIONER_WORK": str(empty)})
        assert done.returncode == 1 and "damaged checkpoint" in done.stderr, (job, done.stderr)
        assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert not (tmp_path / "m").exists()


def test_score_json_skips_foreign_json_and_keeps_dotted_ids(tmp_path):
    """Foreign JSON ({"cues": null}, cues that are not objects, a cue without confidence) gave tracebacks; clip.v1
    and clip.v2 were both scored as "clip"; equal confidences put NaN (not JSON) in the output; a bad --out failed
    after all the scoring."""
    import json
    import subprocess
    import sys

    from pipelines.score_json import longest_cues

    outputs = tmp_path / "json"
    outputs.mkdir()

    def cue(text, **extra):
        return {"start": 0.0, "end": 2.0, "text": text, **extra}

    (outputs / "clip.v1.json").write_text(json.dumps({"cues": [cue("a dog runs", confidence=0.5)]}))
    (outputs / "clip.v2.json").write_text(json.dumps({"cues": [cue("a man talks", confidence=0.5)]}))
    (outputs / "old.json").write_text(json.dumps({"cues": [cue("a cat sits")]}))  # no confidence: text still scored
    for i, foreign in enumerate(({"cues": ["a"]}, {"cues": None}, {"cues": [{"text": "hi"}]}, [1], {"cues": [cue(3)]})):
        (outputs / f"foreign{i}.json").write_text(json.dumps(foreign))
    confidences: dict[str, float] = {}
    assert longest_cues(outputs, confidences) == {"clip.v1": "a dog runs", "clip.v2": "a man talks", "old": "a cat sits"}
    assert confidences == {"clip.v1": 0.5, "clip.v2": 0.5}
    refs = tmp_path / "refs.tsv"
    refs.write_text("clip.v1\ta dog runs on grass\nclip.v2\ta man talks\nold\ta cat sits\n")
    job = [sys.executable, "-m", "pipelines.score_json", str(outputs), "--refs", str(refs)]
    for bad, says in ((tmp_path, "a folder, not a file"), (tmp_path / "no" / "s.json", "no such folder")):
        done = subprocess.run(job + ["--out", str(bad)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and says in done.stderr and "Traceback" not in done.stderr
    done = subprocess.run(job + ["--out", str(tmp_path / "s.json")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    scores = json.loads(done.stdout, parse_constant=lambda c: pytest.fail(f"{c} in the output"))
    assert scores["n"] == 3 and scores["confidence_spearman"] is None
    json.loads((tmp_path / "s.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in --out"))


def test_prepare_data_says_a_mirror_lacks_the_pinned_commit(tmp_path, monkeypatch):
    """A mirror without the pinned commit gave a CalledProcessError traceback (git's stderr swallowed) and left
    an empty work/data/cc3m/."""
    import subprocess

    import pipelines.prepare_data as prep

    monkeypatch.setattr(prep, "PREPARED", tmp_path / "work" / "data")
    mirror = tmp_path / "mirror"
    subprocess.run(["git", "init", "-q", "--bare", str(mirror)], check=True)
    with pytest.raises(SystemExit, match=r"mirror: does not hold the pinned commit e059e1606aef .* --cc3m-mirror"):
        prep.main(["--set", "cc3m", "--cc3m-mirror", str(mirror)])
    with pytest.raises(SystemExit, match=r"mirror: git ls-tree failed: fatal: not a tree object$"):
        prep.prepare_cc3m(mirror)  # past the check (a mirror changed under it): git's own words, one line
    assert not (tmp_path / "work").exists()


def test_bad_lines_in_data_and_refs_files_are_one_line(tmp_path):
    """Non-UTF-8 refs: a UnicodeDecodeError traceback; a byte-order mark: the first id silently lost; empty
    references only: a ValueError from CIDEr; a header line in the MSR-VTT captions: "invalid literal for int()"
    naming nothing; card_examples on a make eval report: a KeyError."""
    import json

    from pipelines.card_examples import main as card_examples
    from pipelines.common import captions_by_file, read_tsv
    from pipelines.prepare_data import msrvtt_ids

    refs = tmp_path / "refs.tsv"
    refs.write_bytes(b"video1\ta man talks\nvideo2\ta caf\xe9\n")
    with pytest.raises(SystemExit, match=r"refs.tsv, line 2: not UTF-8 text \(invalid .*\); save it as UTF-8"):
        read_tsv(refs)
    refs.write_bytes("\ufeffvideo1\ta man talks\r\nvideo2\t \nvideo3\t\n".encode())
    assert captions_by_file(refs) == {"video1": ["a man talks"]}
    with pytest.raises(SystemExit, match=r"'video_id': not an MSR-VTT video id .*a header line"):
        msrvtt_ids("train", ["video_id", "video1"], set())
    assert msrvtt_ids("train", ["video2", "video10", "video7000"], {"video10"}) == ["video2"]
    report = tmp_path / "eval.json"
    report.write_text(json.dumps({"captions": {"Flickr8k test": {}}}))
    for path, says in ((report, "no 'MSR-VTT val .*' captions \\(it holds: Flickr8k test\\)"),
                       (tmp_path / "none.json", "none.json: no such file"), (refs, "not an evaluate report")):
        with pytest.raises(SystemExit, match=says):
            card_examples(["--before", str(path), "--after", str(path)])


@pytest.mark.parametrize("job, options", [
    ("train_video", ["--max-frames", "0"]), ("train_video", ["--slots", "0"]),
    ("train_video", ["--slots", "4", "--detector-slots", "5"]), ("train_video", ["--text-per-epoch", "-5"]),
    ("train_video", ["--max-words", "0"]), ("train", ["--text", "coco,msrvt"]), ("train", ["--hidden", "0"]),
    ("train", ["--concepts", "0"]), ("train_vse", ["--max-frames", "0"]), ("train_scst", ["--max-words", "0"]),
    ("search_bench", ["--distinct", "0"]), ("search_bench", ["--sample", "0"]),
    ("train", ["--run", "FILE"]), ("train_video", ["--run", "FILE"]), ("train_vse", ["--run", "FILE"]),
    ("train_scst", ["--run", "FILE"]), ("bench", ["--seconds", "-5"]), ("bench", ["--repeat", "0"]),
    ("review_screenshots", ["--out", "FILE"]),
])
def test_count_options_are_checked_before_any_work(job, options, tmp_path, monkeypatch, capsys):
    """--max-frames 0 (randrange), --detector-slots over --slots (RuntimeError), --text with a typo, --distinct 0
    (ZeroDivisionError), a --run that is a file (FileExistsError): tracebacks, or training on empty captions."""
    import importlib
    import sys

    (tmp_path / "FILE").write_text("x")
    options = [str(tmp_path / "FILE") if o == "FILE" else o for o in options]
    monkeypatch.setattr(sys, "argv", [job, *options])
    module = importlib.import_module(f"pipelines.{job}")
    for name in ("CACHE", "DATA"):  # a job that got past its options would work in scratch folders, not the real ones
        if hasattr(module, name):
            monkeypatch.setattr(module, name, tmp_path / name.lower())
    main = module.main
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 2 and "error: " in capsys.readouterr().err


def test_train_text_corpora_allow_spaces_and_none():
    from pipelines.common import text_corpora

    assert text_corpora("coco, msvd") == "coco,msvd" and text_corpora("") == ""


def test_train_presence_selects_epochs_when_a_set_has_no_person():
    """A set without held-out pictures of people gave a NaN mean AP: no epoch was better, then a TypeError."""
    import json

    import numpy as np

    from pipelines.train_presence import heldout_ap, mean_ap

    aps = {"flickr8k": heldout_ap(np.array([0.9, 0.1]), np.array([1.0, 0.0])), "cc3m": heldout_ap(np.zeros(2), np.zeros(2))}
    assert aps == {"flickr8k": 100.0, "cc3m": None} and mean_ap(aps) == 100.0
    assert mean_ap({"cc3m": None}) == 0.0
    json.loads(json.dumps(aps), parse_constant=lambda c: pytest.fail(c))
    # nor the shares kept of a set's pictures with a person when it has none (NaN into model.json)
    from pipelines.train_presence import person_shares

    shares = person_shares(np.zeros(2, bool), np.array([0.9, 0.1]), np.array([0.2, 0.8]), 0.5, 0.5)
    assert shares == {"without_person_banned_head": 0.5, "without_person_banned_unit": 0.5,
                      "with_person_kept_head": None, "with_person_kept_unit": None}
    json.dumps(shares, allow_nan=False)


def test_a_stopped_job_cleans_up_and_says_so_in_one_line(tmp_path, monkeypatch):
    """SIGTERM to extract_features left its gigabyte <set>_grid.tmp.npy (only Ctrl-C cleaned up); Ctrl-C printed a
    KeyboardInterrupt traceback in every job; a file name with a space shifted every later row of the cache."""
    import subprocess
    import sys

    import pipelines.extract_features as extract

    job = ("import os, signal, time, pipelines; from pathlib import Path; from pipelines.common import stop_on_sigterm\n"
           f"stop_on_sigterm(); tmp = Path({str(tmp_path / 'grid.tmp.npy')!r}); tmp.write_bytes(b'x')\n"
           "try:\n    os.kill(os.getpid(), signal.SIGTERM); time.sleep(30)\nexcept BaseException:\n"
           "    tmp.unlink(); raise\n")
    done = subprocess.run([sys.executable, "-c", job], capture_output=True, text=True, timeout=60)
    assert done.returncode == 143 and not (tmp_path / "grid.tmp.npy").exists() and done.stderr == ""
    done = subprocess.run([sys.executable, "-c", "import pipelines; raise KeyboardInterrupt"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 130 and done.stderr == "error: interrupted\n"  # as the CLI's Ctrl-C (it was 1)
    # and extract_features itself turns SIGTERM into that clean stop, before any work
    class Installed(Exception):
        pass

    def installed():
        raise Installed

    monkeypatch.setattr(extract, "stop_on_sigterm", installed)
    monkeypatch.setattr(extract, "extract", lambda *a, **k: pytest.fail("encoded before stop_on_sigterm"))
    monkeypatch.setattr(sys, "argv", ["extract_features", "--set", "coco", "--limit", "1"])
    with pytest.raises(Installed):
        extract.main()
    monkeypatch.setattr(extract, "feature_dir", lambda encoder: tmp_path)
    (tmp_path / "coco_files.txt").write_text("a photo.jpg\nb.jpg\n")
    assert extract.feature_rows("e", "coco") == {"a photo.jpg": 0, "b.jpg": 1}


def test_a_model_error_is_said_whole():
    """A checksum error from --init was cut at 160 characters, mid-sentence."""
    import subprocess
    import sys

    message = "x" * 150 + " checksum mismatch; the file is corrupt or belongs to another model"
    job = f"import pipelines; from captioner.errors import ModelError; raise ModelError({message + chr(10) + 'more'!r})"
    done = subprocess.run([sys.executable, "-c", job], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stderr == f"error: {message}\n"


def test_train_detectors_trial_out_leaves_the_shared_outputs_alone(tmp_path, monkeypatch):
    """train_detectors --out TRIAL rewrote the shared <set>_det.npy that the default detectors' users read."""
    import numpy as np

    import pipelines.train_detectors as td
    from captioner.detect import Detectors

    assert td.caches_outputs(td.DETECTORS.parent) and not td.caches_outputs(td.DETECTORS.parent, no_cache_outputs=True)
    assert not td.caches_outputs(td.DETECTORS.parent.parent / "detectors-trial")
    # what main does with them once trained (write_outputs: main's last step)
    features, shared = tmp_path / "features", tmp_path / "runs" / "detectors"
    features.mkdir()
    shared.mkdir(parents=True)
    monkeypatch.setattr(td, "feature_dir", lambda encoder: features)
    monkeypatch.setattr(td, "DETECTORS", shared / "detectors.npz")
    np.save(features / "coco_grid.npy", np.zeros((2, 1, 3), np.float16))
    np.save(features / "coco_det.npy", np.full((2, 1), 7, np.float16))  # the shared detectors' outputs
    det = Detectors(("dog",), np.ones((3, 1), np.float32), np.zeros(1, np.float32), np.ones(1, np.float32),
                    np.zeros(1, np.float32))
    for out in (tmp_path / "runs" / "trial", shared):
        out.mkdir(exist_ok=True)
        (out / "detectors.npz").write_bytes(b"detectors")
        td.write_outputs("e", det, out)
        assert (np.load(features / "coco_det.npy") == 7).all() == (out != shared), out
    td.write_outputs("e", det, shared, no_cache_outputs=True)


def test_extract_features_does_not_take_other_pictures_cache_as_complete(tmp_path, monkeypatch):
    """--msrvtt-size 240 found the cache of the 224-pixel frames complete (same names) and kept it."""
    import pipelines.extract_features as extract

    monkeypatch.setattr(extract, "feature_dir", lambda encoder: tmp_path / "features")
    photos = write_photos(tmp_path / "photos", 2, 60)
    grid = extract.extract("coco", "efficientnet-lite0", root=photos)
    made = grid.stat().st_ino
    assert extract.extract("coco", "efficientnet-lite0", root=photos) == grid and grid.stat().st_ino == made
    extract.extract("coco", "efficientnet-lite0", root=photos, source="data240")
    assert grid.stat().st_ino != made  # encoded again
    made = grid.stat().st_ino
    extract.extract("coco", "efficientnet-lite0", root=photos, source="data240")
    assert grid.stat().st_ino == made and (tmp_path / "features" / "coco_source.txt").read_text() == "data240\n"
    extract.extract("coco", "efficientnet-lite0", root=photos)
    assert grid.stat().st_ino != made and not (tmp_path / "features" / "coco_source.txt").exists()
    # stopped after the new grid's rename (before its probabilities and source record): not complete
    saved = extract.save_npy

    def stopped(*a, **k):
        raise KeyboardInterrupt

    extract.save_npy = stopped
    try:
        with pytest.raises(KeyboardInterrupt):
            extract.extract("coco", "efficientnet-lite0", root=photos, source="data240")
    finally:
        extract.save_npy = saved
    assert not extract._complete(tmp_path / "features", "coco", ["p0.jpg", "p1.jpg"])
    assert not extract._complete(tmp_path / "features", "coco", ["p0.jpg", "p1.jpg"], "data240")


def test_a_copy_of_a_model_with_one_entry_more_is_whole_or_absent(tmp_path, tiny_model):
    """train_presence and word_thresholds copied --model into --out file by file, then changed model.json: stopped
    midway, --out was half a model."""
    import json

    from captioner.weights import update_manifest
    from pipelines.common import staged_model

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        with staged_model(out, start=tiny_model) as stage:
            update_manifest(stage, lambda m: m.update(grammar={"words": ["running"]}))
            raise KeyboardInterrupt
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with staged_model(out, start=tiny_model) as stage:
        update_manifest(stage, lambda m: m.update(grammar={"words": ["running"]}))
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in tiny_model.iterdir())
    assert json.loads((out / "model.json").read_text())["grammar"] == {"words": ["running"]}
    assert "grammar" not in json.loads((tiny_model / "model.json").read_text())
    with staged_model(out, start=out) as stage:  # in place: only model.json is staged
        assert [p.name for p in stage.iterdir()] == ["model.json"]


def test_an_export_into_a_folder_on_another_file_system_or_after_a_killed_one(tmp_path, tiny_model):
    """--out a symlink to (or the mount point of) another file system: the stage beside it was renamed across
    devices, an EXDEV traceback after the whole training; a killed export's stage was left for good."""
    import os
    import shutil
    import uuid

    from pipelines.common import staged_model

    elsewhere = Path("/dev/shm")
    if not elsewhere.is_dir() or elsewhere.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no second file system (/dev/shm) here")
    target = elsewhere / f"captioner-test-{uuid.uuid4().hex}"
    try:
        for existing in (False, True):
            if existing:
                shutil.copytree(tiny_model, target)
            (tmp_path / "model").symlink_to(target, target_is_directory=True)
            with staged_model(tmp_path / "model", start=tiny_model) as stage:
                (stage / "extra.txt").write_text("x")
            assert sorted(p.name for p in target.iterdir()) == sorted([*(p.name for p in tiny_model.iterdir()),
                                                                       "extra.txt"])
            assert oct(os.stat(target / "extra.txt").st_mode & 0o777) == "0o644"
            (tmp_path / "model").unlink()
            shutil.rmtree(target)
        # a stage a killed export left, inside the model folder or beside it (before): removed by the next export
        model = shutil.copytree(tiny_model, tmp_path / "m")
        (model / ".abc.export.tmp").mkdir()
        (tmp_path / ".m.xyz.export.tmp").mkdir()
        with staged_model(model, start=model):
            pass
        assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
        assert sorted(p.name for p in model.iterdir()) == sorted(p.name for p in tiny_model.iterdir())
        import subprocess

        root = Path(__file__).resolve().parent.parent
        for left in (".weights.k2j3.export.tmp/", "weights/.k2j3.export.tmp/"):  # and git ignores them
            if shutil.which("git") and (root / ".git").exists():
                assert subprocess.run(["git", "-C", str(root), "check-ignore", "-q", left]).returncode == 0, left
    finally:
        shutil.rmtree(target, ignore_errors=True)


def test_fuzz_checks_its_model_before_making_any_mutant(tmp_path):
    """--model naming no model: the batch's error line was dropped and every video counted "pending", a finding."""
    from captioner.errors import ModelError
    from pipelines.fuzz import main

    with pytest.raises(ModelError, match="no such model folder"):
        main(["--count", "1", "--workers", "1", "--model", str(tmp_path / "nonexist"), "--out", str(tmp_path / "f")])
    assert not (tmp_path / "f" / "videos").exists()
