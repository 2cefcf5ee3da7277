"""One way from options to a configuration (config.configure), for every command and pipelines.evaluate."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from captioner.config import CaptionConfig, configure


def test_no_options_is_the_defaults_and_none_keeps_a_value():
    assert configure() == CaptionConfig()
    base = configure(beam_size=2, fps=3.0)
    assert configure(base, beam_size=None, fps=None) == base
    assert configure(base, threads=0).decoding.beam_size == 2


def test_options_and_their_relations():
    c = configure(model_dir="m", fps=2.0, fast=True, beam_size=1, length_penalty=0.5, concept_weight=0.3,
                  concepts=False, min_prob=0.7, max_segment=3.0, min_duration=5.0, shot_threshold=0.4,
                  formats=["srt", "html"], max_line_width=30, max_line_count=3, threads=1, int8=True)
    assert c.model_dir == Path("m") and (c.sampling.fps, c.sampling.fast) == (2.0, True)
    assert (c.decoding.beam_size, c.decoding.length_penalty) == (1, 0.5)
    assert c.decoding.concept_weight == c.decoding.video_concept_weight == 0.3  # photos and video alike
    assert (c.grounding.enabled, c.grounding.min_prob) == (False, 0.7)
    assert (c.segments.max_segment, c.segments.min_duration, c.segments.shot_threshold) == (3.0, 3.0, 0.4)
    assert c.output.formats == ("srt", "html") and (c.output.max_line_width, c.output.max_line_count) == (30, 3)
    assert c.review.thumbnails and c.threads == 1 and c.encoder.int8
    assert not configure(formats=("srt", "json")).review.thumbnails  # only the review page shows thumbnails
    assert configure(formats=None).review == CaptionConfig().review
    d = configure(rerank_weight=2.0, photo_rerank_weight=0.0).decoding  # video and photo weights apart
    assert (d.rerank_weight, d.photo_rerank_weight) == (2.0, 0.0)
    # max_segment 0 is "shots are not split", not a bound: min_duration 2 was turned into 0 (no merging) unsaid
    assert configure(min_duration=2.0, max_segment=0).segments.min_duration == 2.0


def test_a_shortest_cue_longer_than_the_longest_is_said(caplog):
    """--min-duration 10 with --max-segment 8 was lowered to 8 unsaid: one 0-8 s cue and nothing for the rest of a
    13 s clip, no word why (a tester)."""
    with caplog.at_level("WARNING", logger="captioner"):
        assert configure(min_duration=10.0, max_segment=8.0).segments.min_duration == 8.0
        assert configure(min_duration=2.0, max_segment=8.0).segments.min_duration == 2.0
        assert configure(max_segment=0.5).segments.min_duration == 0.5  # the default: not said
        assert configure(min_duration=1.0, max_segment=0.5).segments.min_duration == 0.5  # given: said
    assert [r.getMessage() for r in caplog.records] == [
        "the shortest cue (--min-duration, 10 s) is longer than the longest (--max-segment, 8 s): cues are at most 8 s",
        "the shortest cue (--min-duration, 1 s) is longer than the longest (--max-segment, 0.5 s): cues are at most "
        "0.5 s"]


def test_the_cli_says_a_given_min_duration_over_max_segment_and_not_its_default(monkeypatch, tmp_path):
    """--min-duration 1 --max-segment 0.5 was lowered unsaid: 1 s is the default, and the default was not told from
    a value given."""
    from clitools import cli

    import captioner.cli as cli_mod

    def stop(config):  # the configuration the command built; stop before loading a model
        raise SystemExit(0)

    monkeypatch.setattr(cli_mod, "_load", stop)
    video = tmp_path / "v.mp4"
    video.write_bytes(b"")
    said = cli("run", video, "--max-segment", "0.5", "--min-duration", "1").stderr
    assert "is longer than the longest (--max-segment, 0.5 s)" in said
    assert "longer than the longest" not in cli("run", video, "--max-segment", "0.5").stderr


def test_rerank_weight_options_reach_the_configuration_and_refuse_negatives(monkeypatch, tmp_path):
    from clitools import cli

    import captioner.cli as cli_mod

    seen = {}

    def stop(config):  # the configuration the command built; stop before loading a model
        seen["decoding"] = config.decoding
        raise SystemExit(0)

    monkeypatch.setattr(cli_mod, "_load", stop)
    photo = tmp_path / "p.jpg"
    photo.write_bytes(b"not read")
    assert cli("image", "--rerank-weight", "0", photo).exit_code == 0
    assert seen["decoding"].photo_rerank_weight == 0.0
    assert seen["decoding"].rerank_weight == CaptionConfig().decoding.rerank_weight  # video's untouched
    bad = cli("image", "--rerank-weight", "-1", photo)
    assert bad.exit_code == 2 and "rerank-weight" in bad.stderr
    bad = cli("run", "--rerank-weight", "-1", photo)
    assert bad.exit_code == 2 and "rerank-weight" in bad.stderr


def test_evaluate_options_take_the_same_path(monkeypatch, tmp_path):
    import pipelines.evaluate as evaluate

    seen = []

    class Stop(Exception):
        pass

    def fake_captioner(config):
        seen.append(config)
        raise Stop

    monkeypatch.setattr(evaluate, "Captioner", fake_captioner)
    monkeypatch.setattr(evaluate, "check_set", lambda name: {})  # the data's own checks (a checkout without data: CI)
    monkeypatch.setattr(evaluate.torch, "set_num_threads", lambda n: None)
    monkeypatch.setattr(evaluate.logging, "basicConfig", lambda **kw: None)
    for argv, want in [
        ([], configure(model_dir="weights")),
        (["--beam-size", "1", "--no-grounding", "--int8", "--concept-weight", "0.2", "--min-prob", "0.6",
          "--length-penalty", "0.9"],
         configure(model_dir="weights", beam_size=1, concepts=False, int8=True, concept_weight=0.2, min_prob=0.6,
                   length_penalty=0.9)),
    ]:
        monkeypatch.setattr(sys, "argv", ["evaluate", *argv])
        with pytest.raises(Stop):
            evaluate.main()
        assert seen[-1] == want


def test_evaluate_says_which_features_to_extract_when_a_set_is_not_cached(tmp_path, monkeypatch):
    """pipelines.evaluate on a machine whose cache lacks a set's features: one line naming the command, no traceback."""
    from types import SimpleNamespace

    import pipelines.evaluate as evaluate
    import pipelines.extract_features as extract_features

    monkeypatch.setattr(extract_features, "feature_dir", lambda encoder: tmp_path)
    cap = SimpleNamespace(encoder=SimpleNamespace(precision="float32"),
                          model_info=SimpleNamespace(encoder="efficientnet-lite0"))
    with pytest.raises(SystemExit, match=r"^error: no cached efficientnet-lite0 features of coco in .*; run python -m "
                                         r"pipelines.extract_features --set coco --encoder efficientnet-lite0$"):
        evaluate.caption_cached(cap, "coco", ["a.jpg"])


