"""Decoder, beam search, vocabulary and weight files — with tiny models, no real data."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch

from captioner.config import DecoderConfig
from captioner.decoder import CaptionDecoder
from captioner.search import search_one
from captioner.errors import ModelError
from captioner.vocab import Vocabulary, tokenize
from captioner.weights import load_model, save_model


# -- vocabulary -------------------------------------------------------------------
def test_tokenize_lowercases_and_drops_punctuation():
    assert tokenize("A dog's toy, on the GRASS .") == ["a", "dog's", "toy", "on", "the", "grass"]


def test_vocab_round_trip_and_min_count():
    vocab = Vocabulary.build(["a dog runs", "a dog sits", "a cat"], min_count=2)
    assert vocab.itos[4:] == ("a", "dog")  # most frequent first, 'cat' below min_count
    ids = vocab.encode("A dog runs")
    assert ids[0] == vocab.start_id and ids[-1] == vocab.end_id
    assert vocab.decode(ids[1:]) == "a dog <unk>".replace(" <unk>", "")  # <unk> is a special: dropped
    assert vocab.encode("a dog", max_length=1) == [vocab.start_id, vocab.index("a"), vocab.end_id]
    assert Vocabulary(vocab.itos) == vocab


def test_vocab_rejects_missing_specials():
    with pytest.raises(ValueError):
        Vocabulary(("a", "b"))


# -- greedy and beam search on a hand-built toy model ----------------------------------------
@dataclass
class ToyState:
    """The toy's state is just the previous token; the table below decides everything."""

    prev: np.ndarray

    def select(self, index):
        return ToyState(self.prev[index])


def _toy_step(table: dict[int, dict[int, float]], vocab_size: int):
    def step(tokens, state):
        rows = []
        for t in tokens.tolist():
            row = np.full(vocab_size, -1e9, dtype=np.float32)
            for nxt, p in table.get(t, {}).items():
                row[nxt] = np.log(p)
            rows.append(row)
        return np.stack(rows), ToyState(tokens)

    return step


START, END = 1, 2
# greedy takes 4 (0.6), then only 0.3-0.35 words follow; 5 (0.4) -> 6 (1.0) is the likelier caption
GREEDY_TRAP = {START: {4: 0.6, 5: 0.4}, 4: {7: 0.35, 8: 0.35, 9: 0.3}, 7: {END: 1.0}, 8: {END: 1.0}, 9: {END: 1.0},
               5: {6: 1.0}, 6: {END: 1.0}}


def test_beam_finds_the_best_sequence_greedy_misses():
    # greedy takes 4 (0.6) then is stuck with 0.3-prob words; the best path is 5 (0.4) -> 6 (1.0) -> END
    table = GREEDY_TRAP
    step = _toy_step(table, 10)
    best = search_one(step, ToyState(np.array([START])), START, END, beam_size=3, max_length=5,
                       length_penalty=0.0, no_repeat_ngram=0)
    assert best.tokens == (5, 6)
    assert best.logprob == pytest.approx(float(np.log(0.4)), abs=1e-5)
    greedy = search_one(step, ToyState(np.array([START])), START, END, beam_size=1, max_length=5,
                        length_penalty=0.0, no_repeat_ngram=0)
    assert greedy.tokens == (4, 7)
    assert greedy.logprob == pytest.approx(float(np.log(0.6 * 0.35)), abs=1e-5)
    assert greedy.confidence == pytest.approx((0.6 * 0.35) ** (1 / 3), abs=1e-5)  # <end> (p = 1) counts as a word


def test_beam_returns_the_other_captions_it_finished_best_first():
    """Alternatives let the pipeline choose by what the decoder cannot see (the segment's vector)."""
    table = GREEDY_TRAP
    best = search_one(_toy_step(table, 10), ToyState(np.array([START])), START, END, beam_size=3, max_length=5,
                      length_penalty=0.0, no_repeat_ngram=0)
    assert best.tokens == (5, 6)
    assert [h.tokens for h in best.alternatives] == [(4, 7), (4, 8)]  # .21 each; (4, 9) fell out of the beam
    assert all(not h.alternatives for h in best.alternatives)
    scores = [best.score] + [h.score for h in best.alternatives]
    assert scores == sorted(scores, reverse=True)
    greedy = search_one(_toy_step(table, 10), ToyState(np.array([START])), START, END, beam_size=1, max_length=5,
                        length_penalty=0.0, no_repeat_ngram=0)
    assert greedy.alternatives == ()


