"""Where captioning work runs: one video at a time here, or many in a batch.

``caption_one`` is the unit of work every engine shares (caption a video, write
its files atomically), so the CLI's ``run``, the local batch engine and the Ray
engine produce byte-identical files.

A batch is planned (``plan_batch``: find the videos, skip the finished ones,
clean up after an interrupted run), run (``run_local`` in this process or a
process pool, ``run_ray`` on a Ray cluster; both report per-file results
through a callback and never print) and reported (``write_reports``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from .config import VIDEO_EXTENSIONS, CaptionConfig, usable_cpus
from .errors import CaptionerError, OutputError, Terminated, VideoError

if TYPE_CHECKING:
    from .pipeline import Captioner, ProgressCallback

log = logging.getLogger(__name__)


def output_base(video: Path, output_dir: Path | None, relative_to: Path | None = None) -> Path:
    """Output path without extension: beside the video, or under ``output_dir``.

    With ``relative_to`` (a batch root) the video's sub-folders are mirrored under
    ``output_dir``. The result is always inside ``output_dir`` when one is given.
    """
    if video.name in ("", ".", ".."):
        # "." or "dir/..": no file name to build an output name from
        reason = "is a directory, not a video file" if video.is_dir() else "not a video file name"
        raise VideoError(f"{video}: {reason}")
    if output_dir is None:
        return video.parent / _stem(video)
    if relative_to is not None:
        try:
            # where the file is listed, not where a symlink points: a link to a video elsewhere
            # is mirrored like the files beside it
            rel_video = Path(os.path.abspath(video)).relative_to(os.path.abspath(relative_to))
        except ValueError:
            raise OutputError(f"{video}: not inside {relative_to}; cannot mirror it under {output_dir}") from None
        rel = rel_video.parent / _stem(rel_video)
    else:
        rel = Path(_stem(video))
    base = (output_dir / rel).resolve()
    root = output_dir.resolve()
    if root not in base.parents:  # strictly inside: "<base>.srt" must land in output_dir too
        raise OutputError(f"{video}: output would fall outside {output_dir}")
    return output_dir / rel


def _stem(video: Path) -> str:
    """The file name without its extension, never empty, "." or ".." (``..mp4`` keeps its name).

    ``Path("..mp4").stem`` is ``"."``; used as an output name it would point at the
    folder itself and ``<folder>.srt`` would land outside it.
    """
    stem = video.stem
    return video.name if stem in ("", ".", "..") else stem


def prepare_output_dir(output_dir: Path) -> list[Path]:
    """Create ``output_dir`` (and its parents) before any work, or raise ``OutputError``.

    A folder that cannot exist is found out before the first video is captioned, not
    after every one of them. Returns the folders this call created, outermost first,
    so a caller that ends up writing nothing can remove them again (``remove_empty``).
    """
    missing: list[Path] = []
    folder = Path(output_dir)
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        if not output_dir.is_dir():
            raise NotADirectoryError(20, "Not a directory")
        probe = tempfile.TemporaryFile(dir=output_dir, prefix=".captioner-probe.")
        probe.close()
    except OSError as exc:
        remove_empty(missing[::-1])
        raise OutputError(f"{output_dir}: cannot create output folder ({exc.strerror or exc})") from None
    return missing[::-1]


def remove_empty(folders: Sequence[Path]) -> None:
    """Remove ``folders`` (innermost last in the list) that are still empty; others are left alone."""
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:
            return


def caption_one(captioner: "Captioner", video: Path, base: Path, config: CaptionConfig,
                progress: "ProgressCallback | None" = None) -> tuple[list[Path], int]:
    """Caption ``video`` and write ``base.<fmt>`` for each format; returns (paths, cue count)."""
    from .subtitles import write_subtitles

    result = captioner.caption_video(video, progress=progress)
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{base.parent}: cannot create output folder ({exc.strerror or exc})") from None
    metadata = result.metadata()
    metadata["video"]["path"] = str(_abs(video))  # the same record whether run or batch wrote it
    paths = write_subtitles(result.cues, base, config.output.formats, config.output, metadata, result.duration,
                            snapshots=result.snapshots, review=config.review)
    return paths, len(result.cues)


# --------------------------------------------------------------------------- batch

#: File name of the batch report, written into the output folder (or each input folder).
REPORT_NAME = "captioner-report.json"

#: The archive index's names (``-f html``; review.index_path says which one is used).
INDEX_NAMES = ("index.html", "captioner-index.html")

#: Seconds to wait for a first Ray actor to load its model before giving up.
RAY_START_TIMEOUT_S = 600.0

#: Temporary files ``subtitles.write_atomic`` leaves behind when it is killed mid-write:
#: ``.<name>.<mkstemp's random letters>.tmp``.
_TMP_RE = re.compile(r"\.(?P<name>.+)\.[A-Za-z0-9_]+\.tmp")


@dataclass(frozen=True)
class BatchJob:
    """One video of a batch: where it is and where its files go.

    ``video`` and ``base`` are absolute, so every engine (a worker process, a Ray
    actor on another machine) opens and writes the same paths, and the JSON output,
    which records the video path, is byte-identical whichever engine wrote it.
    ``shown`` is the path as the user typed it, for messages.
    """

    video: Path
    base: Path
    shown: str
    root: int  # index of the input folder it was found in


@dataclass(frozen=True)
class FileResult:
    """What happened to one video (a line of the report)."""

    video: str  # absolute path
    status: str  # "ok", "skipped", "failed"; "pending" in the report of an interrupted batch
    reason: str = ""
    seconds: float = 0.0
    cues: int | None = None
    outputs: tuple[str, ...] = ()
    shown: str = ""  # the path as the user typed it
    root: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.video, "status": self.status, "reason": self.reason,
                "seconds": round(self.seconds, 3), "cues": self.cues, "outputs": list(self.outputs)}


@dataclass
class BatchPlan:
    """What a batch will do: the videos to caption and those already done."""

    roots: list[Path]  # absolute input folders
    output_dir: Path | None
    formats: tuple[str, ...]
    jobs: list[BatchJob] = field(default_factory=list)  # to caption
    done: list[FileResult] = field(default_factory=list)  # skipped (outputs up to date) or failed up front
    ignored: list[int] = field(default_factory=list)  # non-video files, per root
    stale_removed: int = 0  # temporary files of an interrupted run that were deleted

    def report_paths_abs(self) -> list[tuple[Path, list[int]]]:
        """Where reports go, each with the roots it covers: one in the output folder, else one per input folder."""
        if self.output_dir is not None:
            return [(_abs(self.output_dir) / REPORT_NAME, list(range(len(self.roots))))]
        return [(root / REPORT_NAME, [i]) for i, root in enumerate(self.roots)]


def _abs(path: Path | str) -> Path:
    """Absolute without resolving symlinks (a shared mount keeps the name users know)."""
    return Path(os.path.abspath(path))


def find_files(root: Path, *, recursive: bool = True, exclude: Sequence[Path] = ()) -> tuple[list[Path], list[Path], list[tuple[Path, str]]]:
    """(videos, other files, unreadable folders) under ``root``, in sorted walk order.

    Videos are recognised by extension (``VIDEO_EXTENSIONS``, any case). Hidden
    files and folders (a leading dot: ``.git``, macOS ``._clip.mp4``, the
    temporary files of an interrupted write) are left out, and so are the folders
    in ``exclude`` (the output folder when it lies inside the input folder).
    Symlinked folders are not followed (no loops); symlinked files are videos like any other.
    """
    excluded = {os.path.realpath(p) for p in exclude}
    videos: list[Path] = []
    others: list[Path] = []
    errors: list[tuple[Path, str]] = []

    def onerror(exc: OSError) -> None:
        errors.append((Path(exc.filename or root), f"cannot list folder ({(exc.strerror or str(exc)).lower()})"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
        if recursive:
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                                 and os.path.realpath(os.path.join(dirpath, d)) not in excluded)
        else:
            dirnames[:] = []
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            (videos if path.suffix.lower() in VIDEO_EXTENSIONS else others).append(path)
    return videos, others, errors


def outputs_up_to_date(video: Path, base: Path, formats: Sequence[str]) -> bool:
    """True when every ``base.<fmt>`` exists and is newer than ``video`` (the resume test)."""
    try:
        video_time = video.stat().st_mtime_ns
        for fmt in formats:
            st = _output_file(base, fmt).stat()
            if not stat.S_ISREG(st.st_mode) or st.st_mtime_ns <= video_time:
                return False
    except OSError:
        return False
    return True


def _output_file(base: Path, fmt: str) -> Path:
    return base.with_name(f"{base.name}.{fmt}")


def remove_stale_temp_files(folder: Path, names: Iterable[str]) -> int:
    """Delete ``.<name>.<random>.tmp`` files that an interrupted ``write_atomic`` left for any of ``names``.

    Only exact matches are touched, so no file of the user's can be hit. Returns the count removed.
    """
    names = set(names)
    removed = 0
    try:
        entries = os.listdir(folder)
    except OSError:
        return 0
    for entry in entries:
        match = _TMP_RE.fullmatch(entry)
        if match and match["name"] in names:
            try:
                os.unlink(folder / entry)
                removed += 1
            except OSError as exc:
                log.warning("could not remove stale temporary file %s: %s", folder / entry, exc)
    if removed:
        log.info("%s: removed %d temporary file(s) of an interrupted run", folder, removed)
    return removed


def keep_extensions(pairs: Sequence[tuple[Path, Path]]) -> list[Path]:
    """The output bases of (video, base) pairs, where videos that share a base keep their extension.

    ``clip.mp4`` and ``clip.avi`` of one folder would both write ``clip.srt``; they
    get ``clip.mp4.srt`` and ``clip.avi.srt`` instead (``run`` and ``batch`` alike).
    Bases are compared without case, as a case-insensitive file system would.
    """
    groups: dict[str, set[Path]] = {}
    for video, base in pairs:
        groups.setdefault(str(base).casefold(), set()).add(_abs(video))
    return [base.with_name(base.name + video.suffix) if len(groups[str(base).casefold()]) > 1 else base
            for video, base in pairs]


def output_bases(videos: Sequence[Path], output_dir: Path | None) -> list[tuple[Path, "Path | CaptionerError"]]:
    """(video, output base) for ``captioner run``'s list of videos, by the rules a batch uses.

    A video named twice is listed once; videos that would share a base keep their
    extension (``keep_extensions``); a video no base can be made for, or whose base
    still clashes with another's (names that differ only in case), gets the error
    in place of its base.
    """
    seen: set[Path] = set()
    named: list[tuple[Path, Path | CaptionerError]] = []
    for video in videos:
        if _abs(video) in seen:
            continue
        seen.add(_abs(video))
        try:
            named.append((video, output_base(video, output_dir)))
        except CaptionerError as exc:
            named.append((video, exc))
    ok = [(v, b) for v, b in named if isinstance(b, Path)]
    fixed = dict(zip((v for v, _ in ok), keep_extensions(ok)))
    taken: dict[str, Path] = {}
    out: list[tuple[Path, Path | CaptionerError]] = []
    for video, base in named:
        if isinstance(base, Path):
            base = fixed[video]
            key = str(_abs(base)).casefold()
            if key in taken:
                base = OutputError(f"{video}: its subtitles would overwrite those of {taken[key]}")
            else:
                taken[key] = video
        out.append((video, base))
    return out


def plan_batch(roots: Sequence[Path], output_dir: Path | None, formats: Sequence[str], *,
               recursive: bool = True, overwrite: bool = False) -> BatchPlan:
    """Find the videos under ``roots`` and decide what to do with each.

    Outputs mirror each root's tree under ``output_dir`` (``root/a/clip.mp4`` ->
    ``output_dir/a/clip.srt``); with several roots each gets its own sub-folder
    named after it (``output_dir/<root name>/a/clip.srt``), so two roots cannot
    write the same file. Without ``output_dir`` the files go beside each video.
    Videos of one folder that share a name (``clip.mp4``, ``clip.avi``) keep
    their extension in the output name (``clip.mp4.srt``, ``clip.avi.srt``).

    A video whose outputs are all newer than it is skipped unless ``overwrite``.
    Temporary files an interrupted run left beside the outputs are deleted.

    Raises ``ValueError`` for roots that would share an output sub-folder.
    """
    from .subtitles import FORMATS

    pairs: list[tuple[Path, Path]] = []  # (as given, absolute), repeated roots dropped
    for r in roots:
        if all(_abs(r) != a for _, a in pairs):
            pairs.append((Path(r), _abs(r)))
    out_abs = _abs(output_dir) if output_dir is not None else None
    plan = BatchPlan(roots=[a for _, a in pairs], output_dir=output_dir, formats=tuple(formats))
    mirror_into: list[Path | None] = [out_abs] * len(pairs)
    if out_abs is not None and len(pairs) > 1:
        names = [a.name or "root" for _, a in pairs]
        for name in names:
            if names.count(name) > 1:
                same = " and ".join(str(g) for (g, _), n in zip(pairs, names) if n == name)
                raise ValueError(f"input folders {same} would share the output folder "
                                 f"{output_dir / name}; caption them in separate runs")
        mirror_into = [out_abs / n for n in names]

    seen: set[Path] = set()
    found: list[list] = []  # [video, base, shown, root]
    others: list[list[Path]] = []
    for i, (given, root) in enumerate(pairs):
        videos, other, errors = find_files(given, recursive=recursive, exclude=[output_dir] if output_dir else [])
        others.append([_abs(o) for o in other])
        for folder, reason in errors:
            plan.done.append(FileResult(str(_abs(folder)), "failed", reason, shown=str(folder), root=i))
        for video in videos:
            video_abs = _abs(video)
            if video_abs in seen:
                continue  # nested or repeated roots: each video once
            seen.add(video_abs)
            try:
                base = _abs(output_base(video_abs, mirror_into[i], relative_to=root if mirror_into[i] else None))
            except CaptionerError as exc:
                plan.done.append(FileResult(str(video_abs), "failed", _reason(exc, video_abs), shown=str(video), root=i))
                continue
            found.append([video_abs, base, str(video), i])

    for entry, base in zip(found, keep_extensions([(e[0], e[1]) for e in found])):
        entry[1] = base

    own: set[Path] = {path for path, _ in plan.report_paths_abs()}
    if "html" in plan.formats:  # the archive index beside the report (review.py)
        own.update(path.parent / name for path, _ in plan.report_paths_abs() for name in INDEX_NAMES)
    tmp_names: dict[Path, set[str]] = {}
    taken: dict[str, Path] = {}
    for video, base, shown, i in found:
        key = str(base).casefold()
        if key in taken:  # only left for names that differ in case alone
            plan.done.append(FileResult(str(video), "failed", f"its subtitles would overwrite those of {taken[key]}",
                                        shown=shown, root=i))
            continue
        taken[key] = video
        own.update(_output_file(base, f) for f in FORMATS)
        tmp_names.setdefault(base.parent, set()).update(f"{base.name}.{f}" for f in FORMATS)
        if not overwrite and outputs_up_to_date(video, base, plan.formats):
            plan.done.append(FileResult(str(video), "skipped", "outputs are newer than the video",
                                        outputs=tuple(str(_output_file(base, f)) for f in plan.formats),
                                        shown=shown, root=i))
        else:
            plan.jobs.append(BatchJob(video, base, shown, i))
    plan.ignored = [sum(1 for o in other if o not in own) for other in others]
    for folder, names in tmp_names.items():
        plan.stale_removed += remove_stale_temp_files(folder, names)
    for path, _ in plan.report_paths_abs():
        plan.stale_removed += remove_stale_temp_files(path.parent, [REPORT_NAME, *INDEX_NAMES])
    return plan


# --------------------------------------------------------------------------- the unit of work

def _reason(exc: BaseException, video: Path) -> str:
    """A one-line reason for a failure, without the video path that messages usually start with."""
    text = str(exc) if isinstance(exc, CaptionerError) else f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split()) or type(exc).__name__
    prefix = f"{video}: "
    if text.startswith(prefix):
        text = text[len(prefix):]
    return text[:500]


def run_job(captioner: "Captioner", job: BatchJob, config: CaptionConfig) -> FileResult:
    """Caption one batch video with ``caption_one``; any error becomes a failed result, never an exception.

    Every engine runs exactly this, so their files are byte-identical.
    """
    t0 = time.perf_counter()
    try:
        paths, n_cues = caption_one(captioner, job.video, job.base, config)
    except Exception as exc:  # one bad file must never stop a batch
        log.debug("%s failed", job.video, exc_info=not isinstance(exc, CaptionerError))
        return FileResult(str(job.video), "failed", _reason(exc, job.video), time.perf_counter() - t0,
                          shown=job.shown, root=job.root)
    return FileResult(str(job.video), "ok", "", time.perf_counter() - t0, n_cues, tuple(str(p) for p in paths),
                      shown=job.shown, root=job.root)


def _crashed(job: BatchJob, detail: str) -> FileResult:
    return FileResult(str(job.video), "failed", f"the worker process died on this file ({detail})",
                      shown=job.shown, root=job.root)


def _absolute_model(config: CaptionConfig) -> CaptionConfig:
    """Workers may start in another folder (Ray), so the model path must not be relative."""
    return replace(config, model_dir=_abs(config.model_dir))


# --------------------------------------------------------------------------- local engine

ResultCallback = Callable[[FileResult], None]


def run_local(jobs: Sequence[BatchJob], config: CaptionConfig, *, workers: int = 1,
              on_result: ResultCallback | None = None) -> list[FileResult]:
    """Caption ``jobs`` on this machine; ``on_result`` is called once per video as it finishes.

    ``workers=1`` works in this process. More start that many processes ('spawn'),
    each loading the model once, with the CPU cores split between them
    (``config.threads`` per worker when set). A worker that dies (a decoder
    crash, out of memory) costs only its file: the files it shared the pool with
    are retried, each suspect alone, and the one that kills a worker again is
    reported failed.

    Raises ``ModelError`` when the model cannot be loaded.
    """
    from .pipeline import Captioner

    on_result = on_result or (lambda r: None)
    results: list[FileResult] = []

    def deliver(r: FileResult) -> None:
        results.append(r)
        on_result(r)

    if not jobs:
        return results
    config = _absolute_model(config)
    if workers <= 1:
        captioner = Captioner(config)
        for job in jobs:
            deliver(run_job(captioner, job, config))
        return results
    from .weights import load_runtime_model

    load_runtime_model(config.model_dir)  # a broken model is one clear error here, not one per file
    threads = config.threads or max(1, usable_cpus() // workers)
    config = replace(config, threads=threads)
    level = logging.getLogger("captioner").getEffectiveLevel()
    _run_pool(jobs, min(workers, len(jobs)), _pool_task, _init_pool_worker, (config, level), deliver)
    return results


_worker_state: dict[str, Any] = {}


class _WorkerFormatter(logging.Formatter):
    def formatMessage(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


def _worker_logging(level: int) -> None:
    """Log like the CLI (``warning: <message>`` on stderr) from a worker process."""
    logger = logging.getLogger("captioner")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(_WorkerFormatter())
        logger.addHandler(handler)
    logger.setLevel(level)


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


def _start_worker(parent: int, initializer: Callable[..., None] | None, initargs: tuple) -> None:
    """Every pool worker's initializer: watch the parent, leave interrupts to it, then ``initializer``.

    Ctrl-C reaches every process of the terminal's group; the batch process decides
    what is finished and stops its workers itself, so a worker ignores SIGINT (no
    traceback from a worker waiting for its next file).
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _watch_parent(parent)
    if initializer is not None:
        initializer(*initargs)


