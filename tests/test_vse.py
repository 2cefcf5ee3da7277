"""Visual vectors for search (vse.py): the segment embedder, its file, JSON cues that carry one, ranking by them."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from captioner.config import SearchConfig
from captioner.cues import Cue
from captioner.errors import ModelError
from captioner.find import Searcher, read_output, update_index
from captioner.vse import SegmentEmbedder, decode_vector, encode_vector, load_vse, save_vse
from captioner.writers import format_json


def unit(seed: int, dim: int = 384) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def small_embedder(seed: int = 0) -> SegmentEmbedder:
    rng = np.random.default_rng(seed)
    d_in = 6 + 4  # 6 pooled feature dims + 4 detector words
    return SegmentEmbedder(rng.standard_normal(d_in).astype(np.float32), rng.random(d_in).astype(np.float32) + 0.5,
                           rng.standard_normal((d_in, 8)).astype(np.float32), rng.standard_normal(8).astype(np.float32),
                           rng.standard_normal((8, 384)).astype(np.float32), rng.standard_normal(384).astype(np.float32))


def test_vector_text_round_trip_is_close_and_refuses_garbage() -> None:
    v = unit(1)
    text = encode_vector(v)
    assert len(text) == 512  # 384 int8 values in base64
    back = decode_vector(text, 384)
    assert float(back @ v) > 0.999
    for bad in ("not base64!", encode_vector(unit(2, 100)), ""):
        with pytest.raises(ValueError):
            decode_vector(bad, 384)


def test_segment_embedder_gives_unit_vectors_and_its_file_is_checked(tmp_path: Path) -> None:
    emb = small_embedder()
    frames = np.random.default_rng(3).random((5, 6)).astype(np.float32)
    det = np.array([0.9, 0.1, 0.5, 0.0], np.float32)
    v = emb.embed(frames, det)
    assert v.shape == (384,) and abs(float(np.linalg.norm(v)) - 1) < 1e-5
    assert np.allclose(emb.embed(frames.mean(0), det), v, atol=1e-6)  # frames or their mean: the same
    entry = save_vse(tmp_path, emb)
    loaded = load_vse(tmp_path, {"vse": entry})
    assert loaded is not None and float(loaded.embed(frames, det) @ v) > 0.999  # float16 weights
    assert load_vse(tmp_path, {}) is None  # a model without one
    (tmp_path / "vse.safetensors").write_bytes(b"x" * 100)
    with pytest.raises(ModelError, match="checksum"):
        load_vse(tmp_path, {"vse": entry})


def test_json_carries_a_cue_vector_only_when_there_is_one() -> None:
    cues = [Cue(0.0, 2.0, "a dog runs", 0.5), Cue(2.0, 4.0, "a cat sleeps", 0.5)]
    vec = encode_vector(unit(4))
    rows = json.loads(format_json(cues, {}, [(), ()], [vec, ""]))["cues"]
    assert rows[0]["vector"] == vec and "vector" not in rows[1]
    assert "vector" not in json.loads(format_json(cues, {}))["cues"][0]  # no vectors: the old output


class Fixed:
    """An embedder that maps known texts to fixed vectors (the query decides the winner by its vector)."""

    def __init__(self, table: dict[str, np.ndarray]) -> None:
        self.table = table

    def embed(self, texts):
        return np.stack([self.table.get(t, unit(abs(hash(t)) % 1000 + 50)) for t in texts]).astype(np.float32)


def test_search_ranks_by_the_picture_when_captions_say_nothing(tmp_path: Path) -> None:
    """Two cues with the same generic caption: only their visual vectors tell the query's one apart."""
    q, other = unit(10), unit(11)
    root = tmp_path / "subs"
    root.mkdir()
    for name, vec in (("a.json", other), ("b.json", q)):
        doc = {"metadata": {"video": {"path": f"/v/{name}.mp4"}},
               "cues": [{"start": 0.0, "end": 3.0, "text": "a man is talking", "vector": encode_vector(vec)}]}
        (root / name).write_text(json.dumps(doc), encoding="utf-8")
    (root / "old.json").write_text(json.dumps({"metadata": {}, "cues": [{"start": 0, "end": 1, "text": "a man is talking"}]}))
    emb = Fixed({"someone explains a recipe": q})
    hits = Searcher([root], SearchConfig(visual_weight=0.5), emb).search("someone explains a recipe", 3).hits
    assert hits[0].output.name == "b.json"
    # without the picture the three cues tie (same caption): the order is the files'
    flat = Searcher([root], SearchConfig(visual_weight=0.0), emb).search("someone explains a recipe", 3).hits
    assert len({round(h.score, 6) for h in flat}) == 1
    # the index keeps the vectors: a second update reuses them
    idx, st = update_index(root, emb)
    assert not st.written and idx.has_visual.tolist().count(True) == 2


