"""What people said of the training videos a segment looks like, and which of those captions they agree on.

The decoder learnt MSR-VTT's way of describing video from 3,000 videos, and on
footage it is unsure of it falls back to what it says most ("a person is playing a
video game"). The caption memory (``vse.py``) already knows, for a segment, the
training videos it looks most like. Their ~20 captions each were written by people
for footage of that kind, so a caption that many of them agree with is a safe
description of such footage: nearest-neighbour captioning by consensus (Devlin et al.
2015, "Exploring nearest neighbor approaches for image captioning"), where each
candidate is scored by its mean CIDEr-style similarity (tf-idf weighted n-grams,
n = 1..4) to the other captions of the neighbours.

The tool never writes such a caption on the neighbours' word alone: ``pipeline.py``
makes the few best of them candidates beside the beam search's own, scores them under
the decoder for *this* segment's frames (so a caption the frames do not support, or
one with a word the person presence head bans, loses), and takes the candidate with
the best decoder score + rerank + ``consensus_weight`` x consensus.

Photos have a bank of their own (``photo_bank.safetensors``, model.json ``"photo_bank"``,
``pipelines/caption_bank.py --photos``): the training photos' captions, found by the photo's
map vector (``vse.embed_map``) among the training photos' own. Those keys are stored small: each
photo's vector less their mean, in the top ``d`` principal directions (``key_basis``), as int8
codes with a scale a row (``key_codes``, ``key_scale``); rebuilt to unit-length float32 at load.

Stored beside the decoder as ``bank.safetensors``: the training captions' token ids
(``tokens``, flat, cut by ``starts``), where each training video's captions begin
(``video_starts``, in the order of the caption memory's keys), and the document
frequencies of the n-grams seen in at least two training videos (``gram_keys``,
sorted, and ``gram_df``); listed in ``model.json`` under ``"bank"`` with its checksum,
the number of training videos and what it was built from (``pipelines/caption_bank.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .errors import ModelError

TENSORS = "bank.safetensors"
PHOTO_TENSORS = "photo_bank.safetensors"
MAX_N = 4  # n-grams of 1..4 words, as CIDEr


def gram_base(vocab_size: int) -> int:
    """The radix n-gram keys are written in: token ids + 1, so that an n-gram's key never equals an m-gram's."""
    return vocab_size + 1


def padded(seqs: Sequence[Sequence[int]]) -> np.ndarray:
    """Token sequences as one int64 matrix, -1 beyond each one's end."""
    width = max((len(s) for s in seqs), default=0)
    out = np.full((len(seqs), max(width, 1)), -1, np.int64)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out


def gram_keys(x: np.ndarray, n: int, base: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, key) of every n-gram in the padded rows ``x`` [R, L] (``padded``)."""
    if x.shape[1] < n:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    width = x.shape[1] - n + 1
    key = np.zeros((x.shape[0], width), np.int64)
    valid = np.ones((x.shape[0], width), bool)
    for j in range(n):
        part = x[:, j : j + width]
        valid &= part >= 0
        key = key * base + (part + 1)
    rows = np.broadcast_to(np.arange(x.shape[0])[:, None], key.shape)
    return rows[valid], key[valid]


@dataclass(frozen=True)
class CaptionBank:
    """The training videos' captions and their n-grams' document frequencies: see the module docstring."""

    tokens: np.ndarray  # [T] token ids of all captions, one after another
    starts: np.ndarray  # [C + 1] where each caption begins in ``tokens``
    video_starts: np.ndarray  # [M + 1] the first caption of each training video (memory key order)
    gram_keys: np.ndarray  # [G] sorted keys (``gram_keys``) of the n-grams in >= 2 training videos
    gram_df: np.ndarray  # [G] in how many training videos each of them occurs
    base: int  # ``gram_base`` of the vocabulary the tokens index
    keys: np.ndarray | None = None  # [M, D] unit vectors to find neighbours by (a photo bank's own; video: the memory's)

    @property
    def videos(self) -> int:
        return len(self.video_starts) - 1

    def captions_of(self, videos: Sequence[int]) -> list[tuple[int, ...]]:
        """The token ids of every caption of the given training videos."""
        out = []
        for v in videos:
            for c in range(int(self.video_starts[v]), int(self.video_starts[v + 1])):
                out.append(tuple(int(t) for t in self.tokens[self.starts[c] : self.starts[c + 1]]))
        return out

    def idf(self, keys: np.ndarray) -> np.ndarray:
        """log(videos / df) for each key; an n-gram in fewer than two videos counts as in one."""
        pos = np.searchsorted(self.gram_keys, keys)
        pos = np.minimum(pos, len(self.gram_keys) - 1) if len(self.gram_keys) else pos
        found = (self.gram_keys[pos] == keys) if len(self.gram_keys) else np.zeros(len(keys), bool)
        df = np.where(found, self.gram_df[pos] if len(self.gram_df) else 1, 1).astype(np.float64)
        return (math.log(self.videos) - np.log(np.maximum(df, 1.0))).astype(np.float64)

    def _unit_grams(self, seqs: Sequence[Sequence[int]], n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, key, weight): each row's n-grams as a unit tf-idf vector."""
        rows, keys = gram_keys(padded(seqs), n, self.base)
        if not len(keys):
            return rows, keys, np.zeros(0)
        pairs = np.stack([rows, keys], 1)
        uniq, counts = np.unique(pairs, axis=0, return_counts=True)
        rows, keys = uniq[:, 0], uniq[:, 1]
        w = counts * self.idf(keys)
        norm = np.sqrt(np.bincount(rows, w * w, minlength=len(seqs)))
        return rows, keys, w / np.maximum(norm[rows], 1e-12)

    def consensus(self, pool: Sequence[Sequence[int]], others: Sequence[Sequence[int]] = ()) -> tuple[np.ndarray, np.ndarray]:
        """Mean CIDEr-style similarity (10 x the mean over n of the tf-idf cosine, CIDEr's scale, without
        its length penalty) of each ``pool`` caption to the other pool captions, and of each of
        ``others`` (captions not in the pool) to all of them: (pool scores, others' scores)."""
        scores_pool, scores_other = np.zeros(len(pool)), np.zeros(len(others))
        if len(pool) < 2:
            return scores_pool, scores_other
        for n in range(1, MAX_N + 1):
            rows, keys, w = self._unit_grams(pool, n)
            if not len(keys):
                continue
            uniq, inv = np.unique(keys, return_inverse=True)
            total = np.bincount(inv, w)  # the sum of the pool's unit vectors
            own = np.bincount(rows, w * w, minlength=len(pool))  # 1 for a caption with n-grams, else 0
            scores_pool += (np.bincount(rows, w * total[inv], minlength=len(pool)) - own) / (len(pool) - 1)
            if len(others):
                orows, okeys, ow = self._unit_grams(others, n)
                pos = np.minimum(np.searchsorted(uniq, okeys), len(uniq) - 1)
                hit = uniq[pos] == okeys
                scores_other += np.bincount(orows[hit], ow[hit] * total[pos[hit]], minlength=len(others)) / len(pool)
        return 10.0 * scores_pool / MAX_N, 10.0 * scores_other / MAX_N  # CIDEr's scale: 10 x the mean cosine


