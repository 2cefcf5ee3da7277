"""Where captioning work runs: one video at a time here, or many in a batch.

``caption_one`` is the unit of work every engine shares (caption a video, write
its files atomically), so the CLI's ``run``, the local batch engine and the Ray
engine produce byte-identical files.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from .config import CaptionConfig
from .errors import OutputError

if TYPE_CHECKING:
    from .pipeline import Captioner, ProgressCallback

log = logging.getLogger(__name__)


def output_base(video: Path, output_dir: Path | None, relative_to: Path | None = None) -> Path:
    """Output path without extension: beside the video, or under ``output_dir``.

    With ``relative_to`` (a batch root) the video's sub-folders are mirrored under
    ``output_dir``. The result is always inside ``output_dir`` when one is given.
    """
    if output_dir is None:
        return video.with_suffix("")
    if relative_to is not None:
        rel = video.resolve().relative_to(relative_to.resolve()).with_suffix("")
    else:
        rel = Path(video.stem)
    base = (output_dir / rel).resolve()
    root = output_dir.resolve()
    if root != base and root not in base.parents:
        raise OutputError(f"{video}: output would fall outside {output_dir}")
    return output_dir / rel


def caption_one(captioner: "Captioner", video: Path, base: Path, config: CaptionConfig,
                progress: "ProgressCallback | None" = None) -> tuple[list[Path], int]:
    """Caption ``video`` and write ``base.<fmt>`` for each format; returns (paths, cue count)."""
    from .subtitles import write_subtitles

    result = captioner.caption_video(video, progress=progress)
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{base.parent}: cannot create output folder ({exc.strerror or exc})") from None
    paths = write_subtitles(result.cues, base, config.output.formats, config.output, result.metadata(), result.duration)
    return paths, len(result.cues)
