"""Verified, atomic, resumable downloads of calibration files.

A download is written under a temporary name, hashed while it arrives, checked
against the record's ``file_size`` and ``file_md5``, and only then renamed into
place, so a crash at any instant leaves either no file or the complete, correct
one. Into the cache, :func:`fetch_to_cache` takes the per-id inter-process lock,
so several processes asking for one file cause one download.

- v2 archives: ``GET files/ID``; an interrupted download resumes with
  ``Range: bytes=N-`` (also across processes: the partial file of a killed
  process is picked up by the next one).
- v1 archives: the zip of ``GET download?cal_id=ID`` is read safely: exactly
  one plain member whose name equals the record's ``filename``; anything else
  (two members, ``../`` names, links, another name) is refused.

Progress bars (tqdm) appear only on a terminal; see :func:`progress_enabled`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Protocol

import httpx
from tqdm import tqdm

from ..cache.layout import (
    CacheLayout,
    cache_full_error,
    create_private_file,
    is_disk_full,
    place_file,
)
from ..errors import (
    ArchiveError,
    CalibrationNotFoundError,
    ChecksumMismatchError,
    KOAError,
    RemoteUnavailableError,
)
from ..hashing import verify_file
from ..records import ascii_int, is_cal_id
from .http import redact_url
from .incoming import IncomingFile
from .progress import progress_bar, progress_enabled  # re-exported: callers import them here
from .zip_member import extract_single_member

logger = logging.getLogger(__name__)

#: ``bytes FIRST-LAST/TOTAL`` (TOTAL may be ``*``): what a 206 answer's Content-Range says.
_CONTENT_RANGE = re.compile(r"bytes +([0-9]+)-([0-9]+)/([0-9]+|\*)", re.IGNORECASE)
#: The most characters of a bad header value shown in an error.
_SHOWN_CHARS = 60


class FileSource(Protocol):
    """What a download needs of the archive client; the client class has all of it.

    Naming it here keeps this module free of the client class, which itself
    calls :func:`download_record_file`.
    """

    protocol: int
    retries: int
    backoff: float
    display_url: str

    def open_file_stream(
        self, cal_id: str, headers: Mapping[str, str] | None = None
    ) -> contextlib.AbstractContextManager[httpx.Response]: ...

    def open_zip_stream(self, cal_id: str) -> contextlib.AbstractContextManager[httpx.Response]: ...

    def query(self, **kwargs: Any) -> Any: ...


__all__ = [
    "FileSource",
    "progress_enabled",
    "progress_bar",
    "fetch_to_cache",
    "download_record_file",
    "prefetch",
]


def _check_against_record(name: str, md5: str, size: int, record: Mapping[str, Any]) -> None:
    """Compare a download's size and MD5 (computed while it arrived) with its record."""
    expected_size = record.get("file_size")
    if expected_size is not None and size != int(expected_size):
        raise ChecksumMismatchError(
            f"The download of {name} has {size} bytes but its record says {expected_size}; "
            "nothing was stored. Try again; if it persists, report it to the archive operators."
        )
    expected_md5 = record.get("file_md5")
    if expected_md5 and md5 != str(expected_md5).lower():
        raise ChecksumMismatchError(
            f"The download of {name} has MD5 {md5} but its record says {expected_md5}; "
            "nothing was stored. The archive's copy is corrupt: report it to the archive "
            "operators."
        )


