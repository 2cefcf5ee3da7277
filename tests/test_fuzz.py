"""Ten mutated clips through ``captioner batch --workers 2`` (``make fuzz`` runs 200 of real clips)."""

from __future__ import annotations

from pipelines.fuzz import MUTATIONS, make_mutants, run_batch
from videos import make_video


def test_ten_mutants_fail_cleanly_or_caption(tmp_path, tiny_model):
    sources = [make_video(tmp_path / "src" / "a.mp4", [("red", 2.0), ("checker", 2.0)]).path,
               make_video(tmp_path / "src" / "b.avi", [("blue", 2.0), ("stripes", 2.0)], seed=1).path]
    made = make_mutants(sources, 10, tmp_path / "videos", seed=14)
    assert len(made) == 10 and {m["mutation"] for m in made.values()} == set(MUTATIONS)
    figures = run_batch(tmp_path / "videos", tmp_path / "subs", tiny_model, workers=2, timeout=300,
                        extra=["--threads", "1", "--fps", "2"])
    assert figures["broken"] == [], figures
    assert figures["files"] == 10 and sum(figures["statuses"].values()) == 10
    assert figures["statuses"].get("failed", 0) >= 1  # a zeroed header or a cut file cannot all be read