def test_given_captions_score_as_the_beam_scores_its_own():
    """score_steps: log-probs summed along each given caption, <end> included, normalised as beam search does."""
    from captioner.search import run_searches, score_steps

    table = GREEDY_TRAP
    step = _toy_step(table, 10)
    beam = search_one(step, ToyState(np.array([START])), START, END, beam_size=3, max_length=5,
                      length_penalty=0.7, no_repeat_ngram=0)
    given = [(4, 9), (5, 6), (4, 7, 8)]  # (4, 7, 8): 7 is never followed by 8 in the table
    best, = run_searches(lambda requests: [step(t, s) for t, s in requests],
                         [score_steps(ToyState(np.array([START])), START, END, given, length_penalty=0.7)])
    assert best.tokens == (5, 6) and best.score == pytest.approx(beam.score, abs=1e-5)
    by_tokens = {h.tokens: h for h in (best, *best.alternatives)}
    assert by_tokens[(4, 9)].logprob == pytest.approx(float(np.log(0.6 * 0.3)), abs=1e-5)
    assert by_tokens[(4, 9)].score == pytest.approx(float(np.log(0.6 * 0.3)) / 3 ** 0.7, abs=1e-5)
    assert by_tokens[(4, 7, 8)].logprob < -1e8  # a word the model gives no chance sinks the caption
    assert [h.tokens for h in best.alternatives] == [(4, 9), (4, 7, 8)]
    with pytest.raises(ValueError):
        next(score_steps(ToyState(np.array([START])), START, END, []))
    # a floor a caption cannot reach stops it at once (-inf); the others score as before, fed fewer rows
    fed = []

    def counting(requests):
        fed.extend(len(t) for t, _ in requests)
        return [step(t, s) for t, s in requests]

    floored, = run_searches(counting, [score_steps(ToyState(np.array([START])), START, END, given,
                                                   length_penalty=0.7, floor=[-np.inf, -np.inf, 0.0])])
    got = {h.tokens: h.score for h in (floored, *floored.alternatives)}
    assert got[(4, 7, 8)] == -np.inf and got[(5, 6)] == pytest.approx(best.score) and got[(4, 9)] == pytest.approx(
        by_tokens[(4, 9)].score)
    assert fed == [1, 2, 2]  # <start> once for all, then (4, 9) and (5, 6) to their <end>
    # captions that begin alike share the decoder's steps until they part
    fed.clear()
    shared, = run_searches(counting, [score_steps(ToyState(np.array([START])), START, END, [(4, 7), (4, 8), (4, 9)],
                                                  length_penalty=0.0)])
    assert fed == [1, 1, 3]
    assert {h.tokens: round(h.logprob, 5) for h in (shared, *shared.alternatives)} == {
        (4, 7): round(float(np.log(0.6 * 0.35)), 5), (4, 8): round(float(np.log(0.6 * 0.35)), 5),
        (4, 9): round(float(np.log(0.6 * 0.3)), 5)}


@pytest.mark.parametrize("beam_size", [1, 3])
def test_greedy_and_beam_obey_the_same_rules(beam_size):
    """No repeated bigram, no immediate repeat, no banned word, a once-word once: greedy as beam search."""
    # the model's favourite: "4 5 4 5 ..." (a repeated bigram), then "6 6"; 3 (<unk>) is likelier than the rest
    table = {START: {4: 0.6, 3: 0.3, 7: 0.1}, 4: {5: 0.7, 3: 0.2, 6: 0.1}, 5: {4: 0.6, 3: 0.2, 6: 0.1, END: 0.1},
             6: {6: 0.6, 3: 0.2, 7: 0.1, END: 0.1}, 7: {END: 1.0}}
    step = _toy_step(table, 8)
    free = search_one(step, ToyState(np.array([START])), START, END, beam_size=beam_size, max_length=8,
                      length_penalty=0.7, no_repeat_ngram=2, banned=(3,))
    toks = free.tokens
    assert 3 not in toks and all(a != b for a, b in zip(toks, toks[1:]))
    assert len(list(zip(toks, toks[1:]))) == len(set(zip(toks, toks[1:])))
    assert 0.0 < free.confidence < 1.0
    once = search_one(step, ToyState(np.array([START])), START, END, beam_size=beam_size, max_length=8,
                      length_penalty=0.7, no_repeat_ngram=0, banned=(3,), once=(4,))
    assert once.tokens.count(4) <= 1 and len(once.tokens) <= 7
    if beam_size == 1:  # without the rules greedy says "4 5 4 5 ..."
        assert free.tokens[:2] == (4, 5) and once.tokens[:2] == (4, 5)


