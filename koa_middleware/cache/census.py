"""What a cache holds, counted without reading a calibration file.

``koa-cal status`` asks which records have no file, and how many bytes the
cache's own folder holds, of caches of a million records. The answer comes
from one listing of each folder and one read of the records' file names (from
their index); a record's file counts for the size its record gives, and only
files no record names (a download cut short, a stray) are measured on disk.
``koa-cal verify`` is what checks the files' bytes. What was counted is kept
for the next run, which lists nothing while nothing counted has changed
(:mod:`.census_memo`).

Examples
--------
>>> from koa_middleware.cache.census import take_census  # doctest: +SKIP
>>> take_census(store.local_db, store.layout.calibrations_dir, []).missing  # doctest: +SKIP
[]
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from ..database.file_reads import file_bytes, file_names
from .census_memo import CensusMemo, KeptCount
from .check import lstat_or_none

if TYPE_CHECKING:
    from ..database.local_database import LocalCalibrationDB

__all__ = ["FileCensus", "count_files", "folder_size", "names_in", "size_on_disk", "take_census"]


class FileCensus(NamedTuple):
    """The files of a cache, as :func:`take_census` counted them.

    Attributes
    ----------
    missing : list[str]
        The file names of the records with no file in the cache (nor in a
        read-only cache), sorted.
    own_bytes : int
        The bytes of the files in the cache's own folder.
    """

    missing: list[str]
    own_bytes: int


def take_census(
    db: LocalCalibrationDB,
    folder: Path,
    readonly_folders: Sequence[Path],
    memo: CensusMemo | None = None,
) -> FileCensus:
    """Count the records without a file, and the bytes of ``folder``.

    Parameters
    ----------
    db : LocalCalibrationDB
        The cache's database.
    folder : Path
        The cache's own calibrations folder.
    readonly_folders : sequence of Path
        The calibrations folders of its read-only caches: a file there is
        present too, but not counted in :attr:`FileCensus.own_bytes`.
    memo : CensusMemo, optional
        Where a count is kept between runs: one kept while nothing it counted
        has changed serves instead of listing the folders again
        (:mod:`.census_memo`).
    """
    looked_ns = time.time_ns()
    key = memo.key([folder, *readonly_folders]) if memo is not None else None
    count = memo.read(key) if memo is not None else None
    if count is None:
        count = count_files(db, folder, readonly_folders)
        if memo is not None:
            memo.keep(key, count, looked_ns)
    measured = sum(size_on_disk(folder / name) for name in count.measured)
    return FileCensus(count.missing, count.recorded_bytes + measured)


def count_files(
    db: LocalCalibrationDB, folder: Path, readonly_folders: Sequence[Path]
) -> KeptCount:
    """Count from the folders' listings and the records' names (see :func:`take_census`)."""
    own = names_in(folder)
    recorded = file_names(db)
    away = recorded - own  # the records whose file is not in the own folder
    missing = away
    for other in readonly_folders:
        if missing:
            missing = missing - names_in(other)
    if len(away) * 2 < len(recorded):  # most files are here: sum all, take the rest out
        total, unsized = file_bytes(db)
        away_bytes, away_unsized = file_bytes(db, away)
        total -= away_bytes
        unsized = list(set(unsized) - set(away_unsized))
    else:
        total, unsized = file_bytes(db, recorded - away)
    measured = sorted({*unsized, *(own - recorded)})  # no size, or no record
    return KeptCount(sorted(missing), total, measured)


def names_in(folder: Path) -> set[str]:
    """The names in ``folder`` (none if it does not exist)."""
    try:
        return set(os.listdir(folder))
    except FileNotFoundError:
        return set()


def size_on_disk(path: Path) -> int:
    """The bytes of a file, or of every file under a folder; 0 if it is gone."""
    info = lstat_or_none(path)
    if info is None:
        return 0
    return folder_size(path) if stat.S_ISDIR(info.st_mode) else info.st_size


def folder_size(path: str | os.PathLike) -> int:
    """Total size in bytes of the files under ``path`` (0 if it does not exist).

    Examples
    --------
    >>> folder_size("/nonexistent/folder")
    0
    """
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(folder, name), follow_symlinks=False).st_size
            except FileNotFoundError:
                continue  # removed while walking
    return total
