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

Stored beside the decoder as ``vse.safetensors`` (``mean``, ``std``, ``w1``,
``b1``, ``w2``, ``b2``); listed with its checksum in ``model.json`` under ``"vse"``.
A model without it writes no vectors and search falls back to captions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

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

    @property
    def dim(self) -> int:
        return int(self.w2.shape[1])

    def embed(self, pooled: np.ndarray, det_probs: np.ndarray) -> np.ndarray:
        """Unit vector [D_out] of one segment: ``pooled`` [F, C] (each frame's mean over its cells) or their mean [C]; ``det_probs`` [D]."""
        p = np.asarray(pooled, np.float32)
        x = np.concatenate([p.mean(0) if p.ndim == 2 else p, np.asarray(det_probs, np.float32)])
        h = np.maximum((x - self.mean) / self.std @ self.w1 + self.b1, 0.0)
        v = h @ self.w2 + self.b2
        return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)


def save_vse(folder: Path, emb: SegmentEmbedder, extra: Mapping | None = None) -> dict:
    """Write ``vse.safetensors`` into a model folder; returns the manifest entry for ``model.json``."""
    from .weights import save_tensors

    tensors = {"mean": emb.mean.astype(np.float32), "std": emb.std.astype(np.float32),
               "w1": emb.w1.astype(np.float16), "b1": emb.b1.astype(np.float32),
               "w2": emb.w2.astype(np.float16), "b2": emb.b2.astype(np.float32)}
    return {"sha256": save_tensors(folder, TENSORS, tensors), "dim": emb.dim, "space": "all-MiniLM-L6-v2",
            **dict(extra or {})}


def load_vse(folder: Path, manifest: Mapping) -> SegmentEmbedder | None:
    """The model's segment embedder, checksum verified, or None for a model without one."""
    entry = manifest.get("vse")
    if not entry:
        return None
    from .weights import load_tensors

    path = Path(folder) / TENSORS
    raw = load_tensors(folder, TENSORS, entry, "it")
    try:
        t = {k: v.astype(np.float32) for k, v in raw.items()}
        emb = SegmentEmbedder(t["mean"], t["std"], t["w1"], t["b1"], t["w2"], t["b2"])
        if emb.w1.shape[0] != emb.mean.shape[0] or emb.w2.shape[0] != emb.w1.shape[1]:
            raise ValueError("shapes do not chain")
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
