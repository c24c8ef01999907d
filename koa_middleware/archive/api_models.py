"""JSON schemas of the archive's requests and answers, for ``/openapi.json``.

The routes build their answers directly (as plain JSON), so these models only
describe them; they do not check or convert anything at run time.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

logger = logging.getLogger(__name__)

#: An instrument column's value: records are flat.
SCALAR_SCHEMA: dict[str, Any] = {"type": ["string", "number", "integer", "boolean", "null"]}

ID_DOC = "UUID4 of the calibration, e.g. 1b4e28ba-2fa1-4d2b-883f-0016d3cca427"


class Record(BaseModel):
    """A calibration record as the archive returns it (instrument columns beside these)."""

    model_config = ConfigDict(
        extra="allow", json_schema_extra={"additionalProperties": SCALAR_SCHEMA}
    )

    id: str = Field(description=ID_DOC)
    filename: str = Field(description="Plain file name, unique within the instrument")
    cal_type: str = Field(description="e.g. dark, flat, arc")
    datetime_obs: str = Field(description="UTC YYYY-MM-DDTHH:MM:SS.sss")
    origin: str = Field(description="Upper case, e.g. KECK")
    cal_version: str = Field(description="001 ... 999")
    last_updated: str = Field(description="When the archive accepted the record (UTC)")
    file_md5: str | None = Field(None, description="Lower-case hex MD5 of the file")
    file_size: int | None = Field(None, description="File size in bytes")
    seq: int | None = Field(None, description="Position in the changes feed (v2 only)")
    published_at: str | None = Field(
        None,
        description="When the archive first accepted the record (v2: changes, include_retracted)",
    )
    retracted_at: str | None = Field(None, description="When it was retracted; null while live")
    retract_reason: str | None = Field(None, description="Why it was retracted; null while live")


class RecordIn(BaseModel):
    """A calibration record as a client sends it; ``last_updated`` and ``seq`` are ignored."""

    model_config = ConfigDict(
        extra="allow", json_schema_extra={"additionalProperties": SCALAR_SCHEMA}
    )

    id: str = Field(description=ID_DOC)
    filename: str
    cal_type: str
    datetime_obs: str
    origin: str
    cal_version: str
    file_md5: str | None = None
    file_size: int | None = None


class RecordError(BaseModel):
    """Why one record of a batch was refused."""

    index: int
    reason: str


class ErrorBody(BaseModel):
    """Every non-2xx answer."""

    model_config = ConfigDict(extra="allow")

    error: str = Field(description="Machine-readable code, e.g. bad_request, not_found")
    message: str = Field(description="One line a person can act on")
    errors: list[RecordError] | None = Field(
        None, description="With a refused add: the index and reason of each bad record"
    )


class NoMatch(BaseModel):
    """The answer of a query that matched nothing."""

    message: str


class LastUpdated(BaseModel):
    """The newest ``last_updated`` of an instrument, or null when it has no records."""

    last_updated: str | None


class AddResult(BaseModel):
    """The answer of a successful add."""

    added: int
    ids: list[str]


class ChangesPage(BaseModel):
    """One page of the changes feed."""

    records: list[Record]
    next: int = Field(description="Pass as since to get the next page")
    more: bool


class UnretractRequest(BaseModel):
    """The body of unretract."""

    model_config = ConfigDict(extra="forbid")

    ids: list[str] = Field(
        min_length=1, max_length=10_000, description="Calibration ids (UUIDs) of the instrument"
    )


class RetractRequest(UnretractRequest):
    """The body of retract."""

    reason: str = Field(
        min_length=1, max_length=2000, description="Why; whitespace runs become one space"
    )


class RetractResult(BaseModel):
    """The answer of a successful retract."""

    retracted: list[str]


class UnretractResult(BaseModel):
    """The answer of a successful unretract."""

    unretracted: list[str]


class Health(BaseModel):
    """The answer of healthz."""

    status: str
    protocol: int
    version: str


class UploadResult(BaseModel):
    """The answer of a file upload."""

    id: str
    file_md5: str
    file_size: int
    stored: bool = Field(description="True when this upload stored the file (201)")


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Return FastAPI ``responses`` entries that document error answers with ErrorBody."""
    meaning = {
        400: "Bad input",
        401: "No token, or an unknown or revoked token",
        403: "The token lacks the needed scope",
        404: "Unknown instrument, record or file",
        408: "The request body stopped arriving (see serve --body-timeout)",
        409: "Conflicts with what is stored",
        413: "Body too large",
        416: "Range not satisfiable",
        422: "Length or MD5 mismatch",
    }
    return {status: {"model": ErrorBody, "description": meaning[status]} for status in statuses}


def binary_content(description: str) -> dict[str, Any]:
    """An ``application/octet-stream`` response entry."""
    return {
        "description": description,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
