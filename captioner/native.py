"""FFmpeg's and OpenCV's own messages, which they write straight to the process's stderr.

"moov atom not found", "[ WARN:0@0.2] ... can't be used to capture by name", hundreds of
"ac-tex damaged" lines for a damaged clip: around the CLI's one ``error:`` line, and from a
library that promises never to print. Light (no cv2 import): the CLI calls it before the
commands import cv2, the video reader before it first opens a file.
"""

from __future__ import annotations

import logging
import os
import sys


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
