"""The archive catalog's tables (SQLAlchemy Core), the same on SQLite and PostgreSQL.

``records`` holds one row per calibration: the fields every record has get a
column of their own (indexed where queries need them), every instrument column
goes into the JSON ``extra``. ``seq_counters`` holds each instrument's ``seq``
counter; writers of an instrument serialize on its row. ``files`` lists the
verified files in storage, ``tokens`` the hashed API tokens. ``lifecycle_events``
keeps every retraction and making live again (a record keeps only its latest
state, so without it an unretracted record would forget it was ever retracted).
``record_columns``
lists every column name an instrument's records use, keyed by its lower-case
form: clients store records in SQLite, whose column names ignore case.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

logger = logging.getLogger(__name__)

metadata = sa.MetaData()

#: JSON on SQLite, JSONB on PostgreSQL.
JSONType = sa.JSON().with_variant(JSONB(), "postgresql")

records = sa.Table(
    "records",
    metadata,
    sa.Column("instrument", sa.String(64), primary_key=True),
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("filename", sa.Text, nullable=False),
    sa.Column("cal_type", sa.Text, nullable=False),
    sa.Column("datetime_obs", sa.String(23), nullable=False),
    sa.Column("origin", sa.Text, nullable=False),
    sa.Column("cal_version", sa.String(3), nullable=False),
    sa.Column("last_updated", sa.String(23), nullable=False),
    sa.Column("file_md5", sa.String(32)),
    sa.Column("file_size", sa.BigInteger),
    sa.Column("extra", JSONType, nullable=False),
    # The record's life: first published (set by the first add, never changed), and
    # when and why it was retracted (null while live). Added to older catalogs at start.
    sa.Column("published_at", sa.String(23)),
    sa.Column("retracted_at", sa.String(23)),
    sa.Column("retract_reason", sa.Text),
    sa.UniqueConstraint("instrument", "filename", name="uq_records_filename"),
    sa.UniqueConstraint("instrument", "seq", name="uq_records_seq"),
    sa.Index("ix_records_last_updated", "instrument", "last_updated", "id"),
    sa.Index("ix_records_cal_type", "instrument", "cal_type", "datetime_obs"),
    # A query of one type in its answer order (last_updated, id), paged from where the
    # previous page ended (page_marks.py), without sorting the whole type per page.
    sa.Index("ix_records_cal_type_updated", "instrument", "cal_type", "last_updated", "id"),
    sa.Index("ix_records_datetime_obs", "instrument", "datetime_obs"),
    # The pages' counts per type and origin, live and retracted, read from the index
    # alone (the overview right after a change, web/memo.py).
    sa.Index("ix_records_counts", "instrument", "cal_type", "origin", "retracted_at"),
)

#: Columns of ``records`` that hold record fields, in the order records are shown.
RECORD_COLUMNS = (
    "id",
    "filename",
    "cal_type",
    "datetime_obs",
    "origin",
    "cal_version",
    "last_updated",
    "file_md5",
    "file_size",
    "seq",
)

#: Columns of ``records`` that hold a record's life (``records.LIFECYCLE_FIELDS``).
LIFECYCLE_COLUMNS = ("published_at", "retracted_at", "retract_reason")

seq_counters = sa.Table(
    "seq_counters",
    metadata,
    sa.Column("instrument", sa.String(64), primary_key=True),
    sa.Column("last_seq", sa.BigInteger, nullable=False),
    # The newest last_updated handed out, so that last_updated never goes back in time.
    sa.Column("last_updated", sa.String(23)),
)

files = sa.Table(
    "files",
    metadata,
    sa.Column("instrument", sa.String(64), primary_key=True),
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("md5", sa.String(32), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("stored_at", sa.String(23), nullable=False),
)

record_columns = sa.Table(
    "record_columns",
    metadata,
    sa.Column("instrument", sa.String(64), primary_key=True),
    # The name in lower case: two names differing only by case are one SQLite column.
    sa.Column("folded", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(64), nullable=False),
)

tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("scope", sa.String(16), nullable=False),
    sa.Column("created", sa.String(23), nullable=False),
)


#: Every retraction (``retracted``, with its reason) and making live again
#: (``unretracted``) of a record, under the ``seq`` the change gave the record. The
#: protocol's answers never read it; the pages show a record's history from it.
#: Created at start in catalogs made before it (``create_all``), empty until then.
lifecycle_events = sa.Table(
    "lifecycle_events",
    metadata,
    sa.Column("instrument", sa.String(64), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("id", sa.String(36), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("at", sa.String(23), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Index("ix_lifecycle_events_id", "instrument", "id", "seq"),
)


def row_to_record(
    row: Mapping[str, Any], include_seq: bool, lifecycle: bool = False
) -> dict[str, Any]:
    """Return the record of a ``records`` row: its columns, ``seq`` if asked, then ``extra``.

    Parameters
    ----------
    row : Mapping
        A row of ``records``.
    include_seq : bool
        Include ``seq`` (v2).
    lifecycle : bool
        Include ``published_at``, ``retracted_at`` and ``retract_reason`` (v2: the
        changes feed, and queries with ``include_retracted``).

    Returns
    -------
    dict
        The record as the archive answers it.

    Examples
    --------
    >>> row_to_record(row, include_seq=True)["seq"]  # doctest: +SKIP
    17
    """
    record = {name: row[name] for name in RECORD_COLUMNS if name != "seq"}
    if include_seq:
        record["seq"] = row["seq"]
    record.update(row["extra"] or {})
    if lifecycle:
        for name in LIFECYCLE_COLUMNS:
            record[name] = row[name]
    return record
