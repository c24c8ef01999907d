"""Writing to and downloading from the archive: ``add``, file downloads and uploads.

:class:`RemoteTransfers` is the part of
:class:`~koa_middleware.client.remote_database.RemoteCalibrationDB` that sends
records and files to the archive and opens file downloads (which
:mod:`koa_middleware.client.downloads` reads, verified and bounded by the record's size).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from ..errors import (
    ArchiveError,
    CalibrationNotFoundError,
    ChecksumMismatchError,
)
from ..hashing import file_digest
from ..records import (
    ARCHIVE_REQUIRED_FIELDS,
    BOOLEAN_COLUMNS,
    SERVER_FIELDS,
    retraction_reason,
    safe_path,
    validate_cal_id,
    validate_md5,
    validate_record,
)
from .http import server_message

if TYPE_CHECKING:
    from .http import ArchiveSession

logger = logging.getLogger(__name__)

__all__ = ["RemoteTransfers"]

_UPLOAD_CHUNK = 1 << 20


class RemoteTransfers:
    """Adding records, downloading and uploading files (a part of ``RemoteCalibrationDB``)."""

    http: ArchiveSession
    instrument_url: str
    display_url: str
    batch_size: int

    if TYPE_CHECKING:

        def _require_v2(self, what: str) -> None: ...

        def query(self, **kwargs: Any) -> Any: ...

    def add(self, records: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> dict:
        """Add or update records on the archive (``POST BASE/INST/add``), in batches.

        Each batch is all or nothing on the archive. Server-set fields
        (``last_updated``, ``seq``) are not sent. Upload a record's file with
        :meth:`upload_calibration_file` before adding the record.

        Parameters
        ----------
        records : dict | Iterable[dict]
            One record or many.

        Returns
        -------
        dict
            ``{"added": N, "ids": [...]}`` over all batches.

        Raises
        ------
        InvalidRecordError
            If a record breaks the record rules (checked before anything is sent).
        AuthenticationError
            401, or 403 for a credential without the 'write' scope.
        ArchiveError
            If the archive refuses a batch (e.g. 409: a record's file_md5
            disagrees with the stored file).

        Examples
        --------
        >>> remote.add([record])  # doctest: +SKIP
        {'added': 1, 'ids': ['...']}
        """
        if isinstance(records, Mapping):
            records = [records]
        clean = [
            _wire_booleans(
                validate_record(rec, required=ARCHIVE_REQUIRED_FIELDS, drop=SERVER_FIELDS)
            )
            for rec in records
        ]
        added = 0
        ids: list[str] = []
        for start in range(0, len(clean), self.batch_size):
            batch = clean[start : start + self.batch_size]
            response = self.http.send(
                "POST", f"{self.instrument_url}/add", json_body=batch, idempotent=False
            )
            data = self.http.json(response, "add calibration records")
            if not isinstance(data, Mapping):
                raise self.http.shape_error(response, '{"added": N, "ids": [...]}')
            added += int(data.get("added", len(batch)))
            ids.extend(str(i) for i in data.get("ids") or [rec["id"] for rec in batch])
        if clean:
            logger.info("Added %d record(s) to the archive at %s.", added, self.display_url)
        return {"added": added, "ids": ids}

    def retract(self, ids: Iterable[str], reason: str) -> list[str]:
        """Retract calibrations on the archive (``POST BASE/INST/retract``, v2, write scope).

        The records and files stay; each record gains ``retracted_at`` and
        ``retract_reason`` and a new ``seq``, so every client learns of it on
        its next sync, and v1 queries stop returning it.

        Parameters
        ----------
        ids : iterable of str
            Calibration ids (all must be on the archive).
        reason : str
            Why.

        Returns
        -------
        list of str
            The ids retracted.

        Raises
        ------
        InvalidRecordError
            If an id is malformed or the reason empty (checked before sending).
        CalibrationNotFoundError
            If the archive lacks an id (nothing is retracted then).
        AuthenticationError
            401, or 403 for a credential without the 'write' scope.

        Examples
        --------
        >>> remote.retract([cal_id], "hot pixels")  # doctest: +SKIP
        ['1b4e28ba-2fa1-4d2b-883f-0016d3cca427']
        """
        body = {"ids": [validate_cal_id(i) for i in ids], "reason": retraction_reason(reason)}
        return self._lifecycle_request("retract", body)

    def unretract(self, ids: Iterable[str]) -> list[str]:
        """Make retracted calibrations live again on the archive (``POST BASE/INST/unretract``).

        Raises
        ------
        CalibrationNotFoundError
            If the archive lacks an id.
        AuthenticationError
            401, or 403 for a credential without the 'write' scope.
        """
        return self._lifecycle_request("unretract", {"ids": [validate_cal_id(i) for i in ids]})

    def _lifecycle_request(self, action: str, body: dict) -> list[str]:
        self._require_v2(f"{action}ion" if action.endswith("t") else action)
        if not body["ids"]:
            return []
        response = self.http.send(
            "POST", f"{self.instrument_url}/{action}", json_body=body, idempotent=True
        )
        if response.status_code == 404:
            raise CalibrationNotFoundError(
                f"The archive at {self.display_url} refused to {action}: {server_message(response)}"
            )
        data = self.http.json(response, f"{action} calibrations")
        done = data.get(f"{action}ed") if isinstance(data, Mapping) else None
        if not isinstance(done, list):
            raise self.http.shape_error(response, f'{{"{action}ed": [ids]}}')
        logger.info(
            "%sed %d calibration(s) on %s", action.capitalize(), len(done), self.display_url
        )
        return [str(i) for i in done]

    # ------------------------------------------------------------------- files

    @contextlib.contextmanager
    def open_file_stream(
        self, cal_id: str, headers: Mapping[str, str] | None = None
    ) -> Iterator[httpx.Response]:
        """Open the raw file download of ``cal_id`` (v2 ``GET BASE/INST/files/ID``).

        Yields the streamed answer (200, 206 or 416; other statuses raise).
        :mod:`koa_middleware.client.downloads` reads it with resume and verification.
        """
        cal_id = validate_cal_id(cal_id)
        response = self.http.send(
            "GET",
            f"{self.instrument_url}/files/{cal_id}",
            headers=headers,
            idempotent=True,
            stream=True,
        )
        try:
            if response.status_code not in (200, 206, 416):
                self.http.read_error(response)
                self.http.raise_for_status(response, f"send the file of calibration {cal_id}")
            yield response
        finally:
            response.close()

    @contextlib.contextmanager
    def open_zip_stream(self, cal_id: str) -> Iterator[httpx.Response]:
        """Open the v1 zip download of ``cal_id`` (``GET BASE/INST/download?cal_id=ID``)."""
        cal_id = validate_cal_id(cal_id)
        response = self.http.send(
            "GET",
            f"{self.instrument_url}/download",
            params={"cal_id": cal_id},
            idempotent=True,
            stream=True,
        )
        try:
            if response.status_code != 200:
                self.http.read_error(response)
                self.http.raise_for_status(response, f"send the file of calibration {cal_id}")
            yield response
        finally:
            response.close()

    def download_calibration_file(
        self,
        cal_id: str,
        output_dir: str | os.PathLike,
        output_path: str | os.PathLike | None = None,
        *,
        record: Mapping[str, Any] | None = None,
        progress: bool | None = None,
    ) -> str:
        """Download the file of calibration ``cal_id``, verified, into ``output_dir``.

        The file appears atomically under its record's ``filename`` (or at
        ``output_path``) only after its size and MD5 matched the record. A
        download that breaks off leaves a hidden ``.<id>.download`` next to it,
        which the next call resumes (v2).

        Parameters
        ----------
        cal_id : str
            The calibration id.
        output_dir : str | PathLike
            The folder to write into (created if needed).
        output_path : str | PathLike | None
            Where to write instead of ``output_dir/<filename>``.
        record : dict | None
            The calibration's record, when the caller has it (saves a query).
        progress : bool | None
            Show a progress bar (only ever on a terminal; see
            :func:`koa_middleware.client.downloads.progress_enabled`).

        Returns
        -------
        str
            The absolute path of the file.

        Raises
        ------
        CalibrationNotFoundError
            If the archive has no such record.
        ChecksumMismatchError
            If the bytes do not match the record's ``file_size`` / ``file_md5``;
            nothing is left behind.
        InvalidRecordError
            If the record's file name is not a plain name.
        ArchiveError, RemoteUnavailableError, AuthenticationError
            As for every request.

        Examples
        --------
        >>> remote.download_calibration_file(cal_id, "/tmp/cals")  # doctest: +SKIP
        '/tmp/cals/hispec_dark_001.fits'
        """
        from .downloads import download_record_file

        cal_id = validate_cal_id(cal_id)
        if record is None:
            record = self.query(cal_id=cal_id)
            if not record:
                raise CalibrationNotFoundError(
                    f"The archive at {self.display_url} has no calibration {cal_id}."
                )
        else:
            record = validate_record(record)
        output_dir = Path(output_dir).expanduser().absolute()
        if output_path is None:
            destination = safe_path(output_dir, record["filename"])
        else:
            destination = Path(output_path).expanduser().absolute()
        destination.parent.mkdir(parents=True, exist_ok=True)
        partial = destination.parent / f".{cal_id}.download"
        download_record_file(self, record, destination, partial=partial, progress=progress)
        return str(destination)

    def upload_calibration_file(
        self, cal_id: str, path: str | os.PathLike, md5: str | None = None
    ) -> int:
        """Upload a calibration's file to the archive (v2 ``PUT BASE/INST/files/ID``).

        The archive checks the length and MD5 before it makes the file visible.

        Parameters
        ----------
        cal_id : str
            The calibration id.
        path : str | PathLike
            The local file.
        md5 : str | None
            Its MD5 (the record's ``file_md5``); computed from the file when None.
            The file is always hashed, and a disagreement is refused here.

        Returns
        -------
        int
            201 when stored, 200 when the same bytes were already there.

        Raises
        ------
        ChecksumMismatchError
            If the file does not match ``md5``, or the archive found a mismatch (422).
        ArchiveError
            409 when different bytes are already stored for this id, or if the
            archive speaks only protocol 1.
        AuthenticationError
            401, or 403 for a token without the 'write' scope.

        Examples
        --------
        >>> remote.upload_calibration_file(record["id"], path, record["file_md5"])  # doctest: +SKIP
        201
        """
        self._require_v2("file upload")
        cal_id = validate_cal_id(cal_id)
        path = Path(path)
        actual_md5, size = file_digest(path)
        if md5 is not None and validate_md5(md5) != actual_md5:
            raise ChecksumMismatchError(
                f"{path.name} has MD5 {actual_md5} but its record says {md5}; the local file "
                "changed after it was registered: register it again before pushing."
            )

        def body() -> Iterator[bytes]:
            with open(path, "rb") as handle:
                while chunk := handle.read(_UPLOAD_CHUNK):
                    yield chunk

        response = self.http.send(
            "PUT",
            f"{self.instrument_url}/files/{cal_id}",
            content=body,
            headers={"X-File-MD5": actual_md5, "Content-Length": str(size)},
            idempotent=True,
        )
        status = response.status_code
        if status == 422:
            raise ChecksumMismatchError(
                f"The archive at {self.display_url} found that the upload of {path.name} "
                f"does not match MD5 {actual_md5} and size {size} ({server_message(response)}); "
                "nothing was stored. Try again."
            )
        if status == 409:
            raise ArchiveError(
                f"The archive at {self.display_url} already holds different bytes for "
                f"calibration {cal_id} (409); a calibration's file never changes: register "
                "the new file as a new calibration (new id or version).",
                url=self.display_url,
                status=status,
            )
        self.http.raise_for_status(response, f"store the file of calibration {cal_id}")
        return status


def _wire_booleans(record: dict) -> dict:
    """Boolean columns go as JSON ``true``/``false``, as the Keck service stores them."""
    for column in BOOLEAN_COLUMNS:
        if record.get(column) is not None:
            record[column] = bool(record[column])
    return record
