"""Stand-in tasks for the batch process pool, importable by 'spawn' workers.

They let a test kill a worker process on purpose (as a decoder segfault would)
without torch or a model: a job whose path contains "crash" ends its worker with
``os._exit``; any other job succeeds at once.
"""

from __future__ import annotations

import os
from pathlib import Path

from captioner.batch import BatchJob, FileResult, Status


def crash_or_succeed(job: BatchJob) -> FileResult:
    if "crash" in job.shown:
        os._exit(3)
    return FileResult(str(job.video), Status.OK, seconds=0.0, cues=0, shown=job.shown, root=job.root)


def die_at_start() -> None:
    """A pool initializer that ends its worker process before it is ready, as a crash loading the model would."""
    os._exit(3)


def crash_and_mark(job: BatchJob) -> FileResult:
    """Like ``crash_or_succeed``, leaving ``crashed`` beside the file first (``die_if_marked`` reads it)."""
    if "crash" in job.shown:
        (job.video.parent / "crashed").touch()
    return crash_or_succeed(job)


def die_if_marked(folder: str) -> None:
    """A pool initializer whose worker dies before it is ready once a file has crashed a worker: the pool that
    retries that file alone can then not start."""
    if (Path(folder) / "crashed").exists():
        os._exit(3)


def report_sigint(job: BatchJob) -> FileResult:
    """Succeeds, saying in its reason how the worker process was born: SIGINT blocked (inherited from the batch
    process while it started its workers) or not."""
    import signal

    born = "blocked" if signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, []) else "open"
    return FileResult(str(job.video), Status.OK, born, seconds=0.0, cues=0, shown=job.shown, root=job.root)