@pytest.mark.parametrize("make, message", [
    (lambda c: c.DecodingConfig(beam_size=0), "DecodingConfig.beam_size must be a whole number >= 1, got 0"),
    (lambda c: c.DecodingConfig(max_length=1), "DecodingConfig.max_length must be a whole number from 2 to 100, got 1"),
    # the LSTM has no positional limit: 10**9 searched on for ever
    (lambda c: c.DecodingConfig(max_length=10**9), "DecodingConfig.max_length must be a whole number from 2 to 100"),
    # an unknown style failed only at the first caption, a capital letter too
    (lambda c: c.DecodingConfig(video_style="Video"), "DecodingConfig.video_style must be one of video, photo, web, "
                                                      "got 'Video'"),
    (lambda c: c.DecodingConfig(photo_style=None), "DecodingConfig.photo_style must be one of video, photo, web"),
    (lambda c: c.configure(style="vdieo"), "DecodingConfig.video_style must be one of video, photo, web, got 'vdieo'"),
    # 'ab' failed at the first caption; (nan, 1) gave every caption the confidence nan
    (lambda c: c.DecodingConfig(confidence_fit="ab"), "DecodingConfig.confidence_fit must be 2 numbers, each a finite "
                                                      "number, or None, got 'ab'"),
    (lambda c: c.DecodingConfig(confidence_fit=(float("nan"), 1.0)), "DecodingConfig.confidence_fit must be 2 numbers"),
    (lambda c: c.DecodingConfig(photo_confidence_fit=(1.0,)), "DecodingConfig.photo_confidence_fit must be 2 numbers"),
    (lambda c: c.DecodingConfig(grammar="no"), "DecodingConfig.grammar must be True or False, got 'no'"),
    (lambda c: c.EncoderConfig(mean=(0.5, 0.5)), "EncoderConfig.mean must be 3 numbers, each a finite number, got "
                                                 "(0.5, 0.5)"),
    (lambda c: c.EncoderConfig(std=(0.5, 0.0, 0.5)), "EncoderConfig.std must be 3 numbers, each a finite number > 0"),
    (lambda c: c.EncoderConfig(backend="ONNX"), "EncoderConfig.backend must be one of auto, torch, onnx, got 'ONNX'"),
    (lambda c: c.EncoderConfig(int8="no"), "EncoderConfig.int8 must be True or False, got 'no'"),
    (lambda c: c.EncoderConfig(name=""), "EncoderConfig.name must be a model name, got ''"),
    # 1e308 overflowed the sampling clock once the video was open
    (lambda c: c.SamplingConfig(fps=1e308), "SamplingConfig.fps must be a finite number > 0 and <= 1000, got 1e+308"),
    # "no" was true: every non-empty string is
    (lambda c: c.SamplingConfig(fast="no"), "SamplingConfig.fast must be True or False, got 'no'"),
    (lambda c: c.GroundingConfig(enabled="no"), "GroundingConfig.enabled must be True or False, got 'no'"),
    (lambda c: c.ReviewConfig(thumbnails="no"), "ReviewConfig.thumbnails must be True or False, got 'no'"),
    # a str was a sequence of formats ('s', 'r', 't')
    (lambda c: c.OutputConfig(formats="srt"), "OutputConfig.formats must be a tuple of format names, got 'srt'"),
    (lambda c: c.configure(formats=["srt", "sub"]), "unknown subtitle format 'sub'"),
    (lambda c: c.EncoderConfig(batch_size=0), "EncoderConfig.batch_size must be a whole number >= 1, got 0"),
    (lambda c: c.SamplingConfig(fps=float("inf")), "SamplingConfig.fps must be a finite number > 0 and <= 1000, got inf"),
    (lambda c: c.SamplingConfig(max_frames_per_segment=0),
     "SamplingConfig.max_frames_per_segment must be a whole number >= 1, got 0"),
    (lambda c: c.SegmentConfig(max_segment=-1), "SegmentConfig.max_segment must be 0 or a finite number >= 0.5, got -1"),
    # 1e-300 asked for ~1e300 pieces: MemoryError once the whole video was decoded
    (lambda c: c.SegmentConfig(max_segment=1e-300), "SegmentConfig.max_segment must be 0 or a finite number >= 0.5, got 1e-300"),
    (lambda c: c.OutputConfig(min_confidence=2), "OutputConfig.min_confidence must be a finite number >= 0 and <= 1"),
    (lambda c: c.ReviewConfig(jpeg_quality=500), "ReviewConfig.jpeg_quality must be a whole number from 0 to 100"),
    (lambda c: c.SearchConfig(results=0), "SearchConfig.results must be a whole number >= 1, got 0"),
    (lambda c: c.CaptionConfig(threads=1.5), "CaptionConfig.threads must be a whole number >= 0, got 1.5"),
    (lambda c: c.configure(fps=0), "SamplingConfig.fps must be a finite number > 0 and <= 1000, got 0"),
    (lambda c: c.configure(beam_size=True), "DecodingConfig.beam_size must be a whole number >= 1, got True"),
])
def test_a_value_outside_its_range_is_refused_when_the_configuration_is_made(make, message):
    """A library caller's beam_size=0 failed deep in the search (StopIteration), batch_size=0 as
    "range() arg 3 must not be zero", max_frames_per_segment=0 gave no cues and NumPy warnings on stderr."""
    import captioner.config as c

    with pytest.raises(ValueError) as caught:
        make(c)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize("make, message", [
    (lambda c: c.CaptionConfig(sampling={"fps": 2}), "CaptionConfig.sampling must be a SamplingConfig, got dict"),
    (lambda c: c.CaptionConfig(decoding=None), "CaptionConfig.decoding must be a DecodingConfig, got NoneType"),
    (lambda c: c.CaptionConfig(model_dir=None), "CaptionConfig.model_dir must be a str or PathLike, got NoneType"),
    (lambda c: c.configure(formats=["srt", 1]), "configure's formats must be format names, got ['srt', 1]"),
])
def test_a_value_of_the_wrong_type_is_refused_when_the_configuration_is_made(make, message):
    """sampling={"fps": 2} was taken and failed at its first use ("'dict' object has no attribute 'fps'")."""
    import captioner.config as c

    with pytest.raises(TypeError) as caught:
        make(c)
    assert str(caught.value) == message


