"""Exceptions the library raises for problems a user can fix.

The CLI turns any ``CaptionerError`` into a one-line message and a non-zero exit;
anything else is a bug and is allowed to show a traceback.
"""

from __future__ import annotations

import errno
import os
import re


class CaptionerError(Exception):
    """Base class: a problem with the user's input, files or options."""


class VideoError(CaptionerError):
    """The video cannot be opened or yields no decodable frame."""


class ModelError(CaptionerError):
    """Weights are missing, corrupt, or do not match the expected model."""


class OutputError(CaptionerError):
    """An output file or directory cannot be written."""


class OutOfMemory(CaptionerError):
    """An allocation failed: the machine (or the process's memory limit) has too little memory free."""


#: What a user is told when memory runs out, wherever it ran out (decoding, loading the model, encoding).
OUT_OF_MEMORY = ("captioner ran out of memory: close other programs or allow it more memory "
                 "(batch: fewer --workers, each loads the model; image: a smaller --batch-size)")

#: What ``captioner image`` says of a photo whose decoding ran out of memory: each photo is decoded alone and kept
#: only squashed, so OUT_OF_MEMORY's "a smaller --batch-size" cannot help (a 12000 x 8000 PNG under a limit).
PHOTO_OUT_OF_MEMORY = ("out of memory decoding this photo: close other programs or allow captioner more memory, "
                       "or make the photo smaller")

#: How native libraries say an allocation failed: ONNX Runtime's arena and C++ (``Fail: ... Failed to
#: allocate memory``, ``std::bad_alloc``), OpenCV (``(-4:Insufficient memory) Failed to allocate``), and an
#: ``ENOMEM`` passed through as text (safetensors' memory map: ``Cannot allocate memory (os error 12)``).
_NATIVE_OUT_OF_MEMORY = ("Failed to allocate memory", "bad_alloc", "Insufficient memory", os.strerror(errno.ENOMEM))


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says that memory ran out, in any of the forms the libraries captioner uses raise.

    Each of them, met where a file is read, became that file's fault ("not a valid safetensors file",
    "not a readable image", "the model does not load (MemoryError)") or a traceback; callers turn it into
    ``OutOfMemory`` or ``OUT_OF_MEMORY``. A ``CaptionerError``'s text is not searched (it names the user's
    files, which may be called anything): the exception it was raised while handling is.
    """
    if isinstance(exc, (MemoryError, OutOfMemory)):  # NumPy's "Unable to allocate" too
        return True
    if isinstance(exc, CaptionerError):  # raised while memory ran out: a loader blamed the model for it
        return exc.__context__ is not None and out_of_memory(exc.__context__)
    if isinstance(exc, OSError) and exc.errno == errno.ENOMEM:
        return True
    return any(text in str(exc) for text in _NATIVE_OUT_OF_MEMORY)


def raise_if_out_of_memory(exc: BaseException, what: str = "") -> None:
    """Raise ``OutOfMemory`` (``OUT_OF_MEMORY``, after ``what``: ``"photo.jpg: "``) if ``exc`` says memory
    ran out; for an ``except`` clause, before it blames the file."""
    if out_of_memory(exc):
        raise OutOfMemory(what + OUT_OF_MEMORY) from None


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


def elided(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters, cut in the middle ("…" in place of what is left out): its
    start says what failed, its end why. Cut at the end, a reason that names a long path (an output
    mirrored deep under -o) kept the path and lost the why: "no space left on device" never said."""
    if len(text) <= limit:
        return text
    head = limit // 3
    return text[:head] + "…" + text[len(text) - (limit - head - 1):]


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


def path_list(paths: object, call: str, before: str = "") -> None:
    """Refuse one path where ``call`` takes a list of them: a string is a sequence of characters, and
    ``plan_batch("videos", ...)`` planned "v", "i", ..., "/" and ".": every video on the machine.

    ``before``: the arguments the call takes before the list, as the suggestion writes them
    (``search``'s query: the suggestion put the list first, where it is the query).
    """
    import os

    if isinstance(paths, (str, bytes, os.PathLike)):
        raise TypeError(f"{call} takes a list of folders, not one path: {call}({before}[{paths!r}], ...)")
