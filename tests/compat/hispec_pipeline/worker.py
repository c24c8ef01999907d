"""A pipeline process registering through the subclass.

``python -m compat.hispec_pipeline.worker CACHE PREFIX N [READY]`` (with ``tests`` on
the path) registers N darks of one family with ``new_version=True``, after ``CACHE/go``
exists. Once its store is open it creates the file READY, if given.
With ``N = 0`` and ``KILL_AT=finalize`` it kills itself inside the finalize step of
its first registration, after the model saved its file. With ``MODEL=family_named``
it registers :class:`~compat.hispec_pipeline.family_named.FamilyNamedModel` darks,
which all name their file alike, through the plain store.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from compat.hispec_pipeline.datamodel import HispecCalibration
from compat.hispec_pipeline.family_named import FamilyNamedModel
from compat.hispec_pipeline.store import HispecCalibrationStore

from koa_middleware import CalibrationStore


class DoomedStore(HispecCalibrationStore):
    def _finalize_cal_record(self, cal, cal_record, local_filepath):
        cal_record = super()._finalize_cal_record(cal, cal_record, local_filepath)
        os.kill(os.getpid(), signal.SIGKILL)  # saved, not committed
        return cal_record


def main() -> None:
    cache, prefix, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    family_named = os.environ.get("MODEL") == "family_named"
    kind = DoomedStore if os.environ.get("KILL_AT") == "finalize" else HispecCalibrationStore
    if family_named:
        kind = CalibrationStore  # the pipeline's save step writes a header this model lacks
    with kind("hispec", cache, connect_remote=False) as store:
        if len(sys.argv) > 4:
            Path(sys.argv[4]).touch()  # ready: the store is open
        while not os.path.exists(os.path.join(cache, "go")):
            time.sleep(0.005)
        for i in range(max(count, 1)):
            meta = {
                "cal_type": "dark",
                "spectrograph": "yj",
                "datetime_obs": "2026-03-01T00:00:00.000",
                "mjd_start": 61100.0,
                "worker": prefix,
                "serial": i,
            }
            data = os.urandom(4096 + i)
            if family_named:
                model = FamilyNamedModel(data=data, **meta)
            else:
                model = HispecCalibration(meta, data=data)
            store.register_calibration(model, new_version=True)


if __name__ == "__main__":
    main()
