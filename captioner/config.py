"""Every default of the tool lives here, in frozen dataclasses.

Frozen so a configuration can be shared between threads and worker processes
without anyone mutating it underneath the others; change one with
``dataclasses.replace``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _shipped_weights() -> Path:
    """The shipped decoder: inside the installed package (a wheel), else ``weights/`` beside a checkout."""
    package = Path(__file__).resolve().parent
    installed = package / "_model"
    return installed if (installed / "model.json").is_file() else package.parent / "weights"


#: The folder that holds the shipped decoder (``weights/`` at the repository root, ``captioner/_model`` in a wheel).
DEFAULT_WEIGHTS_DIR = _shipped_weights()

#: Video file extensions the batch command looks for.
VIDEO_EXTENSIONS = (
    ".mp4", ".m4v", ".mkv", ".avi", ".mov", ".webm", ".mpg", ".mpeg",
    ".wmv", ".flv", ".ts", ".mts", ".m2ts", ".3gp", ".ogv",
)

#: Image file extensions ``captioner image`` accepts inside folders.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class EncoderConfig:
    """The frozen image encoder. Lite0 is the default: see weights/README.md for the table."""

    name: str = "efficientnet-lite0"
    image_size: int = 224
    batch_size: int = 16
    # "auto": ONNX Runtime when installed (7.1 vs 20.5 ms/frame, pipelines.encoder_table; same features,
    # see tests/test_encoder.py), else torch; "torch" is the reference path.
    backend: str = "auto"
    # ONNX Runtime runs an int8 copy (encoder 2x faster) when captioner/data ships activation
    # ranges for the encoder. Off: its first version fell under a Flickr8k test target line
    # (BLEU-4 20.74 < 20.83; weights/README.md), and the default was decided on that.
    int8: bool = False
    # The official Lite preprocessing, (x - 127) / 128 on 0..255 pixels, written as 0..1
    # fractions. On coco-val2017-mini it gave more confident, more often right ImageNet
    # labels than ImageNet mean/std (e.g. "refrigerator" vs "file" for a kitchen).
    mean: tuple[float, float, float] = (127.0 / 255, 127.0 / 255, 127.0 / 255)
    std: tuple[float, float, float] = (128.0 / 255, 128.0 / 255, 128.0 / 255)


@dataclass(frozen=True)
class DecoderConfig:
    """Shape of the attention LSTM decoder (stored with the weights)."""

    feature_dim: int = 1280
    embed_dim: int = 512
    hidden_dim: int = 512
    attention_dim: int = 512
    dropout: float = 0.5
    vocab_size: int = 0  # filled in from the vocabulary at training time
    # ImageNet concept words the decoder attends over and may copy (0 = a plain
    # Flickr8k decoder; see decoder.py and concepts.concept_inputs)
    concept_slots: int = 0
    # how many of those slots hold words of the visual concept detectors learnt from
    # captions (detect.py), most probable first; the rest hold ImageNet words. 0 = ImageNet only.
    detector_slots: int = 0


@dataclass(frozen=True)
class DecodingConfig:
    """How captions are searched for."""

    beam_size: int = 5  # beam 5 beat 3 on Flickr8k dev: BLEU-4 20.7 vs 20.0 (weights/README.md)
    max_length: int = 20
    length_penalty: float = 0.7  # score / len**alpha; 0 = raw log-prob, 1 = mean log-prob
    no_repeat_ngram: int = 2  # block any repeated bigram ("combing combing" is impossible)
    # Concept decoders: weight of the concepts-only expert mixed into each word's score
    # (decoder.CaptionDecoder.beam); 0 = picture and concepts together only. Chosen per
    # input kind on validation data (weights/README.md): photos on Flickr8k dev (0.5
    # cost 4 BLEU-4 there), video on the MSR-VTT validation clips (0.5: METEOR 14.1 vs 11.9).
    concept_weight: float = 0.0
    video_concept_weight: float = 0.5
    # Consult that expert only when the top concept reaches this probability. Off (0):
    # with weak concepts the expert falls back to its text prior ("a man is playing a
    # guitar" on 17 of the 43 real clips), but a 0.5 gate only swapped that for the
    # Flickr8k prior ("a man and a woman are sitting on a bench"; guitar on 9 clips) and
    # lowered MSR-VTT validation METEOR 14.14 -> 11.98 (weights/README.md).
    concept_min_prob: float = 0.0


@dataclass(frozen=True)
class GroundingConfig:
    """Open vocabulary: use the encoder's ImageNet concepts in captions (see grounding.py)."""

    enabled: bool = True
    min_prob: float = 0.5  # summed class probability a concept word needs before it is used


