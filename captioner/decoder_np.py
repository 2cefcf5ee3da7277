"""The caption decoder's inference in NumPy: what ``captioner run`` decodes with.

``decoder.CaptionDecoder`` (torch) is the reference: it trains, and evaluation can
use it. Decoding one caption is a few hundred small matrix products, which NumPy
does as fast as torch, and importing torch costs ~1.8 s and ~650 MB of memory
before the first frame is read (README, Performance). So the runtime computes the
same equations here from the same tensors; a test checks that both give the same
log-probabilities. Parameter names are the torch module's, so one
``decoder.safetensors`` serves both. The decoder computes steps (``start``,
``log_probs``); ``search.py`` drives them, greedy or beam.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping, Sequence

import numpy as np

from .config import DecoderConfig


def expected_shapes(config: DecoderConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor a decoder of this configuration has, and its shape (the torch module's state dict)."""
    h, e, a, c, v = config.hidden_dim, config.embed_dim, config.attention_dim, config.feature_dim, config.vocab_size
    shapes = {
        "feat_proj.0.weight": (h, c), "feat_proj.0.bias": (h,),
        "enc_att.weight": (a, h), "enc_att.bias": (a,),
        "attention.dec.weight": (a, h), "attention.dec.bias": (a,),
        "attention.out.weight": (1, a), "attention.out.bias": (1,),
        "init_h.weight": (h, h), "init_h.bias": (h,),
        "init_c.weight": (h, h), "init_c.bias": (h,),
        "gate.weight": (h, h), "gate.bias": (h,),
        "embed.weight": (v, e),
        "lstm.weight_ih": (4 * h, e + h), "lstm.weight_hh": (4 * h, h),
        "lstm.bias_ih": (4 * h,), "lstm.bias_hh": (4 * h,),
        "fc.weight": (v, h), "fc.bias": (v,),
    }
    if config.concept_slots:
        shapes.update({
            "concept_proj.0.weight": (h, e + 1), "concept_proj.0.bias": (h,),
            "null_slot": (1, 1, h),
            "copy_gate.weight": (1, 2 * h + e), "copy_gate.bias": (1,),
        })
    return shapes


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (np.tanh(0.5 * x) + 1.0)  # no overflow warnings for large |x|


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


@dataclass
class NpState:
    """Per-beam LSTM state and the set it attends over (projected, and pre-multiplied for attention)."""

    h: np.ndarray
    c: np.ndarray
    feats: np.ndarray
    feats_att: np.ndarray
    mask: np.ndarray | None
    cids: np.ndarray | None = None

    def select(self, index: np.ndarray | slice) -> "NpState":
        if self.feats.shape[0] == 1:  # the beams of one caption share its set: broadcast, never copied
            return NpState(self.h[index], self.c[index], self.feats, self.feats_att, self.mask, self.cids)
        return NpState(self.h[index], self.c[index], self.feats[index], self.feats_att[index],
                       None if self.mask is None else self.mask[index], None if self.cids is None else self.cids[index])


@dataclass
class _PairState:
    """The picture+concepts beams and the concepts-only beams, stepped side by side."""

    full: NpState
    alone: NpState

    def select(self, index: np.ndarray) -> "_PairState":
        return _PairState(self.full.select(index), self.alone.select(index))


