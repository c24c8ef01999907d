"""Reading the zip of a v1 download safely: one plain member, named as its record says.

The v1 route ``GET download?cal_id=ID`` answers with a zip that must hold
exactly the calibration file. Anything else (two members, ``../`` or absolute
names, folders, links, encrypted members, another name, more bytes than the
header says) is refused, and the member's bytes are streamed into a file the
caller chose, never written under a name taken from the zip.
"""

from __future__ import annotations

import logging
import stat
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ArchiveError, ChecksumMismatchError
from .incoming import IncomingFile

logger = logging.getLogger(__name__)

__all__ = ["extract_single_member"]

_CHUNK = 1 << 20


def extract_single_member(
    zip_path: Path, record: Mapping[str, Any], incoming: IncomingFile | Path
) -> None:
    """Extract the one member of a v1 download zip, refusing anything unexpected.

    The zip must hold exactly one regular member whose name equals the record's
    ``filename`` (so ``../`` names, absolute names, folders, links and other
    names are all refused), unencrypted, no larger than the record's
    ``file_size``. The member is streamed, never written under its own name.

    Parameters
    ----------
    zip_path : Path
        The downloaded zip.
    record : Mapping
        The calibration record.
    incoming : Path
        Where to write the member's bytes (a path, or an open partial file).

    Raises
    ------
    ArchiveError
        If the zip is invalid or holds anything but that one member.
    ChecksumMismatchError
        If the member's size differs from the record's ``file_size``.
    """
    filename = record["filename"]
    if isinstance(incoming, Path):
        target = IncomingFile(incoming, record.get("file_size"))
        target.open(resume=False)
        try:
            extract_single_member(zip_path, record, target)
        finally:
            target.close()
        return

    def refuse(problem: str) -> ArchiveError:
        return ArchiveError(
            f"The archive's download of calibration {record['id']} ({filename}) {problem}; "
            f"a download must be a zip with exactly one member named {filename!r}. Nothing "
            "was extracted; report it to the archive operators."
        )

    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise refuse(f"is not a valid zip ({exc})") from exc
    with archive:
        members = archive.infolist()
        if len(members) != 1:
            names = ", ".join(repr(m.filename) for m in members[:5])
            raise refuse(f"holds {len(members)} members ({names})")
        member = members[0]
        if member.filename != filename:
            raise refuse(f"holds a member named {member.filename!r}")
        kind = stat.S_IFMT(member.external_attr >> 16) if member.create_system == 3 else 0
        if member.is_dir() or kind not in (0, stat.S_IFREG):
            raise refuse("holds a folder or link, not a plain file")
        if member.flag_bits & 0x1:
            raise refuse("holds an encrypted member")
        expected = record.get("file_size")
        if expected is not None and member.file_size != int(expected):
            raise ChecksumMismatchError(
                f"The download of {filename} holds {member.file_size} bytes but its record "
                f"says {expected}; nothing was stored. Report it to the archive operators."
            )
        # Never more than the record's size (else the member's declared size).
        limit = member.file_size if expected is None else int(expected)
        try:
            with archive.open(member) as source:
                while chunk := source.read(_CHUNK):
                    if incoming.size + len(chunk) > limit:
                        raise ChecksumMismatchError(
                            f"The download of {filename} holds more than {limit} bytes, more "
                            "than its record and zip header say; nothing was stored. Report "
                            "it to the archive operators."
                        )
                    incoming.write(chunk)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
            raise refuse(f"is corrupt ({exc})") from exc
