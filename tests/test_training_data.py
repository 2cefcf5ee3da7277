"""Training data rules: no MSR-VTT val/test video and no demo clip ever reaches training."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.common import CACHE, DATA
from pipelines.prepare_data import _crop_letterbox, held_out_clips, msrvtt_ids, msrvtt_split


def test_official_split_boundaries():
    assert [msrvtt_split(f"video{n}") for n in (0, 6512, 6513, 7009, 7010, 9999)] == \
        ["train", "train", "val", "val", "test", "test"]
    with pytest.raises(ValueError):
        msrvtt_split("video10000")


def test_train_ids_exclude_val_test_and_demo_clips():
    ids = {f"video{n}" for n in (1, 24, 176, 6512, 6513, 7009, 7010, 9999)}
    got = msrvtt_ids("train", ids, held_out={"video24", "video176"})
    assert got == ["video1", "video6512"]
    assert msrvtt_ids("val", ids, held_out=set()) == ["video6513", "video7009"]


def test_caption_only_msrvtt_videos_are_frameless_train_videos():
    """train_video --msrvtt-text: captions of train videos without frames, never val/test or a demo clip."""
    from pipelines.train_video import frameless_train_ids

    caps = {f"video{n}": ["a caption"] for n in (1, 2, 24, 6512, 6513, 7010)}
    frames = {"video2": ["video2/f_0.jpg"]}
    assert frameless_train_ids(caps, frames, held={"video24"}) == ["video1", "video6512"]


@pytest.mark.skipif(not (DATA / "video" / "msrvtt" / "clips").is_dir(), reason="needs ../shared/data")
def test_the_demo_clips_are_held_out():
    held = held_out_clips()
    assert {"video24", "video176", "video7202", "video9908"} <= held and len(held) == 25


@pytest.mark.parametrize("manifest", sorted((CACHE / "runs").glob("*/msrvtt_train_ids.txt")), ids=str)
def test_written_training_manifests_hold_train_ids_only(manifest: Path):
    """Every MSR-VTT training manifest a run wrote (.cache/runs/*/msrvtt_train_ids.txt)."""
    ids = manifest.read_text().split()
    assert ids, "empty manifest"
    assert {msrvtt_split(i) for i in ids} == {"train"}
    assert not set(ids) & held_out_clips()


@pytest.mark.parametrize("manifest", sorted((CACHE / "runs").glob("*/flickr8k_train_ids.txt")), ids=str)
def test_written_photo_manifests_hold_flickr8k_train_only(manifest: Path):
    """Every Flickr8k training manifest a run wrote (the photo bank: .cache/runs/*/flickr8k_train_ids.txt):
    no dev photo (model selection) and no test photo (the reported scores)."""
    from pipelines.common import flickr_split

    ids = manifest.read_text().split()
    assert ids, "empty manifest"
    assert not set(ids) & (set(flickr_split("dev")) | set(flickr_split("test")))
    assert set(ids) <= set(flickr_split("train"))


def test_letterbox_bars_are_cut_off():
    import numpy as np

    img = np.full((256, 256, 3), 255, np.uint8)
    img[:, 53:203] = 0  # a 612x1000 portrait letterboxed into 256x256: 150 px wide content... roughly
    crop = _crop_letterbox(img, 612, 1044)
    assert crop.shape[0] == 256 and abs(crop.shape[1] - 150) <= 1 and crop.mean() < 5
