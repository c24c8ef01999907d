"""Adding records to the catalog in two steps: prepare (check everything), then write.

:func:`prepare_additions` reads what the batch depends on, hands out versions,
plans new columns and refuses the batch if anything is wrong; it writes nothing.
:func:`write_additions` then gives each new or changed record the next ``seq``
and one ``last_updated``. Both run in the one transaction that
:meth:`.Catalog.add` opens under the instrument's write lock, so nothing
changes between them.

Examples
--------
>>> plan = prepare_additions(conn, "hispec", batch, None, is_postgres=True)  # doctest: +SKIP
>>> write_additions(conn, "hispec", plan, last_seq, last_stamp)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..errors import InvalidRecordError
from ..records import format_version, utc_now
from .columns import load_columns, plan_columns, register_columns
from .filters import conditions
from .problems import Conflict, invalid_batch
from .schema import RECORD_COLUMNS, files, records, row_to_record, seq_counters

logger = logging.getLogger(__name__)

__all__ = ["Additions", "prepare_additions", "write_additions", "check_file_against_record"]

#: Ids fetched per ``IN (...)`` statement, well below SQLite's bound-parameter limit.
_CHUNK = 500
_CORE_FIELDS = frozenset(RECORD_COLUMNS) - {"seq"}


@dataclass
class Additions:
    """A checked batch: the new or changed records in batch order, and new column names.

    ``changed`` holds ``(record, is_new)`` pairs; records identical to the stored
    ones are left out.
    """

    changed: list[tuple[Mapping[str, Any], bool]] = field(default_factory=list)
    new_columns: Any = None


def prepare_additions(
    conn: Connection,
    instrument: str,
    batch: Sequence[dict[str, Any]],
    version_family: Sequence[str] | None,
    is_postgres: bool,
) -> Additions:
    """Check a batch against the catalog and sort it into inserts and updates.

    Parameters
    ----------
    conn : Connection
        In the write transaction that holds the instrument's lock.
    instrument : str
        The instrument.
    batch : sequence of dict
        Validated records; versions are filled in place (see ``version_family``).
    version_family : sequence of str | None
        Family columns for records without ``cal_version``; None hands out none.
    is_postgres : bool
        The catalog's dialect (for the family filters).

    Returns
    -------
    Additions
        What :func:`write_additions` writes.

    Raises
    ------
    BadRequest
        If a column name clashes with the instrument's, or there would be too many.
    Conflict
        If a file name belongs to another record, a family is full, or a record's
        ``file_md5`` or ``file_size`` disagrees with the stored file.

    Examples
    --------
    >>> prepare_additions(conn, "hispec", [record], None, False).changed  # doctest: +SKIP
    """
    if version_family is not None:
        _assign_versions(conn, instrument, batch, version_family, is_postgres)
    new_columns, errors = plan_columns(batch, load_columns(conn, instrument))
    if errors:
        raise invalid_batch(errors, len(batch))
    ids = [record["id"] for record in batch]
    existing = _fetch(conn, records, instrument, ids)
    owners = _filename_owners(conn, instrument, [r["filename"] for r in batch])
    stored_files = _fetch(conn, files, instrument, ids)
    batch_ids = set(ids)
    plan = Additions(new_columns=new_columns)
    for record in batch:
        owner = owners.get(record["filename"])
        if owner is not None and owner != record["id"] and owner not in batch_ids:
            raise Conflict(
                f"File name {record['filename']!r} already belongs to calibration "
                f"{owner}; file names are unique within an instrument: rename the file."
            )
        _check_against_file(record, stored_files.get(record["id"]))
    for record in batch:
        old = existing.get(record["id"])
        if old is not None and _comparable(row_to_record(old, False)) == _comparable(record):
            continue  # unchanged: no new seq, so followers of changes see nothing new
        plan.changed.append((record, old is None))
    return plan


def write_additions(
    conn: Connection, instrument: str, plan: Additions, last_seq: int, last_stamp: str | None
) -> None:
    """Write a prepared batch: each record gets the next ``seq`` and one ``last_updated``.

    A new record's ``published_at`` is that ``last_updated``; a changed record keeps
    its ``published_at`` and its retraction, if any.

    Parameters
    ----------
    conn : Connection
        The transaction in which ``plan`` was prepared.
    instrument : str
        The instrument.
    plan : Additions
        From :func:`prepare_additions`.
    last_seq : int
        The instrument's counter, read under its lock.
    last_stamp : str | None
        The newest ``last_updated`` handed out so far (never go back in time).

    Examples
    --------
    >>> write_additions(conn, "hispec", plan, 41, "2026-01-01T00:00:00.000")  # doctest: +SKIP
    """
    stamp = max(utc_now(), last_stamp or "")
    seq = last_seq
    inserts = []
    for record, is_new in plan.changed:
        seq += 1
        values = _row_values(instrument, record, seq, stamp)
        if is_new:
            # Published now; an update never moves it, nor touches a retraction.
            values["published_at"] = stamp
            inserts.append(values)
        else:
            conn.execute(
                records.update()
                .where(records.c.instrument == instrument, records.c.id == record["id"])
                .values(values)
            )
    if inserts:
        conn.execute(records.insert(), inserts)
    register_columns(conn, instrument, plan.new_columns)
    if seq != last_seq:
        conn.execute(
            seq_counters.update()
            .where(seq_counters.c.instrument == instrument)
            .values(last_seq=seq, last_updated=stamp)
        )


def check_file_against_record(cal_id: str, stored: Any, md5: str | None, size: int | None) -> None:
    """Refuse a file whose MD5 or size differs from what its record names.

    Parameters
    ----------
    cal_id : str
        The calibration id.
    stored : StoredFile
        The file's MD5 and size.
    md5, size : str | None, int | None
        The record's ``file_md5`` and ``file_size`` (None: not named).

    Raises
    ------
    Conflict
        If either differs.

    Examples
    --------
    >>> check_file_against_record(cal_id, stored, None, None)  # doctest: +SKIP
    """
    if md5 is not None and md5 != stored.md5:
        raise Conflict(
            f"Calibration {cal_id} is recorded with file_md5 {md5}, but this file has MD5 "
            f"{stored.md5}; upload the file that belongs to the record."
        )
    if size is not None and size != stored.size:
        raise Conflict(
            f"Calibration {cal_id} is recorded with file_size {size}, but this file has "
            f"{stored.size} bytes; upload the file that belongs to the record."
        )


def _assign_versions(
    conn: Connection,
    instrument: str,
    batch: Sequence[dict[str, Any]],
    family_columns: Sequence[str],
    is_postgres: bool,
) -> None:
    handed_out: dict[tuple, int] = {}
    for record in batch:
        if record.get("cal_version") is not None:
            continue
        columns = ("cal_type", "origin", *family_columns)
        family = {name: record.get(name) for name in columns}
        key = tuple(sorted((k, repr(v)) for k, v in family.items()))
        if key not in handed_out:
            filters = {k: str(v) for k, v in family.items() if v is not None}
            highest = conn.execute(
                sa.select(sa.func.max(records.c.cal_version)).where(
                    records.c.instrument == instrument, *conditions(filters, is_postgres)
                )
            ).scalar()
            handed_out[key] = int(highest) if highest else 0
        handed_out[key] += 1
        try:
            record["cal_version"] = format_version(handed_out[key])
        except InvalidRecordError as exc:
            raise Conflict(f"Calibration {record['filename']}: {exc} The family is full.") from None


def _fetch(
    conn: Connection, table: sa.Table, instrument: str, ids: Sequence[str]
) -> dict[str, Mapping[str, Any]]:
    found: dict[str, Mapping[str, Any]] = {}
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        rows = conn.execute(
            sa.select(table).where(table.c.instrument == instrument, table.c.id.in_(chunk))
        ).mappings()
        found.update((row["id"], row) for row in rows)
    return found


def _filename_owners(conn: Connection, instrument: str, filenames: Sequence[str]) -> dict[str, str]:
    owners: dict[str, str] = {}
    for start in range(0, len(filenames), _CHUNK):
        chunk = filenames[start : start + _CHUNK]
        rows = conn.execute(
            sa.select(records.c.filename, records.c.id).where(
                records.c.instrument == instrument, records.c.filename.in_(chunk)
            )
        )
        owners.update((row.filename, row.id) for row in rows)
    return owners


def _check_against_file(record: Mapping[str, Any], stored: Mapping[str, Any] | None) -> None:
    if stored is None:
        return
    md5, size = record.get("file_md5"), record.get("file_size")
    if md5 is not None and md5 != stored["md5"]:
        raise Conflict(
            f"Calibration {record['id']}: file_md5 {md5} disagrees with the stored file "
            f"(MD5 {stored['md5']}); upload the right file under a new id, or fix the record."
        )
    if size is not None and size != stored["size"]:
        raise Conflict(
            f"Calibration {record['id']}: file_size {size} disagrees with the stored file "
            f"({stored['size']} bytes); fix the record."
        )


def _row_values(instrument: str, record: Mapping[str, Any], seq: int, stamp: str) -> dict:
    values = {name: record.get(name) for name in _CORE_FIELDS}
    values.update(instrument=instrument, seq=seq, last_updated=stamp)
    values["extra"] = {k: v for k, v in record.items() if k not in _CORE_FIELDS and k != "seq"}
    return values


def _comparable(record: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a record a client controls (no server fields, absent = null)."""
    result = {k: v for k, v in record.items() if k not in ("last_updated", "seq")}
    result.setdefault("file_md5", None)
    result.setdefault("file_size", None)
    return result
