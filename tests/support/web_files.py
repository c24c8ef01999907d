"""Files behind the record page in tests: small real FITS files, stored as a source keeps them.

:func:`fits_file` writes a FITS file by the standard's rules (80-character cards in
2,880-byte blocks, then the data padded likewise), without astropy. :func:`store_file`
puts a record and its file where the site reads them: on the archive through its
``PUT .../files/ID`` route with a write token, in a local cache in its calibrations
folder.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from koa_middleware.archive.tokens import TokenStore

from .web_sites import Site

BLOCK = 2880


def card(keyword: str, value: Any = None, comment: str = "") -> bytes:
    """One 80-byte card: ``KEYWORD = value / comment`` (strings quoted), or free text."""
    if value is None:
        text = f"{keyword:<8}{comment}"
    else:
        if isinstance(value, bool):
            shown = "T" if value else "F"
        elif isinstance(value, str):
            shown = "'" + value.replace("'", "''").ljust(8) + "'"
        else:
            shown = str(value)
        text = f"{keyword:<8}= {shown:>20}" + (f" / {comment}" if comment else "")
    return text.encode("latin-1")[:80].ljust(80)


def fits_file(cards: Sequence[tuple], data: bytes = b"", end: bool = True) -> bytes:
    """A FITS file: ``SIMPLE``, ``BITPIX``, ``NAXIS``, then ``cards``, ``END``, then ``data``."""
    header = card("SIMPLE", True) + card("BITPIX", 8) + card("NAXIS", 0)
    header += b"".join(card(*one) for one in cards)
    if end:
        header += card("END")
    header = header.ljust(-(-len(header) // BLOCK) * BLOCK, b" ")
    return header + data.ljust(-(-len(data) // BLOCK) * BLOCK, b"\0")


def with_file(record: dict[str, Any], data: bytes) -> dict[str, Any]:
    """The record with the MD5 and size of ``data``."""
    return {**record, "file_md5": hashlib.md5(data).hexdigest(), "file_size": len(data)}


def write_token(site: Site, name: str = "writer") -> str:
    """A new token of scope ``write`` on the site's archive."""
    return TokenStore(site.backend.engine).create(name, "write")


def store_file(site: Site, record: dict[str, Any], data: bytes) -> dict[str, Any]:
    """Add ``record`` (given the MD5 and size of ``data``) with its file; return the record."""
    record = with_file(record, data)
    if site.is_archive:
        token = write_token(site, f"uploader-{record['id'][:8]}")
        response = site.client.put(
            f"/api/calibrations/hispec/files/{record['id']}",
            content=data,
            headers={"X-File-MD5": record["file_md5"], "Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 201, response.text
        site.add([record])
    else:
        site.add([record])
        site.backend.layout.path_for(record["filename"]).write_bytes(data)
    return record
