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
from collections.abc import Iterable
from typing import Any

from ..database.selection_view import SelectionView
from ..errors import (
    CalibrationNotFoundError,
    ConfigurationError,
    InvalidRecordError,
    RetractedCalibrationError,
)
from ..records import normalize_timestamp, retraction_reason, utc_now, validate_cal_id
from .prune import PruneReport, parse_size, present_files, prune_cache

logger = logging.getLogger(__name__)

__all__ = ["AsOfStore", "CacheBounds", "Lifecycle"]


class Lifecycle:
    """Retraction and selection views: a mixin of the calibration store.

    It needs the store's ``local_db``, ``origin`` and ``config``.
    """

    _selection_views: dict[str | None, Any] | None = None

    # -- what selectors see ------------------------------------------------------

    def selection_db(self, as_of: str | None = None) -> Any:
        """The database a selector is handed: live records, or those of ``as_of``.

        Parameters
        ----------
        as_of : str | None
            A UTC time: show the records published by then and not retracted
            by then. None shows every record not retracted now.

        Returns
        -------
        SelectionView | LocalCalibrationDB
            A read-only view of the local database (an in-memory database,
            which cannot be shared, is returned as it is).

        Examples
        --------
        >>> store.selection_db().query(cal_type="dark")  # doctest: +SKIP
        """
        if self.local_db.db_path == ":memory:":
            return self.local_db
        key = None if as_of is None else normalize_timestamp(as_of, "as_of")
        if self._selection_views is None:
            self._selection_views = {}
        view = self._selection_views.get(key)
        if view is None:
            view = self._selection_views[key] = SelectionView(self.local_db, key)
        return view

    def _close_selection_views(self) -> None:
        for view in (self._selection_views or {}).values():
            view.close()
        self._selection_views = None

    def as_of(self, when: str) -> AsOfStore:
        """A view of the store in which selection sees the records of time ``when``.

        Only records the archive had published by ``when`` (or, for records
        made here, updated by then) and had not retracted by then are chosen;
        publication and retraction times come from the records, not from this
        machine's clock.

        Examples
        --------
        >>> past = store.as_of("2026-03-01T00:00:00")  # doctest: +SKIP
        >>> path, record = past.select_and_get_calibration(frame, DarkSelector())  # doctest: +SKIP
        """
        return AsOfStore(self, normalize_timestamp(when, "as_of"))

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
        retractions = self.local_db.retractions()
        report["retracted"] = []
        if not retractions:
            return report
        live = {c.get("id") for c in report["candidates"]}
        for candidate in selector.explain_candidates(input, self.local_db, **kwargs) or ():
            cal_id = candidate.get("id")
            if cal_id in retractions and cal_id not in live:
                report["retracted"].append(
                    {key: candidate.get(key) for key in ("id", "filename", "cal_version")}
                    | {k: retractions[cal_id][k] for k in ("retracted_at", "reason")}
                )
        return report

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
            record = self.local_db.query_id(cal_id)
            if record is None:
                raise CalibrationNotFoundError(f"Calibration {cal_id} is not in the local cache.")
            if str(record.get("origin") or "").upper() != self.origin:
                raise InvalidRecordError(
                    f"Calibration {cal_id} ({record['filename']}) has origin "
                    f"{record.get('origin')}, not this store's {self.origin}; retract it where "
                    "it was made (koa-archive retract for the archive's), and sync."
                )
        now = utc_now()
        self.local_db.set_retractions({cal_id: (now, reason) for cal_id in wanted}, pushed=False)
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
        self.local_db.clear_retractions(wanted)
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
            record = self.local_db.query_id(cal_id)
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
        for record in records:
            with self.layout.lock(record["id"]):
                with self.local_db.write_transaction():
                    self.local_db.delete(record["id"])
                    self.local_db.forget(record["id"])
                self.layout.path_for(record["filename"]).unlink(missing_ok=True)
            logger.info("Removed calibration %s and %s", record["id"], record["filename"])
        return records

    def _check_retraction(self, record: dict, allow: bool | None) -> None:
        """Refuse (or, when allowed, warn about) a retracted calibration."""
        retraction = self.local_db.retraction(record["id"])
        if retraction is None:
            return
        allow = self.config.allow_retracted if allow is None else allow
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


class CacheBounds:
    """Keeping the cache's files within a size: a mixin of the calibration store.

    It needs the store's ``config``, ``layout``, ``local_db`` and ``_cached_files``.
    """

    _estimated_size: int | None = None

    def prune(self, max_size: int | str | None = None) -> PruneReport:
        """Remove the least recently used files until the cache's files fit in ``max_size``.

        Records stay (a removed file is fetched again when asked for); files in
        use by a running process, and files of this store's origin that the
        archive lacks, are never removed. See :mod:`koa_middleware.cache.prune`.

        Parameters
        ----------
        max_size : int | str | None
            Bytes, or a size such as ``'50GiB'``; None reads ``KOA_CACHE_MAX_SIZE``.

        Returns
        -------
        PruneReport
            What was removed and kept.

        Raises
        ------
        ConfigurationError
            If no size is given or configured, or it cannot be read.

        Examples
        --------
        >>> store.prune("50GiB").removed  # doctest: +SKIP
        """
        if max_size is None:
            max_size = self.config.cache_max_size
        if max_size is None:
            raise ConfigurationError(
                "No size to prune to: pass max_size='50GiB' (koa-cal prune --max-size) or set "
                "KOA_CACHE_MAX_SIZE."
            )
        report = prune_cache(self, parse_size(max_size))
        self._estimated_size = report.size_after
        return report

    def _keep_in_bounds(self, added: int) -> None:
        """After a download of ``added`` bytes: prune when the cache outgrew its limit."""
        limit = self.config.cache_max_size
        if limit is None:
            return
        if self._estimated_size is None:
            self._estimated_size = self.layout_size()
        else:
            self._estimated_size += added
        if self._estimated_size > limit:
            self.prune(limit)

    def layout_size(self) -> int:
        """Bytes taken by the files of the instrument's calibrations in the cache."""
        return sum(size for _, size, _ in present_files(self))


class AsOfStore:
    """A store seen as of a past time; see :meth:`Lifecycle.as_of`.

    Parameters
    ----------
    store : CalibrationStore
        The store.
    when : str
        The normalized UTC time.
    """

    def __init__(self, store: Any, when: str):
        self.store = store
        self.when = when

    def __repr__(self) -> str:
        return f"AsOfStore({self.store!r}, when={self.when!r})"

    @property
    def local_db(self) -> Any:
        """The records as of :attr:`when`, as selectors see them."""
        return self.store.selection_db(self.when)

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
        return self.store._select_and_get(
            input, selector, self.local_db, kwargs, allow_retracted=True
        )
