"""Visual concepts learnt from captions: which caption words a picture shows (run time, NumPy only).

ImageNet-1k has no person, no kitchen, no stage and no cartoon, so its class
probabilities (concepts.py) cannot tell the decoder that nobody is in a picture.
These detectors can: one logistic unit per caption word ("man", "kitchen",
"cartoon", "playing", ...) over each of the encoder's 7x7 grid cells, pooled by
noisy-OR, P(word | picture) = 1 - prod_cells (1 - sigmoid(w . x_cell + b)):
multiple-instance learning (Fang et al. 2015, "From captions to visual concepts
and back"), where a word is in the picture if any cell shows it. They are trained
on every paired picture (``pipelines/train_detectors.py``) with "the captions
mention the word" as the label, and calibrated on held-out pictures (Platt
scaling per word, so a probability means what it says). A video segment's
probability of a word is the mean over its frames.

The decoder attends over the most probable detected words (its concept slots)
and the pipeline does not let it say a person word when P(person) is low
(``DetectorConfig`` thresholds, chosen on validation data).

Stored beside the decoder as ``detectors.safetensors`` (``weight`` [C, D],
``bias`` [D], ``platt_a`` [D], ``platt_b`` [D]); its words, thresholds and
checksum are in ``model.json`` under ``"detectors"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection, Mapping, Sequence

import numpy as np

from .errors import ModelError

TENSORS = "detectors.safetensors"
#: Cells of one frame's grid (7 x 7): frames are told apart in a stacked segment by this.
CELLS = 49

#: Caption words that name a person. A caption may say one only if the "person" detector
#: (any of these in the captions) is sure enough (``presence_threshold``). Judged word by word
#: over the shipped vocabulary; tests/test_detect.py holds every other word of it that looks like
#: one (agent nouns, -man, possessives) to a reviewed list, so a new vocabulary's are decided, not
#: missed. Left out: words with a common other sense ("cook" and "judge" are verbs, "boxer" a dog,
#: "pitcher" and "batter" things, "fighter" a plane, "racer" a car, "emperor" a penguin,
#: "commuter" a train), the pronouns that name things too (they, them, their, themselves), the
#: narrator's (i, you, we), characters that need not be people (ninja, hero, santa, zombie) and names.
PERSON_WORDS = frozenset("""man men woman women boy boys girl girls child children kid kids baby babies toddler
toddlers people person persons lady ladies guy guys adult adults player players crowd team couple family
skier skiers surfer surfers rider riders biker bikers snowboarder skateboarder climber cyclist bicyclist
motorcyclist hiker swimmer swimmers dancer dancers worker workers groom bride diver someone somebody gentleman
gentlemen he she his her him actor actress actors singer singers chef host anchor reporter athlete
athletes teenager teenagers teen teens boyfriend girlfriend mother father mom dad son daughter player's
policeman officer soldier soldiers student students audience fans spectators
male males female females human humans individual individuals peoples mans womans someones somone someoen
everyone youngster youth youths infant himself herself aman
man's woman's person's someone's lady's boy's girl's child's children's childs childrens men's women's mens
womens he's artist's team's baby's
mothers wife husband brother brothers sister grandmother parent parents families couples twins friend friends
partner lovers brides bridesmaid bridesmaids groomsmen
driver drivers chefs waiter waitress bartender teacher teachers nurse nurses doctor doctors dentist surgeon
scientist scientists professor lecturer instructor trainer coach coaches engineer engineers mechanic mechanics
technician technicians carpenter farmer farmers fisherman hunter hunters pilot pilots sailor firefighter
fireman policemen cop cops officers sergeant solider vendor vendors customer customers employee employees
personnel builders miners barber beautician stylist designer director directors manager assistant attendant
volunteer businessman businessmen leader leaders president politician politicians senator minister priest
priests monk pope trucker nerd duchess
performer performers musician musicians guitarist drummer soloist rapper dj comedian ventriloquist actresses
hosts announcer announcers commentator commentators narrator presenter newscaster reporters journalist
journalists interviewer contestant contestants participants competitor competitors opponent opponents gamer
gymnast wrestler wrestlers fighters fencers footballer footballers goalie goalkeeper quarterback batsman
baseman catcher catchers hitter bowler golfer umpire referee jockey jockeys rowers skater skaters runner
runners jogger surfers skiiers climbers hikers bicyclists bicycler cyclists motorcyclists skateboarders
snowboarders boarder boarders waterskier wakeboarder windsurfer kayaker rollerblader bodybuilder lifter divers
cheerleader cheerleaders sportsman backpacker teammate teammates member members teams crew gang troupe cowboy
cowboys cowgirl clown clowns
onlookers visitors tourist tourists guest guests pedestrian pedestrians passenger passengers commuters diners
crowds celebrity celebrities cameraman photographer photographers paparazzi artist artists author writer
blogger graduates candidate candidates prisoner prisoners criminal terrorist owner owners handlers settlers
judges""".split()) | {"baseball player"}  # a vocabulary entry of two words (an ImageNet class)

#: Words said only of people, not naming one: banned with ``PERSON_WORDS`` when nobody is
#: visible (else the noun's ban leaves "a young blonde haired bird"), but not counted as naming a
#: person (training labels, evaluate's invented-person measure). "haired" stays: "a long haired
#: dog"; so do "bald" (eagle), "teenage" (mutant ninja turtles) and "pregnant".
PERSON_ATTRIBUTES = frozenset("""blonde blond brunette redheaded bearded shirtless topless naked scantily barefoot
barefooted elderly shirted blindfolded caucasian""".split())


@dataclass(frozen=True)
class PresenceHead:
    """P(a person is visible) in a picture or segment: a small MLP over each frame's mean and max cell.

    The person detector is one linear unit per cell; on web photos (Conceptual
    Captions held-out) this head, trained on the same labels, ranks better (AP 72 ->
    ~78, pipelines/train_presence.py), so presence-aware decoding asks it instead.
    A segment's probability is the mean over its frames.
    """

    mean: np.ndarray  # [2C]
    std: np.ndarray  # [2C]
    w1: np.ndarray  # [2C, H]
    b1: np.ndarray  # [H]
    w2: np.ndarray  # [H]
    b2: float
    threshold: float  # under it, no person word is said

    def prob(self, feats: np.ndarray) -> float:
        """Stacked cells [F*49, C] (or [F, 49, C]) -> P(person)."""
        f = np.asarray(feats, dtype=np.float32)
        if f.ndim == 2:
            f = f.reshape(-1, CELLS, f.shape[1])
        x = (np.concatenate([f.mean(1), f.max(1)], axis=1) - self.mean) / self.std
        z = np.maximum(x @ self.w1 + self.b1, 0.0) @ self.w2 + self.b2
        return float((1.0 / (1.0 + np.exp(-z))).mean())


PRESENCE_TENSORS = "presence.safetensors"


def save_presence(folder: Path, head: PresenceHead) -> dict:
    """Write ``presence.safetensors``; returns its entry for ``model.json``'s detectors (``"presence"``)."""
    from .weights import save_tensors

    tensors = {"mean": head.mean.astype(np.float32), "std": head.std.astype(np.float32),
               "w1": head.w1.astype(np.float16), "b1": head.b1.astype(np.float32),
               "w2": head.w2.astype(np.float32), "b2": np.array([head.b2], np.float32)}
    return {"sha256": save_tensors(folder, PRESENCE_TENSORS, tensors), "threshold": head.threshold}