def test_formats_are_read_as_the_command_line_reads_them():
    """configure(formats="srt") gave the formats ('s', 'r', 't')."""
    assert configure(formats="srt").output.formats == ("srt",)
    assert configure(formats="SRT, vtt").output.formats == ("srt", "vtt")
    assert configure(formats=["vtt", "srt", "vtt"]).output.formats == ("vtt", "srt")


def test_numpy_numbers_are_numbers():
    import numpy as np

    from captioner.config import DecodingConfig, SamplingConfig

    assert DecodingConfig(beam_size=np.int64(3)).beam_size == 3 and SamplingConfig(fps=np.float32(2)).fps == 2


def test_an_unknown_style_or_a_folder_for_a_config_is_refused(tiny_model):
    from captioner.pipeline import Captioner

    with pytest.raises(ValueError, match="DecodingConfig.video_style must be one of video, photo, web, got 'vdieo'"):
        configure(model_dir=tiny_model, style="vdieo")  # it was refused only at the first caption
    with pytest.raises(TypeError, match="Captioner takes a CaptionConfig, got str"):
        Captioner(str(tiny_model))


def test_configure_names_a_base_or_model_folder_of_the_wrong_type():
    """configure(base={}) said "'dict' object has no attribute 'segments'", model_dir=3 "expected str, bytes or
    os.PathLike object, not int"."""
    from captioner.config import configure

    with pytest.raises(TypeError, match="configure's base must be a CaptionConfig, got dict"):
        configure({})
    with pytest.raises(TypeError, match="CaptionConfig.model_dir must be a folder's path, got 3"):
        configure(model_dir=3)


