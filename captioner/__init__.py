"""captioner: describe what is visible in a video as timed subtitles.

The heavy parts (torch, OpenCV) load on first use, so importing the package or
running ``captioner --help`` is instant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers see of the lazy names below (``from captioner import Captioner``)
    from .config import CaptionConfig
    from .cues import Cue
    from .pipeline import Captioner

__version__ = "0.1.0"
__all__ = ["Captioner", "CaptionConfig", "Cue", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Captioner":
        from .pipeline import Captioner

        return Captioner
    if name == "CaptionConfig":
        from .config import CaptionConfig

        return CaptionConfig
    if name == "Cue":
        from .cues import Cue

        return Cue
    raise AttributeError(name)


def __dir__() -> list[str]:
    """The lazy names too: help(captioner), dir() and tab completion did not show Captioner, CaptionConfig, Cue."""
    return sorted({*globals(), *__all__})


def console(**click_options: object) -> None:
    """The ``captioner`` command (``[project.scripts]``).

    Loading the command line takes ~0.2 s of imports (click, NumPy), before its Ctrl-C handling exists:
    a Ctrl-C then printed a KeyboardInterrupt traceback. It is the same one line and exit 130 as later.
    """
    import signal
    import sys

    try:
        from .cli import main
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        raise SystemExit(130) from None
    try:
        main(**click_options)
    except SystemExit:
        if click_options.get("standalone_mode", True):
            # click's standalone mode ends the process here, its line said: a Ctrl-C now (the exit waits for the
            # model's loading thread) only made a traceback of the exit. A caller that keeps control
            # (standalone_mode=False: no SystemExit) keeps its handler.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise
