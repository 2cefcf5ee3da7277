"""Batches: caption every video under some folders, resumably, and report on each.

A batch is planned (``plan.plan_batch``: find the videos, name their outputs,
skip the finished ones, clean up after an interrupted run), run (``run_batch``
with the local engine, ``local.run_local``: this process or a process pool, or
the Ray engine, ``ray.run_ray``) and reported (``report.write_reports``). The
unit of work every engine shares, and ``captioner run`` too, is ``job.caption_one``.
Nothing here prints: results arrive through callbacks and the outcome, notices
through the ``captioner`` logger.

Importing this package loads neither torch, cv2 nor Ray.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

from ..config import CaptionConfig, configure, is_whole
from ..errors import CaptionerError
from ..outputs import prepare_output_dir, stops_held
from .job import BatchJob, FileResult, ResultCallback, Status, caption_one, run_job
from .lock import LOCK_NAME, exclusive, holds, lock_folders, running
from .local import MARKER_NAME, _leave_if_spawning, remove_marker, run_local
from .plan import BatchPlan, find_files, plan_batch, remove_partial_writes
from .ray import require_ray, run_ray
from .report import ReportError, counts, unfinished_results, write_reports

__all__ = [
    "BatchJob", "BatchOutcome", "BatchPlan", "Engine", "FileResult", "Status", "caption_one", "exclusive",
    "LOCK_NAME", "find_files", "plan_batch", "require_ray", "run_batch", "run_job", "run_local", "run_ray", "write_reports",
]

log = logging.getLogger(__name__)

#: Where a batch's videos are captioned: this machine (``local``) or a Ray cluster (``ray``).
Engine = Literal["local", "ray"]


@dataclass(frozen=True)
class BatchOutcome:
    """What a finished batch did: every video's result, the reports written, and a fatal error if any.

    ``fatal`` is an error that stopped the batch before all videos were tried (the
    model could not be loaded, the cluster could not be reached); the videos it
    left are ``pending`` in ``results``. ``reports``: the reports (and archive indexes) written;
    ``unwritten``: why one could not be (that is logged as an error), else None.
    """

    results: tuple[FileResult, ...]
    reports: tuple[Path, ...]
    fatal: CaptionerError | None = None
    unwritten: str | None = None
    repointed: int = 0  # JSON outputs changed to name where their video is now (``plan.repoint``)
    renamed: int = 0  # outputs given their video's new output name (``plan.renames``)

    def counts(self) -> dict[Status, int]:
        """How many videos have each status."""
        return counts(self.results)


def run_batch(plan: BatchPlan, config: CaptionConfig, *, engine: Engine = "local", workers: int | None = None,
              ray_address: str | None = None, started: float | None = None,
              on_result: ResultCallback | None = None, on_stop: Callable[[], None] | None = None) -> BatchOutcome:
    """Caption ``plan.jobs`` with ``engine``, then write the report(s); returns the outcome.

    ``workers``: local processes (default 1, this process) or Ray actors (default one
    per cluster CPU); ``ray_address``: the cluster to join (default a private local
    instance). ``on_result`` is called once per captioned video as it finishes;
    ``on_stop`` once the engine has stopped, before the report is written (a progress
    bar closes there). ``started`` (a ``time.time()`` taken before planning) dates
    the report and tells files this batch wrote from older ones.

    The report is written however the engine stops: on Ctrl-C or SIGTERM too (then
    finished videos are ``ok``, the others ``pending``, and the interrupt
    propagates). A ``CaptionerError`` that is not about one video (the model, the
    cluster) ends the batch and is returned as ``fatal``. The batch's folders are locked (``lock.exclusive``) while it
    runs: a ``CaptionerError`` is raised, before anything is done, if another process's batch writes there.

    Local ``workers`` > 1 start processes by 'spawn', which imports the calling script
    again in each: a script must call this under ``if __name__ == "__main__":`` (as
    multiprocessing requires). Without it no worker can start: ``fatal`` says the workers
    could not start (naming the guard for a script run by path), the videos left pending.
    """
    if engine not in ("local", "ray"):
        raise ValueError(f"unknown engine {engine!r}: use local or ray")
    if workers is not None and not is_whole(workers, 1):
        # -3 ran (and was written into the report), "2" and 2.5 failed after a report of pending videos
        raise ValueError(f"workers must be a whole number >= 1 or None, got {workers!r}")
    workers = None if workers is None else int(workers)  # np.int64(2): the whole batch ran, then its report failed
    if set(config.output.formats) != set(plan.formats):
        # the plan chose what is up to date by its formats: each video gets those (with the config's
        # own, a json the plan asked for was never written, the video "ok", and captioned again every run)
        config = configure(config, formats=plan.formats)
    started = time.time() if started is None else started
    _leave_if_spawning()  # a worker running an unguarded script again: before it makes or locks anything
    if plan.output_dir is not None and plan.jobs:
        # made before it is locked, as the CLI makes it: a folder that did not exist yet was locked by nobody (another
        # batch wrote there beside this one) and kept no marker of the video being captioned when a crash came
        prepare_output_dir(Path(plan.output_dir))
    # one batch at a time writes into a folder: locked here, unless this process holds it or a folder above it
    # already (the CLI's lock; a library caller's own, on the archive, maybe taken in another thread)
    folders = lock_folders(plan.output_dir, plan.roots)
    with running(folders):  # (which locks this process holds: asked once no other batch of it can change them)
        todo = [f for f in folders if not holds(f)]
        with exclusive(todo) if todo else contextlib.nullcontext():
            return _run(plan, config, engine, workers, ray_address, started, on_result, on_stop)


def _run(plan: BatchPlan, config: CaptionConfig, engine: Engine, workers: int | None, ray_address: str | None,
         started: float, on_result: ResultCallback | None, on_stop: Callable[[], None] | None) -> BatchOutcome:
    """``run_batch`` once the batch's folders are locked."""
    results: list[FileResult] = list(plan.done)

    stopping = []

    def deliver(r: FileResult) -> None:
        results.append(r)
        if on_result is not None:
            on_result(r)
        if r.status is Status.FAILED and _DISK_FULL.search(r.reason) and not stopping:
            # not the video's fault, and every later video would be captioned in full to fail the same way (hours
            # of a large archive's time, a line each): the batch stops, the rest pending for the next run. Once:
            # the engine delivers what its other workers finished as it stops, and must go on stopping them
            stopping.append(r)
            raise CaptionerError("stopped: the disk the outputs go to is full; free some space and run the batch "
                                 "again (the videos done are kept)")

    fatal = None
    reports: list[Path] = []
    repointed = renamed = 0
    reports_at = plan.report_paths_abs()
    marker = reports_at[0][0].with_name(MARKER_NAME) if reports_at else None
    try:
        try:
            renamed = _rename(plan.renames)
            repointed = _repoint(plan.repoint)  # inside: a Ctrl-C here still gets its report
            if engine == "ray":
                run_ray(plan.jobs, config, address=ray_address, workers=workers, on_result=deliver)
            else:
                run_local(plan.jobs, config, workers=workers or 1, on_result=deliver, marker=marker)
        except CaptionerError as exc:  # the model or the cluster, not a video: nothing more can run
            fatal = exc
        finally:
            # the engine stopped (not a crash, which never gets here): a killed one-worker batch's marker has
            # served, whichever engine, worker count or plan (nothing left to do) this run had
            remove_marker(marker)
            if on_stop is not None:
                on_stop()
    finally:  # also on Ctrl-C or SIGTERM: report what was done, the rest as pending
        with stops_held():
            unfinished = unfinished_results(plan.jobs, results, plan.formats, started)
            remove_partial_writes(plan.jobs, unfinished)
            results += unfinished
            extra = {"engine": engine, "workers": (workers or 1) if engine == "local" else workers,
                     "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
                     "seconds": round(time.time() - started, 3)}
            unwritten = None
            try:
                reports = write_reports(plan, results, extra=extra)
            except (CaptionerError, OSError) as exc:
                # (an index that failed beside its report: the report is there, and named in the summary)
                reports = list(exc.written) if isinstance(exc, ReportError) else []
                unwritten = " ".join((str(exc) if isinstance(exc, ReportError) else f"cannot write the report: {exc}")
                                     .split())
                log.error("%s", unwritten)
    return BatchOutcome(tuple(results), tuple(reports), fatal, unwritten, repointed, renamed)


