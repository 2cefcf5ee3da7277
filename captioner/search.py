"""Caption search over any ``step`` function, in NumPy: greedy and beam alike.

Decoders compute steps (``NumpyDecoder.log_probs`` at run time, hand-built toy models
in the tests); this module drives them, so the rules a caption obeys are written
once and hold for every search: no banned word (``<unk>``, a person word the person
detector rules out), never the same word twice in a row, no repeated n-gram, never
empty, a concept word ("said once") at most once, required words exactly once, only
the words a model allows after a word or a pair of words (``follow``: after "is"/"are",
no copied noun: "a woman is green onions"; after "a", no plural: "a sunglasses"; after "a
makeup", a noun: "a makeup tutorial", not "a makeup"), at most ``max_length - 1`` words. Greedy search
(``beam_size`` 1) is the one-beam case of the same rules and reports the same
confidence (geometric-mean word probability).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Callable, Collection, Generator, Mapping, Sequence

import numpy as np

#: ``step(tokens [k], state) -> (log-probs [k, V], state)``; ``state.select(index)`` reorders beams.
StepFn = Callable[[np.ndarray, Any], tuple[np.ndarray, Any]]
#: ``step`` for several searches at once: [(tokens, state), ...] -> [(log-probs, state), ...], same order.
StepManyFn = Callable[[list[tuple[np.ndarray, Any]]], list[tuple[np.ndarray, Any]]]
#: Words that may follow a word: {token: sorted ids of the words NOT allowed after it}, and a pair of words:
#: {(token, token): sorted ids of the only words allowed after the pair} (a short list: an allowed one is stored).
Follow = dict[int | tuple[int, int], np.ndarray]
#: A search in progress: yields (tokens, state) to be stepped, is sent (log-probs, new state),
#: returns the best ``Hypothesis``.
Search = Generator[tuple[np.ndarray, Any], tuple[np.ndarray, Any], "Hypothesis"]


@dataclass(frozen=True)
class Hypothesis:
    """A finished caption: token ids (no <start>/<end>), total log-prob and normalised score.

    A beam search also returns the other captions it finished, best first
    (``alternatives``), so that a caller with knowledge the decoder lacks (the
    segment's search vector: pipeline.py) can choose among them.
    """

    tokens: tuple[int, ...]
    logprob: float
    score: float
    alternatives: tuple["Hypothesis", ...] = field(default=(), compare=False, repr=False)

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


@dataclass(frozen=True)
class _Rules:
    """The word rules of every search (see the module docstring), applied to one step's log-probs."""

    end_id: int
    banned: tuple[int, ...]
    required: frozenset[int]
    once: Mapping[int, frozenset[int]]  # a word said -> the words it rules out (itself, other forms and names)
    no_repeat_ngram: int
    follow: Follow | None = None

    @cached_property
    def _closed_pairs(self) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
        """For each first word of a pair rule, the second words not to say after it: (at any step, those whose
        pair allows only banned words; one step before the last, those too whose pair may not end the caption).

        Either pair would leave no word to say next: the person ban takes every word allowed after "a smoking"
        or "a cheering" (man, audience), and at the last step only <end> may come ("a makeup" then nothing).
        Greedy search then kept the caption as it stood ("... watching a smoking"); beam search dropped the beam.
        """
        banned = set(self.banned)
        dead: dict[int, list[int]] = {}
        open_: dict[int, list[int]] = {}
        for key, only in (self.follow or {}).items():
            if isinstance(key, tuple):
                left = set(only.tolist()) - banned
                if not left:
                    dead.setdefault(key[0], []).append(key[1])
                if self.end_id not in left:
                    open_.setdefault(key[0], []).append(key[1])

        def arrays(pairs: dict[int, list[int]]) -> dict[int, np.ndarray]:
            return {first: np.array(sorted(seconds), dtype=np.int64) for first, seconds in pairs.items()}

        return arrays(dead), arrays(open_)

    def apply(self, logp: np.ndarray, seqs: Sequence[Sequence[int]], last: bool, before_last: bool = False) -> np.ndarray:
        """A copy of ``logp`` [k, V] with every word row ``i`` (continuing ``seqs[i]``) may not say at -inf
        (``last``: the step after which the caption must end; ``before_last``: the one before it)."""
        neg_inf = -np.inf
        logp = np.array(logp, dtype=np.float32)  # a copy: the masks below must not touch the model's output
        if self.banned:
            logp[:, list(self.banned)] = neg_inf
        for i, seq in enumerate(seqs):
            blocked = _blocked(seq, self.no_repeat_ngram)
            if not seq:
                blocked.add(self.end_id)  # an empty caption is never an answer
            have = self.required.intersection(seq)
            blocked |= have  # each required word once
            if self.once:
                for tok in seq:
                    blocked |= self.once.get(tok, frozenset())
            if have != self.required:
                blocked.add(self.end_id)  # only a caption holding every required word may finish
            if blocked:
                logp[i, list(blocked)] = neg_inf
            if self.follow and seq:
                if seq[-1] in self.follow:
                    logp[i, self.follow[seq[-1]]] = neg_inf
                only = self.follow.get(tuple(seq[-2:])) if len(seq) > 1 else None
                if only is not None:
                    kept = logp[i, only]
                    logp[i] = neg_inf
                    logp[i, only] = kept
                closed = self._closed_pairs[1 if before_last else 0].get(seq[-1])
                if closed is not None:
                    logp[i, closed] = neg_inf
        if last:
            # last step: only <end> may follow, so every live caption that may finish does
            forced = np.full_like(logp, neg_inf)
            forced[:, self.end_id] = logp[:, self.end_id]
            logp = forced
        return logp


class OnceMap(dict):
    """Words said at most once, as a word -> the words it rules out once said (itself, other forms and names of the
    same thing: "a man is riding a bike on a bicycle"); made once for a model (``once_groups``), used as it is."""


def once_groups(groups: Collection[Collection[int]]) -> OnceMap:
    """An ``OnceMap`` where each word of a group rules out every word of its group (groups that share a word merge)."""
    of: dict[int, set[int]] = {}
    for group in groups:
        merged = set(group).union(*(of.get(t, set()) for t in group))
        for t in merged:
            of[t] = merged
    return OnceMap({t: frozenset(g) for t, g in of.items()})


def _once_map(once: Sequence[int] | Mapping[int, Collection[int]]) -> Mapping[int, frozenset[int]]:
    """``once`` as an ``OnceMap``: a plain list rules out each word itself."""
    if isinstance(once, OnceMap):
        return once
    if isinstance(once, Mapping):
        return once_groups([{int(t), *map(int, g)} for t, g in once.items()])
    return OnceMap({int(t): frozenset((int(t),)) for t in once})


def search_one(step: StepFn, state: Any, start_id: int, end_id: int, **options: Any) -> Hypothesis:
    """One caption: ``search_steps`` (greedy or beam, by ``beam_size``) driven by ``step``."""
    return run_searches(lambda requests: [step(tokens, st) for tokens, st in requests],
                        [search_steps(state, start_id, end_id, **options)])[0]


def search_many(step_many: StepManyFn, items: Sequence[tuple[Any, Sequence[int], Sequence[int]]],
                start_id: int, end_id: int, **options: Any) -> list[Hypothesis]:
    """Several captions in lock step: ``items`` are (initial state, banned, required) per caption.

    ``options`` (``beam_size``, ``max_length``, ...) are ``search_steps``'s, the same for all.
    """
    return run_searches(step_many, [search_steps(state, start_id, end_id, banned=banned, required=required, **options)
                                    for state, banned, required in items])


def run_searches(step_many: StepManyFn, searches: Sequence[Search]) -> list[Hypothesis]:
    """Drive several searches in lock step, so that one model call serves all their beams.

    ``step_many`` gets (tokens, state) for every search still running and returns their
    (log-probs, new state) in the same order. Searches end at different steps; the
    others go on.
    """
    results: list[Hypothesis | None] = [None] * len(searches)
    pending = {i: next(s) for i, s in enumerate(searches)}
    while pending:
        order = list(pending)
        for i, reply in zip(order, step_many([pending[i] for i in order])):
            try:
                pending[i] = searches[i].send(reply)
            except StopIteration as done:
                results[i] = done.value
                del pending[i]
    return results  # type: ignore[return-value]


def search_steps(state: Any, start_id: int, end_id: int, *, beam_size: int, **options: Any) -> Search:
    """Greedy search for ``beam_size`` 1, else beam search (``beam_steps``); the same rules and options."""
    if beam_size < 1:
        raise ValueError("beam_size must be >= 1")
    if beam_size == 1:
        return greedy_steps(state, start_id, end_id, **options)
    return beam_steps(state, start_id, end_id, beam_size=beam_size, **options)


def greedy_steps(
    state: Any,
    start_id: int,
    end_id: int,
    *,
    max_length: int,
    length_penalty: float = 0.7,
    no_repeat_ngram: int = 2,
    banned: Sequence[int] = (),
    required: Sequence[int] = (),
    once: Sequence[int] | Mapping[int, Collection[int]] = (),
    follow: Follow | None = None,
) -> Search:
    """The most probable word at each step, under the rules beam search obeys (a ``Search``).

    Greedy search cannot plan where a required word goes: it is only kept from
    finishing without it (a constrained search wants ``beam_steps``).
    """
    rules = _Rules(end_id, tuple(banned), frozenset(required), _once_map(once), no_repeat_ngram, follow)
    seq: list[int] = []
    total = 0.0
    tokens = np.array([start_id], dtype=np.int64)
    for t in range(max_length):
        logp, state = yield tokens, state
        row = rules.apply(logp, [seq], last=t == max_length - 1, before_last=t == max_length - 2)[0]
        tok = int(np.argmax(row))
        if row[tok] == -np.inf:  # nothing may follow: the caption so far
            break
        total += float(row[tok])
        if tok == end_id:
            break
        seq.append(tok)
        tokens = np.array([tok], dtype=np.int64)
    return Hypothesis(tuple(seq), total, total / (len(seq) + 1) ** length_penalty)


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
    once: Sequence[int] | Mapping[int, Collection[int]] = (),
    follow: Follow | None = None,
) -> Search:
    """Length-normalised beam search, optionally constrained (Anderson et al. 2017).

    A generator (see ``Search``): it yields the tokens [k] to feed and the state, and
    is sent back the log-probs [k, V] (NumPy) and the new state; ``state`` must have
    ``select(index)`` to reorder/expand beams. A finished
    hypothesis scores ``logprob / (len+1) ** length_penalty``. Every hypothesis
    obeys the rules (``_Rules``): no token from ``banned``, no repeated n-gram of size
    ``no_repeat_ngram``, never the same token twice in a row, never empty, no token
    from ``once`` twice ("a loaf of loaf"), after a token or pair of ``follow`` only the words it allows.

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
    full = frozenset(req)
    rules = _Rules(end_id, tuple(banned), full, _once_map(once), no_repeat_ngram, follow)
    beams: list[tuple[list[int], float]] = [([], 0.0)]
    tokens = np.array([start_id], dtype=np.int64)
    finished: list[Hypothesis] = []
    neg_inf = -np.inf
    for t in range(max_length):
        logp, state = yield tokens, state
        logp = rules.apply(logp, [seq for seq, _ in beams], last=t == max_length - 1, before_last=t == max_length - 2)
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
    ranked = sorted(finished, key=lambda h: -h.score)
    return replace(ranked[0], alternatives=tuple(ranked[1:]))


def score_steps(state: Any, start_id: int, end_id: int, sequences: Sequence[Sequence[int]], *,
                length_penalty: float = 0.7, floor: Sequence[float] | None = None) -> Search:
    """The decoder's score for each of ``sequences`` (captions given, not searched: a ``Search``).

    All of them are fed in lock step from one initial state, each word's log-prob taken
    from the step before it, ``<end>`` last; each scores as a finished beam hypothesis does,
    ``logprob / (len+1) ** length_penalty``, so they compete with the beam's captions on
    equal terms. A word the state bans (log-prob -inf) makes its caption -inf. Returns the
    best, the others as its ``alternatives`` (best first). Captions that begin alike ("a man
    is talking", "a man is singing") share the decoder's steps until they part: one state row
    per distinct prefix, as a beam keeps one per hypothesis.

    ``floor``: the score each caption must reach to be of use to the caller. Log-probs only
    fall as words are added, so a caption whose log-prob so far, normalised by its full
    length, is already below its floor is dropped there (its score -inf): the caller's choice
    is the same, and the decoder is not run for the rest of it.
    """
    if not sequences:
        raise ValueError("no sequences to score")
    rows = [list(s) + [end_id] for s in sequences]
    norms = np.array([len(r) ** length_penalty for r in rows], dtype=np.float64)
    floors = np.full(len(rows), -np.inf) if floor is None else np.asarray(floor, dtype=np.float64)
    totals = np.zeros(len(rows), dtype=np.float64)
    live = np.arange(len(rows))  # the rows still being fed; a row leaves once its <end> is scored
    slot = np.zeros(len(rows), dtype=np.int64)  # the state row (distinct prefix) each live row reads
    tokens = np.array([start_id], dtype=np.int64)
    t = 0
    while True:
        logp, state = yield tokens, state
        nxt = np.array([rows[i][t] for i in live], dtype=np.int64)
        totals[live] += logp[slot, nxt]
        t += 1
        hopeless = totals[live] / norms[live] < floors[live]
        totals[live[hopeless]] = -np.inf
        going = np.array([t < len(rows[i]) for i in live]) & ~hopeless
        live, nxt, slot = live[going], nxt[going], slot[going]
        if not len(live):
            break
        parent = slot  # rows that fed the same state row and now feed the same word share the next one
        _, first, slot = np.unique(parent * (int(nxt.max()) + 1) + nxt, return_index=True, return_inverse=True)
        state = state.select(parent[first])
        tokens = nxt[first]
    hyps = sorted((Hypothesis(tuple(s), float(total), float(total) / (len(s) + 1) ** length_penalty)
                   for s, total in zip(sequences, totals)), key=lambda h: -h.score)
    return replace(hyps[0], alternatives=tuple(hyps[1:]))