def test_greedy_stops_at_max_length_with_end():
    """At most max_length - 1 words, then <end>, as in beam search."""
    step = _toy_step({START: {4: 1.0}, 4: {5: 1.0}, 5: {4: 1.0}}, 8)  # never ends by itself
    for beam_size in (1, 2):
        hyp = search_one(step, ToyState(np.array([START])), START, END, beam_size=beam_size, max_length=5,
                         no_repeat_ngram=0)
        assert len(hyp.tokens) == 4, beam_size


def test_beam_blocks_repeats_and_banned_tokens():
    # the model loves repeating word 4 ("combing combing") and emitting <unk>=3
    table = {START: {4: 0.7, 3: 0.2, 5: 0.1}, 4: {4: 0.8, 3: 0.1, 5: 0.05, END: 0.05}, 5: {4: 0.5, 6: 0.3, END: 0.2}, 6: {END: 1.0}}
    step = _toy_step(table, 8)
    best = search_one(step, ToyState(np.array([START])), START, END, beam_size=3, max_length=6,
                       length_penalty=0.7, no_repeat_ngram=2, banned=(3,))
    toks = best.tokens
    assert 3 not in toks
    assert all(a != b for a, b in zip(toks, toks[1:]))
    bigrams = list(zip(toks, toks[1:]))
    assert len(bigrams) == len(set(bigrams))


def test_beam_required_word_appears_exactly_once():
    table = {START: {4: 0.9, 5: 0.1}, 4: {END: 0.9, 5: 0.1}, 5: {END: 0.8, 4: 0.2}}
    step = _toy_step(table, 8)
    best = search_one(step, ToyState(np.array([START])), START, END, beam_size=3, max_length=5,
                       length_penalty=0.0, no_repeat_ngram=2, required=(5,))
    assert best.tokens.count(5) == 1


# -- the real decoder, tiny ------------------------------------------------------------
def tiny_config(vocab_size: int = 12) -> DecoderConfig:
    return DecoderConfig(feature_dim=16, embed_dim=16, hidden_dim=16, attention_dim=16, dropout=0.0, vocab_size=vocab_size)


def test_decoder_shapes_and_masking():
    torch.manual_seed(0)
    model = CaptionDecoder(tiny_config()).eval()
    feats = torch.randn(3, 10, 16)
    caps = torch.tensor([[1, 4, 5, 2, 0], [1, 6, 2, 0, 0], [1, 4, 5, 6, 2]])
    lengths = torch.tensor([4, 3, 5])
    logits, alphas = model(feats, caps, lengths)
    assert logits.shape == (3, 4, 12) and alphas.shape == (3, 4, 10)
    assert torch.allclose(alphas[2].sum(-1), torch.ones(4), atol=1e-5)
    # padded vectors get no attention, and results equal the unpadded item
    mask = torch.ones(3, 10, dtype=torch.bool)
    mask[0, 6:] = False
    _, a_masked = model(feats, caps, lengths, mask)
    assert float(a_masked[0, :, 6:].detach().abs().sum()) == 0.0
    l_single, _ = model(feats[:1, :6], caps[:1], lengths[:1])
    l_masked, _ = model(feats, caps, lengths, mask)
    assert torch.allclose(l_single[0, :3], l_masked[0, :3], atol=1e-5)


