"""The package's public names, and what importing each part loads."""

from __future__ import annotations

import subprocess
import sys

import koa_middleware


def test_public_names():
    from koa_middleware import (
        CalibrationSelector,
        CalibrationStore,
        LocalCalibrationDB,
        SupportsCalibrationModelIO,
    )

    assert CalibrationStore.__module__ == "koa_middleware.store"
    assert LocalCalibrationDB.__module__ == "koa_middleware.database.local_database"
    assert CalibrationSelector.__module__ == "koa_middleware.selector_base"
    assert SupportsCalibrationModelIO.__module__ == "koa_middleware.datamodel_protocol"
    assert set(koa_middleware.__all__) <= set(dir(koa_middleware))


def test_archive_service_never_loads_the_client_store():
    code = (
        "import sys, koa_middleware.archive.app, koa_middleware.archive.cli;"
        "print('koa_middleware.store' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