def load_presence(folder: Path, entry: Mapping | None) -> PresenceHead | None:
    """The detectors' presence head, checksum verified, or None when ``entry`` lists none."""
    if not entry:
        return None
    from .weights import load_tensors

    t = load_tensors(folder, PRESENCE_TENSORS, entry, "a presence head")  # float32
    try:
        head = PresenceHead(t["mean"], t["std"], t["w1"], t["b1"], t["w2"], float(t["b2"][0]), float(entry["threshold"]))
        if not (head.w1.shape == (len(head.mean), len(head.b1)) and head.w2.shape == head.b1.shape == (head.w1.shape[1],)
                and head.std.shape == head.mean.shape):
            raise ValueError("shapes do not chain")
        return head
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise ModelError(f"{Path(folder) / PRESENCE_TENSORS}: not a presence head ({exc.__class__.__name__}: {str(exc)[:100]})") from None


@dataclass(frozen=True)
class Detectors:
    """Calibrated word detectors over grid cells (see the module docstring)."""

    words: tuple[str, ...]
    weight: np.ndarray  # [C, D] float32
    bias: np.ndarray  # [D]
    platt_a: np.ndarray  # [D]: calibrated logit = a * logit(noisy-OR) + b
    platt_b: np.ndarray  # [D]
    presence_threshold: float = 0.0  # P(person) under which no person word is said (0 = never banned)
    # optional low-rank factor: cell scores are (x @ basis) @ weight, weight then [r, D] (pipelines.detector_rank)
    basis: np.ndarray | None = None
    # other words with a threshold of their own: under it the word (and its plural) is not said,
    # as person words under ``presence_threshold`` (pipelines.word_thresholds chooses them)
    word_thresholds: Mapping[str, float] = field(default_factory=dict)
    # asked instead of the "person" unit and ``presence_threshold`` when present (PresenceHead)
    presence: PresenceHead | None = None

    def __post_init__(self) -> None:
        d = len(self.words)
        if self.weight.ndim != 2 or self.weight.shape[1] != d or any(a.shape != (d,) for a in
                                                                      (self.bias, self.platt_a, self.platt_b)):
            raise ModelError(f"detectors: tensors do not match {d} words")
        if self.basis is not None and (self.basis.ndim != 2 or self.basis.shape[1] != self.weight.shape[0]):
            raise ModelError("detectors: basis does not match weight")
        unknown = set(self.word_thresholds) - set(self.words)
        if unknown:
            raise ModelError(f"detectors: thresholds for words without a detector: {', '.join(sorted(unknown)[:5])}")

    @property
    def feature_dim(self) -> int:
        return int((self.weight if self.basis is None else self.basis).shape[0])

    def low_rank(self, rank: int) -> "Detectors":
        """A copy whose cell scores go through a rank-``rank`` factorisation of the weights (truncated SVD).

        Same words, bias and calibration; at rank 192 the cell scores cost about half the
        multiply-adds, at a small cost in accuracy (pipelines.detector_rank measures both).
        """
        if self.basis is not None or rank >= min(self.weight.shape):
            return self
        u, s, vt = np.linalg.svd(self.weight.astype(np.float64), full_matrices=False)
        return Detectors(self.words, vt[:rank].astype(np.float32), self.bias, self.platt_a, self.platt_b,
                         self.presence_threshold, (u[:, :rank] * s[:rank]).astype(np.float32), self.word_thresholds,
                         self.presence)

    def person_absent(self, feats: np.ndarray, probs: np.ndarray) -> bool:
        """Whether nobody is visible: the presence head under its threshold, else P(person) under ``presence_threshold``."""
        if self.presence is not None:
            return self.presence.prob(feats) < self.presence.threshold
        return self.presence_threshold > 0 and float(probs[self.index("person")]) < self.presence_threshold

    def index(self, word: str) -> int:
        return self.words.index(word)

    def frame_probs(self, grids: np.ndarray) -> np.ndarray:
        """Calibrated P(word) per frame: grids [F, 49, C] (or one [49, C]) -> [F, D]."""
        g = np.asarray(grids, dtype=np.float32)
        if g.ndim == 2:
            g = g[None]
        if g.ndim != 3 or g.shape[2] != self.feature_dim:
            raise ValueError(f"expected [frames, cells, {self.feature_dim}] features, got {g.shape}")
        z = (g if self.basis is None else g @ self.basis) @ self.weight + self.bias  # [F, cells, D]
        # log(1 - sigmoid(z)) = -softplus(z); noisy-OR: P = 1 - exp(-sum softplus)
        s = np.logaddexp(0.0, z).sum(1)
        p = -np.expm1(-s)
        logit = np.log(np.clip(p, 1e-7, 1 - 1e-7)) - np.log(np.clip(1 - p, 1e-7, 1.0))
        return 1.0 / (1.0 + np.exp(-(self.platt_a * logit + self.platt_b)))

    def probs(self, feats: np.ndarray) -> np.ndarray:
        """P(word) for a picture or a video segment: stacked cells [F*49, C] -> [D] (mean over frames)."""
        f = np.asarray(feats, dtype=np.float32)
        if f.ndim == 2:
            if f.shape[0] % CELLS:
                raise ValueError(f"{f.shape[0]} feature vectors are not whole {CELLS}-cell frames")
            f = f.reshape(-1, CELLS, f.shape[1])
        return self.frame_probs(f).mean(0)

    def top(self, probs: np.ndarray, k: int, exclude: Sequence[str] = ()) -> list[tuple[str, float]]:
        """The ``k`` most probable words (ties by word), leaving out ``exclude``."""
        skip = set(exclude)
        order = sorted(range(len(self.words)), key=lambda j: (-float(probs[j]), self.words[j]))
        return [(self.words[j], float(probs[j])) for j in order if self.words[j] not in skip][:k]


