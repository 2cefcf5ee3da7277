"""The offline jobs in ``pipelines/``: their index is complete, and the cheap ones run.

The jobs themselves need ../shared/data and hours; these tests run what can run on
a tiny model and a generated clip, so that a job is not found broken only when
someone next needs its numbers.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from videos import make_video, write_photos

PIPELINES = Path(__file__).resolve().parent.parent / "pipelines"


def test_stability_flicker_runs_with_the_pipeline_it_spies_on(tmp_path, tiny_model, monkeypatch):
    """``python -m pipelines.stability`` crashed: its spy did not take the ``threads=`` the pipeline passes."""
    from captioner.config import CaptionConfig, SegmentConfig
    from captioner.pipeline import Captioner
    from pipelines import stability

    clip = make_video(tmp_path / "clip.mp4", [("red", 2.0), ("red", 2.0), ("blue", 2.0)])
    monkeypatch.setattr(stability, "video_clips", lambda: [clip])
    config = replace(CaptionConfig(), model_dir=tiny_model,
                     segments=replace(SegmentConfig(), stable_threshold=0.0, max_segment=1.0))
    cap = Captioner(config)
    pairs, same = stability.flicker(cap, near=0.1)  # the generated clip is noisy: its red pieces are ~0.04 apart
    assert pairs > 0 and 0.0 <= same <= 1.0  # the red pieces are near-identical neighbours
    assert "caption_batch" not in vars(cap)  # the spy is gone again


def test_the_index_lists_every_job():
    """pipelines/README.md names every module of pipelines/ (job -> inputs -> outputs -> make target)."""
    index = (PIPELINES / "README.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"`(\w+)\.py`", index))
    modules = {p.stem for p in PIPELINES.glob("*.py") if p.stem != "__init__"}
    assert modules - listed == set(), "add these to pipelines/README.md"
    assert listed - modules == set(), "these are in pipelines/README.md but not in pipelines/"


def test_candidate_study_scores_choices_by_weighted_parts_and_cross_validates():
    """``pipelines.candidate_study``: a choice is the candidate with the best parts . (1, weights); weights
    picked on the other folds are scored on the held-out one; a video is studied by its longest cue's segment."""
    import numpy as np

    from pipelines.candidate_study import candidate_table, choose, cross_validated

    rng = np.random.default_rng(1)
    parts, cider = [], []
    for _ in range(20):  # candidate 1 is the better one; the decoder prefers 0, the vector (cos) prefers 1
        parts.append(np.array([[0.0, 0.1, 0, 0, 0], [-0.5, 0.3, 0, 0, 0]]))
        cider.append(np.array([10.0, 10.0 + rng.uniform(1, 5)]))
    assert np.allclose(choose(parts, cider, np.zeros(4)), 10.0)  # the decoder's score alone
    assert np.allclose(choose(parts, cider, np.array([5.0, 0, 0, 0])), [y[1] for y in cider])
    cv, picked = cross_validated(parts, cider, [(0, 0, 0, 0), (5, 0, 0, 0)])
    assert cv == np.mean([y.max() for y in cider]) and all(w == (5, 0, 0, 0) for w in picked)

    records = {"v1": [{"chosen": "a dog runs", "candidates": ["first"]}, {"chosen": "a cat", "candidates": ["second"]}],
               "v2": [{"chosen": "a man talks", "candidates": ["third"]}]}
    table = candidate_table(records, {"v1": "a cat", "v2": "a woman sings", "v3": "a car"})
    assert table == {"v1": ["second"]}  # v2's longest cue is no segment's choice; v3 has no records


def test_a_job_without_its_data_says_where_the_data_should_be(tmp_path, monkeypatch):
    """On a machine without ../shared/data every job that reads it ended in a FileNotFoundError traceback
    (extract_features: an IndexError)."""
    import pipelines.common as common
    import pipelines.extract_features as extract

    monkeypatch.setattr(common, "DATA", tmp_path)
    with pytest.raises(SystemExit, match=r"flickr8k/captions.tsv: no such file; the data is read from .*CAPTIONER_DATA"):
        common.read_tsv(tmp_path / "flickr8k" / "captions.tsv")
    with pytest.raises(SystemExit, match="no images under"):
        extract.extract("flickr8k", "efficientnet-lite0", limit=1, root=tmp_path / "nowhere")  # limit: past the cache


