"""Command line: a thin Click layer over the library.

It parses options, builds a ``CaptionConfig``, calls the library and turns
``CaptionerError`` into one line on stderr and a non-zero exit. Heavy imports
(torch, OpenCV) happen inside the commands so ``--help`` answers instantly.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import click

from . import __version__
from .config import (
    DEFAULT_WEIGHTS_DIR, IMAGE_EXTENSIONS, CaptionConfig, OutputConfig,
)
from .errors import CaptionerError

log = logging.getLogger("captioner")

_D = CaptionConfig()


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else (logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s", stream=sys.stderr)


def _formats(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    from .subtitles import parse_formats

    try:
        return parse_formats(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def caption_options(f):
    """Options shared by ``run`` and ``batch`` (defaults come from config.py)."""
    opts = [
        click.option("-o", "--output-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="Folder for the subtitle files. Default: beside each video."),
        click.option("-f", "--output-format", "formats", default=",".join(_D.output.formats), show_default=True,
                     callback=_formats, help="srt, vtt, json, txt, 'all', or a comma list (e.g. srt,json)."),
        click.option("--fps", type=click.FloatRange(min=0, min_open=True, max=60), default=_D.sampling.fps,
                     show_default=True, help="Frames looked at per second of video."),
        click.option("--beam-size", type=click.IntRange(min=1, max=20), default=_D.decoding.beam_size,
                     show_default=True, help="Beam width; 1 = greedy (fastest)."),
        click.option("--max-segment", type=click.FloatRange(min=0.5), default=_D.segments.max_segment,
                     show_default=True, help="Longest cue in seconds; a long shot is split into several cues."),
        click.option("--min-duration", type=click.FloatRange(min=0), default=_D.segments.min_duration,
                     show_default=True, help="Shortest cue in seconds."),
        click.option("--shot-threshold", type=click.FloatRange(min=0, max=2), default=_D.segments.shot_threshold,
                     show_default=True, help="Feature change (cosine distance) that counts as a cut."),
        click.option("--max-line-width", type=click.IntRange(min=10), default=_D.output.max_line_width,
                     show_default=True, help="Characters per subtitle line."),
        click.option("--max-line-count", type=click.IntRange(min=1), default=_D.output.max_line_count,
                     show_default=True, help="Lines per cue."),
        click.option("--model", "model_dir", type=click.Path(path_type=Path), default=DEFAULT_WEIGHTS_DIR,
                     show_default="shipped weights/", help="Model folder (or its model.json)."),
        click.option("--threads", type=click.IntRange(min=0), default=0, help="Torch threads (0 = automatic)."),
        click.option("-v", "--verbose", count=True, help="More log output (-vv for debug)."),
        click.option("-q", "--quiet", is_flag=True, help="Only errors; no progress bar."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def build_config(*, fps: float, beam_size: int, max_segment: float, min_duration: float, shot_threshold: float,
                 max_line_width: int, max_line_count: int, model_dir: Path, formats: Sequence[str],
                 threads: int) -> CaptionConfig:
    return replace(
        _D,
        model_dir=model_dir,
        decoding=replace(_D.decoding, beam_size=beam_size),
        sampling=replace(_D.sampling, fps=fps),
        segments=replace(_D.segments, max_segment=max_segment, min_duration=min(min_duration, max_segment)),
        output=OutputConfig(formats=tuple(formats), max_line_width=max_line_width, max_line_count=max_line_count),
        threads=threads,
    )


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="captioner")
def main() -> None:
    """Describe what is visible in videos as timed subtitles.

    \b
    captioner run talk.mp4                  # -> talk.srt beside the video
    captioner run *.mp4 -o subs -f all      # srt, vtt, json and txt into subs/
    captioner batch archive/ -o subs        # a whole folder tree, resumable
    captioner image photo.jpg               # alt text for photos
    """


@main.command()
@click.argument("videos", nargs=-1, required=True, type=click.Path(path_type=Path))
@caption_options
def run(videos: tuple[Path, ...], output_dir: Path | None, formats: tuple[str, ...], verbose: int, quiet: bool,
        **options) -> None:
    """Caption VIDEO files into subtitle files (default: <name>.srt beside each video)."""
    _setup_logging(verbose, quiet)
    from .engines import caption_one, output_base

    config = build_config(formats=formats, **options)
    captioner = _load(config)
    failed = 0
    for video in videos:
        bar = None if quiet else _ProgressBar(video.name)
        try:
            base = output_base(video, output_dir)
            written, n_cues = caption_one(captioner, video, base, config, progress=bar)
        except CaptionerError as exc:
            failed += 1
            _fail(str(exc))
            continue
        finally:
            if bar:
                bar.close()
        if not quiet:
            for p in written:
                click.echo(f"{p}  ({n_cues} cues)", err=True)
    sys.exit(1 if failed else 0)


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--beam-size", type=click.IntRange(min=1, max=20), default=_D.decoding.beam_size, show_default=True,
              help="Beam width; 1 = greedy.")
@click.option("--model", "model_dir", type=click.Path(path_type=Path), default=DEFAULT_WEIGHTS_DIR,
              show_default="shipped weights/", help="Model folder (or its model.json).")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True, help="Images encoded at once.")
@click.option("-v", "--verbose", count=True)
@click.option("-q", "--quiet", is_flag=True)
def image(paths: tuple[Path, ...], beam_size: int, model_dir: Path, batch_size: int, verbose: int, quiet: bool) -> None:
    """Caption photos (files, or folders of .jpg/.jpeg/.png): prints '<path>\\t<caption>' per image."""
    _setup_logging(verbose, quiet)
    from .encoder import load_image

    files: list[Path] = []
    failed = 0
    for p in paths:
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file())
        elif p.is_file():
            files.append(p)
        else:
            _fail(f"{p}: no such file or folder")
            failed += 1
    if not files:
        if not failed:
            _fail("no images found")
        sys.exit(1)
    config = replace(_D, model_dir=model_dir, decoding=replace(_D.decoding, beam_size=beam_size))
    captioner = _load(config)
    for start in range(0, len(files), batch_size):
        chunk, imgs = [], []
        for f in files[start : start + batch_size]:
            try:
                imgs.append(load_image(str(f)))
                chunk.append(f)
            except CaptionerError as exc:
                _fail(str(exc))
                failed += 1
        for f, cap in zip(chunk, captioner.caption_images(imgs)):
            click.echo(f"{f}\t{cap.text}")
    sys.exit(1 if failed else 0)


@main.command()
@click.option("--model", "model_dir", type=click.Path(path_type=Path), default=DEFAULT_WEIGHTS_DIR,
              show_default="shipped weights/")
def info(model_dir: Path) -> None:
    """Show the model card summary: model, encoder, training data, metrics, checksum."""
    from .weights import read_manifest, resolve

    try:
        folder = resolve(model_dir)
        m = read_manifest(folder)
    except CaptionerError as exc:
        _fail(str(exc))
        sys.exit(1)
    extra = m.get("extra", {})
    click.echo(f"model:     {m.get('name')}  ({folder})")
    click.echo(f"encoder:   {m.get('encoder')} (frozen, ImageNet-1k)")
    d = m.get("decoder", {})
    click.echo(f"decoder:   attention LSTM, hidden {d.get('hidden_dim')}, vocabulary {d.get('vocab_size')} words")
    click.echo(f"sha256:    {m.get('sha256')}")
    training = extra.get("training", {})
    if training:
        click.echo(f"trained:   {training.get('data')}")
    for name, table in extra.get("metrics", {}).items():
        click.echo(f"{name}: " + ", ".join(f"{k} {v}" for k, v in table.items()))
    card = folder / "README.md"
    if card.exists():
        click.echo(f"model card: {card}")


class _ProgressBar:
    """A tqdm bar on stderr fed by the library's progress callback."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._bar = None
        self._stage = None

    def __call__(self, p) -> None:
        from tqdm import tqdm

        if p.stage != self._stage:
            self.close()
            self._stage = p.stage
            self._bar = tqdm(total=p.total or None, desc=f"{self.label} {p.stage}", unit=" " + p.stage,
                             file=sys.stderr, leave=False, dynamic_ncols=True, mininterval=0.5)
        if self._bar is not None:
            if p.total and p.total != self._bar.total:
                self._bar.total = p.total
            self._bar.update(p.done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _load(config: CaptionConfig):
    from .pipeline import Captioner

    try:
        return Captioner(config)
    except CaptionerError as exc:
        _fail(str(exc))
        sys.exit(1)


if __name__ == "__main__":
    main()
