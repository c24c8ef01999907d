"""Keeping the cache in bounds: remove the least recently used files, never records.

``koa-cal prune --max-size 50GiB`` (and ``KOA_CACHE_MAX_SIZE``, applied after
downloads) remove cached files, least recently served first, until the files
of the instrument's calibrations fit. A removed file's record stays, so the
next ``get_calibration`` fetches the file again. Never removed:

- a file a running process is writing or checking (its calibration's lock is
  held; see :meth:`~koa_middleware.cache.layout.CacheLayout.in_use`);
- a file of this store's origin that the archive lacks (it exists nowhere
  else), and every file of this store's origin when no archive can be asked.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigurationError, KOAError

logger = logging.getLogger(__name__)

__all__ = ["PruneReport", "parse_size", "present_files", "prune_cache"]

_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
    "t": 1000**4, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}  # fmt: skip
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str | int) -> int:
    """Read a size in bytes: ``'50GiB'``, ``'500 MB'``, ``'1.5TB'``, ``'1048576'``.

    Raises
    ------
    ConfigurationError
        If the text is not a number with an optional unit (B, kB, MB, GB, TB,
        KiB, MiB, GiB, TiB).

    Examples
    --------
    >>> parse_size("50GiB"), parse_size("1.5 kB"), parse_size(42)
    (53687091200, 1500, 42)
    """
    if isinstance(text, int) and not isinstance(text, bool) and text >= 0:
        return text
    match = _SIZE_RE.match(str(text))
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise ConfigurationError(
            f"Invalid size {text!r}: give bytes, or a number with a unit such as 500MB or 50GiB."
        )
    return int(float(match.group(1)) * _UNITS[unit])


@dataclass
class PruneReport:
    """What :func:`prune_cache` did.

    Attributes
    ----------
    limit : int
        The size the files were to fit in (bytes).
    size_before, size_after : int
        Bytes of the calibrations' files before and after.
    removed : list of dict
        ``id``, ``filename`` and ``file_size`` of each file removed.
    kept_in_use : list of str
        Ids whose files a running process was using.
    kept_local : list of str
        Ids of this store's origin kept because the archive lacks them (or
        cannot be asked).
    """

    limit: int
    size_before: int = 0
    size_after: int = 0
    removed: list[dict] = field(default_factory=list)
    kept_in_use: list[str] = field(default_factory=list)
    kept_local: list[str] = field(default_factory=list)


def present_files(store: Any) -> list[tuple[dict, int, float]]:
    """``(record, size, mtime)`` of each calibration whose file is in the cache."""
    found = []
    for record in store.local_db.rows:
        try:
            info = os.lstat(store.layout.path_for(record["filename"]))
        except (FileNotFoundError, KOAError):
            continue
        found.append((record, info.st_size, info.st_mtime))
    return found


def _irreplaceable(store: Any, records: list[dict]) -> set[str]:
    """Ids of this store's origin that exist nowhere else (all of them without an archive)."""
    own = {r["id"] for r in records if str(r.get("origin") or "").upper() == store.origin}
    if not own:
        return set()
    if store.remote_db is None:
        return own
    try:
        missing = store.get_missing_records(source="local")
    except (KOAError, OSError) as exc:
        logger.warning("Keeping every file of origin %s: %s", store.origin, exc)
        return own
    return own & {r["id"] for r in missing}


def prune_cache(store: Any, max_size: int) -> PruneReport:
    """Remove least recently used files until the instrument's files fit in ``max_size``.

    Parameters
    ----------
    store : CalibrationStore
        The store whose cache to prune.
    max_size : int
        Bytes the files may take in all.

    Returns
    -------
    PruneReport
        What was removed and what was kept, and why.

    Examples
    --------
    >>> report = prune_cache(store, parse_size("50GiB"))  # doctest: +SKIP
    >>> len(report.removed), report.size_after  # doctest: +SKIP
    (12, 53600000000)
    """
    store._cached_files.save()  # the uses noted so far count
    present = present_files(store)
    report = PruneReport(limit=max_size)
    report.size_before = report.size_after = sum(size for _, size, _ in present)
    if report.size_before <= max_size:
        return report
    keep = _irreplaceable(store, [record for record, _, _ in present])
    uses = store.local_db.last_uses()
    # least recently served first; a file never served counts from when it was placed
    present.sort(key=lambda item: uses.get(item[0]["id"], item[2]))
    for record, size, _ in present:
        if report.size_after <= max_size:
            break
        if record["id"] in keep:
            report.kept_local.append(record["id"])
            continue
        if not _remove_unless_in_use(store, record):
            report.kept_in_use.append(record["id"])
            continue
        report.removed.append({k: record.get(k) for k in ("id", "filename", "file_size")})
        report.size_after -= size
    logger.info(
        "Pruned %d file(s), %d bytes; the cache's files now take %d bytes (limit %d).",
        len(report.removed),
        report.size_before - report.size_after,
        report.size_after,
        max_size,
    )
    return report


def _remove_unless_in_use(store: Any, record: dict) -> bool:
    """Remove the record's file under its lock; False when a process is using it."""
    layout = store.layout
    if layout.in_use(record["id"]):
        return False
    with layout.lock(record["id"]):
        path = layout.path_for(record["filename"])
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        # pruned, not lost: verify then counts it as not downloaded yet
        store.local_db.forget_file_stat(record["id"])
    logger.debug("Removed %s (calibration %s) from the cache", path, record["id"])
    return True
