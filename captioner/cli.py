"""Command line: a thin Click layer over the library.

It parses options, builds a ``CaptionConfig``, calls the library and turns
``CaptionerError`` into one line on stderr and a non-zero exit. Heavy imports
(torch, OpenCV) happen inside the commands so ``--help`` answers instantly.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sys
from pathlib import Path
from typing import Any, Iterator, Sequence

import click

from . import __version__
from .config import (DEFAULT_WEIGHTS_DIR, IMAGE_EXTENSIONS, MAX_WEIGHT, MIN_SEGMENT, CaptionConfig, SearchConfig,
                     configure)
from .errors import (OUT_OF_MEMORY, CaptionerError, HungUp, ModelError, OutOfMemory, Terminated, os_reason,
                     out_of_memory, printable)
from .vocab import CHOSEN_STYLES

log = logging.getLogger("captioner")

_D = CaptionConfig()


class _Finite(click.FloatRange):
    """A float range that refuses nan and inf: Python's float() reads them, click's range checks
    let nan through (every comparison with it is false), and --fps nan or --max-segment inf
    ended in a traceback deep in the pipeline."""

    def convert(self, value, param, ctx):  # type: ignore[override]
        import math

        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number
_D_SEARCH = SearchConfig()


class _CliFormatter(logging.Formatter):
    """``warning: <message>``: lower-case level names, like the ``error: <path>: <reason>`` lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {printable(record.getMessage())}"  # a name's newline as \\n


class _StderrHandler(logging.StreamHandler):
    """A handler that writes to whatever ``sys.stderr`` is when a record comes in.

    Click's test runner (and anything else that swaps ``sys.stderr``) then gets
    the log lines, and no handler is left holding a closed stream afterwards.
    """

    _captioner_cli = True

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass

    def emit(self, record: logging.LogRecord) -> None:
        # a progress bar on screen (run's per video): the line goes above it, not onto its end
        bars = _bars_on_screen()
        if bars is not None:
            try:
                bars.write(self.format(record), file=sys.stderr)
                return
            except Exception:  # a stream gone: as any handler would
                self.handleError(record)
                return
        super().emit(record)


def _cli_handlers(logger: logging.Logger | None = None) -> list[logging.Handler]:
    """The handlers ``_setup_logging`` put on the ``captioner`` logger."""
    logger = logger or logging.getLogger("captioner")
    return [h for h in logger.handlers if getattr(h, "_captioner_cli", False)]


@contextlib.contextmanager
def _held_log_lines(into: list[logging.LogRecord]) -> Iterator[None]:
    """The CLI's log lines of the ``captioner`` logger kept in ``into`` instead of written, for ``_write_held``
    to write them where they belong in the output (``image``: a photo's warning among the captions)."""
    def hold(record: logging.LogRecord) -> bool:
        into.append(record)
        return False

    handlers = _cli_handlers()
    for h in handlers:
        h.addFilter(hold)
    try:
        yield
    finally:
        for h in handlers:
            h.removeFilter(hold)


def _write_held(records: Sequence[logging.LogRecord]) -> None:
    for h in _cli_handlers():
        for record in records:
            h.handle(record)