def download_record_file(
    remote_db: FileSource,
    record: Mapping[str, Any],
    destination: Path,
    *,
    partial: Path,
    progress: bool | None = None,
) -> Path:
    """Download a record's file to ``destination``: verified, then renamed into place.

    Parameters
    ----------
    remote_db : FileSource
        The archive client.
    record : Mapping
        The calibration record, validated where it came in (the local
        database or the archive client): ``id``, ``filename``; ``file_size``
        and ``file_md5`` are checked when present.
    destination : Path
        The final path.
    partial : Path
        Where the download grows; on the same file system as ``destination``.
        A partial file left there by an interrupted download is resumed (v2).
        The caller makes sure only one writer uses it (a lock).
    progress : bool | None
        Show a progress bar (terminal only).

    Returns
    -------
    Path
        ``destination``.

    Raises
    ------
    ChecksumMismatchError
        If the bytes do not match the record; nothing is left behind.
    ArchiveError, RemoteUnavailableError
        If the archive refuses or stays unreachable through all retries.
    """
    cal_id = record["id"]
    incoming = IncomingFile(partial, record.get("file_size"))
    restarted = False
    while True:
        try:
            if remote_db.protocol >= 2:
                _download_raw(remote_db, record, incoming, progress)
            else:
                _download_zip(remote_db, record, incoming, progress)
            incoming.close(sync=True)
            _check_against_record(record["filename"], incoming.hexdigest(), incoming.size, record)
            break
        except ChecksumMismatchError:
            incoming.discard()
            if incoming.resumed and not restarted:
                # The kept part may be what went wrong: one more try, from the first byte
                # (only one: an archive that keeps failing so must not keep us here).
                restarted = True
                logger.warning(
                    "The resumed download of %s does not verify; downloading it again.",
                    record["filename"],
                )
                incoming = IncomingFile(partial, record.get("file_size"))
                continue
            raise
        except OSError as exc:
            if not is_disk_full(exc):
                _keep_for_resume(incoming)
                raise
            # No room: keep nothing, so the space the partial file took is free again.
            incoming.discard()
            what = f"the download of {record['filename']}"
            raise cache_full_error(exc, partial.parent, record.get("file_size"), what) from exc
        except BaseException:
            _keep_for_resume(incoming)
            raise
    place_file(partial, destination, synced=True)
    logger.info("Downloaded calibration %s to %s (%d bytes).", cal_id, destination, incoming.size)
    return destination


def _keep_for_resume(incoming: IncomingFile) -> None:
    """Keep what a broken download received for the next attempt to resume; an empty file goes."""
    if incoming.size:
        incoming.close()
    else:
        incoming.discard()


def _download_raw(
    remote_db: FileSource,
    record: Mapping[str, Any],
    incoming: IncomingFile,
    progress: bool | None,
) -> None:
    """v2: ``GET files/ID``, resuming with ``Range`` after an interruption."""
    cal_id = record["id"]
    expected_md5 = record.get("file_md5")
    incoming.open(resume=True)
    failures = 0
    with progress_bar(record.get("file_size"), record["filename"], progress) as bar:
        bar.update(incoming.size)
        while True:
            headers = {}
            if incoming.size:
                headers["Range"] = f"bytes={incoming.size}-"
                if expected_md5:
                    # Resume only if the archive still serves the same bytes.
                    headers["If-Range"] = f'"{expected_md5}"'
            try:
                with remote_db.open_file_stream(cal_id, headers) as response:
                    if not _accept_resume(response, record, incoming, bar):
                        continue
                    limit = _size_limit(record, response)
                    for chunk in response.iter_raw():
                        if incoming.size + len(chunk) > limit:
                            raise _too_large(record, limit)
                        incoming.write(chunk)
                        bar.update(len(chunk))
                    return
            except httpx.TransportError as exc:
                failures += 1
                delay = _retry_delay(
                    remote_db,
                    record,
                    failures,
                    exc,
                    f"{incoming.size} bytes are kept and the next attempt resumes from there.",
                )
                logger.warning(
                    "The download of %s broke off at %d bytes (%s); resuming in %.1f s.",
                    record["filename"],
                    incoming.size,
                    type(exc).__name__,
                    delay,
                )
                time.sleep(delay)
                incoming.open(resume=True)


