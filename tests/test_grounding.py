"""Open vocabulary: confident ImageNet concepts reach the caption, unsure ones do not."""

from __future__ import annotations

import torch

from captioner.concepts import class_words


def _one_hot(index: int, p: float) -> torch.Tensor:
    probs = torch.full((1000,), (1 - p) / 999)
    probs[index] = p
    return probs


def _index_of(word: str) -> int:
    return next(i for i, (w, _) in enumerate(class_words()) if w == word)


def test_confident_novel_concept_appears_exactly_once(captioner):
    feats = torch.randn(49, 1280).abs()
    bear = _index_of("bear")
    assert "bear" not in captioner.grounder.vocab.itos[: len(captioner.grounder.vocab) - len(captioner.grounder.novel_ids)]
    cap = captioner.caption_features(feats, _one_hot(bear, 0.9))
    words = cap.text.split()
    assert words.count("bear") == 1, cap.text
    assert "<unk>" not in cap.text


def test_unsure_concept_changes_nothing(captioner):
    feats = torch.randn(49, 1280).abs()
    plain = captioner.caption_features(feats)
    unsure = captioner.caption_features(feats, _one_hot(_index_of("bear"), 0.2))
    assert unsure.text == plain.text
    assert "bear" not in plain.text.split()


def test_transferred_words_never_appear_freely(captioner):
    novel = {captioner.vocab.itos[i] for i in captioner.grounder.novel_ids}
    for seed in range(5):
        torch.manual_seed(seed)
        text = captioner.caption_features(torch.randn(49, 1280).abs()).text
        assert not (set(text.split()) & novel) and "<unk>" not in text


def test_concept_already_said_in_another_form_is_not_forced():
    from captioner.concepts import Concept
    from captioner.config import DecoderConfig
    from captioner.decoder import CaptionDecoder
    from captioner.grounding import Grounder
    from captioner.vocab import Vocabulary

    vocab = Vocabulary.build(["a man is skiing with two dogs and a dog"], min_count=1)
    decoder = CaptionDecoder(DecoderConfig(feature_dim=8, embed_dim=8, hidden_dim=8, attention_dim=8, vocab_size=len(vocab)))
    g = Grounder(decoder, vocab)
    ids = lambda text: tuple(g.vocab.index(w) for w in text.split())  # noqa: E731
    assert g.constraints(Concept("ski", "object", 0.9, ("ski",)), ids("a man is skiing")) is None
    assert g.constraints(Concept("dog", "animal", 0.9, ("beagle",)), ids("two dogs")) is None
    rule = g.constraints(Concept("bear", "animal", 0.9, ("brown bear",)), ids("a dog"))
    assert rule is not None and rule[0] == (g.word_id["bear"],)
    assert g.vocab.index("dog") in rule[1]  # same-group noun banned: "bear" replaces "dog"


def _grounder_of(text: str):
    """A Grounder over a tiny vocabulary of ``text``'s words, its caption -> ids, and a concept of a class word."""
    from captioner.concepts import Concept
    from captioner.config import DecoderConfig
    from captioner.decoder import CaptionDecoder
    from captioner.grounding import Grounder
    from captioner.vocab import Vocabulary

    vocab = Vocabulary.build([text], min_count=1)
    decoder = CaptionDecoder(DecoderConfig(feature_dim=8, embed_dim=8, hidden_dim=8, attention_dim=8, vocab_size=len(vocab)))
    g = Grounder(decoder, vocab)
    return (g, lambda caption: tuple(g.vocab.index(w) for w in caption.split()),
            lambda word: next(Concept(w, grp, 0.9, (w,)) for w, grp in class_words() if w == word))


def test_a_word_that_only_starts_with_the_concept_does_not_say_it():
    """"catching" is not "cat", "busy" not "bus": the concept is still required (skiing/dogs still say ski/dog)."""
    g, ids, concept = _grounder_of("a dog is catching a ball on a busy street carrying pants a piece of potato in the "
                                   "kitchen skirt skiing skier dogs buses knives")
    for word, caption in [("cat", "a dog is catching a ball"), ("bus", "a busy street"), ("car", "a dog carrying a ball"),
                          ("pan", "pants"), ("pie", "a piece of potato"), ("pot", "a piece of potato"),
                          ("kit", "in the kitchen"), ("ski", "a skirt")]:
        rule = g.constraints(concept(word), ids(caption))
        assert rule is not None and rule[0] == (g.word_id[word],), (word, caption)
    for word, caption in [("ski", "skiing"), ("ski", "a skier"), ("dog", "dogs"), ("bus", "buses"), ("knife", "knives")]:
        assert g.constraints(concept(word), ids(caption)) is None, (word, caption)


