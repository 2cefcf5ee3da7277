"""A batch's report: what happened to every video, written beside the outputs.

``write_reports`` writes ``captioner-report.json`` (and, with ``html`` among the
formats, the archive index of the review pages) atomically, also for a stopped
batch: ``unfinished_results`` says which of the videos without a result were
finished anyway (``ok``) and which were not run (``pending``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import CaptionerError, OutputError, os_reason
from ..outputs import REPORT_NAME, absolute, json_surrogates, make_folders, output_file, write_atomic
from .job import BatchJob, FileResult, Status, covering, signature_now, source_row
from .plan import BatchPlan


def counts(results: Sequence[FileResult]) -> dict[Status, int]:
    """How many results have each status (every status present, in ``Status`` order)."""
    return {s: sum(1 for r in results if r.status == s) for s in Status}


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
        paths = [output_file(job.base, f) for f in formats]
        try:
            written = all(p.stat().st_mtime >= since for p in paths)
        except OSError:
            written = False
        if written:
            source = signature_now(job.video)
            out.append(FileResult(str(job.video), Status.OK, "", outputs=tuple(map(str, paths)), shown=job.shown,
                                  root=job.root, source=source,
                                  covers=covering(tuple(map(str, paths)), source, job.previous)))
        else:
            out.append(FileResult(str(job.video), Status.PENDING, "not captioned: the batch stopped first",
                                  shown=job.shown, root=job.root).keeping(job.previous))
    return out


def batch_report(plan: BatchPlan, results: Sequence[FileResult], roots: Sequence[int], *,
                 extra: Mapping[str, Any] | None = None, path: Path | None = None) -> dict[str, Any]:
    """The report of the videos found under ``roots`` (indexes into ``plan.roots``), written at ``path`` (its
    ``"gone"``: the videos an earlier report there recorded that are gone, with the outputs they left)."""
    from .. import __version__

    wanted = set(roots)
    rows = sorted((r for r in results if r.root in wanted), key=lambda r: r.video)
    totals = {"videos": len(rows), **{s.value: n for s, n in counts(rows).items()},
              "ignored": sum(plan.ignored[i] for i in wanted if i < len(plan.ignored))}
    gone = plan.gone.get(path, []) if path is not None else []
    earlier = plan.earlier.get(path, {}) if path is not None else {}
    if gone:
        totals["gone"] = len(gone)
    return {
        "captioner": __version__,
        **(dict(extra) if extra else {}),
        "inputs": [str(plan.roots[i]) for i in sorted(wanted)],
        "output_dir": str(absolute(plan.output_dir)) if plan.output_dir is not None else None,
        "formats": list(plan.formats),
        "totals": totals,
        "videos": [r.as_dict() for r in rows],
        # the non-video files (by extension) counted in totals: a video in a container not looked for is named
        "ignored": [str(f) for i in sorted(wanted) if i < len(plan.ignored_files) for f in plan.ignored_files[i]],
        # videos deleted or renamed since an earlier run, whose outputs are kept: listed while those exist
        **({"gone": [{"path": video, "outputs": list(made)} for video, made in gone]} if gone else {}),
        # another input folder's videos batched into the same output folder before, with their outputs: whose those
        # outputs are (``BatchPlan.earlier``)
        **({"earlier": [{"path": video, "source": source_row(record)} for video, record in sorted(earlier.items())]}
           if earlier else {}),
    }


class ReportError(OutputError):
    """A batch's report or archive index that could not be written; ``written``: those that were.

    An index that failed beside a report that was written said "cannot write the report", and the
    summary named no report, as if the next run could not resume from it.
    """

    def __init__(self, message: str, written: Sequence[Path]) -> None:
        super().__init__(message)
        self.written = tuple(written)


def write_reports(plan: BatchPlan, results: Sequence[FileResult], *,
                  extra: Mapping[str, Any] | None = None) -> list[Path]:
    """Write the report(s) atomically (``OUT/captioner-report.json``, else one per input folder).

    With ``html`` among the formats, the archive index (review.py) is written beside each report, and where the
    batch wrote review pages again to match a replaced video (``refreshed_formats``) beside an index.
    Raises ``ReportError`` (what failed, what was written) once every report that can be is written:
    one input folder that cannot take its report (read-only) left the others' unwritten.
    """
    written: list[Path] = []
    failed: list[str] = []
    for path, roots in plan.report_paths_abs():
        report = batch_report(plan, results, roots, extra=extra, path=path)
        try:
            make_folders(path.parent)  # a file in the way is then write_atomic's "is not a folder"
            # a name that is not UTF-8 as JSON escapes (it was "?": its resume record named no file)
            write_atomic(path, json_surrogates(json.dumps(report, indent=2, ensure_ascii=False)) + "\n")
        except CaptionerError as exc:
            failed.append(f"cannot write the report: {exc}")
            continue
        except OSError as exc:  # its folder could not be made: a file in the way, no permission
            failed.append(f"cannot write the report: {exc.filename or path.parent}: {os_reason(exc)}")
            continue
        written.append(path)
        # the archive index of the review pages, beside the report; also where this batch wrote review pages again
        # without -f html (made from an older file of their video: ``refreshed_formats``) into a folder that has
        # one, whose captions were then the old pictures' until the next batch with html
        if "html" in plan.formats or _rewrites_index(results, roots, path.parent):
            try:
                written.append(write_batch_index(plan, results, roots, path.parent))
            except (CaptionerError, OSError) as exc:
                failed.append(f"cannot write the archive index: {exc}")
    if failed:
        raise ReportError("; ".join(failed), written)
    return written


def _rewrites_index(results: Sequence[FileResult], roots: Sequence[int], folder: Path) -> bool:
    """Whether this batch wrote a review page of a video under ``roots`` and ``folder`` has an archive index."""
    from ..review import archive_index_in

    wanted = set(roots)
    return any(r.root in wanted and r.status is Status.OK and any(p.endswith(".html") for p in r.outputs)
               for r in results) and archive_index_in(folder) is not None


def _page_in(outputs: Sequence[str], on_disk: bool = False) -> Path | None:
    """The review page among a video's ``outputs`` (``on_disk``: one still there), or None."""
    return next((Path(p) for p in outputs if str(p).endswith(".html") and (not on_disk or os.path.isfile(p))), None)


