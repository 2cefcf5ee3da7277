"""Shared fixtures: a tiny randomly initialised decoder saved like the shipped one.

Pipeline and CLI tests need *a* model, not a good one: a 32-unit decoder over the
real (frozen, pip-installed) EfficientNet-Lite0 encoder exercises every code path in
a fraction of a second per video. Identical frames give identical captions, which is
all the segment/merge tests rely on. ``as_a_user``: file modes enforced as root too
(permission tests of several files).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from typing import Mapping, Sequence

import pytest
import torch

from captioner.config import DecoderConfig
from captioner.decoder import CaptionDecoder
from captioner.vocab import Vocabulary
from captioner.weights import save_model

TINY_WORDS = "a dog cat man woman red blue green car street grass water runs sits plays in on the with".split()


def make_tiny_model(folder: Path, seed: int = 0, words: Sequence[str] = TINY_WORDS,
                    boost: Mapping[str, float] | None = None) -> Path:
    """A random but sharp decoder over ``words``; ``boost`` raises some words' output bias (say them often)."""
    torch.manual_seed(seed)
    vocab = Vocabulary.build([" ".join(words)], min_count=1)
    config = DecoderConfig(feature_dim=1280, embed_dim=32, hidden_dim=32, attention_dim=32, dropout=0.0,
                           vocab_size=len(vocab))
    model = CaptionDecoder(config)
    with torch.no_grad():
        # sharpen the random weights so different pictures give different captions
        model.feat_proj[0].weight.mul_(8.0)
        model.init_h.weight.mul_(4.0)
        model.fc.weight.mul_(6.0)
        model.fc.bias[vocab.end_id] += 1.0  # keep captions short
        for w, b in (boost or {}).items():
            model.fc.bias[vocab.index(w)] += b
    return save_model(folder, model.state_dict(), vocab, config, name="tiny-test", encoder="efficientnet-lite0")


@pytest.fixture(autouse=True)
def _captioner_log_per_test():
    """Each test starts and ends with the ``captioner`` logger as it found it, and no model still loading.

    Many tests run the CLI in-process, which sets the logger's level and handler (``-v`` leaves INFO and
    a handler writing to whatever ``sys.stderr`` is); and a command that fails after starting a
    ``Captioner`` leaves its background loader running past the test. CI once saw both meet: a later
    test's ``batch -q`` output began with "info: loaded model ...", logged by an earlier test's loader
    in the moment between Click swapping ``sys.stderr`` and that command setting its own level."""
    logger = logging.getLogger("captioner")
    level, handlers = logger.level, list(logger.handlers)
    yield
    for thread in threading.enumerate():
        if thread.name == "captioner-load" and thread is not threading.current_thread():
            thread.join(timeout=120)
    logger.setLevel(level)
    logger.handlers[:] = handlers


@pytest.fixture
def default_sigint():
    """Ctrl-C handled as Python sets it up in a process started from a terminal. A test runner started in
    the background (``cmd &`` in a script, ``nohup``) inherits SIGINT ignored, and Python then leaves it
    ignored: tests of what a Ctrl-C does, or of the handler left behind, would fail there for that alone."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def sigint_default_in_child() -> None:
    """``preexec_fn`` for a child Python whose own SIGINT handler a test checks (see ``default_sigint``)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="session")
def captioner(tiny_model):
    from dataclasses import replace

    from captioner.config import CaptionConfig
    from captioner.pipeline import Captioner

    return Captioner(replace(CaptionConfig(), model_dir=tiny_model))


@pytest.fixture
def as_a_user(tmp_path: Path, monkeypatch):
    """File modes enforced as for a user who is not root. As root, the capabilities that override them
    (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER) leave this thread's effective set while the
    test runs and come back after; the cache folder is the test's own."""
    monkeypatch.setenv("CAPTIONER_CACHE", str(tmp_path / "cache"))
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        yield
        return
    import ctypes

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    libc = ctypes.CDLL(None, use_errno=True)
    header, data = Header(0x20080522, 0), (Data * 2)()  # _LINUX_CAPABILITY_VERSION_3, this thread
    if not hasattr(libc, "capget") or libc.capget(ctypes.byref(header), data) != 0:
        pytest.skip("root, and the capabilities cannot be dropped here")
    before = data[0].effective
    data[0].effective &= ~0b1110  # bits 1, 2, 3
    if libc.capset(ctypes.byref(header), data) != 0:
        pytest.skip("root, and the capabilities cannot be dropped here")
    try:
        yield
    finally:
        data[0].effective = before
        libc.capset(ctypes.byref(header), data)


@pytest.fixture(autouse=True)
def _files_settled_at_once(monkeypatch, request):
    """The tests' files are written a moment before they are indexed, which ``find.RACY_NS`` reads again on the next
    update (a file changed within two seconds of its index's writing may have changed again unseen): these tests
    count reads and writes of the index as if the files had been written long before. One test keeps the rule."""
    if "changed_twice" not in request.node.name:
        monkeypatch.setattr("captioner.find.RACY_NS", -10**18)
