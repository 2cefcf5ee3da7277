"""Where a cue sits in the sentence-embedding space ``captioner search`` ranks by (run time, NumPy only).

A cue's caption is one short sentence and often a generic one ("a man is talking"),
so a search that reads captions alone cannot find what the caption left out. The
model can also say where the *picture* sits among sentences: a small network,
learnt on MSR-VTT train videos by ``pipelines/train_vse.py`` (a visual-semantic
embedding, Frome et al. 2013; Faghri et al. 2018), maps what the encoder and the
concept detectors saw in a segment (the frames' mean-pooled features and the
detectors' probabilities) to a unit vector near the all-MiniLM-L6-v2 embeddings
of sentences people wrote for such footage. Queries stay in MiniLM's own space, so
search compares a query with a cue's vector directly, whatever model wrote it.

A map learnt from 3,000 videos generalises only so far. A *caption memory*
(``pipelines/vse_memory.py``) adds what the training videos' own captions say: the
vectors of the training videos (``memory_keys``) and the mean embedding of each
one's ~20 reference captions (``memory_values``). A segment's vector is moved
towards the captions of the training videos it looks most like (a softmax over its
``k`` nearest keys, mixed in with weight ``weight``), as kNN language models do for
text (Khandelwal et al. 2020). It is one more step of ``embed``; JSON and search are
unchanged.

The same vector also helps the decoder choose what to say. Beam search finishes
several captions; the likeliest is often the decoder's fallback ("a person is playing
a video game") while a close second names what the segment shows. ``words`` holds,
for each word of the decoder's vocabulary, a vector in the same sentence space
(``pipelines/caption_vectors.py``: a ridge fit of training captions' MiniLM
embeddings on their bags of words), so a caption's place among sentences costs a
mean of a few rows, not a transformer run; ``pipeline.py`` adds
``DecodingConfig.rerank_weight`` x cos(caption, segment) to each finished caption's
score.

Stored beside the decoder as ``vse.safetensors`` (``mean``, ``std``, ``w1``,
``b1``, ``w2``, ``b2``, with a memory ``memory_keys``, ``memory_values``, and with
word vectors ``word_vectors``); listed with its checksum in ``model.json`` under
``"vse"`` (the memory's ``k``, ``temperature`` and ``weight`` under ``"memory"``,
what the word vectors were fitted on under ``"words"``). A model without it writes no
vectors and search falls back to captions.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .errors import ModelError

TENSORS = "vse.safetensors"


@dataclass(frozen=True)
class SegmentEmbedder:
    """Segment descriptor -> unit vector: ReLU MLP over standardised (pooled features ‖ detector probabilities)."""

    mean: np.ndarray  # [D_in]
    std: np.ndarray  # [D_in]
    w1: np.ndarray  # [D_in, H]
    b1: np.ndarray  # [H]
    w2: np.ndarray  # [H, D_out]
    b2: np.ndarray  # [D_out]
    memory: "CaptionMemory | None" = None
    words: np.ndarray | None = None  # [V, D_out]: each decoder vocabulary word's vector (see the module docstring)

    @property
    def dim(self) -> int:
        return int(self.w2.shape[1])

    def embed_map(self, pooled: np.ndarray, det_probs: np.ndarray) -> np.ndarray:
        """The map's own unit vector [D_out], before the memory: ``pooled`` [F, C] (each frame's mean over its cells) or their mean [C]; ``det_probs`` [D]."""
        p = np.asarray(pooled, np.float32)
        x = np.concatenate([p.mean(0) if p.ndim == 2 else p, np.asarray(det_probs, np.float32)])
        h = np.maximum((x - self.mean) / self.std @ self.w1 + self.b1, 0.0)
        return _unit(h @ self.w2 + self.b2)

    def embed(self, pooled: np.ndarray, det_probs: np.ndarray) -> np.ndarray:
        """Unit vector [D_out] of one segment (``embed_map``'s arguments), moved towards its memory captions if any."""
        v = self.embed_map(pooled, det_probs)
        return v if self.memory is None else self.memory.apply(v)

    def with_memory(self, memory: "CaptionMemory | None") -> "SegmentEmbedder":
        return replace(self, memory=memory)

    def with_words(self, words: np.ndarray | None) -> "SegmentEmbedder":
        return replace(self, words=words)

    def caption_vectors(self, captions: Sequence[Sequence[int]]) -> np.ndarray:
        """Unit vectors [N, D_out] of captions given as decoder token ids: the mean of their words' rows.

        Ids the table does not have (words a grounder added to the vocabulary after the
        fit) are left out; a caption with none gets the zero vector. Needs ``words``.
        """
        if self.words is None:
            raise ValueError("this segment embedder has no word vectors")
        n = len(self.words)
        out = np.zeros((len(captions), self.dim), np.float32)
        for i, ids in enumerate(captions):
            known = [t for t in ids if 0 <= t < n]
            if known:
                out[i] = _unit(self.words[known].mean(0))
        return out


@dataclass(frozen=True)
class CaptionMemory:
    """Training videos' vectors (keys) and caption embeddings (values): see the module docstring."""

    keys: np.ndarray  # [M, D] unit vectors: each training video under the map
    values: np.ndarray  # [M, D] unit vectors: the mean MiniLM embedding of its captions
    k: int = 50
    temperature: float = 0.05
    weight: float = 0.5

    def apply(self, v: np.ndarray) -> np.ndarray:
        """``v`` + ``weight`` x (softmax-weighted mean of its ``k`` nearest keys' values), renormalised."""
        sims = self.keys @ v
        k = min(self.k, len(sims))
        top = np.argpartition(-sims, k - 1)[:k] if k < len(sims) else np.arange(len(sims))
        w = np.exp((sims[top] - sims[top].max()) / self.temperature)
        near = _unit((w / w.sum()) @ self.values[top])
        return _unit(v + self.weight * near)


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float32)
    return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)