def write_batch_index(plan: BatchPlan, results: Sequence[FileResult], roots: Sequence[int], folder: Path) -> Path:
    """Write the index of a batch's videos under ``roots`` (indexes into ``plan.roots``) into ``folder``.

    Videos are shown by their path inside their input folder (prefixed by the
    folder's name when one index covers several).
    """
    from ..review import IndexEntry, write_index

    wanted = set(roots)
    several = len(wanted) > 1
    entries = []
    for r in results:
        if r.root not in wanted:
            continue
        root = Path(plan.roots[r.root])
        try:
            shown = os.path.relpath(r.video, root)
        except ValueError:
            shown = r.shown or r.video
        if shown.startswith(".."):
            shown = r.shown or r.video
        elif several:
            shown = f"{root.name}/{shown}"
        page = _page_in(r.outputs)
        if page is None and r.status is not Status.FAILED:  # its page of an earlier run (pending: not yet redone)
            page = _page_in(r.covers, on_disk=True)
        entries.append(IndexEntry(shown.replace(os.sep, "/"), r.status.value, r.reason, page))
    # another folder's videos batched into the same output folder before (the report's "earlier"): their pages are
    # still here and were left out, as if the index covered only the last folder batched
    # (and videos of these folders not walked this time: a folder that cannot be listed, --no-recursive)
    for video, (_, made) in sorted(plan.earlier.get(Path(folder) / REPORT_NAME, {}).items()):
        page = _page_in(made, on_disk=True)
        if page is not None:
            root = next((plan.roots[i] for i in sorted(wanted) if Path(video).is_relative_to(plan.roots[i])), None)
            shown = (f"{Path(video).parent.name}/{Path(video).name}" if root is None else
                     f"{Path(root).name}/{os.path.relpath(video, root)}" if several else os.path.relpath(video, root))
            entries.append(IndexEntry(shown.replace(os.sep, "/"), "skipped", "", page))
    names = [Path(plan.roots[i]).name or str(plan.roots[i]) for i in sorted(wanted)]
    return write_index(entries, Path(folder), f"{', '.join(names)} · captioned videos")
