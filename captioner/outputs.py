"""Every file captioner writes: its name, where it goes and how it is written.

One owner for output names (``output_base``, ``output_file``, the report and index
names), for atomic writes (``write_atomic``, ``atomic_path``) and for the hidden
temporary files they use (``.<name>.<random>.captioner.tmp``), so the code that deletes the
temporary files of an interrupted run (``remove_stale_temp_files``) matches exactly
what the writers make, and ``run``, ``batch`` and the resume check agree on every
name. The encoder export cache lives under ``cache_dir()``.

This module imports neither torch nor cv2.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import math
import os
import re
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import CaptionerError, OutputError, VideoError

__all__ = [
    "INDEX_FALLBACK_NAME", "INDEX_NAME", "INDEX_NAMES", "REPORT_NAME", "STALE_WRITE_S", "absolute", "atomic_path",
    "base_names_of", "cache_dir", "case_keys", "count_text", "ignores_case", "json_number", "json_surrogates",
    "keep_extensions", "make_folders", "new_file_mode", "output_base", "output_bases", "output_file", "output_names",
    "output_problem", "outputs_up_to_date", "parse_json", "prepare_output_dir", "remove_empty",
    "remove_stale_temp_files", "replaces_input", "too_long", "walk", "write_all_atomic", "write_atomic", "write_problem",
]

log = logging.getLogger(__name__)

#: File name of the batch report, written into the output folder (or each input folder).
REPORT_NAME = "captioner-report.json"

#: The archive index a batch writes at its output root (review.py; ``review.index_path`` picks one).
INDEX_NAME = "index.html"
#: Used instead when ``index.html`` there is a video's page or a file captioner did not write.
INDEX_FALLBACK_NAME = "captioner-index.html"
INDEX_NAMES = (INDEX_NAME, INDEX_FALLBACK_NAME)

# The temporary file of ``path`` is ``.<path.name>.<mkstemp's 8 random letters>.captioner.tmp`` in
# the same folder: hidden (a batch never takes it for a video), on the same file system as ``path``
# so that the final rename is atomic, and named as no user's file is (``.talk.srt.backup.tmp``, a
# user's, matched the ``.<name>.<word>.tmp`` of earlier versions and the next batch deleted it).
_TMP_SUFFIX = ".captioner.tmp"
#: A temporary output this many seconds old is a killed run's, not one another run is writing (``run`` clears them).
STALE_WRITE_S = 60.0
def _tmp_pattern(suffix: str) -> re.Pattern[str]:
    """``.<name>.<mkstemp's 8 letters><suffix>``; DOTALL: a name with a newline in it (allowed everywhere else)
    left its temporary files behind on every run."""
    return re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}" + re.escape(suffix), re.S)


_TMP_RE = _tmp_pattern(_TMP_SUFFIX)


#: Longest file name most file systems take (NAME_MAX, bytes).
_NAME_MAX = 255
#: Longest path the system takes (Linux's PATH_MAX, bytes, its closing NUL included).
_PATH_MAX = 4096


def _tmp_stem(name: str) -> str:
    """``name`` as its temporary file spells it: whole when ``.<name>.<8 random>.captioner.tmp`` fits in
    ``_NAME_MAX`` bytes, else cut to fit and told apart by a hash of the whole name (an output
    name of 242-255 bytes is legal, its temporary file's was not)."""
    raw = os.fsencode(name)
    room = _NAME_MAX - len(f"..12345678{_TMP_SUFFIX}")
    if len(raw) <= room:
        return name
    digest = hashlib.sha256(raw).hexdigest()[:8]
    return os.fsdecode(raw[: room - len(digest) - 1]) + "~" + digest


def _tmp_prefix(name: str) -> str:
    return f".{_tmp_stem(name)}."


def too_long(path: Path | str, folder: bool = False) -> str | None:
    """Why the system refuses ``path`` for its length alone (``ENAMETOOLONG``), as a message says it; None
    if it does not.

    Python 3.11's ``Path.exists()`` and ``is_dir()`` raise on such a path instead of saying False, and
    the error's own "File name too long" does not say which limit was passed: outputs mirrored under
    -o from a legal video path can be past the path's limit with every name in them short. ``folder``:
    ``path`` names a folder (its last name is a folder's).
    """
    raw = os.fsencode(path)
    parts = raw.split(b"/")
    if len(parts[-1]) > _NAME_MAX:
        return f"{'folder' if folder else 'file'} name too long (over {_NAME_MAX} bytes)"
    if any(len(part) > _NAME_MAX for part in parts):
        return f"folder name too long (over {_NAME_MAX} bytes)"
    if len(raw) >= _PATH_MAX:
        return f"path too long ({len(raw):,} bytes; at most {_PATH_MAX - 1:,})"
    return None


def write_problem(path: Path) -> str | None:
    """``too_long`` for what ``write_atomic`` opens to write ``path``: the path itself, and the temporary
    file beside it, whose path is longer: a path just under the limit was captioned for, then failed as
    "<name>: cannot write: File name too long" of a name far under 255 bytes."""
    problem = too_long(path)
    if problem is None:
        tmp = len(os.fsencode(Path(path).parent / f"{_tmp_prefix(Path(path).name)}12345678{_TMP_SUFFIX}"))
        if tmp >= _PATH_MAX:
            problem = f"path too long ({tmp:,} bytes with the name of the temporary file written first; " \
                      f"at most {_PATH_MAX - 1:,})"
    return problem


def cache_dir() -> Path:
    """captioner's cache folder: ``$CAPTIONER_CACHE``, else ``$XDG_CACHE_HOME/captioner``, else ``~/.cache/captioner``.

    The one default for that variable (the encoder exports live in ``encoders/`` under it).
    """
    own = os.path.expanduser(os.environ.get("CAPTIONER_CACHE", ""))  # "~/x" quoted: the shell left the ~
    # relative: ignored as XDG's is (a cache in each folder run in, the encoder exported again there, 11 s each)
    if os.path.isabs(own):
        return Path(own)
    xdg = os.path.expanduser(os.environ.get("XDG_CACHE_HOME", ""))
    if not os.path.isabs(xdg):  # the XDG spec: a relative path is invalid and ignored (else one cache per folder)
        home = os.path.expanduser("~")
        if not os.path.isabs(home):  # no HOME and no passwd entry (a container's arbitrary user id): "~" itself
            raise CaptionerError("no home folder for captioner's cache (HOME is not set); set CAPTIONER_CACHE "
                                 "or XDG_CACHE_HOME to an absolute folder")
        xdg = os.path.join(home, ".cache")
    return Path(os.path.join(xdg, "captioner"))


def absolute(path: Path | str) -> Path:
    """Absolute without resolving symlinks (a shared mount keeps the name users know)."""
    return Path(os.path.abspath(path))


# --------------------------------------------------------------------------- names


def output_file(base: Path, fmt: str) -> Path:
    """``base`` plus ``.fmt``, appended rather than via ``with_suffix``.

    ``with_suffix`` would turn ``talk.v2`` into ``talk.srt`` and make two
    videos that differ only after a dot overwrite each other.
    """
    return base.with_name(f"{base.name}.{fmt}")


def output_names(base: Path) -> list[str]:
    """The names of every file a video with output base ``base`` may get (every format): their temporary
    files are the ones a batch (at its start and as it stops) or a run of the same video may delete."""
    from .writers import FORMATS

    return [output_file(base, f).name for f in FORMATS]


def output_base(video: Path, output_dir: Path | None, relative_to: Path | None = None) -> Path:
    """Output path without extension: beside the video, or under ``output_dir``.

    With ``relative_to`` (a batch root) the video's sub-folders are mirrored under
    ``output_dir``. The result is always inside ``output_dir`` when one is given.
    """
    if video.name in ("", ".", ".."):
        # "." or "dir/..": no file name to build an output name from
        reason = "is a directory, not a video file" if os.path.isdir(video) else "not a video file name"
        raise VideoError(f"{video}: {reason}")
    if output_dir is None:
        return video.parent / _stem(video)
    if relative_to is not None:
        try:
            # where the file is listed, not where a symlink points: a link to a video elsewhere
            # is mirrored like the files beside it
            rel_video = absolute(video).relative_to(absolute(relative_to))
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


def ignores_case(folder: Path | str) -> bool:
    """Whether the file system holding ``folder`` (or, while it does not exist yet, its nearest existing
    parent) takes names that differ only in case for one file: macOS's and Windows' disks do, Linux's
    do not. Found by creating a hidden file there and asking for its name in the other case; where no
    file can be made there (read-only, gone), True: two names then never land on one file unsaid."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".captioner-case-probe.", dir=_existing(absolute(folder)))
    except OSError:
        return True
    try:
        os.close(fd)
        folder_name, name = os.path.split(probe)
        return os.path.lexists(os.path.join(folder_name, name.swapcase()))
    finally:
        try:
            os.unlink(probe)
        except OSError:
            pass


def _existing(folder: Path) -> Path:
    """``folder``, or its nearest parent that exists (-o's sub-folders are made when written)."""
    while not os.path.isdir(folder) and folder != folder.parent:
        folder = folder.parent
    return folder


def case_keys() -> Callable[[Path], str]:
    """A function that gives output paths the same key exactly when they would be one file: compared
    without case where their folder's file system ignores case (``ignores_case``), as they are elsewhere.

    Outputs folded without case everywhere collided on Linux: ``cam/day/clip.mp4`` and
    ``cam/DAY/clip.mp4`` (or ``a.mp4`` and ``A.mp4``) could not both be captioned. Each existing folder
    is probed once per function (folders still to be made, by their nearest existing parent, as they
    will inherit it): case can be ignored folder by folder (ext4's ``chattr +F``, Windows' per-folder
    case sensitivity), so one probe per file system could let a case-insensitive folder's two videos
    write one file.
    """
    probed: dict[str, bool] = {}
    by_folder: dict[str, bool] = {}

    def key(path: Path) -> str:
        whole = absolute(path)
        folder = str(whole.parent)
        if folder not in by_folder:
            here = str(_existing(whole.parent))
            if here not in probed:
                probed[here] = ignores_case(here)
            by_folder[folder] = probed[here]
        return str(whole).casefold() if by_folder[folder] else str(whole)

    return key


def keep_extensions(pairs: Sequence[tuple[Path, Path]], key: Callable[[Path], str] | None = None) -> list[Path]:
    """The output bases of (video, base) pairs, where videos that share a base keep their extension.

    ``clip.mp4`` and ``clip.avi`` of one folder would both write ``clip.srt``; they
    get ``clip.mp4.srt`` and ``clip.avi.srt`` instead (``run`` and ``batch`` alike).
    Bases are the same when ``key`` (default ``case_keys()``) says so: without case
    only where the file system ignores it. Where the extensions cannot tell them apart
    (``run d1/clip.mp4 d2/clip.mp4 -o out``) the bases stay as they are: the first
    video's ``clip.srt`` was ``clip.mp4.srt`` for nothing, the second clashes either way.
    """
    key = key or case_keys()
    keys = [key(base) for _, base in pairs]
    groups: dict[str, set[str]] = {}  # a base -> the keys of its videos' bases with their extension
    for (video, base), k in zip(pairs, keys):
        groups.setdefault(k, set()).add(key(base.with_name(base.name + video.suffix)))
    return [base.with_name(base.name + video.suffix) if len(groups[k]) > 1 else base
            for (video, base), k in zip(pairs, keys)]


def count_text(n: int, noun: str) -> str:
    """``1 cue``, ``2 cues``: "(1 cues)" read as a slip."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def seconds_text(seconds: float) -> str:
    """Seconds as messages give them: to the millisecond, without trailing zeros (``9.96``, ``3600.125``,
    ``1234567``): ``{:g}`` wrote 1.23457e+06 and rounded 3600.125 to 3600.12, ``{:.1f}`` 9.96 to 10.0."""
    return f"{seconds:.3f}".rstrip("0").rstrip(".")


def stretch_label(start: float, end: float | None) -> str:
    """How the outputs of one stretch of a video are told from the whole video's: ``1m30s-2m05.5s``
    (``talk.1m30s-2m05.5s.srt``; ``end`` None: ``1m30s-end``).

    Under the video's own name, a scene's subtitles replaced the whole film's, and ``batch`` took
    them (newer than the video, captioner's own) for the finished video's.
    """
    def clock(seconds: float) -> str:
        # whole milliseconds as the cues round them (cues.to_ms): round(2.0485, 3) named 2.049 s a stretch whose
        # first cue the subtitles start at 2.048
        hours, rest = divmod(int(round(seconds * 1000.0)) / 1000, 3600)
        minutes, secs = divmod(rest, 60)
        text = seconds_text(secs) + "s"
        if hours:
            return f"{int(hours)}h{int(minutes):02d}m{'0' if secs < 10 else ''}{text}"
        return f"{int(minutes)}m{'0' if secs < 10 else ''}{text}" if minutes else text

    return f"{clock(start)}-{'end' if end is None else clock(end)}"


#: A clock of ``stretch_label``'s (``1h02m30s``, ``2m05.5s``, ``0s``).
_CLOCK = r"(?:\d+h)?(?:\d+m)?\d+(?:\.\d+)?s"
_STRETCH = re.compile(rf"{_CLOCK}-(?:end|{_CLOCK})")


def base_names_of(name: str, formats: Iterable[str]) -> set[str]:
    """The base names (an output base's last part) of which a file named ``name`` would be an output, in any
    of ``formats``: ``talk`` for ``talk.srt`` and for ``talk.1m30s-end.srt`` (``run --start``); none for a
    name no format ends. How a batch tells captioner's own files beside the videos from other files."""
    names: set[str] = set()
    for fmt in formats:
        if name.endswith(f".{fmt}") and len(name) > len(fmt) + 1:
            head = name[: -len(fmt) - 1]
            names.add(head)
            # a.0.5s-end: a's (0.5 s on) or a.0's (5 s on); both, as either video may be there
            names.update(head[:i] for i, c in enumerate(head) if c == "." and i and _STRETCH.fullmatch(head[i + 1:]))
    return names


def output_bases(videos: Sequence[Path], output_dir: Path | None) -> list[tuple[Path, "Path | CaptionerError"]]:
    """(video, output base) for ``captioner run``'s list of videos, by the rules a batch uses.

    A video named twice is listed once; videos that would share a base keep their
    extension (``keep_extensions``); a video no base can be made for, or whose base
    still clashes with another's (names that differ only in case, on a file system
    that ignores case), gets the error in place of its base.
    """
    seen: set[Path] = set()
    named: list[tuple[Path, Path | CaptionerError]] = []
    for video in videos:
        if absolute(video) in seen:
            continue
        seen.add(absolute(video))
        try:
            named.append((video, output_base(video, output_dir)))
        except CaptionerError as exc:
            named.append((video, exc))
    ok = [(v, b) for v, b in named if isinstance(b, Path)]
    key = case_keys()
    fixed = dict(zip((v for v, _ in ok), keep_extensions(ok, key)))
    taken: dict[str, Path] = {}
    out: list[tuple[Path, Path | CaptionerError]] = []
    for video, base in named:
        if isinstance(base, Path):
            base = fixed[video]
            same = key(base)
            if same in taken:
                # -o puts videos of several folders in one: batch mirrors their folders instead
                hint = ("; give them separate -o folders, or caption their folder with batch (it keeps sub-folders)"
                        if output_dir is not None and absolute(video).parent != absolute(taken[same]).parent else "")
                base = OutputError(f"{video}: its subtitles would overwrite those of {taken[same]}{hint}")
            else:
                taken[same] = video
        out.append((video, base))
    return out


def outputs_up_to_date(video: Path, base: Path, formats: Sequence[str],
                       record: tuple[tuple[int, int], Sequence[str]] | None = None) -> bool:
    """The resume test: every ``base.<fmt>`` exists and describes ``video`` as it is now.

    ``record``: what the last batch report recorded of the video's outputs, the (size, mtime_ns)
    the video had when they were made and which outputs were made from it; the video must still
    have them, and each output asked for must be one of them (an .srt of the video before it was
    replaced, beside a .json of the new one, is not). Without a record (outputs of ``run``, or of
    a batch before reports kept it), the outputs must be newer than the video. A record is what
    catches a video replaced by an older file (``cp -p``, ``rsync -a``), and what lets a video
    dated in the future be finished once.
    """
    # compared as real paths: the same -o reached through a link (or a link to it) is the same folder
    made = {os.path.realpath(m) for m in record[1]} if record is not None else set()
    try:
        st_video = video.stat()
        for fmt in formats:
            path = output_file(base, fmt)
            st = path.stat()
            if not stat.S_ISREG(st.st_mode) or (record is None and st.st_mtime_ns <= st_video.st_mtime_ns):
                return False
            if record is not None and os.path.realpath(path) not in made:
                return False
    except OSError:
        return False
    return record is None or (int(st_video.st_size), int(st_video.st_mtime_ns)) == tuple(record[0])


# --------------------------------------------------------------------------- folders


#: Folders a file system or an OS keeps for itself at a drive's root: the root-only lost+found of every ext4 drive
#: failed every batch of a drive root ("cannot list folder", exit 1, counted as a video); Windows' own two likewise.
SYSTEM_FOLDERS = frozenset({"lost+found", "System Volume Information", "$RECYCLE.BIN", "$Recycle.Bin"})


def walked_into(name: str) -> bool:
    """Whether the walkers of batch, image and search go into a sub-folder of this name: not a hidden one (a
    leading dot: .git, .thumbnails, the search index), not a system folder (``SYSTEM_FOLDERS``)."""
    return not name.startswith(".") and name not in SYSTEM_FOLDERS


def walk(root: Path | str,
         onerror: Callable[[OSError], None] | None = None) -> Iterator[tuple[str, list[str], list[str]]]:
    """``os.walk(root, onerror=onerror)`` (top-down, symlinked folders not followed) with a stack of its own:
    Python before 3.12 recurses once per level, and a tree ~1,000 folders deep ended a batch, an image
    run or a search in a ``RecursionError``. Each folder is listed by ``os.walk`` itself, one level at a
    time; as there, the caller prunes ``dirs`` in place. The one walker of batch, image and search."""
    stack = [os.fspath(root)]
    while stack:
        for folder, dirs, files in os.walk(stack.pop(), onerror=onerror):
            yield folder, dirs, files
            stack.extend(p for p in (os.path.join(folder, d) for d in reversed(dirs)) if not os.path.islink(p))
            dirs[:] = []  # not down from here: the stack does that


def output_problem(base: Path, formats: Sequence[str]) -> str | None:
    """Why ``base.<fmt>`` could not be written, as far as can be told before captioning; None if nothing.

    Each was found only when the files were written, after the video was captioned, and with
    some formats already written: a folder beside the videos that cannot be written (a
    read-only disk), an output name or path longer than the system takes (``write_problem``),
    a folder in the way.
    """
    for fmt in dict.fromkeys(formats):
        path = output_file(base, fmt)
        problem = write_problem(path)
        if problem:
            return f"{path}: {problem}; rename the video or -o DIR with shorter names"
        if os.path.isdir(path) and not os.path.islink(path):
            return f"{path}: a folder is in the way of the output"
    folder = Path(base).parent
    while not os.path.exists(folder) and folder != folder.parent:  # -o's sub-folders are made when written
        folder = folder.parent
    if not os.path.isdir(folder):  # out/2023 a file where batch mirrors in/2023: it said "read-only"
        return f"{folder}: a file is in the way of the output folder; move it, or -o DIR writes elsewhere"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"{folder}: cannot write there (read-only or not permitted); -o DIR writes elsewhere"
    return None


def replaces_input(video: Path, base: Path, formats: Sequence[str]) -> str | None:
    """Why ``base.<fmt>`` must not be written over ``video`` itself, whatever ``--overwrite`` says; None if
    no output is the video (the same file, or the same path while either is missing).

    A video named ``talk.srt`` (or ``notes.txt`` with ``-f txt``) has itself for its subtitles: the
    error offered ``--overwrite``, and with it the video was replaced by its own subtitles.
    """
    for fmt in dict.fromkeys(formats):
        path = output_file(base, fmt)
        try:
            same = os.path.samefile(path, video)
        except OSError:  # either is missing (or cannot be looked at): the same name is the same file
            same = absolute(path) == absolute(video)
        if same:
            return f"{path}: the output would replace the video itself; rename the video, or -o DIR writes elsewhere"
    return None


def make_folders(folder: Path) -> list[Path]:
    """``folder.mkdir(parents=True, exist_ok=True)`` one level at a time, or ``OSError``; returns the folders
    made, outermost first. ``Path.mkdir`` and ``os.makedirs`` recurse once per missing level: the outputs of
    a video ~1,000 folders deep, mirrored under -o, failed with a ``RecursionError``. A failure part-way
    (a name too long, no room) takes back the folders this call made, so that nothing empty is left."""
    missing: list[Path] = []
    # up to the first that exists: a file in the way is then met as by mkdir -p ("Not a directory")
    while not os.path.lexists(folder) and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    made: list[Path] = []
    try:
        for folder in reversed(missing):
            try:
                folder.mkdir()
                made.append(folder)
            except FileExistsError:  # made meanwhile by another worker (a folder), or a file in the way
                if not os.path.isdir(folder):
                    raise
    except OSError:
        remove_empty(made)
        raise
    return made


def prepare_output_dir(output_dir: Path) -> list[Path]:
    """Create ``output_dir`` (and its parents) before any work, or raise ``OutputError``.

    A folder that cannot exist is found out before the first video is captioned, not
    after every one of them. Returns the folders this call created, outermost first,
    so a caller that ends up writing nothing can remove them again (``remove_empty``).
    """
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise OutputError(f"{output_dir}: not a folder (-o names the folder the outputs go into)")
    if os.path.islink(output_dir) and not os.path.exists(output_dir):  # said "cannot create (Not a directory)"
        raise OutputError(f"{output_dir}: a link to {os.readlink(output_dir)}, which does not exist")
    made: list[Path] = []
    existed = os.path.isdir(output_dir)
    try:
        made = make_folders(output_dir)
        if not output_dir.is_dir():
            raise NotADirectoryError(20, "Not a directory")
        probe = tempfile.TemporaryFile(dir=output_dir, prefix=".captioner-probe.")
        probe.close()
    except OSError as exc:
        remove_empty(made)
        reason = too_long(output_dir, folder=True) if exc.errno == errno.ENAMETOOLONG else None
        if reason:
            raise OutputError(f"{output_dir}: cannot create output folder: {reason}") from None
        if existed:  # there already: what fails is writing into it ("cannot create" sent users looking for a typo)
            raise OutputError(f"{output_dir}: cannot write there ({exc.strerror or exc})") from None
        raise OutputError(f"{output_dir}: cannot create output folder ({exc.strerror or exc})") from None
    return made


def remove_empty(folders: Sequence[Path]) -> None:
    """Remove ``folders`` (innermost last in the list) that are still empty; others are left alone."""
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:
            return


# --------------------------------------------------------------------------- atomic writes


def new_file_mode() -> int:
    """Permissions a plainly created file would get (0o666 minus the umask).

    ``mkstemp`` creates files readable by the owner only; subtitles are meant
    to be shared, so the final file gets the usual mode instead. The umask is
    read from /proc because ``os.umask`` can only be read by changing it, which
    races with other threads.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o644


def _one_line(exc: BaseException) -> str:
    """A short reason for an error, guaranteed not to span lines."""
    if isinstance(exc, OSError) and exc.strerror:
        reason = exc.strerror
    else:
        reason = str(exc) or type(exc).__name__
    return " ".join(reason.split())


def json_number(value: Any) -> bool:
    """Whether a value read from JSON is a finite number (not a bool, not a string of digits): what a time or a
    confidence in captioner's own outputs must be before it is compared."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def parse_json(text: str) -> Any:
    """``json.loads`` whose every failure on bad text is a ``ValueError``.

    Files captioner reads back (its outputs, reports, review pages, model manifests) can be
    anything by the time they are read. ``json.loads`` also fails with ``RecursionError`` on
    '[[[...' nested ~1,000 deep and with ``MemoryError`` on text it cannot hold; where a caller
    caught only ``ValueError`` (bad JSON, or an integer over Python's 4,300-digit limit) those
    ended a run or a whole batch in a traceback.
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise
    except ValueError:
        raise ValueError("a JSON number of over 4,300 digits") from None
    except RecursionError:
        raise ValueError("JSON nested too deep") from None
    except MemoryError:
        raise ValueError("JSON too large to read") from None


def json_surrogates(text: str) -> str:
    """JSON text with each lone surrogate as a ``\\udcXX`` escape: a file name that is not UTF-8 (a Latin-1
    name from an old disk, kept by Python as lone surrogates) then reads back as that very name, where
    writing it as UTF-8 replaced its bytes by "?" (a path to no file)."""
    return re.sub("[\ud800-\udfff]", lambda m: f"\\u{ord(m.group()):04x}", text)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` so readers see the old file or the new one, never half.

    The text goes to a hidden temporary file (``.<name>.<random>.captioner.tmp``) in the
    same folder, so the final ``os.replace`` stays on one file system and is
    atomic; it is fsynced first so a crash cannot leave an empty file behind
    the new name. An existing file keeps its permissions, a new one gets the
    usual ``0o666 & ~umask``.

    The parent folder must already exist: creating folders is the caller's
    decision. Any failure removes the temporary file and raises ``OutputError``
    with a one-line message that starts with ``path``. An interrupt
    (``KeyboardInterrupt``) also removes the temporary file and propagates.
    """
    write_all_atomic([(path, text)])


@contextmanager
def stops_held() -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP held off for the ``with`` block, then delivered as they came.

    The report is written however a batch stops, and people press Ctrl-C twice: the second one, landing while
    the report was written, removed its temporary file and left no report at all (or an old one); one between a
    video's renames left its SRT new and its JSON old. Only where Python handles the signal (in the main thread);
    a signal left to the system is not touched.
    """
    import signal
    import threading

    held: list[int] = []
    previous: dict[int, object] = {}
    if threading.current_thread() is threading.main_thread():
        for name in ("SIGINT", "SIGTERM", "SIGHUP"):
            number = getattr(signal, name, None)
            if number is not None and callable(signal.getsignal(number)):
                previous[number] = signal.signal(number, lambda sig, _frame: held.append(sig))
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for number in dict.fromkeys(held):
            signal.raise_signal(number)


def write_all_atomic(files: Sequence[tuple[Path, str]]) -> None:
    """Write each ``(path, text)`` as ``write_atomic`` does, and replace none of them unless every text was written.

    All the texts go to their temporary files first; only then are they renamed. A video's formats
    were written one after the other, so a full disk (or a file-size limit) at the third left the first
    two new and the rest from an earlier run, under one error line that named only the third. A rename
    can still fail (a file made immutable): the error then names the files already replaced.
    """
    staged: list[tuple[str | None, Path]] = []
    try:
        for path, text in files:
            staged.append((_staged(Path(path), text), Path(path)))
        with stops_held():  # a Ctrl-C between two renames: all of them, then the stop
            for i, (tmp, path) in enumerate(staged):
                try:
                    os.replace(tmp, path)  # type: ignore[arg-type]
                except OSError as exc:
                    done = ", ".join(str(p) for _, p in staged[:i])
                    raise OutputError(f"{path}: cannot write: {_one_line(exc)}"
                                      + (f" ({done} replaced already)" if done else "")) from exc
                staged[i] = (None, path)
    finally:  # a failure or an interrupt: no temporary file stays
        for tmp, _ in staged:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except FileNotFoundError:  # renamed already: a Ctrl-C came between the rename and the line after it
                    pass
                except OSError:
                    log.warning("could not remove temporary file %s", tmp)
    for parent in dict.fromkeys(path.parent for _, path in staged):
        _fsync_folder(parent)


def _staged(path: Path, text: str) -> str:
    """``text`` in a hidden temporary file beside ``path``, fsynced, with the mode ``path`` has or a new
    file gets; its name. ``OutputError`` (the temporary file removed) when it cannot be written."""
    parent = path.parent
    if not os.path.isdir(parent):
        missing = f"{parent} is not a folder" if os.path.lexists(parent) else f"folder {parent} does not exist"
        raise OutputError(f"{path}: cannot write: {too_long(parent, folder=True) or missing}")

    tmp_name: str | None = None
    try:
        data = text.encode("utf-8", errors="replace")  # a lone surrogate (a file name not in UTF-8) becomes "?"
        try:
            mode = path.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = new_file_mode()
        fd, tmp_name = tempfile.mkstemp(prefix=_tmp_prefix(path.name), suffix=_TMP_SUFFIX, dir=parent)
        with os.fdopen(fd, "wb") as handle:
            if hasattr(os, "fchmod"):
                os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        done, tmp_name = tmp_name, None
        return done
    except Exception as exc:
        reason = write_problem(path) if isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG else None
        raise OutputError(f"{path}: cannot write: {reason or _one_line(exc)}") from exc
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                log.warning("could not remove temporary file %s", tmp_name)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path for a file that another library writes (an ONNX export), renamed to ``path`` on success.

    For writers that take a file name rather than text. The temporary file follows
    ``write_atomic``'s pattern; if the ``with`` block raises (or is interrupted) it is
    removed and the exception propagates, so no ``.tmp`` file is left behind. The
    parent folder must exist.
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=_tmp_prefix(path.name), suffix=_TMP_SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp_name)
        os.chmod(tmp_name, new_file_mode())  # mkstemp's 0600 would keep a shared cache's exports private
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except OSError:
            pass
        raise


def _fsync_folder(folder: Path) -> None:
    """Persist the rename itself; best effort, as not every platform allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temp_files(folder: Path, names: Iterable[str], older_than: float | None = None,
                            suffix: str = _TMP_SUFFIX) -> int:
    """Delete ``.<name>.<random>.captioner.tmp`` files an interrupted ``write_atomic`` left for any of ``names``.

    Only exact matches are touched, so no file of the user's can be hit. With ``older_than``
    (seconds), only files last modified that long ago: in a folder that other processes may be
    writing to at the same moment (a shared cache), a younger one may be another writer's.
    ``suffix``: the temporary names' ending, where another writer named them (``.tmp``: the search
    index's until 2026-12-05). Returns the count removed.
    """
    names = {_tmp_stem(n) for n in names}
    pattern = _TMP_RE if suffix == _TMP_SUFFIX else _tmp_pattern(suffix)
    removed = 0
    try:
        entries = os.listdir(folder)
    except OSError:
        return 0
    now = time.time()
    for entry in entries:
        match = pattern.fullmatch(entry)
        if match and match["name"] in names:
            try:
                if older_than is not None and now - os.stat(folder / entry).st_mtime < older_than:
                    continue
                os.unlink(folder / entry)
                removed += 1
            except OSError as exc:
                log.warning("could not remove stale temporary file %s: %s", folder / entry, exc)
    if removed:
        log.info("%s: removed %d temporary file(s) of an interrupted run", folder, removed)
    return removed
