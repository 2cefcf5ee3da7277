"""Exceptions the library raises for problems a user can fix.

The CLI turns any ``CaptionerError`` into a one-line message and a non-zero exit;
anything else is a bug and is allowed to show a traceback.
"""

from __future__ import annotations

import re


class CaptionerError(Exception):
    """Base class: a problem with the user's input, files or options."""


class VideoError(CaptionerError):
    """The video cannot be opened or yields no decodable frame."""


class ModelError(CaptionerError):
    """Weights are missing, corrupt, or do not match the expected model."""


class OutputError(CaptionerError):
    """An output file or directory cannot be written."""


#: How a folder that ``os.walk`` could not list is reported (batch and search alike).
CANNOT_LIST = "cannot list folder"


def os_reason(exc: OSError) -> str:
    """An ``OSError``'s reason as a message's parenthesis says it: ``permission denied``, ``no space left on device``."""
    return (exc.strerror or str(exc) or type(exc).__name__).lower()


def cannot_list(exc: OSError) -> str:
    """The reason for a folder ``os.walk`` could not list: ``cannot list folder (permission denied)``."""
    return f"{CANNOT_LIST} ({os_reason(exc)})"


def first_line(exc: BaseException) -> str:
    """An exception's message, first line, at most 160 characters ("" if it has none): for one-line messages."""
    return str(exc).splitlines()[0][:160] if str(exc) else ""


class Terminated(KeyboardInterrupt):
    """The process was asked to stop (SIGTERM): handled like Ctrl-C, but the exit status is 143."""


class HungUp(Terminated):
    """The terminal went away (SIGHUP: a closed window, a dropped ssh session): as SIGTERM, exit status 129."""


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with control characters as escapes (``\\n``, ``\\x1b``), for a listing of one item a line: a
    file named ``a\\nb.mp4`` split its line in two (and could forge another), a caption's ESC moved the
    terminal's cursor. Other characters, a non-UTF-8 name's bytes included, are left as they are."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def path_list(paths: object, call: str) -> None:
    """Refuse one path where ``call`` takes a list of them: a string is a sequence of characters, and
    ``plan_batch("videos", ...)`` planned "v", "i", ..., "/" and ".": every video on the machine."""
    import os

    if isinstance(paths, (str, bytes, os.PathLike)):
        raise TypeError(f"{call} takes a list of folders, not one path: {call}([{paths!r}], ...)")
