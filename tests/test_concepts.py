"""ImageNet class -> caption word table (captioner/data/imagenet_words.tsv) and its runtime reader."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from captioner import concepts
from captioner.concepts import GROUPS, NOUN_GROUPS, WORDS_FILE, Concept, class_words, top_concepts


def rows() -> list[list[str]]:
    return [line.split("\t") for line in WORDS_FILE.read_text(encoding="utf-8").splitlines()]


def index_of(name: str) -> int:
    hits = [int(r[0]) for r in rows()[1:] if r[1] == name]
    assert len(hits) == 1, name
    return hits[0]


def word_of(name: str) -> str:
    return class_words()[index_of(name)][0]


# ------------------------------------------------------------------ the table


def test_file_has_header_and_1000_rows_in_encoder_order():
    from torchvision.models import EfficientNet_B0_Weights

    table = rows()
    assert table[0] == ["index", "imagenet_name", "word", "group"]
    assert [int(r[0]) for r in table[1:]] == list(range(1000))
    assert all(len(r) == 4 for r in table)
    assert [r[1] for r in table[1:]] == list(EfficientNet_B0_Weights.IMAGENET1K_V1.meta["categories"])


def test_every_class_has_a_plain_lower_case_word_and_a_valid_group():
    words = class_words()
    assert len(words) == 1000
    for i, (word, group) in enumerate(words):
        assert word and word == word.strip() and word == word.lower(), (i, word)
        assert 1 <= len(word.split()) <= 2 and all(t.isalpha() for t in word.split()), (i, word)
        assert group in GROUPS, (i, group)


def test_loading_is_deterministic():
    first = class_words()
    concepts._table.cache_clear()
    assert class_words() == first
    assert class_words() == first  # cached


@pytest.mark.parametrize(
    "name, word",
    [
        ("tabby", "cat"), ("Persian cat", "cat"), ("golden retriever", "dog"), ("brown bear", "bear"),
        ("ice bear", "bear"), ("street sign", "sign"), ("refrigerator", "refrigerator"), ("pizza", "pizza"),
        ("teddy", "teddy bear"), ("ski", "ski"), ("entertainment center", "cabinet"), ("four-poster", "bed"),
        ("studio couch", "couch"), ("dining table", "table"), ("potter's wheel", "wheel"),
        ("great white shark", "shark"), ("goldfish", "goldfish"), ("tench", "fish"), ("king penguin", "penguin"),
        ("great grey owl", "owl"), ("brambling", "bird"), ("Indian cobra", "snake"), ("gorilla", "gorilla"),
        ("baboon", "monkey"), ("sports car", "car"), ("school bus", "bus"), ("garbage truck", "truck"),
        ("mountain bike", "bike"), ("airliner", "airplane"), ("steam locomotive", "train"),
    ],
)
def test_spot_checks(name, word):
    assert word_of(name) == word


def test_every_dog_breed_says_dog():
    breeds = range(index_of("Chihuahua"), index_of("Mexican hairless") + 1)
    assert len(breeds) == 118
    assert {class_words()[i] for i in breeds} == {("dog", "animal")}


def test_duplicate_names_keep_their_own_meaning():
    """torchvision renames ImageNet's two cranes and two maillots; the bird and the machine stay apart."""
    assert class_words()[134] == ("crane", "animal")
    assert class_words()[517] == ("crane", "object")
    assert class_words()[638] == class_words()[639] == ("bathing suit", "clothing")


# ------------------------------------------------------------------ top_concepts


def test_top_concepts_sums_breeds():
    """50 dog breeds at 1.2% each (no breed anywhere near the cat) beat one 30% cat class."""
    all_dogs = [i for i, (w, _) in enumerate(class_words()) if w == "dog"]  # 118 breeds + 3 wild dogs
    dogs = all_dogs[:50]
    p = np.zeros(1000)
    p[dogs] = 0.6 / 50
    p[index_of("tabby")] = 0.3
    rest = [i for i in range(1000) if p[i] == 0]
    p[rest] = 0.1 / len(rest)
    assert p.max() == pytest.approx(0.3)  # the single most probable class is the cat

    top = top_concepts(p, k=2)
    assert [(c.word, c.group) for c in top] == [("dog", "animal"), ("cat", "animal")]
    assert top[0].prob == pytest.approx(0.6 + (len(all_dogs) - 50) * 0.1 / len(rest))
    assert len(top[0].classes) == len(all_dogs)  # every dog class had some probability
    assert top[0].classes[:50] == tuple(rows()[i + 1][1] for i in dogs)  # the 1.2% ones first, by index
    assert top[1].classes[0] == "tabby"
    assert all(isinstance(c, Concept) for c in top)


