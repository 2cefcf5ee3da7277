"""The verb-slot and article rules: after "is"/"are", and after "a"/"an", only the words the training text puts there
(pipelines/grammar.py)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from captioner.config import CaptionConfig, DecodingConfig
from captioner.search import search_one
from captioner.vocab import Vocabulary, follow_rules
from captioner.weights import update_manifest
from pipelines.grammar import after_article, after_be, before_person

from conftest import TINY_WORDS, make_tiny_model
from test_model import END, START, ToyState, _toy_step


def test_after_be_keeps_the_words_that_follow_is_in_a_large_share_of_their_uses():
    caps = (["a man is cooking noodles"] * 6 + ["a woman is singing"] * 5 + ["people are dancing"] * 5
            + ["a man is people"] + ["people watch a man"] * 300 + ["the grass is green"] * 5
            + ["a green car"] * 10)
    words = after_be(caps, min_count=5, min_share=0.1)
    assert words == ["cooking", "dancing", "green", "singing"]  # "people": 1 of 306 uses; "green" 5 of 15
    assert "green" not in after_be(caps, min_count=5, min_share=0.5)
    assert after_be(caps, min_count=7, min_share=0.0) == []


def test_follow_rules_block_every_other_word_and_end_after_is_and_are():
    vocab = Vocabulary.build(["a man is cooking noodles", "people are eating"], min_count=1)
    rules = follow_rules(vocab, {"after_be": ["cooking", "eating", "not-in-vocab"]})
    assert set(rules) == {vocab.index("is"), vocab.index("are")}
    allowed = set(range(len(vocab))) - set(rules[vocab.index("is")].tolist())
    assert allowed == {vocab.index("cooking"), vocab.index("eating")}  # <end> too is blocked
    assert follow_rules(vocab, {}) is None and follow_rules(vocab, {"after_be": []}) is None


@pytest.mark.parametrize("beam_size", [1, 3])
def test_search_after_is_says_only_an_allowed_word(beam_size):
    # 4 = "is"; the model's favourite after it is 5 (a copied noun), then 6 (a verb)
    table = {START: {4: 1.0}, 4: {5: 0.6, 6: 0.3, END: 0.1}, 5: {END: 1.0}, 6: {END: 1.0}}
    step = _toy_step(table, 8)
    free = search_one(step, ToyState(np.array([START])), START, END, beam_size=beam_size, max_length=5)
    assert free.tokens == (4, 5)
    blocked = np.array([t for t in range(8) if t != 6])
    ruled = search_one(step, ToyState(np.array([START])), START, END, beam_size=beam_size, max_length=5,
                       follow={4: blocked})
    assert ruled.tokens == (4, 6)


def test_after_article_bans_plurals_and_lets_a_modifier_go_on_only_as_the_captions_do():
    caps = (["a man in sunglasses"] * 60 + ["a woman applies makeup"] * 60 + ["a makeup tutorial"] * 3
            + ["a makeup artist"] * 2 + ["a makeup to her face"] + ["she makes dough"] * 40 + ["a dough"] * 3)
    rule = after_article(caps, min_uses=30)
    # judged: the words used 30 times or more; "a", "in", "sunglasses" ... never follow "a"
    assert rule["banned"] == ["a", "applies", "in", "makes", "she", "sunglasses"]
    # "makeup" after "a" in 6 of 66 uses: said there only as "a makeup tutorial" or "a makeup artist" (the one
    # "a makeup to" is under min_next); "a dough" ends a caption in 3 of 43 uses; "man" and "woman" follow "a" in
    # all their uses, and in these captions always go on with one word (a phrase's first word, below)
    assert rule["then"] == {"dough": ["<end>"], "makeup": ["artist", "tutorial"], "man": ["in"], "woman": ["applies"]}


def test_after_article_a_word_that_begins_a_few_phrases_there_goes_on_only_as_they_do():
    """"a swimming" is said 155 of 175 times as "a swimming pool": free after "a" (it follows "a" in a large
    share of its uses), the model said "a person is making a swimming cut into pieces". A noun goes on in many
    ways, and ends captions."""
    caps = (["a swimming pool is blue"] * 40 + ["a swimming suit"] * 3 + ["a swimming race"] + ["a girl is swimming"] * 10
            + ["a car is red"] * 10 + ["a car drives"] * 10 + ["a man in a car"] * 10 + ["a car and a bus"] * 10)
    rule = after_article(caps, min_uses=30)
    assert rule["then"]["swimming"] == ["pool", "suit"]  # "race" once: under min_next
    assert "car" not in rule["then"] and "car" not in rule["banned"]  # a quarter of "a car" end the caption
    # under min_after uses after "a", a word is not judged by its phrases
    assert "swimming" not in after_article(caps, min_uses=30, min_after=50)["then"]


def test_after_article_bans_a_rare_plural_whose_singular_follows_it():
    """"sneakers" (under min_uses uses) could not be judged by its share and stayed free: "a man in a sneakers".
    Never after "a" itself, with a singular said there freely, it is banned; a rare word that is not such a
    plural, or one the captions do put after "a", is not."""
    caps = (["a sneaker on a shelf"] * 40 + ["she wears sneakers"] * 5 + ["a berry and a pie"] * 40 + ["two berries"] * 4
            + ["a glass"] * 40 + ["the glasses"] * 4 + ["a news report"] * 4 + ["the news"] * 3 + ["old pants"] * 5)
    banned = after_article(caps, min_uses=30)["banned"]
    assert {"sneakers", "berries"} <= set(banned)  # "sneaker" and "berry" follow "a" in all their uses
    assert "news" not in banned  # after "a" 4 times
    assert "pants" not in banned  # no "pant"
    assert "glasses" in banned  # "glass" + "es"
    assert "sneakers" not in after_article(caps, min_uses=30, min_plural=6)["banned"]  # 5 uses: too rare


def test_follow_rules_ban_words_after_a_and_an_and_keep_a_modifier_before_its_nouns():
    vocab = Vocabulary.build(["a man in sunglasses an apple a makeup tutorial artist"], min_count=1)
    rules = follow_rules(vocab, {"after_article": {"banned": ["sunglasses", "not-in-vocab"],
                                                   "then": {"makeup": ["tutorial", "<end>"], "nothing": ["man"]}}})
    a, an, makeup = vocab.index("a"), vocab.index("an"), vocab.index("makeup")
    assert set(rules) == {a, an, (a, makeup), (an, makeup)}
    assert rules[a].tolist() == rules[an].tolist() == [vocab.index("sunglasses")]
    assert sorted(rules[(a, makeup)].tolist()) == sorted([vocab.index("tutorial"), vocab.end_id])
    assert follow_rules(vocab, {"after_article": {"banned": [], "then": {}}}) is None
    # a modifier with nothing listed after it (189 of the shipped 452) is banned after a/an, not a pair with no
    # word allowed after it (the search then kept "a man is holding a buildings")
    empty = follow_rules(vocab, {"after_article": {"banned": [], "then": {"artist": [], "apple": ["not-in-vocab"]}}})
    assert set(empty) == {a, an} and empty[a].tolist() == sorted([vocab.index("artist"), vocab.index("apple")])


@pytest.mark.parametrize("beam_size", [1, 3])
def test_search_after_a_pair_says_only_an_allowed_word(beam_size):
    # 4 = "a", 5 = "makeup": the model likes "a makeup" and the end; "a makeup" + 6 ("tutorial") is allowed
    table = {START: {4: 1.0}, 4: {5: 0.8, 7: 0.2}, 5: {END: 0.6, 6: 0.4}, 6: {END: 1.0}, 7: {END: 1.0}}
    step = _toy_step(table, 8)
    free = search_one(step, ToyState(np.array([START])), START, END, beam_size=beam_size, max_length=5)
    assert free.tokens == (4, 5)
    ruled = search_one(step, ToyState(np.array([START])), START, END, beam_size=beam_size, max_length=5,
                       follow={(4, 5): np.array([6])})
    assert ruled.tokens == (4, 5, 6)
    # a word banned after "a" ("sunglasses") is not said there at all
    banned = search_one(step, ToyState(np.array([START])), START, END, beam_size=beam_size, max_length=5,
                        follow={4: np.array([5])})
    assert banned.tokens == (4, 7)
    # one step before the last, a pair that may not end the caption is not begun: at the last step only <end> may
    # come, so "a makeup" there was said and kept as it was (greedy) or left every beam without a word
    short = search_one(step, ToyState(np.array([START])), START, END, beam_size=beam_size, max_length=3,
                       follow={(4, 5): np.array([6])})
    assert short.tokens == (4, 7)
    # nor, at any step, a pair whose every allowed word is banned (the person ban: "a smoking" + man)
    ruled_out = search_one(step, ToyState(np.array([START])), START, END, beam_size=beam_size, max_length=5,
                           follow={(4, 5): np.array([6])}, banned=[6])
    assert ruled_out.tokens == (4, 7)


def test_before_person_finds_the_words_said_almost_only_before_a_person_word_or_another_such_word():
    caps = (["a young man walks"] * 9 + ["a young dog"] + ["a young blonde haired woman"] * 10
            + ["a blonde haired dog"] * 2 + ["a little girl"] * 6 + ["a little dog"] * 4)
    # "haired": 10 of 12 uses before "woman"; "blonde" then 10 of 12 before "haired"; "young" 19 of 20;
    # "little" 6 of 10: "a little dog" is said too; at 0.6 it joins, and then "a" itself (all its uses lead there)
    assert before_person(caps, {"man", "woman", "girl"}, min_uses=5, min_share=0.8) == ["blonde", "haired", "young"]
    assert before_person(caps, {"man", "woman", "girl"}, min_uses=5, min_share=0.6) == [
        "a", "blonde", "haired", "little", "young"]


@pytest.fixture(scope="module")
def is_model(tmp_path_factory) -> Path:
    """A tiny decoder that says "is" all the time, followed by whatever its random weights like."""
    return make_tiny_model(tmp_path_factory.mktemp("is") / "m", seed=2, words=TINY_WORDS + ["is"], boost={"is": 6.0})


def _after_is(model: Path, grammar: bool) -> list[str]:
    return _after(model, "is", grammar)


def _after(model: Path, word: str, grammar: bool) -> list[str]:
    """The words (or ``<end>``) a model's captions of 12 random pictures say after ``word``."""
    from captioner.pipeline import Captioner

    cap = Captioner(replace(CaptionConfig(), model_dir=model, decoding=replace(DecodingConfig(), grammar=grammar)))
    rng = np.random.default_rng(0)
    caps = [c.text.split() for c in cap.caption_batch([(rng.normal(size=(49, 1280)).astype(np.float32), None)
                                                      for _ in range(12)], video=True)]
    return [c[i + 1] if i + 1 < len(c) else "<end>" for c in caps for i, w in enumerate(c) if w == word]


