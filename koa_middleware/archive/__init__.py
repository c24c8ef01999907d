"""The calibration archive service (``koa-archive``), installed with the extra ``[server]``.

It serves every route of PROTOCOL.md (v1 and v2) under ``/api/calibrations``
(:mod:`.routes_v1`, :mod:`.routes_v2`), keeps records in a catalog on SQLite or
PostgreSQL (:mod:`.catalog`) and files under ``DIR/files/<instrument>/`` or in
S3-compatible object storage (:mod:`.storage`, :mod:`.s3_storage`). Records are
retracted, never deleted (:mod:`.retractions`); a catalog made by an earlier
version is brought up to date at start (:mod:`.upgrade`). It shares
only the record rules (:mod:`koa_middleware.records`) with the client side of
the package.

Run it with ``koa-archive serve --root DIR``; see :mod:`.cli` (and
:mod:`.cli_lifecycle` for ``koa-archive retract`` and ``unretract``).
"""

import logging

logger = logging.getLogger(__name__)