def test_a_bad_vector_leaves_that_file_out_with_a_reason(tmp_path: Path) -> None:
    root = tmp_path / "subs"
    root.mkdir()
    (root / "bad.json").write_text(json.dumps({"metadata": {}, "cues": [
        {"start": 0, "end": 1, "text": "a dog", "vector": "???"}]}), encoding="utf-8")
    with pytest.raises(ValueError, match="vector"):
        read_output(root / "bad.json")
    (root / "good.json").write_text(json.dumps({"metadata": {}, "cues": [{"start": 0, "end": 1, "text": "a dog"}]}))
    s = Searcher([root], replace(SearchConfig(), visual_weight=0.5), Fixed({}))
    assert [Path(p).name for p, _ in s.errors] == ["bad.json"] and s.cues == 1


def test_a_cue_borrows_its_neighbourhood_picture(tmp_path: Path) -> None:
    """One frame of a clip missed the query's content: its neighbours' vectors lift it (context_weight)."""
    q = unit(20)
    near_q = q + 0.3 * unit(21)
    near_q /= np.linalg.norm(near_q)
    root = tmp_path / "subs"
    root.mkdir()

    def clip(name: str, vecs: list[np.ndarray], step: float = 2.0) -> None:
        cues = [{"start": i * step, "end": (i + 1) * step, "text": "a man is talking", "vector": encode_vector(v)}
                for i, v in enumerate(vecs)]
        (root / name).write_text(json.dumps({"metadata": {}, "cues": cues}), encoding="utf-8")

    clip("a.json", [unit(30), near_q, near_q])  # the cue at 0-2 s shows nothing of it; the rest of the clip does
    clip("b.json", [unit(31), unit(32), unit(33)])
    clip("far.json", [unit(34), near_q], step=100.0)  # its second cue is 100 s away: outside a 30 s window
    emb = Fixed({"someone explains a recipe": q})
    idx, _ = update_index(root, emb, SearchConfig(context_seconds=30.0))
    a = [i for i in range(len(idx)) if idx.paths[idx.file_of[i]] == "a.json"]
    far = [i for i in range(len(idx)) if idx.paths[idx.file_of[i]] == "far.json"]
    assert idx.ctx_lo[a[0]] == a[0] and idx.ctx_hi[a[0]] == a[-1] + 1  # the whole clip
    assert idx.ctx_hi[far[0]] == far[0] + 1  # alone

    def first_cue_score(weight: float, name: str) -> float:
        s = Searcher([root], SearchConfig(visual_weight=1.0, context_weight=weight, context_seconds=30.0), emb)
        hits = s.search("someone explains a recipe", 20).hits
        return next(h.score for h in hits if h.output.name == name and h.start == 0.0)

    own, helped = first_cue_score(0.0, "a.json"), first_cue_score(0.5, "a.json")
    expected_context = float(q @ ((near_q * 2 + decode_vector(encode_vector(unit(30)))) / 3)) / float(
        np.linalg.norm((decode_vector(encode_vector(near_q)) * 2 + decode_vector(encode_vector(unit(30)))) / 3))
    assert helped > own + 0.2 and abs(helped - (0.5 * own + 0.5 * expected_context)) < 0.02
    assert abs(first_cue_score(0.5, "far.json") - first_cue_score(0.0, "far.json")) < 1e-4  # its window is itself
    # the index records its window: another one rebuilds it, the same one is reused
    _, st = update_index(root, emb, SearchConfig(context_seconds=30.0))
    assert not st.written
    _, st = update_index(root, emb, SearchConfig(context_seconds=5.0))
    assert st.written