def test_a_model_with_a_grammar_list_says_only_listed_words_after_is(is_model):
    update_manifest(is_model, lambda m: m.update(grammar={"after_be": ["runs", "sits", "plays"]}))
    assert set(_after_is(is_model, grammar=False)) - {"runs", "sits", "plays"}  # free, it says other words
    ruled = _after_is(is_model, grammar=True)
    assert ruled and set(ruled) <= {"runs", "sits", "plays"}


def test_a_model_with_an_article_rule_says_no_banned_word_after_a(tmp_path):
    model = make_tiny_model(tmp_path / "m", seed=1, boost={"a": 4.0})
    free = set(_after(model, "a", grammar=False)) - {"<end>"}
    assert free  # "man", "car", "green": each is banned below
    update_manifest(model, lambda m: m.update(grammar={"after_article": {"banned": sorted(free), "then": {}}}))
    ruled = _after(model, "a", grammar=True)
    assert ruled and not free & set(ruled)


@pytest.mark.parametrize("grammar, says", [
    ({"before_person": None}, 'grammar "before_person" should be a list of words'),
    ({"after_be": [1]}, 'grammar "after_be" should be a list of words'),
    ({"after_article": {"then": {"makeup": None}}}, 'grammar "after_article" should be lists of words'),
    ({"after_article": ["a"]}, 'grammar "after_article" should be lists of words'),
    ([], '"grammar" should be a JSON object')])
