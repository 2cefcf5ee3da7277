"""Offline jobs (``python -m pipelines.NAME``): data preparation, features, training, evaluation.

A job that stops on something it was not given (a model folder that is not one, a missing
file of the data or of the work folder) says so in one ``error:`` line, as the CLI does,
instead of a traceback: the jobs are run by hand and by ``make train``, by people who did not
write them. Any other exception is a bug and keeps its traceback (``CAPTIONER_TRACEBACK=1``
keeps it for all).
"""

from __future__ import annotations

import sys


def _one_line(exc_type, exc, tb) -> None:
    import os
    from pathlib import Path

    from captioner.errors import CaptionerError, first_line

    from .common import CACHE, DATA

    if os.environ.get("CAPTIONER_TRACEBACK"):
        sys.__excepthook__(exc_type, exc, tb)
    elif issubclass(exc_type, KeyboardInterrupt):  # Ctrl-C: the user knows where; scratch files are cleaned
        print("error: interrupted", file=sys.stderr)
        _exit(130)  # as the CLI, and a shell's Ctrl-C: a hook cannot set the exit status, which was 1
    elif issubclass(exc_type, CaptionerError):  # its whole first line: a checksum error names two files and a hash
        print(f"error: {str(exc).splitlines()[0] if str(exc) else first_line(exc)}", file=sys.stderr)
    elif (issubclass(exc_type, FileNotFoundError) and isinstance(exc.filename, str)
          and any(Path(exc.filename).resolve().is_relative_to(Path(d).resolve()) for d in (CACHE, DATA))):
        # a file one of the jobs makes, or the data: the usual cause is a step not run (any other
        # missing file may be a bug, and keeps its traceback; CAPTIONER_TRACEBACK=1 shows them all)
        print(f"error: {exc.filename}: no such file (is an earlier step of make train missing?)", file=sys.stderr)
    else:
        sys.__excepthook__(exc_type, exc, tb)


def _exit(status: int) -> None:
    """End the process with ``status`` from inside the exception hook: what exit would still do (the atexit
    functions: logging's flush, temporary folders' removal; the streams' flush), then ``os._exit``."""
    import atexit
    import os

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a closed or full stream: nothing more to say there
            pass
    os._exit(status)


if sys.excepthook is sys.__excepthook__:  # a debugger's or IDE's own hook is left alone
    sys.excepthook = _one_line
