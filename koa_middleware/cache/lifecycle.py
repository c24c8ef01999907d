"""Retracting calibrations, and which records a selection may choose.

A retraction never deletes: the record and its file stay, and a row of
``_koa_retractions`` says when and why the calibration was withdrawn. Selection
reads a :class:`~koa_middleware.database.selection_view.SelectionView`, so that
built-in selectors and the ones pipelines wrote never see a retracted
calibration; asking for one by id raises
:class:`~koa_middleware.errors.RetractedCalibrationError` unless retracted
calibrations are allowed (``KOA_ALLOW_RETRACTED=1``), and then it warns.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ..database.selection_view import SelectionView
from ..errors import (
    CalibrationNotFoundError,
    InvalidRecordError,
    RetractedCalibrationError,
)
from ..records import normalize_timestamp, retraction_reason, utc_now, validate_cal_id
from .removal import FileRemoval

if TYPE_CHECKING:
    from ..database.local_database import LocalCalibrationDB
    from .layout import CacheLayout

logger = logging.getLogger(__name__)

__all__ = ["AsOfStore", "Lifecycle", "all_retracted_message"]

#: Retracted candidates named in a message (the rest are counted).
_SHOWN_RETRACTED = 5


def all_retracted_message(retracted: list[dict], total: int | None = None) -> str:
    """Say that every candidate matched is retracted, why, and how to use one anyway.

    Parameters
    ----------
    retracted : list of dict
        The retracted candidates (``id``, ``filename``, ``cal_version``,
        ``retracted_at``, ``reason``), best first.
    total : int | None
        How many matched in all, when more than those listed may have.

    Returns
    -------
    str
        The message.

    Examples
    --------
    >>> print(all_retracted_message([{"id": "1b4e28ba-2fa1-4d2b-883f-0016d3cca427",
    ...     "filename": "dark.fits", "cal_version": "001",
    ...     "retracted_at": "2026-01-02T00:00:00.000", "reason": "hot pixels"}]))
    ... # doctest: +NORMALIZE_WHITESPACE
    1 candidate matched and all are retracted: dark.fits version 001
    (1b4e28ba-2fa1-4d2b-883f-0016d3cca427), retracted 2026-01-02T00:00:00.000: hot pixels. To
    use one anyway, get it by id with KOA_ALLOW_RETRACTED=1 (koa-cal get ID;
    allow_retracted=True in Python); or unretract it if it was retracted by mistake.
    """
    count = max(total or 0, len(retracted))
    shown = "; ".join(
        f"{r['filename']} version {r['cal_version']} ({r['id']}), retracted "
        f"{r['retracted_at']}: {r['reason']}"
        for r in retracted[:_SHOWN_RETRACTED]
    )
    more = count - min(len(retracted), _SHOWN_RETRACTED)
    shown += f"; and {more} more" if more > 0 else ""
    noun = "candidate" if count == 1 else "candidates"
    return (
        f"{count} {noun} matched and all are retracted: {shown}. To use one anyway, get it "
        "by id with KOA_ALLOW_RETRACTED=1 (koa-cal get ID; allow_retracted=True in Python); "
        "or unretract it if it was retracted by mistake."
    )


class Lifecycle:
    """Retractions, removals, and the records a selection may choose, in one cache.

    Parameters
    ----------
    db : LocalCalibrationDB
        The cache's database (records, and the retractions beside them).
    layout : CacheLayout
        The cache's folders (files are removed under their lock).
    origin : str
        The store's origin: only calibrations of it are retracted or removed here.
    allow_retracted : bool
        Whether getting a retracted calibration by id warns instead of raising.

    Examples
    --------
    >>> from koa_middleware.database.local_database import LocalCalibrationDB
    >>> lifecycle = Lifecycle(LocalCalibrationDB(":memory:", "hispec"), None, origin="LOCAL")
    >>> lifecycle.selection_db().query(cal_type="dark")
    []
    """

    def __init__(
        self,
        db: LocalCalibrationDB,
        layout: CacheLayout | None,
        *,
        origin: str,
        allow_retracted: bool = False,
    ):
        self.db = db
        self.layout = layout
        self.origin = origin
        self.allow_retracted = allow_retracted
        self._selection_views: dict[str | None, SelectionView] = {}

    def __repr__(self) -> str:
        return f"Lifecycle({self.db!r}, origin={self.origin!r})"

    # -- what selectors see ------------------------------------------------------

    def selection_db(self, as_of: str | None = None) -> SelectionView:
        """The database a selector is handed: live records, or those of ``as_of``.

        Parameters
        ----------
        as_of : str | None
            A UTC time: show the records published by then and not retracted
            by then. None shows every record not retracted now.

        Returns
        -------
        SelectionView
            A read-only view of the local database, a file or one in memory.

        Examples
        --------
        >>> store.selection_db().query(cal_type="dark")  # doctest: +SKIP
        """
        key = None if as_of is None else normalize_timestamp(as_of, "as_of")
        view = self._selection_views.get(key)
        if view is None:
            view = self._selection_views[key] = SelectionView(self.db, key)
        return view

    def release_view(self, as_of: str | None) -> None:
        """Close the view of ``as_of`` (made again when asked for); the live view stays.

        For a long-running reader asked for many times (the web pages): each view
        holds a connection. The caller makes sure no selection uses it meanwhile.
        """
        if as_of is None:
            return
        view = self._selection_views.pop(normalize_timestamp(as_of, "as_of"), None)
        if view is not None:
            view.close()

    def open_selection(self) -> None:
        """Open the view of the live records now, so that the first selection finds it open.

        Opening it is a second connection and a temporary view, most of the
        cost of a first selection; a store opens it as it opens. If it cannot
        be opened now, it is opened at the first selection, which then raises
        what it meets, as it would have anyway.
        """
        try:
            self.selection_db()
        except (sqlite3.Error, OSError) as exc:
            logger.debug("The selection view of %s opens at the first selection: %s", self.db, exc)

    def close(self) -> None:
        """Close the selection views (the database itself is its owner's to close)."""
        for view in self._selection_views.values():
            view.close()
        self._selection_views = {}

    def explain(self, input: Any, selector: Any, as_of: str | None = None, **kwargs: Any) -> dict:
        """What ``selector`` chooses for ``input`` and why, with the retracted candidates.

        The report is :meth:`CalibrationSelector.explain
        <koa_middleware.selector_base.CalibrationSelector.explain>`'s, run on
        the records selection sees, plus ``retracted``: the calibrations the
        selector would have considered had they not been retracted, each with
        ``id``, ``filename``, ``cal_version``, ``retracted_at`` and ``reason``.

        Examples
        --------
        >>> report = store.explain(frame, NearestInTimeSelector("dark"))  # doctest: +SKIP
        >>> [r["reason"] for r in report["retracted"]]  # doctest: +SKIP
        ['hot pixels']
        """
        report = selector.explain(input, self.selection_db(as_of), **kwargs)
        live = {c.get("id") for c in report["candidates"]}
        report["retracted"] = [
            entry
            for entry in self.retracted_candidates(input, selector, **kwargs)
            if entry["id"] not in live
        ]
        if report["chosen"] is None and report["retracted"] and not live:
            total = selector.count_candidates(input, self.db, **kwargs)
            report["reason"] = all_retracted_message(report["retracted"], total)
            if report.get("eliminated_by"):
                report["eliminated_by"]["summary"] = report["reason"]
        return report

    def retracted_candidates(
        self, input: Any, selector: Any, only_if_all: bool = False, **kwargs: Any
    ) -> list[dict]:
        """The candidates ``selector`` would consider among every record, that are retracted now.

        Parameters
        ----------
        input : Any
            The frame.
        selector : CalibrationSelector
            The selector.
        only_if_all : bool
            Return them only when every candidate is retracted (else an empty list).
        **kwargs
            Passed on to the selector.

        Returns
        -------
        list of dict
            Best first, each with ``id``, ``filename``, ``cal_version``,
            ``retracted_at`` and ``reason``; empty when nothing here is retracted.
        """
        retractions = self.db.retractions()
        if not retractions:
            return []
        found = []
        for candidate in selector.explain_candidates(input, self.db, **kwargs) or ():
            cal_id = candidate.get("id")
            if cal_id in retractions:
                found.append(
                    {key: candidate.get(key) for key in ("id", "filename", "cal_version")}
                    | {k: retractions[cal_id][k] for k in ("retracted_at", "reason")}
                )
            elif only_if_all:
                return []
        return found

    # -- retracting ----------------------------------------------------------------

    def retract(self, ids: Iterable[str] | str, reason: str) -> list[str]:
        """Withdraw calibrations registered here: selection no longer chooses them.

        The records and files stay. Calibrations that came from the archive are
        retracted there (``koa-archive retract``), and the next sync brings it.

        Parameters
        ----------
        ids : str | iterable of str
            Calibration ids.
        reason : str
            Why (kept with the retraction, shown by ``explain``).

        Returns
        -------
        list of str
            The ids retracted.

        Raises
        ------
        CalibrationNotFoundError
            If an id is not in the local cache.
        InvalidRecordError
            If an id is malformed, the reason is empty, or a calibration is of
            another origin than this store's; nothing is retracted then.

        Examples
        --------
        >>> store.retract([cal_id], reason="hot pixels")  # doctest: +SKIP
        """
        reason = retraction_reason(reason)
        wanted = [validate_cal_id(i) for i in ([ids] if isinstance(ids, str) else ids)]
        for cal_id in wanted:
            record = self.db.query_id(cal_id)
            if record is None:
                raise CalibrationNotFoundError(f"Calibration {cal_id} is not in the local cache.")
            if str(record.get("origin") or "").upper() != self.origin:
                raise InvalidRecordError(
                    f"Calibration {cal_id} ({record['filename']}) has origin "
                    f"{record.get('origin')}, not this store's {self.origin}; retract it where "
                    "it was made (koa-archive retract for the archive's), and sync."
                )
        now = utc_now()
        self.db.set_retractions({cal_id: (now, reason) for cal_id in wanted}, pushed=False)
        logger.info("Retracted %d calibration(s): %s", len(wanted), reason)
        return wanted

    def unretract(self, ids: Iterable[str] | str) -> list[str]:
        """Make retracted calibrations of this store's origin selectable again.

        Raises
        ------
        InvalidRecordError
            If an id is malformed.
        """
        wanted = [validate_cal_id(i) for i in ([ids] if isinstance(ids, str) else ids)]
        self.db.clear_retractions(wanted)
        return wanted

    def remove(self, ids: Iterable[str] | str, force: bool = False) -> list[dict]:
        """Delete calibrations of this store's origin: their records and their files.

        For a calibration registered here by mistake. A calibration that came
        from the archive is refused unless ``force`` (the next sync brings it
        back; retract it on the archive to withdraw it everywhere).

        Parameters
        ----------
        ids : str | iterable of str
            Calibration ids.
        force : bool
            Also remove calibrations of other origins.

        Returns
        -------
        list of dict
            The records removed.

        Raises
        ------
        CalibrationNotFoundError
            If an id is not in the local cache; nothing is removed then.
        InvalidRecordError
            If an id is malformed, or a calibration came from elsewhere and
            ``force`` is False; nothing is removed then.

        Examples
        --------
        >>> store.remove([cal_id])  # doctest: +SKIP
        """
        wanted = [validate_cal_id(i) for i in ([ids] if isinstance(ids, str) else ids)]
        records = []
        for cal_id in wanted:
            record = self.db.query_id(cal_id)
            if record is None:
                raise CalibrationNotFoundError(f"Calibration {cal_id} is not in the local cache.")
            if str(record.get("origin") or "").upper() != self.origin and not force:
                raise InvalidRecordError(
                    f"Calibration {cal_id} ({record['filename']}) has origin "
                    f"{record.get('origin')}: it came from elsewhere, and the next sync brings it "
                    "back. Retract it on the archive (koa-archive retract) to withdraw it, or "
                    "pass force=True (koa-cal remove --force) to remove the local copy anyway."
                )
            records.append(record)
        with FileRemoval(self.layout) as removal:
            for record in records:
                with removal.locked(record["id"]):
                    with self.db.write_transaction():
                        self.db.delete(record["id"])
                        self.db.forget(record["id"])
                    removal.unlink(record["filename"])
                logger.info("Removed calibration %s and %s", record["id"], record["filename"])
        return records

    def check_retraction(self, record: dict, allow: bool | None = None) -> None:
        """Refuse (or, when allowed, warn about) a retracted calibration.

        Parameters
        ----------
        record : dict
            The calibration's record.
        allow : bool | None
            Serve it with a warning; None uses :attr:`allow_retracted`.

        Raises
        ------
        RetractedCalibrationError
            If the calibration was retracted and retracted ones are not allowed.
        """
        retraction = self.db.retraction(record["id"])
        if retraction is None:
            return
        allow = self.allow_retracted if allow is None else allow
        what = (
            f"Calibration {record['id']} ({record['filename']}) was retracted on "
            f"{retraction['retracted_at']}: {retraction['reason']}"
        )
        if not allow:
            raise RetractedCalibrationError(
                f"{what}. Select another one, or set KOA_ALLOW_RETRACTED=1 (allow_retracted="
                "True) to use it anyway.",
                cal_id=record["id"],
                reason=retraction["reason"],
            )
        logger.warning("Using a retracted calibration. %s.", what)


class AsOfStore:
    """A store seen as of a past time; see :meth:`CalibrationStore.as_of`.

    Parameters
    ----------
    view : SelectionView
        The records selection sees as of :attr:`when`.
    when : str
        The normalized UTC time.
    select_and_get : callable
        ``(input, selector, db, kwargs) -> (path, record)``: the store's
        selection among the records of ``db``, serving retracted calibrations.
    """

    def __init__(self, view: Any, when: str, select_and_get: Callable[..., tuple[str, dict]]):
        self.local_db = view
        self.when = when
        self._select_and_get = select_and_get

    def __repr__(self) -> str:
        return f"AsOfStore({self.local_db.db_path!r}, when={self.when!r})"

    def select(self, input: Any, selector: Any, **kwargs: Any) -> dict | None:
        """The record ``selector`` chooses for ``input`` among the records of :attr:`when`."""
        return selector.select(input, self.local_db, **kwargs)

    def select_and_get_calibration(
        self, input: Any, selector: Any, **kwargs: Any
    ) -> tuple[str, dict]:
        """Select among the records of :attr:`when`, then get the file.

        A calibration retracted after :attr:`when` was live then, so it is
        served (with a warning).

        Raises
        ------
        CalibrationNotFoundError
            If the selector finds nothing.
        """
        return self._select_and_get(input, selector, self.local_db, kwargs)