def word_forms(word: str, vocab_index) -> set[int]:
    """Token ids of a detector word and its plural (detector words are singular: "dog" covers "dogs")."""
    forms = {word, word + "s", word + "es"} | ({word[:-1] + "ies"} if word.endswith("y") else set())
    return {vocab_index(f) for f in forms}


@dataclass(frozen=True)
class AbsentWords:
    """Presence-aware decoding: the token ids a caption may not say, given what the detectors see.

    Person words when the presence head says nobody is there; any other word under its
    own threshold (``Detectors.word_thresholds``). Shared by the run-time pipeline and
    self-critical training, so training samples only captions the tool could say.
    """

    detectors: Detectors
    person_ids: tuple[int, ...]
    word_bans: tuple[tuple[int, float, tuple[int, ...]], ...]  # (detector index, threshold, token ids)

    @classmethod
    def build(cls, det: Detectors, vocab_index, unk_id: int, with_person: Collection[str] = ()) -> "AbsentWords":
        """``with_person``: words banned with the person words, the model's ``grammar.before_person`` (words the
        training captions put almost only before a person word: "young", "elderly"), else the noun's ban leaves
        "a young little talking"."""
        person: tuple[int, ...] = ()
        if "person" in det.words and (det.presence_threshold > 0 or det.presence is not None):
            words = PERSON_WORDS | PERSON_ATTRIBUTES | set(with_person)
            person = tuple(sorted({vocab_index(w) for w in words} - {unk_id}))
        bans = tuple((det.index(w), t, ids) for w, t in sorted(det.word_thresholds.items())
                     if (ids := tuple(sorted(word_forms(w, vocab_index) - {unk_id}))))
        return cls(det, person, bans)

    def __call__(self, feats: np.ndarray, detected: np.ndarray) -> tuple[int, ...]:
        """Ids banned for a picture or segment: its stacked cells [F*49, C] and their ``Detectors.probs``."""
        out = self.person_ids if self.person_ids and self.detectors.person_absent(feats, detected) else ()
        for j, threshold, ids in self.word_bans:
            if detected[j] < threshold:
                out = out + ids
        return out


