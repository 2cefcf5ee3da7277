"""Captions of the nearest training videos (consensus.py): n-gram agreement, the bank's file, the pipeline's use of it."""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from captioner.consensus import CaptionBank, build_bank, gram_base, load_bank
from captioner.errors import ModelError
from captioner.weights import save_tensors

VOCAB = 20


def bank_of(videos: list[list[list[int]]], vocab: int = VOCAB) -> CaptionBank:
    t = build_bank(videos, vocab)
    return CaptionBank(t["tokens"].astype(np.int64), t["starts"].astype(np.int64), t["video_starts"].astype(np.int64),
                       t["gram_keys"], t["gram_df"].astype(np.int64), gram_base(vocab))


VIDEOS = [[[4, 5, 6], [4, 5, 7]], [[4, 5, 6, 8]], [[9, 10], [4, 11]], [[12, 13, 14]]]


def slow_consensus(bank: CaptionBank, pool: list[tuple[int, ...]], cand: tuple[int, ...], skip: int | None) -> float:
    """The definition, spelt out: 10 x mean over n of the mean tf-idf cosine with the other pool captions."""
    videos = [[tuple(c) for c in v] for v in VIDEOS]

    def df(g):
        return sum(any(tuple(c[i:i + len(g)]) == g for c in v for i in range(len(c) - len(g) + 1)) for v in videos)

    def vec(c, n):
        tf = Counter(tuple(c[i:i + n]) for i in range(len(c) - n + 1))
        v = {g: k * (math.log(len(videos)) - math.log(max(1, df(g) if df(g) >= 2 else 1))) for g, k in tf.items()}
        norm = math.sqrt(sum(x * x for x in v.values())) or 1.0
        return {g: x / norm for g, x in v.items()}

    others = [p for j, p in enumerate(pool) if j != skip]
    total = 0.0
    for n in range(1, 5):
        a = vec(cand, n)
        total += sum(sum(x * vec(p, n).get(g, 0.0) for g, x in a.items()) for p in others) / len(others)
    return 10 * total / 4


def test_consensus_is_the_mean_tfidf_cosine_with_the_other_captions() -> None:
    bank = bank_of(VIDEOS)
    pool = bank.captions_of([0, 1, 2])
    assert pool == [(4, 5, 6), (4, 5, 7), (4, 5, 6, 8), (9, 10), (4, 11)]
    others = [(4, 5, 6), (13, 14), (15,)]
    in_pool, outside = bank.consensus(pool, others)
    for j, c in enumerate(pool):
        assert in_pool[j] == pytest.approx(slow_consensus(bank, pool, c, j), abs=1e-9)
    for o, c in zip(outside, others):
        assert o == pytest.approx(slow_consensus(bank, pool, c, None), abs=1e-9)
    assert in_pool.argmax() in (0, 2)  # the "4 5 6" captions agree most
    assert outside[2] == 0.0  # a word no pool caption has
    # the same caption twice, nothing else: perfect agreement, CIDEr's scale
    same, _ = bank_of([[[4, 5, 6, 7]], [[4, 5, 6, 7]], [[8, 9]]]).consensus([(4, 5, 6, 7), (4, 5, 6, 7)])
    assert same.tolist() == pytest.approx([10.0, 10.0])
    assert bank.consensus([(4, 5)], [(4, 5)])[1].tolist() == [0.0]  # nobody to agree with


def test_document_frequencies_count_videos_and_keep_shared_grams_only() -> None:
    t = build_bank(VIDEOS, VOCAB)
    bank = bank_of(VIDEOS)
    base = gram_base(VOCAB)
    # "4 5" is in videos 0 and 1 (twice in video 0: one video); "4" in 0, 1, 2; "9 10" in one video only
    assert bank.idf(np.array([(4 + 1) * base + (5 + 1)]))[0] == pytest.approx(math.log(4 / 2))
    assert bank.idf(np.array([4 + 1]))[0] == pytest.approx(math.log(4 / 3))
    assert bank.idf(np.array([(9 + 1) * base + (10 + 1)]))[0] == pytest.approx(math.log(4))
    assert len(t["gram_keys"]) == len(set(t["gram_keys"].tolist())) and (t["gram_df"] >= 2).all()
    assert bank.videos == 4 and bank.captions_of([3]) == [(12, 13, 14)]


