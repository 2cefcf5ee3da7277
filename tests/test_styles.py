"""Style tokens: a caption starts with "<video>" or "<photo>", chosen by what is captioned."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from captioner.config import CaptionConfig, DecoderConfig, DecodingConfig
from captioner.decoder import CaptionDecoder
from captioner.vocab import SPECIALS, STYLES, Vocabulary
from captioner.weights import save_model

from conftest import TINY_WORDS


def test_vocabulary_style_tokens():
    plain = Vocabulary.build(["a dog runs"], min_count=1)
    assert plain.start_for("video") == plain.start_id and plain.style_ids == ()
    styled = Vocabulary(plain.itos + tuple(f"<{s}>" for s in STYLES))
    video, photo, web = (styled.index(f"<{s}>") for s in STYLES)
    assert styled.style_ids == (video, photo, web)
    assert styled.start_for("video") == video and styled.start_for("photo") == photo
    assert styled.start_for(None) == styled.start_id
    for unknown in ("cartoon", "end", "start"):  # a typo gave other captions unsaid; "end" began with <end>
        with pytest.raises(ValueError, match=f"unknown caption style '{unknown}'"):
            styled.start_for(unknown)
    assert styled.encode("a dog", style="web")[0] == web
    assert styled.encode("a dog")[0] == styled.start_id
    assert styled.decode([video, styled.index("dog"), styled.end_id]) == "dog"  # a style token is no word
    assert styled.words("<video> a dog") == ["video", "a", "dog"]  # text can never produce one


@pytest.fixture(scope="module")
def styled_model(tmp_path_factory) -> Path:
    """A tiny decoder whose style tokens lead to different first words."""
    torch.manual_seed(3)
    base = Vocabulary.build([" ".join(TINY_WORDS)], min_count=1)
    vocab = Vocabulary(base.itos + tuple(f"<{s}>" for s in STYLES))
    config = DecoderConfig(feature_dim=1280, embed_dim=32, hidden_dim=32, attention_dim=32, dropout=0.0,
                           vocab_size=len(vocab))
    model = CaptionDecoder(config)
    with torch.no_grad():
        model.fc.weight.mul_(6.0)
        model.fc.bias[vocab.end_id] += 1.0
        lstm_in = model.lstm.weight_ih[:, :32]
        cat, dog = vocab.index("cat"), vocab.index("dog")
        # each style token drives the first word: <video> -> "dog", <photo> -> "cat"
        model.embed.weight[vocab.index("<video>")] = 0
        model.embed.weight[vocab.index("<photo>")] = 0
        h_dog, h_cat = model.fc.weight[dog], model.fc.weight[cat]
        for token, target in (("<video>", h_dog - h_cat), ("<photo>", h_cat - h_dog)):
            # an input that pushes the LSTM's output gate and cell towards `target`
            model.embed.weight[vocab.index(token)] = 40 * torch.linalg.lstsq(lstm_in, torch.cat(
                [torch.zeros(32), torch.zeros(32), target.sign() * 3, torch.full((32,), 3.0)]).unsqueeze(1)).solution[:, 0]
    return save_model(tmp_path_factory.mktemp("styled") / "m", model.state_dict(), vocab, config, name="tiny-styled",
                      encoder="efficientnet-lite0")


def _captioner(model_dir: Path, **decoding):
    from captioner.pipeline import Captioner

    return Captioner(replace(CaptionConfig(), model_dir=model_dir,
                             decoding=replace(DecodingConfig(), beam_size=1, **decoding)))


def _captions(model_dir: Path, feats: list[np.ndarray], video: bool, **decoding) -> list[str]:
    return [c.text for c in _captioner(model_dir, **decoding).caption_batch([(f, None) for f in feats], video=video)]


def test_video_and_photo_captions_start_with_their_own_style(styled_model):
    rng = np.random.default_rng(0)
    feats = [rng.normal(size=(49, 1280)).astype(np.float32) for _ in range(4)]
    video = _captions(styled_model, feats, video=True)
    photo = _captions(styled_model, feats, video=False)
    assert video != photo  # the style token decides something
    # the start token is the configured style's, whatever the input kind
    assert _captions(styled_model, feats, video=True, video_style="photo") == photo
    assert _captions(styled_model, feats, video=False, photo_style="video") == video
    assert all(video + photo)


def test_style_tokens_are_never_said(styled_model):
    cap = _captioner(styled_model)
    assert set(cap.vocab.style_ids) == {cap.vocab.index(f"<{s}>") for s in STYLES}
    assert set(cap.vocab.style_ids) <= set(cap._banned)


def test_configure_style_sets_both_kinds():
    from captioner.config import configure

    d = configure().decoding
    assert (d.video_style, d.photo_style) == ("video", "photo")
    assert configure(style="auto").decoding == d
    p = configure(style="photo").decoding
    assert (p.video_style, p.photo_style) == ("photo", "photo")


def test_cli_style_option_reaches_the_captions(styled_model, tmp_path):
    """`captioner image --style video` captions a photo in the video style."""
    import cv2
    from click.testing import CliRunner

    from captioner.cli import main

    rng = np.random.default_rng(1)
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        cv2.imwrite(str(paths[-1]), rng.integers(0, 255, size=(64, 64, 3), dtype=np.uint8))
    runner = CliRunner()
    args = ["image", *map(str, paths), "--model", str(styled_model), "--beam-size", "1", "-q"]
    auto = runner.invoke(main, args)
    video = runner.invoke(main, args + ["--style", "video"])
    photo = runner.invoke(main, args + ["--style", "photo"])
    assert auto.exit_code == video.exit_code == photo.exit_code == 0, auto.output
    assert auto.output == photo.output and video.output != photo.output


def test_info_names_the_styles(styled_model, tiny_model):
    from click.testing import CliRunner

    from captioner.cli import main

    styled = CliRunner().invoke(main, ["info", "--model", str(styled_model)])
    plain = CliRunner().invoke(main, ["info", "--model", str(tiny_model)])
    assert styled.exit_code == plain.exit_code == 0
    assert "writes in styles video, photo (--style)" in styled.output
    assert "styles" not in plain.output
    words = len(Vocabulary.build([" ".join(TINY_WORDS)], min_count=1)) - len(SPECIALS)
    assert f"vocabulary {words} words" in styled.output  # neither <pad>/<start>/<end>/<unk> nor style tokens are words
    assert f"vocabulary {words} words" in plain.output
