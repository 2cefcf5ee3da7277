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

from videos import make_video

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
