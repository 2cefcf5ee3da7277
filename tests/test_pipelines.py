"""The offline jobs in ``pipelines/``: their index is complete, and the cheap ones run.

The jobs themselves need ../shared/data and hours; these tests run what can run on
a tiny model and a generated clip, so that a job is not found broken only when
someone next needs its numbers.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

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