def test_tiny_decoder_learns_on_generated_images():
    """A few steps on a handful of generated 'images' (random feature sets tied to captions): loss falls."""
    from pipelines.train import batches, loss_fn, train_steps

    torch.manual_seed(0)
    vocab = Vocabulary.build(["a red square", "a blue circle", "a green line"] * 5, min_count=1)
    feats = torch.randn(3, 5, 16)  # three distinct 'photos'
    caps = ["a red square", "a blue circle", "a green line"]
    pairs = [(i, vocab.encode(c)) for i, c in enumerate(caps)] * 4
    model = CaptionDecoder(tiny_config(len(vocab)))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    rng = random.Random(0)
    losses = []
    for _ in range(15):
        losses += train_steps(model, opt, feats, batches(pairs, 6, rng))
    assert losses[-1] < 0.3 * losses[0]
    model.eval()
    out = model.greedy(feats, vocab.start_id, vocab.end_id, 6, banned=(vocab.unk_id,))
    assert [vocab.decode(o) for o in out] == caps


# -- weight files ---------------------------------------------------------------------------
def test_float32_converts_every_half_float_exactly():
    """The fast (OpenCV) float16 -> float32 conversion agrees with NumPy's on all 65,536 bit patterns
    (NaNs stay NaN), keeps shapes of any rank, and leaves other dtypes' values alone."""
    from captioner.weights import float32

    every = np.arange(1 << 16, dtype=np.uint16).view(np.float16).reshape(2, 128, 256)
    got, want = float32(every), every.astype(np.float32)
    assert got.dtype == np.float32 and got.shape == every.shape
    nan = np.isnan(want)
    assert np.array_equal(got[~nan].view(np.uint32), want[~nan].view(np.uint32)) and np.isnan(got[nan]).all()
    for n in (0, 1, 4, 5, 4095, 4096):  # small arrays too (OpenCV would take <= 4 values for a scalar)
        small = np.arange(n, dtype=np.float16)
        assert float32(small).shape == (n,) and np.array_equal(float32(small), small.astype(np.float32))
    ints = np.arange(5, dtype=np.int64)
    assert float32(ints) is ints
    assert float32(np.ones(3, np.float64)).dtype == np.float32


def _saved_tiny(tmp_path: Path) -> Path:
    vocab = Vocabulary.build(["a b c"], min_count=1)
    model = CaptionDecoder(tiny_config(len(vocab)))
    return save_model(tmp_path / "m", model.state_dict(), vocab, model.config, name="tiny", encoder="efficientnet-lite0")


def test_weights_round_trip(tmp_path):
    folder = _saved_tiny(tmp_path)
    decoder, vocab, info = load_model(folder)
    assert info.name == "tiny" and len(vocab) == 7 and decoder.config.vocab_size == 7
    decoder2, _, _ = load_model(folder / "model.json")
    assert all(torch.equal(a, b) for a, b in zip(decoder.state_dict().values(), decoder2.state_dict().values()))