def _retry_delay(
    remote_db: FileSource,
    record: Mapping[str, Any],
    failures: int,
    exc: Exception,
    advice: str,
) -> float:
    """Seconds to wait before retrying a broken download; raise once retries are used up."""
    if failures > remote_db.retries:
        raise RemoteUnavailableError(
            f"The download of {record['filename']} from {remote_db.display_url} failed "
            f"{failures} times ({type(exc).__name__}); {advice}",
            url=remote_db.display_url,
        ) from exc
    return min(30.0, remote_db.backoff * 2 ** (failures - 1))


def _accept_resume(
    response: httpx.Response, record: Mapping[str, Any], incoming: IncomingFile, bar: tqdm
) -> bool:
    """Line the partial file up with the answer; False when the request must be repeated.

    The request asked for ``Range: bytes=N-`` exactly when the partial file
    holds N > 0 bytes. Repeating it from the first byte is the remedy for an
    answer that does not fit the partial file; an answer that does not fit a
    request for the whole file is refused, so a broken archive cannot keep the
    download going round.

    Raises
    ------
    ArchiveError
        If the answer's Content-Range is invalid, or it does not fit a request
        for the whole file.
    """
    if response.status_code == 416:
        if not incoming.size:
            raise _bad_answer(
                response,
                record,
                "answered 416 (range not satisfiable) to a request for the whole file",
            )
        # The partial file is not a prefix of the archive's file: start over.
        logger.info("The archive refused to resume %s; starting over.", incoming.path.name)
        incoming.open(resume=False)
        bar.reset()
        return False
    if response.status_code == 206:
        first, _, _ = _content_range(response, record)
        if first == incoming.size:
            return True
        if not incoming.size:
            raise _bad_answer(
                response,
                record,
                f"sent its bytes from {first} on (Content-Range "
                f"{_shown(response.headers.get('content-range'))}) when asked for the whole file",
            )
        logger.info(
            "The archive resumed %s at byte %d, not %d; starting over.",
            incoming.path.name,
            first,
            incoming.size,
        )
        incoming.open(resume=False)
        bar.reset()
        return False
    if incoming.size:
        # A 200 to a range request is the whole file (it changed, or no ranges).
        incoming.open(resume=False)
        bar.reset()
    return True


def _content_range(
    response: httpx.Response, record: Mapping[str, Any]
) -> tuple[int, int, int | None]:
    """A 206 answer's Content-Range: its first and last byte, and the file's size (or None).

    Raises
    ------
    ArchiveError
        If the header is missing or invalid: not ``bytes FIRST-LAST/TOTAL``
        (TOTAL may be ``*``) in ASCII digits, a number of 2**63 or more, or
        LAST before FIRST or not before TOTAL.
    """
    value = response.headers.get("content-range")
    match = _CONTENT_RANGE.fullmatch(value.strip()) if value else None
    if match is not None:
        first, last = ascii_int(match.group(1)), ascii_int(match.group(2))
        total = None if match.group(3) == "*" else ascii_int(match.group(3))
        if (
            first is not None
            and last is not None
            and first <= last
            and (match.group(3) == "*" or (total is not None and last < total))
        ):
            return first, last, total
    raise _bad_answer(
        response,
        record,
        f"sent an invalid Content-Range {_shown(value)} (expected 'bytes FIRST-LAST/TOTAL', "
        "byte counts in ASCII digits below 2**63)",
    )


def _declared_size(response: httpx.Response, record: Mapping[str, Any]) -> int | None:
    """The whole file's size the archive declares (Content-Range total, else Content-Length).

    Raises
    ------
    ArchiveError
        If the Content-Range or Content-Length that declares it is invalid.
    """
    if response.status_code == 206:
        return _content_range(response, record)[2]
    length = response.headers.get("content-length")
    if response.status_code != 200 or length is None:
        return None
    size = ascii_int(length.strip())
    if size is None:
        raise _bad_answer(
            response,
            record,
            f"sent an invalid Content-Length {_shown(length)} (expected a byte count in "
            "ASCII digits below 2**63)",
        )
    return size


