"""A FITS primary header read from its first bytes, without astropy, within a bound.

The web pages take a frame's header as uploaded bytes, where astropy (an optional
extra) may be missing and a hostile upload must cost little: :func:`read_primary_header`
reads whole 2880-byte blocks of 80-character cards, at most ``max_blocks`` of them,
until the ``END`` card, and refuses anything else with a message that says what is
wrong. Values are read as the FITS standard writes them: quoted strings (``''`` is
a quote; ``CONTINUE`` cards extend a string ending in ``&``), ``T``/``F``,
integers and reals (``D`` exponents too); other values (complex numbers) and
commentary cards are left out. Only the primary header is read: a keyword that only
an extension's header holds is not found.

Examples
--------
>>> card = lambda text: text.ljust(80).encode()
>>> data = b"".join([card("SIMPLE  =                    T"), card("DATE-OBS= '2024-01-01'"),
...                  card("EXPTIME =                300.5 / seconds"), card("END")])
>>> read_primary_header(data.ljust(2880, b" "))
{'SIMPLE': True, 'DATE-OBS': '2024-01-01', 'EXPTIME': 300.5}
"""

from __future__ import annotations

import logging
import re
from typing import Any

from .errors import KOAError

logger = logging.getLogger(__name__)

__all__ = ["BLOCK", "CARD", "HeaderRefused", "read_primary_header", "split_quoted"]

#: Bytes of a FITS block; a header is a whole number of them.
BLOCK = 2880
#: Characters of a card.
CARD = 80
_INTEGER = re.compile(r"^[+-]?\d+\Z")
_REAL = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([ED][+-]?\d+)?\Z")
_KEYWORD = re.compile(r"^[A-Z0-9_-]{1,8}\Z")


class HeaderRefused(KOAError, ValueError):
    """The bytes are not a FITS header this reader accepts; the message says why."""


def read_primary_header(data: bytes, max_blocks: int = 100) -> dict[str, Any]:
    """The keywords and values of the primary header at the start of ``data``.

    Parameters
    ----------
    data : bytes
        The file's first bytes (at least the header; more is ignored).
    max_blocks : int
        Blocks read at most: a header without ``END`` in them is refused.

    Returns
    -------
    dict
        Keyword -> value (str, bool, int or float), in card order; a repeated
        keyword keeps its first value, as astropy does.

    Raises
    ------
    HeaderRefused
        If ``data`` does not start with ``SIMPLE``, holds bytes that are not
        printable ASCII, or has no ``END`` card in its first ``max_blocks`` blocks.
    """
    limit = max_blocks * BLOCK
    if not data.startswith(b"SIMPLE  ="):
        raise HeaderRefused(
            "the file does not begin with the card SIMPLE = T, so it is not a FITS file; "
            "choose the frame's FITS file."
        )
    header: dict[str, Any] = {}
    continued: str | None = None  # the keyword whose string CONTINUE cards extend
    for start in range(0, min(len(data), limit) - CARD + 1, CARD):
        raw = data[start : start + CARD]
        if any(byte < 0x20 or byte > 0x7E for byte in raw):
            raise HeaderRefused(
                f"card {start // CARD + 1} holds bytes that are not printable ASCII, which a "
                "FITS header never does; the file is not a FITS file or is damaged."
            )
        card = raw.decode("ascii")
        keyword = card[:8].rstrip()
        if keyword == "END":
            return header
        if keyword == "CONTINUE" and continued is not None:
            continued = _continue(header, continued, card[8:])
            continue
        continued = None
        if card[8:10] != "= " or not _KEYWORD.match(keyword) or keyword in header:
            continue  # commentary (COMMENT, HISTORY, blank), or a repeated keyword
        value, is_long = _value(card[10:])
        if value is not None:
            header[keyword] = value
            continued = keyword if is_long else None
    if len(data) < limit:
        blocks = len(data) // BLOCK
        raise HeaderRefused(
            f"the header ends without an END card after {blocks} block(s) of {BLOCK} bytes; "
            "the file is cut short or not a FITS file."
        )
    raise HeaderRefused(
        f"no END card in the first {max_blocks} blocks ({limit:,} bytes) of the header; "
        "a frame's header is far shorter, so this is not one this page reads."
    )


def _value(text: str) -> tuple[Any, bool]:
    """A card's value and whether it is a string ending in ``&`` (continued); None: none."""
    text = text.strip()
    if text.startswith("'"):
        quoted = split_quoted(text)
        if quoted is None:
            return None, False
        found = quoted[0]
        return (found[:-1], True) if found.endswith("&") else (found.rstrip(), False)
    token = text.split("/", 1)[0].strip()
    if token in ("T", "F"):
        return token == "T", False
    if _INTEGER.match(token):
        return int(token), False
    if _REAL.match(token.upper()):
        return float(token.upper().replace("D", "E")), False
    return None, False


def split_quoted(text: str) -> tuple[str, str] | None:
    """The string a quoted value holds (``''`` is one quote), and the text after it.

    ``text`` starts with the opening quote; None when the string is never closed.

    Examples
    --------
    >>> split_quoted("'it''s' / a comment")
    ("it's", ' / a comment')
    """
    chars, index = [], 1
    while index < len(text):
        char = text[index]
        if char == "'":
            if text[index + 1 : index + 2] == "'":
                chars.append("'")
                index += 2
                continue
            return "".join(chars), text[index + 1 :]
        chars.append(char)
        index += 1
    return None


def _continue(header: dict[str, Any], keyword: str, text: str) -> str | None:
    """Add a CONTINUE card's string to ``keyword``'s; the keyword while it goes on."""
    value, is_long = _value(text)
    if not isinstance(value, str):
        header[keyword] = str(header[keyword]).rstrip()
        return None
    header[keyword] = header[keyword] + value
    if not is_long:
        header[keyword] = header[keyword].rstrip()
        return None
    return keyword
