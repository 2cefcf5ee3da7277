"""Visual concept detectors (detect.py): noisy-OR pooling, calibration, concept slots, person presence."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from captioner.detect import CELLS, Detectors, PresenceHead, concept_inputs, load_detectors, save_detectors, save_presence
from captioner.errors import ModelError
from captioner.vocab import Vocabulary


def make_detectors(words=("person", "dog", "kitchen"), dim=8, threshold=0.0, seed=0) -> Detectors:
    rng = np.random.default_rng(seed)
    d = len(words)
    return Detectors(tuple(words), rng.normal(size=(dim, d)).astype(np.float32), np.full(d, -4.0, np.float32),
                     np.ones(d, np.float32), np.zeros(d, np.float32), threshold)


def test_noisy_or_is_one_minus_the_product_over_cells():
    det = make_detectors()
    grid = np.random.default_rng(1).normal(size=(CELLS, 8)).astype(np.float32)
    cell = 1 / (1 + np.exp(-(grid @ det.weight + det.bias)))
    want = 1 - np.prod(1 - cell, axis=0)
    assert np.allclose(det.frame_probs(grid)[0], want, atol=1e-5)


def test_one_cell_that_shows_a_word_is_enough_and_frames_average():
    det = make_detectors(dim=2, words=("person", "dog"))
    det = replace(det, weight=np.array([[10.0, 0.0], [0.0, 10.0]], np.float32), bias=np.array([-5.0, -5.0], np.float32))
    empty = np.zeros((CELLS, 2), np.float32)
    one = empty.copy()
    one[17, 0] = 1.0  # one cell shows a person
    p_empty, p_one = det.frame_probs(np.stack([empty, one]))
    assert p_empty[0] < 0.4 and p_one[0] > 0.99 and abs(p_one[1] - p_empty[1]) < 1e-6
    seg = det.probs(np.concatenate([empty, one]))  # a two-frame segment, cells stacked as the pipeline does
    assert np.allclose(seg, (p_empty + p_one) / 2)
    with pytest.raises(ValueError):
        det.probs(np.zeros((50, 2), np.float32))


def test_platt_scaling_changes_probabilities_not_their_order():
    det = make_detectors()
    grids = 0.3 * np.random.default_rng(2).normal(size=(20, CELLS, 8)).astype(np.float32)
    raw = det.frame_probs(grids)
    assert 0.01 < raw.min() and raw.max() < 0.99  # unsaturated, so the order is meaningful
    cal = replace(det, platt_a=np.full(3, 0.5, np.float32), platt_b=np.full(3, -1.0, np.float32)).frame_probs(grids)
    assert not np.allclose(raw, cal)
    for j in range(3):
        assert (np.argsort(raw[:, j], kind="stable") == np.argsort(cal[:, j], kind="stable")).all()


def test_concept_slots_take_detected_words_first_then_imagenet_and_merge():
    vocab = Vocabulary(("<pad>", "<start>", "<end>", "<unk>", "a", "person", "dog", "kitchen", "cat", "piano"))
    det = make_detectors(words=("person", "cat", "kitchen", "unseenword"))
    detected = np.array([0.9, 0.65, 0.6, 0.95])
    from captioner.concepts import class_words

    words = [w for w, _ in class_words()]
    probs = np.zeros(1000)
    probs[words.index("cat")] = 0.7
    probs[words.index("dog")] = 0.2
    ids, ps = concept_inputs(det, detected, probs, vocab.index, k=4, detector_slots=2)
    got = [vocab.itos[i] for i in ids]
    # "unseenword" has no token: skipped; two detector slots (person, cat), then ImageNet: cat again
    # (merged, keeping the larger probability), dog; "kitchen" lost its slot to the detector limit
    assert got == ["person", "cat", "dog"]
    assert ps == pytest.approx([0.9, 0.7, 0.2])
    ids0, _ = concept_inputs(None, None, probs, vocab.index, k=4, detector_slots=0)
    assert [vocab.itos[i] for i in ids0][:2] == ["cat", "dog"]


def test_detectors_round_trip_and_a_damaged_file_is_refused(tmp_path):
    det = make_detectors(threshold=0.3)
    entry = save_detectors(tmp_path, det)
    back = load_detectors(tmp_path, {"detectors": json.loads(json.dumps(entry))})
    assert back.words == det.words and back.presence_threshold == 0.3
    assert np.allclose(back.weight, det.weight, atol=1e-2)
    assert load_detectors(tmp_path, {}) is None
    (tmp_path / "detectors.safetensors").write_bytes(b"x" * 100)
    with pytest.raises(ModelError, match="checksum"):
        load_detectors(tmp_path, {"detectors": entry})


def test_no_person_word_when_the_person_detector_says_nobody_is_there(tmp_path):
    """Presence-aware decoding: a model that would say "man" does not, when P(person) is under the threshold."""
    import torch

    from captioner.config import CaptionConfig, DecoderConfig
    from captioner.decoder import CaptionDecoder
    from captioner.pipeline import Captioner
    from captioner.weights import MANIFEST, save_model

    torch.manual_seed(0)
    vocab = Vocabulary(("<pad>", "<start>", "<end>", "<unk>", "a", "man", "dog", "person", "runs"))
    config = DecoderConfig(feature_dim=1280, embed_dim=16, hidden_dim=16, attention_dim=16, dropout=0.0,
                           vocab_size=len(vocab), concept_slots=2, detector_slots=2)
    model = CaptionDecoder(config)
    with torch.no_grad():
        model.copy_gate.bias.fill_(-30.0)  # never copy: the language model alone decides
        model.fc.weight.zero_()
        model.fc.bias.fill_(-5.0)
        model.fc.bias[vocab.index("man")] = 5.0  # "man" first, whatever the picture
        model.fc.bias[vocab.index("dog")] = 3.0
    folder = save_model(tmp_path / "m", model.state_dict(), vocab, config, name="t", encoder="efficientnet-lite0")
    manifest = json.loads((folder / MANIFEST).read_text())

    def with_threshold(t: float, words: dict | None = None, presence_logit: float | None = None):
        det = Detectors(("person", "dog"), np.zeros((1280, 2), np.float32), np.full(2, -8.0, np.float32),
                        np.ones(2, np.float32), np.zeros(2, np.float32), t, word_thresholds=words or {})
        manifest["detectors"] = save_detectors(folder, det)
        if presence_logit is not None:  # a head that says P(person) = sigmoid(presence_logit) for any picture
            head = PresenceHead(np.zeros(2560, np.float32), np.ones(2560, np.float32), np.zeros((2560, 4), np.float32),
                                np.zeros(4, np.float32), np.zeros(4, np.float32), presence_logit, 0.5)
            manifest["detectors"]["presence"] = save_presence(folder, head)
        (folder / MANIFEST).write_text(json.dumps(manifest))
        cap = Captioner(replace(CaptionConfig(), model_dir=folder,
                                decoding=replace(CaptionConfig().decoding, beam_size=2, max_length=3)))
        return cap.caption_features(np.zeros((CELLS, 1280), np.float32)).text

    # P(person) = 1 - (1 - sigmoid(-8))^49 ~ 0.016
    assert "man" in with_threshold(0.0).split()  # no threshold: the prior says "man"
    assert "man" not in with_threshold(0.5).split() and "dog" in with_threshold(0.5).split()
    # any other word with a threshold of its own: P(dog) ~ 0.016 is under 0.5, so neither "man" nor "dog"
    both = with_threshold(0.5, {"dog": 0.5}).split()
    assert "man" not in both and "dog" not in both and both
    assert "dog" in with_threshold(0.5, {"dog": 0.01}).split()  # over its threshold: said
    back = load_detectors(folder, json.loads((folder / MANIFEST).read_text()))
    assert back.word_thresholds == {"dog": 0.01}
    with pytest.raises(ModelError, match="without a detector"):
        replace(back, word_thresholds={"cat": 0.2})
    # a presence head, when the model has one, decides instead of the person unit and its threshold
    assert "man" in with_threshold(0.5, presence_logit=4.0).split()  # the head sees someone (P 0.98 >= 0.5)
    assert "man" not in with_threshold(0.0, presence_logit=-4.0).split()  # the head sees nobody
    back = load_detectors(folder, json.loads((folder / MANIFEST).read_text()))
    assert back.presence is not None and back.presence.threshold == 0.5
    assert abs(back.presence.prob(np.zeros((2 * CELLS, 1280), np.float32)) - 1 / (1 + np.exp(4.0))) < 1e-4
    (folder / "presence.safetensors").write_bytes(b"x" * 10)
    with pytest.raises(ModelError, match="checksum"):
        load_detectors(folder, json.loads((folder / MANIFEST).read_text()))


def test_low_rank_copy_is_close_and_round_trips(tmp_path):
    det = make_detectors(words=tuple(f"w{i}" for i in range(12)), dim=40, seed=3)
    small = det.low_rank(6)
    assert small.basis.shape == (40, 6) and small.weight.shape == (6, 12) and small.feature_dim == 40
    assert det.low_rank(40) is det  # nothing to gain
    grid = 0.2 * np.random.default_rng(4).normal(size=(CELLS, 40)).astype(np.float32)
    rng = np.random.default_rng(5)
    rank4 = replace(det, weight=(rng.normal(size=(40, 4)) @ rng.normal(size=(4, 12))).astype(np.float32) / 4)
    assert np.allclose(rank4.low_rank(4).frame_probs(grid), rank4.frame_probs(grid), atol=1e-5)  # exact at its rank
    entry = save_detectors(tmp_path, small)
    back = load_detectors(tmp_path, {"detectors": entry})
    assert back.basis is not None and np.allclose(back.frame_probs(grid), small.frame_probs(grid), atol=2e-3)


# -- the person words a caption may not say when nobody is visible (PERSON_WORDS) --

#: Words of the shipped vocabulary that look like person words (an inflection of one, or ending
#: like "fisherman", "artist", "waitress", "man's") but are judged not to be, each for a reason:
#: another sense first, a thing, an animal, a character that need not be a person, or a name.
NOT_PERSON = frozenset("""anchors commuter diner fan fighter hi judge trainers twin
access addresses awareness banana's batman buddhist business businesses cat's chess christ congress cordless
darkness disney's doberman dog's dress dresses endless express expresses fist fitness german giraffe's goddess
happiness harness harnesses headdress home's homeless ironman it's leafless less letterman list lists mattress
mess ottoman playlist press presses princess princesses process progress ramen roman seamless ski's sleeveless
snowman spiderman stainless success superman that's valentine's waist whist wilderness wireless wrist
zebra's""".split())