def _size_limit(record: Mapping[str, Any], response: httpx.Response) -> int:
    """The most bytes a file download may hold: the record's file_size, else the declared size."""
    size = record.get("file_size")
    if size is None:
        size = _declared_size(response, record)
    return sys.maxsize if size is None else int(size)


def _shown(value: str | None) -> str:
    """A header value as an error shows it: quoted, and cut short when long."""
    if value is None:
        return "(none)"
    if len(value) > _SHOWN_CHARS:
        return repr(value[:_SHOWN_CHARS]) + f"... ({len(value)} characters)"
    return repr(value)


def _bad_answer(response: httpx.Response, record: Mapping[str, Any], what: str) -> ArchiveError:
    """The error for a file answer no honest archive sends; ``what`` says what it did."""
    display = redact_url(str(response.request.url))
    return ArchiveError(
        f"The archive at {display} {what} (file {record['filename']}, calibration "
        f"{record['id']}); the download stopped there and nothing was stored. Try again; if "
        "it persists, report it to the archive operators.",
        url=display,
        status=response.status_code,
    )


def _zip_size_limit(record: Mapping[str, Any], response: httpx.Response) -> int:
    """The most bytes the v1 zip of a file may hold: the file, plus what zip adds around it.

    Headers, a central directory, comments and extra fields (each at most 64 KiB), and
    what deflate adds to data it cannot compress (a few bytes per 16 KiB).
    """
    size = record.get("file_size")
    if size is None:
        return _size_limit(record, response)
    size = int(size)
    return size + size // 1000 + 4 * 65536 + 4 * len(str(record["filename"]).encode())


def _too_large(record: Mapping[str, Any], limit: int, what: str = "file") -> ChecksumMismatchError:
    return ChecksumMismatchError(
        f"The archive sent more than {limit} bytes for the {what} of {record['filename']} "
        f"(calibration {record['id']}; its record says {record.get('file_size')} bytes); "
        "the download stopped there and nothing was stored. Report it to the archive operators."
    )


def _download_zip(
    remote_db: FileSource,
    record: Mapping[str, Any],
    incoming: IncomingFile,
    progress: bool | None,
) -> None:
    """v1: download the zip of ``download?cal_id=ID`` and extract its single member."""
    zip_path = incoming.path.with_name(incoming.path.name + ".zip")
    failures = 0
    try:
        while True:
            try:
                with (
                    remote_db.open_zip_stream(record["id"]) as response,
                    os.fdopen(create_private_file(zip_path), "wb") as handle,
                    progress_bar(None, record["filename"], progress) as bar,
                ):
                    limit = _zip_size_limit(record, response)
                    received = 0
                    for chunk in response.iter_raw():
                        received += len(chunk)
                        if received > limit:
                            raise _too_large(record, limit, "zip")
                        handle.write(chunk)
                        bar.update(len(chunk))
                break
            except httpx.TransportError as exc:
                # v1 has no ranges: a broken zip download starts over.
                failures += 1
                time.sleep(_retry_delay(remote_db, record, failures, exc, "try again later."))
        incoming.open(resume=False)
        extract_single_member(zip_path, record, incoming)
    except BaseException:
        incoming.discard()
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            zip_path.unlink()


