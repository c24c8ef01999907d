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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import ConfigurationError
from .removal import FileRemoval

if TYPE_CHECKING:
    from .local_cache import LocalCache

logger = logging.getLogger(__name__)

__all__ = ["CacheBounds", "PruneReport", "parse_size", "present_files", "prune_cache"]

_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
    "t": 1000**4, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}  # fmt: skip
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*\Z")


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


#: What a prune reads of each record: enough to choose, keep, remove and report.
PRUNE_COLUMNS = ("id", "filename", "origin", "file_size")


def present_files(cache: LocalCache) -> list[tuple[dict, int, float]]:
    """``(record, size, mtime)`` of each calibration whose file is in the cache's own folder.

    The folder is read once, through its descriptor (never through a link), and
    only the names that are both a record's file and in the folder are looked at.
    Each record holds the :data:`PRUNE_COLUMNS` only: at a million records,
    reading them whole would take longer than the rest of the choice.
    """
    select = ", ".join(PRUNE_COLUMNS)
    try:
        with cache.layout.opened_folder(cache.layout.calibrations_dir) as folder:
            entries = {entry.name: entry for entry in os.scandir(folder)}
            found = []
            for record in cache.db.rows_where(select=select):
                entry = entries.get(record.get("filename"))
                if entry is None:
                    continue
                try:
                    info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                found.append((record, info.st_size, info.st_mtime))
            return found
    except FileNotFoundError:
        return []


def prune_cache(
    cache: LocalCache, max_size: int, keep: Callable[[list[dict]], set[str]]
) -> PruneReport:
    """Remove least recently used files until the instrument's files fit in ``max_size``.

    Parameters
    ----------
    cache : LocalCache
        The cache to prune (its own folder; read-only caches are never touched).
    max_size : int
        Bytes the files may take in all.
    keep : callable
        Given the records whose files are present, the ids whose files must stay
        (those that exist nowhere else).

    Returns
    -------
    PruneReport
        What was removed and what was kept, and why.

    Examples
    --------
    >>> report = prune_cache(store.cache, parse_size("50GiB"), lambda rows: set())  # doctest: +SKIP
    >>> len(report.removed), report.size_after  # doctest: +SKIP
    (12, 53600000000)
    """
    cache.files.save()  # the uses noted so far count
    present = present_files(cache)
    report = PruneReport(limit=max_size)
    report.size_before = report.size_after = sum(size for _, size, _ in present)
    if report.size_before <= max_size:
        return report
    kept = keep([record for record, _, _ in present])
    uses = cache.db.last_uses()
    # least recently served first; a file never served counts from when it was placed
    present.sort(key=lambda item: uses.get(item[0]["id"], item[2]))
    position = 0
    with FileRemoval(cache.layout) as removal:
        # rounds: a file found in use frees nothing, so the next ones in line are tried
        while report.size_after > max_size and position < len(present):
            chosen, sizes, projected = [], {}, report.size_after
            while projected > max_size and position < len(present):
                record, size, _ = present[position]
                position += 1
                if record["id"] in kept:
                    report.kept_local.append(record["id"])
                    continue
                chosen.append(record)
                sizes[record["id"]] = size
                projected -= size
            # pruned, not lost: verify then counts a removed file as not downloaded yet
            removed, in_use = removal.remove_unless_in_use(chosen, cache.db.forget_file_stats)
            report.kept_in_use += [record["id"] for record in in_use]
            for record in removed:
                report.removed.append({k: record.get(k) for k in ("id", "filename", "file_size")})
                report.size_after -= sizes[record["id"]]
    logger.info(
        "Pruned %d file(s), %d bytes; the cache's files now take %d bytes (limit %d).",
        len(report.removed),
        report.size_before - report.size_after,
        report.size_after,
        max_size,
    )
    return report


class CacheBounds:
    """Keeps one cache's files within a size, pruning after downloads when they outgrow it.

    Parameters
    ----------
    cache : LocalCache
        The cache whose files to keep in bounds.
    max_size : int | None
        The configured limit in bytes (``KOA_CACHE_MAX_SIZE``), or None for none.
    keep : callable
        Given the records whose files are present, the ids whose files must
        stay; see :func:`prune_cache`.

    Examples
    --------
    >>> store.bounds.prune("50GiB").removed  # doctest: +SKIP
    []
    """

    def __init__(
        self, cache: LocalCache, max_size: int | None, keep: Callable[[list[dict]], set[str]]
    ):
        self.cache = cache
        self.max_size = max_size
        self.keep = keep
        self._estimated_size: int | None = None

    def __repr__(self) -> str:
        return f"CacheBounds({self.cache!r}, max_size={self.max_size!r})"

    def prune(self, max_size: int | str | None = None) -> PruneReport:
        """Remove the least recently used files until the cache's files fit in ``max_size``.

        Parameters
        ----------
        max_size : int | str | None
            Bytes, or a size such as ``'50GiB'``; None uses :attr:`max_size`.

        Raises
        ------
        ConfigurationError
            If no size is given or configured, or it cannot be read.
        """
        if max_size is None:
            max_size = self.max_size
        if max_size is None:
            raise ConfigurationError(
                "No size to prune to: pass max_size='50GiB' (koa-cal prune --max-size) or set "
                "KOA_CACHE_MAX_SIZE."
            )
        report = prune_cache(self.cache, parse_size(max_size), self.keep)
        self._estimated_size = report.size_after
        return report

    def added(self, size: int) -> None:
        """After a download of ``size`` bytes: prune when the cache outgrew its limit."""
        if self.max_size is None:
            return
        if self._estimated_size is None:
            self._estimated_size = self.size()
        else:
            self._estimated_size += size
        if self._estimated_size > self.max_size:
            self.prune(self.max_size)

    def size(self) -> int:
        """Bytes taken by the files of the instrument's calibrations in the cache."""
        return sum(size for _, size, _ in present_files(self.cache))