def _init_pool_worker(config: CaptionConfig, log_level: int) -> None:
    """Process-pool initializer: load the model once per worker process."""
    _worker_logging(log_level)
    try:
        import cv2

        cv2.setNumThreads(config.threads)
        from .pipeline import Captioner

        _worker_state["captioner"] = Captioner(config)
        _worker_state["config"] = config
    except Exception as exc:  # raising here would break the pool; report it with the first task instead
        _worker_state["error"] = exc


def _pool_task(job: BatchJob) -> FileResult:
    if "error" in _worker_state:
        raise _worker_state["error"]
    return run_job(_worker_state["captioner"], job, _worker_state["config"])


def _run_pool(jobs: Sequence[BatchJob], workers: int, task: Callable[[BatchJob], FileResult],
              initializer: Callable[..., None] | None, initargs: tuple, deliver: ResultCallback) -> None:
    """Run ``task`` over ``jobs`` in a 'spawn' process pool, surviving worker deaths.

    At most ``workers`` jobs are in flight, so when the pool breaks the files in
    flight are exactly the suspects. They are rerun one at a time in a fresh pool;
    a suspect that breaks a pool on its own is reported failed. An exception from
    ``task`` itself (the model failed to load in a worker) stops the batch.
    """
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("spawn")
    queue = deque(jobs)
    suspects: deque[BatchJob] = deque()
    pool = None
    inflight: dict[Any, tuple[BatchJob, bool]] = {}  # future -> (job, running alone)
    start_args = (os.getpid(), initializer, initargs)
    try:
        while queue or suspects or inflight:
            if pool is None:
                pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=start_args)
            if suspects:
                if not inflight:
                    job = suspects.popleft()
                    inflight[pool.submit(task, job)] = (job, True)
            else:
                while queue and len(inflight) < workers:
                    job = queue.popleft()
                    inflight[pool.submit(task, job)] = (job, False)
            done, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
            broken = None
            for future in done:
                job, alone = inflight.pop(future)
                try:
                    deliver(future.result())
                except BrokenProcessPool as exc:
                    broken = exc
                    if alone:
                        deliver(_crashed(job, "it exited abruptly"))
                    else:
                        suspects.append(job)
            if broken is not None:
                for future, (job, alone) in list(inflight.items()):
                    if future.done() and future.exception() is None:
                        deliver(future.result())
                    elif alone:
                        deliver(_crashed(job, "it exited abruptly"))
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


