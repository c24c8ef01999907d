"""Publishing calibration files that have no pipeline behind them (``koa-archive ingest``).

A file's record comes from its FITS header, read through
:class:`koa_middleware.fits.FITSCalibration` when that module and astropy are
available, and from a JSON sidecar ``FILE.json`` (a record object), whose fields
win over the header's. The archive completes what is missing: ``id`` (uuid4),
``origin`` (default ``KECK``), ``filename`` (the file's name) and
``cal_version``: the next version of the record's family, ``001`` for a new
family. It always sets ``file_md5`` and ``file_size`` from the bytes.

The instrument's profile (:func:`koa_middleware.profiles.load_profile`, the
same one the store and ``koa-cal`` use) says what a family is (``origin`` plus
the profile's family columns for the record's ``cal_type``; ``--family-column``
replaces the profile's), maps FITS keywords to columns and types, and names the
calibration types and columns a record must have.

Each file is published on its own: its bytes are stored (verified, atomically)
before its record is added, so the archive never holds a record whose file it
cannot serve.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidRecordError
from ..profiles import InstrumentProfile, load_profile
from ..records import ARCHIVE_REQUIRED_FIELDS, SERVER_FIELDS, new_cal_id, validate_record
from .catalog import Catalog
from .problems import ArchiveProblem
from .storage_interface import FileStorage

logger = logging.getLogger(__name__)

__all__ = ["FITS_SUFFIXES", "IngestResult", "read_record", "ingest_file"]

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fits.fz", ".fz")


@dataclass(frozen=True)
class IngestResult:
    """What ``ingest`` published for one file."""

    id: str
    filename: str
    cal_version: str
    stored: bool


def _is_fits(path: Path) -> bool:
    return path.name.lower().endswith(FITS_SUFFIXES)


def read_record(path: Path, header_map: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return the record of ``path`` from its FITS header and/or its JSON sidecar.

    Parameters
    ----------
    path : Path
        The calibration file.
    header_map : Mapping | None
        Record column -> FITS keyword(s), changes to
        :data:`koa_middleware.fits.DEFAULT_HEADER_MAP` (an instrument profile's).

    Raises
    ------
    InvalidRecordError
        If there is neither a readable FITS header nor a sidecar, or the sidecar is
        not a JSON object.
    """
    sidecar = path.with_name(path.name + ".json")
    fields: dict[str, Any] = {}
    if sidecar.is_file():
        try:
            fields = json.loads(sidecar.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise InvalidRecordError(f"{sidecar} is not valid JSON ({exc}); fix it.") from None
        if not isinstance(fields, dict):
            raise InvalidRecordError(f"{sidecar} must hold one JSON object (the record).")
    if _is_fits(path):
        try:
            from ..fits import FITSCalibration  # lazy: needs astropy, the [fits] extra
        except ImportError as exc:
            if not fields:
                raise InvalidRecordError(
                    f"{path.name}: reading FITS headers needs astropy ({exc}); "
                    "pip install 'koa_middleware[fits]', or write the record to "
                    f"{sidecar.name}."
                ) from None
            logger.warning("Cannot read FITS headers (%s); using %s alone", exc, sidecar.name)
        else:
            return dict(FITSCalibration(path, header_map, **fields).to_record())
    if not fields:
        raise InvalidRecordError(
            f"{path.name} has no record: it is not a FITS file and {sidecar.name} does not "
            "exist. Write the record (cal_type, datetime_obs, ...) as JSON to that file."
        )
    return fields


def ingest_file(
    catalog: Catalog,
    storage: FileStorage,
    instrument: str,
    path: Path,
    origin: str = "KECK",
    family_columns: Sequence[str] = (),
    profile: InstrumentProfile | None = None,
) -> IngestResult:
    """Store one file and add its record.

    Parameters
    ----------
    catalog : Catalog
        The archive's catalog.
    storage : FileStorage
        The archive's file storage.
    instrument : str
        The instrument to publish under.
    path : Path
        The calibration file.
    origin : str
        The origin of records that name none.
    family_columns : sequence of str
        Columns that, beside ``cal_type`` and ``origin``, define a version family;
        empty uses the profile's columns for the record's ``cal_type``.
    profile : InstrumentProfile | None
        The instrument's profile; None loads it (:func:`load_profile`).

    Returns
    -------
    IngestResult

    Raises
    ------
    InvalidRecordError
        If the record breaks a rule, or names a ``file_md5``/``file_size`` that
        differs from the file.
    ArchiveProblem
        If the archive refuses it (e.g. its id already has different bytes).

    Examples
    --------
    >>> ingest_file(catalog, storage, "hispec", Path("dark_yj.fits"))  # doctest: +SKIP
    IngestResult(id='...', filename='dark_yj.fits', cal_version='001', stored=True)
    """
    profile = profile or load_profile(instrument)
    fields = read_record(path, profile.header_map)
    record = {k: v for k, v in profile.check_record(fields).items() if k not in SERVER_FIELDS}
    record.setdefault("filename", path.name)
    record["id"] = record.get("id") or new_cal_id()
    record["origin"] = record.get("origin") or origin
    declared = {k: record.get(k) for k in ("file_md5", "file_size")}
    pending = storage.begin(instrument, record["id"])
    try:
        with open(path, "rb") as source:
            while chunk := source.read(1 << 20):
                pending.write(chunk)
        stored = pending.finish()
        for key, actual in (("file_md5", stored.md5), ("file_size", stored.size)):
            if declared[key] not in (None, actual):
                raise InvalidRecordError(
                    f"{path.name}: the record says {key} {declared[key]!r} but the file has "
                    f"{actual!r}; fix the record or the file."
                )
        record.update(file_md5=stored.md5, file_size=stored.size)
        required = [f for f in ARCHIVE_REQUIRED_FIELDS if f != "cal_version"]
        record = validate_record(record, required=required)
        entry, placed = catalog.enter_file(
            instrument,
            record["id"],
            stored,
            lambda: storage.place(pending, instrument, record["id"]),
        )
    finally:
        pending.discard()
    if entry is None:  # a file placed just before a crash, never entered
        found = storage.digest(instrument, record["id"])
        entry, _ = catalog.enter_file(instrument, record["id"], found)
    if entry != stored:
        raise ArchiveProblem(
            f"{path.name}: different bytes are already stored for id {record['id']}; "
            "give the record a new id."
        )
    if not family_columns:
        family_columns = [
            c for c in profile.family_columns_for(record["cal_type"]) if c != "origin"
        ]
    family = [c for c in family_columns if c != "cal_type"]
    catalog.add(instrument, [record], version_family=family)
    logger.info("Ingested %s as %s version %s", path.name, record["id"], record["cal_version"])
    return IngestResult(record["id"], record["filename"], record["cal_version"], placed)