def save_detectors(folder: Path, det: Detectors, extra: Mapping | None = None) -> dict:
    """Write ``detectors.safetensors`` into a model folder; returns the manifest entry for ``model.json``."""
    from .weights import save_tensors

    tensors = {"weight": det.weight.astype(np.float16), "bias": det.bias.astype(np.float32),
               "platt_a": det.platt_a.astype(np.float32), "platt_b": det.platt_b.astype(np.float32)}
    if det.basis is not None:
        tensors["basis"] = det.basis.astype(np.float16)
    return {"words": list(det.words), "sha256": save_tensors(folder, TENSORS, tensors),
            "presence_threshold": det.presence_threshold,
            **({"word_thresholds": dict(det.word_thresholds)} if det.word_thresholds else {}), **dict(extra or {})}


def load_detectors(folder: Path, manifest: Mapping) -> Detectors | None:
    """The model's detectors, checksum verified, or None for a model trained without them."""
    entry = manifest.get("detectors")
    if not entry:
        return None
    from .weights import load_tensors

    path = Path(folder) / TENSORS
    t = load_tensors(folder, TENSORS, entry, "detectors")  # float32
    presence = load_presence(Path(folder), entry.get("presence"))  # its errors name its own file
    try:
        return Detectors(tuple(entry["words"]), t["weight"], t["bias"], t["platt_a"], t["platt_b"],
                         float(entry.get("presence_threshold", 0.0)), t.get("basis"),
                         {str(w): float(v) for w, v in dict(entry.get("word_thresholds") or {}).items()},
                         presence)
    except (KeyError, ValueError, TypeError) as exc:
        raise ModelError(f"{path}: does not match model.json ({exc.__class__.__name__}: {str(exc)[:100]})") from None
    except ModelError as exc:  # the tensors against model.json's words, or its thresholds: named no file
        raise ModelError(f"{path}: does not match model.json ({str(exc).removeprefix('detectors: ')})") from None


