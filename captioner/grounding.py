"""Ground captions in what the encoder recognises (open vocabulary).

The decoder learnt its words from Flickr8k: people and dogs outdoors. The frozen
encoder's ImageNet head knows a thousand other things ("brown bear", "street
sign", "refrigerator"). Two mechanisms bring those words into captions:

* **Vocabulary transfer** (Hendricks et al. 2016, "Deep Compositional Captioner"):
  every concept word the decoder never learnt gets an embedding and an output row
  copied from the most frequent learnt noun of its group ("bear" from "dog",
  "train" from "car"), so the language model knows how to use and continue after it. Transferred words
  are never emitted freely; only when a confident concept asks for them.
* **Constrained beam search** (Anderson et al. 2017): when the encoder is
  confident about a concept (class probabilities summed per word >= ``min_prob``)
  and the free caption does not say it, the caption is searched again with that
  word required exactly once, and the other nouns of its group banned, so "a dog
  runs through the grass" becomes "a bear runs through the grass" rather than
  "a dog and a bear".

Below the threshold nothing changes: an unsure concept must not invent objects.

A concept decoder (``DecoderConfig.concept_slots`` > 0) already has every concept
word in its vocabulary and sees the concepts as inputs, so for it no word is
transferred and only the constrained search applies.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Sequence

import numpy as np

from .concepts import NOUN_GROUPS, Concept, class_words, top_concepts
from .vocab import Vocabulary

log = logging.getLogger(__name__)

class Grounder:
    """Extends a loaded decoder with concept words and decides the required word per caption."""

    def __init__(self, decoder: Any, vocab: Vocabulary, min_prob: float = 0.5) -> None:
        """``decoder``: a ``NumpyDecoder`` (run time) or a torch ``CaptionDecoder`` (reference)."""
        self.min_prob = min_prob
        words = sorted({w for w, _ in class_words()})
        groups = {w: g for w, g in class_words()}
        novel = [w for w in words if w not in vocab]
        # the donor of a group is its most frequent learnt noun ("dog" for animals, "man" for people):
        # the vocabulary is ordered by frequency, so the first match wins
        donor_of: dict[str, int] = {}
        for i, w in enumerate(vocab.itos):
            g = NOUN_GROUPS.get(w)
            if g is not None and g not in donor_of:
                donor_of[g] = i
        fallback = donor_of.get("object", vocab.unk_id)
        donors = [donor_of.get(groups[w], fallback) for w in novel]
        self.vocab = Vocabulary(vocab.itos + tuple(novel))
        self.decoder = _extend(decoder, donors)
        self.novel_ids = tuple(range(len(vocab), len(self.vocab)))
        self.word_id = {w: self.vocab.index(w) for w in words}
        # learnt nouns per group, to ban when a concept of that group is required
        self.group_ids: dict[str, set[int]] = {}
        for noun, g in NOUN_GROUPS.items():
            if noun in vocab:
                self.group_ids.setdefault(g, set()).add(vocab.index(noun))
        log.debug("grounding: %d concept words, %d transferred", len(words), len(novel))

    def concept(self, probs: Any) -> Concept | None:
        """The most probable concept word (class probabilities summed per word), if confident.

        ``probs``: [1000] or a segment's [frames, 1000], a NumPy array or a CPU tensor.
        """
        p = np.asarray(probs, dtype=np.float64)
        if p.ndim == 2:  # a segment's frames: their mean probabilities
            p = p.mean(0)
        top = top_concepts(p, k=1)
        if top and top[0].prob >= self.min_prob:
            return top[0]
        return None

    def constraints(self, concept: Concept, free_tokens: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
        """(required ids, extra banned ids) for a second search, or None if the free caption already says it."""
        wid = self.word_id[concept.word]
        if wid in free_tokens or self.says(concept.word, free_tokens):
            return None  # already said, in another form or by another name ("sink" for washbasin)
        banned = set(self.group_ids.get(concept.group, set())) - {wid}
        banned |= set(self.novel_ids) - {wid}
        return (wid,), tuple(sorted(banned))

    def says(self, word: str, tokens: Sequence[int], *, besides: bool = False) -> bool:
        """Whether ``tokens`` name what the concept ``word`` names: in one of its forms ("skiing" for ski,
        "dogs" for dog, "ski mask" for ski), by another name of the same thing (``SAME_THING``: "sink" for
        washbasin), or spelt in two words ("motor cycle" for motorcycle).

        ``besides``: another name, or ``word`` spelt in two, beside ``word`` itself, as a caption that requires
        ``word`` must not hold: "a man is riding a motor cycle on a moped" names one thing twice.
        """
        others = same_thing(word) - {word}
        # another name in its plain forms ("fridges", not "screening" for screen)
        other_forms = frozenset(f for n in others for f in word_forms(n, derived=False))
        forms = word_forms(word) | other_forms
        said = [self.vocab.itos[t] for t in tokens if 0 <= t < len(self.vocab)]
        joined = [a + b for a, b in zip(said, said[1:]) if " " not in a + b]
        if any(j in forms for j in joined):
            return True
        # besides: its own forms are not a second name ("skiing" beside the required "ski")
        single = other_forms if besides else forms
        return any(part in single for w in said for part in (w, *w.split()))


#: Caption words that name the same thing, where a concept word is one of them: the caption that
#: says one says the concept (a small curated list; only words a caption uses for the very thing
#: the ImageNet class shows, and only where the group ban would not stop the second name:
#: "a bathroom with a sink and a washbasin", "a man is riding a motor cycle on a moped").
SAME_THING: tuple[frozenset[str], ...] = tuple(frozenset(g.split(",")) for g in (
    "sink,washbasin",
    "bicycle,bike",
    "moped,motor scooter,scooter,motorcycle,motorbike",
    "television,tv,screen,monitor",
    "refrigerator,fridge",
    "trolley,tram,streetcar",
    "jug,pitcher",
    "bathtub,tub",
    "coffee mug,mug",
))


def same_thing(word: str) -> frozenset[str]:
    """``word`` and the other names ``SAME_THING`` gives the thing it names (``{word}`` where it lists none)."""
    return next((g for g in SAME_THING if word in g), frozenset((word,)))


def word_forms(word: str, derived: bool = True) -> frozenset[str]:
    """``word`` and its inflections: plural, possessive, and with ``derived`` -ing and -er(s) ("ski": skis, skiing,
    skier, ...).

    Whole forms only: a word that merely starts with the concept is another word
    ("catching" is not "cat", "busy" not "bus", "kitchen" not "kit").
    """
    forms = {word, word + "'s"}
    if re.search(r"[^aeiou]y$", word):
        forms.add(word[:-1] + "ies")  # puppy -> puppies
    elif re.search(r"(s|x|z|ch|sh|o)$", word):
        forms.add(word + "es")  # bus -> buses, box -> boxes
    elif word.endswith("fe"):
        forms |= {word + "s", word[:-2] + "ves"}  # knife -> knives
    elif word.endswith("f"):
        forms |= {word + "s", word[:-1] + "ves"}  # wolf -> wolves
    else:
        forms.add(word + "s")
    if not derived:
        return frozenset(forms)
    if word.endswith("e"):
        stem = word[:-1]  # skate -> skating, skater
    elif re.fullmatch(r"[^aeiou]*[aeiou][bdgklmnprt]", word):
        stem = word + word[-1]  # one syllable: drum -> drumming, drummer
    else:
        stem = word
    forms |= {stem + "ing", stem + "er", stem + "ers"}
    return frozenset(forms)


def _extend(decoder: Any, donors: Sequence[int]) -> Any:
    """Append rows for novel words to the embedding and output layers, copied from donor words."""
    if not donors:
        return decoder
    if hasattr(decoder, "extend_vocab"):  # the NumPy decoder
        return decoder.extend_vocab(donors)
    import torch

    idx = torch.tensor(list(donors))
    with torch.no_grad():
        emb = decoder.embed.weight
        new_emb = torch.nn.Embedding(emb.shape[0] + len(donors), emb.shape[1])
        new_emb.weight.copy_(torch.cat([emb, emb[idx]]))
        fc = decoder.fc
        new_fc = torch.nn.Linear(fc.in_features, fc.out_features + len(donors))
        new_fc.weight.copy_(torch.cat([fc.weight, fc.weight[idx]]))
        new_fc.bias.copy_(torch.cat([fc.bias, fc.bias[idx]]))
    decoder.embed, decoder.fc = new_emb, new_fc
    from dataclasses import replace

    decoder.config = replace(decoder.config, vocab_size=new_fc.out_features)
    return decoder
