"""The library's front door: frames -> features -> segments -> captions -> cues.

``Captioner`` loads the encoder and the decoder once and then captions any number
of videos or images. It never prints: it logs, and reports progress through an
optional callback so a CLI, a batch engine or a GUI can show it their own way.

    from captioner import Captioner
    cues = Captioner().caption_video("talk.mp4").cues
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import logging
import math
import os
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from .concepts import top_concepts
from .config import CaptionConfig, usable_cpus
from .cues import to_ms
from .errors import CaptionerError, VideoError
from .native import blas_limited
from .outputs import absolute, count_text, seconds_text
from .progress import Progress, ProgressCallback  # noqa: F401  (Progress: importable from here too)
from .review import Snapshot, encode_jpeg, shrink, snapshots_for, thumbnail_size
from .search import Hypothesis, OnceMap, once_groups, search_many
from .segment import StreamingSegmenter, Window
from .subtitles import Cue, layout_cues, merge_cues
from .vocab import fix_articles, follow_rules
from .video import DecodeStats, Frame, VideoInfo, open_video, prefetch, read_frames, sample_times_hint, within

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class Caption:
    text: str
    confidence: float
    # a concept decoder's inputs for this caption: the words it attended over (detected or
    # ImageNet concept words) with their probabilities, most probable first; () for a plain decoder
    concepts: tuple[tuple[str, float], ...] = ()
    # where the picture sits among sentences, for search (vse.encode_vector); "" for photos or a model without one
    vector: str = ""


@dataclass(frozen=True)
class VideoResult:
    """Everything a writer needs about one captioned video."""

    video: VideoInfo
    cues: list[Cue]
    frames_sampled: int
    duration: float
    model: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    # per segment: a thumbnail and the concept words the encoder saw (for the review page)
    snapshots: list[Snapshot] = field(default_factory=list)
    # (start, end) seconds when only a stretch of the video was captioned (``SamplingConfig.start``/``end``)
    span: tuple[float, float] | None = None
    # the video's absolute path when it was captioned: made absolute at ``metadata()`` time, a relative name
    # followed the caller's os.chdir since and the JSON named a file that was not there
    path: str = ""

    def cue_snapshots(self) -> list[Snapshot | None]:
        """For each cue, the snapshot of the segment it came from: its thumbnail and concept words."""
        return snapshots_for(self.cues, self.snapshots)

    def metadata(self) -> dict[str, Any]:
        """Metadata for the JSON writer."""
        return {
            "video": {
                # absolute, as README says the JSON records it: "b.mp4" named nothing to a search run elsewhere
                "path": self.path or str(absolute(self.video.path)), "width": self.video.width, "height": self.video.height,
                "fps": round(self.video.fps, 3), "duration": round(self.duration, 3),
                "frames_sampled": self.frames_sampled,
                # where the file's own clock starts, when not at 0: the review page plays the cues on a browser's clock
                **({"clock_start": round(self.video.clock_start, 3)} if self.video.clock_start > 0 else {}),
                **({} if self.span is None else {"captioned": [to_ms(t) / 1000 for t in self.span]}),  # as cues
            },
            "model": self.model,
        }


def _load_model_parts(load: Callable[[SimpleNamespace], None], m: SimpleNamespace) -> None:
    """``load(m)``, any failure a one-line ``ModelError``: a model.json edited by hand can hold values of
    any type, and what they break deep inside the loaders is the folder's fault, not a crash to show."""
    from .errors import CaptionerError, ModelError, first_line

    try:
        load(m)
    except CaptionerError:
        raise
    except Exception as exc:  # RecursionError included (a manifest nested 100,000 deep)
        log.debug("loading %s failed", m.config.model_dir, exc_info=True)
        reason = first_line(exc)
        raise ModelError(f"{m.config.model_dir}: the model does not load ({exc.__class__.__name__}"
                         + (f": {reason})" if reason else ")")) from None


def check_model(config: CaptionConfig) -> None:
    """Load every part of ``config.model_dir`` that a run loads except the encoder, every checksum
    verified (``captioner info``); ``ModelError`` if any part is missing, damaged or mismatched."""
    encoder = SimpleNamespace(config=config.encoder, feature_dim=None)  # no session, no export
    _load_model_parts(Captioner._load, SimpleNamespace(config=config, encoder=encoder))


def _check_features(feats: np.ndarray, index: int, dim: int) -> None:
    """Raise a ``ValueError`` that says what is expected unless ``feats`` are [N, ``dim``] finite vectors, N >= 1.

    Others went through to nonsense or to errors that named neither: NaN gave the caption '' with
    confidence nan, no vectors NumPy's RuntimeWarnings on stderr and a caption of nothing, one
    vector without its axis an IndexError deep in the decoder.
    """
    want = f"features {index}: expected an array of shape (vectors, {dim})"
    if feats.ndim != 2 or feats.shape[1] != dim:
        hint = "; one vector: feats[None]" if feats.shape == (dim,) else ""
        raise ValueError(f"{want}, got shape {feats.shape}{hint}")
    if not len(feats):
        raise ValueError(f"{want} with at least one vector, got none")
    if not np.isfinite(feats).all():
        raise ValueError(f"features {index}: must be finite numbers, got NaN or infinity")


def _image_list(images: Any) -> list[Any]:
    """``caption_images``'s images as a list: any iterable, or a stacked [B, H, W, 3] array.

    One image (an array) failed with NumPy's "truth value of an array ... is ambiguous", a
    generator with "has no len()".
    """
    if isinstance(images, np.ndarray) and images.ndim != 4:
        hint = "; one image: caption_images([image])" if images.ndim == 3 else ""
        raise ValueError(f"caption_images takes a list of images or a [batch, height, width, 3] array, got one "
                         f"{images.dtype} array of shape {images.shape}{hint}")
    if isinstance(images, (str, bytes)) or not isinstance(images, Iterable):
        raise TypeError(f"caption_images takes a list of images, got {type(images).__name__}")
    return list(images)