def describe(entry: Mapping) -> str:
    """One line for ``captioner info``."""
    if entry.get("presence"):
        person = f", person words need the presence head's P(person) >= {float(entry['presence']['threshold']):.3g}"
    elif entry.get("presence_threshold"):
        person = f", person words need P(person) >= {float(entry['presence_threshold']):.3g}"
    else:
        person = ""
    others = f", {len(entry['word_thresholds'])} other words need their detector's" if entry.get("word_thresholds") else ""
    return f"{len(entry.get('words', []))} concept detectors learnt from captions{person}{others}"




def concept_inputs(det: Detectors | None, det_probs: np.ndarray | None, imagenet_probs: np.ndarray | None,
                   index, k: int, detector_slots: int) -> tuple[list[int], list[float]]:
    """The decoder's K concept slots: the ``detector_slots`` most probable detected words, then ImageNet words.

    Detected words come first because they cover what ImageNet cannot name (people,
    places, actions, "cartoon"); the remaining slots take the encoder's own ImageNet
    words ("piano", "cat"), which are finer. A word in both keeps the larger
    probability. ``index`` maps a word to its vocabulary id; words without one are
    skipped. The same function feeds training and run time.
    """
    from .concepts import concept_inputs as imagenet_inputs

    ids: list[int] = []
    ps: list[float] = []
    unk = index("<unk>")
    if det is not None and det_probs is not None and detector_slots:
        for word, p in det.top(det_probs, 2 * detector_slots):
            i = index(word)
            if i != unk and i not in ids and len(ids) < detector_slots:
                ids.append(i)
                ps.append(p)
    if imagenet_probs is not None and k > len(ids):
        for i, p in zip(*imagenet_inputs(imagenet_probs, index, k)):
            if i in ids:
                ps[ids.index(i)] = max(ps[ids.index(i)], p)
            elif len(ids) < k:
                ids.append(i)
                ps.append(p)
    order = sorted(range(len(ids)), key=lambda j: -ps[j])
    return [ids[j] for j in order], [ps[j] for j in order]
