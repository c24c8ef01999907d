"""Finding a stored file for a download: its catalog entry, then its bytes in storage.

Examples
--------
>>> entry = stored_entry(archive, "hispec", cal_id)  # doctest: +SKIP
>>> handle = open_stored(archive, "hispec", cal_id)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from typing import BinaryIO

from .catalog import StoredFile
from .problems import NotFound
from .state import Archive

logger = logging.getLogger(__name__)

__all__ = ["stored_entry", "open_stored"]


def stored_entry(archive: Archive, instrument: str, cal_id: str) -> StoredFile:
    """Return the catalog's entry of the file of ``cal_id``.

    Parameters
    ----------
    archive : Archive
        The running archive.
    instrument, cal_id : str
        The file.

    Returns
    -------
    StoredFile
        Its MD5 and size.

    Raises
    ------
    NotFound
        If no file is stored for ``cal_id``.

    Examples
    --------
    >>> stored_entry(archive, "hispec", cal_id).size  # doctest: +SKIP
    4096
    """
    entry = archive.catalog.file(instrument, cal_id)
    if entry is None:
        raise NotFound(
            f"No file is stored for calibration {cal_id} in {instrument}; upload it first."
        )
    return entry


def open_stored(
    archive: Archive, instrument: str, cal_id: str, start: int = 0, end: int | None = None
) -> BinaryIO:
    """Open the bytes of a file the catalog lists, positioned at ``start``.

    Parameters
    ----------
    archive : Archive
        The running archive.
    instrument, cal_id : str
        The file.
    start, end : int, int | None
        The bytes that will be read (``end`` exclusive; None: to the end).

    Returns
    -------
    BinaryIO
        A readable handle; the caller closes it.

    Raises
    ------
    NotFound
        If the catalog lists the file but storage lacks it (the operator must look).

    Examples
    --------
    >>> with open_stored(archive, "hispec", cal_id) as handle:  # doctest: +SKIP
    ...     head = handle.read(2880)
    """
    try:
        return archive.storage.open(instrument, cal_id, start, end)
    except FileNotFoundError:
        logger.error("File of %s/%s is in the catalog but missing from storage", instrument, cal_id)
        raise NotFound(
            f"The file of calibration {cal_id} is missing from storage; tell the archive operator."
        ) from None