def _fresh(exc: Exception) -> Exception:
    """A new exception like ``exc`` (its type, message, cause, context and the loader's traceback), raised in its stead.

    Raising the one stored exception again and again added each call's frames to its traceback
    (``Captioner(wait=False)``: every failed use kept the frames, and their locals, of all before it).
    A raise prepends its frames to the traceback it is given without changing it, so the stored one stays.
    """
    import copy

    try:
        new = copy.copy(exc)
    except Exception:  # an exception class whose arguments do not rebuild it
        from .errors import ModelError

        new = ModelError(str(exc))
    # the context too: errors.out_of_memory reads it (a loader's MemoryError under "the model does not load")
    new.__cause__, new.__context__, new.__suppress_context__ = exc.__cause__, exc.__context__, exc.__suppress_context__
    return new.with_traceback(exc.__traceback__)


#: Seconds a fork waits for a Captioner(wait=False) still loading (a first run exports the encoder: seconds).
FORK_WAIT_S = 300.0


def _finish_loading_before_fork() -> None:
    """A fork (a multiprocessing pool) while a Captioner(wait=False) is loading waits for it: the loader thread is
    not in the child, which waited for the model for ever, and a child that loads again may find a lock the
    thread held (an import, ONNX Runtime's) held for ever. Not the loader itself (a subprocess it starts)."""
    me = threading.current_thread()
    try:
        for captioner in _loading_now():
            if captioner._loader is not me:
                captioner._loaded.wait(FORK_WAIT_S)
    except KeyboardInterrupt:  # an at-fork hook cannot raise (it was printed and dropped): raised after the fork
        import _thread

        _thread.interrupt_main()


def _loading_now() -> list["Captioner"]:
    """The Captioners loading now; a loader that finishes meanwhile changed the set under list() ("Set changed
    size during iteration")."""
    for _ in range(100):
        try:
            return list(_LOADING)
        except RuntimeError:
            continue
    return []


def _load_again_after_fork() -> None:
    """A child forked by the loader itself, or after FORK_WAIT_S: its model loads here again."""
    for captioner in _loading_now():
        if not captioner._loaded.is_set():
            captioner._start_loading()


_LOADING: "weakref.WeakSet[Captioner]" = weakref.WeakSet()  # those whose model is loading now
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_finish_loading_before_fork, after_in_child=_load_again_after_fork)