def fetch_to_cache(
    remote_db: FileSource,
    record: Mapping[str, Any],
    layout: CacheLayout,
    *,
    progress: bool | None = None,
    force: bool = False,
) -> Path:
    """Put a record's file into the cache, verified; one download across processes.

    Takes the calibration's inter-process lock (:meth:`CacheLayout.lock`). When
    the file is already in the cache and matches the record (placed by this or
    another process), it is returned at once; otherwise it is downloaded
    (resuming a partial download left by an interrupted process), verified and
    renamed into place.

    Parameters
    ----------
    remote_db : FileSource
        The archive client.
    record : Mapping
        The calibration record, validated where it came in (the local
        database or the archive client); its file name is still refused if it
        would leave the cache.
    layout : CacheLayout
        The cache.
    progress : bool | None
        Show a progress bar (terminal only).
    force : bool
        Download a fresh copy even when a verified one is cached (``use_cached=False``).

    Returns
    -------
    Path
        The file in the cache.

    Raises
    ------
    InvalidRecordError
        If the record is invalid (e.g. its file name leaves the cache).
    ChecksumMismatchError
        If the download does not match the record; the cache keeps no trace of it.
    ArchiveError, RemoteUnavailableError, AuthenticationError
        If the archive refuses or cannot be reached.

    Examples
    --------
    >>> path = fetch_to_cache(remote, record, CacheLayout(cache_dir, "hispec"))  # doctest: +SKIP
    """
    cal_id = record["id"]
    destination = layout.path_for(record["filename"])  # refuses a name that leaves the cache
    layout.create()
    with layout.lock(cal_id):
        if not force and destination.is_file():
            try:
                verify_file(destination, record)
                logger.debug("Calibration %s is already cached at %s.", cal_id, destination)
                return destination
            except ChecksumMismatchError as exc:
                logger.warning(
                    "Cached %s does not match its record (%s); fetching it again.",
                    destination.name,
                    exc,
                )
        partial = layout.tmp_dir / f"{cal_id}.download"
        download_record_file(remote_db, record, destination, partial=partial, progress=progress)
    return destination


def prefetch(
    remote_db: FileSource,
    records: Iterable[Mapping[str, Any] | str],
    layout: CacheLayout,
    workers: int = 8,
    *,
    progress: bool | None = None,
    force: bool = False,
) -> list[str]:
    """Download many calibration files into the cache in parallel.

    Parameters
    ----------
    remote_db : FileSource
        The archive client (its connection pool is shared by the workers).
    records : Iterable[dict | str]
        Records, or ids (looked up on the archive).
    layout : CacheLayout
        The cache.
    workers : int
        Parallel downloads.
    progress : bool | None
        Show one progress bar over the files (terminal only).
    force : bool
        Download fresh copies even when verified ones are cached.

    Returns
    -------
    list[str]
        The cache paths, in the order of ``records``.

    Raises
    ------
    KOAError
        The first failure, after every other download finished (those that
        succeeded stay in the cache).

    Examples
    --------
    >>> prefetch(remote, records, CacheLayout(cache_dir, "hispec"), workers=8)  # doctest: +SKIP
    ['/.../calibrations/hispec/a.fits', ...]
    """
    items = list(records)
    workers = max(1, int(workers))

    def resolve(item: Mapping[str, Any] | str) -> Mapping[str, Any]:
        if isinstance(item, Mapping):
            return item
        if not is_cal_id(item):
            raise CalibrationNotFoundError(f"{item!r} is not a calibration id or record.")
        found = remote_db.query(cal_id=item)
        if not found:
            raise CalibrationNotFoundError(
                f"The archive at {remote_db.display_url} has no calibration {item}."
            )
        return found

    def one(item: Mapping[str, Any] | str) -> str:
        return str(fetch_to_cache(remote_db, resolve(item), layout, progress=False, force=force))

    paths: list[str | None] = [None] * len(items)
    errors: list[tuple[int, BaseException]] = []
    with (
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="koa-prefetch") as pool,
        progress_bar(len(items), "calibrations", progress, unit="file") as bar,
    ):
        futures = {pool.submit(one, item): index for index, item in enumerate(items)}
        for future in as_completed(futures):
            index = futures[future]
            try:
                paths[index] = future.result()
            except (KOAError, OSError) as exc:
                errors.append((index, exc))
            bar.update(1)
    if errors:
        errors.sort(key=lambda pair: pair[0])
        index, first = errors[0]
        logger.error("%d of %d downloads failed; the first: %s", len(errors), len(items), first)
        raise first
    return [str(path) for path in paths]