def test_ensemble_map_is_the_mean_of_its_members():
    """train_vse --ensemble ships K maps as one wider map: its output is their mean output, normalised."""
    import torch
    from torch.nn import functional as F

    from pipelines.train_vse import VisualMap, ensemble_map

    torch.manual_seed(0)
    maps = [VisualMap(10, out_dim=4, hidden=6).eval() for _ in range(3)]
    joint = ensemble_map([m.state_dict() for m in maps], 10).eval()
    x = torch.randn(5, 10)
    with torch.no_grad():
        want = F.normalize(sum(m.net(x) for m in maps) / 3, dim=-1)
        assert joint.net[0].out_features == 18
        assert torch.allclose(joint(x), want, atol=1e-6)
        assert not torch.allclose(maps[0](x), want, atol=1e-3)  # the members differ: the mean is not any one of them


def test_caption_memory_moves_a_vector_towards_its_nearest_videos_captions(tmp_path: Path) -> None:
    """A segment that looks like training video j takes on some of what j's captions say."""
    from captioner.vse import CaptionMemory

    keys = np.stack([unit(s) for s in range(60, 70)])
    values = np.stack([unit(s) for s in range(80, 90)])
    v = keys[3] + 0.2 * unit(99)
    v /= np.linalg.norm(v)
    one = CaptionMemory(keys, values, k=1, temperature=0.05, weight=0.5)
    moved = one.apply(v)
    want = v + 0.5 * values[3]
    assert np.allclose(moved, want / np.linalg.norm(want), atol=1e-5)  # k = 1: the nearest video's captions
    many = CaptionMemory(keys, values, k=10, temperature=0.05, weight=0.5).apply(v)
    assert abs(float(np.linalg.norm(many)) - 1) < 1e-5
    assert float(many @ values[3]) > float(v @ values[3]) + 0.2  # the softmax picks the near one out of ten
    assert float(many @ values[3]) > max(float(many @ values[i]) for i in range(10) if i != 3)
    # the embedder applies it after its map; save and load keep it with its parameters
    emb = small_embedder().with_memory(CaptionMemory(keys, values, k=3, temperature=0.1, weight=0.7))
    frames = np.random.default_rng(5).random((2, 6)).astype(np.float32)
    det = np.array([0.2, 0.1, 0.9, 0.0], np.float32)
    assert np.allclose(emb.embed(frames, det), emb.memory.apply(emb.embed_map(frames, det)), atol=1e-6)
    assert float(emb.embed(frames, det) @ emb.embed_map(frames, det)) < 0.99  # it does move the vector
    entry = save_vse(tmp_path, emb, {"memory": {"data": "ten videos"}})
    assert entry["memory"] == {"data": "ten videos", "k": 3, "temperature": 0.1, "weight": 0.7, "items": 10}
    loaded = load_vse(tmp_path, {"vse": entry})
    assert loaded.memory is not None and loaded.memory.k == 3 and loaded.memory.weight == 0.7
    assert float(loaded.embed(frames, det) @ emb.embed(frames, det)) > 0.999
    (tmp_path / "plain").mkdir()
    plain = save_vse(tmp_path / "plain", small_embedder(), {"memory": {"data": "stale"}})
    assert "memory" not in plain and load_vse(tmp_path / "plain", {"vse": plain}).memory is None


def test_a_memory_that_does_not_fit_the_map_is_refused(tmp_path: Path) -> None:
    from captioner.vse import CaptionMemory

    emb = small_embedder().with_memory(CaptionMemory(np.stack([unit(1, 100)] * 2), np.stack([unit(2, 100)] * 2)))
    entry = save_vse(tmp_path, emb)
    with pytest.raises(ModelError, match="memory does not fit"):
        load_vse(tmp_path, {"vse": entry})


def test_info_says_whether_the_search_vectors_have_a_memory(tmp_path: Path) -> None:
    from captioner.vse import CaptionMemory
    from captioner.weights import update_manifest
    from clitools import cli
    from conftest import make_tiny_model

    model = make_tiny_model(tmp_path / "m")
    keys = np.stack([unit(s) for s in range(10)])
    for emb, want in ((small_embedder(), None),
                      (small_embedder().with_memory(CaptionMemory(keys, keys, k=3)),
                       "moved towards the captions of the 3 training videos it looks most like (of 10)")):
        entry = save_vse(model, emb)
        update_manifest(model, lambda m: m.update(vse=entry))
        result = cli("info", "--model", model)
        assert result.exit_code == 0, result.stderr
        line = next(x for x in result.stdout.splitlines() if x.startswith("search:"))
        assert "384-d visual vector" in line
        assert (want in line) if want else ("moved towards" not in line)


