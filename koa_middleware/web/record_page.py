"""The record page: every column, the file and its FITS header, the version family with a
diff of any two versions, the history, and the commands to fetch the file.

Routes (registered by :func:`~.app.create_ui`): ``GET /INST/records/ID`` (with
``?diff=ID_A,ID_B``, the diff's permalink; the two selects of the page send
``?a=ID_A&b=ID_B`` and are sent on to it) and ``GET /INST/files/ID`` (the file, with
``Range``, for a source without a download route of its own: a local cache).

Examples
--------
>>> rows, same = diff_records({"id": "a", "gain": 2}, {"id": "b", "gain": 2})
>>> rows, same
([DiffRow(column='id', first='a', second='b', in_first=True, in_second=True)], 1)
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..errors import InvalidRecordError
from ..records import validate_cal_id
from .file_serving import file_response
from .fits_header import (
    BLOCK_BYTES,
    CARD_BYTES,
    MAX_HEADER_BLOCKS,
    MAX_HEADER_BYTES,
    PrimaryHeader,
    diff_headers,
    looks_like_fits,
    parse_header,
)
from .reader import CalibrationReader
from .rendering import query_url
from .sessions import SESSION_COOKIE

if TYPE_CHECKING:
    from .app import Pages

logger = logging.getLogger(__name__)

__all__ = ["DiffRow", "HeaderView", "RecordPages", "diff_records", "read_header"]


@dataclass(frozen=True)
class DiffRow:
    """A column whose values differ between two records, and which of them has it."""

    column: str
    first: Any
    second: Any
    in_first: bool = True
    in_second: bool = True


@dataclass(frozen=True)
class HeaderView:
    """What the page says of a record's FITS header.

    Attributes
    ----------
    header : PrimaryHeader | None
        The cards, when the file is a FITS file.
    note : str
        Why there is no header, or that only part of it is shown; empty otherwise.
    """

    header: PrimaryHeader | None
    note: str = ""


def diff_records(first: Mapping[str, Any], second: Mapping[str, Any]) -> tuple[list[DiffRow], int]:
    """The columns whose values differ (first's order, then second's), and how many agree."""
    rows, same = [], 0
    for column in [*first, *(name for name in second if name not in first)]:
        a, b = first.get(column), second.get(column)
        if a == b and (column in first) == (column in second):
            same += 1
        else:
            rows.append(DiffRow(column, a, b, column in first, column in second))
    return rows, same


def read_header(
    reader: CalibrationReader, instrument: str, record: Mapping[str, Any]
) -> HeaderView:
    """Read the primary header of the record's file: at most 36 blocks, until ``END``."""
    opened = reader.open_file(instrument, record, 0, MAX_HEADER_BYTES)
    if opened is None:
        return HeaderView(None, "This site holds no file for this record: no header to show.")
    handle, _size = opened
    data = b""
    try:
        while len(data) < MAX_HEADER_BYTES:
            block = handle.read(BLOCK_BYTES)
            if not block:
                break
            data += block
            if len(data) == len(block) and not looks_like_fits(data):
                return HeaderView(None, _not_fits(data))
            if _has_end(block):
                break
    except OSError as exc:
        logger.warning("Cannot read the header of %s/%s: %s", instrument, record.get("id"), exc)
        return HeaderView(None, "The file could not be read; try again later.")
    finally:
        handle.close()
    if not looks_like_fits(data):
        return HeaderView(None, _not_fits(data))
    header = parse_header(data)
    if header.complete:
        return HeaderView(header)
    blocks = -(-len(data) // BLOCK_BYTES)
    where = f"the first {MAX_HEADER_BLOCKS} blocks" if blocks >= MAX_HEADER_BLOCKS else "the file"
    return HeaderView(
        header,
        f"No END card in {where} ({len(header.cards)} cards): the header is longer or "
        "damaged; the cards read are shown.",
    )


def _not_fits(data: bytes) -> str:
    if data.startswith(b"\x1f\x8b"):
        return "The file is compressed (gzip): its FITS header is not read here; download it."
    return "The file is not a FITS file: it has no FITS header."


def _has_end(block: bytes) -> bool:
    return any(
        block[n : n + CARD_BYTES].rstrip() == b"END" for n in range(0, len(block), CARD_BYTES)
    )


class RecordPages:
    """The record page and the file route, over the pages' reader, templates and gate.

    Parameters
    ----------
    pages : Pages
        The site's page handlers (rendering, access, the reader).
    """

    def __init__(self, pages: Pages):
        self.pages = pages

    @property
    def reader(self) -> CalibrationReader:
        """Where records come from."""
        return self.pages.reader

    def locate(self, request: Request) -> tuple[Response | None, str, dict[str, Any]]:
        """Access, instrument and record of the path: ``(refusal or None, inst, record)``."""
        refusal, inst = self.pages.guard(request)
        if refusal is not None:
            return refusal, "", {}
        try:
            cal_id = validate_cal_id(request.path_params["cal_id"])
        except InvalidRecordError:
            message = "That is not a calibration id; browse to find one."
            return self.pages.problem(request, 404, message), "", {}
        found = self.reader.record(inst, cal_id)
        if found is None:
            return self.pages.problem(request, 404, f"No calibration {cal_id} in {inst}."), "", {}
        return None, inst, found

    def show(self, request: Request) -> Response:
        """Every column, the file and its header, the family with a diff, the history."""
        refusal, inst, record = self.locate(request)
        if refusal is not None:
            return refusal
        params = request.query_params
        here = f"{self.pages.base(request)}/{inst}/records/{record['id']}"
        family = self.reader.family(inst, record)
        selected = params.get("a") or params.get("b")
        wanted = f"{params.get('a', '')},{params.get('b', '')}" if selected else params.get("diff")
        try:
            diff = self._diff(inst, family, wanted)
        except ValueError as exc:
            return self.pages.problem(request, 400, str(exc))
        if selected and diff is not None:  # the selects: on to the permalink
            target = query_url(here, diff=diff["permalink"]) + "#diff-title"
            return RedirectResponse(target, status_code=303)
        download = self.reader.download_url(inst, record)
        if download is None and self._holds_file(inst, record):
            download = f"{self.pages.base(request)}/{inst}/files/{record['id']}"
        writer = self._writer(request)
        return self.pages.render(
            request,
            "record.html",
            instrument=inst,
            here=here,
            record=record,
            family=family,
            history=self.reader.history(inst, record),
            download=download,
            resumable=self._resumable(),
            commands=self._commands(request, inst, record, download),
            header=read_header(self.reader, inst, record),
            diff=diff,
            writer=writer,
            csrf=writer[1].csrf if writer else None,
            sign_in=self._may_sign_in() and writer is None,
        )

    def _diff(
        self, inst: str, family: list[dict[str, Any]], wanted: str | None
    ) -> dict[str, Any] | None:
        """The column and header diff of the two versions ``wanted`` names (``ID_A,ID_B``)."""
        if not wanted:
            return None
        by_id = {str(member["id"]): member for member in family}
        parts = wanted.split(",", 2)
        problem = (
            "diff names two versions of this record's family as 'ID_A,ID_B': "
            "choose them in the version table."
        )
        if len(parts) != 2 or len(wanted) > 100:  # two ids and a comma: 73 characters
            raise ValueError(problem)
        try:
            ids = [validate_cal_id(part.strip()) for part in parts]
        except InvalidRecordError:
            raise ValueError(problem) from None
        if any(cal_id not in by_id for cal_id in ids):
            raise ValueError(problem)
        first, second = (by_id[cal_id] for cal_id in ids)
        rows, same = diff_records(first, second)
        headers = [read_header(self.reader, inst, member) for member in (first, second)]
        header_rows = None
        if all(view.header is not None for view in headers):
            header_rows = diff_headers(headers[0].header.cards, headers[1].header.cards)  # type: ignore[union-attr]
        return {
            "first": first,
            "second": second,
            "rows": rows,
            "same": same,
            "header_rows": header_rows,
            "header_notes": [
                f"{member['cal_version']} ({member['filename']}): {view.note}"
                for member, view in zip((first, second), headers, strict=True)
                if view.note
            ],
            "permalink": f"{ids[0]},{ids[1]}",
        }

    def _commands(
        self, request: Request, inst: str, record: Mapping[str, Any], download: str | None
    ) -> list[str]:
        """Shell lines to fetch the file: ``koa-cal get`` and a resumable ``curl``."""
        lines = [f"koa-cal --instrument {shlex.quote(inst)} get {shlex.quote(str(record['id']))}"]
        if download:
            url = f"{request.url.scheme}://{request.url.netloc}{download}"
            if self._resumable():
                curl = f"curl -C - -o {shlex.quote(str(record['filename']))} {shlex.quote(url)}"
            else:  # a protocol 1 archive hands out a zip, whole
                curl = f"curl -o {shlex.quote(str(record['filename']) + '.zip')} {shlex.quote(url)}"
            gate = self.pages.gate
            if gate is not None and not gate.open_reads:
                curl += ' -H "Authorization: Bearer $KOA_API_TOKEN"'
            lines.append(curl)
        return lines

    def _resumable(self) -> bool:
        """Whether the download link serves the raw file with ``Range`` (not a v1 zip)."""
        return getattr(self.reader, "protocol", 2) != 1

    def _writer(self, request: Request) -> Any:
        """The signed-in browser's ``(name, session)`` when its token may write here."""
        gate = self.pages.gate
        if gate is None or not self.reader.writes_lifecycle:
            return None
        return gate.writer(request.cookies.get(SESSION_COOKIE))

    def _holds_file(self, inst: str, record: Mapping[str, Any]) -> bool:
        opened = self.reader.open_file(inst, record, 0, 0)
        if opened is None:
            return False
        opened[0].close()
        return True

    def _may_sign_in(self) -> bool:
        return self.pages.gate is not None and self.reader.writes_lifecycle

    def file(self, request: Request) -> Response:
        """The record's file, whole or one ``Range`` (206), when this site holds it."""
        refusal, inst, record = self.locate(request)
        if refusal is not None:
            return refusal
        opened = self.reader.open_file(inst, record, for_download=True)
        if opened is None:
            return self.pages.problem(
                request,
                404,
                f"This site holds no usable file for {record['id']}: "
                f"fetch it with 'koa-cal --instrument {inst} get {record['id']}'.",
            )
        handle, size = opened
        return file_response(handle, size, record, request.headers.get("range"))
