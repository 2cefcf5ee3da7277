"""Helpers for tests that drive the command line (``from clitools import ...``).

* ``cli(*args)``: run ``captioner`` in-process with Click's ``CliRunner`` (stdout and
  stderr kept apart); arguments may be paths.
* ``isolate_cli``: an autouse-able fixture that puts back what a CLI run changes in the
  test process (OpenCV's log level and the OpenCV/FFmpeg log variables; the ``captioner``
  logger's level and handler are put back after every test by conftest's
  ``_captioner_log_per_test``), so later tests (e.g. ``caplog`` ones) are unaffected.
  It also runs torch single-threaded meanwhile: on a busy machine (CI runners, a
  training job on the same cores) OpenMP's spinning threads make every encoder call
  cost about a second and a half whatever its size; one thread costs ~40 ms a frame.
* ``files_under(folder)``: every file below ``folder``, as sorted relative names
  (temporary ``.tmp`` files included), to assert nothing stray was written.
* ``run_subprocess(*args)``: the real ``captioner`` in a child process, for what only a
  real process shows (stderr written by C libraries, signals).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from captioner.cli import main

REPO = Path(__file__).resolve().parent.parent
_OPENCV_VARS = ("OPENCV_FFMPEG_LOGLEVEL", "OPENCV_LOG_LEVEL")


def cli(*args: object) -> Result:
    return CliRunner().invoke(main, [os.fspath(a) if isinstance(a, os.PathLike) else str(a) for a in args])


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*") if p.is_file())


@pytest.fixture
def isolate_cli():
    import cv2
    import torch

    env = {k: os.environ.get(k) for k in _OPENCV_VARS}
    cv_level = cv2.utils.logging.getLogLevel()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    cv2.utils.logging.setLogLevel(cv_level)


def subprocess_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _OPENCV_VARS}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def captioner_command(*args: object) -> list[str]:
    """``python -m captioner.cli ARGS``; ``run`` gets ``--threads 1`` (see ``isolate_cli``)."""
    args = tuple(map(str, args))
    if args[:1] == ("run",):
        args = ("run", "--threads", "1", *args[1:])
    return [sys.executable, "-m", "captioner.cli", *args]


def run_subprocess(*args: object, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(captioner_command(*args), capture_output=True, text=True, timeout=timeout,
                          env=subprocess_env(), cwd=REPO)
