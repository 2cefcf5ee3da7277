"""The verb-slot rule: after "is"/"are" only the words the training text puts there (pipelines/grammar.py)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from captioner.config import CaptionConfig, DecodingConfig
from captioner.search import search_one
from captioner.vocab import Vocabulary, follow_rules
from captioner.weights import update_manifest
from pipelines.grammar import after_be

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


@pytest.fixture(scope="module")
def is_model(tmp_path_factory) -> Path:
    """A tiny decoder that says "is" all the time, followed by whatever its random weights like."""
    return make_tiny_model(tmp_path_factory.mktemp("is") / "m", seed=2, words=TINY_WORDS + ["is"], boost={"is": 6.0})


def _after_is(model: Path, grammar: bool) -> list[str]:
    from captioner.pipeline import Captioner

    cap = Captioner(replace(CaptionConfig(), model_dir=model, decoding=replace(DecodingConfig(), grammar=grammar)))
    rng = np.random.default_rng(0)
    caps = [c.text.split() for c in cap.caption_batch([(rng.normal(size=(49, 1280)).astype(np.float32), None)
                                                      for _ in range(12)], video=True)]
    return [c[i + 1] if i + 1 < len(c) else "<end>" for c in caps for i, w in enumerate(c) if w == "is"]


def test_a_model_with_a_grammar_list_says_only_listed_words_after_is(is_model):
    update_manifest(is_model, lambda m: m.update(grammar={"after_be": ["runs", "sits", "plays"]}))
    assert set(_after_is(is_model, grammar=False)) - {"runs", "sits", "plays"}  # free, it says other words
    ruled = _after_is(is_model, grammar=True)
    assert ruled and set(ruled) <= {"runs", "sits", "plays"}


def test_info_names_the_rule(is_model, tiny_model):
    from clitools import cli

    update_manifest(is_model, lambda m: m.update(grammar={"after_be": ["runs", "sits", "plays"]}))
    result = cli("info", "--model", is_model)
    assert result.exit_code == 0, result.stderr
    assert "grammar:   after is/are only the 3 words the training captions put there" in result.stdout
    assert "grammar:" not in cli("info", "--model", tiny_model).stdout


def test_readability_counts_verbless_captions_and_talking_about_tails():
    from pipelines.score_json import readability

    r = readability({"v1": "a man is people on a stage", "v2": "a man is talking about a hat",
                     "v3": "a man is talking about a hat", "v4": "two men are inside a car", "v5": ""})
    assert r["verbless"] == 1 and r["talking_about_tails"] == 2 and r["distinct"] == 3
    assert r["most_frequent"] == "a man is talking about a hat (2)" and r["mean_words"] == 6.75