def test_caption_vectors_are_the_mean_of_their_words_and_survive_save_and_load(tmp_path: Path) -> None:
    words = np.stack([unit(s) for s in range(200, 206)])  # a 6-word vocabulary
    emb = small_embedder().with_words(words)
    got = emb.caption_vectors([(1, 2), (3,), (4, 99), (), (99,)])  # 99: a word added after the fit
    want = words[1] + words[2]
    assert np.allclose(got[0], want / np.linalg.norm(want), atol=1e-6)
    assert np.allclose(got[1], words[3], atol=1e-6)
    assert np.allclose(got[2], words[4], atol=1e-6)  # the unknown id is left out
    assert not got[3].any() and not got[4].any()  # nothing known: the zero vector (closeness 0)
    with pytest.raises(ValueError, match="no word vectors"):
        small_embedder().caption_vectors([(1,)])
    entry = save_vse(tmp_path, emb, {"words": {"data": "six words"}})
    assert entry["words"] == {"data": "six words", "count": 6}
    loaded = load_vse(tmp_path, {"vse": entry})
    assert loaded.words is not None and np.allclose(loaded.caption_vectors([(1, 2)]), got[:1], atol=1e-3)
    bad = save_vse(tmp_path, small_embedder().with_words(np.ones((6, 10), np.float32)))
    with pytest.raises(ModelError, match="word vectors do not fit"):
        load_vse(tmp_path, {"vse": bad})


def test_word_vectors_fit_recovers_a_bag_of_words_space() -> None:
    """pipelines.caption_vectors: captions whose embedding is a mean of word vectors give those vectors back."""
    from captioner.vocab import Vocabulary
    from pipelines.caption_vectors import bag_of_words, fit_word_vectors, mean_cosine

    vocab = Vocabulary.build(["a dog runs on grass", "a cat sleeps on a sofa", "a man cooks food"], min_count=1)
    rng = np.random.default_rng(0)
    truth = rng.standard_normal((len(vocab), 16)).astype(np.float32)
    words = [w for w in vocab.itos if not w.startswith("<")]
    captions = [" ".join(rng.choice(words, size=rng.integers(2, 7))) + " zebra" for _ in range(400)]  # zebra: unknown
    x = bag_of_words(vocab, captions)
    assert np.allclose(np.asarray(x.sum(1)).ravel(), 1.0)  # 1/n per known word: "zebra" is not one
    y = np.asarray(x @ truth)
    w = fit_word_vectors(x, y, ridge=1e-4)
    assert mean_cosine(x, w, y / np.linalg.norm(y, axis=1, keepdims=True)) > 0.999
    assert mean_cosine(x, w[rng.permutation(len(w))], y / np.linalg.norm(y, axis=1, keepdims=True)) < 0.9


def test_info_names_the_word_vectors_that_choose_among_beam_captions(tmp_path: Path) -> None:
    from captioner.weights import update_manifest
    from clitools import cli
    from conftest import make_tiny_model

    model = make_tiny_model(tmp_path / "m")
    for emb, shown in ((small_embedder(), False), (small_embedder().with_words(np.stack([unit(1)] * 5)), True)):
        entry = save_vse(model, emb)
        update_manifest(model, lambda m: m.update(vse=entry))
        result = cli("info", "--model", model)
        assert result.exit_code == 0, result.stderr
        lines = [x for x in result.stdout.splitlines() if x.startswith("choosing:")]
        assert bool(lines) == shown
        if shown:
            assert "vectors for 5 words" in lines[0] and "--rerank-weight" in lines[0]


