"""The NumPy decoder that `captioner run` uses gives what the torch reference gives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from captioner.config import DecoderConfig
from captioner.decoder import CaptionDecoder
from captioner.decoder_np import NumpyDecoder
from captioner.errors import ModelError
from captioner.weights import load_model, load_runtime_model, save_model
from captioner.vocab import Vocabulary

V = 30


def _config(k: int) -> DecoderConfig:
    return DecoderConfig(feature_dim=16, embed_dim=12, hidden_dim=20, attention_dim=8, dropout=0.3,
                         vocab_size=V, concept_slots=k)


def _pair(k: int, seed: int) -> tuple[CaptionDecoder, NumpyDecoder]:
    torch.manual_seed(seed)
    model = CaptionDecoder(_config(k)).eval()
    with torch.no_grad():  # sharper than the initialisation, so beams disagree when anything differs
        model.fc.weight.mul_(4.0)
        if k:
            model.null_slot.normal_()
    return model, NumpyDecoder.from_torch(model)


@pytest.mark.parametrize("k", [0, 3])
def test_step_matches_torch(k):
    model, twin = _pair(k, 0)
    feats = torch.randn(4, 7, 16)
    mask = torch.ones(4, 7, dtype=torch.bool)
    mask[1, 4:] = False
    cids = torch.tensor([[5, 9, 0], [5, 5, 0], [0, 0, 0], [7, 8, 9]]) if k else None  # repeats, empties, none
    cprobs = torch.tensor([[0.7, 0.2, 0.0], [0.4, 0.3, 0.0], [0.0, 0.0, 0.0], [0.3, 0.3, 0.3]]) if k else None
    st = model.init_state(feats, mask, cids, cprobs)
    nst = twin.init_state(feats.numpy(), mask.numpy(), None if cids is None else cids.numpy(),
                          None if cprobs is None else cprobs.numpy())
    tokens = torch.tensor([1, 4, 6, 9])
    for _ in range(4):
        with torch.no_grad():
            out, st, _ = model.step(tokens, st)
        nout, nst = twin.step(tokens.numpy(), nst)
        np.testing.assert_allclose(nout, out.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(nst.h, st.h.numpy(), rtol=1e-4, atol=1e-5)
        tokens = out.argmax(-1)


def _search(twin: NumpyDecoder, feats, cids=None, cprobs=None, weight=0.0, banned=(), required=(), **kw):
    """One caption through the runtime's path: the twin's steps driven by search.py."""
    from captioner.search import search_many

    start = twin.start(feats, cids, cprobs, weight, banned)
    return search_many(twin.log_probs, [(start, banned, required)], 1, 2, **kw)[0]


@pytest.mark.parametrize("k", [0, 3])
def test_search_steps_are_the_torch_models_probabilities(k):
    """What a search is fed: log-softmax of the torch step, banned words renormalised away."""
    model, twin = _pair(k, 5)
    feats = torch.randn(6, 16)
    cids, cprobs = (torch.tensor([6, 11, 0]), torch.tensor([0.8, 0.15, 0.0])) if k else (None, None)
    st = model.init_state(feats[None], None, *((cids[None], cprobs[None]) if k else (None, None)))
    nst = twin.start(feats.numpy(), *((cids.numpy(), cprobs.numpy()) if k else (None, None)), banned=(0, 3))
    tokens = torch.tensor([1])
    for _ in range(4):
        with torch.no_grad():
            out, st, _ = model.step(tokens, st)
        out[:, [0, 3]] = float("-inf")
        ref = out.log_softmax(-1).numpy()
        (got, nst), = twin.log_probs([(tokens.numpy(), nst)])
        np.testing.assert_allclose(got[:, [1, 2] + list(range(4, V))], ref[:, [1, 2] + list(range(4, V))],
                                   rtol=1e-4, atol=1e-5)
        assert np.all(got[:, [0, 3]] == -np.inf)
        tokens = out.argmax(-1)


def test_extend_vocab_copies_donor_rows():
    _, twin = _pair(0, 1)
    big = twin.extend_vocab([5, 7])
    assert big.config.vocab_size == V + 2
    st = big.init_state(np.ones((1, 4, 16), np.float32))
    logits, _ = big.step(np.array([V]), st)  # the first new word reads like its donor 5
    ref, _ = big.step(np.array([5]), st)
    np.testing.assert_allclose(logits[:, [V, V + 1]], ref[:, [5, 7]], rtol=1e-5)


def test_runtime_loader_reads_the_same_files(tmp_path):
    model, _ = _pair(3, 2)
    vocab = Vocabulary(("<pad>", "<start>", "<end>", "<unk>") + tuple(f"w{i}" for i in range(V - 4)))
    folder = save_model(tmp_path / "m", model.state_dict(), vocab, model.config, name="t", encoder="efficientnet-lite0")
    torch_dec, _, info = load_model(folder)
    np_dec, np_vocab, np_info = load_runtime_model(folder)
    assert np_vocab == vocab and np_info.sha256 == info.sha256
    feats = np.random.default_rng(0).standard_normal((1, 6, 16)).astype(np.float32)
    with torch.no_grad():
        ref, _, _ = torch_dec.step(torch.tensor([1]), torch_dec.init_state(torch.from_numpy(feats)))
    got, _ = np_dec.step(np.array([1]), np_dec.init_state(feats))
    np.testing.assert_allclose(got, ref.numpy(), rtol=1e-4, atol=1e-5)


def test_runtime_loader_rejects_tensors_that_do_not_fit(tmp_path):
    model, _ = _pair(0, 0)
    vocab = Vocabulary(("<pad>", "<start>", "<end>", "<unk>") + tuple(f"w{i}" for i in range(V - 4)))
    folder = save_model(tmp_path / "m", model.state_dict(), vocab, model.config, name="t", encoder="efficientnet-lite0")
    manifest = json.loads((folder / "model.json").read_text())
    manifest["decoder"]["hidden_dim"] = 24  # the tensors say 20
    (folder / "model.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="does not match its manifest"):
        load_runtime_model(folder)


def test_captioning_never_imports_torch(tiny_model, tmp_path):
    """Once the encoder's ONNX export exists, a run loads neither torch's 650 MB nor its 1.8 s."""
    pytest.importorskip("onnxruntime")
    from captioner.config import EncoderConfig
    from captioner.encoder import Encoder

    env = dict(os.environ, CAPTIONER_CACHE=str(tmp_path / "cache"))
    os.environ["CAPTIONER_CACHE"] = env["CAPTIONER_CACHE"]
    try:
        assert Encoder(EncoderConfig(), backend="onnx").backend == "onnx"  # exports into the cache (uses torch)
    finally:
        del os.environ["CAPTIONER_CACHE"]
    script = textwrap.dedent(f"""
        import sys
        from dataclasses import replace
        import numpy as np
        from captioner.config import CaptionConfig
        from captioner.pipeline import Captioner
        cap = Captioner(replace(CaptionConfig(), model_dir={str(tiny_model)!r}))
        text = cap.caption_images([np.full((64, 80, 3), 120, np.uint8)])[0].text
        assert text, "no caption"
        print("torch" in sys.modules, cap.encoder.backend)
    """)
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).parent.parent)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "onnx"]


@pytest.mark.parametrize("beam_size", [1, 4])
def test_searches_of_many_items_at_once_equal_each_alone(beam_size):
    """A video window's segments are searched together; each gets what it would get alone (greedy or beam)."""
    from captioner.search import search_many

    _, twin = _pair(3, 4)
    rng = np.random.default_rng(7)
    items = [  # feats, cids, cprobs, concept weight, banned, required
        (rng.standard_normal((10, 16)), np.array([6, 11, 0]), np.array([0.8, 0.1, 0.0]), 0.5, (0, 1, 3), ()),
        (rng.standard_normal((3, 16)), np.array([7, 0, 0]), np.array([0.4, 0.0, 0.0]), 0.0, (0, 1, 3), (13,)),
        (rng.standard_normal((25, 16)), np.array([9, 8, 5]), np.array([0.3, 0.3, 0.2]), 0.3, (0, 1, 3, 4), ()),
    ]
    kw = dict(beam_size=beam_size, max_length=9, length_penalty=0.7, no_repeat_ngram=2, once=(5, 6, 7))
    together = search_many(twin.log_probs, [(twin.start(f, c, p, w, b), b, r) for f, c, p, w, b, r in items], 1, 2, **kw)
    for (f, c, p, w, b, r), got in zip(items, together):
        alone = _search(twin, f, c, p, w, b, r, **kw)
        assert got.tokens == alone.tokens
        assert got.score == pytest.approx(alone.score, abs=1e-4)
        assert not set(got.tokens) & set(b) and all(got.tokens.count(t) <= 1 for t in (5, 6, 7))
    if beam_size > 1:
        assert 13 in together[1].tokens


