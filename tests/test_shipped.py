"""The decoder shipped in weights/ loads (checksum verified) and captions a picture."""

from __future__ import annotations

import json

import pytest

from captioner.config import DEFAULT_WEIGHTS_DIR
from captioner.weights import load_model, sha256_file


@pytest.fixture(scope="module")
def shipped():
    from captioner.pipeline import Captioner

    return Captioner()


def test_shipped_checksum_matches_manifest():
    manifest = json.loads((DEFAULT_WEIGHTS_DIR / "model.json").read_text())
    assert sha256_file(DEFAULT_WEIGHTS_DIR / "decoder.safetensors") == manifest["sha256"]
    decoder, vocab, info = load_model(DEFAULT_WEIGHTS_DIR)
    assert info.encoder == "efficientnet-lite0"
    assert len(vocab) == decoder.config.vocab_size > 1000
    assert (DEFAULT_WEIGHTS_DIR / "decoder.safetensors").stat().st_size < 50 * 2**20


def test_shipped_model_captions_an_image(shipped):
    from videos import shot_frame

    import numpy as np

    rng = np.random.default_rng(0)
    image = shot_frame("green", 0, (224, 224))
    noisy = np.clip(image.astype(int) + rng.integers(-40, 40, image.shape), 0, 255).astype(np.uint8)
    for cap in shipped.caption_images([image, noisy]):
        words = cap.text.split()
        assert len(words) >= 3, cap.text
        assert "<unk>" not in cap.text
        assert all(a != b for a, b in zip(words, words[1:]))
        assert 0.0 < cap.confidence <= 1.0