def test_rerank_takes_the_beam_caption_closest_to_the_segment(captioner) -> None:
    """Captioner._rerank: score + rerank_weight x cos(caption, segment vector), over the beam's finished captions."""
    import copy

    from captioner.search import Hypothesis

    v = unit(300)
    words = np.stack([unit(s) for s in range(310, 316)])
    words[4] = v  # a caption of word 4 says what the segment shows
    likeliest = Hypothesis((3,), -1.0, -1.0, alternatives=(Hypothesis((4,), -1.2, -1.2), Hypothesis((5,), -3.0, -3.0)))
    cap = copy.copy(captioner)
    cap.vse = small_embedder().with_words(words)
    for weight, want in ((10.0, (4,)), (0.1, (3,)), (0.0, (3,))):  # 0.1 x ~1 does not make up 0.2 of score
        assert cap._rerank(likeliest, v, weight).tokens == want
    assert cap._rerank(likeliest, None, 10.0).tokens == (3,)  # no vector
    cap.vse = small_embedder()  # search vectors without word vectors
    assert cap._rerank(likeliest, v, 10.0).tokens == (3,)


def test_video_captions_go_through_rerank_with_their_segment_vector(tmp_path: Path) -> None:
    """The wiring: a video segment's caption is what _rerank chose, given the vector the JSON gets."""
    import json as _json

    from captioner.config import CaptionConfig
    from captioner.detect import CELLS, Detectors, save_detectors
    from captioner.pipeline import Captioner
    from captioner.vocab import fix_articles
    from captioner.weights import MANIFEST
    from conftest import make_tiny_model

    folder = make_tiny_model(tmp_path / "m")
    manifest = _json.loads((folder / MANIFEST).read_text())
    rng = np.random.default_rng(0)
    det = Detectors(("dog", "cat"), rng.normal(size=(1280, 2)).astype(np.float32) * 0.01, np.zeros(2, np.float32),
                    np.ones(2, np.float32), np.zeros(2, np.float32), 0.0)
    manifest["detectors"] = save_detectors(folder, det)
    d_in = 1280 + 2
    emb = SegmentEmbedder(np.zeros(d_in, np.float32), np.ones(d_in, np.float32),
                          rng.standard_normal((d_in, 8)).astype(np.float32), np.zeros(8, np.float32),
                          rng.standard_normal((8, 384)).astype(np.float32), np.zeros(384, np.float32),
                          words=np.stack([unit(s) for s in range(manifest["decoder"]["vocab_size"])]))
    manifest["vse"] = save_vse(folder, emb)
    (folder / MANIFEST).write_text(_json.dumps(manifest))
    base = CaptionConfig()
    cap = Captioner(replace(base, model_dir=folder, decoding=replace(base.decoding, guide_weight=1.0)))
    seen = []

    def last_alternative(hyp, vector, weight, consensus=None, agree=0.0):
        seen.append((hyp, vector, weight))
        return hyp.alternatives[-1] if hyp.alternatives else hyp

    cap._rerank = last_alternative
    priors = []
    plain_start = cap.decoder.start

    def start(*args):  # the word prior each search starts with
        priors.append(args[5] if len(args) > 5 else None)
        return plain_start(*args)

    cap.decoder.start = start
    feats = rng.random((2 * CELLS, 1280)).astype(np.float32)  # a two-frame segment
    video, = cap.caption_batch([(feats, None)], video=True)
    (hyp, vector, weight), = seen
    assert np.allclose(priors[0], cap._word_prior(vector, 1.0))
    assert hyp.alternatives, "a beam of 5 finishes more than one caption"
    assert video.text == fix_articles(cap.vocab.decode(hyp.alternatives[-1].tokens))
    assert vector.shape == (384,) and float(decode_vector(video.vector, 384) @ vector) > 0.99
    assert weight == cap.config.decoding.rerank_weight
    # photos: chosen by the map's own vector (no caption memory), which is not written anywhere
    from captioner.vse import CaptionMemory

    keys = np.stack([unit(s) for s in range(400, 410)])
    cap.vse = cap.vse.with_memory(CaptionMemory(keys, keys[::-1].copy(), k=3))
    seen.clear()
    photo, = cap.caption_batch([(feats[:CELLS], None)], video=False)
    (hyp, vector, weight), = seen
    pooled, det_probs = feats[:CELLS].mean(0, keepdims=True), cap.detectors.probs(feats[:CELLS])
    assert weight == cap.config.decoding.photo_rerank_weight > 0
    assert np.allclose(vector, cap.vse.embed_map(pooled, det_probs), atol=1e-5)
    assert not np.allclose(vector, cap.vse.embed(pooled, det_probs), atol=1e-3)
    assert photo.vector == ""
    assert priors[-1] is None  # photos: no word prior (photo_guide_weight 0)
    seen.clear()
    video, = cap.caption_batch([(feats[:CELLS], None)], video=True)
    assert np.allclose(seen[0][1], cap.vse.embed(pooled, det_probs), atol=1e-5)  # video: with the memory
    cap.config = replace(cap.config, decoding=replace(cap.config.decoding, photo_rerank_weight=0.0))
    seen.clear()
    cap.caption_batch([(feats[:CELLS], None)], video=False)
    # photo reranking off: the vector is made all the same (the consensus and the confidence read it); weight 0
    assert np.allclose(seen[0][1], cap.vse.embed_map(pooled, det_probs), atol=1e-5) and seen[0][2] == 0.0