def _setup_logging(verbose: int, quiet: bool) -> None:
    """Send the library's log to stderr; silence OpenCV's and FFmpeg's own output unless -vv.

    Only the ``captioner`` logger gets a handler (replacing the one an earlier call
    added), so calling this twice in one process, as tests do, does not double lines.
    """
    from .native import quiet_native_logs

    level = logging.ERROR if quiet else (logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    logger = logging.getLogger("captioner")
    for old in _cli_handlers(logger):
        logger.removeHandler(old)
    handler = _StderrHandler()
    handler.setFormatter(_CliFormatter())
    logger.addHandler(handler)
    logger.setLevel(level)
    quiet_native_logs()  # not at -vv (debug)


def _formats(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    """Every ``-f`` given, in order: ``-f srt -f vtt`` means ``-f srt,vtt`` (a repeated
    option must not silently keep only its last value)."""
    from .subtitles import parse_formats

    try:
        return parse_formats(",".join(value))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


_INT8_OPTION = click.option(
    "--int8/--no-int8", default=_D.encoder.int8, show_default=True,
    help="Run an int8 copy of the encoder: about 2x faster encoding, slightly different captions "
         "(made once from the float one and cached).")


_STYLE_OPTION = click.option(
    "--style", type=click.Choice(["auto", *CHOSEN_STYLES]), default="auto", show_default=True,
    help="How captions read: video ('a man is cooking in a kitchen', MSR-VTT style) or photo "
         "('a man in a red jacket stands on a street', Flickr/COCO style); auto = video for videos, "
         "photo for images. Models trained without style tokens ignore it.")


def caption_options(f):
    """Options shared by ``run`` and ``batch`` (defaults come from config.py)."""
    opts = [
        click.option("-o", "--output-dir", type=_Named(file_okay=False, path_type=Path, what="folder name",
                                                       dash=_no_stdout("folder"), output=True),
                     default=None,
                     help="Folder for the subtitle files. Default: beside each video."),
        click.option("-f", "--output-format", "formats", multiple=True, default=(",".join(_D.output.formats),),
                     show_default=True, callback=_formats,
                     help="srt, vtt, json, txt, html (a review page; batch adds index.html), 'all', "
                          "or a comma list (e.g. srt,html); may be repeated (-f srt -f html)."),
        click.option("--fps", type=_Finite(min=0, min_open=True, max=60), default=_D.sampling.fps,
                     show_default=True, help="Frames looked at per second of video."),
        click.option("--fast", is_flag=True, default=_D.sampling.fast,
                     help="Decode key frames only (much faster; about one look per key-frame interval)."),
        click.option("--context", type=_Finite(min=0), default=_D.sampling.context_seconds,
                     show_default=True,
                     help="Seconds before and after a segment whose frames its caption also sees (its scene: "
                          "a shot of a second or two says little alone); 0 = the segment's own frames only."),
        click.option("--beam-size", type=click.IntRange(min=1, max=20), default=_D.decoding.beam_size,
                     show_default=True, help="Beam width; 1 = greedy (fastest)."),
        click.option("--rerank-weight", type=_Finite(min=0, max=MAX_WEIGHT), default=_D.decoding.rerank_weight,
                     show_default=True,
                     help="Video: how much a caption's closeness to what the segment looks like (its search "
                          "vector) counts when choosing among the beam's captions; 0 = not at all (with "
                          "--consensus 0 too: the likeliest caption)."),
        click.option("--consensus", type=_Finite(min=0, max=MAX_WEIGHT), default=_D.decoding.consensus_weight,
                     show_default=True,
                     help="Video: how much agreeing with what people said of the training videos the segment "
                          "looks most like counts (their best-agreed captions also become candidates, scored by "
                          "the decoder for this segment); 0 = off. Models without a caption bank ignore it."),
        click.option("--max-segment", type=_Finite(min=MIN_SEGMENT), default=_D.segments.max_segment,
                     show_default=True, help="Longest cue in seconds; a long shot is split into several cues."),
        click.option("--min-duration", type=_Finite(min=0), default=_D.segments.min_duration,
                     show_default=True, help="Shortest cue in seconds."),
        click.option("--shot-threshold", type=_Finite(min=0, max=2), default=_D.segments.shot_threshold,
                     show_default=True, help="Feature change (cosine distance) that counts as a cut."),
        click.option("--max-line-width", type=click.IntRange(min=10), default=_D.output.max_line_width,
                     show_default=True, help="Characters per subtitle line."),
        click.option("--max-line-count", type=click.IntRange(min=1), default=_D.output.max_line_count,
                     show_default=True, help="Lines per cue."),
        click.option("--min-confidence", type=_Finite(min=0, max=1), default=_D.output.min_confidence,
                     show_default=True,
                     help="Leave out cues whose confidence (how likely the caption says something the picture "
                          "shows) is below this; 0 keeps all. At 0.5 a quarter of MSR-VTT test cues go, whose "
                          "captions score a third of the rest's (CIDEr-D 13 against 45)."),
        _STYLE_OPTION,
        click.option("--concepts/--no-concepts", default=_D.grounding.enabled, show_default=True,
                     help="Let confident ImageNet concepts name objects in captions (open vocabulary)."),
        click.option("--model", "model_dir", type=_MODEL, default=DEFAULT_WEIGHTS_DIR,
                     show_default="shipped weights/", help="Model folder (or its model.json)."),
        click.option("--threads", type=click.IntRange(min=0), default=0, show_default=True, help="Compute threads (0 = encoder: one per CPU, decoder: 1; more than the CPUs this process may use are not used)."),
        _INT8_OPTION,
        click.option("-v", "--verbose", count=True, help="More log output (-vv for debug)."),
        click.option("-q", "--quiet", is_flag=True, help="Only errors; no progress bar."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


class _Time(click.ParamType):
    """A time in the video: seconds (``90``, ``90.5``), with units as captioner's output names write them (``90s``,
    ``1m30s``, ``1h02m30.5s``; ``1500ms``), or ``[HH:]MM:SS[.mmm]`` (``1:30``, ``01:02:03.5``; an SRT-style ``,``
    before the milliseconds too). Minutes without hours may pass 59 (``100:00``, ``100m``), as seconds alone may."""

    name = "TIME"

    def convert(self, value, param, ctx):  # type: ignore[override]
        import math
        import re

        if isinstance(value, (int, float)):
            return float(value)
        text = str(value).strip()
        number = r"(\d+(?:[.,]\d*)?|[.,]\d+)"
        clock = re.fullmatch(r"(?:(\d+):)?(?:(\d+):)?" + number, text)
        units = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:" + number + "s)?", text, re.IGNORECASE)
        millis = re.fullmatch(number + "ms", text, re.IGNORECASE)
        if clock is not None:
            first, second, last = clock.groups()
            hours, minutes = (first, second) if second is not None else (None, first)
        elif units is not None and text:
            hours, minutes, last = units.groups()
        elif millis is not None:
            hours, minutes, last = None, None, str(float(millis.group(1).replace(",", ".")) / 1000)
        else:
            self.fail(f"{value!r} is not a time: seconds (90.5, 90s, 1500ms), 1m30s, or [HH:]MM:SS[.mmm] "
                      "(1:30, 01:02:03.5)", param, ctx)
        # float, not int: int() of over 4,300 digits raised a ValueError (a traceback); float() of them is inf
        seconds = float((last or "0").replace(",", "."))
        if (minutes is not None or hours is not None) and seconds >= 60 or hours is not None and float(minutes or 0) >= 60:
            self.fail(f"{value!r} is not a time: minutes and seconds go up to 59", param, ctx)
        total = float(hours or 0) * 3600 + float(minutes or 0) * 60 + seconds
        if not math.isfinite(total):
            self.fail(f"{value!r} is not a finite time", param, ctx)
        return total


class _Named(click.Path):
    """A path that is not empty (nor blank): ``""`` (an unset shell variable) became ``Path("")``, the current
    folder: ``-o ""`` wrote a batch's outputs and report there unsaid, ``image ""`` captioned every photo
    there, ``run ""`` said ``.: is a directory``. A blank name (``" "``) is refused too unless it exists.
    ``what`` names the path in the message.

    ``dash``: why ``-`` is refused, where a Unix user means standard input or output by it (captioner reads
    and writes files only): ``-o -`` made a folder named ``-``, ``run -`` said ``-: no such file``. An input
    (``output=False``) that exists by that name is still read; an output named ``-`` is written as ``./-``.
    """

    def __init__(self, *args: Any, what: str, dash: str | None = None, output: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.what, self.dash, self.output = what, dash, output

    def convert(self, value, param, ctx):  # type: ignore[override]
        if isinstance(value, str) and not value.strip() and not os.path.lexists(value):
            self.fail(f"an empty {self.what}", param, ctx)
        if value == "-" and self.dash and (self.output or not os.path.lexists(value)):
            self.fail(self.dash, param, ctx)
        return super().convert(value, param, ctx)


def _no_stdin(what: str) -> str:
    return f"reading from standard input is not supported: give a {what}"


def _no_stdout(what: str) -> str:
    return f"writing to standard output is not supported: give a {what} (./- for one named -)"


_MODEL = _Named(path_type=Path, what="model folder name")


def build_config(*, fps: float, beam_size: int, max_segment: float, min_duration: float, shot_threshold: float,
                 max_line_width: int, max_line_count: int, model_dir: Path, formats: Sequence[str],
                 threads: int, concepts: bool = _D.grounding.enabled, fast: bool = _D.sampling.fast,
                 int8: bool = _D.encoder.int8, style: str = "auto",
                 rerank_weight: float = _D.decoding.rerank_weight,
                 consensus: float = _D.decoding.consensus_weight,
                 context: float = _D.sampling.context_seconds,
                 min_confidence: float = _D.output.min_confidence,
                 start: float = _D.sampling.start, end: float | None = _D.sampling.end) -> CaptionConfig:
    """The configuration ``run`` and ``batch`` options describe (``config.configure``)."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.get_parameter_source("min_duration") is click.core.ParameterSource.DEFAULT:
        min_duration = None  # left at its default: configure tells it from one given (the warning is for those)
    return configure(model_dir=model_dir, fps=fps, fast=fast, context=context, beam_size=beam_size,
                     rerank_weight=rerank_weight, consensus_weight=consensus,
                     max_segment=max_segment,
                     min_duration=min_duration, shot_threshold=shot_threshold, concepts=concepts,
                     formats=tuple(formats), max_line_width=max_line_width, max_line_count=max_line_count,
                     min_confidence=min_confidence,
                     threads=threads, int8=int8, style=style, start=start, end=end)


def _reason(exc: CaptionerError) -> str:
    """What an error line says of ``exc``: its message, or that memory ran out when it did (a loader that
    met a full memory blamed the model: "the model does not load (MemoryError)")."""
    return OUT_OF_MEMORY if out_of_memory(exc) else str(exc)


def _fail(message: str) -> None:
    """Print ``error: <message>`` as exactly one line on stderr (if it can still be written)."""
    _say(_error_line(message))


def _error_line(message: object) -> str:
    """One line: a file name's newline as ``\\n`` (a space named a file that was not there), as the other lines
    show it."""
    return "error: " + printable(str(message))


class _Group(click.Group):
    """The command group; turns Ctrl-C into one line and exit 130, SIGTERM into one line and 143, SIGHUP
    into one line and 129 (Ctrl-C and SIGHUP only where the caller has not ignored them).

    Click's own handling prints "Aborted!" and exits 1, and Python's default for
    SIGTERM ends the process on the spot (a batch would write no report and leave
    its workers behind). Output files are written atomically, so an interrupt leaves
    only whole files (the temporary file of the one being written is removed on the
    way out).
    """

    def main(self, *args: Any, **kwargs: Any) -> Any:
        import signal
        import threading

        _standard_streams()

        # A Ctrl-C before ``invoke`` takes over (click parsing the command line) was click's "Aborted!" and
        # exit 1: it raises an exception click does not catch. Only over Python's own handler.
        early = None
        _INTERRUPTED.clear()  # an in-process caller's earlier command's (``_interrupted_early`` reads it)
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            early = signal.signal(signal.SIGINT, _interrupted_early)
        try:
            return super().main(*args, **kwargs)
        except _EarlyInterrupt:
            _say("interrupted")
            sys.exit(130)
        except OSError as exc:  # stdout on a full disk (image > list.txt, --help > /dev/full): was a traceback
            # (EIO: the terminal closed under a job that ignores the hang-up, nohup's or a disowned one's)
            if exc.errno not in _OUTPUT_FULL and exc.errno != errno.EIO and not isinstance(exc, _StdoutClosed):
                raise  # a broken pipe is click's (quiet); anything else is a bug: its traceback says where
            sys.stdout = open(os.devnull, "w", encoding="utf-8")  # what is still buffered goes nowhere at exit
            _say(f"error: cannot write the output: {exc.strerror or exc}")
            # a usage error's message that could not be written (2>/dev/full) keeps click's code: a script read
            # exit 1, a video that failed, for a mistyped option
            shown = _click_error_shown(exc)
            sys.exit(shown.exit_code if shown is not None else 1)
        finally:
            if early is not None:
                signal.signal(signal.SIGINT, early)

    def invoke(self, ctx: click.Context):
        import signal
        import threading

        _INTERRUPTED.clear()
        main_thread = threading.current_thread() is threading.main_thread()
        previous = {}
        if main_thread:
            previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, _on_signal)}
            # SIGHUP: a closed terminal killed a batch on the spot (no report, its running marker left
            # behind). Both stay ignored where the caller ignores them, as Python itself leaves SIGINT: a
            # shell starts `captioner … &` ignoring Ctrl-C, nohup ignores the hang-up.
            for name in ("SIGINT", "SIGHUP"):
                sig = getattr(signal, name, None)
                if sig is not None and signal.getsignal(sig) is not signal.SIG_IGN:
                    previous[sig] = signal.signal(sig, _on_signal)
        try:
            return super().invoke(ctx)
        except Exception as exc:  # memory ran out where no file is to blame (a traceback before)
            if not out_of_memory(exc):
                raise
            log.debug("out of memory", exc_info=True)
            _fail(OUT_OF_MEMORY)
            ctx.exit(1)
        except HungUp:
            _say("hung up")  # the terminal is gone: the line usually cannot be written
            ctx.exit(129)
        except Terminated:
            _say("terminated")
            ctx.exit(143)
        except KeyboardInterrupt:
            # a SIGTERM or SIGHUP that Ray's signal check re-raised as a plain Ctrl-C (a hang-up was "interrupted")
            if HungUp in _INTERRUPTED:
                _say("hung up")
                ctx.exit(129)
            if Terminated in _INTERRUPTED:
                _say("terminated")
                ctx.exit(143)
            _say("interrupted")
            ctx.exit(130)
        finally:
            for sig, handler in previous.items():  # in-process callers (tests, notebooks) get their handlers back
                signal.signal(sig, handler)


def _utf8_stdout() -> bool:
    return _utf8(sys.stdout)


def _utf8(stream: Any) -> bool:
    return (getattr(stream, "encoding", None) or "").lower().replace("-", "") == "utf8"


#: Errors of writing to a file that cannot take more: a full disk (or /dev/full), a quota, a file size limit.
_OUTPUT_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class _StdoutClosed(OSError):
    """A write to a standard output that the caller closed."""


def _click_error_shown(exc: BaseException) -> click.ClickException | None:
    """The click error whose message was being written when ``exc`` was raised (click shows it after its
    ``except`` clause: ``exc`` has no context, the error is the ``self`` of its ``show`` on the traceback)."""
    tb = exc.__traceback__
    while tb is not None:
        shown = tb.tb_frame.f_locals.get("self")
        if isinstance(shown, click.ClickException):
            return shown
        tb = tb.tb_next
    return None


def _standard_streams() -> None:
    """Stand-ins for the standard streams the caller closed.

    A descriptor closed by the caller is None in Python: run, batch and search stopped on a closed
    stderr (2>&-: isatty of None) and wrote nothing; their messages go nowhere instead, as with
    2>/dev/null. A closed stdout (>&-) lost image's, search's and info's output with exit 0.
    """
    if sys.stdin is None:  # held too: else the next file opened (the batch lock) became stdin, children's too
        sys.stdin = open(_null_on(0), encoding="utf-8", closefd=False)
    if sys.stderr is None:
        sys.stderr = open(_null_on(2), "w", encoding="utf-8", closefd=False)
    if sys.stdout is None:
        sys.stdout = _ClosedStdout()


def _null_on(fd: int) -> int:
    """A descriptor on /dev/null, ``fd`` itself where the caller closed it (else a new one).

    Opened plainly, /dev/null took the lowest free number: 0 where stdin was closed too (``<&- >&- 2>&-``),
    and the next file opened (the batch's lock, a video, an output's temporary file) became descriptor 2,
    receiving what FFmpeg and OpenCV write there.
    """
    null = os.open(os.devnull, os.O_RDWR)
    if null != fd:
        try:
            os.fstat(fd)
        except OSError:  # closed: hold it
            os.dup2(null, fd)
            os.close(null)
            return fd
    return null


class _ClosedStdout:
    """``sys.stdout`` where the caller closed descriptor 1 (``captioner image a.jpg >&-``): writing to it fails.

    Commands that write nothing there (run, batch) are unaffected. The stand-in also holds descriptor 1
    open on /dev/null, so that no file opened later takes its number and receives what a native library
    writes to its stdout.
    """

    encoding = "utf-8"
    errors = "strict"

    def __init__(self) -> None:
        self._placeholder = open(_null_on(1), "w", encoding="utf-8", closefd=False)

    def write(self, text: str) -> int:
        raise _StdoutClosed(errno.EBADF, "standard output is closed")

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def _bars_on_screen() -> Any:
    """tqdm's class while one of its bars is open, else None: a line then goes through ``tqdm.write``, which clears
    the bars, writes it and draws them again below (written straight to stderr it landed on the end of the bar's
    line, and the bar's clear-up blanked the line below). tqdm not imported yet: no bar."""
    bars = getattr(sys.modules.get("tqdm"), "tqdm", None)
    return bars if bars is not None and getattr(bars, "_instances", None) else None


def _say(line: str) -> None:
    """One line on stderr, if stderr can still be written (after SIGHUP the terminal is gone: EIO); above a progress
    bar on screen, not onto its end."""
    try:
        bars = _bars_on_screen()
        if bars is not None:
            bars.write(line, file=sys.stderr)
        else:
            click.echo(line, err=True)
    except OSError:
        pass


#: Set by Ctrl-C, SIGTERM or SIGHUP (the exception to raise). A KeyboardInterrupt can be swallowed
#: where it lands (a ``__del__``, a callback run by C code: "Exception ignored in ..."), so
#: the flag stays set and ``_checked`` raises again at the next progress report, before
#: any file is written.
_INTERRUPTED: list[object] = []


class _EarlyInterrupt(BaseException):
    """A Ctrl-C while click parses the command line (not a KeyboardInterrupt: click would catch it)."""


def _interrupted_early(signum, frame) -> None:
    if _INTERRUPTED:  # the command said "interrupted" and is on its way out: a second Ctrl-C raised in a
        return  # weakref callback there ("Exception ignored in ... _EarlyInterrupt", a traceback)
    raise _EarlyInterrupt


def _on_signal(signum, frame) -> None:
    import signal

    kind = {signal.SIGTERM: Terminated, getattr(signal, "SIGHUP", None): HungUp}.get(signum, KeyboardInterrupt)
    _INTERRUPTED.append(kind)
    raise kind


def _checked(bar):
    """A progress callback that first re-raises a Ctrl-C that was swallowed, then draws ``bar`` (if any)."""

    def report(p) -> None:
        if _INTERRUPTED:
            raise HungUp if HungUp in _INTERRUPTED else Terminated if Terminated in _INTERRUPTED else KeyboardInterrupt
        if bar:
            bar(p)

    return report


#: ``main``'s help (not its docstring: ``python -OO`` strips docstrings, and --help said nothing)
_MAIN_HELP = """Describe what is visible in videos as timed subtitles.

\b
captioner run talk.mp4               # -> talk.srt beside the video
captioner run *.mp4 -o subs -f all   # srt, vtt, json, txt and html into subs/
captioner batch archive/ -o subs     # a whole folder tree, resumable
captioner image photo.jpg            # alt text for photos
"""


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             help=_MAIN_HELP)
@click.version_option(__version__, prog_name="captioner")
def main() -> None:
    # OpenMP threads that spin while waiting steal the core the video decoder needs
    # (and collapse under any other load: 30x slower encodes were seen on a busy
    # machine). Passive waiting cut `make bench`'s run from 8.6 s to 7.5 s. It must be
    # set before torch loads, which happens inside the commands; a user's value wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # File names print as their own bytes, as ls prints them: a name that is not UTF-8 (a Latin-1
    # name from an old disk, kept by Python as lone surrogates) made a strict stdout raise mid-output.
    for stream in (sys.stdout, sys.stderr):  # stderr too: its lines name files (written, failed)
        if hasattr(stream, "reconfigure"):
            if _utf8(stream):
                stream.reconfigure(errors="surrogateescape")
            else:  # another encoding (PYTHONIOENCODING=latin-1, an old locale): what it cannot hold is escaped
                stream.reconfigure(errors="backslashreplace")


#: ``run``'s help (not its docstring: ``python -OO`` strips docstrings, and --help said nothing)
_RUN_HELP = """Caption VIDEO files into subtitle files (default: <name>.srt beside each video).

Files captioner wrote before are replaced; any other file of the same name is left alone (--overwrite).
--start and --end caption one stretch of each video (a scene of a film).
"""


@main.command(short_help="Caption video files into subtitles (srt, vtt, json, txt, html).", help=_RUN_HELP)
# readable=False: click refused the whole command over one unreadable file; each gets its own error line
@click.argument("videos", nargs=-1, required=True, type=_Named(readable=False, path_type=Path, what="file name",
                                                               dash=_no_stdin("file")))
@click.option("--overwrite", is_flag=True,
              help="Replace existing output files even if captioner did not write them (such as a film's "
                   "dialogue <name>.srt). Without it such a video is skipped with an error.")
@click.option("--start", type=_Time(), default=_D.sampling.start,
              help="Caption from this time of the video: seconds (90.5, 90s, 1500ms), 1m30s (as output names "
                   "give it) or [HH:]MM:SS[.mmm]. Cue times stay the "
                   "video's, so the subtitles play with the whole file; an MP4, MOV, MKV or WebM is jumped into, other "
                   "containers (and HDR, transparent or mirrored video, read with PyAV) decode the frames before it "
                   "without looking at them. "
                   "The outputs are named for the stretch (talk.1m30s-2m00s.srt). Default: the start.")
@click.option("--end", type=_Time(), default=_D.sampling.end,
              help="Caption up to this time (same forms as --start); reading stops there. Default: the end.")
@caption_options
def run(videos: tuple[Path, ...], overwrite: bool, output_dir: Path | None, formats: tuple[str, ...], verbose: int,
        quiet: bool, start: float, end: float | None, **options) -> None:
    from .outputs import (STALE_WRITE_S, count_text, output_bases, output_names, output_problem, prepare_output_dir,
                          remove_empty, remove_stale_temp_files, replaces_input, seconds_text, stretch_label)

    if end is not None and end < start + 0.001 - 1e-9:  # a millisecond, subtitles' precision (and the file names')
        # 2.0009 after 2 was "2.001 s is not after --start (2 s)": the rule, with the values as given
        given = lambda t: f"{t:.9f}".rstrip("0").rstrip(".")  # noqa: E731  (to the nanosecond, as it was given)
        message = (f"{given(end)} s is not at least a millisecond after --start ({given(start)} s)" if end > start
                   else f"{seconds_text(end)} s is not after --start ({seconds_text(start)} s)")
        raise click.BadParameter(message, param_hint="'--end'")
    _setup_logging(verbose, quiet)
    from .batch.job import caption_one
    from .writers import foreign_outputs, foreign_reason

    config = build_config(formats=formats, start=start, end=end, **options)
    captioner = _load(config, wait=False)  # a short clip's run is mostly start-up: overlap it
    created = []
    if output_dir is not None:
        try:  # fail before captioning anything if the folder cannot exist
            created = prepare_output_dir(output_dir)
        except CaptionerError as exc:
            _fail(str(exc))
            sys.exit(1)
    failed = 0
    any_written = False
    try:
        for video, base in output_bases(videos, output_dir):
            if isinstance(base, CaptionerError):
                failed += 1
                _fail(str(base))
                continue
            if start or end is not None:  # a scene's subtitles beside the film's, never in their place
                base = base.with_name(f"{base.name}.{stretch_label(start, end)}")
            foreign = [] if overwrite else foreign_outputs(base, config.output.formats)
            problem = (replaces_input(video, base, config.output.formats)  # even with --overwrite
                       or (foreign_reason(foreign[0]) if foreign else output_problem(base, config.output.formats)))
            if problem:  # before captioning: nothing of the user's is replaced, and no time is spent
                failed += 1
                _fail(problem)
                continue
            # what a run of this video killed outright left (batch clears them when it plans)
            remove_stale_temp_files(base.parent, output_names(base), older_than=STALE_WRITE_S)
            # a bar only on a terminal: redirected to a file, tqdm's redraws are noise around the error lines
            bar = None if quiet or not sys.stderr.isatty() else _ProgressBar(printable(video.name))
            try:
                written, n_cues = caption_one(captioner, video, base, config, progress=_checked(bar),
                                              overwrite=overwrite)
            except (ModelError, OutOfMemory) as exc:  # the weights (loaded beside the first video), or no memory
                # left: no other video can be captioned either
                _fail(_reason(exc))
                sys.exit(1)
            except CaptionerError as exc:
                failed += 1
                _fail(str(exc))
                continue
            finally:
                if bar:
                    bar.close()
            any_written = True
            if not quiet:  # stderr read by `| head -1` that has gone: the other videos are still captioned
                for p in written:
                    _say(f"{printable(str(p))}  ({count_text(n_cues, 'cue')})")
        sys.exit(1 if failed else 0)
    finally:  # a run that wrote nothing (failed, stopped by Ctrl-C) leaves no empty output folder behind
        if not any_written:
            remove_empty(created)


#: ``image``'s help (not its docstring: ``python -OO`` strips docstrings, and --help said nothing)
_IMAGE_HELP = """Caption photos (files, or folders of .jpg/.jpeg/.jfif/.png/.webp/.avif/.bmp/.tif/.tiff/.gif: \
the first frame):
prints '<path>\\t<caption>' per image (--json: a JSON object per line)."""


@main.command(short_help="Caption photos: alt text, one line per photo (or JSON).", help=_IMAGE_HELP)
@click.argument("paths", nargs=-1, required=True,
                type=_Named(readable=False, path_type=Path, what="file or folder name",
                            dash=_no_stdin("file or folder")))
@click.option("--beam-size", type=click.IntRange(min=1, max=20), default=_D.decoding.beam_size, show_default=True,
              help="Beam width; 1 = greedy.")
@click.option("--rerank-weight", type=_Finite(min=0, max=MAX_WEIGHT), default=_D.decoding.photo_rerank_weight,
              show_default=True, help="How much a caption's closeness to what the photo looks like counts when "
                                      "choosing among the beam's captions; 0 = not at all (with --consensus 0 too: "
                                      "the likeliest caption).")
@click.option("--consensus", type=_Finite(min=0, max=MAX_WEIGHT), default=_D.decoding.photo_consensus_weight,
              show_default=True,
              help="How much agreeing with what people said of the training photos this one looks most like "
                   "counts (their best-agreed captions also become candidates, scored by the decoder for this "
                   "photo); 0 = off. Models without a photo bank ignore it.")
@click.option("--model", "model_dir", type=_MODEL, default=DEFAULT_WEIGHTS_DIR,
              show_default="shipped weights/", help="Model folder (or its model.json).")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True,
              help="Photos read and captioned together (the encoder takes them 16 at a time): more holds more "
                   "in memory.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object a line (path, caption, confidence) instead of '<path>\\t<caption>': for "
                   "programs, and for file names that hold a tab or a line break.")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@_INT8_OPTION
@_STYLE_OPTION
@click.option("-q", "--quiet", is_flag=True, help="Only errors; no progress bar.")
def image(paths: tuple[Path, ...], beam_size: int, rerank_weight: float, consensus: float, model_dir: Path,
          batch_size: int, as_json: bool, int8: bool, style: str, verbose: int, quiet: bool) -> None:
    _setup_logging(verbose, quiet)
    from .batch.plan import find_files
    from .encoder import UNDECODED_PHOTO_EXTENSIONS, load_image
    from .find import json_text
    from .outputs import count_text, too_long
    from .video import no_such_file

    files: list[Path] = []
    failed = 0
    folders: list[Path] = []
    left_out: list[Path] = []  # files under the folders without a photo's extension (said, as batch counts them)
    for p in paths:
        # os.path's tests, not Path's: on a path too long for the system Path's raised (a traceback). As batch
        # walks: hidden files and folders (macOS ._photo.jpg) left out, links to folders not followed
        if os.path.isdir(p):
            folders.append(p)
            # HEIC photos too: each gets its error line and hint (left out, a folder of them was "no images found")
            found, other, unlisted = find_files(p, extensions=IMAGE_EXTENSIONS + UNDECODED_PHOTO_EXTENSIONS)
            left_out.extend(other)
            for f in found:
                if os.path.isfile(f):
                    files.append(f)
                    continue
                try:  # listed, but its folder cannot be entered (mode 644): said, as batch says it
                    os.stat(f)
                except OSError as exc:
                    _fail(f"{printable(str(f))}: cannot read file ({os_reason(exc)})")
                else:  # a FIFO or a device named like a photo: as when it is named itself
                    _fail(f"{printable(str(f))}: not a regular file")
                failed += 1
            for folder, reason in unlisted:
                _fail(f"{printable(str(folder))}: {reason}")
                failed += 1
        elif os.path.isfile(p):
            files.append(p)
        elif os.path.exists(p):  # a FIFO, a device: was "no such file or folder"
            _fail(f"{p}: not a regular file")
            failed += 1
        else:
            _fail(f"{p}: {too_long(p)}" if too_long(p) else no_such_file(p, "file or folder"))
            failed += 1
    if left_out and not quiet:  # b.jpe, c.jp2: OpenCV reads them when named, a folder's walk takes extensions
        named = ", ".join(printable(str(f)) for f in left_out[:3]) + (", ..." if len(left_out) > 3 else "")
        _say(f"note: {count_text(len(left_out), 'file')} without a photo's extension left out ({named}); "
             "name a file to caption it")
    if not files:
        if not failed:
            _fail("no images found" + (f" in {', '.join(printable(str(f)) for f in folders)}" if folders else ""))
        sys.exit(1)
    config = configure(model_dir=model_dir, beam_size=beam_size, int8=int8, style=style, photo_rerank_weight=rerank_weight,
                       photo_consensus_weight=consensus)
    captioner = _load(config)
    from tqdm import tqdm

    # a folder of 500 photos took a minute with nothing said: a bar on a terminal (stdout keeps the captions)
    bar = tqdm(total=len(files), unit="image", desc="captioning", file=sys.stderr, dynamic_ncols=True, leave=False,
               disable=True if quiet or len(files) < 2 or not sys.stderr.isatty() else None, mininterval=0.5)
    for start in range(0, len(files), batch_size):
        chunk, imgs, errors, logged = [], [], {}, {}
        for f in files[start : start + batch_size]:
            held: list[logging.LogRecord] = []
            try:  # shrunk at once: a batch of 12-megapixel photos held whole took over 1 GB
                with _held_log_lines(held):  # (a "cut short" warning came above earlier photos' captions)
                    imgs.append(captioner.encoder.resize(load_image(str(f), captioner.encoder.config.image_size)))
            except CaptionerError as exc:
                failed += 1
                errors[len(chunk)] = _error_line(exc)
            logged[len(chunk)] = held
            chunk.append(f)
        captions = iter(captioner.caption_images(imgs))
        # each line in the photos' order: a chunk's errors were printed before the captions of the photos ahead
        # of them (a terminal showed b.jpg's error above a.jpg's caption)
        for k, f in enumerate(chunk):
            _write_held(logged[k])
            if k in errors:
                try:  # _fail's line, clear of the bar; a stderr that cannot be written stops no photo (as _say)
                    tqdm.write(errors[k], file=sys.stderr)
                except OSError:
                    pass
                continue
            cap = next(captions)
            with bar.external_write_mode(file=sys.stdout):  # a caption line is not glued onto the bar's
                if as_json:  # valid JSON whatever the name (as search --json)
                    click.echo(json_text({"path": str(f), "caption": cap.text, "confidence": round(cap.confidence, 3)},
                                         ascii_only=not _utf8_stdout()))
                else:
                    click.echo(f"{printable(str(f))}\t{printable(cap.text)}")
        bar.update(len(chunk))
    bar.close()
    sys.exit(1 if failed else 0)


#: ``info``'s help (not its docstring: ``python -OO`` strips docstrings, and --help said nothing)
_INFO_HELP = """Show the model card summary: model, encoder, training data, metrics, checksum."""


@main.command(short_help="Show the model card: model, encoder, training data, metrics.", help=_INFO_HELP)
@click.option("--model", "model_dir", type=_MODEL, default=DEFAULT_WEIGHTS_DIR,
              show_default="shipped weights/", help="Model folder (or its model.json) to describe.")
def info(model_dir: Path) -> None:
    from .weights import resolve, verify_model

    from .pipeline import check_model

    try:
        folder = resolve(model_dir)
        m = verify_model(folder)  # a corrupt or mixed-up decoder is an error here too, not a checksum to trust
        check_model(CaptionConfig(model_dir=folder))  # and every other part a run loads (not the encoder)
    except CaptionerError as exc:
        _fail(_reason(exc))
        sys.exit(1)
    try:
        lines = _describe_model(folder, m)
    except (TypeError, AttributeError, ValueError, KeyError) as exc:  # card fields of a hand-edited model.json
        _fail(f"{folder / 'model.json'}: cannot describe the model ({exc.__class__.__name__}: {exc})")
        sys.exit(1)
    for line in lines:
        click.echo(line)


def _obj(value: Any) -> dict:
    """A card field that should be a JSON object, or {} (a hand-edited "extra": null, which a run never reads,
    made info fail where run and image worked)."""
    return value if isinstance(value, dict) else {}


def _versions() -> str:
    """The versions a bug report needs, from the installed packages' metadata (nothing imported: torch
    took seconds); a dependency that is missing is said to be."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    parts = [f"captioner {__version__}", f"Python {platform.python_version()}"]
    for names in (("numpy",), ("onnxruntime",), ("opencv-python-headless", "opencv-python"), ("av",), ("torch",)):
        for name in names:
            try:
                parts.append(f"{name} {version(name)}")
                break
            except PackageNotFoundError:
                continue
        else:
            parts.append(f"{names[0]} not installed")
    return ", ".join(parts)


def _describe_model(folder: Path, m: dict) -> list[str]:
    """``captioner info``'s lines for the manifest ``m`` of the model in ``folder``: all made before one is
    printed (a hand-edited field that cannot be read printed half the card, then an error)."""
    from .encoder import runtime_summary
    from .vocab import SPECIALS, STYLES

    lines: list[str] = []

    extra = _obj(m.get("extra"))
    lines.append(f"model:     {m.get('name')}  ({folder})")
    lines.append(f"encoder:   {m.get('encoder')} (frozen, ImageNet-1k)")
    d = _obj(m.get("decoder"))
    k, kd = d.get("concept_slots", 0), d.get("detector_slots", 0)
    concepts = (f", attends over and copies {k} concept words ({kd} detected, {k - kd} ImageNet)" if kd
                else f", attends over and copies {k} ImageNet concept words" if k else "")
    vocab = m.get("vocab", [])
    tokens = [w[1:-1] for w in vocab if w.startswith("<") and w[1:-1] in STYLES]
    styles = [t for t in tokens if t in CHOSEN_STYLES]
    # <pad>, <start>, <end>, <unk> and the style tokens are the decoder's, not words it can write
    not_words = len(tokens) + sum(1 for w in vocab if w in SPECIALS)
    words = (d.get("vocab_size") or 0) - not_words
    lines.append(f"decoder:   attention LSTM, hidden {d.get('hidden_dim')}, vocabulary {words} words{concepts}"
                 + (f"; writes in styles {', '.join(styles)} (--style)" if styles else ""))
    if m.get("detectors"):
        from .detect import describe

        lines.append(f"concepts:  {describe(m['detectors'])}")
    from .outputs import count_text

    grammar = _obj(m.get("grammar"))
    rules = ([f"after is/are only the {count_text(len(grammar['after_be']), 'word')} the training captions put there "
              "(no noun in the verb slot)"] if grammar.get("after_be") else [])
    article = _obj(grammar.get("after_article"))
    then = _obj(article.get("then"))
    modifiers = sum(1 for after in then.values() if after)  # one with nothing after it is banned (vocab.follow_rules)
    if article.get("banned") or then:
        banned = count_text(len(article.get("banned") or ()) + len(then) - modifiers, "word")
        rules.append(f"after a/an none of {banned} ('a sunglasses'), and {modifiers} only before the words they "
                     "precede there ('a makeup tutorial')")
    if grammar.get("before_person"):
        rules.append(f"{count_text(len(grammar['before_person']), 'word')} said almost only before a person word "
                     "('young') banned with them when nobody is seen")
    for i, rule in enumerate(rules):
        lines.append(("grammar:   " if i == 0 else "           ") + rule)
    vse = _obj(m.get("vse"))
    if vse:
        memory = _obj(vse.get("memory"))
        lines.append(f"search:    JSON cues carry a {vse.get('dim')}-d visual vector in {vse.get('space')}'s "
                     "sentence space (captioner search ranks by it)"
                     + (f", moved towards the captions of the {memory.get('k')} training videos it looks most like "
                        f"(of {memory.get('items')})" if memory else ""))
        if _obj(vse.get("words")):
            vectors = vse["words"].get("count")
            if vectors == len(vocab):  # a vector per vocabulary entry, the special tokens' unused
                vectors -= not_words
            lines.append("choosing:  a caption is the beam caption with the best likelihood + closeness to the "
                         f"picture's vector (vectors for {vectors} words; --rerank-weight)")
    if _obj(m.get("bank")):
        b = m["bank"]
        lines.append(f"consensus: video candidates also from the {b.get('captions')} captions of {b.get('videos')} "
                     "training videos, those the nearest agree on (--consensus)")
    if _obj(m.get("photo_bank")):
        b = m["photo_bank"]
        lines.append(f"photos:    candidates also from the {b.get('captions')} captions of {b.get('photos')} training "
                     "photos, those the nearest agree on (captioner image --consensus)")
    lines.append(f"sha256:    {m.get('sha256')}")
    lines.append(f"runtime:   {runtime_summary(str(m.get('encoder')))}")
    lines.append(f"versions:  {_versions()}")
    training = _obj(extra.get("training"))
    if training:
        lines.append(f"trained:   {training.get('data')}")
    for name, table in _obj(extra.get("metrics")).items():
        if not isinstance(table, dict):
            continue
        lines.append(f"{name}: " + ", ".join(_metric(k, v, table) for k, v in table.items() if k != "n_without_person"))
    card = folder / "README.md"
    if card.exists():
        lines.append(f"model card: {card}")
    return lines


#: ``batch``'s help (not its docstring: ``python -OO`` strips docstrings, and --help said nothing)
_BATCH_HELP = """Caption every video under DIR (resumable; bad files are reported, never fatal).

\b
Outputs mirror DIR's sub-folders under --output-dir
(DIR/a/clip.mp4 -> OUT/a/clip.srt), or sit beside each video. With several
DIRs and -o, each gets OUT/<its name>/. A video the report says was captioned
from this very file (its size and time), its outputs still there, is skipped
(--overwrite redoes it); failures print one 'error: <path>: <reason>' line
each. OUT/captioner-report.json (or DIR/captioner-report.json) lists every
video. Exit 0: none failed, 1: some failed (or the report could not be
written).
"""


@main.command(short_help="Caption every video under folders (resumable; a report).", help=_BATCH_HELP)
@click.argument("folders", metavar="DIR...", nargs=-1, required=True,
                type=_Named(exists=True, file_okay=False, path_type=Path, what="folder name", dash=_no_stdin("folder")))
@click.option("--recursive/--no-recursive", default=True, show_default=True, help="Look into sub-folders.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Parallel workers, each with its own model. local: processes, default 1 (this process); "
                   "ray: actors, default one per cluster CPU.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Where videos are captioned: this machine, or a Ray cluster.")
@click.option("--ray-address", metavar="ADDR", default=None,
              help="Ray cluster to join (auto, HOST:6379, ray://HOST:10001). Default: start a private local instance.")
@click.option("--overwrite", is_flag=True, help="Caption again the videos whose outputs are already up to date, "
                                               "and replace output files captioner did not write (such as a "
                                               "film's dialogue <name>.srt; without it such a video fails).")
@caption_options
def batch(folders: tuple[Path, ...], recursive: bool, workers: int | None, engine: str, ray_address: str | None,
          overwrite: bool, output_dir: Path | None, formats: tuple[str, ...], verbose: int, quiet: bool,
          **options) -> None:
    import contextlib
    import time

    from .batch import exclusive, require_ray
    from .batch.lock import lock_folders
    from .outputs import prepare_output_dir, remove_empty

    _setup_logging(verbose, quiet)
    if ray_address is not None and not ray_address.strip():  # an unset variable: was a private local instance
        raise click.BadParameter("an empty address (leave the option out to start a private local instance)",
                                 param_hint="'--ray-address'")
    if ray_address and engine != "ray":
        raise click.UsageError("--ray-address needs --engine ray")
    started = time.time()
    created: list[Path] = []
    try:
        with contextlib.ExitStack() as stack:
            try:
                if engine == "ray":
                    require_ray()
                if output_dir is not None:
                    # a folder that cannot exist fails before any video is captioned
                    created = prepare_output_dir(output_dir)
                # one batch at a time writes into a folder (the outputs', or the videos' when they go beside them)
                locked = stack.enter_context(exclusive(lock_folders(output_dir, folders)))
            except CaptionerError as exc:
                _fail(str(exc))
                remove_empty(created)
                sys.exit(1)
            _run_batch(folders, output_dir, formats, recursive, overwrite, engine, workers, ray_address, quiet,
                       started, options, locked)
    except click.UsageError:  # a plan refused before anything was written: no empty -o folder left behind
        remove_empty(created)
        raise


def _run_batch(folders, output_dir, formats, recursive, overwrite, engine, workers, ray_address, quiet, started,
               options, locked) -> None:
    """``batch`` once its folders are locked: plan, run, report, exit."""
    import time

    from tqdm import tqdm

    from .batch import FileResult, Status, plan_batch, run_batch
    from .outputs import count_text

    config = build_config(formats=formats, **options)
    try:
        plan = plan_batch(folders, output_dir, formats, recursive=recursive, overwrite=overwrite, locked=locked)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    except CaptionerError as exc:  # another batch writes into a folder below this one's
        _fail(str(exc))
        sys.exit(1)
    for r in plan.done:
        if r.status is Status.FAILED:
            _fail(f"{r.shown}: {r.reason}")
    if not quiet and not plan.jobs and not plan.done:
        _say(f"no videos found in {', '.join(printable(str(f)) for f in folders)}")
    # no bar where nothing is to be captioned (it stayed on the terminal as "captioning: 0video")
    bar = tqdm(total=len(plan.jobs), unit=" video", desc="captioning", file=sys.stderr, dynamic_ncols=True,
               disable=True if quiet or not plan.jobs else None, mininterval=0.5)

    def on_result(r: FileResult) -> None:
        if r.status is Status.FAILED:
            _say(_error_line(f"{r.shown}: {r.reason}"))  # the name as run shows it (its spaces, a newline as \\n)
        bar.update(1)

    # a report that cannot be written is logged as an error line by run_batch
    outcome = run_batch(plan, config, engine=engine, workers=workers, ray_address=ray_address, started=started,
                        on_result=on_result, on_stop=bar.close)
    if outcome.fatal is not None:
        _fail(str(outcome.fatal))
    counts = outcome.counts()
    if not quiet:  # (a terminal gone under a job that ignores the hang-up: the line is lost, the batch is not)
        _say(f"{counts[Status.OK]} captioned, {counts[Status.SKIPPED]} up to date, "
             f"{counts[Status.FAILED]} failed, "
             + (f"{counts[Status.PENDING]} not run, " if counts[Status.PENDING] else "")
             + f"{sum(plan.ignored)} non-video file(s) ignored in {time.time() - started:.1f} s"
             + (f"; report: {', '.join(printable(str(r)) for r in outcome.reports)}" if outcome.reports else ""))
        if gone := len({video for g in plan.gone.values() for video, _ in g}):  # nested roots: in two reports
            _say(f"note: {count_text(gone, 'video')} captioned before {'is' if gone == 1 else 'are'} no longer there "
                 "(deleted or renamed); the outputs left are kept"
                 + (" and listed in the report (\"gone\")" if outcome.reports else ""))
        if outcome.renamed:
            _say(f"note: {count_text(outcome.renamed, 'output')} renamed: a video of the same name came or went "
                 f"beside {'its video' if outcome.renamed == 1 else 'theirs'}, which keeps its captions (-v names them)")
        if outcome.repointed:
            _say(f"note: {count_text(outcome.repointed, 'JSON output')} now name{'s' * (outcome.repointed == 1)} "
                 f"where {'its video is' if outcome.repointed == 1 else 'their videos are'} (moved since captioned)")
    # a report or an index not written (its error line said why): without the report the next run cannot tell
    # what this one did
    sys.exit(1 if counts[Status.FAILED] or outcome.fatal is not None or outcome.unwritten or not outcome.reports else 0)


class _ProgressBar:
    """One tqdm bar per video on stderr, fed by the library's progress callback.

    The bar counts sampled frames against the number the container's metadata
    promises, so tqdm can show an ETA; captioned segments are shown beside it. Stages
    alternate window by window (frames, then the window's segments), so the bar is
    made once and only moves forward.
    """

    def __init__(self, label: str) -> None:
        self.label = label
        self._bar = None
        self._segments = 0

    def __call__(self, p) -> None:
        from tqdm import tqdm

        if self._bar is None:
            import shutil

            from .errors import elided

            # a name that filled the line left no room for the count, the percentage and the time left: a third of
            # the width at most, cut in the middle (its start and its end tell videos apart)
            label = elided(self.label, max(12, shutil.get_terminal_size().columns // 3))
            self._bar = tqdm(total=None, desc=label, unit=" frames", file=sys.stderr, leave=False,
                             dynamic_ncols=True, mininterval=0.5)
        bar = self._bar
        if p.stage == "frames":
            if p.total and p.total != bar.total:
                bar.total = p.total
            if p.done > bar.n:
                bar.update(p.done - bar.n)
        elif p.done != self._segments:
            from .outputs import count_text

            self._segments = int(p.done)
            bar.set_postfix_str(f"{count_text(self._segments, 'segment')} captioned", refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _metric(key: str, value: Any, table: dict) -> str:
    """One metric of ``captioner info``; a share of invented people says of how many pictures (often few)."""
    if key == "invented_person" and "n_without_person" in table:
        return f"{key} {value} (of {table['n_without_person']} without a person)"
    return f"{key} {value}"


class _IndexBar:
    """A tqdm bar on stderr for ``captioner search``'s indexing, fed by find.py's progress reports."""

    def __init__(self) -> None:
        self._bar = None

    def __call__(self, p) -> None:
        from tqdm import tqdm

        if self._bar is None or self._bar.total != p.total or p.done < self._bar.n:  # a new folder's texts
            self.close()
            self._bar = tqdm(total=p.total, desc="indexing", unit=" texts", file=sys.stderr, leave=False,
                             dynamic_ncols=True, mininterval=0.5)
        self._bar.update(p.done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _load(config: CaptionConfig, *, wait: bool = True):
    """The Captioner, or one error line and exit 1. ``wait=False``: the weights finish loading
    while the first video decodes, and a ``ModelError`` comes from the first caption instead."""
    from .pipeline import Captioner

    try:
        return Captioner(config, wait=wait)
    except CaptionerError as exc:
        _fail(_reason(exc))
        sys.exit(1)


#: ``search``'s help (not its docstring: ``python -OO`` strips docstrings, and --help said nothing)
_SEARCH_HELP = """Find the moments whose captions match QUERY in the JSON outputs under FOLDERS.

\b
captioner search "a dog running on a beach" subs/
captioner search "cooking" subs/ -n 20 --json
captioner search "a car" subs/ --html results.html

Cues are ranked by meaning: the query's sentence embedding (offline) against
each cue's picture vector and its caption (weights: SearchConfig); prints
'path  start --> end  score  caption', best first. The index is kept in
FOLDER/.captioner-search/ (or the cache folder if FOLDER is read-only) and
brought up to date with the JSON files on every search (on a terminal, a
progress bar while new captions are embedded). A JSON file that is
not a captioner output gives one 'error: <path>: <reason>' line (exit 1; the
others are still searched).
"""


@main.command(short_help="Find the moments that match a query in captioned folders.", help=_SEARCH_HELP)
@click.argument("query")
@click.argument("folders", nargs=-1, required=True,
                # readable=False: a folder that cannot be listed is one error line (exit 1), the others searched
                type=_Named(exists=True, file_okay=False, readable=False, path_type=Path, what="folder name",
                            dash=_no_stdin("folder")))
@click.option("-n", "results", type=click.IntRange(min=1), default=_D_SEARCH.results, show_default=True,
              help="how many cues to show")
@click.option("--json", "as_json", is_flag=True, help="print the results as JSON")
@click.option("--html", "html_page", type=_Named(dir_okay=False, path_type=Path, what="file name",
                                                 dash=_no_stdout("file name"), output=True),
              help="also write a results page here, linking to each video's review page (-f html) at the cue")
@click.option("-v", "--verbose", count=True, help="More log output: what indexing does (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors; no progress bar.")
def search(query: str, folders: tuple[Path, ...], results: int, as_json: bool, html_page: Path | None,
           verbose: int, quiet: bool) -> None:
    _setup_logging(verbose, quiet)
    from .find import Searcher, check_query, check_results_page, check_words, hit_lines, hits_json, write_results_html

    try:
        check_query(query)
        check_words(query)  # before indexing: a query the model cannot read would be answered with noise
    except CaptionerError as exc:
        _fail(str(exc))
        sys.exit(2)
    try:  # before indexing (minutes for a new archive), not after
        if html_page is not None:
            check_results_page(html_page)
    except CaptionerError as exc:
        _fail(str(exc))
        sys.exit(1)

    # a bar only on a terminal, and only while new texts are embedded (a large new archive: minutes)
    bar = None if quiet or not sys.stderr.isatty() else _IndexBar()
    try:
        result = Searcher(folders, progress=bar).search(query, results)
    except CaptionerError as exc:
        _fail(str(exc))
        if as_json:  # one object whatever happened, as README promises (a program parsing it read nothing)
            from .find import SearchResult

            empty = SearchResult([], [(", ".join(str(f) for f in folders), str(exc))], 0, [])
            click.echo(hits_json(query, empty, ascii_only=not _utf8_stdout()), nl=False)
        sys.exit(1)
    finally:
        if bar:
            bar.close()
    for path, reason in result.errors:
        _fail(f"{path}: {reason}")
    failed = bool(result.errors)
    if html_page is not None:
        # before the hits: a reader that stops early (| head -1) ended the process before the page was written
        try:  # the hits are shown even when the page cannot be written
            write_results_html(query, result, html_page)
        except CaptionerError as exc:
            _fail(str(exc))
            failed = True
    if as_json:
        click.echo(hits_json(query, result, ascii_only=not _utf8_stdout()), nl=False)
    else:
        for line in hit_lines(result.hits):
            click.echo(line)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