def load_bank(folder: Path, manifest: Mapping, vocab_size: int, *, photos: bool = False) -> CaptionBank | None:
    """The model's caption bank (``photos``: its photo bank, with keys), checksum verified, or None without one."""
    entry = manifest.get("photo_bank" if photos else "bank")
    if not entry:
        return None
    from .weights import load_tensors

    name = PHOTO_TENSORS if photos else TENSORS
    t = load_tensors(folder, name, entry, "a caption bank")
    try:
        keys = None
        if photos:
            codes = t["key_codes"].astype(np.float32) * t["key_scale"].astype(np.float32)[:, None]
            keys = t["key_mean"].astype(np.float32) + codes @ t["key_basis"].astype(np.float32).T
            keys /= np.maximum(np.linalg.norm(keys, axis=1, keepdims=True), 1e-12)
        bank = CaptionBank(t["tokens"].astype(np.int64), t["starts"].astype(np.int64),
                           t["video_starts"].astype(np.int64), t["gram_keys"].astype(np.int64),
                           t["gram_df"].astype(np.int64), gram_base(vocab_size), keys)
        if (bank.starts[-1] != len(bank.tokens) or bank.video_starts[-1] != len(bank.starts) - 1
                or len(bank.gram_keys) != len(bank.gram_df) or bank.videos < 2
                or (len(bank.tokens) and int(bank.tokens.max()) >= vocab_size)
                or (keys is not None and len(keys) != bank.videos)):
            raise ValueError("arrays do not fit together or the vocabulary")
        return bank
    except (KeyError, ValueError, TypeError) as exc:
        raise ModelError(f"{Path(folder) / name}: not a caption bank ({exc.__class__.__name__}: {str(exc)[:100]})") from None


def compress_keys(vectors: np.ndarray, dim: int) -> dict[str, np.ndarray]:
    """A photo bank's keys, small: ``vectors`` [M, D] less their mean in their top ``dim`` principal
    directions, int8 with a scale a row (see the module docstring; ``load_bank`` rebuilds them)."""
    x = np.asarray(vectors, np.float64)
    mean = x.mean(0)
    dim = min(dim, x.shape[1], len(x))
    basis = np.linalg.svd(x - mean, full_matrices=False)[2][:dim].T  # [D, dim]
    z = (x - mean) @ basis
    scale = np.maximum(np.abs(z).max(1), 1e-12) / 127.0
    return {"key_mean": mean.astype(np.float32), "key_basis": np.ascontiguousarray(basis, np.float16),
            "key_codes": np.round(z / scale[:, None]).astype(np.int8), "key_scale": scale.astype(np.float16)}


def build_bank(captions: Sequence[Sequence[Sequence[int]]], vocab_size: int) -> dict[str, np.ndarray]:
    """The tensors of a bank from each training video's captions as token ids (memory key order)."""
    flat = [c for video in captions for c in video]
    starts = np.zeros(len(flat) + 1, np.int64)
    starts[1:] = np.cumsum([len(c) for c in flat])
    video_starts = np.zeros(len(captions) + 1, np.int64)
    video_starts[1:] = np.cumsum([len(v) for v in captions])
    tokens = np.array([t for c in flat for t in c], np.int64)
    base = gram_base(vocab_size)
    owner = np.repeat(np.arange(len(captions)), [len(v) for v in captions])
    per_video = []
    x = padded(flat)
    for n in range(1, MAX_N + 1):
        rows, keys = gram_keys(x, n, base)
        per_video.append(np.unique(np.stack([owner[rows], keys], 1), axis=0)[:, 1])
    keys, df = np.unique(np.concatenate(per_video), return_counts=True)
    keep = df >= 2
    return {"tokens": tokens.astype(np.uint16 if vocab_size < 65536 else np.int32),
            "starts": starts.astype(np.int32), "video_starts": video_starts.astype(np.int32),
            "gram_keys": keys[keep].astype(np.int64), "gram_df": df[keep].astype(np.uint16)}
