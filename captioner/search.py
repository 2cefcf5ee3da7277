"""Beam search over any ``step`` function, in NumPy.

Kept apart from the models so that one search serves the NumPy decoder that
``captioner run`` uses, the torch decoder that training and evaluation use, and
hand-built toy models in the tests: the rules a caption obeys (no ``<unk>``, no
repeated bigram, required concept words exactly once) are written once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Generator, Sequence

import numpy as np

#: ``step(tokens [k], state) -> (log-probs [k, V], state)``; ``state.select(index)`` reorders beams.
StepFn = Callable[[np.ndarray, Any], tuple[np.ndarray, Any]]
#: A search in progress: yields (tokens, state) to be stepped, is sent (log-probs, new state),
#: returns the best ``Hypothesis``.
Search = Generator[tuple[np.ndarray, Any], tuple[np.ndarray, Any], "Hypothesis"]


@dataclass(frozen=True)
class Hypothesis:
    """A finished caption: token ids (no <start>/<end>), total log-prob and normalised score."""

    tokens: tuple[int, ...]
    logprob: float
    score: float

    @property
    def confidence(self) -> float:
        """Geometric-mean token probability: 1 when every word was certain."""
        return math.exp(self.logprob / max(1, len(self.tokens) + 1))


def _blocked(seq: Sequence[int], n: int) -> set[int]:
    """Tokens that would complete an n-gram already present in ``seq`` (and immediate repeats)."""
    out: set[int] = set()
    if seq:
        out.add(seq[-1])
    if n >= 1 and len(seq) >= n:
        prefix = tuple(seq[len(seq) - n + 1 :]) if n > 1 else ()
        for i in range(len(seq) - n + 1):
            if tuple(seq[i : i + n - 1]) == prefix:
                out.add(seq[i + n - 1])
    return out


def _topk(totals: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k largest values per row, best first, and their columns (a partial sort: V is ~5,000)."""
    if k < totals.shape[1]:
        idx = np.argpartition(-totals, k - 1, axis=1)[:, :k]
    else:
        idx = np.broadcast_to(np.arange(totals.shape[1]), totals.shape)
    vals = np.take_along_axis(totals, idx, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(vals, order, axis=1), np.take_along_axis(idx, order, axis=1)


def beam_search(step: StepFn, state: Any, start_id: int, end_id: int, **options: Any) -> Hypothesis:
    """Beam search for one item: ``beam_steps`` driven by ``step``."""
    return run_searches(lambda requests: [step(tokens, st) for _, tokens, st in requests],
                        [beam_steps(state, start_id, end_id, **options)])[0]


def run_searches(step_many: Callable[[list[tuple[int, np.ndarray, Any]]], list[tuple[np.ndarray, Any]]],
                 searches: Sequence[Search]) -> list[Hypothesis]:
    """Drive several searches in lock step, so that one model call serves all their beams.

    ``step_many`` gets (search index, tokens, state) for every search still running
    and returns their (log-probs, new state) in the same order. Searches end at
    different steps; the others go on.
    """
    results: list[Hypothesis | None] = [None] * len(searches)
    pending = {i: next(s) for i, s in enumerate(searches)}
    while pending:
        order = list(pending)
        for i, reply in zip(order, step_many([(i, *pending[i]) for i in order])):
            try:
                pending[i] = searches[i].send(reply)
            except StopIteration as done:
                results[i] = done.value
                del pending[i]
    return results  # type: ignore[return-value]


def beam_steps(
    state: Any,
    start_id: int,
    end_id: int,
    *,
    beam_size: int,
    max_length: int,
    length_penalty: float = 0.7,
    no_repeat_ngram: int = 2,
    banned: Sequence[int] = (),
    required: Sequence[int] = (),
    once: Sequence[int] = (),
) -> Search:
    """Length-normalised beam search, optionally constrained (Anderson et al. 2017).

    A generator (see ``Search``): it yields the tokens [k] to feed and the state, and
    is sent back the log-probs [k, V] (NumPy) and the new state; ``state`` must have
    ``select(index)`` to reorder/expand beams. A finished
    hypothesis scores ``logprob / (len+1) ** length_penalty``. Every hypothesis
    obeys: no token from ``banned``, no repeated n-gram of size ``no_repeat_ngram``,
    never the same token twice in a row, never empty, no token from ``once`` twice
    ("a loaf of loaf").

    With ``required`` tokens, beams are kept in separate groups by which required
    tokens they already contain (the constraint automaton's states), each group with
    its own ``beam_size`` places, and only the group that contains them all may
    finish. A required word therefore competes only with other placements of itself
    and lands where the language model likes it, not wherever the beam runs out of
    room. Each required token appears exactly once.
    """
    if beam_size < 1:
        raise ValueError("beam_size must be >= 1")
    req = tuple(dict.fromkeys(required))
    once_set = frozenset(once)
    full = frozenset(req)
    beams: list[tuple[list[int], float]] = [([], 0.0)]
    tokens = np.array([start_id], dtype=np.int64)
    finished: list[Hypothesis] = []
    banned_list = list(banned)
    neg_inf = -np.inf
    for t in range(max_length):
        logp, state = yield tokens, state
        logp = np.array(logp, dtype=np.float32)  # a copy: the masks below must not touch the model's output
        if banned_list:
            logp[:, banned_list] = neg_inf
        for i, (seq, _) in enumerate(beams):
            blocked = _blocked(seq, no_repeat_ngram)
            if not seq:
                blocked.add(end_id)  # an empty caption is never an answer
            have = full.intersection(seq)
            blocked |= have  # each required word once
            if once_set:
                blocked |= once_set.intersection(seq)
            if have != full:
                blocked.add(end_id)  # only a beam holding every required word may finish
            if blocked:
                logp[i, list(blocked)] = neg_inf
        if t == max_length - 1:
            # last step: only <end> may follow, so every live beam that may finish does
            forced = np.full_like(logp, neg_inf)
            forced[:, end_id] = logp[:, end_id]
            logp = forced
        totals = np.array([sc for _, sc in beams], dtype=np.float32)[:, None] + logp  # [k, V]
        vocab = logp.shape[1]
        # candidates per constraint state: the k best continuations of each beam suffice
        groups: dict[frozenset, list[tuple[float, int, int]]] = {}
        k_each = min(vocab, beam_size * 2 + len(req))
        top_vals, top_idx = _topk(totals, k_each)
        for parent, (vals, idxs) in enumerate(zip(top_vals.tolist(), top_idx.tolist())):
            seq = beams[parent][0]
            for score, tok in zip(vals, idxs):
                if score == neg_inf:
                    break
                key = full.intersection(seq) | ({tok} & full)
                groups.setdefault(key, []).append((score, parent, tok))
        # make sure each required token gets a chance to be placed from every beam
        for parent, (seq, _) in enumerate(beams):
            for tok in full - set(seq):
                score = float(totals[parent, tok])
                if score > neg_inf:
                    key = full.intersection(seq) | {tok}
                    if (score, parent, tok) not in groups.get(key, []):
                        groups.setdefault(key, []).append((score, parent, tok))
        new_beams: list[tuple[list[int], float]] = []
        parents: list[int] = []
        for key, cands in groups.items():
            kept = 0
            for score, parent, tok in sorted(cands, key=lambda c: -c[0]):
                seq = beams[parent][0]
                if tok == end_id:
                    finished.append(Hypothesis(tuple(seq), score, score / (len(seq) + 1) ** length_penalty))
                else:
                    new_beams.append((seq + [tok], score))
                    parents.append(parent)
                    kept += 1
                if kept == beam_size:
                    break
        # stop when no live beam that could still finish can beat the best finished one
        if finished and len(finished) >= beam_size:
            best_done = max(h.score for h in finished)
            bound = (max_length + 1) ** length_penalty if length_penalty > 0 else 1.0
            if all(sc / bound <= best_done for _, sc in new_beams):
                break
        if not new_beams:
            break
        beams = new_beams
        state = state.select(np.array(parents, dtype=np.int64))
        tokens = np.array([seq[-1] for seq, _ in beams], dtype=np.int64)
    if not finished:  # no hypothesis could satisfy the constraints: return the best live beam
        seq, score = max(beams, key=lambda b: b[1])
        return Hypothesis(tuple(seq), score, score / (len(seq) + 1) ** length_penalty)
    return max(finished, key=lambda h: h.score)
