"""Many records into a site's source fast, through the bulk write each source has.

The archive's catalog: :func:`~koa_middleware.archive.additions.write_additions`
(one multi-row INSERT, each record its ``seq``) under the instrument's write lock,
without the per-record checks of ``add`` (the records here are known good and new).
A local cache: its database's ``add_validated`` (``executemany``).
"""

from __future__ import annotations

import uuid
from typing import Any

from koa_middleware.archive.additions import Additions, write_additions

from .web_sites import Site

#: Records written per statement.
STEP = 20_000


def many_records(
    count: int, cal_types: list[str], facets: dict[str, list[str]], start: int = 0
) -> list[dict]:
    """``count`` valid records spread over five years, the types and facet values in turn.

    Record ``n`` (from ``start``) has the id ``UUID(int=n + 1)`` and the file ``cal_<n>.fits``.
    """
    found = []
    for n in range(start, start + count):
        record: dict[str, Any] = {
            "id": str(uuid.UUID(int=n + 1, version=4)),
            "filename": f"cal_{n:07d}.fits",
            "cal_type": cal_types[n % len(cal_types)],
            "datetime_obs": f"{2020 + n % 5}-{1 + n // 7 % 12:02d}-{1 + n // 3 % 28:02d}"
            f"T{n % 24:02d}:{n % 60:02d}:00.000",
            "origin": "KECK",
            "cal_version": "001",
        }
        for k, (name, values) in enumerate(facets.items()):
            record[name] = values[n // (k + 2) % len(values)]
        found.append(record)
    return found


def bulk_add(site: Site, batch: list[dict[str, Any]]) -> None:
    """Write new, valid ``batch`` records to ``site``'s source; the first goes the usual way.

    The first record registers the batch's columns as publishing would.
    """
    site.add(batch[:1])
    rest = batch[1:]
    for start in range(0, len(rest), STEP):
        part = rest[start : start + STEP]
        if not site.is_archive:
            site.backend.db.add_validated(part)
            continue
        plan = Additions(changed=[(record, True) for record in part], new_columns={})
        with site.backend._writing("hispec") as (conn, last_seq, last_stamp):
            write_additions(conn, "hispec", plan, last_seq, last_stamp)