def test_bank_file_is_checked_against_the_manifest_and_the_vocabulary(tmp_path: Path) -> None:
    sha = save_tensors(tmp_path, "bank.safetensors", build_bank(VIDEOS, VOCAB))
    bank = load_bank(tmp_path, {"bank": {"sha256": sha}}, VOCAB)
    assert bank is not None and bank.captions_of([0, 3]) == [(4, 5, 6), (4, 5, 7), (12, 13, 14)]
    assert load_bank(tmp_path, {}, VOCAB) is None
    with pytest.raises(ModelError, match="not a caption bank"):
        load_bank(tmp_path, {"bank": {"sha256": sha}}, 10)  # token 14 is beyond a 10-word vocabulary
    with pytest.raises(ModelError, match="checksum|does not match|sha256"):
        load_bank(tmp_path, {"bank": {"sha256": "0" * 64}}, VOCAB)
    (tmp_path / "bank.safetensors").unlink()
    with pytest.raises(ModelError, match="missing"):
        load_bank(tmp_path, {"bank": {"sha256": sha}}, VOCAB)


def tiny_model_with_vectors(folder: Path, memory: bool = True):
    """A tiny model with detectors and a search-vector map (with a 3-video caption memory when ``memory``):
    (folder, manifest, vocabulary, word -> id, rng)."""
    from captioner.detect import Detectors, save_detectors
    from captioner.vse import CaptionMemory, SegmentEmbedder, save_vse
    from captioner.weights import MANIFEST
    from conftest import make_tiny_model

    folder = make_tiny_model(folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    vocab = manifest["vocab"]
    ids = {w: i for i, w in enumerate(vocab)}
    rng = np.random.default_rng(0)
    det = Detectors(("dog", "cat"), rng.normal(size=(1280, 2)).astype(np.float32) * 0.01, np.zeros(2, np.float32),
                    np.ones(2, np.float32), np.zeros(2, np.float32), 0.0)
    manifest["detectors"] = save_detectors(folder, det)
    d_in = 1280 + 2
    keys = rng.standard_normal((3, 384)).astype(np.float32)
    keys /= np.linalg.norm(keys, axis=1, keepdims=True)
    words = rng.standard_normal((len(vocab), 384)).astype(np.float32)
    emb = SegmentEmbedder(np.zeros(d_in, np.float32), np.ones(d_in, np.float32),
                          rng.standard_normal((d_in, 8)).astype(np.float32), np.zeros(8, np.float32),
                          rng.standard_normal((8, 384)).astype(np.float32), np.zeros(384, np.float32),
                          CaptionMemory(keys, keys.copy(), k=2) if memory else None,
                          words / np.linalg.norm(words, axis=1, keepdims=True))
    manifest["vse"] = save_vse(folder, emb)
    return folder, manifest, vocab, ids, rng


def test_neighbours_captions_join_the_beam_scored_by_the_decoder(tmp_path: Path) -> None:
    """The wiring: with a bank, a video segment's candidates gain the neighbours' best-agreed captions, scored
    under the decoder for that segment; a large consensus weight makes the most agreed one the caption."""
    from captioner.config import CaptionConfig
    from captioner.detect import CELLS
    from captioner.pipeline import Captioner
    from captioner.search import run_searches, score_steps
    from captioner.weights import MANIFEST

    folder, manifest, vocab, ids, rng = tiny_model_with_vectors(tmp_path / "m")
    said = [[ids[w] for w in c.split()] for c in ("a dog runs on the grass", "a dog runs in the water",
                                                    "a dog runs", "a cat sits", "a red car")]
    videos = [said[:2], said[2:4], said[4:]]
    manifest["bank"] = {"sha256": save_tensors(folder, "bank.safetensors", build_bank(videos, len(vocab)))}
    (folder / MANIFEST).write_text(json.dumps(manifest))
    base = CaptionConfig()
    feats = rng.random((2 * CELLS, 1280)).astype(np.float32)

    def run(weight: float, videos_near: int = 3):
        cap = Captioner(replace(base, model_dir=folder, decoding=replace(
            base.decoding, consensus_weight=weight, consensus_videos=videos_near, consensus_candidates=2)))
        seen = []
        plain = cap._rerank

        def spy(hyp, vector, w, consensus=None, agree=0.0):
            seen.append((hyp, consensus))
            return plain(hyp, vector, w, consensus, agree)

        cap._rerank = spy
        caption, = cap.caption_batch([(feats, None)], video=True)
        return cap, caption, seen[0]

    _, off, (hyp_off, consensus_off) = run(0.0)
    assert consensus_off is None
    cap, on, (hyp, consensus) = run(1000.0)
    pool = [tuple(c) for v in videos for c in v]
    agreed, _ = cap.bank.consensus(pool)
    best_two = [pool[j] for j in np.argsort(-agreed, kind="stable")[:2]]
    cands = {h.tokens: h for h in (hyp, *hyp.alternatives)}
    assert set(best_two) <= set(cands)  # the two best-agreed joined the beam's own
    assert {h.tokens for h in (hyp_off, *hyp_off.alternatives)} <= set(cands)
    # each scored as the decoder scores that caption for this segment (no presence head: nothing banned)
    c = cap._concept_inputs(cap._detect(feats), None)
    state = cap.decoder.start(feats, None if c is None else c[0], None if c is None else c[1],
                              cap._concept_weight(c, True), cap._banned, None)
    direct, = run_searches(cap.decoder.log_probs, [score_steps(state, cap.vocab.start_for("video"), cap.vocab.end_id,
                                                               best_two, length_penalty=base.decoding.length_penalty)])
    for h in (direct, *direct.alternatives):
        assert cands[h.tokens].score == pytest.approx(h.score, abs=1e-4)
    assert on.text.lower() == " ".join(vocab[i] for i in best_two[0])  # a weight of 1000 lets agreement decide
    assert consensus[best_two[0]] == pytest.approx(float(agreed.max()))


@pytest.mark.parametrize("entry, prefix, says", [
    ("bank", "consensus:", ("6 captions of 4 training videos", "--consensus")),
    ("photo_bank", "photos:", ("6 captions of 4 training photos", "captioner image --consensus")),
])
def test_info_says_whether_the_model_has_a_caption_bank(tmp_path: Path, entry: str, prefix: str,
                                                       says: tuple[str, str]) -> None:
    from captioner.weights import update_manifest
    from clitools import cli
    from conftest import make_tiny_model

    model = make_tiny_model(tmp_path / "m")
    assert not [x for x in cli("info", "--model", model).stdout.splitlines() if x.startswith(prefix)]
    sha = save_tensors(model, "bank.safetensors", build_bank(VIDEOS, VOCAB))
    update_manifest(model, lambda m: m.update({entry: {"sha256": sha, "videos": 4, "photos": 4, "captions": 6}}))
    result = cli("info", "--model", model)
    assert result.exit_code == 0, result.stderr
    line, = [x for x in result.stdout.splitlines() if x.startswith(prefix)]
    assert all(part in line for part in says)


def test_a_bank_that_does_not_fit_the_caption_memory_is_refused(tmp_path: Path) -> None:
    from captioner.config import CaptionConfig
    from captioner.pipeline import Captioner
    from captioner.vse import CaptionMemory, SegmentEmbedder, save_vse
    from captioner.weights import update_manifest
    from conftest import make_tiny_model

    model = make_tiny_model(tmp_path / "m")
    rng = np.random.default_rng(0)
    keys = rng.standard_normal((3, 384)).astype(np.float32)
    keys /= np.linalg.norm(keys, axis=1, keepdims=True)
    emb = SegmentEmbedder(np.zeros(1280, np.float32), np.ones(1280, np.float32),
                          rng.standard_normal((1280, 8)).astype(np.float32), np.zeros(8, np.float32),
                          rng.standard_normal((8, 384)).astype(np.float32), np.zeros(384, np.float32),
                          CaptionMemory(keys, keys.copy(), k=2))
    entry = save_vse(model, emb)
    sha = save_tensors(model, "bank.safetensors", build_bank(VIDEOS, VOCAB))  # 4 videos, the memory has 3
    update_manifest(model, lambda m: m.update(vse=entry, bank={"sha256": sha}))
    with pytest.raises(ModelError, match="4 videos, the caption memory 3"):
        Captioner(replace(CaptionConfig(), model_dir=model))


PHOTO_SAID = ("a dog runs on the grass", "a dog runs in the water", "a dog runs", "a cat sits", "a red car")


def test_photo_keys_are_stored_small_and_rebuilt_at_load(tmp_path: Path) -> None:
    """compress_keys + load_bank(photos=True): int8 codes of the top principal directions, unit vectors again at
    load; with as many directions as the vectors span the neighbours are the same, and a bank whose keys do
    not number its photos is refused."""
    from captioner.consensus import compress_keys

    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((4, 384)) @ rng.standard_normal((384, 384)) * 0.1
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    small = compress_keys(vectors, 8)  # 4 vectors span at most 3 directions about their mean
    assert small["key_codes"].dtype == np.int8 and small["key_basis"].shape == (384, 4)
    sha = save_tensors(tmp_path, "photo_bank.safetensors", {**build_bank(VIDEOS, VOCAB), **small})
    bank = load_bank(tmp_path, {"photo_bank": {"sha256": sha}}, VOCAB, photos=True)
    assert bank is not None and bank.keys.shape == (4, 384)
    assert np.linalg.norm(bank.keys, axis=1) == pytest.approx(np.ones(4), abs=1e-5)
    assert (bank.keys * vectors).sum(1).min() > 0.99  # int8 codes: close to the vectors they stand for
    query = vectors[2] + 0.01 * rng.standard_normal(384)
    assert int(np.argmax(bank.keys @ query)) == 2
    assert load_bank(tmp_path, {}, VOCAB, photos=True) is None
    sha = save_tensors(tmp_path, "photo_bank.safetensors", {**build_bank(VIDEOS[:3], VOCAB), **small})
    with pytest.raises(ModelError, match="not a caption bank"):
        load_bank(tmp_path, {"photo_bank": {"sha256": sha}}, VOCAB, photos=True)


def test_photo_captions_join_the_photo_banks_agreed_captions(tmp_path: Path) -> None:
    """With a photo bank, ``captioner image``'s path (caption_batch, video=False) gains the best-agreed captions of
    the training photos nearest the photo's map vector; weight 0 leaves the photo's caption as it was, and the
    video bank is not used for photos."""
    from captioner.config import CaptionConfig
    from captioner.consensus import compress_keys
    from captioner.detect import CELLS
    from captioner.pipeline import Captioner
    from captioner.weights import MANIFEST

    folder, manifest, vocab, ids, rng = tiny_model_with_vectors(tmp_path / "m", memory=False)
    said = [[ids[w] for w in c.split()] for c in PHOTO_SAID]
    photos = [said[:2], said[2:4], said[4:]]
    keys = rng.standard_normal((3, 384))
    keys /= np.linalg.norm(keys, axis=1, keepdims=True)
    tensors = {**build_bank(photos, len(vocab)), **compress_keys(keys, 16)}
    manifest["photo_bank"] = {"sha256": save_tensors(folder, "photo_bank.safetensors", tensors), "photos": 3,
                              "captions": 5}
    (folder / MANIFEST).write_text(json.dumps(manifest))
    feats = rng.random((CELLS, 1280)).astype(np.float32)

    def caption(weight: float) -> tuple[Captioner, str]:
        base = CaptionConfig()
        cap = Captioner(replace(base, model_dir=folder, decoding=replace(
            base.decoding, photo_consensus_weight=weight, photo_consensus_photos=3, photo_consensus_candidates=2)))
        return cap, cap.caption_batch([(feats, None)])[0].text

    cap, plain = caption(0.0)
    assert cap.photo_bank is not None and cap.bank is None
    cap, agreed = caption(1000.0)
    pool = [tuple(c) for p in photos for c in p]
    scores, _ = cap.photo_bank.consensus(pool)
    assert agreed.lower() == " ".join(vocab[i] for i in pool[int(np.argmax(scores))])
    assert agreed != plain  # the tiny decoder's own caption is none of the bank's

    def caption_at(rerank: float) -> tuple[str, float]:  # consensus on, the closeness term at ``rerank``
        base = CaptionConfig()
        cap = Captioner(replace(base, model_dir=folder, decoding=replace(
            base.decoding, photo_rerank_weight=rerank, photo_consensus_weight=1000.0, photo_consensus_photos=3,
            photo_consensus_candidates=2)))
        got = cap.caption_batch([(feats, None)])[0]
        return got.text, got.confidence

    # --rerank-weight 0 turned the consensus off unsaid (the photo's vector was not made) and rated the caption
    # on another scale: 0 only drops the closeness term
    assert caption_at(0.0)[0] == agreed and caption_at(0.0) == caption_at(1e-9)
