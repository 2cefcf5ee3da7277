"""The caption decoder: an LSTM with soft attention over a *set* of feature vectors.

Show, Attend and Tell (Xu et al. 2015), with one change that matters for video:
the decoder does not assume a fixed spatial grid. A photo is the 7x7 = 49 vectors
of one frame; a video segment is the vectors of all its sampled frames stacked
(e.g. 8 frames x 49). Attention is a softmax over whatever set it is given, so one
trained decoder serves both, and a padding mask lets segments of different lengths
share a batch.

This is the reference implementation, used for training; ``captioner run`` and
``pipelines.evaluate`` caption with its NumPy twin (``decoder_np.py``, tested to
compute the same steps), which spares a run torch's start-up time and memory, and
``search.py`` drives that twin's steps (greedy or beam). Here, besides training,
only ``greedy``: the fast batched decoding that training uses to pick its best epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .config import DecoderConfig


class Attention(nn.Module):
    """Additive (Bahdanau) attention of the LSTM state over the feature set."""

    def __init__(self, hidden_dim: int, attention_dim: int) -> None:
        super().__init__()
        self.dec = nn.Linear(hidden_dim, attention_dim)
        self.out = nn.Linear(attention_dim, 1)

    def forward(
        self, feats: torch.Tensor, feats_att: torch.Tensor, h: torch.Tensor, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        scores = self.out(torch.tanh(feats_att + self.dec(h).unsqueeze(1))).squeeze(2)  # [B, N]
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        alpha = scores.softmax(dim=1)
        return (feats * alpha.unsqueeze(2)).sum(dim=1), alpha


@dataclass
class DecoderState:
    """Per-sequence recurrent state plus the (beam-expanded) set it attends over.

    ``cids`` are the concept word ids of a concept-conditioned decoder; their
    slots are the last ``cids.shape[1]`` entries of ``feats``.
    """

    h: torch.Tensor
    c: torch.Tensor
    feats: torch.Tensor
    feats_att: torch.Tensor
    mask: torch.Tensor | None
    cids: torch.Tensor | None = None

    def select(self, index: torch.Tensor | slice) -> "DecoderState":
        return DecoderState(
            self.h[index], self.c[index], self.feats[index], self.feats_att[index],
            None if self.mask is None else self.mask[index],
            None if self.cids is None else self.cids[index],
        )


class CaptionDecoder(nn.Module):
    """Attention LSTM decoder. Input features: [B, N, feature_dim] (N vectors per item).

    With ``config.concept_slots`` = K > 0 the decoder also attends over K concept
    words (the encoder's most probable ImageNet concepts, embedded with the
    decoder's own word embedding plus their probability) and a learnt "nothing"
    slot, and can copy a concept word straight into the caption (pointer-generator,
    See et al. 2017): p(w) = (1 - g) p_vocab(w) + g * attention on w's slot. That
    is how a word the photos never taught ("bear", "refrigerator") gets said when
    the encoder is sure of it. Such a decoder returns log-probabilities from
    ``step``; a plain one returns logits. Both are fine for softmax, argmax and
    cross-entropy.
    """

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        if config.vocab_size <= 4:
            raise ValueError("DecoderConfig.vocab_size must be set from the vocabulary")
        self.config = config
        h = config.hidden_dim
        self.feat_proj = nn.Sequential(nn.Linear(config.feature_dim, h), nn.ReLU(), nn.Dropout(config.dropout * 0.5))
        self.enc_att = nn.Linear(h, config.attention_dim)
        self.attention = Attention(h, config.attention_dim)
        self.init_h = nn.Linear(h, h)
        self.init_c = nn.Linear(h, h)
        self.gate = nn.Linear(h, h)
        self.embed = nn.Embedding(config.vocab_size, config.embed_dim)
        self.lstm = nn.LSTMCell(config.embed_dim + h, h)
        self.drop = nn.Dropout(config.dropout)
        self.fc = nn.Linear(h, config.vocab_size)
        if config.concept_slots:
            self.concept_proj = nn.Sequential(nn.Linear(config.embed_dim + 1, h), nn.ReLU())
            self.null_slot = nn.Parameter(torch.zeros(1, 1, h))
            self.copy_gate = nn.Linear(2 * h + config.embed_dim, 1)

    # -- shared pieces -------------------------------------------------------------
    def init_state(
        self, feats: torch.Tensor, mask: torch.Tensor | None = None,
        cids: torch.Tensor | None = None, cprobs: torch.Tensor | None = None,
    ) -> DecoderState:
        """Project the attended set and derive the initial LSTM state from its mean.

        ``feats`` [B, N, C] may have N = 0 (a caption-only training sentence: concepts
        but no picture). ``cids``/``cprobs`` [B, K]: concept word ids (0 = empty slot)
        and probabilities, required by a concept-conditioned decoder.
        """
        proj = self.feat_proj(feats)
        K = self.config.concept_slots
        if K:
            B, N = feats.shape[:2]
            if cids is None or cprobs is None:
                cids = torch.zeros(B, K, dtype=torch.long, device=feats.device)
                cprobs = torch.zeros(B, K, dtype=proj.dtype, device=feats.device)
            cids, cprobs = cids[:, :K], cprobs[:, :K].to(proj.dtype)
            if cids.shape[1] < K:  # fewer concepts than slots: pad with empty ones
                pad = K - cids.shape[1]
                cids = F.pad(cids, (0, pad))
                cprobs = F.pad(cprobs, (0, pad))
            slots = self.concept_proj(torch.cat([self.embed(cids), cprobs.unsqueeze(2)], dim=2))
            proj = torch.cat([proj, self.null_slot.expand(B, 1, -1).to(proj.dtype), slots], dim=1)
            vis = torch.ones(B, N, dtype=torch.bool, device=feats.device) if mask is None else mask
            mask = torch.cat([vis, torch.ones(B, 1, dtype=torch.bool, device=feats.device), cids != 0], dim=1)
        if mask is None:
            mean = proj.mean(dim=1)
        else:
            m = mask.unsqueeze(2).to(proj.dtype)
            mean = (proj * m).sum(1) / m.sum(1).clamp_min(1.0)
        return DecoderState(torch.tanh(self.init_h(mean)), torch.tanh(self.init_c(mean)), proj, self.enc_att(proj),
                            mask, cids if K else None)

    def step(self, tokens: torch.Tensor, state: DecoderState) -> tuple[torch.Tensor, DecoderState, torch.Tensor]:
        """One word: previous tokens [B] -> logits (or log-probs) [B, V], new state, attention weights."""
        context, alpha = self.attention(state.feats, state.feats_att, state.h, state.mask)
        context = torch.sigmoid(self.gate(state.h)) * context
        emb = self.embed(tokens)
        h, c = self.lstm(torch.cat([emb, context], dim=1), (state.h, state.c))
        logits = self.fc(self.drop(h))
        new = DecoderState(h, c, state.feats, state.feats_att, state.mask, state.cids)
        if state.cids is None:
            return logits, new, alpha
        K = state.cids.shape[1]
        on_concepts = alpha[:, -K:]
        copy = on_concepts / on_concepts.sum(1, keepdim=True).clamp_min(1e-9)
        g = torch.sigmoid(self.copy_gate(torch.cat([h, context, emb], dim=1)))
        g = g * (state.cids != 0).any(1, keepdim=True).to(g.dtype)  # nothing to copy: generate
        p = ((1 - g) * logits.softmax(-1)).scatter_add(1, state.cids, g * copy)
        return p.clamp_min(1e-12).log(), new, alpha

    # -- training ------------------------------------------------------------------
    def forward(
        self, feats: torch.Tensor, captions: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor | None = None,
        cids: torch.Tensor | None = None, cprobs: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing. captions: [B, T] starting with <start>; lengths include <start> and <end>.

        Returns logits [B, T-1, V] predicting captions[:, 1:] and attention [B, T-1, N']
        (N' = N, plus 1 + K slots for a concept decoder). Rows are processed only
        while their caption lasts (the batch shrinks as short captions end), which
        saves about a third of the work on Flickr8k.
        """
        order = lengths.argsort(descending=True)
        feats, captions, lengths = feats[order], captions[order], lengths[order]
        mask = None if mask is None else mask[order]
        if cids is not None and cprobs is not None:
            cids, cprobs = cids[order], cprobs[order]
        state = self.init_state(feats, mask, cids, cprobs)
        B, T = captions.shape
        steps = T - 1
        logits = feats.new_zeros(B, steps, self.config.vocab_size)
        alphas = feats.new_zeros(B, steps, state.feats.shape[1])
        for t in range(steps):
            active = int((lengths - 1 > t).sum())
            if active == 0:
                break
            out, sub, alpha = self.step(captions[:active, t], state.select(slice(0, active)))
            logits[:active, t] = out
            alphas[:active, t] = alpha
            state = DecoderState(
                torch.cat([sub.h, state.h[active:]]), torch.cat([sub.c, state.c[active:]]),
                state.feats, state.feats_att, state.mask, state.cids,
            )
        inverse = order.argsort()
        return logits[inverse], alphas[inverse]

    # -- inference -----------------------------------------------------------------
    @torch.inference_mode()
    def greedy(
        self, feats: torch.Tensor, start_id: int, end_id: int, max_length: int,
        banned: Sequence[int] = (), mask: torch.Tensor | None = None,
        cids: torch.Tensor | None = None, cprobs: torch.Tensor | None = None,
    ) -> list[list[int]]:
        """Batched greedy decoding, for training's dev-set model selection (fast: one batch, no search).

        Only <end> first and immediate repeats are ruled out; the captions the tool
        writes come from ``search.py``'s rules (``captioner.pipeline``). Kept apart so
        that selection scores stay comparable across training runs.
        """
        state = self.init_state(feats, mask, cids, cprobs)
        B = feats.shape[0]
        tokens = torch.full((B,), start_id, dtype=torch.long)
        out = torch.zeros(B, max_length, dtype=torch.long)
        done = torch.zeros(B, dtype=torch.bool)
        for t in range(max_length):
            logits, state, _ = self.step(tokens, state)
            if banned:
                logits[:, list(banned)] = float("-inf")
            if t == 0:  # an empty caption is never an answer
                logits[:, end_id] = float("-inf")
            else:  # never the same word twice in a row
                logits[torch.arange(B), tokens] = float("-inf")
            tokens = logits.argmax(-1)
            out[:, t] = tokens
            done |= tokens == end_id
            if bool(done.all()):
                break
        return [row.tolist() for row in out]