def test_word_prior_is_each_words_closeness_to_the_picture(captioner) -> None:
    import copy

    words = np.stack([unit(s) for s in range(500, 506)])  # fewer rows than the vocabulary: the rest get 0
    cap = copy.copy(captioner)
    cap.vse = small_embedder().with_words(words)
    v = unit(501)
    prior = cap._word_prior(v, 2.0)
    assert prior.shape == (len(cap.vocab),) and np.allclose(prior[:6], 2.0 * words @ v, atol=1e-6)
    assert not prior[6:].any() and int(np.argmax(prior)) == 1
    assert cap._word_prior(None, 2.0) is None and cap._word_prior(v, 0.0) is None
    cap.vse = small_embedder()
    assert cap._word_prior(v, 2.0) is None  # no word vectors


def test_holdout_pool_is_the_same_videos_for_the_map_and_the_memory() -> None:
    """train_vse --holdout and vse_memory --pool-run take one split: the pool's videos are in neither's training."""
    from pipelines.train_vse import holdout_split

    train, val = [f"video{i}" for i in range(50)], ["video900", "video901"]
    kept, pool = holdout_split(train, val, 10)
    assert (kept, pool) == holdout_split(train, val, 10)  # the same N videos every time
    assert pool[:2] == val and len(pool) == 12 and len(kept) == 40
    assert not set(kept) & set(pool) and set(kept) | set(pool) == set(train) | set(val)
    assert kept == [v for v in train if v in kept]  # training order kept


def test_checkpoint_embedder_is_the_trained_map() -> None:
    """What vse_memory --pool-run scores with (the run-time embedder of best.pt) is the map train_vse evaluated."""
    import torch

    from pipelines.train_vse import VisualMap, checkpoint_embedder

    torch.manual_seed(0)
    vis = VisualMap(10, out_dim=6, hidden=8).eval()
    mean, std = torch.randn(10), torch.rand(10) + 0.5
    emb = checkpoint_embedder({"vis": vis.state_dict(), "mean": mean, "std": std})
    x = torch.randn(3, 10)
    with torch.no_grad():
        want = vis((x - mean) / std).numpy()
    got = np.stack([emb.embed_map(r[:6].numpy(), r[6:].numpy()) for r in x])  # 6 pooled dims + 4 detector words
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_memory_grid_scores_the_pool_without_and_with_a_memory() -> None:
    """A memory of training videos that look like the pool's and whose captions say what the queries say
    lifts the pool's recall; the first row is the map alone."""
    from pipelines.train_vse import ranks, recall
    from pipelines.vse_memory import memory_grid

    rng = np.random.default_rng(0)
    n, d = 40, 384
    unit_rows = lambda a: (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    queries = unit_rows(rng.standard_normal((n, d)))
    pool = unit_rows(0.05 * queries + rng.standard_normal((n, d)) / np.sqrt(d))  # the map sees little of it
    keys = unit_rows(pool + 0.02 * rng.standard_normal((n, d)))  # a training video like each pool video
    values = unit_rows(queries + 0.02 * rng.standard_normal((n, d)))  # whose captions say what its query says
    rows = memory_grid(keys, values, pool, queries, [(1, 0.05, 1.0), (5, 0.05, 0.25)])
    assert [(r["k"], r["weight"]) for r in rows] == [(0, 0.0), (1, 1.0), (5, 0.25)]
    assert rows[0] == {"k": 0, "temperature": 0.0, "weight": 0.0, **recall(ranks(queries @ pool.T))}
    assert rows[0]["R@1"] < 50 and rows[1]["R@1"] == 100.0
    assert rows[0]["R@1"] < rows[2]["R@1"] <= rows[1]["R@1"]
