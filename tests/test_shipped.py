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


def test_shipped_confidence_is_the_fitted_closeness_of_caption_and_picture(shipped):
    """A video caption's confidence is sigmoid(a + b x cos(its word vectors, the segment's vector))
    (``DecodingConfig.confidence_fit``: the words' mean probability hardly tells right from wrong);
    without the fit it is that mean probability again."""
    import dataclasses

    import numpy as np
    from videos import shot_frame

    from captioner.config import CaptionConfig
    from captioner.pipeline import Captioner
    from captioner.vse import decode_vector

    enc = shipped.encoder.encode([shot_frame(c, 0, (224, 224)) for c in ("green", "red")])
    a, b = CaptionConfig().decoding.confidence_fit
    for grid, probs in zip(enc.grid, enc.probs):
        cap = shipped.caption_features(grid, probs, video=True)
        cos = float(shipped.vse.caption_vectors([shipped.vocab.encode(cap.text)[1:-1]])[0] @ decode_vector(cap.vector))
        assert cap.confidence == pytest.approx(1 / (1 + np.exp(-(a + b * cos))), abs=0.02)
    plain = Captioner(dataclasses.replace(CaptionConfig(), decoding=dataclasses.replace(
        CaptionConfig().decoding, confidence_fit=None)))
    fitted = shipped.caption_features(enc.grid[0], enc.probs[0], video=True)
    unfitted = plain.caption_features(enc.grid[0], enc.probs[0], video=True)
    assert unfitted.text == fitted.text and 0.0 < unfitted.confidence < 1.0
    assert unfitted.confidence != pytest.approx(fitted.confidence, abs=1e-3)


def test_shipped_model_bans_the_words_that_lead_to_a_person_with_the_person_words(shipped):
    """The shipped grammar's before_person words reach the presence ban: with only the nouns banned, a clip without
    a person (by the presence head) was "a black and white photo of a young little talking"."""
    before = json.loads((DEFAULT_WEIGHTS_DIR / "model.json").read_text())["grammar"]["before_person"]
    assert "young" in before
    banned = {shipped.vocab.itos[i] for i in shipped._absent_words.person_ids}
    assert set(before) <= banned and {"woman", "blonde"} <= banned and "dog" not in banned
