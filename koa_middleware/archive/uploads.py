"""What the archive does with an uploaded file: the upload policy, apart from HTTP.

An upload of ``cal_id`` goes through these decisions, in order:

1. :func:`check_declared_size`: a declared size above the limit is refused
   before a byte is read (413).
2. :func:`known_file`: when the id already has a file, the upload is decided
   without reading the body: the same MD5 is "already there" (200), another is
   a conflict (409); when only a record exists, its ``file_md5`` must match.
3. :func:`check_received`: the received bytes must have the declared length
   and MD5, or nothing is kept (422).
4. :func:`store_received`: under the catalog's write lock the file is placed in
   storage and entered in the catalog, checked against the id's record. A file
   that storage already holds but the catalog does not list (placed just
   before a crash) is adopted by its bytes. Whatever is entered afterwards is
   compared with what was received: different bytes are a conflict (409).

Examples
--------
>>> known = known_file(catalog, "hispec", cal_id, md5)  # doctest: +SKIP
>>> entry, placed = store_received(catalog, storage, "hispec", cal_id, received, pending)
...  # doctest: +SKIP
"""

from __future__ import annotations

import logging

from .catalog import Catalog, StoredFile
from .problems import ChecksumMismatch, Conflict, PayloadTooLarge
from .storage_interface import FileStorage, PendingFile

logger = logging.getLogger(__name__)

__all__ = [
    "check_declared_size",
    "known_file",
    "check_received",
    "store_received",
    "adopt_file",
    "different_bytes",
]


def check_declared_size(declared_size: int | None, limit: int | None) -> None:
    """Refuse an upload whose declared size is above the archive's limit.

    Parameters
    ----------
    declared_size : int | None
        ``X-File-Size`` or ``Content-Length``; None when neither was sent.
    limit : int | None
        ``--max-upload-bytes``; None for no limit.

    Raises
    ------
    PayloadTooLarge
        If both are known and the size is above the limit.

    Examples
    --------
    >>> check_declared_size(10, 100)
    """
    if limit is not None and declared_size is not None and declared_size > limit:
        raise PayloadTooLarge(
            f"The file has {declared_size} bytes; this archive accepts at most {limit}. "
            "Ask the operator to raise --max-upload-bytes."
        )


def known_file(catalog: Catalog, instrument: str, cal_id: str, md5: str) -> StoredFile | None:
    """Decide an upload without reading it when the id already has a file or a record.

    Parameters
    ----------
    catalog : Catalog
        The archive's catalog.
    instrument, cal_id : str
        Where the upload belongs.
    md5 : str
        The declared MD5 (``X-File-MD5``).

    Returns
    -------
    StoredFile | None
        The stored file when it has the same MD5 (nothing to receive); None when
        the body must be received.

    Raises
    ------
    Conflict
        If different bytes are stored for the id, or its record names another MD5.

    Examples
    --------
    >>> known_file(catalog, "hispec", cal_id, "0123...")  # doctest: +SKIP
    """
    entry = catalog.file(instrument, cal_id)
    if entry is not None:
        if entry.md5 != md5:
            raise different_bytes(cal_id, entry)
        return entry
    record = catalog.get(instrument, cal_id)
    if record is not None and record.get("file_md5") and record["file_md5"] != md5:
        raise Conflict(
            f"Calibration {cal_id} is recorded with file_md5 {record['file_md5']}, but this "
            f"upload declares {md5}; upload the file that belongs to the record."
        )
    return None


def check_received(received: StoredFile, md5: str, declared_size: int | None) -> None:
    """Check the received bytes against the declared length and MD5.

    Parameters
    ----------
    received : StoredFile
        MD5 and size of what arrived.
    md5 : str
        The declared MD5.
    declared_size : int | None
        The declared length, if any.

    Raises
    ------
    ChecksumMismatch
        If the length or the MD5 differs: the upload was cut short or damaged.

    Examples
    --------
    >>> check_received(StoredFile("d41d8cd98f00b204e9800998ecf8427e", 0),
    ...                "d41d8cd98f00b204e9800998ecf8427e", 0)
    """
    if declared_size is not None and received.size != declared_size:
        raise ChecksumMismatch(
            f"Received {received.size} bytes but {declared_size} were declared; "
            "the upload was cut short: send it again."
        )
    if received.md5 != md5:
        raise ChecksumMismatch(
            f"The received bytes have MD5 {received.md5}, not {md5} as declared in "
            "X-File-MD5; the file changed or was damaged on the way: send it again."
        )


def store_received(
    catalog: Catalog,
    storage: FileStorage,
    instrument: str,
    cal_id: str,
    received: StoredFile,
    pending: PendingFile,
) -> tuple[StoredFile, bool]:
    """Place a checked file in storage and enter it in the catalog (blocking).

    Parameters
    ----------
    catalog : Catalog
        The archive's catalog.
    storage : FileStorage
        The archive's file storage.
    instrument, cal_id : str
        Where the file belongs.
    received : StoredFile
        Its MD5 and size, already checked by :func:`check_received`.
    pending : PendingFile
        The finished, not yet visible file.

    Returns
    -------
    (entry, placed)
        The catalog's entry (equal to ``received``) and whether this upload
        placed the file (False: the same bytes were there already).

    Raises
    ------
    Conflict
        If the id's record names another MD5 or size, or different bytes are stored.

    Examples
    --------
    >>> entry, placed = store_received(catalog, storage, "hispec", cal_id, received, pending)
    ...  # doctest: +SKIP
    """
    entry, placed = catalog.enter_file(
        instrument, cal_id, received, lambda: storage.place(pending, instrument, cal_id)
    )
    if entry is None:
        # A file placed just before a crash, never entered: trust only its bytes.
        entry = adopt_file(catalog, storage, instrument, cal_id)
    if entry != received:
        raise different_bytes(cal_id, entry)
    return entry, placed


def adopt_file(catalog: Catalog, storage: FileStorage, instrument: str, cal_id: str) -> StoredFile:
    """Enter a file that storage holds but the catalog does not list, by its bytes.

    Parameters
    ----------
    catalog : Catalog
        The archive's catalog.
    storage : FileStorage
        The archive's file storage.
    instrument, cal_id : str
        The file's place.

    Returns
    -------
    StoredFile
        The catalog's entry afterwards (another process may have entered it first).

    Raises
    ------
    Conflict
        If the id's record names another MD5 or size than the stored bytes.

    Examples
    --------
    >>> adopt_file(catalog, storage, "hispec", cal_id)  # doctest: +SKIP
    """
    found = storage.digest(instrument, cal_id)
    logger.warning(
        "Adopting the file of %s/%s found in storage without a catalog entry", instrument, cal_id
    )
    entry, _ = catalog.enter_file(instrument, cal_id, found)
    assert entry is not None  # without ``place``, enter_file always returns the entry
    return entry


def different_bytes(cal_id: str, entry: StoredFile) -> Conflict:
    """The 409 for an upload whose bytes differ from the stored file of ``cal_id``.

    Parameters
    ----------
    cal_id : str
        The calibration id.
    entry : StoredFile
        The stored file.

    Returns
    -------
    Conflict
        To raise.

    Examples
    --------
    >>> raise different_bytes(cal_id, entry)  # doctest: +SKIP
    """
    return Conflict(
        f"Different bytes are already stored for {cal_id} (MD5 {entry.md5}, {entry.size} bytes); "
        "a stored file never changes: publish the new file under a new id."
    )
