"""One batch at a time writes into a folder: the batch lock (an ``flock`` on a hidden file).

A batch locks the folder it writes into (its ``-o``, or the video folders when the outputs go
beside the videos) and is refused where another batch's folder holds or is held by its own:
``batch a`` and ``batch a/b`` write into ``a/b`` alike.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import CaptionerError, os_reason, path_list

#: The hidden file in a batch's output folder (or input folder, outputs beside the videos) that it holds locked.
LOCK_NAME = ".captioner-batch.lock"

#: The folders (real paths) this process holds locked, with how many ``exclusive`` blocks hold each: the library's
#: ``run_batch`` locks its folders unless the CLI (or the caller) holds them already.
_HELD: dict[str, int] = {}


#: The folders (real paths) a ``run_batch`` of this process writes into now: the batch lock is the process's, so a
#: second ``run_batch`` in another thread passed over it as its own and wrote beside the first, and a ``plan_batch``
#: there removed the first one's temporary files as stale.
_RUNNING: set[str] = set()
_RUNNING_LOCK = threading.Lock()


def _running_over(folders: Iterable[str]) -> tuple[str, str] | None:
    """(one of ``folders``, the running batch's folder it lies in, above or below), or None. Under ``_RUNNING_LOCK``."""
    for folder in folders:
        other = next((r for r in _RUNNING if Path(folder).is_relative_to(r) or Path(r).is_relative_to(folder)), None)
        if other is not None:
            return folder, other
    return None


def _busy_here(folder: str, other: str) -> CaptionerError:
    return CaptionerError(f"{folder}: another captioner batch of this process is writing there ({other}); "
                          "wait for it to finish, or give another -o")


def check_not_running(folders: Iterable[str | os.PathLike[str]]) -> None:
    """``CaptionerError`` if a batch of this process (another thread's ``run_batch``) writes into one of ``folders``."""
    with _RUNNING_LOCK:
        clash = _running_over(os.path.realpath(f) for f in folders)
    if clash is not None:
        raise _busy_here(*clash)


@contextmanager
def running(folders: Sequence[Path]) -> Iterator[None]:
    """Mark ``folders`` as written by a batch of this process while it runs; ``CaptionerError`` if another batch of
    this process (another thread's) writes into one of them, or into a folder above or below one."""
    mine = {os.path.realpath(f) for f in folders}
    with _RUNNING_LOCK:
        clash = _running_over(mine)
        if clash is not None:
            raise _busy_here(*clash)
        _RUNNING.update(mine)
    try:
        yield
    finally:
        with _RUNNING_LOCK:
            _RUNNING.difference_update(mine)


def held() -> frozenset[str]:
    """The folders (real paths) whose batch lock this process holds."""
    return frozenset(_HELD)


def holds(folder: str | os.PathLike[str]) -> bool:
    """Whether this process holds the batch lock of ``folder`` or of a folder above it (a batch there covers it)."""
    real = Path(os.path.realpath(folder))
    return any(real.is_relative_to(h) for h in _HELD)


def lock_folders(output_dir: Path | None, roots: Sequence[Path]) -> list[Path]:
    """The folders a batch locks: its output folder, or its input folders when the outputs go beside the videos."""
    return [output_dir] if output_dir is not None else [r for r in roots if os.path.isdir(r)]


@contextmanager
def exclusive(folders: Sequence[Path]) -> Iterator[frozenset[str]]:
    """Hold the batch lock of each of ``folders`` (an exclusive ``flock``, released however the process ends);
    yields the folders (real paths), which this batch's own checks pass over (``check_unlocked``'s ``own``).

    Two batches writing into one folder each captioned every video, read the other's "currently
    captioning" marker as a crash, removed each other's temporary files as stale, and the last to
    finish wrote the report. ``CaptionerError`` (naming the other process) if another batch holds
    one, or the lock of a folder above one (a batch there may write into it too; batches below it
    are found by ``check_unlocked`` once the plan knows its folders). Folders that cannot be
    written are passed over (the batch reports its own errors there); without ``fcntl`` (Windows)
    nothing is locked.
    """
    path_list(folders, "exclusive")
    own = frozenset(os.path.realpath(f) for f in folders)
    try:
        import fcntl
    except ImportError:
        yield own
        return
    held: list[tuple[str, Any]] = []
    counted: list[str] = []
    try:
        for folder in sorted(own):
            path = os.path.join(folder, LOCK_NAME)
            while True:
                handle = _open_lock(path)
                if handle is None:
                    break
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    handle.seek(0)
                    holder = handle.read().strip()
                    handle.close()
                    raise _busy(folder, folder, holder) from None
                except OSError:  # no locks on this file system (NFS without lockd: ENOLCK): passed over
                    handle.close()
                    break
                try:  # the file is removed when a batch ends: locked the one that is still there?
                    same = os.lstat(path).st_ino == os.fstat(handle.fileno()).st_ino
                except OSError:
                    same = False
                if same:
                    held.append((path, handle))  # first: removed on the way out whatever happens next
                    if handle.writable():
                        try:
                            handle.seek(0)
                            handle.truncate()
                            handle.write(str(os.getpid()))
                            handle.flush()
                        except OSError as exc:  # a full disk: was "cannot write the output", and the lock stayed
                            raise CaptionerError(f"{folder}: cannot write ({os_reason(exc)})") from None
                    break
                handle.close()
            check_unlocked([folder], above=True, own=own)  # ``batch a a/b``: a is its own, not another's
        for folder in own:
            _HELD[folder] = _HELD.get(folder, 0) + 1
            counted.append(folder)
        yield own
    finally:
        for folder in counted:
            _HELD[folder] -= 1
            if not _HELD[folder]:
                del _HELD[folder]
        for path, handle in held:  # removed while still locked, so no other batch locks a file no longer there
            try:
                os.unlink(path)
            except OSError:
                pass
            try:
                handle.close()
            except OSError:  # the pid a full disk refused, flushed again: its error replaced the one that says why
                pass


def _open_lock(path: str) -> Any:
    """The lock file, opened without following a link planted in its place (whose target would be
    truncated); read-only when another user made it (a lock still holds on a read-only descriptor);
    None where neither can be opened (a folder that cannot be written)."""
    flags = os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    for mode, how in ((os.O_RDWR, "r+"), (os.O_RDONLY, "r")):
        try:
            fd = os.open(path, mode | flags, 0o666)
        except OSError:
            continue
        return os.fdopen(fd, how, encoding="utf-8")
    return None


def check_unlocked(folders: Iterable[str | os.PathLike[str]], below: str | os.PathLike[str] | None = None, *,
                   above: bool = False, own: Collection[str] = ()) -> None:
    """Raise ``CaptionerError`` if another batch holds the lock of one of ``folders``, or of a folder
    above one: up to ``below`` (not itself; ``folders`` lie below it), or, with ``above``, every
    folder above but not the folder itself.

    A batch tests the folders it will write into below the one it locked (its own lock, held on
    another open file, would test as taken), before it touches anything there; ``exclusive`` tests
    the folders above the one it locked. Each folder is tested once, with a shared ``flock`` that
    fails while an exclusive one is held; the batch's ``own`` locked folders (real paths) are not.
    """
    try:
        import fcntl
    except ImportError:
        return
    stop = os.path.realpath(below) if below is not None else None
    seen: set[str] = set()
    for start in folders:
        ours = os.path.realpath(start)
        folder = os.path.dirname(ours) if above else ours
        if above and folder == ours or ours == stop:
            continue  # the root folder: nothing above it; ``below`` itself: not tested
        while folder != stop and folder not in seen:
            seen.add(folder)
            holder = None if folder in own else _holder(fcntl, os.path.join(folder, LOCK_NAME))
            if holder is not None:
                raise _busy(ours, folder, holder)
            parent = os.path.dirname(folder)
            if parent == folder:
                break
            folder = parent


def _busy(ours: str, folder: str, holder: str) -> CaptionerError:
    """The error for a batch that would write into ``ours`` while process ``holder`` holds ``folder``."""
    where = "there" if folder == ours else f"into {folder}"
    process = f" (process {holder})" if holder.isdigit() else ""
    return CaptionerError(f"{ours}: another captioner batch is writing {where}{process}; "
                          "wait for it to finish, or give another -o")


def _holder(fcntl: Any, path: str) -> str | None:
    """The process id written in the lock file ``path`` ("" if unreadable) while a batch holds it, else None."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None  # no batch there (or a link planted in its place, which no batch holds)
    with os.fdopen(fd, "r", encoding="utf-8", errors="replace") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return handle.read(32).strip()
        except OSError:
            return None  # no locks on this file system: passed over, as ``exclusive`` does
        return None  # closing the file releases the shared lock