def _stop_workers(pool: Any) -> None:
    """Terminate a pool's worker processes (their current files are left unwritten, not half-written)."""
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        try:
            process.terminate()
        except Exception:  # already gone
            pass


# --------------------------------------------------------------------------- Ray engine

def require_ray():
    try:
        import ray
    except ImportError:
        raise CaptionerError("the Ray engine needs Ray: pip install 'ray>=2.9'") from None
    return ray


#: Ray's messages when a cluster refuses a client without its token (token authentication).
_RAY_AUTH_FAILURES = ("InvalidAuthToken", "Unauthenticated", "authentication token")


def _token_auth_from_env() -> None:
    """Join by address with token authentication when the user gave a token (``RAY_AUTH_TOKEN[_PATH]``).

    Ray turns token authentication on by itself only for ``auto`` (a cluster found on
    this node); joining by address it needs ``RAY_AUTH_MODE=token``. A token in the
    environment says which the user wants; ``RAY_AUTH_MODE``, when set, is obeyed.
    """
    if "RAY_AUTH_MODE" not in os.environ and (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")):
        os.environ["RAY_AUTH_MODE"] = "token"
        try:  # Ray read its configuration when it was imported: have it read the variable again, as Ray does
            from ray._raylet import Config

            Config.initialize("")
        except Exception as exc:  # another Ray version: the variable alone may do
            log.debug("could not refresh Ray's configuration: %s", exc)


def _ray_start_error(address: str | None, exc: BaseException, output: str) -> str:
    """One line for a failed ``ray.init``: what to do when the cluster wants a token, else Ray's reason."""
    if address and any(word in output or word in str(exc) for word in _RAY_AUTH_FAILURES):
        return (f"cannot join the Ray cluster at {address}: it requires its authentication token; set "
                f"RAY_AUTH_TOKEN to the token that `ray get-auth-token` prints on the head node (or run the "
                f"batch on a node of the cluster with --ray-address auto)")
    detail = " ".join(str(exc).split())[:300]
    return f"cannot start Ray{' at ' + address if address else ''}: {detail}"


class _stderr_captured:
    """Send file descriptor 2 to a temporary file for the ``with`` block; calling the value reads it.

    Ray's C++ client logs every failed connection attempt (one line a second for 20 s)
    straight to the process's stderr, around the one ``error:`` line a failure gets.
    What was caught is logged at debug level (``-vv``).
    """

    def __enter__(self):
        self._file = tempfile.TemporaryFile(mode="w+b")
        try:
            sys.stderr.flush()
        except Exception:
            pass
        self._saved = os.dup(2)
        os.dup2(self._file.fileno(), 2)
        return self.read

    def read(self) -> str:
        self._file.flush()
        self._file.seek(0)
        return self._file.read().decode("utf-8", "replace")

    def __exit__(self, *exc_info) -> None:
        os.dup2(self._saved, 2)
        os.close(self._saved)
        text = self.read().strip()
        if text:
            log.debug("Ray said: %s", text)
        self._file.close()


class _CaptionActor:
    """A Ray actor holding one model; never raises from ``caption`` (failures are results)."""

    def __init__(self, config: CaptionConfig, log_level: int) -> None:
        _worker_logging(log_level)
        self.config = config
        self.error: str | None = None
        try:
            from .pipeline import Captioner

            self.captioner = Captioner(config)
        except Exception as exc:
            self.error = " ".join(str(exc).split()) or type(exc).__name__

    def ready(self) -> str | None:
        return self.error

    def caption(self, job: BatchJob) -> FileResult:
        return run_job(self.captioner, job, self.config)


def run_ray(jobs: Sequence[BatchJob], config: CaptionConfig, *, address: str | None = None,
            workers: int | None = None, on_result: ResultCallback | None = None) -> list[FileResult]:
    """Caption ``jobs`` on a Ray cluster with ``run_job``, one model per actor.

    ``address`` is a cluster to join (``"auto"``, ``"ray://host:10001"``, ``host:6379``);
    ``None`` starts a private local instance with ``workers`` CPUs (default: all
    cores), no dashboard, quiet logs and no usage reporting. Video and output
    paths must exist at the same absolute path on every node, and captioner must
    be installed there.

    Each actor gets ``config.threads`` CPUs (default 1; a local instance splits
    its cores between ``workers`` actors) and there are ``workers`` actors
    (default: as many as the cluster's CPUs allow). Actors are scheduled with
    ``ray.wait`` rather than ``ActorPool`` so that a result can always be tied to
    its file, even when an actor dies: that file is reported failed and the actor
    replaced.

    Raises ``CaptionerError`` when Ray is missing or the cluster cannot be
    reached, ``ModelError`` when no actor can load the model.
    """
    from .errors import ModelError

    on_result = on_result or (lambda r: None)
    results: list[FileResult] = []
    if not jobs:
        return results
    ray = require_ray()
    config = _absolute_model(config)
    own = not ray.is_initialized()
    level = logging.getLogger("captioner").getEffectiveLevel()
    cores = usable_cpus()
    local = own and not address
    per_actor = config.threads or (max(1, cores // workers) if (local and workers) else 1)
    config = replace(config, threads=per_actor)
    if own:
        ray_level = logging.WARNING if level <= logging.INFO else logging.ERROR  # Ray's notices only with -v
        quiet = dict(include_dashboard=False, logging_level=ray_level, log_to_driver=level <= logging.INFO)
        if address:
            _token_auth_from_env()
        import signal
        import threading

        main_thread = threading.current_thread() is threading.main_thread()
        on_sigterm = signal.getsignal(signal.SIGTERM) if main_thread else None
        with _stderr_captured() as captured:  # Ray's C++ client writes its retries straight to fd 2
            try:
                if address:
                    ray.init(address=address, **quiet)
                else:
                    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # an offline tool: no usage reports
                    ray.init(address="local", num_cpus=(workers or max(1, cores // per_actor)) * per_actor, **quiet)
            except SystemExit as exc:  # ray.init's own SIGTERM handler exits; stop like our caller's would
                if exc.code == signal.SIGTERM:
                    raise Terminated from None
                raise
            except Exception as exc:
                raise CaptionerError(_ray_start_error(address, exc, captured())) from None
            finally:
                if main_thread and on_sigterm is not None:  # ray.init replaces the SIGTERM handler
                    signal.signal(signal.SIGTERM, on_sigterm)
    actors: list[Any] = []
    try:
        total_cpus = int(ray.cluster_resources().get("CPU", 1))
        n_actors = max(1, min(len(jobs), workers or total_cpus // per_actor))
        actor_cls = ray.remote(_CaptionActor).options(num_cpus=config.threads, max_restarts=0)

        starting: dict[Any, Any] = {}

        def start_actor() -> None:
            actor = actor_cls.remote(config, level)
            actors.append(actor)
            starting[actor.ready.remote()] = actor

        for _ in range(n_actors):
            start_actor()
        idle: list[Any] = []
        inflight: dict[Any, tuple[BatchJob, Any]] = {}
        queue = deque(jobs)
        init_errors: list[str] = []
        while queue or inflight:
            if not (starting or idle or inflight):
                raise ModelError(f"no Ray worker could load the model: {init_errors[0] if init_errors else 'unknown'}")
            while idle and queue:
                actor = idle.pop()
                job = queue.popleft()
                inflight[actor.caption.remote(job)] = (job, actor)
            timeout = RAY_START_TIMEOUT_S if not (idle or inflight) else None
            ready, _ = ray.wait(list(starting) + list(inflight), num_returns=1, timeout=timeout)
            if not ready:
                raise CaptionerError(f"no Ray worker started within {RAY_START_TIMEOUT_S:.0f} s; does the cluster "
                                     f"have {config.threads} free CPU(s) per worker?")
            ref = ready[0]
            if ref in starting:
                actor = starting.pop(ref)
                try:
                    error = ray.get(ref)
                except Exception as exc:  # the actor died while starting
                    error = " ".join(str(exc).split())[:500]
                if error:
                    init_errors.append(error)
                    log.warning("a Ray worker could not load the model: %s", error)
                else:
                    idle.append(actor)
                continue
            job, actor = inflight.pop(ref)
            try:
                result = ray.get(ref)
                idle.append(actor)
            except Exception as exc:  # the actor process died on this file: report it, replace the actor
                result = _crashed(job, type(exc).__name__)
                ray.kill(actor)
                start_actor()
            results.append(result)
            on_result(result)
    finally:
        for actor in actors:
            try:
                ray.kill(actor)
            except Exception:
                pass
        if own:
            ray.shutdown()
    return results


# --------------------------------------------------------------------------- report

def unfinished_results(jobs: Sequence[BatchJob], results: Sequence[FileResult], formats: Sequence[str],
                       since: float) -> list[FileResult]:
    """Results for the ``jobs`` a stopped batch has no result for.

    A video whose files (every format) were all written since ``since`` (a
    ``time.time()`` taken before the batch started) was finished, even if its result
    never came back (Ctrl-C between the last write and the report): it is ``ok``. The
    others are ``pending``.
    """
    finished = {r.video for r in results}
    out = []
    for job in jobs:
        if str(job.video) in finished:
            continue
        paths = [_output_file(job.base, f) for f in formats]
        try:
            written = all(p.stat().st_mtime >= since for p in paths)
        except OSError:
            written = False
        if written:
            out.append(FileResult(str(job.video), "ok", "", outputs=tuple(map(str, paths)), shown=job.shown,
                                  root=job.root))
        else:
            out.append(FileResult(str(job.video), "pending", "not captioned: the batch stopped first",
                                  shown=job.shown, root=job.root))
    return out


def batch_report(plan: BatchPlan, results: Sequence[FileResult], roots: Sequence[int], *,
                 extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The report of the videos found under ``roots`` (indexes into ``plan.roots``)."""
    from . import __version__

    wanted = set(roots)
    rows = sorted((r for r in results if r.root in wanted), key=lambda r: r.video)
    totals = {s: sum(1 for r in rows if r.status == s) for s in ("ok", "skipped", "failed", "pending")}
    totals = {"videos": len(rows), **totals, "ignored": sum(plan.ignored[i] for i in wanted if i < len(plan.ignored))}
    return {
        "captioner": __version__,
        **(dict(extra) if extra else {}),
        "inputs": [str(plan.roots[i]) for i in sorted(wanted)],
        "output_dir": str(_abs(plan.output_dir)) if plan.output_dir is not None else None,
        "formats": list(plan.formats),
        "totals": totals,
        "videos": [r.as_dict() for r in rows],
    }


def write_reports(plan: BatchPlan, results: Sequence[FileResult], *,
                  extra: Mapping[str, Any] | None = None) -> list[Path]:
    """Write the report(s) atomically (``OUT/captioner-report.json``, else one per input folder).

    With ``html`` among the formats, the archive index (review.py) is written beside each report.
    """
    from .subtitles import write_atomic

    written = []
    for path, roots in plan.report_paths_abs():
        report = batch_report(plan, results, roots, extra=extra)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        written.append(path)
        if "html" in plan.formats:  # the archive index of the review pages, beside the report
            from .review import write_batch_index

            written.append(write_batch_index(plan, results, roots, path.parent))
    return written
