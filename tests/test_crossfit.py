"""Cross-fitted detector outputs (pipelines.crossfit_detectors) and the training jobs that read them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pipelines import train_video  # noqa: E402
from pipelines.crossfit_detectors import fold_of  # noqa: E402
from pipelines.train_detectors import average_precision, fit  # noqa: E402


def _pictures(n: int, rng: np.random.Generator, cells: int = 4, dim: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Pictures whose word 0 shows as feature 0 in one cell; word 1 never shows."""
    x = rng.normal(0, 0.3, (n, cells, dim)).astype(np.float16)
    y = np.zeros((n, 2), np.float32)
    y[: n // 2, 0] = 1
    x[: n // 2, 0, 0] += 3
    return x, y


def test_fit_learns_only_from_the_rows_it_is_given() -> None:
    rng = np.random.default_rng(0)
    x, y = _pictures(400, rng)
    xho, yho = _pictures(100, rng)
    # a fold of pictures whose labels contradict what they show: left out, it cannot mislead
    bad = np.arange(0, 400, 2)
    y_bad = y.copy()
    y_bad[bad, 0] = 1 - y_bad[bad, 0]
    good = np.setdiff1d(np.arange(400), bad)
    torch.manual_seed(0)
    det, _, _ = fit(x, y_bad, xho, yho, ["a", "b"], 8, 32, 0.05, np.random.default_rng(0), rows=good)
    assert average_precision(det.frame_probs(xho)[:, 0], yho[:, 0]) > 0.95
    torch.manual_seed(0)
    misled, _, _ = fit(x, y_bad, xho, yho, ["a", "b"], 8, 32, 0.05, np.random.default_rng(0))
    assert average_precision(misled.frame_probs(xho)[:, 0], yho[:, 0]) < 0.8


def test_a_videos_frames_share_one_fold_and_every_fold_is_used() -> None:
    frames = [f"video{v}/shot{s}_0_{i}.jpg" for v in range(200) for s in range(2) for i in range(3)]
    by_video: dict[str, set[int]] = {}
    for f in frames:
        by_video.setdefault(f.split("/")[0], set()).add(fold_of("msrvtt", f, 5))
    assert all(len(folds) == 1 for folds in by_video.values())
    assert set().union(*by_video.values()) == set(range(5))
    assert len({fold_of("flickr8k", f"{i}.jpg", 5) for i in range(50)}) == 5


def test_train_video_reads_given_detector_outputs_instead_of_running_detectors(tmp_path: Path, monkeypatch) -> None:
    feats = tmp_path / "features"
    feats.mkdir()
    names = ["p0.jpg", "p1.jpg", "p2.jpg"]
    np.save(feats / "toy_grid.npy", np.zeros((3, 49, 8), np.float16))
    np.save(feats / "toy_probs.npy", np.zeros((3, 1000), np.float16))
    given = tmp_path / "oof"
    given.mkdir()
    np.save(given / "toy_det.npy", np.array([[0.1, 0.9], [0.2, 0.8], [0.3, 0.7]], np.float16))
    monkeypatch.setattr(train_video, "feature_dir", lambda encoder: feats)
    monkeypatch.setattr(train_video, "feature_rows", lambda encoder, s: {n: i for i, n in enumerate(names)})

    class Refuse:  # the detectors must not run when outputs are given
        def frame_probs(self, grid: np.ndarray) -> np.ndarray:
            raise AssertionError("detectors ran")

    pics = train_video.Pictures("toy-encoder", detectors=Refuse(), outputs=given)
    assert pics.add("toy", ["p2.jpg", "p0.jpg"]) == [0, 1]
    pics.freeze()
    np.testing.assert_allclose(pics.det_all, [[0.3, 0.7], [0.1, 0.9]], atol=1e-3)
