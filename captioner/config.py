"""Every default of the tool lives here, in frozen dataclasses.

Frozen so a configuration can be shared between threads and worker processes
without anyone mutating it underneath the others; change one with
``dataclasses.replace``, or from command-line style options with ``configure``
(what ``captioner run``, ``batch``, ``image`` and ``pipelines.evaluate`` all use).

The comments say why a default is what it is; the measurements behind them, and
what else was tried, are in the model card (weights/README.md, "Why the defaults").
"""

from __future__ import annotations

import logging

import math
import numbers
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from .vocab import STYLES


def _shipped_weights() -> Path:
    """The shipped decoder: inside the installed package (a wheel), else ``weights/`` beside a checkout."""
    package = Path(__file__).resolve().parent
    installed = package / "_model"
    return installed if (installed / "model.json").is_file() else package.parent / "weights"


#: The folder that holds the shipped decoder (``weights/`` at the repository root, ``captioner/_model`` in a wheel).
DEFAULT_WEIGHTS_DIR = _shipped_weights()

#: Video file extensions the batch command looks for: the common containers, those of DVDs (VOB), camcorders (DV,
#: TOD) and broadcast (MXF) that archives hold, and raw H.264/HEVC/MPEG-2 streams (all of which ``run`` captions).
#: Not ``.mod`` (an SD camcorder's, but also tracker music: a music folder's every file would fail).
VIDEO_EXTENSIONS = (
    ".mp4", ".m4v", ".mkv", ".avi", ".mov", ".webm", ".mpg", ".mpeg",
    ".wmv", ".flv", ".ts", ".mts", ".m2ts", ".3gp", ".ogv",
    ".vob", ".dv", ".mxf", ".asf", ".f4v", ".3g2", ".qt", ".divx", ".tod", ".m2v",
    ".h264", ".264", ".hevc", ".265",
)

#: Image file extensions ``captioner image`` collects from folders: the photo formats OpenCV decodes.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jfif", ".png", ".webp", ".avif", ".bmp", ".tif", ".tiff", ".gif")


def _number(low: float = -math.inf, high: float = math.inf, *, above: bool = False) -> tuple[Callable[[Any], bool], str]:
    """A rule for ``_checked``: a finite real number within [low, high] (above ``low`` with ``above``)."""
    def ok(v: Any) -> bool:
        return (isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
                and (v > low if above else v >= low) and v <= high)
    bounds = [f"> {low:g}" if above else f">= {low:g}"] if low > -math.inf else []
    bounds += [f"<= {high:g}"] if high < math.inf else []
    return ok, "a finite number" + (" " + " and ".join(bounds) if bounds else "")


