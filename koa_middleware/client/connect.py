"""Connecting a store to its archive, from resolved settings."""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["connect_archive"]


def connect_archive(config: Any) -> Any:
    """The archive client the settings describe, or None when no archive is configured."""
    if not config.archive_configured:
        logger.info(
            "Not connecting to %s: no KOA_API_TOKEN or KECK_OBSERVER_EMAIL/"
            "KECK_OBSERVER_PASSWORD is set; working from the local cache.",
            config.url,
        )
        return None
    from .remote_database import RemoteCalibrationDB

    token = config.token if config.source("token") == "argument" else None
    if config.max_answer_bytes is None:
        return RemoteCalibrationDB(config.instrument_name, url=config.url, token=token)
    return RemoteCalibrationDB(
        config.instrument_name,
        url=config.url,
        token=token,
        max_answer_bytes=config.max_answer_bytes,
    )
