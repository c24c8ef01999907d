"""A selector module of a user's own, found through PYTHONPATH by ``koa-cal explain``."""

from koa_middleware import CalibrationSelector


class AnyFlat(CalibrationSelector):
    """Any flat at all: the first one the local database lists."""

    def get_candidates(self, input, db, **kwargs):
        return db.query(cal_type="flat")
