"""The local engine: caption a batch in this process or in a pool of worker processes.

``run_local`` gives each video to ``job.run_job`` and reports each result through a
callback as it comes in; it never prints. With several workers the pool
(``run_pool``) survives worker deaths: a decoder that crashes its process costs
only the file it was working on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections import deque
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

from ..config import CaptionConfig, usable_cpus
from ..errors import CaptionerError, os_reason
from .job import BatchJob, FileResult, ResultCallback, absolute_model, crashed, run_job

log = logging.getLogger(__name__)


def run_local(jobs: Sequence[BatchJob], config: CaptionConfig, *, workers: int = 1,
              on_result: ResultCallback | None = None, marker: Path | None = None) -> list[FileResult]:
    """Caption ``jobs`` on this machine; ``on_result`` is called once per video as it finishes.

    ``workers=1`` works in this process. More start that many processes ('spawn'),
    each loading the model once, with the CPU cores split between them
    (``config.threads`` per worker when set). A worker that dies (a decoder
    crash, out of memory) costs only its file: the files it shared the pool with
    are retried, each suspect alone, and the one that kills a worker again is
    reported failed.

    In this process, a file that crashes it (a segmentation fault in a decoder) ends the
    batch, and the next run would meet it again and never get past it. So ``marker``
    (a hidden file beside the report) names the file being captioned while it is; a run
    that finds a marker left behind captions that file alone in a worker process first
    (``run_pool``: failed if it crashes that one too, captioned if the batch had only
    been killed on it), then the rest here.

    Raises ``ModelError`` when the model cannot be loaded, and ``CaptionerError`` when no
    worker process can start (a script that calls this with ``workers`` > 1 outside
    ``if __name__ == "__main__":``).
    """
    from ..pipeline import Captioner

    on_result = on_result or (lambda r: None)
    results: list[FileResult] = []

    def deliver(r: FileResult) -> None:
        r = replay(r)  # a worker process's log lines, logged here before its result is told
        results.append(r)
        on_result(r)

    if not jobs:
        return results
    config = absolute_model(config)
    if workers <= 1:
        left = read_marker(marker)
        suspects = [job for job in jobs if left is not None and str(job.video) == left]
        if suspects:
            log.warning("%s: the last batch ended while captioning this file; captioning it in a process "
                        "of its own first", suspects[0].video)
            level = logging.getLogger("captioner").getEffectiveLevel()
            run_pool(suspects, 1, _pool_task, _init_pool_worker, (config, level), deliver)
        captioner = Captioner(config)
        try:
            for job in jobs:
                if job in suspects:
                    continue
                write_marker(marker, job.video)
                deliver(run_job(captioner, job, config))
        finally:  # a Python exception or an interrupt is not the file's doing; a crash never gets here
            remove_marker(marker)
        return results
    from ..weights import load_runtime_model

    _leave_if_spawning()  # before the model: a worker importing the script would load it for nothing
    load_runtime_model(config.model_dir)  # a broken model is one clear error here, not one per file
    if config.encoder.int8:
        # the workers share this CPU: whether its int8 copy is accurate (encoder.INT8_MIN_COSINE) is
        # decided and warned about once, here, not once per worker
        from ..encoder import Encoder

        if Encoder(config.encoder, threads=1).precision != "int8":
            config = replace(config, encoder=replace(config.encoder, int8=False))
    config = replace(config, threads=worker_threads(config.threads, min(workers, len(jobs))))
    level = logging.getLogger("captioner").getEffectiveLevel()
    run_pool(jobs, min(workers, len(jobs)), _pool_task, _init_pool_worker, (config, level), deliver)
    return results


def worker_threads(threads: int, workers: int) -> int:
    """Compute threads for each of ``workers`` processes: the CPUs shared out, and never more than
    that share (``--threads 8 --workers 2`` on 2 CPUs ran 4 threads, each worker capping only at
    the CPU count: 14.2 s against 5.8 s for 4 clips)."""
    share = max(1, usable_cpus() // max(1, workers))
    if threads > share:
        log.warning("--threads %d with %d worker processes on %d CPU(s): using %d each", threads, workers,
                    usable_cpus(), share)
    return min(threads, share) if threads else share


#: The hidden file, beside a batch's report, that names the video an in-process batch is captioning.
MARKER_NAME = ".captioner-batch-running"


def write_marker(marker: Path | None, video: Path) -> None:
    """Name ``video`` in ``marker`` (its path's own bytes, whatever its encoding); a marker that cannot be written is skipped."""
    if marker is None:
        return
    tmp = marker.with_name(marker.name + ".tmp")
    try:
        tmp.write_bytes(os.fsencode(str(video)))
        os.replace(tmp, marker)
    except OSError as exc:
        log.debug("cannot write %s: %s", marker, exc)
        with contextlib.suppress(OSError):  # the folder gone, or a file now: nothing to clean up there
            tmp.unlink(missing_ok=True)  # a full disk left an empty one behind


def read_marker(marker: Path | None) -> str | None:
    """The video a marker names, or None."""
    try:
        return os.fsdecode(marker.read_bytes()) if marker is not None else None
    except OSError:
        return None


def remove_marker(marker: Path | None) -> None:
    if marker is not None:
        try:
            marker.unlink()
        except OSError:
            pass


_worker_state: dict[str, Any] = {}


class _Held(logging.Handler):
    """What a worker process logs, held until it goes back to the batch process with a file's result:
    (logger, level, message, the traceback it carries as text or None)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple[str, int, str, str | None]] = []
        self._text = logging.Formatter()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            # a traceback cannot travel between processes; its text can (-vv showed none with --workers 2)
            trace = self._text.formatException(record.exc_info) if record.exc_info else record.exc_text
            if record.stack_info:
                trace = "\n".join(filter(None, [trace, self._text.formatStack(record.stack_info)]))
            self.lines.append((record.name, record.levelno, record.getMessage(), trace or None))
        except Exception:  # a record whose arguments do not format: logging's own report, as any handler
            self.handleError(record)


_HELD = _Held()


def worker_logging(level: int) -> None:
    """Hold a worker process's log records for the batch process (``held``, then ``replay`` there).

    Workers wrote their records to their own stderr: a library caller's logging setup never saw them
    (a program logging to a file had warnings printed on its terminal, and the library never prints),
    the CLI's formatter did not escape them (a file name's newline split the line), and Ray's actors,
    whose stderr reaches the driver only with -v, lost every warning of a damaged video."""
    logger = logging.getLogger("captioner")
    if _HELD not in logger.handlers:
        logger.addHandler(_HELD)
    logger.propagate = False  # a worker's root logger (Python's last resort, Ray's handlers) writes nothing
    logger.setLevel(level)


def held(result: FileResult) -> FileResult:
    """``result`` carrying what this worker process logged since its last result (starting, for its first)."""
    lines, _HELD.lines = _HELD.lines, []
    return replace(result, logged=tuple(lines)) if lines else result


def replay(result: FileResult) -> FileResult:
    """Log, in the batch process, what a worker logged for ``result``; the result without it."""
    for name, level, message, trace in result.logged:
        logger = logging.getLogger(name)
        if logger.isEnabledFor(level):
            record = logger.makeRecord(name, level, "(worker)", 0, "%s", (message,), None)
            record.exc_text = trace  # formatters print it as they print a traceback of this process
            logger.handle(record)
    return replace(result, logged=()) if result.logged else result


#: Seconds between a worker's checks that the process that started it is still alive.
PARENT_CHECK_S = 0.5


def _watch_parent(parent: int, interval: float = PARENT_CHECK_S) -> None:
    """End this worker process as soon as ``parent`` is gone, however it died.

    A worker whose batch process was killed (``kill -9``, a crash, out of memory) would
    otherwise be re-parented and live on, holding its model, or block forever reading
    the pool's pipe. A daemon thread polls ``getppid`` (it changes on re-parenting);
    the worker's own work may be inside C code that releases the GIL, so it exits with
    ``os._exit`` rather than an exception.
    """
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="captioner-parent-watch", daemon=True).start()


#: Exit status of a worker process that, while starting, found itself running the batch of the script that
#: started it (the script imported again, as 'spawn' does, without ``if __name__ == "__main__":``).
SCRIPT_AGAIN_EXIT = 78


def _leave_if_spawning() -> None:
    """End this process quietly if it is a 'spawn' worker still importing the parent's script.

    A script that calls ``run_batch(..., workers=2)`` at module level is run again by each
    worker as it starts; there multiprocessing refused to start processes of its own with a
    RuntimeError traceback per worker, and every video of the batch was blamed for the dead
    workers. The worker leaves instead, and the batch process, whose pool then never starts
    a file, ends the batch with one error that says why.
    """
    import multiprocessing.process

    if getattr(multiprocessing.process.current_process(), "_inheriting", False):
        raise SystemExit(SCRIPT_AGAIN_EXIT)


def _start_worker(parent: int, steps: tuple[Any, Any], initializer: Callable[..., None] | None,
                  initargs: tuple) -> None:
    """Every pool worker's initializer: watch the parent, leave interrupts to it, then ``initializer``.

    ``steps`` are two flags of the pool (shared bytes), set as a worker gets here (it imported what the
    parent's main module imports) and as it is ready for files: a pool that breaks before
    the second never started a file, and before the first, its workers could not even
    import the parent's script. They were Events: a worker the broken pool terminated while it
    held an Event's lock (setting it) left the batch waiting on that lock for ever.

    Ctrl-C reaches every process of the terminal's group; the batch process decides
    what is finished and stops its workers itself, so a worker ignores SIGINT (no
    traceback from a worker waiting for its next file).
    """
    import signal

    imported, ready = steps
    imported.value = 1
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _watch_parent(parent)
    if initializer is not None:
        initializer(*initargs)
    ready.value = 1


def _workers_could_not_start(imported: bool, workers: int) -> CaptionerError:
    """The batch's error for a pool whose workers died before one of them was ready for a file: no file is
    to blame. Workers that died before they ran any of this module's code, started by a script, most
    likely ran the script's batch again (it lacks ``if __name__ == "__main__":``)."""
    script = getattr(sys.modules.get("__main__"), "__file__", None)
    # a .py script run by path; captioner's own command (a console script, or python -m) guards its main
    if script and str(script).endswith(".py") and getattr(sys.modules["__main__"], "__spec__", None) is None \
            and not imported:
        # workers=1 starts one too: for the file a killed batch was captioning, retried in a process of its own
        when = "with workers > 1" if workers > 1 else "after a batch that ended while captioning a file (that file " \
            "is captioned again in a process of its own)"
        return CaptionerError(
            f"worker processes could not start: each runs {script} again as it starts; a script that calls "
            f"run_batch {when} must do so under 'if __name__ == \"__main__\":' (as multiprocessing requires)")
    # how many died is not known (one of two, killed by the system for memory, breaks the pool as well)
    when = "while loading the model" if imported else "as it started"
    return CaptionerError(f"the {workers} worker processes could not start: a worker ended {when}, before the "
                          f"first file: use one worker (--workers 1)")


def _init_pool_worker(config: CaptionConfig, log_level: int) -> None:
    """Process-pool initializer: load the model once per worker process."""
    worker_logging(log_level)
    try:
        import cv2

        cv2.setNumThreads(config.threads)
        from ..pipeline import Captioner

        _worker_state["captioner"] = Captioner(config)
        _worker_state["config"] = config
    except Exception as exc:  # raising here would break the pool; report it with the first task instead
        _worker_state["error"] = exc


def _pool_task(job: BatchJob) -> FileResult:
    if "error" in _worker_state:
        raise _worker_state["error"]
    return held(run_job(_worker_state["captioner"], job, _worker_state["config"]))


def _start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker with SIGHUP ignored, as it ignores SIGINT and SIGTERM.

    A closed terminal (SIGHUP to the process group) killed it; the pool's shutdown then started a
    new one, which printed a warning and five KeyError tracebacks over the one "hung up" line.
    Ignored signals stay ignored in the process it starts.
    """
    import signal

    if not hasattr(signal, "SIGHUP") or threading.current_thread() is not threading.main_thread():
        return
    from multiprocessing import resource_tracker

    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    # a batch killed (kill -9) left it to clean up the pool's semaphores, and its UserWarning about them ("There
    # appear to be 5 leaked semaphore objects", with its source path) came on the terminal after the shell's prompt:
    # the tracker starts with this interpreter's -W options, so one more silences that warning there alone
    warnoptions = list(sys.warnoptions)
    sys.warnoptions.append("ignore::UserWarning:multiprocessing.resource_tracker")
    try:
        resource_tracker.ensure_running()
    finally:
        sys.warnoptions[:] = warnoptions
        signal.signal(signal.SIGHUP, previous)


@contextlib.contextmanager
def _workers_born_deaf() -> Any:
    """Worker processes started inside start with SIGINT blocked, until ``_start_worker`` ignores it.

    A terminal's Ctrl-C goes to the whole process group: a worker still importing (half a second, before
    ``_start_worker`` ignores SIGINT) printed a KeyboardInterrupt traceback above the batch's "interrupted".
    A spawned process keeps the signal mask of the thread that started it; a Ctrl-C then waits in the
    worker and is dropped when it ignores the signal. Only this thread's mask changes: this process's
    Ctrl-C still comes (another of its threads takes it, or this one once the mask is back). Ignoring
    SIGINT here instead lost a Ctrl-C in that window: another thread took it and threw it away.
    """
    import signal

    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    was = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        if signal.SIGINT not in was:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def run_pool(jobs: Sequence[BatchJob], workers: int, task: Callable[[BatchJob], FileResult],
              initializer: Callable[..., None] | None, initargs: tuple, deliver: ResultCallback) -> None:
    """Run ``task`` over ``jobs`` in a 'spawn' process pool, surviving worker deaths; ``deliver`` gets each result.

    ``run_local``'s pool, for any task: ``task`` and ``initializer`` (run once per
    worker with ``initargs``) must be importable by a fresh process. A job whose
    worker dies (a segfault, ``os._exit``, out of memory) is delivered as failed
    ("the worker process died on this file"), and only that job: at most
    ``workers`` jobs are in flight, so when the pool breaks the files in flight are
    exactly the suspects. They are rerun one at a time in a fresh pool; a suspect
    that breaks a pool on its own is reported failed. Every job is delivered once.
    An exception from ``task`` itself (the model failed to load in a worker) stops
    the batch. A pool whose workers die before any of them was ready for a file
    blames no file: ``CaptionerError`` (worker processes could not start), the jobs
    not delivered. Workers exit when this process dies, and on an interrupt they are
    stopped at once.
    """
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    _leave_if_spawning()
    context = multiprocessing.get_context("spawn")
    _start_resource_tracker()
    queue = deque(jobs)
    suspects: deque[BatchJob] = deque()
    pool = None
    inflight: dict[Any, tuple[BatchJob, bool]] = {}  # future -> (job, running alone)
    steps = None
    try:
        while queue or suspects or inflight:
            # (a submit starts the worker processes it needs)
            try:  # no usable /dev/shm (containers, sandboxes) or too few file descriptors: was a traceback
                with _workers_born_deaf():
                    if pool is None:
                        steps = (context.RawValue("b", 0), context.RawValue("b", 0))  # no lock to be left held
                        pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                                                   initargs=(os.getpid(), steps, initializer, initargs))
                    if suspects:
                        if not inflight:
                            job = suspects.popleft()
                            inflight[pool.submit(task, job)] = (job, True)
                    else:
                        while queue and len(inflight) < workers:
                            job = queue.popleft()
                            inflight[pool.submit(task, job)] = (job, False)
            except OSError as exc:
                raise CaptionerError(f"cannot start {workers} worker processes "
                                     f"({os_reason(exc)}): use --workers 1") from None
            done, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
            broken = None
            crashed_alone = []  # blamed only once a worker is known to have been ready for files
            for future in done:
                job, alone = inflight.pop(future)
                try:
                    deliver(future.result())
                except BrokenProcessPool as exc:
                    broken = exc
                    if alone:
                        crashed_alone.append(job)
                    else:
                        suspects.append(job)
            if broken is not None and steps is not None and not steps[1].value:
                raise _workers_could_not_start(bool(steps[0].value), workers)
            for job in crashed_alone:
                deliver(crashed(job, "it exited abruptly"))
            if broken is not None:
                for future, (job, alone) in list(inflight.items()):
                    if future.done() and future.exception() is None:
                        deliver(future.result())
                    elif alone:
                        deliver(crashed(job, "it exited abruptly"))
                    else:
                        suspects.append(job)
                inflight.clear()
                if suspects:
                    log.warning("a worker process died; retrying the %d file(s) it was working on one at a time",
                                len(suspects))
                pool.shutdown(wait=True, cancel_futures=True)
                pool = None
    except BaseException:  # Ctrl-C, SIGTERM: keep what finished, stop the workers now
        for future, (job, _) in inflight.items():
            if future.done() and not future.cancelled() and future.exception() is None:
                deliver(future.result())
        if pool is not None:
            _stop_workers(pool)
        raise
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _stop_workers(pool: Any, wait_s: float = 5.0) -> None:
    """Terminate a pool's worker processes and wait (up to ``wait_s``) until they are gone.

    Their current files are left unwritten, not half-written; waiting means that the
    temporary file a worker may have left (``plan.remove_partial_writes``) is not
    being written any more when the batch removes it.
    """
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        try:
            process.terminate()
        except Exception:  # already gone
            pass
    deadline = time.monotonic() + wait_s
    for process in processes:
        try:
            process.join(max(0.0, deadline - time.monotonic()))
        except Exception:  # not joinable: already reaped by the pool
            pass