def test_grammar_lists_of_the_wrong_types_are_one_line(tiny_model, tmp_path, grammar, says):
    """A null in a grammar list was "the model does not load (TypeError: 'NoneType' object is not iterable)"."""
    import shutil

    from captioner.errors import ModelError
    from captioner.weights import MANIFEST, read_manifest

    model = shutil.copytree(tiny_model, tmp_path / "m")
    update_manifest(model, lambda m: m.update(grammar=grammar))
    with pytest.raises(ModelError) as err:
        read_manifest(model)
    assert str(err.value) == f"{model / MANIFEST}: {says}"


def test_info_names_the_rule(is_model, tiny_model):
    from clitools import cli

    update_manifest(is_model, lambda m: m.update(grammar={"after_be": ["runs", "sits", "plays"]}))
    result = cli("info", "--model", is_model)
    assert result.exit_code == 0, result.stderr
    assert "grammar:   after is/are only the 3 words the training captions put there" in result.stdout
    assert "grammar:" not in cli("info", "--model", tiny_model).stdout
    # the article and person-adjective lists were not named at all (a model with only those showed no grammar line)
    update_manifest(is_model, lambda m: m.update(grammar={"after_article": {"banned": ["runs"], "then": {
        "green": ["car"], "sits": []}}, "before_person": ["young"]}))
    lines = cli("info", "--model", is_model).stdout.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("grammar:"))
    assert lines[first:first + 2] == [
        "grammar:   after a/an none of 2 words ('a sunglasses'), and 1 only before the words they precede there "
        "('a makeup tutorial')",
        "           1 word said almost only before a person word ('young') banned with them when nobody is seen"]


def test_readability_counts_verbless_captions_and_talking_about_tails():
    from pipelines.score_json import readability

    r = readability({"v1": "a man is people on a stage", "v2": "a man is talking about a hat",
                     "v3": "a man is talking about a hat", "v4": "two men are inside a car", "v5": ""})
    assert r["verbless"] == 1 and r["talking_about_tails"] == 2 and r["distinct"] == 3
    assert r["most_frequent"] == "a man is talking about a hat (2)" and r["mean_words"] == 6.75