def is_whole(v: Any, low: float = -math.inf, high: float = math.inf) -> bool:
    """Whether ``v`` is a whole number within [low, high] (not a bool: True is no count), as the library's
    arguments that are counts must be (``SearchConfig.results``, ``Searcher.search``'s n, ``run_batch``'s workers)."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool) and low <= v <= high


def _count(low: int, high: float = math.inf) -> tuple[Callable[[Any], bool], str]:
    """A rule for ``_checked``: a whole number within [low, high]."""
    def ok(v: Any) -> bool:
        return is_whole(v, low, high)
    return ok, f"a whole number >= {low}" if high == math.inf else f"a whole number from {low} to {high:g}"


def _flag() -> tuple[Callable[[Any], bool], str]:
    """A rule for ``_checked``: True or False (NumPy's too); "no" was taken as true, it is not empty."""
    # NumPy 2 names its type "bool" (np.False_ was refused), NumPy 1 "bool_"
    return (lambda v: isinstance(v, bool) or type(v).__module__ == "numpy" and type(v).__name__ in ("bool_", "bool")), \
        "True or False"


def _numbers(n: int, low: float = -math.inf, *, above: bool = False,
             optional: bool = False) -> tuple[Callable[[Any], bool], str]:
    """A rule for ``_checked``: ``n`` finite real numbers (a tuple or list) each as ``_number(low, above=)``
    takes, or None with ``optional``; a wrong count failed late, in NumPy's broadcasting, or not at all."""
    one, need = _number(low, above=above)

    def ok(v: Any) -> bool:
        if v is None:
            return optional
        return isinstance(v, (tuple, list)) and len(v) == n and all(one(x) for x in v)
    need = f"{n} numbers, each {need}" + (", or None" if optional else "")
    return ok, need


def _one_of(choices: tuple[str, ...]) -> tuple[Callable[[Any], bool], str]:
    """A rule for ``_checked``: one of ``choices``."""
    return (lambda v: isinstance(v, str) and v in choices), "one of " + ", ".join(choices)


def _checked(config: Any, **rules: tuple[Callable[[Any], bool], str]) -> None:
    """Refuse a configuration value outside its rule when the configuration is made, with the field's
    name: a library caller's beam_size=0 or batch_size=0 failed much later, deep inside the work
    (StopIteration, "range() arg 3 must not be zero"), and max_frames_per_segment=0 gave no cues unsaid."""
    for name, (ok, need) in rules.items():
        value = getattr(config, name)
        if not ok(value):
            raise ValueError(f"{type(config).__name__}.{name} must be {need}, got {value!r}")
        if type(value).__module__ == "numpy" and hasattr(value, "item"):
            # NumPy's scalars pass the rules but not every library: threads=np.int64(1) failed in threadpoolctl
            # at every caption_video, and a report with it in JSON's encoder
            object.__setattr__(config, name, value.item())


def _typed(config: Any, **types: type | tuple[type, ...]) -> None:
    """Refuse a field of ``config`` that is not of its type, with the field's name: a dict for a
    ``SamplingConfig`` was taken, and failed at its first use ("'dict' object has no attribute 'fps'")."""
    for name, kind in types.items():
        value = getattr(config, name)
        if not isinstance(value, kind):
            need = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise TypeError(f"{type(config).__name__}.{name} must be a {need}, got {type(value).__name__}")


@dataclass(frozen=True)
class EncoderConfig:
    """The frozen image encoder.

    A model folder names the encoder its decoder was trained on (model.json), and a run
    uses that one whatever ``name`` says: Lite0 is only the default for training. It
    was chosen for speed on a CPU at equal caption quality.
    """

    name: str = "efficientnet-lite0"
    image_size: int = 224
    batch_size: int = 16
    # "auto": ONNX Runtime when installed (same features, ~3x faster), else torch; "torch" is
    # the reference path.
    backend: str = "auto"
    # ONNX Runtime runs an int8 copy (encoder 2x faster) when captioner/data ships activation
    # ranges for the encoder. Off: it changes captions slightly, and its first version scored
    # under a quality target line.
    int8: bool = False
    # The official Lite preprocessing, (x - 127) / 128 on 0..255 pixels, written as 0..1
    # fractions: more confident, more often right ImageNet labels than ImageNet mean/std.
    mean: tuple[float, float, float] = (127.0 / 255, 127.0 / 255, 127.0 / 255)
    std: tuple[float, float, float] = (128.0 / 255, 128.0 / 255, 128.0 / 255)

    def __post_init__(self) -> None:
        _checked(self, name=(lambda v: isinstance(v, str) and v != "", "a model name"), image_size=_count(32),
                 batch_size=_count(1), backend=_one_of(("auto", "torch", "onnx")), int8=_flag(),
                 mean=_numbers(3), std=_numbers(3, 0, above=True))


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

    def __post_init__(self) -> None:
        _checked(self, feature_dim=_count(1), embed_dim=_count(1), hidden_dim=_count(1), attention_dim=_count(1),
                 dropout=_number(0, 1), vocab_size=_count(0), concept_slots=_count(0), detector_slots=_count(0))


#: Longest ``DecodingConfig.max_length`` (tokens, ``<end>`` included). The LSTM decoder has no
#: positional limit, so 10**9 was taken and the search ran on for ever on a caption that never
#: ends; the training captions have at most ~70 words, and a subtitle line a few dozen.
MAX_LENGTH = 100

#: Highest ``SamplingConfig.fps``. Above the frame rate every frame is a sample anyway, and no frame
#: rate the reader believes is over 500 (video.MAX_PLAUSIBLE_FPS); 1e308 overflowed the sampling
#: clock (time x fps) into an OverflowError once the video was open.
MAX_FPS = 1000.0


#: The most a decoding weight may be, far past any use: a guide weight of 1e39 overflowed float32's range (no cue, a
#: NumPy warning on stderr); and length_penalty 300 overflowed a float in the beam search (bound 10).
MAX_WEIGHT = 1e6


@dataclass(frozen=True)
class DecodingConfig:
    """How captions are searched for."""

    # 1 = greedy: the same rules and confidence (search.py), faster, blander captions; a wider
    # beam finds likelier captions, 5 better than 3 on validation photos
    beam_size: int = 5
    max_length: int = 20  # tokens, <end> included: at most 19 words (at most MAX_LENGTH)
    length_penalty: float = 0.7  # score / len**alpha; 0 = raw log-prob (short captions win), 1 = mean log-prob
    no_repeat_ngram: int = 2  # block any repeated bigram ("combing combing" is impossible)
    # Concept decoders: weight of the concepts-only expert mixed into each word's score
    # (decoder_np.NumpyDecoder.start); 0 = picture and concepts together only. Per input
    # kind, each chosen on validation data of its kind: photos read better without it,
    # video gains from it (the picture expert learnt mostly from photos).
    concept_weight: float = 0.0
    video_concept_weight: float = 0.5
    # Consult that expert only when the top concept reaches this probability. Off (0):
    # with weak concepts the expert falls back to its text prior, but a gate only swapped
    # that for the photo prior, and scored lower on validation video.
    concept_min_prob: float = 0.0
    # The style a caption is written in, per input kind, for a decoder trained with style
    # tokens (vocab.STYLES; ignored by one without): video reads like MSR-VTT/MSVD ("a man is
    # cooking in a kitchen"), photos like Flickr8k/COCO. "web" (alt text) is learnt, never the default.
    video_style: str = "video"
    photo_style: str = "photo"
    # The model's word lists (model.json "grammar", pipelines.grammar) rule what may follow
    # "is"/"are" (a copied concept noun never fills the verb slot: "a woman is green onions")
    # and "a"/"an" (no plural or mass noun: "a sunglasses", "a makeup"). Models without the
    # lists are unaffected. (Its "before_person" list goes with the person ban, not with this.)
    grammar: bool = True
    # Video: among the captions a beam search finished, take the one with the best
    # score + rerank_weight x cos(caption, the segment's search vector) (vse.py; models whose
    # search vectors carry word vectors). The likeliest caption is often the decoder's
    # fallback ("a person is playing a video game"); the vector knows what the segment
    # looks like. 0 = the likeliest. Chosen on MSR-VTT val (the model card).
    rerank_weight: float = 5.0
    # Video, models with a caption bank (consensus.py): the captions of the ``consensus_videos``
    # training videos nearest a segment's vector are scored by how much they agree with one
    # another; the ``consensus_candidates`` best join the beam's captions (scored under the
    # decoder for the segment's frames), and every candidate gains consensus_weight x its
    # agreement with them. 0 = off. Chosen on MSR-VTT val (the model card, eighth update):
    # CIDEr 34.4 -> 42.7; weights 3 to 8 score alike, the least lets the decoder say most.
    consensus_weight: float = 3.0
    consensus_videos: int = 15
    consensus_candidates: int = 8
    # The same for photos, by the map's own vector (no caption memory; not written anywhere).
    # Chosen on Flickr8k dev: 3 (5 and 10 lost BLEU-4).
    photo_rerank_weight: float = 3.0
    # The same consensus for photos, with a model's photo bank (the Flickr8k training photos'
    # captions, keyed by their map vectors; consensus.py): chosen on Flickr8k dev (the model card,
    # ninth update): CIDEr 51.3 -> 54.9; weights 3 to 8 and 10 to 50 photos score alike.
    photo_consensus_weight: float = 5.0
    photo_consensus_photos: int = 25
    photo_consensus_candidates: int = 8
    # The picture's vector can also steer the search itself: every step, each word's score gains
    # guide_weight x (its word vector . the picture's vector), so beams that say what is seen
    # survive to be chosen from. Off (0): 1.0 gained on MSR-VTT val's metrics but wrote
    # "a group of people dance dancing", "a boy in a library shirt" on the validation clips
    # (the model card, fifth update). Photos: off too (Flickr8k dev).
    guide_weight: float = 0.0
    photo_guide_weight: float = 0.0
    # A caption's confidence, where the model has word vectors: sigmoid(a + b x cos(its word
    # vectors' mean, the picture's vector)), the chance that it says something the picture shows
    # (fitted on the 244 MSR-VTT val videos: CIDEr-D >= 10 against their ~19 references; rank
    # correlation with CIDEr-D 0.48, five-fold cross-validated, against 0.11 for the words' mean
    # probability, which a model without word vectors still reports). None: always that mean.
    confidence_fit: tuple[float, float] | None = (-3.66, 8.06)
    # the same for photos, whose vector is the map's own (a scale of its own): fitted on 400 Flickr8k
    # dev photos (rank correlation 0.46 against 0.29 for the mean probability)
    photo_confidence_fit: tuple[float, float] | None = (-2.29, 8.73)

    def __post_init__(self) -> None:
        weight = _number(0, MAX_WEIGHT)
        fit = _numbers(2, optional=True)
        _checked(self, beam_size=_count(1), max_length=_count(2, MAX_LENGTH), length_penalty=_number(0, 10),
                 no_repeat_ngram=_count(0), video_style=_one_of(STYLES), photo_style=_one_of(STYLES), grammar=_flag(),
                 confidence_fit=fit, photo_confidence_fit=fit,
                 concept_weight=_number(0, 1), video_concept_weight=_number(0, 1), concept_min_prob=_number(0, 1),
                 rerank_weight=weight, consensus_weight=weight, consensus_videos=_count(1),
                 consensus_candidates=_count(0), photo_rerank_weight=weight, photo_consensus_weight=weight,
                 photo_consensus_photos=_count(1), photo_consensus_candidates=_count(0), guide_weight=weight,
                 photo_guide_weight=weight)


@dataclass(frozen=True)
class GroundingConfig:
    """Open vocabulary: use the encoder's ImageNet concepts in captions (see grounding.py)."""

    enabled: bool = True
    # summed class probability a concept word needs before it is required: an unsure
    # concept must not invent objects
    min_prob: float = 0.5

    def __post_init__(self) -> None:
        _checked(self, enabled=_flag(), min_prob=_number(0, 1))


@dataclass(frozen=True)
class SamplingConfig:
    """Which frames of a video are looked at."""

    fps: float = 1.0
    max_frames_per_segment: int = 8  # frames the decoder attends over per segment (as many as it trained on)
    # A segment's caption also sees the frames sampled this many seconds before and after it: the
    # decoder learnt from frames spread over a whole video, and a shot of a second or two alone says
    # little. MSR-VTT val (CLI protocol) CIDEr / METEOR: 0 s 31.55 / 24.38; 3 s 34.39 / 25.30;
    # 5 s 35.21 / 25.25; 10 s 34.62 / 25.12 (the least that gains: a cue stays about its own shot)
    context_seconds: float = 3.0
    fast: bool = False  # decode key frames only (PyAV): much faster, one sample per key-frame interval
    window_frames: int = 64  # sampled frames buffered before finished segments are captioned (flat memory)
    # The stretch of the video to caption, in seconds of the video (cue times stay the video's, so the
    # subtitles play with the whole film): one scene of a film, a clip without its leader. 0 / None:
    # from the start, to the end. ``end`` at least a millisecond (subtitles' precision) after ``start``.
    start: float = 0.0
    end: float | None = None

    def __post_init__(self) -> None:
        _checked(self, fps=_number(0, MAX_FPS, above=True), max_frames_per_segment=_count(1),
                 context_seconds=_number(0), fast=_flag(), window_frames=_count(2), start=_number(0))
        if self.end is not None:
            _checked(self, end=_number(self.start + 0.001 - 1e-9))  # (0.008 + 0.001 > 0.009 in floats)


#: Shortest ``SegmentConfig.max_segment`` (seconds) other than 0, the least ``--max-segment`` takes.
MIN_SEGMENT = 0.5


@dataclass(frozen=True)
class SegmentConfig:
    """How sampled frames are grouped into cues."""

    shot_threshold: float = 0.25  # cosine distance between pooled features that marks a cut
    max_segment: float = 8.0  # seconds; a long shot is split so it still gets several cues
    min_duration: float = 1.0  # seconds; shorter cues are merged into a neighbour
    # cosine distance under which neighbouring segments share one caption (0 = off): the pieces
    # of a split static shot otherwise flicker between equally likely sentences
    stable_threshold: float = 0.02

    def __post_init__(self) -> None:
        # max_segment: 0 (shots are not split) or at least the CLI's half second; 1e-300 asked for
        # ~1e300 pieces and ran out of memory after the whole video was decoded
        finite = _number(0)[0]
        _checked(self, shot_threshold=_number(0, 2),
                 max_segment=(lambda v: finite(v) and (v == 0 or v >= MIN_SEGMENT), f"0 or a finite number >= {MIN_SEGMENT:g}"),
                 min_duration=_number(0), stable_threshold=_number(0, 2))


@dataclass(frozen=True)
class OutputConfig:
    """Subtitle files (whisper's conventions)."""

    formats: tuple[str, ...] = ("srt",)
    max_line_width: int = 42
    max_line_count: int = 2
    # reading speed: a cue stays up at least len(text) / this many seconds (subtitle style
    # guides ask for 17-20 characters per second for adults); 0 = no limit
    max_chars_per_second: float = 20.0
    # video cues whose confidence (DecodingConfig.confidence_fit) is below this are left out (whisper's
    # thresholds for unsure segments): 0.5 drops the captions more likely wrong than right; 0 keeps all
    min_confidence: float = 0.0

    def __post_init__(self) -> None:
        # a str is a sequence of one-letter "formats" ('s', 'r', 't'); names are checked where files are
        # written (writers.parse_formats: the writers import this module), and by ``configure``
        _checked(self, formats=(lambda v: isinstance(v, tuple) and all(isinstance(f, str) for f in v),
                                "a tuple of format names"),
                 max_line_width=_count(1), max_line_count=_count(1), max_chars_per_second=_number(0),
                 min_confidence=_number(0, 1))


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
    # a cue whose confidence (DecodingConfig.confidence_fit) is below this is marked "check" on
    # the page: more likely wrong than right; about the lowest quarter of MSR-VTT val captions
    low_confidence: float = 0.5

    def __post_init__(self) -> None:
        # (a box of 10**9 px asked for 2 EB of memory; 4096 is past any thumbnail)
        _checked(self, thumbnails=_flag(), thumbnail_width=_count(1, 4096), thumbnail_height=_count(1, 4096),
                 jpeg_quality=_count(0, 100),
                 concept_words=_count(0), low_confidence=_number(0, 1))


@dataclass(frozen=True)
class SearchConfig:
    """``captioner search`` (find.py): how cues are ranked against a query.

    A cue's score is ``(1 - visual_weight) * text + visual_weight * picture + word_weight *
    BM25 / its maximum``, where text is ``(1 - concept_weight) * cos(query, caption) +
    concept_weight * cos(query, caption + concept words)`` and picture the query's cosine
    with the cue's visual vector (vse.py), ``context_weight`` of it its neighbourhood's
    (find.cue_scores; cues without vectors: text alone). The weights were chosen on the
    MSR-VTT validation videos (pipelines/retrieval.py): the caption + concept words sentence
    is the best text; BM25 added nothing that held, so it is off (its scorer stays).
    """

    results: int = 10  # hits shown (-n)
    concept_words: int = 3  # concept words of a cue added to its caption for the second embedding and BM25
    concept_weight: float = 1.0
    word_weight: float = 0.0
    # share of the picture similarity (query vs the cue's visual vector, vse.py) in a cue's score;
    # 0.9 chosen on MSR-VTT val (pipelines/retrieval.py --grid): R@5 41.4 against 24.6 for captions alone
    visual_weight: float = 0.9
    # share, within the picture similarity, of the cue's neighbourhood: the mean vector of its file's
    # cues within ``context_seconds`` (find.context_windows); an index records its window and is
    # rebuilt for another
    context_weight: float = 0.5
    context_seconds: float = 30.0
    bm25_k1: float = 1.2
    bm25_b: float = 0.75

    def __post_init__(self) -> None:
        _checked(self, results=_count(1), concept_words=_count(0), concept_weight=_number(0, 1), word_weight=_number(0),
                 visual_weight=_number(0, 1), context_weight=_number(0, 1), context_seconds=_number(0),
                 bm25_k1=_number(0), bm25_b=_number(0, 1))


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

    def __post_init__(self) -> None:
        _typed(self, model_dir=(str, os.PathLike), encoder=EncoderConfig, decoding=DecodingConfig,
               grounding=GroundingConfig, sampling=SamplingConfig, segments=SegmentConfig, output=OutputConfig,
               review=ReviewConfig)
        _checked(self, threads=_count(0))
        if not isinstance(self.model_dir, Path):  # a str stayed one (.name failed), unequal to the same folder's Path
            object.__setattr__(self, "model_dir", Path(self.model_dir))


def configure(base: CaptionConfig | None = None, *, model_dir: str | Path | None = None,
              fps: float | None = None, fast: bool | None = None, context: float | None = None,
              beam_size: int | None = None,
              length_penalty: float | None = None, concept_weight: float | None = None,
              concepts: bool | None = None, min_prob: float | None = None,
              max_segment: float | None = None, min_duration: float | None = None,
              shot_threshold: float | None = None, formats: str | tuple[str, ...] | list[str] | None = None,
              max_line_width: int | None = None, max_line_count: int | None = None,
              min_confidence: float | None = None,
              threads: int | None = None, int8: bool | None = None, style: str | None = None,
              start: float | None = None, end: float | None = None,
              rerank_weight: float | None = None, photo_rerank_weight: float | None = None,
              consensus_weight: float | None = None, photo_consensus_weight: float | None = None,
              guide_weight: float | None = None, photo_guide_weight: float | None = None) -> CaptionConfig:
    """``base`` (default: the defaults) with the given options set; None leaves a value as it is.

    The one way from options to a configuration, for ``captioner run``/``batch``/``image``
    and ``pipelines.evaluate`` (the options are named as on the command line).
    Relations between values are kept here: ``concept_weight`` sets photos' and video's
    weight alike, so does ``style`` ("auto" keeps each kind's own), ``min_duration`` never
    exceeds ``max_segment``, and thumbnails are kept
    only when ``formats`` include the review page (``html``), the one output that shows them.
    """
    c = base if base is not None else CaptionConfig()
    if not isinstance(c, CaptionConfig):  # a dict: "'dict' object has no attribute 'segments'"
        raise TypeError(f"configure's base must be a CaptionConfig, got {type(c).__name__}")
    if model_dir is not None and not isinstance(model_dir, (str, os.PathLike)):
        raise TypeError(f"CaptionConfig.model_dir must be a folder's path, got {model_dir!r}")
    if formats is not None:
        formats = _format_names(formats)

    def given(**values):
        return {k: v for k, v in values.items() if v is not None}

    segments = replace(c.segments, **given(max_segment=max_segment, min_duration=min_duration,
                                           shot_threshold=shot_threshold))
    if (min_duration is not None or max_segment is not None) and segments.max_segment > 0:  # 0: shots are not split
        # said when asked for (10 s with 8 s: one 8 s cue, the rest blank, also 1 s given with 0.5); the default 1 s
        # under --max-segment 0.5 is not (the CLI passes None for an option left at its default)
        if segments.min_duration > segments.max_segment and min_duration is not None:
            logging.getLogger("captioner").warning(
                "the shortest cue (--min-duration, %g s) is longer than the longest (--max-segment, %g s): "
                "cues are at most %g s",
                segments.min_duration, segments.max_segment, segments.max_segment)
        segments = replace(segments, min_duration=min(segments.min_duration, segments.max_segment))
    output = replace(c.output, **given(formats=formats,
                                       max_line_width=max_line_width, max_line_count=max_line_count,
                                       min_confidence=min_confidence))
    return replace(
        c,
        **given(model_dir=None if model_dir is None else Path(model_dir), threads=threads),
        encoder=replace(c.encoder, **given(int8=int8)),
        decoding=replace(c.decoding, **given(beam_size=beam_size, length_penalty=length_penalty, rerank_weight=rerank_weight,
                                             consensus_weight=consensus_weight,
                                             photo_consensus_weight=photo_consensus_weight,
                                             photo_rerank_weight=photo_rerank_weight, guide_weight=guide_weight,
                                             photo_guide_weight=photo_guide_weight,
                                             concept_weight=concept_weight, video_concept_weight=concept_weight,
                                             **({} if style in (None, "auto") else
                                                {"video_style": style, "photo_style": style}))),
        grounding=replace(c.grounding, **given(enabled=concepts, min_prob=min_prob)),
        sampling=replace(c.sampling, **given(fps=fps, fast=fast, context_seconds=context, start=start, end=end)),
        segments=segments,
        output=output,
        review=c.review if formats is None else replace(c.review, thumbnails="html" in output.formats),
    )


def _format_names(formats: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``configure``'s formats as the CLI's ``-f`` reads them (writers.parse_formats): "srt,vtt" or a
    list of names, known names only; a str was a sequence of one-letter formats ('s', 'r', 't')."""
    from .writers import parse_formats

    if isinstance(formats, str):
        formats = (formats,)
    if not all(isinstance(f, str) for f in formats):
        raise TypeError(f"configure's formats must be format names, got {formats!r}")
    return parse_formats(",".join(formats)) if formats else ()


def usable_cpus() -> int:
    """The CPUs this process may run on: what ``threads = 0`` and ``--workers`` default to.

    Logical CPUs allowed by the affinity mask (a container or ``taskset`` may allow
    fewer than the machine has); torch's own default counts physical cores instead.
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)
