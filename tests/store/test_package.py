"""The package's public names, and what importing each part loads."""

from __future__ import annotations

import koa_middleware
from support.children import run_child


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
    # a fresh interpreter that imports the archive service, and prints what it loaded
    result = run_child(
        "imported_modules", "koa_middleware.archive.app", "koa_middleware.archive.cli"
    )
    assert result.returncode == 0, result.stderr
    loaded = result.stdout.split()
    assert "koa_middleware.archive.app" in loaded  # the probe imported what it was given
    assert "koa_middleware.store" not in loaded