def test_an_empty_video_path_is_said_so():
    """caption_video("") named "." (Path("") is the current folder): ".: is a directory, not a video file"."""
    from captioner.errors import VideoError
    from captioner.video import open_video

    with pytest.raises(VideoError, match="^an empty path is no video file name$"):
        open_video("")


def test_numpy_booleans_are_flags():
    """np.False_ is named "bool" by NumPy 2: int8=np.bool_(False) was refused while NumPy counts were taken."""
    import numpy as np

    from captioner.config import configure

    config = configure(int8=np.bool_(False))
    assert config.encoder.int8 is False


def test_values_past_any_use_are_refused_where_the_config_is_made():
    """length_penalty 300 overflowed a float in the beam search (an OverflowError naming no field), a guide weight
    of 1e39 overflowed float32 (no cue, a NumPy warning on stderr), a thumbnail box of 10**9 px asked for 2 EB."""
    from captioner.config import DecodingConfig, ReviewConfig

    for field, value in (("length_penalty", 300.0), ("guide_weight", 1e39), ("rerank_weight", 1e7)):
        with pytest.raises(ValueError, match=f"DecodingConfig.{field} must be a finite number"):
            DecodingConfig(**{field: value})
    DecodingConfig(length_penalty=10.0, guide_weight=1e6)  # the bounds themselves are fine
    with pytest.raises(ValueError, match="ReviewConfig.thumbnail_width must be a whole number from 1 to 4096"):
        ReviewConfig(thumbnail_width=10**9)


def test_a_model_folder_given_as_text_is_a_path():
    """CaptionConfig(model_dir="weights") kept a str under its Path annotation: .name failed, and it was unequal
    to the same folder given as a Path."""
    from pathlib import Path

    from captioner.config import CaptionConfig

    config = CaptionConfig(model_dir="some/weights")
    assert config.model_dir == Path("some/weights") and config.model_dir.name == "weights"
    assert config == CaptionConfig(model_dir=Path("some/weights"))
