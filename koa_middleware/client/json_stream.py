"""Parsing a JSON answer while it arrives: the items of a top-level array one by one.

The Keck calibrations service answers a query with one JSON array of every
matching record. Building the whole text first and parsing it afterwards holds
the text and all the records at once; :func:`iter_json_items` instead decodes
each item as soon as its bytes are there (with :meth:`json.JSONDecoder.raw_decode`,
the standard library's C scanner), so the caller can store records while the
rest of the answer is still on the way and keep memory flat.

A decode that fails because an item is not complete yet is tried again only
once the text waiting to be decoded has doubled, so even a single huge item
costs linear time, not quadratic.
"""

from __future__ import annotations

import codecs
import json
import json.scanner
import re
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["iter_json_items"]

_SPACE = re.compile(r"[ \t\n\r]*")
_SPACE_CHARS = " \t\n\r"
_DECODER = json.JSONDecoder()
#: The decoder's scanner (the C one where available): one value at a position.
_SCAN = json.scanner.make_scanner(_DECODER)


class _Text:
    """The not yet decoded text of an answer, filled from its byte pieces on demand."""

    def __init__(self, chunks: Iterable[bytes]):
        self._chunks = iter(chunks)
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self.text = ""
        self.pos = 0
        self.eof = False
        self._pending: list[str] = []
        self._pending_chars = 0

    def available(self) -> int:
        return len(self.text) - self.pos + self._pending_chars

    def fill(self) -> bool:
        """Read one more piece (kept aside until needed); False at the end of the answer."""
        if self.eof:
            return False
        for chunk in self._chunks:
            piece = self._utf8.decode(chunk)
            if piece:
                self._pending.append(piece)
                self._pending_chars += len(piece)
                return True
        self.eof = True
        piece = self._utf8.decode(b"", final=True)  # a character cut short raises here
        if piece:
            self._pending.append(piece)
            self._pending_chars += len(piece)
            return True
        return False

    def merge(self) -> None:
        """Join the pieces kept aside to the text (dropping what was decoded already)."""
        if self._pending:
            self.text = self.text[self.pos :] + "".join(self._pending)
            self.pos = 0
            self._pending.clear()
            self._pending_chars = 0

    def next_char(self) -> str:
        """Skip white space; return the next character ('' at the end), leaving pos on it."""
        while True:
            self.pos = _SPACE.match(self.text, self.pos).end()
            if self.pos < len(self.text):
                return self.text[self.pos]
            self.text, self.pos = "", 0
            if not self.fill():
                return ""
            self.merge()

    def value(self) -> Any:
        """Decode the JSON value that starts at pos, reading more pieces while it is incomplete."""
        retry_at = 0
        while True:
            if self.available() >= retry_at or self.eof:
                self.merge()
                try:
                    value, end = _DECODER.raw_decode(self.text, self.pos)
                except json.JSONDecodeError:
                    if self.eof:
                        raise
                else:
                    # A value that ends exactly where the text ends may be a number cut short.
                    if end < len(self.text) or self.eof:
                        self.pos = end
                        return value
                retry_at = 2 * (len(self.text) - self.pos) + 1
            if not self.fill() and not self._pending:
                # The end: one last attempt on what there is.
                self.merge()
                value, end = _DECODER.raw_decode(self.text, self.pos)
                self.pos = end
                return value


def iter_json_items(chunks: Iterable[bytes]) -> Iterator[tuple[bool, Any]]:
    """Decode a JSON text that arrives in byte pieces (UTF-8).

    Parameters
    ----------
    chunks : Iterable[bytes]
        The answer's bytes, in pieces of any size.

    Yields
    ------
    tuple[bool, Any]
        ``(True, item)`` for each item of a top-level array, as soon as it is
        complete; or, when the text is not an array, ``(False, value)`` once.

    Raises
    ------
    ValueError
        If the text is not valid JSON (:class:`json.JSONDecodeError`), is empty,
        has anything after its value, or is not valid UTF-8.

    Examples
    --------
    >>> list(iter_json_items([b'[{"a": 1}, {"b"', b': 2}]']))
    [(True, {'a': 1}), (True, {'b': 2})]
    >>> list(iter_json_items([b'{"message": "none"}']))
    [(False, {'message': 'none'})]
    """
    text = _Text(chunks)
    first = text.next_char()
    if not first:
        raise ValueError("the answer is empty")
    if first != "[":
        value = text.value()
        _expect_end(text)
        yield False, value
        return
    text.pos += 1
    if text.next_char() == "]":
        text.pos += 1
        _expect_end(text)
        return
    while True:
        # The items complete in the text so far, without the general (slower) steps.
        yield from _complete_items(text)
        if not text.next_char():
            raise ValueError("the array ends before its closing ']'")
        yield True, text.value()
        separator = text.next_char()
        if separator == ",":
            text.pos += 1
            continue
        if separator == "]":
            text.pos += 1
            break
        found = repr(separator) if separator else "the end of the answer"
        raise ValueError(f"expected ',' or ']' between array items, found {found}")
    _expect_end(text)


def _complete_items(text: _Text) -> Iterator[tuple[bool, Any]]:
    """Yield the array items that are complete in ``text.text``, each with its ',' after it.

    Leaves ``text.pos`` at the start of the first item that is not (or at
    anything unexpected, for the general steps to report).
    """
    chars = text.text
    pos = text.pos
    end_of_text = len(chars)
    items, after = _items_at_once(chars, pos)
    if items:
        text.pos = pos = after
        for item in items:
            yield True, item
    while True:
        if pos < end_of_text and chars[pos] in _SPACE_CHARS:
            pos = _SPACE.match(chars, pos).end()
        try:
            value, end = _SCAN(chars, pos)
        except (StopIteration, json.JSONDecodeError):
            break
        if end < end_of_text and chars[end] == ",":
            after = end
        else:
            after = _SPACE.match(chars, end).end()
            if after >= end_of_text or chars[after] != ",":
                break
        yield True, value
        pos = after + 1
    text.pos = pos


def _items_at_once(chars: str, pos: int) -> tuple[list | None, int]:
    """Decode in one go the items from ``pos`` to the last object followed by ``,``.

    One decoder call for many items is faster than one per item, and the
    items' field names share one string each (the decoder keeps them per
    call), which keeps many records small. The text up to such a ``},`` is
    decoded as an array of its own: when the cut falls inside a string or a
    nested value, that array is invalid and nothing is taken (the items are
    then decoded one by one); when it is valid, its items are exactly the
    answer's items before the cut, since an object ends where its ``}`` is.

    Returns
    -------
    tuple[list | None, int]
        The items and the position after the ``,`` that follows the last one,
        or ``(None, pos)``.
    """
    cut = chars.rfind("},", pos)
    if cut < 0:
        return None, pos
    wrapped = "[" + chars[pos : cut + 1] + "]"
    try:
        items, end = _SCAN(wrapped, 0)
    except (StopIteration, json.JSONDecodeError, RecursionError):
        return None, pos
    if end != len(wrapped) or type(items) is not list:
        return None, pos
    return items, cut + 2


def _expect_end(text: _Text) -> None:
    extra = text.next_char()
    if extra:
        raise ValueError(f"unexpected data after the JSON value (starting with {extra!r})")