def test_top_concepts_k_min_prob_and_inputs():
    p = np.full(1000, 0.0)
    p[index_of("pizza")] = 0.7
    p[index_of("tabby")] = 0.2
    p[index_of("street sign")] = 0.1
    assert [c.word for c in top_concepts(p)] == ["pizza", "cat", "sign"]
    assert [c.word for c in top_concepts(p, k=1)] == ["pizza"]
    assert [c.word for c in top_concepts(p, min_prob=0.15)] == ["pizza", "cat"]
    assert top_concepts(p, k=0) == []
    for same in (p.tolist(), torch.tensor(p, dtype=torch.float32)):
        best = top_concepts(same)[0]
        assert (best.word, best.group, best.classes) == ("pizza", "food", ("pizza",))
        assert best.prob == pytest.approx(0.7)
    with pytest.raises(ValueError):
        top_concepts(np.ones(10))
    with pytest.raises(ValueError):
        top_concepts(np.full(1000, np.nan))


def test_homonyms_do_not_add_up():
    p = np.zeros(1000)
    p[134] = p[517] = 0.4  # crane the bird, crane the machine
    p[index_of("tabby")] = 0.2
    top = top_concepts(p, k=3)
    assert [(c.word, c.group, round(c.prob, 6)) for c in top] == [
        ("crane", "animal", 0.4), ("crane", "object", 0.4), ("cat", "animal", 0.2)]


# ------------------------------------------------------------------ NOUN_GROUPS


def test_noun_groups_are_valid_and_agree_with_concept_words():
    concept_groups: dict[str, set[str]] = {}
    for word, group in class_words():
        concept_groups.setdefault(word, set()).add(group)
    for noun, group in NOUN_GROUPS.items():
        assert noun == noun.lower() and " " not in noun and group in GROUPS, noun
        assert group in concept_groups.get(noun, {group}), (noun, group, concept_groups[noun])
    for noun, group in [("man", "person"), ("dog", "animal"), ("car", "vehicle"), ("shirt", "clothing"),
                        ("beach", "place"), ("ball", "object"), ("tree", "plant"), ("bench", "furniture")]:
        assert NOUN_GROUPS[noun] == group


# ------------------------------------------------------------------ the generator (needs WordNet + corpora)


def _generator_or_skip():
    if importlib.util.find_spec("nltk") is None:
        pytest.skip("nltk is not installed (pip install nltk): the table cannot be regenerated here")
    from pipelines import concept_words

    if not (concept_words.WORDNET_DIR / "data.noun").exists():
        pytest.skip(f"no WordNet 3.0 database in {concept_words.WORDNET_DIR} "
                    "(apt-get install wordnet-base, or set WORDNET_DIR): the table cannot be regenerated here")
    missing = [str(p) for p in concept_words.CORPUS_FILES if not Path(p).exists()]
    if missing:
        pytest.skip(f"caption corpora missing ({', '.join(missing)}): the table cannot be regenerated here")
    return concept_words


def test_synsets_are_imagenets_wnids():
    """The offset chain (+ SENSES) finds ImageNet's own synsets, spot-checked against its published wnids."""
    cw = _generator_or_skip()
    wn = cw.open_wordnet()
    synsets = cw.resolve_synsets(wn, cw.imagenet_names())
    offsets = [s.offset() for s in synsets]
    assert offsets == sorted(set(offsets))
    wnids = {0: 1440764, 134: 2012849, 281: 2123045, 398: 2666196, 456: 2879718, 517: 3126707,
             628: 3673027, 638: 3710637, 639: 3710721, 664: 3782006, 850: 4399382, 919: 6794110,
             968: 7930864, 987: 12144580, 999: 15075141}
    assert {i: offsets[i] for i in wnids} == wnids


def test_regenerating_gives_the_identical_file(tmp_path):
    cw = _generator_or_skip()
    out = cw.write(cw.build(), tmp_path / "imagenet_words.tsv")
    assert out.read_bytes() == WORDS_FILE.read_bytes()


def test_no_test_caption_decides_a_word():
    """The counts that choose the shipped words never see a caption of a test picture or clip
    (Flickr8k test, coco-val2017-mini, the MSVD test split): a test caption crossing a count
    threshold once chose five of the words."""
    cw = _generator_or_skip()
    from pipelines.common import DATA, captions_by_file, flickr_split, read_tsv

    test_photos = set(flickr_split("test"))
    flickr = read_tsv(DATA / "flickr8k" / "captions.tsv")
    mini = set(captions_by_file(DATA / "coco-val2017-mini" / "captions.tsv"))
    coco = read_tsv(DATA / "text" / "coco_val2017_captions.tsv")
    msvd = read_tsv(DATA / "text" / "msvd_captions.tsv", 3)
    tested = ({c for f, c in flickr if f in test_photos} | {c for f, c in coco if f in mini}
              | {c for _, split, c in msvd if split == "test"})
    untested = ({c for f, c in flickr if f not in test_photos} | {c for f, c in coco if f not in mini}
                | {c for _, split, c in msvd if split != "test"})
    only_tested = tested - untested
    assert len(only_tested) > 5_000  # the check has something to find
    assert not only_tested & set(cw.corpus_captions())