def test_corrupt_weights_give_clear_error(tmp_path):
    folder = _saved_tiny(tmp_path)
    data = bytearray((folder / "decoder.safetensors").read_bytes())
    data[-5] ^= 0xFF
    (folder / "decoder.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="checksum mismatch.*tiny"):
        load_model(folder)


def test_captioner_loads_its_weights_in_the_background(tmp_path, tiny_model):
    """Captioner(wait=False) returns with the encoder; a weights error comes with the first use, every time."""
    import shutil

    from captioner.config import CaptionConfig
    from captioner.pipeline import Captioner

    model = Path(shutil.copytree(tiny_model, tmp_path / "model"))
    config = replace(CaptionConfig(), model_dir=model, threads=1)
    ready = Captioner(config, wait=False)
    assert ready.encoder is not None
    assert ready.caption_features(np.zeros((49, 1280), np.float32)).text  # waits for the load
    data = bytearray((model / "decoder.safetensors").read_bytes())
    data[-5] ^= 0xFF
    (model / "decoder.safetensors").write_bytes(bytes(data))
    broken = Captioner(config, wait=False)  # only the manifest is read before it returns
    for _ in range(2):
        with pytest.raises(ModelError, match="checksum mismatch"):
            broken.decoder
        with pytest.raises(ModelError, match="checksum mismatch"):
            broken.wait()
    with pytest.raises(ModelError, match="checksum mismatch"):
        Captioner(config)  # waits: the error is raised here
    with pytest.raises(ModelError, match="no such model"):  # no model folder: at once, either way
        Captioner(replace(config, model_dir=tmp_path / "missing"), wait=False)


def test_a_load_error_raised_again_and_again_keeps_its_traceback(tiny_model, monkeypatch):
    """Captioner(wait=False) raised the one stored exception at each use, and its traceback grew by each
    call's frames (every failed call's frames and locals kept alive)."""
    import traceback

    from captioner.config import CaptionConfig
    from captioner.pipeline import Captioner

    def broken(m):
        raise ModelError("the weights are broken")

    monkeypatch.setattr(Captioner, "_load", staticmethod(broken))
    cap = Captioner(replace(CaptionConfig(), model_dir=tiny_model, threads=1), wait=False)
    raised = []
    for _ in range(3):
        with pytest.raises(ModelError, match="^the weights are broken$") as caught:
            cap.wait()
        raised.append(caught.value)
    depths = [len(traceback.extract_tb(e.__traceback__)) for e in raised]
    assert depths[0] == depths[1] == depths[2] and len({id(e) for e in raised}) == 3, depths
    assert any(f.name == "broken" for f in traceback.extract_tb(raised[-1].__traceback__))  # where it failed


def test_a_background_load_is_published_at_once(tiny_model, monkeypatch):
    """Until the whole load is done no part of it is visible: a caller never sees an ungrounded decoder."""
    import threading

    from captioner import weights
    from captioner.config import CaptionConfig
    from captioner.pipeline import Captioner

    go, real = threading.Event(), weights.load_runtime_model
    # a long wait costs nothing (set below); 10 s ran out once on a machine busy with three other jobs
    monkeypatch.setattr(weights, "load_runtime_model", lambda folder: (go.wait(120), real(folder))[1])
    cap = Captioner(replace(CaptionConfig(), model_dir=tiny_model, threads=1), wait=False)
    assert cap.encoder is not None and not {"decoder", "vocab", "grounder", "detectors"} & set(vars(cap))
    go.set()
    assert cap.grounder is not None and cap.decoder is cap.grounder.decoder  # waited, then saw all of it


def test_not_a_model_folder(tmp_path):
    with pytest.raises(ModelError, match="not a captioner model"):
        load_model(tmp_path)
    with pytest.raises(ModelError, match="no such model"):
        load_model(tmp_path / "missing")
    (tmp_path / "model.json").write_text("{not json")
    with pytest.raises(ModelError, match="unreadable"):
        load_model(tmp_path)


def test_training_is_deterministic_for_a_seed():
    """Same seed, same data -> bit-identical weights (what makes `make train` reproducible)."""
    from pipelines.train import batches, train_steps

    def run() -> dict:
        torch.manual_seed(3)
        vocab = Vocabulary.build(["a red square", "a blue circle"] * 3, min_count=1)
        feats = torch.randn(2, 5, 16)
        pairs = [(0, vocab.encode("a red square")), (1, vocab.encode("a blue circle"))] * 3
        model = CaptionDecoder(replace(tiny_config(len(vocab)), dropout=0.3))
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        train_steps(model, opt, feats, batches(pairs, 2, random.Random(3)))
        return model.state_dict()

    a, b = run(), run()
    assert all(torch.equal(a[k], b[k]) for k in a)


# -- checkpoints record their encoder -----------------------------------------------------
def _checkpoint(run: Path, **extra) -> Path:
    vocab = Vocabulary.build(["a b c"], min_count=1)
    model = CaptionDecoder(tiny_config(len(vocab)))
    run.mkdir(parents=True)
    torch.save({"state": model.state_dict(), "vocab": list(vocab.itos), "config": asdict(model.config),
                "history": [{"epoch": 1}], "name": "t", **extra}, run / "best.pt")
    return run


def test_export_takes_the_encoder_the_checkpoint_records(tmp_path):
    """Lite0/1/2 features are all 1280-d: a Lite2 run exported without --encoder must not become a Lite0 model."""
    import json

    from pipelines.export import main as export

    run = _checkpoint(tmp_path / "run", encoder="efficientnet-lite2")
    export(["--run", str(run), "--out", str(tmp_path / "m")])
    assert json.loads((tmp_path / "m" / "model.json").read_text())["encoder"] == "efficientnet-lite2"
    assert load_model(tmp_path / "m")[2].encoder == "efficientnet-lite2"
    with pytest.raises(SystemExit, match=r"^error: .*best.pt: trained on efficientnet-lite2 features, not efficientnet-lite0$"):
        export(["--run", str(run), "--out", str(tmp_path / "m2"), "--encoder", "efficientnet-lite0"])
    assert not (tmp_path / "m2").exists()


def test_a_checkpoint_without_an_encoder_needs_one_named(tmp_path):
    from captioner.weights import checkpoint_encoder
    from pipelines.export import main as export

    run = _checkpoint(tmp_path / "old")  # written before checkpoints recorded their encoder
    with pytest.raises(SystemExit, match="does not record its encoder; say which with --encoder"):
        export(["--run", str(run), "--out", str(tmp_path / "m")])
    export(["--run", str(run), "--out", str(tmp_path / "m"), "--encoder", "efficientnet-lite1"])
    assert load_model(tmp_path / "m")[2].encoder == "efficientnet-lite1"
    # what --resume checks (pipelines.train, pipelines.train_video)
    assert checkpoint_encoder({"encoder": "efficientnet-lite1"}, "efficientnet-lite1", "x") == "efficientnet-lite1"
    with pytest.raises(ModelError, match="x: trained on efficientnet-lite1 features, not efficientnet-lite0"):
        checkpoint_encoder({"encoder": "efficientnet-lite1"}, "efficientnet-lite0", "x")


def test_resume_refuses_a_checkpoint_of_another_encoder(tmp_path, monkeypatch):
    """pipelines.train --resume with --encoder other than the run's: one line, before any training."""
    import sys

    import pipelines.train as train

    vocab = Vocabulary.build(["a b c"] * 5, min_count=1)
    feats = torch.zeros(2, 49, 16)
    monkeypatch.setattr(train, "captions_by_file", lambda path: {"x.jpg": ["a b c"], "y.jpg": ["a b c"]})
    monkeypatch.setattr(train, "load_split", lambda encoder, split, limit=None: (["x.jpg", "y.jpg"], feats))
    for global_setting in ("use_deterministic_algorithms", "set_num_threads"):  # not for the tests after this one
        monkeypatch.setattr(torch, global_setting, lambda *a, **k: None)
    run = _checkpoint(tmp_path / "run", encoder="efficientnet-lite2")
    ckpt = torch.load(run / "best.pt", weights_only=True)
    model = CaptionDecoder(DecoderConfig(feature_dim=16, embed_dim=16, hidden_dim=16, attention_dim=16,
                                         dropout=0.5, vocab_size=len(vocab)))
    ckpt.update(vocab=list(vocab.itos), state=model.state_dict(), config=asdict(model.config),
                history=[{"epoch": 1, "dev_bleu4_greedy": 1.0}])
    torch.save(ckpt, run / "best.pt")
    monkeypatch.setattr(sys, "argv", ["train", "--resume", str(run / "best.pt"), "--run", str(tmp_path / "r2"),
                                      "--concepts", "0", "--text", "", "--hidden", "16", "--min-count", "1",
                                      "--encoder", "efficientnet-lite0"])
    with pytest.raises(SystemExit, match="trained on efficientnet-lite2 features, not efficientnet-lite0"):
        train.main()


def test_saved_tensors_come_back_as_saved_even_from_transposed_views(tmp_path: Path) -> None:
    """safetensors writes an array's buffer in memory order; save_tensors must hand it C-ordered arrays."""
    import numpy as np

    from captioner.weights import load_tensors, save_tensors

    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    sha = save_tensors(tmp_path, "t.safetensors", {"a": a.T, "b": np.arange(6, dtype=np.int8).reshape(2, 3).T})
    t = load_tensors(tmp_path, "t.safetensors", {"sha256": sha}, "a test file")
    assert t["a"].tolist() == a.T.tolist() and t["b"].tolist() == [[0, 3], [1, 4], [2, 5]]


# -- weight averaging of kept epochs (pipelines.train_video --keep-epochs / --average) --------
def _kept_epochs(run: Path, n: int) -> list[dict]:
    vocab = Vocabulary.build(["a b c"], min_count=1)
    states = []
    run.mkdir(parents=True)
    for e in range(n):
        torch.manual_seed(e)
        model = CaptionDecoder(tiny_config(len(vocab)))
        states.append(model.state_dict())
        torch.save({"state": model.state_dict(), "vocab": list(vocab.itos), "config": asdict(model.config),
                    "history": [{"epoch": i} for i in range(e + 1)], "name": "t", "encoder": "efficientnet-lite0"},
                   run / f"epoch{e}.pt")
    return states


def test_average_is_the_mean_of_the_named_epochs_weights(tmp_path):
    from pipelines.train_video import averaged_checkpoint, parse_epochs

    states = _kept_epochs(tmp_path / "run", 3)
    avg = averaged_checkpoint(tmp_path / "run", parse_epochs("2,0"))
    assert avg["averaged_epochs"] == [0, 2]
    assert avg["history"] == [{"epoch": 0}, {"epoch": 1}, {"epoch": 2}]  # the last named epoch's record
    for k, v in states[0].items():
        assert torch.allclose(avg["state"][k], (v.float() + states[2][k].float()) / 2)
    assert not torch.allclose(avg["state"]["fc.weight"], states[1]["fc.weight"].float())
    one = averaged_checkpoint(tmp_path / "run", [1])
    assert all(torch.equal(one["state"][k], states[1][k].float()) for k in states[1])


def test_average_refuses_missing_or_unlike_epochs(tmp_path):
    from pipelines.train_video import averaged_checkpoint, parse_epochs

    _kept_epochs(tmp_path / "run", 2)
    with pytest.raises(SystemExit, match=r"^error: .*run has no epoch5.pt \(train with --keep-epochs\)$"):
        averaged_checkpoint(tmp_path / "run", [0, 5])
    for bad in ("", "1,x", "-1"):
        with pytest.raises(SystemExit, match="^error: --average takes epoch numbers like 0,2,3"):
            parse_epochs(bad)
    other = torch.load(tmp_path / "run" / "epoch1.pt", weights_only=False)
    other["vocab"] = other["vocab"] + ["d"]
    torch.save(other, tmp_path / "run" / "epoch1.pt")
    with pytest.raises(SystemExit, match="differ in vocabulary or configuration"):
        averaged_checkpoint(tmp_path / "run", [0, 1])


def test_a_fine_tune_carries_the_caption_banks_only_for_the_same_vocabulary(tmp_path, caplog):
    """train_video --shipped-detectors --out M: M gets the banks of --init, unless new words changed the token ids."""
    import json

    from captioner.weights import read_manifest
    from pipelines.common import carry_companions

    vocab = Vocabulary.build(["a b c"], min_count=1)
    model = CaptionDecoder(tiny_config(len(vocab)))
    init = tmp_path / "init"
    save_model(init, model.state_dict(), vocab, model.config, name="t", encoder="efficientnet-lite0")
    files = {"detectors": "detectors.safetensors", "vse": "vse.safetensors", "bank": "bank.safetensors",
             "photo_bank": "photo_bank.safetensors"}
    for key, name in files.items():
        (init / name).write_bytes(key.encode())
    manifest = {**read_manifest(init), **{k: {"sha256": k} for k in files}, "grammar": {"after": ["is"]}}
    (init / "model.json").write_text(json.dumps(manifest))

    same = tmp_path / "same"
    save_model(same, model.state_dict(), vocab, model.config, name="t", encoder="efficientnet-lite0")
    carry_companions(init, same, manifest)
    got = read_manifest(same)
    for key, name in files.items():
        assert (same / name).read_bytes() == key.encode() and got[key] == {"sha256": key}
    assert got["grammar"] == {"after": ["is"]}

    bigger = Vocabulary(vocab.itos + ("d",))
    grown = CaptionDecoder(tiny_config(len(bigger)))
    other = tmp_path / "other"
    save_model(other, grown.state_dict(), bigger, grown.config, name="t", encoder="efficientnet-lite0")
    carry_companions(init, other, manifest)
    got = read_manifest(other)
    assert "bank" not in got and "photo_bank" not in got and not (other / "bank.safetensors").exists()
    assert got["vse"] == {"sha256": "vse"} and (other / "vse.safetensors").exists()
    assert "rebuild them with python -m pipelines.caption_bank" in caplog.text


def test_a_manifest_rewrite_stopped_midway_leaves_the_old_one(tmp_path, monkeypatch):
    """The offline jobs add entries to model.json in place: one stopped mid-write left a half file and a
    model that no longer loaded. It is written atomically now."""
    import os

    from captioner.weights import read_manifest, write_manifest

    write_manifest(tmp_path, {"name": "before", "format": 1})

    def stopped(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", stopped)
    with pytest.raises(KeyboardInterrupt):
        write_manifest(tmp_path, {"name": "after", "format": 1, "more": "x" * 100000})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json"]
    assert (tmp_path / "model.json").read_text().startswith('{\n "name": "before"')


def test_float16_weights_load_with_an_opencv_that_cannot_convert_them(monkeypatch):
    """OpenCV 4.x (which the requirements allow) takes no float16 input in cv2.multiply: every command that
    loaded the model failed with "not a valid safetensors file". NumPy converts instead, to the same values."""
    import cv2

    from captioner.weights import float32

    values = np.random.default_rng(0).standard_normal(5000).astype(np.float16).reshape(50, 100)
    expected = float32(values)

    def refuses(*args, **kwargs):
        raise cv2.error("(-215:Assertion failed) func in function 'arithm_op'")

    monkeypatch.setattr(cv2, "multiply", refuses)
    converted = float32(values)
    assert converted.dtype == np.float32 and np.array_equal(converted, expected)


def test_a_manifest_s_checksums_may_be_in_upper_case(tmp_path, tiny_model):
    """Windows tools (Get-FileHash, certutil) print SHA-256 digests in upper case: a model.json edited with one
    was refused as 'checksum mismatch ... the file is corrupt'. Any other change to a digest still is."""
    import json
    import shutil

    from captioner.config import CaptionConfig
    from captioner.pipeline import Captioner

    model = Path(shutil.copytree(tiny_model, tmp_path / "model"))
    manifest = json.loads((model / "model.json").read_text())

    def upper(node):
        if isinstance(node, dict):
            return {k: (v.upper() if k == "sha256" and isinstance(v, str) else upper(v)) for k, v in node.items()}
        return [upper(v) for v in node] if isinstance(node, list) else node

    shouted = upper(manifest)
    assert json.dumps(shouted) != json.dumps(manifest)
    (model / "model.json").write_text(json.dumps(shouted))
    captioner = Captioner(replace(CaptionConfig(), model_dir=model, threads=1))
    assert captioner.caption_features(np.zeros((49, 1280), np.float32)).text
    assert captioner.model_info.sha256 == manifest["sha256"]  # outputs name the digest as computed
    shouted["sha256"] = shouted["sha256"][:-1] + ("0" if shouted["sha256"][-1] != "0" else "1")
    (model / "model.json").write_text(json.dumps(shouted))
    with pytest.raises(ModelError, match="checksum mismatch"):
        load_model(model)


def test_the_library_takes_numpy_counts_and_a_format_string_and_shows_its_names(tmp_path):
    """threads=np.int64(1) passed the config check, then failed in threadpoolctl at every caption_video;
    write_subtitles(formats="srt") read "s", "r", "t"; dir(captioner) lacked Captioner, CaptionConfig and Cue."""
    import json

    import numpy as np

    import captioner
    from captioner.config import CaptionConfig, OutputConfig, configure
    from captioner.cues import Cue
    from captioner.writers import write_subtitles

    assert type(configure(threads=np.int64(1)).threads) is int
    assert type(CaptionConfig(threads=np.int64(2)).threads) is int
    written = write_subtitles([Cue(0, 1, "a dog")], tmp_path / "x", "srt,json", OutputConfig(),
                              {"video": {"path": "x.mp4"}})
    assert [p.name for p in written] == ["x.srt", "x.json"] and json.loads((tmp_path / "x.json").read_text())
    assert {"Captioner", "CaptionConfig", "Cue"} <= set(dir(captioner))
