"""The ``query`` route's answer, streamed: records read from the catalog in batches.

The matching rows are read by one SELECT ordered by ``last_updated``, then ``id``,
``batch_rows`` rows at a time (a server-side cursor on PostgreSQL, the SQLite
cursor's ``fetchmany`` on SQLite), and each batch is sent as soon as it is read,
so the first bytes leave at once and the server holds one batch at a time.

The answer is a snapshot: one statement sees the catalog as it was when the
statement began (a PostgreSQL cursor keeps the snapshot it was declared with; in
SQLite's WAL mode a statement's read transaction lasts until it is finished).
Every record that matched then is sent exactly once, as it was then; records
added or changed while the answer is being sent are not in it (a changed record
is sent once, as it was before the change). A client following ``last_updated``
finds them in its next query.

Once the first bytes are sent the status code can no longer change: an error
while reading later batches is logged and the connection is closed before the
closing ``]``, so the client sees a broken body (and retries) rather than a
short list.

A page (``limit`` and ``offset``) that starts where an earlier page of the same
query ended, with the catalog unchanged since, is read from that page's last row
on rather than by skipping ``offset`` rows (:mod:`.page_marks`); the answer is the same.

Examples
--------
>>> answer = stream_query(catalog, "hispec", {}, include_seq=True)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse
from sqlalchemy.engine import Connection, CursorResult

from .catalog import Catalog, row_to_record
from .filters import CATALOG_SEQ, query_statement
from .page_marks import PageMark, PageMarks
from .schema import seq_counters

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_QUERY_BATCH", "NO_MATCH", "RecordBatches", "stream_query"]

#: Rows read from the catalog (and sent) at a time (``serve --query-batch``).
DEFAULT_QUERY_BATCH = 1000
#: The answer when nothing matches.
NO_MATCH = {"message": "No matching calibrations found."}


def _json_items(items: list[dict[str, Any]]) -> bytes:
    """The JSON text of ``items`` without the brackets, exactly as ``JSONResponse`` writes it."""
    text = json.dumps(items, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text[1:-1].encode("utf-8")


class RecordBatches:
    """The matching records of one query, read in batches from one open statement.

    Parameters
    ----------
    catalog : Catalog
        The catalog.
    instrument : str
        The instrument.
    filters : Mapping[str, str]
        The query filters (checked: an invalid one raises ``BadRequest`` here).
    limit, offset : int | None
        Paging.
    include_seq : bool
        Include ``seq`` in each record (v2).
    columns : sequence of str | None
        Keep only these fields of each record, in this order.
    batch_rows : int
        Rows fetched from the catalog at a time.
    include_retracted : bool
        Also send retracted records, every record with its lifecycle fields.
    marks : PageMarks | None
        Where earlier pages ended: a page with a ``limit`` remembers its end there,
        and one that starts at a remembered end is read from it (the same rows).

    Notes
    -----
    Holds a catalog connection (and on PostgreSQL its transaction) until
    :meth:`close`. :meth:`close` may be called from any thread, also while another
    thread is in :meth:`next_chunk`: the connection is then released by that
    thread as soon as its batch is read.
    """

    def __init__(
        self,
        catalog: Catalog,
        instrument: str,
        filters: Mapping[str, str],
        *,
        limit: int | None = None,
        offset: int | None = None,
        include_seq: bool = True,
        columns: Sequence[str] | None = None,
        batch_rows: int = DEFAULT_QUERY_BATCH,
        include_retracted: bool = False,
        marks: PageMarks | None = None,
    ):
        if batch_rows < 1:
            raise ValueError(f"batch_rows must be at least 1, not {batch_rows}")
        self.instrument = instrument
        self._filters = dict(filters)
        self._offset = offset or 0
        self._limit = limit
        # Only pages (a limit) are remembered: a client asks for the next one.
        self._marks = marks if limit else None
        mark = None
        if self._marks is not None and self._offset:
            mark = self._marks.find(instrument, self._filters, include_retracted, self._offset)
        self.include_seq = include_seq
        self.lifecycle = include_retracted
        self.columns = tuple(columns) if columns else None
        self.batch_rows = batch_rows
        #: Batches read so far, and rows in them.
        self.batches = 0
        self.rows = 0
        self._lock = threading.Lock()
        self._busy = False
        self._closed = False
        self._done = False
        self._result: CursorResult | None = None
        #: The first batch, when it was read here to check a page mark.
        self._pending: list | None = None

        def statement(after: PageMark | None) -> sa.Select:
            return query_statement(
                instrument,
                filters,
                catalog.is_postgres,
                limit,
                None if after else offset,
                include_retracted,
                after=(after.last_updated, after.id) if after else None,
                with_catalog_seq=self._marks is not None,
            )

        self._conn: Connection | None = catalog.engine.connect()
        try:
            # yield_per: a server-side cursor on PostgreSQL, fetchmany on SQLite.
            self._conn = self._conn.execution_options(yield_per=batch_rows)
            if mark is not None and not self._start_after(statement(mark), mark):
                logger.debug("query %s: the catalog changed since the page mark", instrument)
                self._result.close()
                mark = None
            if mark is None:
                self._result = self._conn.execute(statement(None))
                self._rows = self._result.mappings()
        except BaseException:
            self._release()
            raise

    def _start_after(self, statement: sa.Select, mark: PageMark) -> bool:
        """Run the page from ``mark``; whether the catalog is as it was when it was made.

        The first batch is read here: its rows carry the ``seq`` counter of the
        statement's snapshot. With no rows the counter is read afterwards: it only
        grows, so if it still equals the mark's the snapshot (taken in between) did too.
        """
        self._result = self._conn.execute(statement)
        self._rows = self._result.mappings()
        first = self._rows.fetchmany(self.batch_rows)
        if first:
            seq = first[0][CATALOG_SEQ]
        else:
            seq = self._conn.execute(
                sa.select(seq_counters.c.last_seq).where(
                    seq_counters.c.instrument == self.instrument
                )
            ).scalar()
        if seq != mark.seq:
            return False
        self._pending = first
        return True

    def next_chunk(self) -> bytes:
        """Read the next batch and return its records as JSON text, ``b""`` after the last.

        The records of a chunk are separated by commas; chunks carry no brackets and
        no comma between them (see :func:`stream_query`).
        """
        with self._lock:
            if self._closed or self._done:
                return b""
            self._busy = True
        try:
            if self._pending is not None:
                rows, self._pending = self._pending, None
            else:
                rows = self._rows.fetchmany(self.batch_rows)
        finally:
            with self._lock:
                self._busy = False
                closed = self._closed
            if closed:
                self._release()
        if closed:
            return b""
        if len(rows) < self.batch_rows:
            self._done = True
        if not rows:
            return b""
        self.batches += 1
        self.rows += len(rows)
        if self._marks is not None and self.rows == self._limit:
            last = rows[-1]
            self._marks.remember(
                self.instrument,
                self._filters,
                self.lifecycle,
                self._offset + self.rows,
                PageMark(last[CATALOG_SEQ], last["last_updated"], last["id"]),
            )
        logger.debug(
            "query %s: batch %d read (%d rows so far)", self.instrument, self.batches, self.rows
        )
        found = [row_to_record(row, self.include_seq, self.lifecycle) for row in rows]
        if self.columns:
            found = [{k: rec[k] for k in self.columns if k in rec} for rec in found]
        return _json_items(found)

    def close(self) -> None:
        """Release the statement and connection (at once, or after the batch being read)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            busy = self._busy
        if not busy:
            self._release()

    def _release(self) -> None:
        result, conn = self._result, self._conn
        self._result = self._conn = None
        try:
            if result is not None:
                result.close()
        except Exception:  # the connection may be broken already; it is dropped below
            logger.debug("Closing the query cursor failed", exc_info=True)
        try:
            if conn is not None:
                conn.close()
        except Exception:
            logger.warning("Releasing a query's catalog connection failed", exc_info=True)


