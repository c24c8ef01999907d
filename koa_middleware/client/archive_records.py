"""Storing the archive's records locally: what can be stored is, the rest is set aside.

An archive may serve records that the local database cannot hold: a record
that breaks the record rules, or one that SQLite refuses (a column whose name
differs only in case from an existing one, more columns than SQLite allows, an
integer too large for it, a file name already claimed by another id).
:func:`store_what_fits` stores a batch in one go when it can (the fast path);
when the batch is refused, it stores the records one by one, each inside a
savepoint, and returns the ones it could not store with the reason, so that
one bad record never keeps the others out and never leaves anything
half-written. :class:`ArchiveIntake` does this for a whole sync, keeping the
ids set aside in the local database so that later syncs try them again, and
fills a :class:`SyncReport`.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any

from ..errors import InvalidRecordError
from ..records import LOCAL_REQUIRED_FIELDS, is_cal_id, validate_record
from .added_records import AddedRecords

if TYPE_CHECKING:
    from ..database.local_database import LocalCalibrationDB
    from .remote_database import RemoteCalibrationDB

logger = logging.getLogger(__name__)

__all__ = [
    "ArchiveIntake",
    "SyncReport",
    "add_strictly",
    "is_record_problem",
    "record_key",
    "set_aside_key",
    "share_values",
    "store_what_fits",
]

# Fields whose values are (nearly) never shared between records.
_UNIQUE_FIELDS = frozenset({"id", "filename", "file_md5"})

#: SQLite refusals that come from a record's shape, not from the database's state.
_RECORD_REFUSALS = (
    "duplicate column",
    "too many columns",
    "too many sql variables",
    "no such column",
    "too big",
    "row too big",
    "integer overflow",
)
_REASON_CHARS = 300


def record_key(raw: Any, position: int) -> str:
    """The id under which a record is reported: its id, or a stand-in when it has none.

    Examples
    --------
    >>> record_key({"id": "1b4e28ba-2fa1-4d2b-883f-0016d3cca427"}, 3)
    '1b4e28ba-2fa1-4d2b-883f-0016d3cca427'
    >>> record_key({"filename": "x.fits"}, 3)
    '<record without a valid id, #3 of its answer>'
    """
    cal_id = raw.get("id") if isinstance(raw, Mapping) else None
    if isinstance(cal_id, str) and is_cal_id(cal_id):
        return cal_id
    return f"<record without a valid id, #{position} of its answer>"


def is_record_problem(exc: BaseException) -> bool:
    """Whether an error storing records is the records' fault (so they can be set aside).

    A locked or full database, or a broken disk, is not: that error must stop the sync.
    """
    if isinstance(exc, InvalidRecordError | OverflowError):
        return True
    if isinstance(exc, sqlite3.IntegrityError | sqlite3.DataError | sqlite3.InterfaceError):
        return True
    if isinstance(exc, sqlite3.OperationalError):
        message = str(exc).lower()
        return any(words in message for words in _RECORD_REFUSALS)
    return False


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = text[:_REASON_CHARS].rstrip(".")
    return text + "."


def store_what_fits(
    local_db: LocalCalibrationDB,
    records: Sequence[Any],
    shared: dict[str, str] | None = None,
) -> tuple[list[dict], dict[str, str]]:
    """Store a batch of records as the archive sent them; set aside those that cannot be stored.

    Call it inside ``local_db.write_transaction()``: each attempt runs in a
    savepoint of that transaction, so a refused record leaves nothing behind.

    Parameters
    ----------
    local_db : LocalCalibrationDB
        The local database.
    records : Sequence
        The records (unchecked: each is checked as it is stored).
    shared : dict | None
        Through which equal field names and short values of the stored
        records share one object (see ``LocalCalibrationDB.add``).

    Returns
    -------
    tuple[list[dict], dict[str, str]]
        The records stored (as stored), and the ones set aside: id (see
        :func:`record_key`) -> reason.

    Raises
    ------
    sqlite3.Error, OSError
        If the database itself fails (locked, full, read-only): nothing of the
        batch is stored then.

    Examples
    --------
    >>> from koa_middleware.database.local_database import LocalCalibrationDB
    >>> db = LocalCalibrationDB(":memory:", "hispec")
    >>> good = {"id": "1b4e28ba-2fa1-4d2b-883f-0016d3cca427", "filename": "d.fits",
    ...         "cal_type": "dark", "datetime_obs": "2024-01-01"}
    >>> with db.write_transaction():
    ...     stored, aside = store_what_fits(db, [good, {"id": "nope"}])
    >>> len(stored), list(aside)
    (1, ['<record without a valid id, #1 of its answer>'])
    """
    if not records:
        return [], {}
    try:
        with local_db.savepoint():
            stored = local_db.add(records, shared=shared)
    except Exception as exc:
        if not is_record_problem(exc):
            raise
    else:
        return stored, {}
    kept: list[dict] = []
    aside: dict[str, str] = {}
    for position, raw in enumerate(records):
        key = record_key(raw, position)
        try:
            # The record rules first: no SQL for a record that breaks them.
            checked = validate_record(raw, LOCAL_REQUIRED_FIELDS)
        except (InvalidRecordError, OverflowError, TypeError, ValueError) as exc:
            aside[key] = _reason(exc)
            continue
        try:
            if shared is not None:
                checked = share_values(checked, shared)
            with local_db.savepoint():
                kept.extend(local_db.add_validated([checked]))
        except Exception as exc:
            if not is_record_problem(exc):
                raise
            aside[key] = _reason(exc)
    return kept, aside


@dataclass
class SyncReport:
    """What one sync from the archive did.

    Attributes
    ----------
    added : AddedRecords
        The records added or updated locally, as stored: a sequence of dicts,
        kept compressed (a first sync may bring a million).
    set_aside : dict[str, str]
        The records the archive sent that could not be stored: id -> reason.
        The next sync tries them again.
    """

    added: AddedRecords = field(default_factory=AddedRecords)
    set_aside: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The counts and the set-aside ids, for logs and ``koa-cal sync --json``."""
        return {
            "records_added": len(self.added),
            "records_set_aside": len(self.set_aside),
            "set_aside": dict(self.set_aside),
        }