def _shipped_vocabulary() -> tuple[str, ...]:
    from captioner.config import DEFAULT_WEIGHTS_DIR

    return tuple(json.loads((DEFAULT_WEIGHTS_DIR / "model.json").read_text())["vocab"])


def _inflections(word: str) -> set[str]:
    forms = {word + "s", word + "es", word + "'s"}
    if word.endswith("y"):
        forms.add(word[:-1] + "ies")
    if word.endswith("s"):
        forms.add(word[:-1])
    if word.endswith("'s"):
        forms.add(word[:-2])
    if word.endswith(("man", "men")):
        forms |= {word[:-3] + "men", word[:-3] + "man"}
    return forms


def test_every_person_word_of_the_shipped_vocabulary_is_banned_when_nobody_is_there():
    """The ban had holes: "a young male with a white background" (MSR-VTT video6415, P(person) 0.40 < 0.52),
    "a young blonde haired bird" (a photo of a bird). Each word of the vocabulary that looks like a
    person word is decided: in PERSON_WORDS (or PERSON_ATTRIBUTES), or in NOT_PERSON above."""
    import re

    from captioner import detect

    PERSON_WORDS, PERSON_ATTRIBUTES = detect.PERSON_WORDS, getattr(detect, "PERSON_ATTRIBUTES", frozenset())

    vocab = set(_shipped_vocabulary())
    # the words the tester found said with nobody there, and the kinds the vocabulary holds
    for w in """male males female females human humans individual individuals man's woman's girl's boy's men's
                women's lady's he's someone's driver teacher doctor nurse waiter wife husband brother sister
                member members contestant contestants performer performers himself herself""".split():
        assert w in vocab and w in PERSON_WORDS, w
    for w in "blonde blond brunette bearded shirtless".split():
        assert w in vocab and w in PERSON_ATTRIBUTES and w not in PERSON_WORDS, w
    assert not PERSON_WORDS & PERSON_ATTRIBUTES and not (PERSON_WORDS | PERSON_ATTRIBUTES) & NOT_PERSON
    for w in "they them their themselves haired cook".split():  # things and animals too: never banned
        assert w not in PERSON_WORDS | PERSON_ATTRIBUTES, w
    # an inflection of a person word is one too ("male" -> "males", "man" -> "man's"), unless judged otherwise
    undecided = sorted(f for w in PERSON_WORDS for f in _inflections(w)
                       if f in vocab and f not in PERSON_WORDS and f not in NOT_PERSON)
    assert not undecided, f"inflections of person words neither banned nor judged: {undecided}"
    # words shaped like person words ("fisherman", "artist", "waitress", "lady's"): every one decided
    shaped = re.compile(r"(man|men|ist|ists|ess|esses|'s)$")
    undecided = sorted(w for w in vocab if shaped.search(w) and w not in PERSON_WORDS | PERSON_ATTRIBUTES | NOT_PERSON)
    assert not undecided, f"person-shaped words neither banned nor judged: {undecided}"
    assert "baseball player" in vocab and "baseball player" in PERSON_WORDS  # a two-word entry, one token