def test_a_word_prior_shifts_every_step_and_survives_beam_reordering():
    """start(..., bias=b): each step's log-probs are log_softmax(scores + b), banned words still get none."""
    _, twin = _pair(3, 5)
    rng = np.random.default_rng(3)
    feats = rng.standard_normal((6, 16)).astype(np.float32)
    cids, cprobs = np.array([6, 11, 0]), np.array([0.8, 0.1, 0.0])
    vocab_size = twin.config.vocab_size
    bias = rng.standard_normal(vocab_size).astype(np.float32) * 2
    plain = twin.start(feats, cids, cprobs, 0.5, (0, 1))
    guided = twin.start(feats, cids, cprobs, 0.5, (0, 1), bias)
    tokens = np.array([1, 1])
    plain, guided = plain.select(np.array([0, 0])), guided.select(np.array([0, 0]))  # two beams
    for step in range(3):
        (lp, plain), = twin.log_probs([(tokens, plain)])
        (lg, guided), = twin.log_probs([(tokens, guided)])
        x = lp + bias  # lp: the unguided log-probs, -inf at the banned words
        want = x - x.max(1, keepdims=True) - np.log(np.exp(x - x.max(1, keepdims=True)).sum(1, keepdims=True))
        finite = np.isfinite(want)
        assert np.allclose(lg[finite], want[finite], atol=1e-4)
        assert np.array_equal(np.isfinite(lg), finite) and np.all(np.isinf(lg[:, [0, 1]]))
        assert not np.allclose(lg[finite], lp[finite], atol=1e-2)  # the prior did move them
        tokens = np.argmax(lg, axis=1)
        plain, guided = plain.select(np.array([1, 0])), guided.select(np.array([1, 0]))
        assert guided.bias is not None  # kept through select
    assert twin.start(feats).bias is None
