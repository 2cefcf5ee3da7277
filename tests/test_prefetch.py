"""The reader thread that overlaps decoding with encoding."""

from __future__ import annotations

import threading

import pytest

from captioner.errors import VideoError
from captioner.video import prefetch


def test_prefetch_keeps_order_and_everything():
    assert list(prefetch(iter(range(100)), depth=3)) == list(range(100))


def test_prefetch_reraises_reader_errors_after_the_good_items():
    def frames():
        yield 1
        yield 2
        raise VideoError("x.mp4: broken")

    got = []
    with pytest.raises(VideoError, match="broken"):
        for f in prefetch(frames(), depth=1):
            got.append(f)
    assert got == [1, 2]


def test_closing_the_consumer_stops_the_reader():
    produced = []

    def frames():
        for i in range(10_000):
            produced.append(i)
            yield i

    gen = prefetch(frames(), depth=2)
    assert next(gen) == 0
    gen.close()
    n = len(produced)
    assert n < 10  # bounded queue: the reader never ran far ahead
    assert not any(t.name == "captioner-reader" and t.is_alive() for t in threading.enumerate())