def set_aside_key(remote_db: RemoteCalibrationDB) -> str:
    """The local-database key under which the ids set aside by syncs from an archive are kept.

    Examples
    --------
    >>> class R: display_url = "http://127.0.0.1:8000"; instrument_name = "hispec"
    >>> set_aside_key(R())
    'set_aside http://127.0.0.1:8000 hispec'
    """
    return f"set_aside {remote_db.display_url} {remote_db.instrument_name}"


class ArchiveIntake:
    """Stores the archive's records batch by batch and keeps account of what was set aside.

    The ids set aside are kept in the local database (:func:`set_aside_key`),
    written in the same transaction as the batch (and the changes cursor), so
    a record the cursor passed is never forgotten: later syncs fetch it again.
    With ``strict`` a record that cannot be stored raises instead.
    """

    def __init__(
        self, local_db: LocalCalibrationDB, remote_db: RemoteCalibrationDB, strict: bool
    ) -> None:
        self.local_db = local_db
        self.remote_db = remote_db
        self.strict = strict
        self.key = set_aside_key(remote_db)
        self.pending = load_set_aside(local_db.get_meta(self.key))
        self._saved = dict(self.pending)
        self.report = SyncReport()
        #: Ids set aside by this sync (those it stored are in the local database; a set
        #: of a million ids would be the largest thing a first sync keeps).
        self.handled: set[str] = set()

    def store(self, records: list) -> None:
        """Store a batch (inside ``local_db.write_transaction()``)."""
        if self.strict:
            stored = add_strictly(self.local_db, self.remote_db, records)
            aside: dict[str, str] = {}
        else:
            stored, aside = store_what_fits(self.local_db, records)
        if self.pending:
            for rec in stored:
                self.pending.pop(rec["id"], None)
        self.report.added.extend(stored)  # compressed: the dicts are let go
        for key, reason in aside.items():
            logger.warning(
                "Set aside record %s from %s: %s The other records are stored; the next "
                "sync tries this one again (report it to the archive operators if it stays).",
                key,
                self.remote_db.display_url,
                reason,
            )
            self.report.set_aside[key] = reason
            self.handled.add(key)
            if is_cal_id(key):
                self.pending[key] = reason
        self._save()

    def _save(self) -> None:
        if self.pending != self._saved:
            value = json.dumps(self.pending, sort_keys=True) if self.pending else None
            self.local_db.set_meta(self.key, value)
            self._saved = dict(self.pending)

    def store_stream(
        self, raws: Iterable[Any], batch: int, done: Callable[[int], Any] | None = None
    ) -> None:
        """Store records as they arrive, ``batch`` at a time; ``done(n)`` after each batch.

        The next batch is read (from the archive's answer) in a second thread
        while this one is stored: SQLite lets go of the interpreter while it
        writes, so the two overlap. An error reading the answer is raised here
        after the batches before it are stored.
        """
        batches = _batches(raws, batch)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="koa-intake") as pool:
            pending = pool.submit(next, batches, None)
            try:
                while (chunk := pending.result()) is not None:
                    pending = pool.submit(next, batches, None)
                    self._store_batch(chunk, done)
            finally:
                if not pending.cancel():
                    wait([pending])
                batches.close()

    def _store_batch(self, chunk: list[Any], done: Callable[[int], Any] | None) -> None:
        with self.local_db.write_transaction():
            self.store(chunk)
        if done is not None:
            done(len(chunk))

    def retry_pending(self) -> None:
        """Fetch again, by id, the records set aside by earlier syncs that this one did not see."""
        if self.strict:
            return
        for cal_id in [key for key in self.pending if key not in self.handled]:
            raw = self.remote_db.fetch_raw(cal_id)
            with self.local_db.write_transaction():
                if raw is None:
                    logger.info("Record %s, set aside earlier, is gone from the archive.", cal_id)
                    self.pending.pop(cal_id, None)
                    self._save()
                else:
                    self.store([raw])


