"""Progress bars of downloads and syncs: shown on a terminal only, never with KOA_PROGRESS=0."""

from __future__ import annotations

import logging
import sys
from typing import IO

from tqdm import tqdm

from ..config import progress_from_env

logger = logging.getLogger(__name__)

__all__ = ["progress_bar", "progress_enabled"]


def progress_enabled(progress: bool | None = None, stream: IO | None = None) -> bool:
    """Decide whether to show a progress bar.

    Bars appear only when ``stream`` (default ``sys.stderr``) is a terminal,
    never when ``KOA_PROGRESS=0`` (or false/no/off) or ``progress`` is False.

    Examples
    --------
    >>> import io
    >>> progress_enabled(True, io.StringIO())
    False
    """
    if progress is False or not progress_from_env().value:
        return False
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def progress_bar(total: int | None, desc: str, progress: bool | None, unit: str = "B") -> tqdm:
    """Return a tqdm bar that shows only when :func:`progress_enabled` says so."""
    enabled = progress_enabled(progress)
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=unit == "B",
        unit_divisor=1024 if unit == "B" else 1000,
        disable=not enabled,
        leave=False,
        file=sys.stderr,
    )
