"""What native libraries do to the whole process: their messages, their thread pools.

FFmpeg's and OpenCV's own messages, written straight to the process's stderr ("moov atom not
found", "[ WARN:0@0.2] ... can't be used to capture by name", hundreds of "ac-tex damaged" lines
for a damaged clip), around the CLI's one ``error:`` line and from a library that promises never
to print; and BLAS's thread pool, which threadpoolctl limits for the whole process at once.
Light (no cv2 or NumPy import): the CLI calls it before the commands import cv2.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from typing import Any, Iterator


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