def _batches(raws: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """The records in lists of ``size`` (the last one shorter)."""
    records = iter(raws)
    try:
        while chunk := list(islice(records, size)):
            yield chunk
    finally:
        # A sync stopped half-way closes the archive's answer now, not when collected.
        close = getattr(records, "close", None)
        if close is not None:
            close()


def load_set_aside(value: str | None) -> dict[str, str]:
    if not value:
        return {}
    try:
        data = json.loads(value)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): str(v) for k, v in data.items() if isinstance(k, str) and is_cal_id(k)}


def add_strictly(
    local_db: LocalCalibrationDB,
    remote_db: RemoteCalibrationDB,
    records: list[dict],
    shared: dict[str, str] | None = None,
) -> list[dict]:
    """Store records as the archive sent them; ``add`` checks each one, all or nothing.

    ``shared``: as for :func:`store_what_fits`.
    """
    try:
        with local_db.savepoint():  # all or nothing, also inside a larger transaction
            return local_db.add(records, shared=shared)
    except InvalidRecordError as exc:
        raise InvalidRecordError(
            f"The archive at {remote_db.display_url} sent an invalid record: {exc} Nothing "
            "from this batch was stored; report the record to the archive operators."
        ) from exc


def share_values(record: dict, interned: dict[str, str]) -> dict:
    """Return the record with equal keys and short values sharing one object each.

    A large sync returns every record it added; sharing the field names and the
    many repeated values (types, origins, versions, timestamps) keeps that list
    small in memory. Records parsed one by one from a stream each bring their
    own copy of every field name, so the names are shared too.

    Examples
    --------
    >>> interned = {}
    >>> a = share_values({"cal_type": "dark"}, interned)
    >>> b = share_values({"cal_type": "".join(["da", "rk"])}, interned)
    >>> a["cal_type"] is b["cal_type"]
    True
    """
    shared = {}
    for key, value in record.items():
        key = interned.setdefault(key, key)
        if type(value) is str and len(value) <= 32 and key not in _UNIQUE_FIELDS:
            value = interned.setdefault(value, value)
        shared[key] = value
    return shared
