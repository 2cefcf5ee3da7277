"""Progress reports from long library work (captioning a video, indexing an archive).

The library never prints: it calls a ``ProgressCallback`` with ``Progress`` values and
the CLI draws them (tqdm bars on a terminal). One small module, so that every stage
can report without importing another stage's code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Progress:
    """A progress report: ``done`` of ``total`` units of ``stage`` (total 0 = unknown)."""

    stage: str
    done: float
    total: float


ProgressCallback = Callable[[Progress], None]
