"""The unit of work: caption one video and write its files, the same way everywhere.

``caption_one`` is what ``captioner run`` does for each video and what every batch
engine does for each job (``run_job``, in this process, a worker process or a Ray
actor), so their files are byte-identical. A batch job's outcome is a
``FileResult`` with a typed ``Status``; a failure is a result, never an exception.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..config import CaptionConfig
from ..errors import OUT_OF_MEMORY, CaptionerError, OutputError, elided, out_of_memory
from ..outputs import absolute, make_folders, output_file

if TYPE_CHECKING:
    from ..pipeline import Captioner, ProgressCallback

log = logging.getLogger(__name__)


class Status(str, Enum):
    """What happened to a video of a batch; the value is what the report says."""

    OK = "ok"  # captioned in this run
    SKIPPED = "skipped"  # its outputs describe the video as it is (outputs.outputs_up_to_date)
    FAILED = "failed"
    PENDING = "pending"  # the batch stopped before it (in the report of an interrupted batch)

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


#: What a batch report records of a video's outputs: the (size, mtime_ns) the video had when they were made
#: from it, and which outputs (absolute paths) were made from it. A later run trusts exactly those.
Record = tuple[tuple[int, int], tuple[str, ...]]


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
    previous: Record | None = None  # what the last report recorded of its outputs (``plan.read_report``)
    #: formats this run does not ask for whose outputs an earlier run made from an older file of this video: written
    #: again with the rest (``plan.refreshed_formats``), so that none of them describes the old picture
    refresh: tuple[str, ...] = ()
    #: ``--overwrite``: outputs captioner did not write are replaced (else the video fails, also when one appears
    #: while the batch runs)
    overwrite: bool = False
    #: formats asked for whose outputs are up to date (``plan.plan_batch``: the report vouches for them, corrections
    #: by hand included): not written again, only the others
    keep: tuple[str, ...] = ()


@dataclass(frozen=True)
class FileResult:
    """What happened to one video (a line of the report)."""

    video: str  # absolute path
    status: Status
    reason: str = ""
    seconds: float = 0.0
    cues: int | None = None
    outputs: tuple[str, ...] = ()
    shown: str = ""  # the path as the user typed it
    root: int = 0
    # the video file its outputs describe, (size, mtime_ns) as it was when read: how the next
    # run knows them up to date even if the file's time is older or in the future (``plan``)
    source: tuple[int, int] | None = None
    # the outputs made from ``source``: those of this run and those of earlier runs from the same file
    # (other formats). A failed or pending video keeps the record of the outputs it still has, which
    # describe an earlier file: without it the next run fell back to file times, and a replacement
    # dated older (``cp -p``) that failed once was taken as captioned from then on.
    covers: tuple[str, ...] = ()
    # (logger, level, message, traceback text) of what a worker process logged while captioning this file (and starting, for
    # its first): the batch process logs them again as its own (``local.replay``), not in the report
    logged: tuple[tuple[str, int, str, str | None], ...] = field(default=(), compare=False, repr=False)

    def as_dict(self) -> dict[str, Any]:
        row = {"path": self.video, "status": self.status.value, "reason": self.reason,
               "seconds": round(self.seconds, 3), "cues": self.cues, "outputs": list(self.outputs)}
        if self.source:
            row["source"] = source_row((self.source, self.covers))
        return row

    def keeping(self, previous: Record | None) -> FileResult:
        """This failed or pending result with the record of the outputs the video still has."""
        return replace(self, source=previous[0], covers=previous[1]) if previous else self


def source_row(record: Record) -> dict[str, Any]:
    """A record as a report writes it (a row's ``"source"``; ``plan.read_report`` reads it back)."""
    (size, mtime_ns), made = record
    return {"size": size, "mtime_ns": mtime_ns, "outputs": list(made)}


#: Called once per video as its result comes in.
ResultCallback = Callable[[FileResult], None]


def caption_one(captioner: "Captioner", video: Path, base: Path, config: CaptionConfig,
                progress: "ProgressCallback | None" = None, also: Sequence[str] = (),
                overwrite: bool = False, keep: Sequence[str] = ()) -> tuple[list[Path], int]:
    """Caption ``video`` and write ``base.<fmt>`` for each format (the config's, then ``also``'s, less ``keep``'s);
    returns (paths, cue count). Unless ``overwrite``, an output captioner did not write is an ``OutputError`` (checked
    again at the write: the user's own subtitles may have been put there while the video was captioned)."""
    from ..writers import write_subtitles

    before = signature_now(video)
    result = captioner.caption_video(video, progress=progress)
    if before is not None and signature_now(video) != before:  # a recording or a copy still being written
        log.warning("%s: changed while it was read (still being written?): captioned as far as it was read; "
                    "caption it again once it is complete (batch does so by itself)", video)
    try:
        make_folders(base.parent)
    except OSError as exc:
        raise OutputError(f"{base.parent}: cannot create output folder ({exc.strerror or exc})") from None
    metadata = result.metadata()
    formats = tuple(f for f in dict.fromkeys([*config.output.formats, *also]) if f not in keep)
    paths = write_subtitles(result.cues, base, formats, config.output, metadata, result.duration,
                            snapshots=result.snapshots, review=config.review, keep_foreign=not overwrite)
    return paths, len(result.cues)


#: The most characters of a failure's reason a batch keeps (its error line, its report row).
REASON_MAX = 500


def failure_reason(exc: BaseException, video: Path) -> str:
    """A one-line reason for a failure, without the video path that messages usually start with, cut in
    the middle (``errors.elided``) if longer than ``REASON_MAX``: its end says why."""
    if out_of_memory(exc):  # not the video's fault: a reason that says what to do
        return OUT_OF_MEMORY
    text = str(exc) if isinstance(exc, CaptionerError) else f"{type(exc).__name__}: {exc}"
    prefix = f"{video}: "
    if text.startswith(prefix):  # before the spaces are evened out: "holiday  2019.mp4" kept its path, twice shown
        text = text[len(prefix):]
    return elided(" ".join(text.split()) or type(exc).__name__, REASON_MAX)


def run_job(captioner: "Captioner", job: BatchJob, config: CaptionConfig) -> FileResult:
    """Caption one batch video with ``caption_one``; any error becomes a failed result, never an exception.

    Every engine runs exactly this, so their files are byte-identical.
    """
    t0 = time.perf_counter()
    try:
        # before reading it: a video changed meanwhile is done again next time. A file that cannot be
        # read fails in caption_one, worded as run words it (a dangling link: "no such file")
        source = signature_now(job.video)
        paths, n_cues = caption_one(captioner, job.video, job.base, config, also=job.refresh, overwrite=job.overwrite,
                                    keep=job.keep)
    except Exception as exc:  # one bad file must never stop a batch
        log.debug("%s failed", job.video, exc_info=not isinstance(exc, CaptionerError))
        return FileResult(str(job.video), Status.FAILED, failure_reason(exc, job.video), time.perf_counter() - t0,
                          shown=job.shown, root=job.root).keeping(job.previous)
    written = tuple(str(p) for p in paths) + tuple(str(output_file(job.base, f)) for f in job.keep)
    return FileResult(str(job.video), Status.OK, "", time.perf_counter() - t0, n_cues, written,
                      shown=job.shown, root=job.root, source=source, covers=covering(written, source, job.previous))


def covering(written: Sequence[str], source: tuple[int, int] | None, previous: Record | None) -> tuple[str, ...]:
    """The outputs made from ``source``: ``written``, and the earlier ones too if they came from the same file."""
    earlier = previous[1] if previous and source is not None and tuple(previous[0]) == tuple(source) else ()
    return tuple(dict.fromkeys([*written, *earlier]))


def file_signature(path: Path) -> tuple[int, int]:
    """(size, modification time in ns) of ``path``: what tells a batch that a video is the one it captioned."""
    st = Path(path).stat()
    return int(st.st_size), int(st.st_mtime_ns)


def signature_now(path: Path) -> tuple[int, int] | None:
    """``file_signature``, or None for a file that cannot be read."""
    try:
        return file_signature(path)
    except OSError:
        return None


def crashed(job: BatchJob, detail: str) -> FileResult:
    """The result of a job whose worker process died under it."""
    return FileResult(str(job.video), Status.FAILED, f"the worker process died on this file ({detail})",
                      shown=job.shown, root=job.root).keeping(job.previous)


def absolute_model(config: CaptionConfig) -> CaptionConfig:
    """Workers may start in another folder (Ray), so the model path must not be relative."""
    return replace(config, model_dir=absolute(config.model_dir))
