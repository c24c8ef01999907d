"""Selectors as pipelines write them: ``db.rows_where`` with a nearest-in-time ordering."""

from __future__ import annotations

from koa_middleware import CalibrationSelector


class NearestDark(CalibrationSelector):
    """The master dark of the frame's spectrograph nearest in time (every candidate)."""

    def __init__(self, origin=None, **kwargs):
        super().__init__(origin=origin, **kwargs)

    def get_candidates(self, input, db, **kwargs):
        return list(
            db.rows_where(
                "cal_type = :cal_type AND spectrograph = :spectrograph",
                {"cal_type": "dark", "spectrograph": input["spectrograph"],
                 "mjd_start": input["mjd_start"]},
                order_by="ABS(mjd_start - :mjd_start)",
            )
        )  # fmt: skip


class NearestDarkOne(NearestDark):
    """The same choice, asking SQLite for one row (``limit=1``) through ``db.table``."""

    def get_candidates(self, input, db, **kwargs):
        return list(
            db.table.rows_where(
                "cal_type = :cal_type AND spectrograph = :spectrograph",
                {"cal_type": "dark", "spectrograph": input["spectrograph"],
                 "mjd_start": input["mjd_start"]},
                order_by="ABS(mjd_start - :mjd_start)",
                limit=1,
            )
        )  # fmt: skip
