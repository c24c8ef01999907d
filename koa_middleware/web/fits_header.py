"""The primary header of a FITS file, read from its first blocks, and the diff of two.

A FITS header is a run of 80-character ASCII cards in blocks of 2,880 bytes, ended
by the card ``END``. The pages read at most :data:`MAX_HEADER_BLOCKS` blocks of a
stored file (never the whole file) and parse the cards here, without astropy (an
optional extra the archive does not need). A card's text is shown as it is: the
pages escape it, and a control character in it shows as ``\\x1b``.

Examples
--------
>>> card = lambda text: text.ljust(80).encode()
>>> data = card("SIMPLE  =                    T") + card("OBJECT  = 'dark'  / what") + card("END")
>>> header = parse_header(data.ljust(2880))
>>> [(c.keyword, c.value, c.comment) for c in header.cards]
[('SIMPLE', 'T', ''), ('OBJECT', 'dark', 'what')]
>>> header.complete
True
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from ..fits_cards import BLOCK, CARD, split_quoted

logger = logging.getLogger(__name__)

__all__ = [
    "BLOCK_BYTES",
    "CARD_BYTES",
    "MAX_HEADER_BLOCKS",
    "MAX_HEADER_BYTES",
    "HeaderCard",
    "HeaderDiffRow",
    "PrimaryHeader",
    "diff_headers",
    "looks_like_fits",
    "parse_header",
]

#: Bytes of a FITS block and of a card (:mod:`koa_middleware.fits_cards`).
BLOCK_BYTES, CARD_BYTES = BLOCK, CARD
#: Blocks of a primary header read at most (36 cards each): 1,296 cards.
MAX_HEADER_BLOCKS = 36
#: Bytes read from a file at most to show its header.
MAX_HEADER_BYTES = MAX_HEADER_BLOCKS * BLOCK_BYTES
#: Keywords whose card holds free text rather than ``= value / comment``.
_COMMENTARY = frozenset({"COMMENT", "HISTORY", "", "CONTINUE"})


@dataclass(frozen=True)
class HeaderCard:
    """One card: its keyword, its value as written (strings unquoted), its comment."""

    keyword: str
    value: str
    comment: str = ""


@dataclass(frozen=True)
class PrimaryHeader:
    """The cards read from a file's first blocks.

    Attributes
    ----------
    cards : list of HeaderCard
        In file order, without ``END``.
    complete : bool
        The ``END`` card was found within :data:`MAX_HEADER_BLOCKS` blocks; False:
        the header is longer (or the file ends before ``END``) and only the cards read
        are shown.
    """

    cards: list[HeaderCard]
    complete: bool


@dataclass(frozen=True)
class HeaderDiffRow:
    """A keyword whose value differs between two headers (None: the card is absent)."""

    keyword: str
    first: str | None
    second: str | None


def looks_like_fits(data: bytes) -> bool:
    """Whether ``data`` begins as a FITS file does: the card ``SIMPLE  =`` with ``T``.

    Examples
    --------
    >>> looks_like_fits(b"SIMPLE  =                    T".ljust(80))
    True
    >>> looks_like_fits(b"PK\\x03\\x04")
    False
    """
    if len(data) < CARD_BYTES or not data.startswith(b"SIMPLE  ="):
        return False
    return data[10:CARD_BYTES].split(b"/")[0].strip() == b"T"


def parse_header(data: bytes) -> PrimaryHeader:
    """Parse the cards of ``data`` (a file's first bytes) up to ``END`` or its end.

    At most :data:`MAX_HEADER_BYTES` of ``data`` are read, whatever its length.

    Parameters
    ----------
    data : bytes
        The first bytes of a FITS file.

    Returns
    -------
    PrimaryHeader
        The cards, and whether ``END`` was reached.
    """
    cards: list[HeaderCard] = []
    end = min(len(data), MAX_HEADER_BYTES)
    for start in range(0, end - CARD_BYTES + 1, CARD_BYTES):
        # FITS headers are ASCII; any other byte shows as U+FFFD rather than failing.
        text = data[start : start + CARD_BYTES].decode("ascii", errors="replace")
        if text.rstrip() == "END":
            return PrimaryHeader(cards, complete=True)
        cards.append(_card(text))
    return PrimaryHeader(cards, complete=False)


def _card(text: str) -> HeaderCard:
    keyword = text[:8].rstrip()
    if keyword == "HIERARCH" and "=" in text:
        name, _, rest = text[9:].partition("=")
        value, comment = _value_and_comment(rest)
        return HeaderCard(f"HIERARCH {name.strip()}", value, comment)
    if keyword in _COMMENTARY or text[8:10] != "= ":
        return HeaderCard(keyword, text[8:].rstrip())
    value, comment = _value_and_comment(text[10:])
    return HeaderCard(keyword, value, comment)


def _value_and_comment(rest: str) -> tuple[str, str]:
    """Split ``value / comment``; a quoted string may hold ``/`` and doubled quotes."""
    stripped = rest.lstrip()
    if stripped.startswith("'"):
        # An unclosed string is shown as the rest of the card, without a comment.
        string, after = split_quoted(stripped) or (stripped[1:].replace("''", "'"), "")
        comment = after.split("/", 1)[1].strip() if "/" in after else ""
        return string.rstrip(), comment
    value, _, comment = rest.partition("/")
    return value.strip(), comment.strip()


def diff_headers(first: Sequence[HeaderCard], second: Sequence[HeaderCard]) -> list[HeaderDiffRow]:
    """The keywords whose values differ, in the first header's order, then the second's.

    A keyword that appears several times (``HISTORY``, ``COMMENT``) is compared
    occurrence by occurrence: its second ``HISTORY`` card against the other's second.

    Examples
    --------
    >>> a = [HeaderCard("EXPTIME", "30"), HeaderCard("OBJECT", "dark")]
    >>> b = [HeaderCard("EXPTIME", "60"), HeaderCard("OBJECT", "dark"), HeaderCard("GAIN", "2")]
    >>> [(r.keyword, r.first, r.second) for r in diff_headers(a, b)]
    [('EXPTIME', '30', '60'), ('GAIN', None, '2')]
    """
    left, right = _numbered(first), _numbered(second)
    rows = []
    for key, value in left.items():
        if right.get(key) != value:
            rows.append(HeaderDiffRow(key[0], value, right.get(key)))
    for key, value in right.items():
        if key not in left:
            rows.append(HeaderDiffRow(key[0], None, value))
    return rows


def _numbered(cards: Sequence[HeaderCard]) -> dict[tuple[str, int], str]:
    seen: dict[str, int] = {}
    found = {}
    for card in cards:
        n = seen.get(card.keyword, 0)
        seen[card.keyword] = n + 1
        found[(card.keyword, n)] = card.value
    return found
