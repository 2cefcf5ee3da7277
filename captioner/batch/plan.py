"""Planning a batch: find the videos, name their outputs, skip the finished ones.

``plan_batch`` decides everything before any video is captioned, so every engine
gets the same jobs and a report can list every video even if the batch is
stopped. It also deletes the temporary files an interrupted run left beside the
outputs (the pattern is outputs.py's).
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Collection, Mapping, Sequence

from ..config import VIDEO_EXTENSIONS
from ..errors import CaptionerError, cannot_list, path_list
from ..outputs import (
    INDEX_FALLBACK_NAME, INDEX_NAMES, REPORT_NAME, absolute, base_names_of, case_keys, keep_extensions, output_base,
    output_file, output_names, output_problem, outputs_up_to_date, parse_json, remove_stale_temp_files, replaces_input,
    walk, walked_into, write_problem,
)
from ..writers import captioner_wrote, foreign_outputs, foreign_reason
from .job import BatchJob, FileResult, Record, Status, failure_reason, signature_now
from .lock import check_not_running, check_unlocked, held, lock_folders

log = logging.getLogger(__name__)


@dataclass
class BatchPlan:
    """What a batch will do: the videos to caption and those already done."""

    roots: list[Path]  # absolute input folders
    output_dir: Path | None
    formats: tuple[str, ...]
    jobs: list[BatchJob] = field(default_factory=list)  # to caption
    done: list[FileResult] = field(default_factory=list)  # skipped (outputs up to date) or failed up front
    ignored: list[int] = field(default_factory=list)  # non-video files, per root
    #: those files (absolute), per root: named in the report and (``-v``) the log, so a video in a container
    #: ``VIDEO_EXTENSIONS`` lacks is not left out unsaid. captioner's own files are not among them: the outputs
    #: beside a video (``base_names_of``: any format, ``run --start``'s too) and a report or index in DIR
    ignored_files: list[list[Path]] = field(default_factory=list)
    stale_removed: int = 0  # temporary files of an interrupted run that were deleted
    #: (JSON output, its video) of videos found where no report put them (the archive or a folder in it moved; no
    #: record) whose JSON this run does not write: it is made to name the video where it is now
    #: (``writers.repoint_json``, in ``run_batch`` before the engine starts)
    repoint: list[tuple[Path, Path]] = field(default_factory=list)
    #: per report (its path): the videos it recorded that are no longer there (deleted, renamed), with their outputs
    #: still there (``gone_videos``): kept, and named in the new report and the summary
    gone: dict[Path, list[tuple[str, tuple[str, ...]]]] = field(default_factory=dict)
    #: per report (its path): records of another input folder's videos that an earlier report there kept (``batch
    #: day1 -o OUT``, then ``batch day2 -o OUT``), still there with outputs still there: carried into the new report
    #: (``"earlier"``), so that the next run still knows whose those outputs are (they were dropped, and the run
    #: after a refusal took day1's captions for day2's video)
    earlier: dict[Path, dict[str, Record]] = field(default_factory=dict)
    #: (output, its new name) of videos whose outputs' name changed, unchanged since: a clip.mkv put beside a
    #: captioned clip.mp4 makes their outputs clip.mp4.srt and clip.mkv.srt. Renamed (``run_batch``, first), not
    #: made again, and no clip.srt of the .mp4 left for a player to show with the .mkv
    renames: list[tuple[Path, Path]] = field(default_factory=list)

    def report_paths_abs(self) -> list[tuple[Path, list[int]]]:
        """Where reports go, each with the roots it covers: one in the output folder, else one per input folder."""
        if self.output_dir is not None:
            return [(absolute(self.output_dir) / REPORT_NAME, list(range(len(self.roots))))]
        return [(root / REPORT_NAME, [i]) for i, root in enumerate(self.roots)]


def find_files(root: Path, *, recursive: bool = True, exclude: Sequence[Path] = (),
               extensions: Sequence[str] = VIDEO_EXTENSIONS) -> tuple[list[Path], list[Path], list[tuple[Path, str]]]:
    """(videos, other files, unreadable folders) under ``root``, in sorted walk order.

    Videos are recognised by extension (``extensions``, any case: ``VIDEO_EXTENSIONS``, or
    ``IMAGE_EXTENSIONS`` for ``captioner image``, which walks folders the same way). Hidden
    files and folders (a leading dot: ``.git``, macOS ``._clip.mp4``, the
    temporary files of an interrupted write) are left out, and so are the other
    files under the folders in ``exclude`` (the output folder when it lies inside
    the input folder: its subtitles are not "ignored files"); videos there are
    listed like any other (they were skipped without a word, missing from the report).
    Symlinked folders are not followed (no loops); symlinked files are videos like any other.
    A tree of any depth is walked (``outputs.walk``: ``os.walk`` recursed, and ~1,000 levels ended the
    batch in a ``RecursionError``).
    """
    excluded = {os.path.realpath(p) for p in exclude}
    videos: list[Path] = []
    others: list[Path] = []
    errors: list[tuple[Path, str]] = []
    inside = {os.fspath(root): False}  # folder -> within an excluded one (below ``root``)

    def onerror(exc: OSError) -> None:
        errors.append((Path(exc.filename or root), cannot_list(exc)))

    for dirpath, dirnames, filenames in walk(root, onerror):
        here = inside.get(dirpath, False)
        if recursive:
            dirnames[:] = sorted(d for d in dirnames if walked_into(d))
            for d in dirnames:
                inside[os.path.join(dirpath, d)] = here or os.path.realpath(os.path.join(dirpath, d)) in excluded
        else:
            dirnames[:] = []
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            if path.suffix.lower() in extensions:
                videos.append(path)
            elif not here:
                others.append(path)
    return videos, others, errors


def plan_batch(roots: Sequence[Path], output_dir: Path | None, formats: Sequence[str], *,
               recursive: bool = True, overwrite: bool = False, locked: Collection[str] = ()) -> BatchPlan:
    """Find the videos under ``roots`` and decide what to do with each.

    Outputs mirror each root's tree under ``output_dir`` (``root/a/clip.mp4`` ->
    ``output_dir/a/clip.srt``); with several roots each gets its own sub-folder
    named after it (``output_dir/<root name>/a/clip.srt``), so two roots cannot
    write the same file. Without ``output_dir`` the files go beside each video.
    Videos of one folder that share a name (``clip.mp4``, ``clip.avi``) keep
    their extension in the output name (``clip.mp4.srt``, ``clip.avi.srt``).

    A video whose outputs are all newer than it is skipped unless ``overwrite``; one with an
    output file captioner did not write (``writers.captioner_wrote``: a film's dialogue
    subtitles, captions edited by hand) fails, unless ``overwrite``, and nothing is replaced.
    Temporary files an interrupted run left beside the outputs are deleted.

    Raises ``ValueError`` for no or unknown ``formats`` (a string is read as ``--format`` reads it) and
    for roots that would share an output sub-folder, ``CaptionerError`` when another batch holds a
    folder below the one this batch locked (``lock.check_unlocked``; ``locked``: the folders this
    batch holds, ``lock.exclusive``'s).
    """
    from ..writers import FORMATS, parse_formats
    from .local import _leave_if_spawning

    _leave_if_spawning()  # a worker running an unguarded script again: it found the batch's own lock and raised
    path_list(roots, "plan_batch")
    if not isinstance(formats, str) and not all(isinstance(f, str) for f in formats):
        raise ValueError(f"formats must be format names such as ['srt', 'json'], got {formats!r}")
    # "srt" was taken as ('s', 'r', 't') and failed late; () called every video up to date, writing nothing
    formats = parse_formats(formats if isinstance(formats, str) else ",".join(formats))
    pairs: list[tuple[Path, Path]] = []  # (as given, absolute), repeated roots dropped
    real_roots: set[str] = set()
    for r in roots:
        # the same folder however named: ``batch s1 s1-link`` captioned every video twice, each root's report
        # written over the other's
        if (real := os.path.realpath(r)) not in real_roots:
            real_roots.add(real)
            pairs.append((Path(r), absolute(r)))
    out_abs = absolute(output_dir) if output_dir is not None else None
    plan = BatchPlan(roots=[a for _, a in pairs], output_dir=output_dir, formats=tuple(formats))
    mirror_into: list[Path | None] = [out_abs] * len(pairs)
    if out_abs is not None and len(pairs) > 1:
        names = [a.name or "root" for _, a in pairs]
        for name in names:
            if names.count(name) > 1:
                same = " and ".join(str(g) for (g, _), n in zip(pairs, names) if n == name)
                raise ValueError(f"input folders {same} would share the output folder "
                                 f"{Path(output_dir) / name}; caption them in separate runs")
        mirror_into = [out_abs / n for n in names]

    seen: set[Path] = set()
    seen_real: set[Path] = set()  # the same, their folders' links resolved
    real_folders: dict[Path, str] = {}
    found: list[list] = []  # [video, base, shown, root]
    others: list[list[Path]] = []
    beside: dict[Path, set[str]] = {}  # folder -> the base names of the outputs its videos get beside them
    for i, (given, root) in enumerate(pairs):
        videos, other, errors = find_files(given, recursive=recursive, exclude=[output_dir] if output_dir else [])
        others.append([absolute(o) for o in other])
        for folder, reason in errors:
            plan.done.append(FileResult(str(absolute(folder)), Status.FAILED, reason, shown=str(folder), root=i))
        for video in videos:
            video_abs = absolute(video)
            try:
                stem = output_base(video_abs, None).name
                beside.setdefault(video_abs.parent, set()).update((stem, stem + video_abs.suffix))
            except CaptionerError:
                pass
            # nested or repeated roots, also through a linked folder (``batch a a-link/sub``): each video once
            if video_abs.parent not in real_folders:
                real_folders[video_abs.parent] = os.path.realpath(video_abs.parent)
            if video_abs in seen or (at := Path(real_folders[video_abs.parent], video_abs.name)) in seen_real:
                continue
            seen.add(video_abs)
            seen_real.add(at)
            try:
                base = absolute(output_base(video_abs, mirror_into[i], relative_to=root if mirror_into[i] else None))
            except CaptionerError as exc:
                plan.done.append(FileResult(str(video_abs), Status.FAILED, failure_reason(exc, video_abs),
                                            shown=str(video), root=i))
                continue
            found.append([video_abs, base, str(video), i])

    key = case_keys()  # the same output file: without case only where the file system ignores it
    for entry, base in zip(found, keep_extensions([(e[0], e[1]) for e in found], key)):
        entry[1] = base

    own: set[Path] = {path for path, _ in plan.report_paths_abs()}
    if "html" in plan.formats:  # the archive index beside the report (review.py)
        own.update(path.parent / name for path, _ in plan.report_paths_abs() for name in INDEX_NAMES)
    # the batch's own files: a video named captioner-report.mp4 would have its JSON replaced by the
    # report (and fail every rerun); index.html may be a video's page, the index then takes the other name
    reserved = {key(path): path.name for path, _ in plan.report_paths_abs()}
    if "html" in plan.formats:
        reserved.update({key(path.parent / INDEX_NAMES[1]): INDEX_NAMES[1] for path, _ in plan.report_paths_abs()})
    tmp_names: dict[Path, set[str]] = {}
    taken: dict[str, Path] = {}
    # each earlier report read once: its records, and for a moved archive its moved and gone videos
    reports = [(read_report(path), [plan.roots[c] for c in covered], covered)
               for path, covered in plan.report_paths_abs()]
    # the reports' rows, over the records they carried of another input folder's videos (``BatchPlan.earlier``)
    # (its outputs where they are now, for the other folder's records too: with -o moved alone they were dropped,
    # and another video of that name took those captions unsaid)
    recorded = {video: _outputs_now(report, record) for report, _, _ in reports
                for video, record in report.earlier.items()}
    recorded.update((video, _outputs_now(report, record)) for report, _, _ in reports
                    for video, record in report.records.items())
    # videos whose outputs moved with their -o (alone): their review pages link the video from the old place
    out_moved = {video for report, _, _ in reports if report.moved for video in {**report.earlier, **report.records}}
    # a batch of a sub-folder before (``batch archive/2023``, then ``batch archive``): its report's records too, where
    # this batch's own reports say nothing of a video (a video replaced there by an older file kept its captions)
    read = {path for path, _ in plan.report_paths_abs()}
    stamps = {video: _mtime(report.path) for report, _, _ in reports for video in [*report.earlier, *report.records]}
    # a skipped video's row keeps its cue count (it was null: a sum over the report's rows failed or fell short)
    counts = {video: n for report, _, _ in reports for video, n in report.cues.items()}
    for path in (o for other in others for o in other if o.name == REPORT_NAME and o not in read):
        stamp = _mtime(path)
        for video, record in read_report(path).records.items():
            if video not in recorded or stamp > stamps[video]:  # the newer report's word
                recorded[video], stamps[video] = record, stamp
    # output file (real path) -> the video an earlier report says it was made from, and that record
    made_from = {os.path.realpath(m): (video, record) for video, record in recorded.items() for m in record[1]}
    # a video of this run: its outputs are where it writes them now (its record may still list where they were)
    bases = {str(video): base for video, base, _, _ in found}
    base_keys: set[str] = set()

    def taken_bases() -> set[str]:
        """The keys of ``bases``: made when a rename is first looked at (rare), not for every batch."""
        if not base_keys:
            base_keys.update(key(b) for b in bases.values())
        return base_keys

    moved: dict[tuple[int, str], Record] | None = None  # records of an archive moved since: made at the first miss
    for video, base, shown, i in found:
        same = key(base)
        previous = recorded.get(str(video))
        found_moved = False
        if previous is None:
            if moved is None:
                moved = {(covered[j], inside): record for report, roots_now, covered in reports
                         for (j, inside), record in moved_records(report, roots_now).items()}
            with contextlib.suppress(ValueError):
                previous = moved.get((i, video.relative_to(plan.roots[i]).as_posix()))
                found_moved = previous is not None
        others_outputs = False  # the outputs there were made from another video (since deleted, or --overwrite)
        # also for a video with a record of its own: day2's a.mp4 and a.mkv wrote a.mp4.srt and a.mkv.srt into
        # day1's -o; a.mkv deleted, a.mp4's outputs are a.srt again, day1's, which were written over
        if made_from and (owner := _made_from_another(video, base, plan.formats, made_from, bases)) is not None \
                and not (found_moved and owner[1] == previous):  # its own record, by its path before a move
            other, record = owner
            if other in bases:  # a video of this run whose outputs these are (clip.mp4.mp4's clip.mp4.srt, wanted
                # by clip.mp4 once a clip.avi came): as a first run says it; the advice for two folders batched into
                # one -o did not apply, and following it (--overwrite) gave clip.mp4.mp4's captions to clip.mp4
                plan.done.append(FileResult(str(video), Status.FAILED, f"its subtitles would overwrite those of {other}",
                                            shown=shown, root=i).keeping(previous))
                continue
            if previous is None and tuple(record[0]) == signature_now(video):  # it renamed (a.mp4 -> a.mkv), or a copy
                previous, found_moved = record, True
            elif os.path.isfile(other) and not overwrite:
                # ``batch day1 -o OUT`` then ``batch day2 -o OUT``: day2/a.mp4 was "up to date" with day1/a.mp4's
                # captions and its JSON repointed to day2; the first folder's outputs are not replaced unasked
                plan.done.append(FileResult(
                    str(video), Status.FAILED, f"its outputs would replace those of {other}, captioned into the same "
                    "folder by an earlier batch; batch both folders in one run (each gets its own sub-folder) or "
                    "give this one another output folder (--overwrite replaces them)", shown=shown, root=i
                ).keeping(previous))
                continue
            else:  # another video's (deleted, an older a.mkv in a.mp4's place; --overwrite): not this one's
                others_outputs = True
        if same in taken:  # only left for names that differ in case alone, where the file system ignores case
            plan.done.append(FileResult(str(video), Status.FAILED, f"its subtitles would overwrite those of {taken[same]}",
                                        shown=shown, root=i).keeping(previous))
            continue
        clash = next((reserved[k] for f in plan.formats if (k := key(output_file(base, f))) in reserved), None)
        if clash is not None:
            plan.done.append(FileResult(str(video), Status.FAILED, f"its output would be the batch's own {clash}; "
                                        "rename the video", shown=shown, root=i).keeping(previous))
            continue
        taken[same] = video
        own.update(output_file(base, f) for f in FORMATS)
        tmp_names.setdefault(base.parent, set()).update(output_names(base))
        wanted = tuple(str(output_file(base, f)) for f in plan.formats)
        # outputs the report vouches for (made from the video as it still is, corrections by hand included) are
        # kept when a run asks for more formats, only the new ones written: all were written again, and a JSON or
        # an .srt corrected by hand went back to the model's words unsaid (-f srt,json then -f srt,json,vtt)
        # (and those a later batch made from it but could not report: kill -9 after -f json became -f json,srt)
        keep = () if overwrite or others_outputs or previous is None else tuple(
            f for f in plan.formats if outputs_up_to_date(video, base, (f,), previous)
            or _finished_since(video, output_file(base, f), previous, stamps.get(str(video))))
        write = tuple(f for f in plan.formats if f not in keep)
        foreign = [] if overwrite else foreign_outputs(base, write)
        # the video itself: never, even with --overwrite; a film's dialogue subtitles, captions edited by
        # hand: never replaced unasked
        replaces = replaces_input(video, base, plan.formats)
        problem = replaces or (foreign_reason(foreign[0]) if foreign else None)
        # a caption file corrected by hand where a batch wrote it, of a video unchanged since (the report's record):
        # nothing to write, so up to date; was a failure on every run, its page left out of index.html
        vouched = previous is not None and not replaces
        if (not problem or vouched) and not overwrite and not others_outputs \
                and (len(keep) == len(plan.formats) if previous is not None  # (``keep`` asked it format by format)
                     else outputs_up_to_date(video, base, plan.formats)):
            cues = counts.get(str(video))
            if cues is None and "json" in plan.formats:
                cues = _cue_count(output_file(base, "json"))
            plan.done.append(FileResult(str(video), Status.SKIPPED, "outputs are up to date", outputs=wanted, cues=cues,
                                        shown=shown, root=i, source=previous[0] if previous else signature_now(video),
                                        covers=tuple(dict.fromkeys([*previous[1], *wanted])) if previous else wanted))
            if previous is None or found_moved or str(video) in out_moved:
                plan.repoint.append((output_file(base, "json"), video))
            continue
        if not problem and not overwrite and not others_outputs and previous is not None and (
                moves := _renamed_outputs(video, base, plan.formats, previous, taken_bases(), key)):
            plan.renames.extend(moves)
            new_names = dict((str(old), str(new)) for old, new in moves)
            plan.done.append(FileResult(str(video), Status.SKIPPED, "outputs are up to date (renamed)", outputs=wanted,
                                        cues=counts.get(str(video)), shown=shown, root=i, source=previous[0],
                                        covers=tuple(new_names.get(m, m) for m in previous[1])))
            if found_moved:  # the archive moved too: the renamed JSON and page name where the video is now
                plan.repoint.append((output_file(base, "json"), video))
            continue
        problem = problem or output_problem(base, write)
        if problem:
            plan.done.append(FileResult(str(video), Status.FAILED, problem, shown=shown, root=i).keeping(previous))
        else:
            plan.jobs.append(BatchJob(video, base, shown, i, previous,
                                      refreshed_formats(video, base, plan.formats, previous), overwrite=overwrite,
                                      keep=keep))
            if (previous is None or found_moved) and "json" not in plan.formats:
                plan.repoint.append((output_file(base, "json"), video))
            elif {"json", "html"} & set(keep) and (found_moved or str(video) in out_moved):
                # a kept JSON and page name the video where it is now (moved, renamed, -o moved alone), as a skipped
                # video's do: written again they did, kept they linked the old place for good
                plan.repoint.append((output_file(base, "json"), video))

    def captioners(path: Path, root: Path) -> bool:
        """Whether ``path`` is captioner's own (an earlier run's output, a batch's report or index), not an input:
        run --start's a.1s-end.srt and an old report in DIR were counted as non-video files ignored."""
        if path.name == REPORT_NAME or (path.parent == root and path.name == INDEX_FALLBACK_NAME):
            return True  # a report in a sub-folder: of a batch of that folder before
        if path.parent == root and path.name in INDEX_NAMES and captioner_wrote(path):
            return True
        return bool(base_names_of(path.name, FORMATS) & beside.get(path.parent, set()))

    for report, roots_now, _ in reports:
        if gone := gone_videos(report, roots_now, seen, own):
            plan.gone[report.path] = gone
        now = {video: _outputs_now(report, record) for video, record in {**report.earlier, **report.records}.items()}
        if report.moved:  # pages of videos not in this run link them from the old place too, and after this
            # run's report nothing says the folder moved
            plan.repoint.extend((Path(json), Path(video)) for video, (_, made) in now.items()
                                if Path(video) not in seen and os.path.isfile(video)
                                for json in made if json.endswith(".json") and os.path.isfile(json))
        kept = {video: record for video, record in now.items()
                if not any(Path(video).is_relative_to(r) for r in plan.roots) and os.path.isfile(video)
                and any(os.path.isfile(m) for m in record[1])}
        # and the records of videos in a folder that cannot be listed now (permissions, a share's ACL): dropped, the
        # videos were "no longer there", and once readable again a replacement dated older (cp -p) went unnoticed
        # (run after run while it cannot; also a folder that can be entered but not listed, mode 311, whose videos
        # can still be looked at, and videos left out of this walk by --no-recursive: their pages stay in the index)
        kept.update((video, record) for video, record in now.items()
                    if Path(video) not in seen and (cannot_tell(Path(video)) or os.path.isfile(video))
                    and any(os.path.isfile(m) or cannot_tell(Path(m)) for m in record[1]))
        if kept:
            plan.earlier[report.path] = kept
    left = {Path(m) for gone in plan.gone.values() for _, made in gone for m in made}  # a gone video's: not ignored
    plan.ignored_files = [[o for o in other if o not in own and o not in left and not captioners(o, plan.roots[i])]
                          for i, other in enumerate(others)]
    plan.ignored = [len(files) for files in plan.ignored_files]
    for path in (path for files in plan.ignored_files for path in files):
        log.info("%s: ignored (not a video file extension)", path)
    # another batch writing into the folder this one writes into (the CLI locks it first; a library plan may not
    # have: it captioned every video again beside the CLI's batch and took its "captioning" marker for a crash)
    check_unlocked(lock_folders(out_abs, plan.roots), own=set(locked) | held())
    check_not_running(lock_folders(out_abs, plan.roots))  # another thread's batch: its temporary files are not stale
    # a batch on a folder below this one's (``batch a`` while ``batch a/b`` runs): before anything there is removed
    for i, root in enumerate(plan.roots):
        check_unlocked({e[1].parent for e in found if e[3] == i}, below=out_abs or root, own=locked)
    for folder, names in tmp_names.items():
        plan.stale_removed += remove_stale_temp_files(folder, names)
    for path, _ in plan.report_paths_abs():
        plan.stale_removed += remove_stale_temp_files(path.parent, [REPORT_NAME, *INDEX_NAMES])
    return plan


def _cue_count(json_path: Path) -> int | None:
    """The number of cues in a captioner JSON output, or None if it cannot be read: for a skipped video no report
    row counted (outputs of ``run``, or an archive moved since its report)."""
    try:
        cues = parse_json(json_path.read_text(encoding="utf-8"))["cues"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return len(cues) if isinstance(cues, list) else None


def _finished_since(video: Path, output: Path, previous: Record, report_ns: int | None) -> bool:
    """Whether ``output``, which the record ``previous`` does not list, was made from the video as recorded by a
    later batch that never wrote its report (``kill -9``, a power cut): the video unchanged since the record, the
    output captioner's and written after the report (``report_ns``) was. A batch killed after a format was added
    had every video captioned again by the next run, those it had finished too."""
    if report_ns is None or signature_now(video) != tuple(previous[0]):
        return False
    try:
        st = os.stat(output)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_mtime_ns > report_ns and captioner_wrote(output)


def refreshed_formats(video: Path, base: Path, formats: Sequence[str], previous: Record | None) -> tuple[str, ...]:
    """The formats not in ``formats`` whose outputs of ``video`` (to be captioned) were made from an older file of it:
    recorded as made from a file the video no longer is, or older than the video (not recorded). A batch asked for
    ``-f srt`` after a video was replaced wrote its .srt and left its .json describing the old picture, for ``captioner
    search`` to answer with. Only files captioner wrote (``captioner_wrote``): a correction by hand is not replaced."""
    from ..writers import FORMATS

    now = signature_now(video)
    if now is None:
        return ()
    out = []
    for fmt in FORMATS:
        path = output_file(base, fmt)
        if fmt in formats:
            continue
        try:
            st = os.stat(path)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        if previous is not None and str(path) in previous[1]:
            stale = tuple(previous[0]) != tuple(now)
        else:
            stale = st.st_mtime_ns < now[1]
        if stale and captioner_wrote(path):
            out.append(fmt)
    return tuple(out)


@dataclass(frozen=True)
class PastReport:
    """What an earlier report at ``path`` says (``read_report``), read once per batch."""

    path: Path
    #: video path -> its record: the (size, mtime_ns) its outputs were made from and which outputs were made from it
    #: (``FileResult.source``, ``covers``)
    records: dict[str, Record] = field(default_factory=dict)
    inputs: list[Path] = field(default_factory=list)  # its input folders
    before: Path | None = None  # where its outputs were: its ``output_dir``, else its one input folder
    gone: Any = None  # its list of gone videos, as written (checked where read)
    earlier: dict[str, Record] = field(default_factory=dict)  # its ``"earlier"`` records (``BatchPlan.earlier``)
    cues: dict[str, int] = field(default_factory=dict)  # video path -> its cue count, where a row said it

    @property
    def moved(self) -> bool:
        """Whether its output folder has moved since it was written (``mv OUT OUT2``)."""
        return self.before is not None and self.before != self.path.parent


def _renamed_outputs(video: Path, base: Path, formats: Sequence[str], previous: Record | None,
                     bases_now: Collection[str], key: Any) -> list[tuple[Path, Path]]:
    """(old, new) for each output in ``formats`` that ``video``, unchanged since its record, has under another name in
    the same folder (its base changed: a video of the same name came beside it) and not yet under this one; [] unless
    every format is so (or already there), or where the old name is now another video's (``bases_now``)."""
    if previous is None or tuple(previous[0]) != signature_now(video):
        return []
    moves: list[tuple[Path, Path]] = []
    made = {os.path.realpath(m) for m in previous[1]}
    for fmt in formats:
        new = output_file(base, fmt)
        if os.path.lexists(new):
            if os.path.realpath(new) in made:
                continue  # this one is where it goes already
            return []
        old = next((Path(m) for m in previous[1] if Path(m).parent == base.parent and m.endswith(f".{fmt}")
                    and Path(m) != new and os.path.isfile(m)), None)
        if old is None or key(old.with_name(old.name[: -len(fmt) - 1])) in bases_now:
            return []
        if write_problem(new):  # a new name too long for the system: the rename failed with a warning, and the
            return []  # video was reported up to date under outputs that did not exist (it fails as others do)
        moves.append((old, new))
    return moves


def _outputs_now(report: PastReport, record: Record) -> Record:
    """``record`` with its outputs where they are now: moved as ``report`` was, where its output folder moved
    (``mv OUT OUT2``, the videos left in place: every video was captioned again, and one corrected by hand then
    failed on every run)."""
    if not report.moved:
        return record
    return record[0], _moved(record[1], report.before, report.path.parent)


def _mtime(path: Path) -> int:
    """When ``path`` was last written (ns), 0 where it cannot be told."""
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


def _made_from_another(video: Path, base: Path, formats: Sequence[str], made_from: Mapping[str, tuple[str, Record]],
                       bases: Mapping[str, Path]) -> tuple[str, Record] | None:
    """The video (and its record) an earlier report says one of ``video``'s outputs (at ``base``, in ``formats``)
    was made from, where that is another file than ``video``; None where none is. A video of this run (``bases``:
    where each writes its outputs now) owns only outputs there: ``batch archive/2023 -o OUT`` then ``batch archive -o
    OUT`` moves 2023's outputs to OUT/2023, and its record still listing OUT/a.srt refused archive/a.mp4 for ever."""
    for fmt in formats:
        owner = made_from.get(os.path.realpath(output_file(base, fmt)))
        if owner is None or owner[0] == str(video) or bases.get(owner[0], base) != base:
            continue
        with contextlib.suppress(OSError):
            if os.path.samefile(owner[0], video):  # the same file by another name (a linked folder)
                continue
        return owner
    return None


def read_report(report: Path) -> PastReport:
    """What the report at ``report`` recorded (``PastReport``).

    Only what reports of this format say; a report that is missing, damaged or foreign gives
    nothing, and the resume test falls back to file times. A report of an earlier version names
    no outputs in its record: those its row lists then (an ok or skipped row's own).
    """
    records: dict[str, Record] = {}
    earlier: dict[str, Record] = {}
    try:
        if os.path.exists(report) and not os.path.isfile(report):  # a FIFO of that name: reading it waited for ever
            raise ValueError(f"{report}: not a file")
        data = parse_json(Path(report).read_text(encoding="utf-8"))
        _add_records(data.get("earlier", []), earlier)
        _add_records(data["videos"], records)
        cues = {str(row["path"]): row["cues"] for row in data["videos"]
                if type(row.get("cues")) is int and row.get("status") in ("ok", "skipped")}
        inputs = [Path(str(p)) for p in data["inputs"]]
        folder = data.get("output_dir")
        before = Path(str(folder)) if folder else (inputs[0] if len(inputs) == 1 else None)
        return PastReport(Path(report), records, inputs, before, data.get("gone"), earlier, cues)
    except _UNREADABLE_REPORT:
        return PastReport(Path(report), records, earlier=earlier)  # the rows before a malformed one are kept


#: What a missing, damaged or foreign report raises while its records are read.
_UNREADABLE_REPORT = (OSError, ValueError, KeyError, TypeError, AttributeError)


def _add_records(rows: Any, out: dict[str, Record]) -> None:
    """Each report row's record (``PastReport.records``) into ``out``, by video path; raises on a malformed row,
    keeping the rows before it."""
    for row in rows:
        src = row.get("source")
        if isinstance(src, dict):
            size, mtime = src["size"], src["mtime_ns"]
            made = src.get("outputs", row.get("outputs") if row.get("status") in ("ok", "skipped") else [])
            if type(size) is int and type(mtime) is int and isinstance(made, list):
                out[str(row["path"])] = ((size, mtime), tuple(str(m) for m in made))


def _inside(path: Path, inputs: Sequence[Path]) -> tuple[int, str] | None:
    """(the index of the input folder ``path`` is in, its path inside it), or None."""
    k = next((k for k, root in enumerate(inputs) if path.is_relative_to(root)), None)
    return None if k is None else (k, path.relative_to(inputs[k]).as_posix())


def _moved(made: Sequence[str], before: Path, now: Path) -> tuple[str, ...]:
    """Output paths under ``before`` as they are under ``now`` (the report's folder then and now)."""
    return tuple(str(now / Path(m).relative_to(before)) for m in made if Path(m).is_relative_to(before))


def _root_map(inputs: Sequence[Path], roots: Sequence[Path]) -> dict[int, int]:
    """Which of ``roots`` (the input folders a report covers now) each of the report's ``inputs`` is: itself; else, for
    an input folder no longer there (moved or renamed), the one root of a report of one folder, or the root of the same
    name (several folders under ``-o OUT`` have their outputs in ``OUT/<name>``). A folder still there has not moved:
    ``batch day1 -o OUT`` then ``batch day2 -o OUT`` took day1's videos for day2's, and those it lacked for gone."""
    out = {k: roots.index(old) for k, old in enumerate(inputs) if old in roots}
    for k, old in enumerate(inputs):
        if k in out or os.path.isdir(old):
            continue
        free = [j for j in range(len(roots)) if j not in out.values()]
        same = free if len(inputs) == len(roots) == 1 else [j for j in free if roots[j].name == old.name]
        if len(same) == 1:
            out[k] = same[0]
    return out


def moved_records(report: PastReport, roots: Sequence[Path]) -> dict[tuple[int, str], Record]:
    """The records of ``report`` keyed by (the index in ``roots``, the input folders the report
    covers now, of the folder the video was found in, its path inside that folder), their outputs moved as the report
    was: for an archive moved or renamed since (``mv``, another mount point), whose videos' paths the report no longer
    names. Without it a video there replaced by an older file (``cp -p``) kept the first one's captions, "up to date"
    by file times. Folders are matched by ``_root_map``; outputs are re-rooted from where the report's outputs were
    (``output_dir``, else its one input folder) to where the report is now; {} for a report that says neither."""
    if report.before is None:
        return {}
    where = _root_map(report.inputs, roots)
    out: dict[tuple[int, str], Record] = {}
    for video, (source, made) in report.records.items():
        if (at := _inside(Path(video), report.inputs)) is not None and at[0] in where:
            out[(where[at[0]], at[1])] = (source, _moved(made, report.before, report.path.parent))
    return out


def cannot_tell(path: Path) -> bool:
    """Whether it cannot be told if ``path`` exists: a folder on its way cannot be searched (``os.path.isfile``
    said False, as for a file deleted)."""
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return True
    return False


def gone_videos(report: PastReport, roots: Sequence[Path], found: Collection[Path],
                claimed: Collection[Path]) -> list[tuple[str, tuple[str, ...]]]:
    """The videos ``report`` recorded (its rows and the gone videos it listed) that are no longer there, deleted
    or renamed, each (its path, now) with its outputs that are still there and that no video found now
    (``found``) has as its own (``claimed``); ``roots``: the input folders the report covers now.

    A batch never deletes what it wrote, but outputs of a video deleted since stayed in the archive, searchable,
    and no run said so: they are named in the report (``"gone"``) and the summary, on every run while they exist.
    Paths follow an archive that was moved as ``moved_records`` does; a video whose recorded path still holds a
    file is not gone."""
    if report.before is None:
        return []
    # (and the records it kept of videos not walked then: a --no-recursive run's sub-folders; one deleted since is gone)
    rows = [(video, made) for video, (_, made) in {**report.earlier, **report.records}.items()]
    if isinstance(report.gone, list):
        rows += [(str(g["path"]), [str(m) for m in g["outputs"]]) for g in report.gone
                 if isinstance(g, dict) and "path" in g and isinstance(g.get("outputs"), list)]
    where = _root_map(report.inputs, roots)
    out: dict[str, tuple[str, ...]] = {}
    for video, made in rows:
        old = Path(video)
        at = _inside(old, report.inputs)
        path = roots[where[at[0]]] / at[1] if at is not None and at[0] in where else old
        if path in found or os.path.isfile(path) or os.path.isfile(old) or cannot_tell(path) or cannot_tell(old):
            continue  # (a folder that cannot be listed: its videos are not gone, and keep their records: plan_batch)
        kept = tuple(m for m in _moved(made, report.before, report.path.parent)
                     if Path(m) not in claimed and os.path.lexists(m))
        if kept:
            out[str(path)] = kept
    return sorted(out.items())


def remove_partial_writes(jobs: Sequence[BatchJob], unfinished: Sequence[FileResult]) -> int:
    """Delete the temporary files of the videos a stopped batch left ``pending``; returns the count.

    A worker stopped by Ctrl-C or SIGTERM (``local._stop_workers``, ``ray.kill``) can die
    inside ``write_atomic``, between creating its hidden temporary file and renaming it:
    no output is half-written, but the temporary file stays. The next run's plan removes
    such files too; this removes them as the batch stops, so that a stopped batch leaves
    only finished files behind. Called once the engine has stopped its workers.
    """
    pending = {r.video for r in unfinished if r.status is Status.PENDING}
    names: dict[Path, set[str]] = {}  # one listing per folder, as the plan does
    for job in jobs:
        if str(job.video) in pending:
            names.setdefault(job.base.parent, set()).update(output_names(job.base))
    return sum(remove_stale_temp_files(folder, n) for folder, n in names.items())