@dataclass(frozen=True)
class SamplingConfig:
    """Which frames of a video are looked at."""

    fps: float = 1.0
    max_frames_per_segment: int = 8  # frames the decoder attends over per segment
    fast: bool = False  # decode key frames only (PyAV): much faster, one sample per key-frame interval
    window_frames: int = 64  # sampled frames buffered before finished segments are captioned (flat memory)


@dataclass(frozen=True)
class SegmentConfig:
    """How sampled frames are grouped into cues."""

    shot_threshold: float = 0.25  # cosine distance between pooled features that marks a cut
    max_segment: float = 8.0  # seconds; a long shot is split so it still gets several cues
    min_duration: float = 1.0  # seconds; shorter cues are merged into a neighbour
    stable_threshold: float = 0.02  # cosine distance under which neighbouring segments share one caption (0 = off)


@dataclass(frozen=True)
class OutputConfig:
    """Subtitle files (whisper's conventions)."""

    formats: tuple[str, ...] = ("srt",)
    max_line_width: int = 42
    max_line_count: int = 2
    # reading speed: a cue stays up at least len(text) / this many seconds (subtitle style
    # guides ask for 17-20 characters per second for adults); 0 = no limit
    max_chars_per_second: float = 20.0


@dataclass(frozen=True)
class ReviewConfig:
    """The HTML review page (``-f html``, review.py) and the data a run keeps for it."""

    # keep one small JPEG per segment while the video is read (no second decode): the
    # frames squashed to the encoder's size stay referenced while their window is
    # buffered (~150 KB each, ~10 MB for a 64-frame window), and one per segment is
    # resized and JPEG-encoded (~1.5 ms). The CLI keeps them only for -f html.
    thumbnails: bool = True
    thumbnail_width: int = 160  # a thumbnail fits in this box, the video's aspect ratio kept
    thumbnail_height: int = 120
    jpeg_quality: int = 70  # a 160x90 thumbnail of real footage is 3-6 KB
    concept_words: int = 5  # top ImageNet concept words kept per cue (what the decoder attends over)
    # a cue whose confidence (geometric-mean word probability) is below this is marked
    # "check" on the page: the lowest quarter of the shipped model's cues on the 18 MSVD
    # clips (10 of 36, all ten wrong or garbled; quartiles 0.316 / 0.363 / 0.386). Higher
    # ones can be wrong too: the scale is narrow and only loosely tied to correctness.
    low_confidence: float = 0.32


@dataclass(frozen=True)
class SearchConfig:
    """``captioner search`` (find.py): how cues are ranked against a query.

    A cue's score is ``(1 - concept_weight) * cos(query, caption) + concept_weight *
    cos(query, caption + concept words) + word_weight * BM25 / its maximum``; the
    weights were chosen on the MSR-VTT validation videos (pipelines/retrieval.py, max over
    a video's cues; 195 of the 244 videos captioned): the caption + concept words sentence
    alone gave R@5 17.4 % (caption alone 11.3, half and half 13.8); BM25 added nothing
    that held (R@5 within one or two queries either way), so it is off (its scorer stays).
    """

    results: int = 10  # hits shown (-n)
    concept_words: int = 3  # concept words of a cue added to its caption for the second embedding and BM25
    concept_weight: float = 1.0
    word_weight: float = 0.0
    bm25_k1: float = 1.2
    bm25_b: float = 0.75


@dataclass(frozen=True)
class CaptionConfig:
    """Everything ``Captioner`` needs, in one value."""

    model_dir: Path = DEFAULT_WEIGHTS_DIR
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoding: DecodingConfig = field(default_factory=DecodingConfig)
    grounding: GroundingConfig = field(default_factory=GroundingConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    segments: SegmentConfig = field(default_factory=SegmentConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    review: ReviewConfig = field(default_factory=ReviewConfig)
    threads: int = 0  # compute threads of encoder and decoder; 0 = encoder one per CPU, decoder 1


def usable_cpus() -> int:
    """The CPUs this process may run on: what ``threads = 0`` and ``--workers`` default to.

    Logical CPUs allowed by the affinity mask (a container or ``taskset`` may allow
    fewer than the machine has); torch's own default counts physical cores instead.
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)