def test_the_ban_covers_person_attributes_and_the_new_words():
    """AbsentWords bans PERSON_WORDS and PERSON_ATTRIBUTES when the presence head sees nobody, and nothing else."""
    from captioner.detect import AbsentWords

    words = ("<pad>", "<start>", "<end>", "<unk>", "a", "young", "male", "blonde", "haired", "bird", "man's", "they")
    vocab = Vocabulary(words)
    head = PresenceHead(np.zeros(16, np.float32), np.ones(16, np.float32), np.zeros((16, 2), np.float32),
                        np.zeros(2, np.float32), np.zeros(2, np.float32), -4.0, 0.5)  # P(person) 0.018 < 0.5
    det = replace(make_detectors(), presence=head)
    absent = AbsentWords.build(det, vocab.index, vocab.unk_id)
    grid = np.zeros((CELLS, 8), np.float32)
    banned = {vocab.itos[i] for i in absent(grid, det.probs(grid))}
    assert banned == {"male", "blonde", "man's"}


def test_the_ban_takes_the_words_a_model_learnt_lead_to_a_person():
    """The model's grammar.before_person words ("young") are banned with the person words: alone, the ban of the noun
    left "a young little talking"."""
    from captioner.detect import AbsentWords

    vocab = Vocabulary(("<pad>", "<start>", "<end>", "<unk>", "a", "young", "man", "bird"))
    head = PresenceHead(np.zeros(16, np.float32), np.ones(16, np.float32), np.zeros((16, 2), np.float32),
                        np.zeros(2, np.float32), np.zeros(2, np.float32), -4.0, 0.5)  # P(person) 0.018 < 0.5
    det = replace(make_detectors(), presence=head)
    absent = AbsentWords.build(det, vocab.index, vocab.unk_id, with_person=["young", "not-in-vocab"])
    grid = np.zeros((CELLS, 8), np.float32)
    assert {vocab.itos[i] for i in absent(grid, det.probs(grid))} == {"young", "man"}