class NumpyDecoder:
    """Inference-only twin of ``CaptionDecoder``: same parameters, same equations, float32."""

    def __init__(self, config: DecoderConfig, params: Mapping[str, np.ndarray]) -> None:
        want = expected_shapes(config)
        missing = sorted(set(want) - set(params))
        unexpected = sorted(set(params) - set(want))
        if missing or unexpected:
            raise ValueError(f"tensors missing: {missing[:3]}, unexpected: {unexpected[:3]}")
        for k, shape in want.items():
            if tuple(params[k].shape) != shape:
                raise ValueError(f"{k}: shape {tuple(params[k].shape)}, expected {shape}")
        self.config = config
        p = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in params.items()}
        self.params = p
        # weights transposed once, so that every product is x @ W
        t = lambda k: np.ascontiguousarray(p[k].T)  # noqa: E731
        self._feat_w, self._feat_b = t("feat_proj.0.weight"), p["feat_proj.0.bias"]
        self._enc_w, self._enc_b = t("enc_att.weight"), p["enc_att.bias"]
        self._dec_w, self._dec_b = t("attention.dec.weight"), p["attention.dec.bias"]
        self._out_w, self._out_b = p["attention.out.weight"][0], float(p["attention.out.bias"][0])
        # _attend's out . tanh(x) + b as sum(out) + b - 2 out . (1 / (exp(2x) + 1))
        self._out_w2 = np.ascontiguousarray(-2.0 * self._out_w)
        self._out_c = self._out_b + float(self._out_w.sum(dtype=np.float64))
        self._inith_w, self._inith_b = t("init_h.weight"), p["init_h.bias"]
        self._initc_w, self._initc_b = t("init_c.weight"), p["init_c.bias"]
        self._gate_w, self._gate_b = t("gate.weight"), p["gate.bias"]
        self._embed = p["embed.weight"]
        e = config.embed_dim
        w_ih = t("lstm.weight_ih")
        self._ih_emb, self._ih_ctx = np.ascontiguousarray(w_ih[:e]), np.ascontiguousarray(w_ih[e:])
        self._hh_w = t("lstm.weight_hh")
        self._lstm_b = p["lstm.bias_ih"] + p["lstm.bias_hh"]
        self._fc_w, self._fc_b = t("fc.weight"), p["fc.bias"]
        if config.concept_slots:
            self._cp_w, self._cp_b = t("concept_proj.0.weight"), p["concept_proj.0.bias"]
            self._null = p["null_slot"].reshape(1, 1, -1)
            self._cg_w, self._cg_b = p["copy_gate.weight"][0], float(p["copy_gate.bias"][0])

    @classmethod
    def from_torch(cls, decoder) -> "NumpyDecoder":
        """The twin of a torch ``CaptionDecoder`` (tests, and tools that trained one in-process)."""
        return cls(decoder.config, {k: v.detach().cpu().float().numpy() for k, v in decoder.state_dict().items()})

    def extend_vocab(self, donors: Sequence[int]) -> "NumpyDecoder":
        """A decoder with extra words whose embedding and output rows are copies of ``donors``' (grounding)."""
        if not len(donors):
            return self
        idx = np.asarray(list(donors), dtype=np.int64)
        params = dict(self.params)
        for k in ("embed.weight", "fc.weight", "fc.bias"):
            params[k] = np.concatenate([params[k], params[k][idx]])
        return NumpyDecoder(replace(self.config, vocab_size=self.config.vocab_size + len(idx)), params)

    # -- the equations of CaptionDecoder.init_state / step ----------------------------
    def init_state(self, feats: np.ndarray, mask: np.ndarray | None = None,
                   cids: np.ndarray | None = None, cprobs: np.ndarray | None = None) -> NpState:
        """``feats`` [B, N, C] (N may be 0: concepts only); ``cids``/``cprobs`` [B, K] for a concept decoder."""
        feats = np.asarray(feats, dtype=np.float32)
        proj = np.maximum(feats @ self._feat_w + self._feat_b, 0.0)
        K = self.config.concept_slots
        if K:
            B, N = feats.shape[:2]
            if cids is None or cprobs is None:
                cids, cprobs = np.zeros((B, K), np.int64), np.zeros((B, K), np.float32)
            cids = np.asarray(cids, dtype=np.int64)[:, :K]
            cprobs = np.asarray(cprobs, dtype=np.float32)[:, :K]
            if cids.shape[1] < K:  # fewer concepts than slots: pad with empty ones
                pad = ((0, 0), (0, K - cids.shape[1]))
                cids, cprobs = np.pad(cids, pad), np.pad(cprobs, pad)
            slot_in = np.concatenate([self._embed[cids], cprobs[:, :, None]], axis=2)
            slots = np.maximum(slot_in @ self._cp_w + self._cp_b, 0.0)
            proj = np.concatenate([proj, np.broadcast_to(self._null, (B, 1, proj.shape[2])), slots], axis=1)
            vis = np.ones((B, N), bool) if mask is None else np.asarray(mask, bool)
            mask = np.concatenate([vis, np.ones((B, 1), bool), cids != 0], axis=1)
        if mask is None:
            mean = proj.mean(axis=1)
        else:
            m = np.asarray(mask, np.float32)[:, :, None]
            mean = (proj * m).sum(1) / np.maximum(m.sum(1), 1.0)
        h = np.tanh(mean @ self._inith_w + self._inith_b)
        c = np.tanh(mean @ self._initc_w + self._initc_b)
        return NpState(h, c, proj, proj @ self._enc_w + self._enc_b,
                       None if mask is None else np.asarray(mask, bool), cids if K else None)

    def step(self, tokens: np.ndarray, state: NpState) -> tuple[np.ndarray, NpState]:
        """Previous tokens [B] -> logits (plain decoder) or log-probs (concept decoder) [B, V], new state."""
        (out, new), = self.step_many([(tokens, state)])
        return out, new

    def step_many(self, requests: Sequence[tuple[np.ndarray, "NpState | _PairState"]]) -> list[tuple]:
        """``step`` for several captions (and both experts of a ``_PairState``) in one pass over the weights.

        Attention is per state (their sets differ in size). The LSTM and the output layer
        read ~23 MB of weights per call, so with a handful of beams the step is memory-bound:
        stacking every caption's beams into one product costs little more than one caption
        did. Returns, per request, (out, new state), or for a pair ((out_full, out_alone), new pair).
        """
        parts: list[tuple[int, NpState, np.ndarray, np.ndarray, np.ndarray]] = []
        for r, (tokens, st) in enumerate(requests):
            emb = self._embed[np.asarray(tokens, dtype=np.int64)]
            for s in ((st.full, st.alone) if isinstance(st, _PairState) else (st,)):
                ctx, alpha = self._attend(s)
                parts.append((r, s, emb, ctx, alpha))
        h, c, logits = self._cell(np.concatenate([p[2] for p in parts]), np.concatenate([p[3] for p in parts]),
                                  np.concatenate([p[1].h for p in parts]), np.concatenate([p[1].c for p in parts]))
        outs: list[list[tuple[np.ndarray, NpState]]] = [[] for _ in requests]
        row = 0
        for r, s, emb, ctx, alpha in parts:
            rows = slice(row, row + len(emb))
            row += len(emb)
            out = self._output(logits[rows], h[rows], ctx, emb, alpha, s.cids)
            outs[r].append((out, NpState(h[rows], c[rows], s.feats, s.feats_att, s.mask, s.cids)))
        return [one[0] if len(one) == 1 else ((one[0][0], one[1][0]), _PairState(one[0][1], one[1][1]))
                for one in outs]

    def _attend(self, state: NpState) -> tuple[np.ndarray, np.ndarray]:
        """Gated attention context [B, H] and weights [B, N] (CaptionDecoder's Attention and gate).

        The scores are out . tanh(x) + b over every beam x cell x attention unit, the costliest
        part of a step. NumPy's float32 tanh runs about 3 ns a value on CPUs without AVX-512,
        OpenCV's exp about 0.5 ns, so tanh(x) = 1 - 2 / (exp(2x) + 1) is used: out . tanh(x)
        = sum(out) - 2 out . (1 / (exp(2x) + 1)); the same to ~1e-6.
        """
        import cv2

        x = state.feats_att + (state.h @ self._dec_w + self._dec_b)[:, None, :]
        flat = x.reshape(-1, x.shape[-1])
        flat *= 2.0
        cv2.exp(flat, flat)
        flat += 1.0
        np.reciprocal(flat, out=flat)
        scores = x @ self._out_w2
        scores += self._out_c
        if state.mask is not None:
            scores = np.where(state.mask, scores, -np.inf)
        alpha = _softmax(scores)
        context = np.matmul(alpha[:, None, :], state.feats)[:, 0]
        context *= _sigmoid(state.h @ self._gate_w + self._gate_b)
        return context, alpha

    def _cell(self, emb: np.ndarray, context: np.ndarray, h: np.ndarray, c: np.ndarray):
        """LSTMCell (gate order i, f, g, o as torch) and the output layer: new h, c and logits."""
        gates = emb @ self._ih_emb + context @ self._ih_ctx + h @ self._hh_w + self._lstm_b
        i, f, g, o = np.split(gates, 4, axis=1)
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
        return h, c, h @ self._fc_w + self._fc_b

    def _output(self, logits: np.ndarray, h: np.ndarray, context: np.ndarray, emb: np.ndarray,
                alpha: np.ndarray, cids: np.ndarray | None) -> np.ndarray:
        """Logits of a plain decoder; log-probs of the copy-mixed distribution of a concept decoder."""
        if cids is None:
            return logits
        on = alpha[:, -cids.shape[1]:]
        copy = on / np.maximum(on.sum(1, keepdims=True), 1e-9)
        gate = _sigmoid(np.concatenate([h, context, emb], axis=1) @ self._cg_w + self._cg_b)[:, None]
        gate = gate * (cids != 0).any(1, keepdims=True)  # nothing to copy: generate
        p = (1.0 - gate) * _softmax(logits)
        rows = np.arange(len(p))
        for k in range(cids.shape[1]):  # one slot at a time: a word id repeated across slots adds up
            p[rows, cids[:, k]] += gate[:, 0] * copy[:, k]
        return np.log(np.maximum(p, 1e-12))

    # -- the step a search drives (search.py) -------------------------------------------
    def start(self, feats: np.ndarray, cids: np.ndarray | None = None, cprobs: np.ndarray | None = None,
              concept_weight: float = 0.0, banned: Sequence[int] = (),
              bias: np.ndarray | None = None) -> "SearchState":
        """The state one caption's search starts from. feats: [N, C]; cids/cprobs: [K].

        ``concept_weight`` w > 0 (concept decoders only) scores each word by
        (1 - w) log p(word | picture, concepts) + w log p(word | concepts alone),
        renormalised: a product of two experts from the same weights. The second one
        learnt its phrasing from the caption-only corpora, the first from pictures, so
        mixing them trades a picture corpus's prior ("a man in a blue shirt") against
        what the concepts say. ``banned`` words get no probability: the others share it.
        ``bias`` [V] is added to every step's scores before they are renormalised: a
        per-caption prior over words (pipeline.py: words close to the picture's vector).
        """
        one = lambda a: None if a is None else np.asarray(a)[None]  # noqa: E731
        feats = np.asarray(feats, dtype=np.float32)
        state: NpState | _PairState = self.init_state(feats[None], None, one(cids), one(cprobs))
        w = float(concept_weight) if (cids is not None and self.config.concept_slots) else 0.0
        if w > 0:
            state = _PairState(state, self.init_state(feats[None, :0], None, one(cids), one(cprobs)))
        return SearchState(state, w, tuple(banned), None if bias is None else np.asarray(bias, np.float32))

    def log_probs(self, requests: Sequence[tuple[np.ndarray, "SearchState"]]) -> list[tuple[np.ndarray, "SearchState"]]:
        """One step of several searches (``search.StepManyFn``): each beam's next-word log-probs, new states.

        All the searches' beams go through one ``step_many`` (one pass over the weights).
        """
        replies = []
        outs = self.step_many([(tokens, st.inner) for tokens, st in requests])
        for (_, st), (out, new) in zip(requests, outs):
            if isinstance(new, _PairState):
                logits = (1 - st.weight) * _log_softmax(out[0]) + st.weight * _log_softmax(out[1])
            else:
                logits = out
            if st.bias is not None:
                logits = logits + st.bias[: logits.shape[1]]
            if st.banned:  # banned words take no probability mass from the others
                logits[:, list(st.banned)] = -np.inf
            replies.append((_log_softmax(logits), SearchState(new, st.weight, st.banned, st.bias)))
        return replies


@dataclass(frozen=True)
class SearchState:
    """What a search steps for one caption: the decoder state of its beams, the expert weight, banned words, word prior."""

    inner: NpState | _PairState
    weight: float = 0.0
    banned: tuple[int, ...] = ()
    bias: np.ndarray | None = None  # [V], added to every step's scores

    def select(self, index: np.ndarray) -> "SearchState":
        return SearchState(self.inner.select(index), self.weight, self.banned, self.bias)
