"""The subtitle API in one import: cues, writers and atomic writes.

The code lives in three modules, each with one job: ``cues.py`` (the ``Cue``,
text cleaning, wrapping and the cue rules), ``writers.py`` (one writer per
format, ``WRITERS``, ``write_subtitles``) and ``outputs.py`` (output names,
atomic writes, temporary files). This module keeps ``from captioner.subtitles
import ...`` working for library users and for the modules that import from it
(pipeline.py, find.py); new code imports from the three modules directly.
"""

from __future__ import annotations

from captioner.cues import Cue, clean_text, layout_cues, merge_cues, normalize_cues, wrap_text
from captioner.outputs import write_atomic
from captioner.writers import (
    FORMATS, WRITERS, format_json, format_srt, format_txt, format_vtt, parse_formats, write_subtitles,
)

__all__ = [
    "FORMATS",
    "WRITERS",
    "Cue",
    "clean_text",
    "format_json",
    "format_srt",
    "format_txt",
    "format_vtt",
    "layout_cues",
    "merge_cues",
    "normalize_cues",
    "parse_formats",
    "wrap_text",
    "write_atomic",
    "write_subtitles",
]
