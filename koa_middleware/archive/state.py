"""What every route of the archive shares: its settings, catalog, tokens and files."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ..profiles import DEFAULT_INSTRUMENTS
from .bodies import DEFAULT_BODY_TIMEOUT, DEFAULT_MAX_ADD_BYTES, DEFAULT_MAX_ADD_RECORDS
from .catalog import Catalog
from .page_marks import PageMarks
from .query_stream import DEFAULT_QUERY_BATCH
from .storage_interface import FileStorage
from .tokens import TokenStore

logger = logging.getLogger(__name__)

#: Where the calibrations API lives on the server.
API_PREFIX = "/api/calibrations"


@dataclass(frozen=True)
class ArchiveSettings:
    """How one archive server runs (the options of ``koa-archive serve``)."""

    root: Path
    db_url: str | None = None
    instruments: tuple[str, ...] = DEFAULT_INSTRUMENTS
    anonymous_read: bool = False
    protocol: int = 2
    max_upload_bytes: int | None = None
    #: Bytes and records of one ``add`` request; seconds a client may pause in a body.
    max_add_bytes: int = DEFAULT_MAX_ADD_BYTES
    max_add_records: int = DEFAULT_MAX_ADD_RECORDS
    body_timeout: float | None = DEFAULT_BODY_TIMEOUT
    #: Rows of a ``query`` answer read from the catalog and sent at a time.
    query_batch: int = DEFAULT_QUERY_BATCH
    #: Answer raw-file downloads with a 307 to a short-lived URL of the stored object.
    redirect_downloads: bool = False
    #: How long such a URL stays valid.
    redirect_seconds: int = 300


class Archive:
    """What the routes share: settings, catalog, tokens and file storage."""

    def __init__(self, settings: ArchiveSettings, catalog: Catalog, storage: FileStorage):
        self.settings = settings
        self.catalog = catalog
        self.storage = storage
        self.tokens = TokenStore(catalog.engine)
        #: Where recent pages of queries ended (the next page starts there).
        self.page_marks = PageMarks()