class Captioner:
    """Loads the model once; captions videos and images."""

    def __init__(self, config: CaptionConfig = CaptionConfig(), device: str = "cpu", *, wait: bool = True) -> None:
        """Load the model of ``config.model_dir``.

        The encoder is ready on return. The rest (checksum, decoder, detectors, search map,
        banks: ~0.5 s on 2 cores) loads in a background thread, beside which a video's first
        frames can already decode and encode: the decoder is not needed before the first
        window of segments. ``wait`` (the default) waits for it, so that every error in the
        weights is raised here; with ``wait=False`` the first use of what it loads raises it
        (``ModelError``), for a caller that treats that as fatal (``captioner run``).
        A folder that is no model, or names no encoder, fails here either way.
        """
        if not isinstance(config, CaptionConfig):  # Captioner("weights") failed later: no attribute 'threads'
            raise TypeError(f"Captioner takes a CaptionConfig, got {type(config).__name__}"
                            " (another model: Captioner(CaptionConfig(model_dir=...)))")
        from threadpoolctl import ThreadpoolController

        from .encoder import Encoder, input_size
        from .weights import complete_manifest

        if config.threads > usable_cpus():
            # More threads than CPUs only queue behind each other: on 2 CPUs a 10 s clip took 1.2 s with
            # --threads 2, 7.7 s with 4 and 48 s with 16.
            log.warning("--threads %d: this process may use %d CPU(s); using %d", config.threads,
                        usable_cpus(), usable_cpus())
            config = dataclasses.replace(config, threads=usable_cpus())
        self.config = config
        # The decoder's products are small ([beams, 512] x [512, vocab]): a second BLAS
        # thread gains little and, spinning, takes the core the video reader needs.
        # Limited only while decoding, so the caller's own NumPy keeps its threads.
        self._blas = ThreadpoolController()
        self._blas_threads = config.threads or 1
        encoder_name = complete_manifest(config.model_dir)[1]["encoder"]
        enc_cfg = config.encoder
        if enc_cfg.name != encoder_name:  # the model says which encoder it was trained on
            enc_cfg = dataclasses.replace(enc_cfg, name=encoder_name, image_size=input_size(encoder_name))
        self.encoder = Encoder(enc_cfg, device=device, threads=config.threads)
        self._load_error: Exception | None = None
        self._start_loading()
        if wait:
            self.wait()

    def _start_loading(self) -> None:
        # not a daemon: the interpreter waits for it at exit, since a process that exits while
        # the thread is inside OpenCV's thread pool is aborted ("terminate called ...")
        self._loaded = threading.Event()
        self._loader = threading.Thread(target=self._load_in_background, name="captioner-load")
        _LOADING.add(self)
        self._loader.start()

    def __reduce__(self) -> Any:
        # a spawn worker given one failed in multiprocessing with "Can't pickle local object 'CDLL...'"
        raise TypeError("a Captioner cannot be pickled (it holds the loaded model): make one in each worker "
                        "process, or pass its CaptionConfig")

    def __copy__(self) -> "Captioner":
        """A shallow copy (the same model; its parts may be replaced on the copy alone), once the model is loaded."""
        self.wait()
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new

    def wait(self) -> None:
        """Return once the model has loaded; raise what loading it raised (again at each call).

        Waits on an event, not ``Thread.join``: a Ctrl-C or SIGTERM that interrupted the join (Python
        3.11) marked the still-running loader as stopped, the interpreter then exited without waiting
        for it, and the process aborted ("terminate called without an active exception", exit 134)
        while the loader was inside native code. The interpreter still waits for it at exit.
        """
        self._loaded.wait()
        if self._load_error is not None:
            raise _fresh(self._load_error)

    def __getattr__(self, name: str) -> Any:
        # Reached only for an attribute not set (yet): those the background load sets wait for it.
        if name.startswith(("_load", "__")):
            raise AttributeError(name)
        self.wait()
        try:
            return self.__dict__[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}") from None

    def _load_in_background(self) -> None:
        try:
            m = SimpleNamespace(config=self.config, encoder=self.encoder)
            _load_model_parts(self._load, m)
            # published at once, so that no caller sees a half-loaded model (a decoder not yet grounded, say)
            self.__dict__.update({k: v for k, v in vars(m).items() if k not in ("config", "encoder")})
        except Exception as exc:  # kept for the caller's thread (wait, __getattr__)
            self._load_error = exc
        finally:
            self._loaded.set()
            _LOADING.discard(self)

    @staticmethod
    def _load(m: SimpleNamespace) -> None:
        """Everything but the encoder (``__init__``) into ``m``: runs in the background thread."""
        from .weights import load_runtime_model

        # the NumPy decoder: a run never imports torch once the encoder's ONNX export exists
        m.decoder, m.vocab, m.model_info = load_runtime_model(m.config.model_dir)
        config, enc_cfg = m.config, m.encoder.config  # enc_cfg: the encoder as the model named it
        if m.encoder.feature_dim is not None and m.encoder.feature_dim != m.decoder.config.feature_dim:
            from .errors import ModelError

            raise ModelError(f"{m.model_info.path}: decoder expects {m.decoder.config.feature_dim}-d features, "
                             f"{enc_cfg.name} gives {m.encoder.feature_dim}")
        # tokens the decoder may never emit: padding, <start>, <unk> (an unknown word is no caption), style tokens
        m._banned: tuple[int, ...] = (m.vocab.pad_id, m.vocab.start_id, m.vocab.unk_id,
                                         *m.vocab.style_ids)
        m.grounder = None
        if config.grounding.enabled:
            from .grounding import Grounder

            m.grounder = Grounder(m.decoder, m.vocab, config.grounding.min_prob)
            m.decoder, m.vocab = m.grounder.decoder, m.grounder.vocab
            # transferred concept words appear only when a confident concept requires them
            m._banned = m._banned + m.grounder.novel_ids

        # visual concept detectors learnt from captions (detect.py): concept slots and person presence
        from .detect import AbsentWords, load_detectors

        m.detectors = load_detectors(m.model_info.path, {"detectors": m.model_info.detectors})
        m._absent_words = (AbsentWords.build(m.detectors, m.vocab.index, m.vocab.unk_id,
                                             m.model_info.grammar.get("before_person", ()))
                              if m.detectors is not None else None)

        # where a segment sits among sentences, written into JSON for `captioner search` (vse.py)
        from .vse import load_vse

        m.vse = load_vse(m.model_info.path, {"vse": m.model_info.vse})
        # the training videos' captions, for the candidates their neighbours agree on (consensus.py)
        m.bank = None
        m.photo_bank = None
        if m.model_info.bank and m.vse is not None and m.vse.memory is not None:
            from .consensus import load_bank

            m.bank = load_bank(m.model_info.path, {"bank": m.model_info.bank},
                                   m.model_info.decoder.vocab_size)
            if m.bank.videos != len(m.vse.memory.keys):
                from .errors import ModelError

                raise ModelError(f"{m.model_info.path}: the caption bank has {m.bank.videos} videos, "
                                 f"the caption memory {len(m.vse.memory.keys)}")
        if m.model_info.photo_bank and m.vse is not None:
            from .consensus import load_bank

            m.photo_bank = load_bank(m.model_info.path, {"photo_bank": m.model_info.photo_bank},
                                        m.model_info.decoder.vocab_size, photos=True)
            if m.photo_bank.keys.shape[1] != m.vse.dim:
                from .errors import ModelError

                raise ModelError(f"{m.model_info.path}: the photo bank's keys are {m.photo_bank.keys.shape[1]}-d, "
                                 f"the map's vectors {m.vse.dim}-d")

        # a concept decoder copies object words; none of them is said twice ("a loaf of loaf"), nor in another
        # form or by another name ("a man is riding a bike on a bicycle", "on top of a mountain in the mountains")
        m._once = OnceMap()
        if m.decoder.config.concept_slots:
            from .concepts import class_words
            from .grounding import same_thing, word_forms

            # each name in its plain forms ("skiing" is not a second ski)
            groups = [{m.vocab.index(f) for n in same_thing(w) for f in word_forms(n, derived=False)} - {m.vocab.unk_id}
                      for w, _ in class_words()]
            m._once = once_groups([g for g in groups if g])

        # the verb slot: after "is"/"are" only the words the model's training text puts there
        m._follow = follow_rules(m.vocab, m.model_info.grammar) if config.decoding.grammar else None

    # -- captions from features ------------------------------------------------------
    def caption_features(self, feats: Any, probs: Any = None, *, video: bool = False) -> Caption:
        """Caption one set of feature vectors [N, C] (one photo's grid, or a segment's frames stacked).

        ``probs`` ([1000] or [frames, 1000] ImageNet probabilities) lets a confident
        concept word into the caption (see grounding.py). ``video`` selects the video
        decoding settings (``DecodingConfig.video_concept_weight``). Arrays of any
        float type (NumPy, or CPU torch tensors). Features that are not [N, C] with N >= 1
        and C the decoder's, or not finite, raise ``ValueError``.
        """
        return self.caption_batch([(feats, probs)], video=video)[0]

    def caption_batch(self, items: Sequence[tuple[Any, Any]], *, video: bool = False,
                      threads: int | None = None) -> list[Caption]:
        """Caption several (features, probs) at once, as ``caption_features`` would one by one.

        The searches (greedy or beam) run in lock step so that each decoder step is one matrix
        product over all their beams (the step is memory-bound: see decoder_np.py). Among the
        captions a beam search finished, the one closest to the picture's vector wins where the
        model has word vectors (``_rerank``; ``DecodingConfig.rerank_weight`` / ``photo_rerank_weight``).
        ``threads``: BLAS threads for this call (default: one, or ``config.threads``).
        """
        with blas_limited(threads or self._blas_threads, self._blas):
            feats = [np.asarray(f, dtype=np.float32) for f, _ in items]
            for i, f in enumerate(feats):
                _check_features(f, i, self.decoder.config.feature_dim)
            probs = [None if p is None else np.asarray(p, dtype=np.float32) for _, p in items]
            detected = [self._detect(f) for f in feats]
            concepts = [self._concept_inputs(d, p) for d, p in zip(detected, probs)]
            absent = [self._absent(d, f) for d, f in zip(detected, feats)]
            banned = [self._banned + a for a in absent]
            beam_size = self.config.decoding.beam_size  # 1: greedy, under the same rules
            # video segments' vectors go into the JSON; a photo's chooses its caption (closeness, its neighbours'
            # captions) and rates it: made at --rerank-weight 0 too, which turned --consensus off unsaid and put
            # the confidence on another scale (the words' mean probability)
            d_cfg = self.config.decoding
            weight = d_cfg.rerank_weight if video else d_cfg.photo_rerank_weight
            guide = d_cfg.guide_weight if video else d_cfg.photo_guide_weight
            vectors = [self._segment_vector(f, d, memory=video) for f, d in zip(feats, detected)]
            priors = [self._word_prior(v, guide) for v in vectors]
            states = [self._start(f, c, b, p, video) for f, c, b, p in zip(feats, concepts, banned, priors)]
            found = self._search([(f, c, b, (), p) for f, c, b, p in zip(feats, concepts, banned, priors)],
                                 video, beam_size, states)
            grounded: dict[int, tuple[tuple[int, ...], Hypothesis]] = {}  # retried: (required ids, the free hypothesis)
            if self.grounder is not None:
                # a confident concept the caption does not say: search again with it required
                again = []
                for i, (p, hyp) in enumerate(zip(probs, found)):
                    concept = self.grounder.concept(p) if p is not None else None
                    rule = self.grounder.constraints(concept, hyp.tokens) if concept is not None else None
                    if rule is not None:
                        required, extra_banned = rule
                        banned = tuple(t for t in self._banned + absent[i] if t not in set(required)) + extra_banned
                        again.append((i, concept.word, (feats[i], concepts[i], banned, required, priors[i])))
                # placing a required word needs a beam search (a constraint group besides the free beam)
                retry = self._search([a for _, _, a in again], video, max(2, beam_size))
                for (i, word, (_, _, _, required, _)), hyp in zip(again, retry):
                    # not where it names the thing twice ("riding a motor cycle on a moped"): the free caption stays
                    if set(required).issubset(hyp.tokens) and not self.grounder.says(word, hyp.tokens, besides=True):
                        grounded[i] = (required, found[i])
                        found[i] = hyp
            consensus: list[dict[tuple[int, ...], float] | None] = [None] * len(found)
            agree = d_cfg.consensus_weight if video else d_cfg.photo_consensus_weight
            bank_keys = self._bank_for(video)
            if bank_keys is not None and agree > 0:
                found, consensus = self._neighbour_captions(found, vectors, states, bank_keys, agree, weight, video)
            chosen = [self._rerank(h, v, weight, c, agree) for h, v, c in zip(found, vectors, consensus)]
            # a grounded caption whose rerank chose a candidate without the required word (a consensus caption
            # the free one had beaten: "two dogs running in the dirt" for a bear) says neither the concept nor
            # the free answer: what the free caption's pool chooses is returned instead, as without grounding
            lost = [i for i, (required, _) in grounded.items() if not set(required).issubset(chosen[i].tokens)]
            free = [grounded[i][1] for i in lost]
            free_consensus: list[dict[tuple[int, ...], float] | None] = [None] * len(lost)
            if lost and bank_keys is not None and agree > 0:
                free, free_consensus = self._neighbour_captions(free, [vectors[i] for i in lost], [states[i] for i in lost],
                                                                bank_keys, agree, weight, video)
            for i, h, c in zip(lost, free, free_consensus):
                chosen[i] = self._rerank(h, vectors[i], weight, c, agree)
        from .vse import encode_vector

        return [Caption(fix_articles(self.vocab.decode(h.tokens)), round(self._confidence(h, v, video), 4), self._concept_words(c),
                        "" if v is None or not video else encode_vector(v))
                for h, c, v in zip(chosen, concepts, vectors)]

    def _segment_vector(self, feats: np.ndarray, detected: np.ndarray | None, memory: bool = True) -> np.ndarray | None:
        """A segment's visual vector (stacked cells -> each frame's mean cell -> vse); None without one.

        ``memory=False``: the map's own vector. Photos use it: the caption memory holds what
        people said of training *videos*, and it chose photo captions worse on Flickr8k dev.
        """
        from .detect import CELLS

        if self.vse is None or detected is None:
            return None
        pooled = feats.reshape(-1, CELLS, feats.shape[1]).mean(1)
        return self.vse.embed(pooled, detected) if memory else self.vse.embed_map(pooled, detected)

    def _word_prior(self, vector: np.ndarray | None, weight: float) -> np.ndarray | None:
        """[V] ``weight`` x (each word's vector . the picture's vector), added to every step's scores
        (``NumpyDecoder.start``'s ``bias``): the search explores captions whose words fit what is seen,
        where ``_rerank`` can only choose among what it finished. None without a vector or word vectors."""
        if vector is None or weight <= 0 or self.vse is None or self.vse.words is None:
            return None
        prior = np.zeros(len(self.vocab), np.float32)
        n = min(len(prior), len(self.vse.words))
        prior[:n] = weight * (self.vse.words[:n] @ vector)
        return prior

    def _rerank(self, hyp: Hypothesis, vector: np.ndarray | None, weight: float,
                consensus: dict[tuple[int, ...], float] | None = None, agree: float = 0.0) -> Hypothesis:
        """The finished caption (``hyp`` or one of its alternatives) whose score plus
        ``weight`` x cos(caption, segment vector) (with word vectors) plus
        ``agree`` x its consensus with the neighbours' captions
        (``consensus``, by tokens) is highest; ``hyp`` without a vector or with neither term."""
        if vector is None or not hyp.alternatives:
            return hyp
        cands = (hyp, *hyp.alternatives)
        total = self._closeness([h.tokens for h in cands], vector, weight)
        if consensus and agree > 0:
            total += agree * np.array([consensus.get(h.tokens, 0.0) for h in cands])
        if not total.any():
            return hyp
        return cands[int(np.argmax([h.score + float(t) for h, t in zip(cands, total)]))]

    def _confidence(self, hyp: Hypothesis, vector: np.ndarray | None, video: bool) -> float:
        """How likely the caption is to say something the picture shows (``DecodingConfig.confidence_fit``,
        photos ``photo_confidence_fit``).

        The decoder's own word probabilities hardly tell right captions from wrong ones (its
        likeliest fallbacks are said with the most confidence); how close the caption's words sit
        to the picture's vector does. Without a vector or word vectors: the words' mean probability."""
        d = self.config.decoding
        fit = d.confidence_fit if video else d.photo_confidence_fit
        if fit is None or vector is None or self.vse is None or self.vse.words is None:
            return hyp.confidence
        cos = float(self.vse.caption_vectors([hyp.tokens])[0] @ vector)
        return float(1.0 / (1.0 + np.exp(-(fit[0] + fit[1] * cos))))

    def _closeness(self, captions: Sequence[Sequence[int]], vector: np.ndarray, weight: float) -> np.ndarray:
        """``weight`` x cos(caption, segment vector) for each caption; zeros without word vectors or weight."""
        if weight <= 0 or self.vse is None or self.vse.words is None:
            return np.zeros(len(captions))
        return weight * (self.vse.caption_vectors(captions) @ vector).astype(np.float64)

    def _bank_for(self, video: bool) -> tuple[Any, np.ndarray] | None:
        """(caption bank, its neighbours' keys) for video segments or photos; None where the model has none.

        Video: the training videos' captions, keyed by the caption memory's keys. Photos: the
        training photos' captions, keyed by their map vectors (the vector a photo is given)."""
        if video:
            return None if self.bank is None else (self.bank, self.vse.memory.keys)
        return None if self.photo_bank is None else (self.photo_bank, self.photo_bank.keys)

    def _neighbour_captions(self, found: list[Hypothesis], vectors: Sequence[np.ndarray | None],
                            states: Sequence[Any], bank_keys: tuple[Any, np.ndarray], agree: float, rerank: float,
                            video: bool = True) -> tuple[list[Hypothesis], list[dict[tuple[int, ...], float] | None]]:
        """Each video segment's (``video``) or photo's beam captions joined by the training captions its neighbours agree on.

        For a segment with a vector: the captions of the ``consensus_videos`` training videos
        nearest it in the caption memory (consensus.py), each scored by its agreement with the
        others; the ``consensus_candidates`` best become candidates (a photo: the ``photo_consensus_*``
        settings and the photo bank: ``bank_keys``, from ``_bank_for``), scored under the decoder from
        the state the segment's beam search started from (``states``: its frames, concepts, bans and
        word prior), so they compete with the beam's captions on its terms. Returns the hypotheses with
        the new candidates among their alternatives, and each candidate's consensus by tokens.
        ``agree`` and ``rerank``: the weights ``_rerank`` will choose by, for the floor below.
        """
        from .search import run_searches, score_steps

        d = self.config.decoding
        bank, keys = bank_keys
        start = self.vocab.start_for(d.video_style if video else d.photo_style)
        neighbours, candidates = ((d.consensus_videos, d.consensus_candidates) if video else
                                  (d.photo_consensus_photos, d.photo_consensus_candidates))
        jobs, agreement = [], [None] * len(found)
        for i, (hyp, vector) in enumerate(zip(found, vectors)):
            if vector is None:
                continue
            sims = keys @ vector
            k = min(neighbours, len(sims))
            near = np.argpartition(-sims, k - 1)[:k] if k < len(sims) else np.arange(len(sims))
            pool = bank.captions_of(sorted(int(v) for v in near))
            own = [h.tokens for h in (hyp, *hyp.alternatives)]
            pool_score, own_score = bank.consensus(pool, own)
            scores = dict(zip(own, own_score.tolist()))
            picked: list[tuple[int, ...]] = []
            for j in np.argsort(-pool_score, kind="stable"):
                if pool[j] not in scores:
                    scores[pool[j]] = float(pool_score[j])
                    picked.append(pool[j])
                    if len(picked) == candidates:
                        break
            agreement[i] = scores
            if picked:
                # the score a new candidate must reach to beat the beam's best under _rerank's sum
                best = max(h.score + c + agree * scores[h.tokens]
                           for h, c in zip((hyp, *hyp.alternatives), self._closeness(own, vector, rerank)))
                floor = [best - c - agree * scores[t]
                         for t, c in zip(picked, self._closeness(picked, vector, rerank))]
                jobs.append((i, score_steps(states[i], start, self.vocab.end_id, picked,
                                            length_penalty=d.length_penalty, floor=floor)))
        out = list(found)
        for (i, _), scored in zip(jobs, run_searches(self.decoder.log_probs, [s for _, s in jobs])):
            hyp = out[i]
            extra = tuple(h for h in (scored, *scored.alternatives) if np.isfinite(h.score))
            out[i] = dataclasses.replace(hyp, alternatives=(*hyp.alternatives, *extra))
        return out, agreement

    def _concept_words(self, concepts: tuple[np.ndarray, np.ndarray] | None) -> tuple[tuple[str, float], ...]:
        """The words (and probabilities) of a concept decoder's slots, as the review page shows them."""
        if concepts is None:
            return ()
        return tuple((self.vocab.itos[int(i)], round(float(p), 4)) for i, p in zip(*concepts)
                     if int(i) != self.vocab.unk_id)

    def _detect(self, feats: np.ndarray) -> np.ndarray | None:
        """P(word) of each detector word for a photo's or segment's stacked cells, or None without detectors."""
        from .detect import CELLS

        if self.detectors is None or feats.shape[0] % CELLS:
            return None
        return self.detectors.probs(feats)

    def _absent(self, detected: np.ndarray | None, feats: np.ndarray) -> tuple[int, ...]:
        """Words the detectors say are not there (presence-aware decoding): person words, and any word under its own threshold."""
        if detected is None or self._absent_words is None:
            return ()
        return self._absent_words(feats, detected)

    def _concept_inputs(self, detected: np.ndarray | None,
                        probs: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
        """(ids [K], probabilities [K]) of the top concepts, for a decoder trained to attend over them."""
        k = self.decoder.config.concept_slots
        if not k or (probs is None and detected is None):
            return None
        from .detect import concept_inputs

        ids, ps = concept_inputs(self.detectors, detected, probs, self.vocab.index, k,
                                 self.decoder.config.detector_slots if detected is not None else 0)
        return np.asarray(ids, dtype=np.int64), np.asarray(ps, dtype=np.float32)

    def _start(self, feats: np.ndarray, concepts: Any, banned: Sequence[int], prior: np.ndarray | None,
               video: bool) -> Any:
        """The decoder state a caption of these frames starts from (its concepts, banned words and word prior)."""
        c = concepts
        return self.decoder.start(feats, None if c is None else c[0], None if c is None else c[1],
                                  self._concept_weight(c, video), banned, prior)

    def _search(self, searches: Sequence[tuple[np.ndarray, Any, Sequence[int], Sequence[int], np.ndarray | None]],
                video: bool, beam_size: int, states: Sequence[Any] | None = None) -> list[Hypothesis]:
        """Searches for (feats, concepts, banned, required, word prior) items, all in one lock-stepped run (search.py).

        ``states``: their start states (``_start``) when the caller made them already."""
        if not searches:
            return []
        d = self.config.decoding
        if states is None:
            states = [self._start(f, c, banned, prior, video) for f, c, banned, _, prior in searches]
        items = [(st, tuple(banned), tuple(required)) for st, (_, _, banned, required, _) in zip(states, searches)]
        start = self.vocab.start_for(d.video_style if video else d.photo_style)
        return search_many(self.decoder.log_probs, items, start, self.vocab.end_id, beam_size=beam_size,
                           max_length=d.max_length, length_penalty=d.length_penalty,
                           no_repeat_ngram=d.no_repeat_ngram, once=self._once, follow=self._follow)

    def _concept_weight(self, concepts: tuple[np.ndarray, np.ndarray] | None, video: bool) -> float:
        """The concepts-only expert's weight: the configured one if the top concept is sure enough, else 0."""
        d = self.config.decoding
        w = d.video_concept_weight if video else d.concept_weight
        if concepts is None or not len(concepts[1]) or float(concepts[1].max()) < d.concept_min_prob:
            return 0.0
        return w

    def caption_images(self, images: Iterable[np.ndarray]) -> list[Caption]:
        """Caption RGB uint8 images (each squashed to the encoder's input size).

        ``images``: a list of images (any iterable, a generator too) or a stacked [B, H, W, 3]
        array; one image goes in a list (``caption_images([image])``): an array that is no batch
        is refused, since iterating it would caption its rows.
        """
        from .encoder import check_image

        images = _image_list(images)
        for i, image in enumerate(images):  # here, where the index counts from the first image, not the batch's
            check_image(image, i)
        if not images:
            return []
        enc = self.encoder.encode(images)
        return self.caption_batch(list(zip(enc.grid, enc.probs)))

    # -- video -------------------------------------------------------------------------
    def caption_video(self, path: str | Path, progress: ProgressCallback | None = None) -> VideoResult:
        """Caption a video file into ordered, non-overlapping cues.

        Frames stream from the reader (a thread) through the encoder, a batch at a
        time, into a ``StreamingSegmenter``; each window of finished segments is
        captioned as soon as it is handed back, so memory stays flat.
        """
        t_start = time.perf_counter()
        info = open_video(path)
        sampling = self.config.sampling
        # the stretch asked for: whether the video reaches ``start`` is known once read (a header's length
        # leaves out joined recordings and a picture that starts after the sound)
        start, end = float(sampling.start), None if sampling.end is None else float(sampling.end)
        expected = sample_times_hint(info, sampling.fps)
        if (start or end is not None) and info.duration > 0:  # the share of the video's samples in the stretch
            expected = math.ceil(expected * (min(end or math.inf, info.duration) - start) / info.duration)
        batch_size = self.encoder.config.batch_size
        segmenter = StreamingSegmenter(self.config.segments, sampling.window_frames, sampling.context_seconds,
                                       origin=start)
        out = _VideoCues(self, info, progress)
        stats = DecodeStats()
        # the reader's generator, closed here: a failure kept by the caller (a REPL's traceback) kept the file open
        source = within(read_frames(info.path, sampling.fps, keyframes=sampling.fast, stats=stats, seek=start),
                        start, end, stats)
        batches = _batches(prefetch(map(self._squash, source), depth=2 * batch_size), batch_size)
        n_frames, t_encode, last_time = 0, 0.0, 0.0
        try:
            for batch in batches:
                n_frames += len(batch)
                last_time = batch[-1].time
                images = [f.image for f in batch]
                t0 = time.perf_counter()
                enc = self.encoder.encode(images)
                t_encode += time.perf_counter() - t0
                window = segmenter.push([f.time for f in batch], enc.pooled, [f.since for f in batch],
                                        grids=enc.grid.astype(np.float16),  # float16 grids: half the memory
                                        probs=enc.probs,
                                        # the frames as squashed for the encoder (one per segment becomes a thumbnail)
                                        images=images if self.config.review.thumbnails else None)
                if window is not None:
                    out.caption(window)
                if progress and len(batch) == batch_size:
                    # total 0 while unknown (a raw .h264 stream has no frame count): it said 100 % all along
                    progress(Progress("frames", n_frames, max(expected, n_frames) if expected else 0))
        finally:
            batches.close()  # the reader thread stops (prefetch's own finally) before its generator is closed
            with contextlib.suppress(ValueError):  # a reader still busy after prefetch's wait ends on its own
                source.close()
        # (length unknown or wrong) also with under a millisecond left after it, subtitles' precision: --start 11.9999 of
        # a 12 s video wrote an empty y.12s-end.srt where --start 12 was refused
        if start and stats.end_time and not n_frames and stats.end_time <= start:
            raise CaptionerError(f"{info.path}: --start {seconds_text(start)} s is past the end of the video "
                                 f"({seconds_text(stats.end_time)} s)")
        if start and stats.end_time and n_frames and stats.finished and stats.end_time < start + 0.001 - 1e-9:
            # said with the digits given: rounded to the millisecond, "--start 3.999 s is past the end" read wrong
            raise CaptionerError(f"{info.path}: --start {start:.9g} s leaves less than a millisecond of the video "
                                 f"(it ends at {seconds_text(stats.end_time)} s)")
        if not n_frames and end is not None and stats.decoded:  # the picture begins later (sound first)
            raise CaptionerError(f"{info.path}: the picture begins after --end {seconds_text(end)} s")
        if not n_frames:
            raise VideoError(f"{info.path}: no decodable frames")
        if progress:
            progress(Progress("frames", n_frames, n_frames))
        # What decoded is the truth: a damaged file, or a header announcing more frames than
        # there are, must not give a cue that runs on past the last frame. (Both readers
        # read every packet, so they know where the stream ends.)
        # The header's length (frames / average rate) is only as long as the stream says it lasts: a variable-rate
        # slideshow's average frame lasted 34.04 s where its last frame ends at 33.04 s.
        header = min(info.duration, stats.announced_end) if stats.announced_end > 0 else info.duration
        duration = stats.end_time if stats.short else max(header, stats.end_time)
        if not stats.finished:  # reading stopped at ``end``: where the picture ends, as the container says
            duration = max(stats.end_time, stats.announced_end or info.duration)
        if not stats.end_time:  # no timestamps at all: the container's length, or past the last sample
            duration = max(info.duration, last_time + 1.0 / sampling.fps)
        # where the last cue ends: the video's end, or the end of the stretch asked for (the reader stopped there)
        cues_end = duration if end is None else min(end, duration)
        # the reader is done: the last window's beams may have every core (the run waits on them alone)
        out.caption(segmenter.finish(cues_end), threads=self.config.threads or usable_cpus())
        if progress:
            progress(Progress("segments", out.n_segments, out.n_segments))
        seg, fmt = self.config.segments, self.config.output
        # judged as written: neighbours of one caption merged first, each with its time-weighted confidence (a cue
        # written at 0.64 lost a 4 s stretch whose segment alone was under 0.5, and the counts were of segments)
        merged = merge_cues(out.cues) if fmt.min_confidence > 0 else out.cues  # at 0 every cue is kept: no merge
        # at the JSON's 4 places: a cue the JSON shows as 0.585 was left out by --min-confidence 0.585 (0.58497)
        sure = [c for c in merged if round(c.confidence, 4) >= fmt.min_confidence]
        if merged and not sure:  # an empty subtitle file needs saying
            log.warning("%s: %s confidence under %g (--min-confidence): no captions", info.path,
                        "the one cue has" if len(merged) == 1 else f"all {len(merged)} cues have", fmt.min_confidence)
        elif len(sure) < len(merged):
            log.info("%s: %d of %d cues left out (confidence under %g)", info.path, len(merged) - len(sure),
                     len(merged), fmt.min_confidence)
        # the segments of the cues kept, for layout_cues to merge as it always does (merging merged cues again
        # can join two that the first pass kept apart)
        kept = out.cues if len(sure) == len(merged) else _within(out.cues, sure)
        cues = layout_cues(kept, cues_end, max_duration=seg.max_segment, min_duration=seg.min_duration,
                           max_chars_per_second=fmt.max_chars_per_second, max_line_width=fmt.max_line_width,
                           max_line_count=fmt.max_line_count, start=start)
        timings = {
            "total_s": time.perf_counter() - t_start, "encode_s": t_encode, "decode_s": out.seconds,
            "encoder_ms_per_frame": 1000 * t_encode / n_frames,
            "decoder_ms_per_segment": 1000 * out.seconds / max(1, out.n_segments),
        }
        log.info("%s: %s, %s, %s in %.1f s", info.path, count_text(n_frames, "frame"),
                 count_text(out.n_segments, "segment"), count_text(len(cues), "cue"), timings["total_s"])
        return VideoResult(info, cues, n_frames, duration, self.model_summary(), timings, out.snapshots,
                           span=(start, cues_end) if start or end is not None else None,
                           path=str(absolute(info.path)))

    def _squash(self, frame: Frame) -> Frame:
        """The frame resized to the encoder's input. Runs in the reader thread: the resize goes on beside
        the encoder, and the queue holds 224x224 frames instead of full-size ones (flat, small memory)."""
        return dataclasses.replace(frame, image=self.encoder.resize(frame.image))

    def _segment_features(self, frames: Sequence[int], grids: np.ndarray) -> np.ndarray:
        """The stacked grids of up to ``max_frames_per_segment`` evenly spread frames of a segment."""
        frames = list(frames)
        k = self.config.sampling.max_frames_per_segment
        if len(frames) > k:
            pick = np.linspace(0, len(frames) - 1, k).round().astype(int)
            frames = [frames[j] for j in pick]
        return grids[frames].reshape(-1, grids.shape[-1])

    def model_summary(self) -> dict[str, Any]:
        return {"name": self.model_info.name, "encoder": self.model_info.encoder, "sha256": self.model_info.sha256,
                "encoder_precision": self.encoder.precision}


class _VideoCues:
    """The cues and review snapshots of one video, captioned window by window."""

    def __init__(self, captioner: Captioner, info: VideoInfo, progress: ProgressCallback | None) -> None:
        self.captioner = captioner
        self.progress = progress
        self.review = captioner.config.review
        # as the video is shown: an anamorphic DVD's thumbnails came out squeezed 3:2 for its 16:9
        self.thumb_size = thumbnail_size(round(info.width * info.pixel_aspect), info.height, self.review)
        self.cues: list[Cue] = []
        self.snapshots: list[Snapshot] = []
        self.n_segments = 0
        self.seconds = 0.0  # spent captioning

    def caption(self, window: Window, threads: int | None = None) -> None:
        """Caption a window's segments, each run of pieces that show the same picture once, from its
        frames and those within ``SamplingConfig.context_seconds`` of it (``Window.run_frames``)."""
        t0 = time.perf_counter()
        grids, probs = window.data["grids"], window.data["probs"]
        context = self.captioner.config.sampling.context_seconds
        seen_frames = [window.run_frames(run, context) for run in window.runs]
        caps = self.captioner.caption_batch(
            [(self.captioner._segment_features(f, grids), probs[list(f)]) for f in seen_frames], video=True,
            threads=threads)
        review = self.review
        for run, cap, run_frames in zip(window.runs, caps, seen_frames):
            # what the decoder attended over; a plain decoder has no concept inputs: the
            # encoder's top ImageNet words then
            seen = cap.concepts or tuple((c.word, round(c.prob, 4)) for c in
                                         top_concepts(probs[list(run_frames)].mean(0), review.concept_words))
            for seg in (window.segments[i] for i in run):
                start, end = window.span(seg)
                mid = seg.frames[len(seg.frames) // 2]  # a frame from inside the segment, already decoded
                jpeg = (encode_jpeg(shrink(window.data["images"][mid], self.thumb_size), review.jpeg_quality)
                        if review.thumbnails else b"")
                self.snapshots.append(Snapshot(start, end, window.times[mid], jpeg, seen, cap.vector))
                if cap.text:
                    self.cues.append(Cue(start, end, cap.text, cap.confidence))
                self.n_segments += 1
            if self.progress:
                self.progress(Progress("segments", self.n_segments, 0))
        self.seconds += time.perf_counter() - t0


def _within(cues: Sequence[Cue], spans: Sequence[Cue]) -> list[Cue]:
    """The ``cues`` that lie inside one of ``spans`` (``merge_cues`` of them, some left out): both sorted by start,
    the spans apart, each cue inside at most one."""
    starts = [s.start for s in spans]
    out = []
    for cue in cues:
        i = bisect.bisect_right(starts, cue.start) - 1
        if i >= 0 and cue.end <= spans[i].end:
            out.append(cue)
    return out


def _batches(items: Iterator[Frame], size: int) -> Iterator[list[Frame]]:
    """``items`` in lists of ``size`` (the last one shorter)."""
    batch: list[Frame] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