def test_jobs_refuse_bad_counts_and_files_of_another_shape(tmp_path):
    """--batch 0 gave ZeroDivisionError or, in extract_features, an all-zero cache and exit 0; a refs file of
    one column gave an unpacking traceback."""
    import argparse

    from pipelines.common import positive_int, read_tsv, share

    assert positive_int("3") == 3
    for bad in ("0", "-5", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            positive_int(bad)
    with pytest.raises(argparse.ArgumentTypeError):
        share("1.5")
    refs = tmp_path / "refs.tsv"
    refs.write_text("video1\ta man talks\nvideo2\n", encoding="utf-8")
    with pytest.raises(SystemExit, match=r"refs.tsv, line 2: 2 tab-separated columns expected, found 1"):
        read_tsv(refs)


def test_a_missing_model_or_file_is_one_line_not_a_traceback(tmp_path):
    """Eleven jobs ended with a ModelError or FileNotFoundError traceback for a --model that is no model."""
    import subprocess
    import sys

    # as a job meets it (grammar, vse_memory, ... read their --model; which one first varies with the data)
    job = f"import pipelines; from captioner.weights import read_manifest; read_manifest({str(tmp_path / 'nothing')!r})"
    done = subprocess.run([sys.executable, "-c", job], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr == f"error: {tmp_path / 'nothing'}: no such model folder\n"
    # a missing file of the work folder: one line; any other missing file is a bug and keeps its traceback
    job = "import pipelines; from pipelines.common import CACHE; (CACHE / 'runs' / 'nothing.pt').read_bytes()"
    done = subprocess.run([sys.executable, "-c", job], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr.startswith("error: ") and done.stderr.count("\n") == 1
    done = subprocess.run([sys.executable, "-c", f"import pipelines; open({str(tmp_path / 'x')!r})"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" in done.stderr


def test_score_json_without_outputs_stops_at_once(tmp_path):
    """With no outputs METEOR was given nothing, raised inside pycocoevalcap and then hung the exit."""
    import subprocess
    import sys

    refs = tmp_path / "refs.tsv"
    refs.write_text("video1\ta man talks\n", encoding="utf-8")
    (tmp_path / "empty").mkdir()
    done = subprocess.run([sys.executable, "-m", "pipelines.score_json", str(tmp_path / "empty"), "--refs", str(refs)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stderr.startswith("error: no JSON outputs in ")


def test_detector_outputs_must_come_from_the_detectors_in_use(tmp_path, monkeypatch):
    """train_detectors writes the detectors, then each set's outputs (minutes): a run stopped between them, or
    with --no-cache-outputs, paired new detectors with old outputs (an IndexError, or a silent mix)."""
    import pipelines.train_detectors as td

    monkeypatch.setattr(td, "feature_dir", lambda encoder: tmp_path)
    detectors = tmp_path / "detectors.npz"
    detectors.write_bytes(b"one set of detectors")
    for name in ("msrvtt", "cc3m"):
        (tmp_path / f"{name}_grid.npy").write_bytes(b"features")
    td._record_outputs("e", "msrvtt", td.sha256_file(detectors))
    td.check_outputs("e", "msrvtt", detectors)
    with pytest.raises(SystemExit, match="cached detector outputs of cc3m .* were not made by"):
        td.check_outputs("e", "cc3m", detectors)
    (tmp_path / "msrvtt_grid.npy").write_bytes(b"features extracted again")  # the outputs are of the old ones
    with pytest.raises(SystemExit, match="cached detector outputs of msrvtt"):
        td.check_outputs("e", "msrvtt", detectors)
    td._record_outputs("e", "msrvtt", td.sha256_file(detectors))
    detectors.write_bytes(b"detectors trained again")
    with pytest.raises(SystemExit, match="cached detector outputs of msrvtt"):
        td.check_outputs("e", "msrvtt", detectors)


def test_train_vse_frame_inputs_are_made_again_for_other_detectors(tmp_path, monkeypatch):
    import numpy as np

    import pipelines.train_vse as tv
    from captioner.detect import Detectors

    monkeypatch.setattr(tv, "feature_dir", lambda encoder: tmp_path)
    np.save(tmp_path / "msrvtt_grid.npy", np.zeros((2, 1, 3), np.float16))

    def det(w: float) -> Detectors:
        return Detectors(("dog",), np.full((3, 1), w, np.float32), np.zeros(1, np.float32), np.ones(1, np.float32),
                         np.zeros(1, np.float32))

    stamp = tv.inputs_stamp("e", "msrvtt", det(1.0))
    from pipelines.common import save_npz

    save_npz(tmp_path / "frames.npz", pooled=np.ones((2, 3)), stamp=np.array(stamp))
    assert set(tv.cached_inputs(tmp_path / "frames.npz", stamp)) == {"pooled"}
    assert tv.cached_inputs(tmp_path / "frames.npz", tv.inputs_stamp("e", "msrvtt", det(2.0))) == {}
    (tmp_path / "frames.npz").write_bytes(b"PK cut off")  # damaged: made again, not a traceback
    assert tv.cached_inputs(tmp_path / "frames.npz", stamp) == {}


def test_train_video_checks_what_it_starts_from_before_loading_data(tmp_path):
    import subprocess
    import sys

    run = [sys.executable, "-m", "pipelines.train_video", "--run", str(tmp_path / "run")]
    for extra, says in ((["--resume"], "last.pt: no such file; nothing to --resume"),
                        (["--init", str(tmp_path / "nothing")], "--init: "),
                        (["--export-only", "--out", str(tmp_path / "m")], "nothing to export: ")):
        done = subprocess.run(run + extra, capture_output=True, text=True, timeout=120)
        assert done.returncode == 1 and says in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_extract_features_limit_leaves_the_cache_whole(tmp_path, monkeypatch):
    """--limit 5 replaced the full cache with five rows, which every later run then took as complete."""
    import cv2
    import numpy as np

    import pipelines.extract_features as extract

    monkeypatch.setattr(extract, "feature_dir", lambda encoder: tmp_path / "features")
    photos = write_photos(tmp_path / "photos", 3, 40)
    extract.extract("coco", "efficientnet-lite0", root=photos)
    grid = tmp_path / "features" / "coco_grid.npy"
    assert np.load(grid).shape[0] == 3
    extract.extract("coco", "efficientnet-lite0", limit=1, root=photos)
    assert np.load(grid).shape[0] == 3 and not list((tmp_path / "features").glob("*.tmp*"))
    cv2.imwrite(str(photos / "p3.jpg"), np.zeros((32, 32, 3), np.uint8))  # a picture more: not complete
    extract.extract("coco", "efficientnet-lite0", root=photos)
    assert np.load(grid).shape[0] == 4
    for p in photos.iterdir():  # a machine that keeps the features but not the pictures
        p.unlink()
    assert extract.extract("coco", "efficientnet-lite0", root=photos) == grid


def test_export_says_what_it_cannot_export(tmp_path):
    """export --run of a train_video run (numpy values in its history) or of nothing ended in a traceback."""
    import numpy as np
    import torch

    from pipelines.export import main as export

    torch.save({"history": [{"select": np.float64(1.0)}]}, tmp_path / "best.pt")
    with pytest.raises(SystemExit, match="not a stage-1 checkpoint of pipelines.train"):
        export(["--run", str(tmp_path), "--out", str(tmp_path / "m")])
    with pytest.raises(SystemExit, match="no such file"):
        export(["--run", str(tmp_path / "nothing"), "--out", str(tmp_path / "m")])


def test_export_leaves_a_full_model_alone(tmp_path, tiny_model):
    """``export --out weights`` rewrote model.json without the detectors', search vectors' and banks' entries
    (their files stayed, unnamed, and were no longer loaded)."""
    import json
    import shutil

    from pipelines.export import main as export

    model = shutil.copytree(tiny_model, tmp_path / "model")  # the fixture is shared by the session's tests
    manifest = json.loads((model / "model.json").read_text())
    (model / "model.json").write_text(json.dumps({**manifest, "vse": {"file": "vse.safetensors"}}))
    before = (model / "model.json").read_text()
    with pytest.raises(SystemExit, match=r"holds a full model \(vse\); a stage-1 export would drop them"):
        export(["--run", str(tmp_path / "run"), "--out", str(model)])
    assert (model / "model.json").read_text() == before
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "pipelines.train", "--out", str(model), "--epochs", "1"],
                          capture_output=True, text=True, timeout=120)  # stage 1's own export: refused before training
    assert done.returncode == 1 and "holds a full model (vse)" in done.stderr and "Traceback" not in done.stderr


def test_training_jobs_refuse_an_out_folder_they_could_not_write_before_any_work(tmp_path, monkeypatch):
    """An unwritable --out (or a file's name) was found only when the job exported, after hours of training."""
    import os
    import subprocess
    import sys

    from pipelines.common import out_folder

    (tmp_path / "file").write_text("x")
    for job in ("train_video", "train", "train_vse", "export"):
        done = subprocess.run([sys.executable, "-m", f"pipelines.{job}", "--out", str(tmp_path / "file"),
                               "--run", str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and f"{tmp_path / 'file'}: not a folder" in done.stderr, (job, done.stderr)
    assert not (tmp_path / "run").exists()
    assert out_folder(str(tmp_path / "new" / "model")) == tmp_path / "new" / "model"  # made at the end
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as a folder of another user's
    with pytest.raises(Exception, match=f"cannot write in {tmp_path}"):
        out_folder(str(tmp_path / "new" / "model"))
