"""The frozen encoder: shapes, preprocessing, and the ONNX Runtime path against torch."""

from __future__ import annotations

import numpy as np
import pytest

from captioner.config import EncoderConfig
from captioner.encoder import Encoder
from videos import shot_frame


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(1)
    imgs = [shot_frame(look, i, (96, 54)) for i, look in enumerate(["red", "checker", "stripes", "gradient"])]
    imgs.append(rng.integers(0, 256, (300, 200, 3), dtype=np.uint8))  # portrait, odd size
    return imgs


def test_torch_encoder_outputs(frames):
    enc = Encoder(EncoderConfig(), backend="torch")
    out = enc.encode(frames)
    assert out.grid.shape == (5, 49, 1280) and out.pooled.shape == (5, 1280) and out.probs.shape == (5, 1000)
    assert np.allclose(out.probs.sum(-1), np.ones(5), atol=1e-4)
    assert np.allclose(out.pooled, out.grid.mean(1), atol=1e-5)


def test_onnx_encoder_matches_torch_reference(frames, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime", reason="ONNX Runtime not installed: the torch path is used")
    pytest.importorskip("onnx", reason="onnx not installed: cannot export the encoder")
    monkeypatch.setenv("CAPTIONER_CACHE", str(tmp_path))
    ref = Encoder(EncoderConfig(), backend="torch").encode(frames)
    onnx = Encoder(EncoderConfig(), backend="onnx")
    assert onnx.backend == "onnx"
    out = onnx.encode(frames)
    assert np.allclose(out.grid, ref.grid, atol=1e-3, rtol=1e-3)
    assert np.allclose(out.probs, ref.probs, atol=1e-4)
    assert list((tmp_path / "encoders").glob("*.onnx"))  # exported once, cached
    assert not list((tmp_path / "encoders").glob(".*tmp"))


def test_damaged_onnx_cache_is_exported_again(frames, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime", reason="ONNX Runtime not installed: the torch path is used")
    pytest.importorskip("onnx", reason="onnx not installed: cannot export the encoder")
    monkeypatch.setenv("CAPTIONER_CACHE", str(tmp_path))
    good = Encoder(EncoderConfig(), backend="onnx").encode(frames[:2])
    (cached,) = (tmp_path / "encoders").glob("*.onnx")
    cached.write_bytes(cached.read_bytes()[:1000])  # a copy that was cut off
    again = Encoder(EncoderConfig(), backend="onnx")
    assert again.backend == "onnx"
    assert np.allclose(again.encode(frames[:2]).probs, good.probs, atol=1e-5)
    assert cached.stat().st_size > 1000
