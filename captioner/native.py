"""What native libraries do to the whole process: their messages, their thread pools.

FFmpeg's and OpenCV's own messages, written straight to the process's stderr ("moov atom not
found", "[ WARN:0@0.2] ... can't be used to capture by name", hundreds of "ac-tex damaged" lines
for a damaged clip; libjpeg's and libpng's, which no log level reaches: ``native_stderr_captured``),
around the CLI's one ``error:`` line and from a library that promises never to print; and BLAS's thread pool, which threadpoolctl limits for the whole process at once.
Light (no cv2 or NumPy import): the CLI calls it before the commands import cv2.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from typing import Any, Callable, Iterator


def utf8_name(name: str) -> bool:
    """Whether a path's text is UTF-8, as native libraries take it: a name that is not (a Latin-1 folder, which
    Python keeps as lone surrogates) crashed OpenCV and was refused by ONNX Runtime and its exporter."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def quiet_native_logs() -> None:
    """Keep FFmpeg's and OpenCV's messages off stderr, unless the ``captioner`` log is at debug level
    (``-vv``) or the user set their levels (``OPENCV_FFMPEG_LOGLEVEL``, ``OPENCV_LOG_LEVEL``).

    FFmpeg reads its level from the environment when OpenCV first uses it, OpenCV its own when cv2
    is imported (set here too where cv2 came first). Where the application used OpenCV's video
    reading before, FFmpeg keeps the level it had.
    """
    if logging.getLogger("captioner").isEnabledFor(logging.DEBUG):
        return
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    user_level = "OPENCV_LOG_LEVEL" in os.environ
    os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")
    cv2 = sys.modules.get("cv2")
    if cv2 is not None and not user_level:  # imported already: the variable came too late
        try:
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
        except AttributeError:  # a build without cv2.utils.logging
            pass


_FD2_LOCK = threading.Lock()
_fd2_users = 0
_fd2_saved = -1
_fd2_file: Any = None


@contextlib.contextmanager
def native_stderr_captured(what: str) -> Iterator[Callable[[], str]]:
    """File descriptor 2 sent to a temporary file for the ``with`` block; what came is logged at debug level
    (``-vv``) as ``what`` said it. The value bound by ``as`` reads what has come so far (for an error
    message that quotes it).

    libjpeg and libpng write their warnings straight to fd 2 ("Corrupt JPEG data: 59 extraneous bytes
    before marker 0xd9", "libpng warning: tEXt: CRC error"), whatever OpenCV's log level, and Ray's C++
    client every failed connection attempt (a line a second for 20 s), around the one ``error:`` line a
    failure gets and from a library that promises never to print. fd 2 is the process's: overlapping
    captures (threads decoding at once) share one redirection, made by the first and undone by the
    last, which logs all that came; what other threads write to stderr meanwhile is logged with it.
    Costs a temporary file and a few system calls, not a lock held while decoding.
    """
    global _fd2_users, _fd2_saved, _fd2_file
    import tempfile

    counted = False  # this call is in _fd2_users: the finally takes it out (and undoes the swap if it was the last)
    text = b""
    try:  # entered before the swap: a Ctrl-C just after dup2 left fd 2 on the (deleted) temporary file for good
        with _FD2_LOCK:
            _fd2_users += 1
            counted = True
            if _fd2_users == 1:
                try:
                    saved = os.dup(2)  # first: with fd 2 closed (2>&-) the temporary file would become fd 2
                except OSError:  # nothing to keep clean
                    saved = -1
                if saved >= 0:
                    try:
                        _fd2_file = tempfile.TemporaryFile()
                    except OSError:  # no temporary folder to write to (full, read-only): the messages are let through
                        os.close(saved)
                        saved = -1
                if saved >= 0:
                    try:
                        sys.stderr.flush()  # Python's own buffered text goes where it was meant to
                    except Exception:
                        pass
                    _fd2_saved = saved  # before the swap: the finally puts it back
                    os.dup2(_fd2_file.fileno(), 2)
        yield _captured_so_far
    finally:
        with _FD2_LOCK:
            if counted:
                _fd2_users -= 1
            if _fd2_users == 0 and _fd2_saved >= 0:
                os.dup2(_fd2_saved, 2)
                os.close(_fd2_saved)
                _fd2_file.seek(0)
                text = _fd2_file.read()
                _fd2_file.close()
                _fd2_saved, _fd2_file = -1, None
        if text.strip():
            lines = text.decode("utf-8", "replace").split("\n")
            logging.getLogger(__name__).debug("%s: %s", what, "; ".join(line.strip() for line in lines if line.strip()))


def _captured_so_far() -> str:
    """What the shared capture of fd 2 holds now ("" when fd 2 could not be captured)."""
    with _FD2_LOCK:
        if _fd2_file is None:
            return ""
        _fd2_file.seek(0)  # fd 2 shares this offset: reading to the end leaves it where the next write goes
        return _fd2_file.read().decode("utf-8", "replace")


_BLAS_LOCK = threading.Lock()
_blas_users = 0
_blas_limiter: Any = None


@contextlib.contextmanager
def blas_limited(threads: int | None, controller: Any = None) -> Iterator[None]:
    """BLAS limited to ``threads`` (None: as it is) while any caller needs it, and given back when the last
    one is done; ``controller``: a ``threadpoolctl.ThreadpoolController`` to reuse (one is made if None).

    threadpoolctl's limits are process-wide: two threads' overlapping limits (a Captioner decoding in
    two threads, a search query beside a decode) each saved the other's limit as the original and
    restored them out of order, leaving the application's own NumPy on one thread for good.
    Overlapping callers share the first one's limit.
    """
    global _blas_users, _blas_limiter
    if threads is None:
        yield
        return
    with _BLAS_LOCK:
        if _blas_users == 0:
            if controller is None:
                from threadpoolctl import ThreadpoolController

                controller = ThreadpoolController()
            _blas_limiter = controller.limit(limits=threads, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _blas_users -= 1
            if _blas_users == 0:
                _blas_limiter.restore_original_limits()
                _blas_limiter = None


_TORCH_LOCK = threading.Lock()
_torch_users = 0
_torch_saved = 0


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``threads`` (None or 0: as they are) while any caller needs them, and the
    count they had given back when the last one is done.

    ``torch.set_num_threads`` is process-wide: the torch encoder set it once and left it, so a program that
    captioned one video ran its own torch on the encoder's count from then on. Overlapping callers share
    the first one's count, as ``blas_limited``'s do.
    """
    global _torch_users, _torch_saved
    if not threads:
        yield
        return
    import torch

    with _TORCH_LOCK:
        if _torch_users == 0:
            _torch_saved = torch.get_num_threads()
            torch.set_num_threads(threads)
        _torch_users += 1
    try:
        yield
    finally:
        with _TORCH_LOCK:
            _torch_users -= 1
            if _torch_users == 0:
                torch.set_num_threads(_torch_saved)