def save_vse(folder: Path, emb: SegmentEmbedder, extra: Mapping | None = None) -> dict:
    """Write ``vse.safetensors`` into a model folder; returns the manifest entry for ``model.json``."""
    from .weights import save_tensors

    tensors = {"mean": emb.mean.astype(np.float32), "std": emb.std.astype(np.float32),
               "w1": emb.w1.astype(np.float16), "b1": emb.b1.astype(np.float32),
               "w2": emb.w2.astype(np.float16), "b2": emb.b2.astype(np.float32)}
    entry = {k: v for k, v in (extra or {}).items() if k not in ("memory", "words")}
    if emb.memory is not None:  # its parameters in model.json, beside what the caller says of it (data, val)
        m = emb.memory
        tensors |= {"memory_keys": m.keys.astype(np.float16), "memory_values": m.values.astype(np.float16)}
        entry["memory"] = {**dict((extra or {}).get("memory") or {}), "k": m.k, "temperature": m.temperature,
                           "weight": m.weight, "items": len(m.keys)}
    if emb.words is not None:
        tensors["word_vectors"] = emb.words.astype(np.float16)
        entry["words"] = {**dict((extra or {}).get("words") or {}), "count": len(emb.words)}
    return {**entry, "sha256": save_tensors(folder, TENSORS, tensors), "dim": emb.dim, "space": "all-MiniLM-L6-v2"}


def load_vse(folder: Path, manifest: Mapping) -> SegmentEmbedder | None:
    """The model's segment embedder, checksum verified, or None for a model without one."""
    entry = manifest.get("vse")
    if not entry:
        return None
    from .weights import load_tensors

    path = Path(folder) / TENSORS
    t = load_tensors(folder, TENSORS, entry, "it")  # float32
    try:
        memory = None
        if "memory_keys" in t:
            m = entry.get("memory") or {}  # a parameter it does not name keeps CaptionMemory's default
            memory = CaptionMemory(t["memory_keys"], t["memory_values"], **{
                name: cast(m[name]) for name, cast in (("k", int), ("temperature", float), ("weight", float)) if name in m})
        emb = SegmentEmbedder(t["mean"], t["std"], t["w1"], t["b1"], t["w2"], t["b2"], memory, t.get("word_vectors"))
        if emb.w1.shape[0] != emb.mean.shape[0] or emb.w2.shape[0] != emb.w1.shape[1]:
            raise ValueError("shapes do not chain")
        if memory is not None and not (memory.keys.shape == memory.values.shape and memory.keys.shape[1] == emb.dim
                                       and memory.k >= 1 and memory.temperature > 0):
            raise ValueError("memory does not fit the map")
        if emb.words is not None and (emb.words.ndim != 2 or emb.words.shape[1] != emb.dim):
            raise ValueError("word vectors do not fit the map")
        return emb
    except (KeyError, ValueError, TypeError) as exc:
        raise ModelError(f"{path}: not a segment embedder ({exc.__class__.__name__}: {str(exc)[:100]})") from None


def quantize(v: np.ndarray) -> np.ndarray:
    """A unit vector as int8 (x 127): how vectors are written into JSON and kept in the search index."""
    return np.clip(np.round(np.asarray(v, np.float32) * 127.0), -127, 127).astype(np.int8)


def encode_vector(v: np.ndarray) -> str:
    """A unit vector as JSON-friendly text: int8 (``quantize``), base64: 512 characters for 384 dimensions."""
    import base64

    return base64.b64encode(quantize(v).tobytes()).decode("ascii")


def decode_vector(text: str, dim: int | None = None) -> np.ndarray:
    """Inverse of ``encode_vector`` (renormalised); ``ValueError`` if it is not one."""
    import base64
    import binascii

    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError(f"not a base64 vector ({exc})") from None
    v = np.frombuffer(raw, np.int8).astype(np.float32)
    if not len(v) or (dim is not None and len(v) != dim):
        raise ValueError(f"vector of {len(v)} values, expected {dim}")
    n = float(np.linalg.norm(v))
    if n == 0:
        raise ValueError("zero vector")
    return v / n
