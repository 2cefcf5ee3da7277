"""What the encoder recognises, as caption words (run time; no WordNet needed).

Besides the feature grid the frozen encoder yields ImageNet-1k class
probabilities. Their names ("tabby, tabby cat", "Staffordshire bullterrier",
"entertainment center") are not caption language, so ``data/imagenet_words.tsv``
gives every class a plain caption noun ("cat", "dog", "cabinet") and a coarse
group. The table is generated offline from WordNet 3.0 and caption word counts
by ``python -m pipelines.concept_words``, which documents the rule; it is read
here as plain text.

Groups: person, animal, vehicle, food, plant, furniture, clothing, place, object.
A concept word may only stand in for a caption noun of its own group
(``NOUN_GROUPS``): "bear" for "dog", never for "man".
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

WORDS_FILE = Path(__file__).parent / "data" / "imagenet_words.tsv"
NUM_CLASSES = 1000
GROUPS = ("person", "animal", "vehicle", "food", "plant", "furniture", "clothing", "place", "object")


@dataclass(frozen=True)
class Concept:
    """A caption word the encoder believes is in the picture.

    ``prob`` is the summed probability of all ImageNet classes that map to the
    word (within its group), ``classes`` their ImageNet names that had any
    probability, most probable first.
    """

    word: str
    group: str
    prob: float
    classes: tuple[str, ...]


@dataclass(frozen=True)
class _Table:
    names: tuple[str, ...]  # ImageNet name per class index
    words: tuple[str, ...]  # caption word per class index
    groups: tuple[str, ...]  # group per class index
    keys: tuple[tuple[str, str], ...]  # distinct (word, group), sorted
    key_of_class: np.ndarray  # [1000] index into keys


@lru_cache(maxsize=1)
def _table() -> _Table:
    lines = WORDS_FILE.read_text(encoding="utf-8").splitlines()
    if not lines or lines[0].split("\t") != ["index", "imagenet_name", "word", "group"]:
        raise ValueError(f"{WORDS_FILE}: unexpected header {lines[:1]}")
    rows = [line.split("\t") for line in lines[1:] if line]
    if [int(r[0]) for r in rows] != list(range(NUM_CLASSES)) or any(len(r) != 4 for r in rows):
        raise ValueError(f"{WORDS_FILE}: expected rows 0..{NUM_CLASSES - 1} with 4 columns")
    bad = [r for r in rows if r[3] not in GROUPS or not r[2]]
    if bad:
        raise ValueError(f"{WORDS_FILE}: bad rows {bad[:3]}")
    keys = tuple(sorted({(r[2], r[3]) for r in rows}))
    index = {k: i for i, k in enumerate(keys)}
    return _Table(
        names=tuple(r[1] for r in rows),
        words=tuple(r[2] for r in rows),
        groups=tuple(r[3] for r in rows),
        keys=keys,
        key_of_class=np.array([index[(r[2], r[3])] for r in rows], dtype=np.int64),
    )


def class_words() -> list[tuple[str, str]]:
    """(word, group) for each of the 1,000 classes, in the encoder's output order."""
    t = _table()
    return list(zip(t.words, t.groups))


def top_concepts(probs: Sequence[float] | np.ndarray, k: int = 3, min_prob: float = 0.0) -> list[Concept]:
    """The ``k`` most probable caption words, their class probabilities summed first.

    ImageNet splits what a caption calls one thing into many classes: 118 dog
    breeds, 5 domestic cats, 17 snakes. A photo of a dog spreads its probability
    over the breeds it resembles, so no single class looks confident, while their
    sum for "dog" is. Ranking words by summed probability turns many unsure
    fine-grained guesses into one sure basic-level word. Sums are per (word,
    group), so a homonym ("crane" the bird, "crane" the machine) never adds up.

    ``probs``: the 1,000 softmax probabilities of one image (list, numpy array or
    CPU tensor). Words below ``min_prob`` are left out; ties are broken by word.
    """
    t = _table()
    if hasattr(probs, "detach"):  # a torch tensor
        probs = probs.detach().cpu().numpy()
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    if p.shape != (NUM_CLASSES,):
        raise ValueError(f"expected {NUM_CLASSES} class probabilities, got shape {np.shape(probs)}")
    if not np.all(np.isfinite(p)):
        raise ValueError("class probabilities must be finite")
    sums = np.bincount(t.key_of_class, weights=p, minlength=len(t.keys))
    order = sorted(range(len(t.keys)), key=lambda j: (-sums[j], t.keys[j]))
    out: list[Concept] = []
    for j in order:
        if len(out) >= max(k, 0) or sums[j] < min_prob:
            break
        members = np.flatnonzero((t.key_of_class == j) & (p > 0))
        members = sorted(members, key=lambda i: (-p[i], i))
        word, group = t.keys[j]
        out.append(Concept(word, group, float(sums[j]), tuple(t.names[i] for i in members)))
    return out