#: A failure whose reason ends with one of these (a write's cause, as writers and ``errors.os_reason`` word it) fails
#: every video after it too (``_run``'s ``deliver`` stops the batch); at the end only: a file named "No space left on
#: device.srt" that is in the way stopped it.
# (after the cause: os_reason's ")", an OSError's file, "(x replaced already)")
_DISK_FULL = re.compile("(?i)(?:" + "|".join(re.escape(os.strerror(e)) for e in (errno.ENOSPC, errno.EDQUOT))
                        + r")(?:\)|: '[^']*'| \([^()]*\))?$")


def _rename(moves: list[tuple[Path, Path]]) -> int:
    """Give outputs their new names (``plan.renames``); returns how many were renamed. One that cannot be renamed
    (gone, a file there since) is a warning: the next run captions its video again."""
    done = 0
    for old, new in moves:
        try:
            if os.path.lexists(new):
                raise FileExistsError(17, "a file of the new name is there")
            os.rename(old, new)
            done += 1
            if new.name.endswith(".html"):  # its downloads are named for it
                from ..review import restem_page

                restem_page(new)
            log.info("%s: renamed from %s (a video of the same name came or went beside its video)", new, old.name)
        except OSError as exc:
            log.warning("%s: cannot rename it %s: %s; its video is captioned on the next run", old, new.name,
                        exc.strerror or exc)
    return done


def _repoint(outputs: list[tuple[Path, Path]]) -> int:
    """The JSON outputs of videos found where the report did not record them (a moved archive, a sub-folder moved
    inside it, no record) name where each video is now (``plan.repoint``); returns how many changed. One that cannot
    be rewritten is a warning: its captions are up to date, only the path they name is old."""
    from ..review import repoint_page
    from ..writers import repoint_json

    changed = 0
    for output, video in outputs:
        page = output.with_name(output.name[: -len(".json")] + ".html")
        try:  # its review page too, if it has one: it linked the old place and could not play (a moved -o)
            if os.path.isfile(page) and repoint_page(page, video):
                log.info("%s: now plays %s", page, video)
        except (CaptionerError, OSError) as exc:
            log.warning("%s: cannot point it at %s: %s", page, video, exc)
        try:
            changed += repoint_json(output, video)
        except CaptionerError as exc:  # "<output>: cannot write: <why>"
            log.warning("%s; it still names the video's old path", exc)
        except OSError as exc:
            log.warning("%s: cannot read: %s; it still names the video's old path", output, exc.strerror or exc)
    return changed  # said by the caller (BatchOutcome.repointed: the CLI's note)


