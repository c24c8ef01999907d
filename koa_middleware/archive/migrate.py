"""Copying an archive's files from one storage to another (``koa-archive migrate-storage``).

The catalog says which files exist and what each must be (MD5 and size).
Each file is streamed from the source into the target, hashed on the way,
and made visible in the target only when it matches the catalog; otherwise
it is dropped and reported. A file the target already holds with the
catalog's MD5 and size is left alone, so a second run copies only what the
first did not.

Examples
--------
>>> report = migrate_files(catalog, LocalFileStorage(root), s3)  # doctest: +SKIP
>>> print(report.summary())  # doctest: +SKIP
copied 120, already present 3, failed 0 (of 123 files)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import sqlalchemy as sa

from .catalog import Catalog, StoredFile
from .schema import files
from .storage_interface import FileStorage
from .transfer import BLOCK

logger = logging.getLogger(__name__)

__all__ = ["FileOutcome", "MigrationReport", "migrate_files", "migrate_file"]


@dataclass(frozen=True)
class FileOutcome:
    """What happened to one file: ``copied``, ``present`` or ``failed`` (with ``error``)."""

    instrument: str
    cal_id: str
    status: str
    error: str | None = None

    def line(self) -> str:
        """One line for a person: ``STATUS INSTRUMENT/ID [reason]``."""
        text = f"{self.status}\t{self.instrument}/{self.cal_id}"
        return f"{text}\t{self.error}" if self.error else text


@dataclass
class MigrationReport:
    """Counts of a migration, and the files that failed."""

    copied: int = 0
    present: int = 0
    failures: list[FileOutcome] = field(default_factory=list)

    @property
    def failed(self) -> int:
        """How many files were not copied."""
        return len(self.failures)

    def summary(self) -> str:
        """One line: copied, already present, failed, of all."""
        total = self.copied + self.present + self.failed
        return (
            f"copied {self.copied}, already present {self.present}, failed {self.failed} "
            f"(of {total} files)"
        )


def migrate_files(
    catalog: Catalog,
    source: FileStorage,
    target: FileStorage,
    on_file: Callable[[FileOutcome], None] | None = None,
) -> MigrationReport:
    """Copy every file the catalog lists from ``source`` to ``target``, verifying each.

    Parameters
    ----------
    catalog : Catalog
        The archive's catalog (read only).
    source, target : FileStorage
        Where the files are, and where they go.
    on_file : callable | None
        Called with each :class:`FileOutcome`, as it happens.

    Returns
    -------
    MigrationReport

    Examples
    --------
    >>> migrate_files(catalog, LocalFileStorage(root), s3).failed  # doctest: +SKIP
    0
    """
    report = MigrationReport()
    for instrument, cal_id, expected in _catalog_files(catalog):
        outcome = migrate_file(source, target, instrument, cal_id, expected)
        if outcome.status == "copied":
            report.copied += 1
        elif outcome.status == "present":
            report.present += 1
        else:
            report.failures.append(outcome)
            logger.warning("Not copied: %s", outcome.line())
        if on_file is not None:
            on_file(outcome)
    return report


def migrate_file(
    source: FileStorage, target: FileStorage, instrument: str, cal_id: str, expected: StoredFile
) -> FileOutcome:
    """Copy one file unless the target holds it already; never leave a wrong one visible.

    Parameters
    ----------
    source, target : FileStorage
        Where the file is, and where it goes.
    instrument, cal_id : str
        The file.
    expected : StoredFile
        Its MD5 and size in the catalog.

    Returns
    -------
    FileOutcome
        ``copied``, ``present``, or ``failed`` with the reason and what to do.

    Examples
    --------
    >>> migrate_file(local, s3, "hispec", cal_id, StoredFile(md5, 4096)).status
    ...  # doctest: +SKIP
    'copied'
    """

    def failed(reason: str) -> FileOutcome:
        return FileOutcome(instrument, cal_id, "failed", reason)

    try:
        found = target.describe(instrument, cal_id)
        if found is not None:
            return _judge_present(instrument, cal_id, found, expected)
        try:
            handle = source.open(instrument, cal_id)
        except FileNotFoundError:
            return failed(
                "the catalog lists this file but the source folder lacks it; restore it "
                "from a backup, or it cannot be served from either storage."
            )
        pending = target.begin(instrument, cal_id, expected.md5)
        try:
            with handle:
                while chunk := handle.read(BLOCK):
                    pending.write(chunk)
            copied = pending.finish()
            if copied != expected:
                return failed(
                    f"the source file has MD5 {copied.md5} and {copied.size} bytes, but the "
                    f"catalog says {expected.md5} and {expected.size}: the source is damaged; "
                    "restore it from a backup. Nothing was written."
                )
            if not target.place(pending, instrument, cal_id):
                # Placed by someone else meanwhile: judge what is there now.
                found = target.describe(instrument, cal_id)
                if found is None:
                    return failed("the target changed during the copy; run the command again.")
                return _judge_present(instrument, cal_id, found, expected)
        finally:
            pending.discard()
    except OSError as exc:
        return failed(f"{exc}; check the source folder and run the command again.")
    except Exception as exc:  # the store's errors (botocore) are reported, not fatal
        if type(exc).__module__.startswith(("botocore", "boto3", "urllib3")):
            return failed(f"the target refused or failed: {exc}; run the command again.")
        raise
    return FileOutcome(instrument, cal_id, "copied")


def _judge_present(
    instrument: str, cal_id: str, found: StoredFile, expected: StoredFile
) -> FileOutcome:
    if found == expected:
        return FileOutcome(instrument, cal_id, "present")
    return FileOutcome(
        instrument,
        cal_id,
        "failed",
        f"the target already holds other bytes (MD5 {found.md5 or '?'}, {found.size} bytes; "
        f"the catalog says {expected.md5}, {expected.size}); delete that object and run the "
        "command again.",
    )


def _catalog_files(catalog: Catalog) -> Iterator[tuple[str, str, StoredFile]]:
    """Every stored file the catalog lists, in a stable order."""
    statement = sa.select(files.c.instrument, files.c.id, files.c.md5, files.c.size).order_by(
        files.c.instrument, files.c.id
    )
    with catalog.engine.connect() as conn:
        rows = conn.execute(statement).all()
    for row in rows:
        yield row.instrument, row.id, StoredFile(row.md5, row.size)