def concept_inputs(probs: Sequence[float] | np.ndarray, index: Callable[[str], int], k: int) -> tuple[list[int], list[float]]:
    """The ``k`` most probable concepts as (token ids, summed probabilities) for a concept decoder.

    ``index`` maps a word to its vocabulary id (a concept decoder's vocabulary holds
    every concept word, multi-word ones like "teddy bear" as one token). ``probs``:
    one image's 1,000 probabilities, or a segment's [frames, 1000] (their mean is
    used). The same function feeds training and run time, so both see the same
    inputs. A word in two groups ("crane" the bird and the machine) is one token:
    its probabilities are added.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim == 2:
        p = p.mean(0)
    ids: list[int] = []
    out: list[float] = []
    for c in top_concepts(p, k=2 * k, min_prob=1e-12):  # never a word the encoder gave nothing
        i = index(c.word)
        if i in ids:
            out[ids.index(i)] += c.prob
        elif len(ids) < k:
            ids.append(i)
            out.append(c.prob)
    order = sorted(range(len(ids)), key=lambda j: -out[j])  # merged homonyms may move up
    return [ids[j] for j in order], [min(1.0, out[j]) for j in order]


def _nouns(group: str, words: str) -> dict[str, str]:
    return {w: group for w in words.split()}


#: Common caption nouns (Flickr8k's most frequent, plus COCO's everyday objects) and
#: their group, the same groups as the concept words. A confident concept may
#: replace a caption noun only of its own group ("a dog runs" -> "a bear runs";
#: "a man runs" stays), and the other nouns of that group are the ones it displaces.
NOUN_GROUPS: dict[str, str] = {
    **_nouns("person", """man men woman women boy boys girl girls child children kid kids baby toddler
             people person lady guy guys adult adults player players crowd team couple family skier
             skiers surfer rider riders biker bikers snowboarder skateboarder climber cyclist
             bicyclist motorcyclist hiker swimmer dancer worker groom bride diver"""),
    **_nouns("animal", """dog dogs puppy puppies cat cats kitten horse horses pony bird birds duck ducks
             cow cows bull sheep goat fish animal animals greyhound elephant elephants giraffe
             giraffes zebra zebras bear bears"""),
    **_nouns("vehicle", """car cars truck trucks bus buses bike bikes bicycle bicycles motorcycle
             motorcycles motorbike boat boats kayak canoe raft train trains subway vehicle van taxi
             airplane plane planes jet scooter sled tractor"""),
    **_nouns("food", """food pizza cake sandwich sandwiches bread fruit apple apples banana bananas
             vegetables broccoli donut donuts meal dessert soup"""),
    **_nouns("plant", "tree trees flower flowers plant plants bush bushes leaves weeds"),
    **_nouns("furniture", "chair chairs bench benches table tables couch sofa bed desk shelf cabinet stool"),
    **_nouns("clothing", """shirt shirts jacket jackets hat hats coat dress dresses pants shorts jeans
             uniform uniforms helmet suit sweater sweatshirt vest costume outfit scarf glasses
             sunglasses goggles boots shoes skirt swimsuit wetsuit bikini trunks gloves tie"""),
    **_nouns("place", """street road beach field park building buildings mountain mountains hill lake
             river ocean pool yard city sidewalk playground forest woods house store restaurant room
             bridge track trail path shore cliff desert garden lawn dock stadium church valley
             waterfall stream pond kitchen market shop"""),
    **_nouns("object", """ball balls toy stick frisbee rope sign camera guitar skateboard surfboard
             umbrella bag bottle cup phone cellphone bucket box kite book paper racket bat
             microphone flag net board tire hoop pole wheel computer laptop television tv glass
             knife bowl plate clock skis snowboard drum"""),
}
