"""Retracting records and making them live again (``POST INST/retract``, ``INST/unretract``).

A retraction withdraws a calibration without deleting anything: the record and
its file stay, and the record gains ``retracted_at`` (the archive's clock) and
``retract_reason``. Like an ``add``, it gives each record the instrument's next
``seq`` and a new ``last_updated``, under the same per-instrument lock, so the
changes feed and clients following ``last_updated`` learn of it. Default
queries leave retracted records out.

- :func:`parse_lifecycle_body` reads and checks a request body (plain CPU work:
  run it in a worker thread);
- :func:`write_lifecycle` changes the records, all or none, inside the write
  transaction of :meth:`.Catalog.set_lifecycle`.

Examples
--------
>>> body = b'{"ids": ["..."], "reason": "hot pixels"}'
>>> ids, reason = parse_lifecycle_body(body, needs_reason=True)  # doctest: +SKIP
>>> catalog.set_lifecycle("hispec", ids, reason)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..errors import InvalidRecordError
from ..records import retraction_reason, utc_now, validate_cal_id
from .inputs import text_problem
from .problems import BadRequest, NotFound, PayloadTooLarge, shorten
from .schema import lifecycle_events, records, seq_counters

logger = logging.getLogger(__name__)

__all__ = [
    "MAX_LIFECYCLE_BYTES",
    "MAX_LIFECYCLE_IDS",
    "check_ids",
    "check_reason",
    "parse_lifecycle_body",
    "write_lifecycle",
]

#: Ids one retract or unretract request may name.
MAX_LIFECYCLE_IDS = 10_000
#: Bytes of one retract or unretract body: 10,000 ids and a reason fit well within.
MAX_LIFECYCLE_BYTES = 1 << 20
#: Missing ids named in a 404 answer (the answer counts them all).
_SHOWN_MISSING = 5
#: Ids looked up per ``IN (...)`` statement.
_CHUNK = 500


def parse_lifecycle_body(
    data: bytes | bytearray, needs_reason: bool
) -> tuple[list[str], str | None]:
    """Read ``{"ids": [...], "reason": "..."}`` (retract) or ``{"ids": [...]}`` (unretract).

    Parameters
    ----------
    data : bytes or bytearray
        The body, UTF-8 JSON.
    needs_reason : bool
        True for a retraction: ``reason`` is required.

    Returns
    -------
    ids : list of str
        The ids, normalized, without repeats, in the order given.
    reason : str | None
        The reason with its whitespace collapsed (None without ``needs_reason``).

    Raises
    ------
    BadRequest
        If the body is not such an object, an id is not a calibration id, or the
        reason is missing, empty or longer than 2,000 characters.
    PayloadTooLarge
        If it names more than :data:`MAX_LIFECYCLE_IDS` ids.

    Examples
    --------
    >>> parse_lifecycle_body(b'{"ids": ["1B4E28BA-2FA1-4D2B-883F-0016D3CCA427"],'
    ...                      b' "reason": "  hot   pixels "}', True)
    (['1b4e28ba-2fa1-4d2b-883f-0016d3cca427'], 'hot pixels')
    """
    action = "retract" if needs_reason else "unretract"
    shape = '{"ids": [...], "reason": "..."}' if needs_reason else '{"ids": [...]}'
    try:
        body = json.loads(bytes(data).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadRequest(f"The body is not JSON; send {shape}.") from None
    if not isinstance(body, dict):
        raise BadRequest(f"The body must be a JSON object: send {shape}.")
    allowed = {"ids", "reason"} if needs_reason else {"ids"}
    unknown = sorted(set(body) - allowed)
    if unknown:
        names = ", ".join(repr(shorten(str(name), 40)) for name in unknown[:5])
        raise BadRequest(f"Unknown field(s) {names} in the {action} body; send {shape}.")
    ids = check_ids(body.get("ids"), shape)
    reason = check_reason(body.get("reason")) if needs_reason else None
    return ids, reason


def check_ids(value: Any, shape: str = '{"ids": [...]}') -> list[str]:
    """Return the calibration ids of ``value`` normalized, without repeats, in order.

    Raises
    ------
    BadRequest
        If ``value`` is not a non-empty list of calibration ids.
    PayloadTooLarge
        If it holds more than :data:`MAX_LIFECYCLE_IDS`.
    """
    if not isinstance(value, list) or not value:
        raise BadRequest(f"'ids' must be a non-empty list of calibration ids: send {shape}.")
    if len(value) > MAX_LIFECYCLE_IDS:
        raise PayloadTooLarge(
            f"One request may name at most {MAX_LIFECYCLE_IDS} ids, not {len(value)}; "
            "send them in several requests."
        )
    ids: dict[str, None] = {}
    for index, item in enumerate(value):
        try:
            ids[validate_cal_id(item)] = None
        except InvalidRecordError as exc:
            raise BadRequest(f"ids[{index}]: {shorten(str(exc), 200)}") from None
    return list(ids)


def check_reason(value: Any) -> str:
    """Return a retraction reason with its whitespace collapsed.

    Raises
    ------
    BadRequest
        If it is missing, empty, not storable text, longer than 2,000 characters, or
        holds a control character or a bidirectional override (the rule of
        :func:`~koa_middleware.records.control_character_problem`).
    """
    try:
        text = retraction_reason(value)  # the one rule, shared with the clients
    except InvalidRecordError as exc:
        raise BadRequest(f"'reason': {exc}") from None
    problem = text_problem(text)
    if problem:
        raise BadRequest(f"'reason': {problem}; send plain text.")
    return text


def write_lifecycle(
    conn: Connection,
    instrument: str,
    ids: Sequence[str],
    reason: str | None,
    last_seq: int,
    last_stamp: str | None,
) -> str:
    """Retract (``reason`` given) or make live (``reason`` None) records, all or none.

    Each record gets the next ``seq`` and one new ``last_updated``; a retraction's
    ``retracted_at`` is that same time. A record retracted before gets the new
    time and reason.

    Parameters
    ----------
    conn : Connection
        The write transaction holding the instrument's counter lock.
    instrument : str
        The instrument.
    ids : sequence of str
        Normalized ids, without repeats.
    reason : str | None
        The reason of a retraction; None clears ``retracted_at`` and ``retract_reason``.
    last_seq : int
        The instrument's counter, read under its lock.
    last_stamp : str | None
        The newest ``last_updated`` handed out so far (never go back in time).

    Returns
    -------
    str
        The time written (``last_updated``, and ``retracted_at`` of a retraction).

    Raises
    ------
    NotFound
        If any id is not a record of the instrument (nothing is changed).
    """
    found: set[str] = set()
    for start in range(0, len(ids), _CHUNK):
        chunk = list(ids[start : start + _CHUNK])
        rows = conn.execute(
            sa.select(records.c.id).where(
                records.c.instrument == instrument, records.c.id.in_(chunk)
            )
        )
        found.update(row.id for row in rows)
    missing = [cal_id for cal_id in ids if cal_id not in found]
    if missing:
        shown = ", ".join(missing[:_SHOWN_MISSING])
        more = f" and {len(missing) - _SHOWN_MISSING} more" if len(missing) > _SHOWN_MISSING else ""
        problem = NotFound(
            f"{len(missing)} of {len(ids)} id(s) are not calibrations of {instrument}: "
            f"{shown}{more}. Nothing was changed; check the ids and send the request again."
        )
        problem.extra = {  # type: ignore[attr-defined]
            "missing": missing[:_SHOWN_MISSING],
            "missing_count": len(missing),
        }
        raise problem
    stamp = max(utc_now(), last_stamp or "")
    retracted_at = stamp if reason is not None else None
    statement = (
        records.update()
        .where(records.c.instrument == instrument, records.c.id == sa.bindparam("cal_id"))
        .values(
            seq=sa.bindparam("new_seq"),
            last_updated=stamp,
            retracted_at=retracted_at,
            retract_reason=reason,
        )
    )
    conn.execute(
        statement,
        [{"cal_id": cal_id, "new_seq": last_seq + n} for n, cal_id in enumerate(ids, 1)],
    )
    kind = "retracted" if reason is not None else "unretracted"
    conn.execute(
        lifecycle_events.insert(),
        [
            {"instrument": instrument, "seq": last_seq + n, "id": cal_id, "kind": kind,
             "at": stamp, "reason": reason}
            for n, cal_id in enumerate(ids, 1)
        ],
    )  # fmt: skip
    conn.execute(
        seq_counters.update()
        .where(seq_counters.c.instrument == instrument)
        .values(last_seq=last_seq + len(ids), last_updated=stamp)
    )
    return stamp
