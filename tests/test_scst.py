"""Stage 3 training (pipelines/train_scst.py): its CIDEr-D reward and its caption sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from captioner.config import DecoderConfig
from captioner.decoder import CaptionDecoder
from captioner.vocab import Vocabulary
from pipelines.train_scst import CiderD, sample

REFS = [
    ["a man is cooking noodles in a pan", "a chef cooks noodles", "someone is frying food in a pan"],
    ["a dog runs on the beach", "a brown dog is running through the sand", "a dog plays by the sea"],
    ["a woman sings on a stage", "a singer performs a song", "a woman is singing into a microphone"],
    ["two men play football", "a football game is being played", "players run on a field"],
]
HYPS = ["a man is cooking in a pan", "a dog is running on the beach", "a man is talking", "football players on a field"]


def test_cider_d_matches_pycocoevalcap_when_document_frequencies_come_from_the_same_items():
    cider_mod = pytest.importorskip("pycocoevalcap.cider.cider")
    _, per_item = cider_mod.Cider().compute_score({i: r for i, r in enumerate(REFS)},
                                                  {i: [h] for i, h in enumerate(HYPS)})
    ours = CiderD([[r.split() for r in refs] for refs in REFS])
    for i, h in enumerate(HYPS):
        assert ours.score(i, h.split()) == pytest.approx(per_item[i], rel=1e-9)
    # the reward ranks captions as the metric does: the specific one beats the generic one
    assert ours.score(0, "a man is cooking noodles in a pan".split()) > ours.score(0, "a man is talking".split()) > 0


def test_sample_draws_k_captions_per_picture_under_the_decoding_rules_and_keeps_the_gradient():
    torch.manual_seed(0)
    vocab = Vocabulary(("<pad>", "<start>", "<end>", "<unk>") + tuple(f"w{i}" for i in range(12)))
    config = DecoderConfig(feature_dim=8, embed_dim=8, hidden_dim=8, attention_dim=8, dropout=0.0,
                           vocab_size=len(vocab), concept_slots=2)
    model = CaptionDecoder(config)
    feats, mask = torch.randn(3, 5, 8), torch.ones(3, 5, dtype=torch.bool)
    cids, cprobs = torch.tensor([[5, 6], [7, 0], [8, 9]]), torch.tensor([[0.9, 0.5], [0.7, 0.0], [0.6, 0.6]])
    banned = [vocab.pad_id, vocab.start_id, vocab.unk_id, 10]
    seqs, logp = sample(model, vocab, feats, mask, cids, cprobs, k=4, max_words=6, banned=banned)
    assert seqs.shape == (12, 6) and logp.shape == (12,)
    for row in seqs.tolist():
        assert row[0] not in (vocab.end_id, vocab.pad_id)  # never an empty caption
        words = row[: row.index(vocab.end_id)] if vocab.end_id in row else row
        assert not set(words) & set(banned)
        assert all(a != b for a, b in zip(words, words[1:]))
        if vocab.end_id in row:  # after <end>: padding only
            assert set(row[row.index(vocab.end_id) + 1:]) <= {vocab.pad_id}
    assert bool((logp < 0).all())
    logp.sum().backward()
    assert model.fc.weight.grad is not None and float(model.fc.weight.grad.abs().sum()) > 0


def test_sample_starts_with_each_pictures_token_and_obeys_its_bans_and_the_follow_rule():
    torch.manual_seed(1)
    vocab = Vocabulary(("<pad>", "<start>", "<end>", "<unk>") + tuple(f"w{i}" for i in range(12)) + ("<video>",))
    config = DecoderConfig(feature_dim=8, embed_dim=8, hidden_dim=8, attention_dim=8, dropout=0.0,
                           vocab_size=len(vocab), concept_slots=0)
    model = CaptionDecoder(config)
    feats, mask = torch.randn(2, 5, 8), torch.ones(2, 5, dtype=torch.bool)
    w = vocab.index
    banned = [vocab.pad_id, vocab.start_id, vocab.unk_id, *vocab.style_ids]
    # after w0 only w1 or w2 may come; picture 1 may never say w3, picture 0 may
    follow = {w("w0"): np.array(sorted(set(range(len(vocab))) - {w("w1"), w("w2")}))}
    seen_after: set[int] = set()
    said_by = {0: set(), 1: set()}
    for _ in range(30):
        seqs, _ = sample(model, vocab, feats, mask, None, None, k=4, max_words=8, banned=banned, temperature=2.0,
                         start=torch.tensor([vocab.start_for("video")] * 2), row_banned=[(), (w("w3"),)],
                         follow=follow)
        for j, row in enumerate(seqs.tolist()):
            words = row[: row.index(vocab.end_id) + 1] if vocab.end_id in row else row  # <end> kept
            said_by[j // 4] |= set(words)
            seen_after |= {b for a, b in zip(words, words[1:]) if a == w("w0")}
    assert w("w3") not in said_by[1] and w("w3") in said_by[0]
    assert w("w0") in said_by[0] | said_by[1] and seen_after and seen_after <= {w("w1"), w("w2")}
    assert not (said_by[0] | said_by[1]) & set(vocab.style_ids)


def test_tail_penalty_hits_talking_about_a_only():
    from pipelines.train_scst import tail_penalty

    assert tail_penalty("a woman is talking about a woman".split(), 0.3) == 0.3
    assert tail_penalty("a man is talking about the news".split(), 0.3) == 0.3
    assert tail_penalty("a man is talking about cars".split(), 0.3) == 0.0
    assert tail_penalty("a man is talking to a woman".split(), 0.3) == 0.0