def stream_query(
    catalog: Catalog,
    instrument: str,
    filters: Mapping[str, str],
    *,
    limit: int | None = None,
    offset: int | None = None,
    include_seq: bool = True,
    columns: Sequence[str] | None = None,
    batch_rows: int = DEFAULT_QUERY_BATCH,
    include_retracted: bool = False,
    marks: PageMarks | None = None,
) -> Response:
    """Answer ``GET INST/query`` with a JSON array of records sent batch by batch.

    Runs the statement and reads the first batch before answering, so an invalid
    filter or a failing catalog still gets its error status, and nothing matching
    gets the ``NO_MATCH`` answer. Call it from a worker thread.

    Parameters
    ----------
    catalog, instrument, filters, limit, offset, include_seq, columns, batch_rows
        As for :class:`RecordBatches`.
    include_retracted, marks
        As for :class:`RecordBatches`.

    Returns
    -------
    Response
        A ``StreamingResponse`` of the array, or a ``JSONResponse`` of ``NO_MATCH``.

    Raises
    ------
    BadRequest
        If a filter name or value is invalid.
    """
    batches = RecordBatches(
        catalog,
        instrument,
        filters,
        limit=limit,
        offset=offset,
        include_seq=include_seq,
        columns=columns,
        batch_rows=batch_rows,
        include_retracted=include_retracted,
        marks=marks,
    )
    try:
        first = batches.next_chunk()
    except BaseException:
        batches.close()
        raise
    if not first:
        batches.close()
        return JSONResponse(NO_MATCH)
    return StreamingResponse(_array_body(batches, first), media_type="application/json")


async def _array_body(batches: RecordBatches, first: bytes) -> AsyncIterator[bytes]:
    """Yield ``[``, the chunks joined by commas, and ``]``; on a read error, log and re-raise."""
    released = False
    try:
        yield b"[" + first
        while True:
            try:
                chunk = await run_in_threadpool(batches.next_chunk)
            except Exception:
                logger.error(
                    "query %s failed after %d records were sent; closing the connection so "
                    "the client sees a broken answer",
                    batches.instrument,
                    batches.rows,
                    exc_info=True,
                )
                raise
            if not chunk:
                break
            yield b"," + chunk
        await run_in_threadpool(batches.close)
        released = True
        yield b"]"
    finally:
        if not released:
            _close_soon(batches)


def _close_soon(batches: RecordBatches) -> None:
    """Close ``batches`` in a worker thread without waiting (also from a cancelled task)."""
    try:
        asyncio.get_running_loop().run_in_executor(None, batches.close)
    except RuntimeError:  # no running loop (finalized at shutdown): close here
        batches.close()