def test_another_name_or_a_split_spelling_says_the_concept():
    """The grounding added a second name for what the caption said: "a bathroom with a sink and a washbasin",
    "a man is riding a motor cycle on a moped". Another name of the same thing (SAME_THING) and a word spelt
    in two count as said: no second search; a constrained caption that says it twice is not taken."""
    g, ids, concept = _grounder_of("a man is riding a motorcycle motor cycle on the road watching tv screen skiing skis "
                                   "in a kitchen with a fridge tub tubes")
    for word, caption in [("moped", "a man is riding a motorcycle"), ("moped", "a man is riding a motor cycle"),
                          ("television", "a man watching tv"), ("monitor", "a screen"),
                          ("refrigerator", "a kitchen with a fridge")]:
        assert g.constraints(concept(word), ids(caption)) is None, (word, caption)
    for word, caption in [("moped", "a man is riding on the road"), ("television", "a man in a kitchen")]:
        rule = g.constraints(concept(word), ids(caption))
        assert rule is not None and rule[0] == (g.word_id[word],), (word, caption)
    # a caption that requires the word must not name it again
    assert g.says("moped", ids("a man is riding a motor cycle on a moped"), besides=True)
    assert g.says("moped", ids("a man is riding a motorcycle on a moped"), besides=True)
    assert not g.says("moped", ids("a man is riding a moped on the road"), besides=True)
    assert not g.says("ski", ids("a man skiing on skis"), besides=True)  # its own forms are no second name
    assert g.says("bathtub", ids("a man in a tub")) and not g.says("bathtub", ids("a man with tubes"))  # tub's plural


def test_the_washbasin_class_is_said_as_sink():
    """ImageNet's washbasin is what captions call a sink (pipelines.concept_words OVERRIDES; the table regenerated)."""
    assert class_words()[896] == ("sink", "object")


def test_a_constrained_caption_that_names_the_concept_twice_is_not_taken(captioner, monkeypatch):
    """The pipeline keeps the free caption when the second search's names the thing again (Grounder.says)."""
    feats = torch.randn(49, 1280).abs()
    plain = captioner.caption_features(feats)
    bear = _one_hot(_index_of("bear"), 0.9)
    assert captioner.caption_features(feats, bear).text.split().count("bear") == 1
    grounder = type(captioner.grounder)
    says = grounder.says
    monkeypatch.setattr(grounder, "says", lambda self, word, tokens, besides=False: besides or says(self, word, tokens))
    assert captioner.caption_features(feats, bear).text == plain.text


def test_when_the_rerank_drops_the_required_word_the_free_choice_stays(captioner, monkeypatch):
    """The retry replaced the free caption and all its alternatives; a consensus candidate the free caption
    had beaten could then win the rerank, with neither the concept nor the free answer ("two dogs running in
    the dirt" for a bear). Where the winner lacks the required word, what the free pool picks is returned."""
    import dataclasses

    feats = torch.randn(49, 1280).abs()
    plain = captioner.caption_features(feats).text
    bear = _one_hot(_index_of("bear"), 0.9)
    bear_id = captioner.vocab.index("bear")
    grounded = captioner.caption_features(feats, bear).text
    assert "bear" in grounded.split() and grounded != plain
    kind = type(captioner)
    rerank = kind._rerank

    def a_candidate_without_the_concept_wins(self, hyp, *args, **kwargs):
        chosen = rerank(self, hyp, *args, **kwargs)
        if bear_id in chosen.tokens:
            return dataclasses.replace(chosen, tokens=tuple(t for t in chosen.tokens if t != bear_id))
        return chosen

    monkeypatch.setattr(kind, "_rerank", a_candidate_without_the_concept_wins)
    assert captioner.caption_features(feats, bear).text == plain
