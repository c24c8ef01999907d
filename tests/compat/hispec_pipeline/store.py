"""A CalibrationStore subclass overriding every step of registration."""

from __future__ import annotations

import os

from koa_middleware import CalibrationStore
from koa_middleware.utils import generate_md5_file


class HispecCalibrationStore(CalibrationStore):
    """Families split by spectrograph; the file carries CALVER and ORIGIN."""

    #: Steps called, in order, for tests to check.
    calls: list[str]

    def __init__(self, *args, **kwargs):
        self.calls = []
        super().__init__(*args, **kwargs)

    def get_version_family_column_names(self, cal_type):
        return ["cal_type", "spectrograph", "datetime_obs"]

    def _prepare_cal_record(self, cal, origin=None, version=True, last_updated=True):
        self.calls.append("prepare")
        record = super()._prepare_cal_record(
            cal, origin=origin, version=version, last_updated=last_updated
        )
        record["drp_version"] = "1.4.0"
        return record

    def save_calibration_file(self, cal, cal_record=None):
        self.calls.append("save")
        cal.header["CALVER"] = cal_record["cal_version"]
        cal.header["ORIGIN"] = cal_record["origin"]
        return cal.save(output_dir=self.data_dir)

    def _finalize_cal_record(self, cal, cal_record, local_filepath):
        self.calls.append("finalize")
        cal_record = super()._finalize_cal_record(cal, cal_record, local_filepath)
        cal_record["header_calver"] = cal.header.get("CALVER")
        return cal_record


class EarlierPipelineStore(HispecCalibrationStore):
    """A pipeline written a little earlier: ``_finalize_cal_record(cal_record, path)``,
    and a save step that builds its own path with ``_get_local_filepath``."""

    def save_calibration_file(self, cal, cal_record=None):
        self.calls.append("save")
        cal.header["CALVER"] = cal_record["cal_version"]
        cal.header["ORIGIN"] = cal_record["origin"]
        path = self._get_local_filepath(cal.make_filename())
        cal.save(output_dir=os.path.dirname(path))
        return path

    def _finalize_cal_record(self, cal_record, local_filepath):
        self.calls.append("finalize")
        cal_record["filename"] = os.path.basename(local_filepath)
        cal_record["file_md5"] = generate_md5_file(local_filepath)
        return cal_record


class EarlierSuperPipelineStore(CalibrationStore):
    """Also written a little earlier: the earlier ``_finalize_cal_record`` form,
    with an extra optional parameter, handing the work to ``super()`` that way."""

    def _finalize_cal_record(self, cal_record, local_filepath, stamp_md5=True):
        cal_record = super()._finalize_cal_record(cal_record, local_filepath)
        if stamp_md5:
            cal_record["md5_at_finalize"] = cal_record["file_md5"]
        return cal_record
