"""``/openapi.json``: what each route documents, and the generated schema completed.

The routers (:mod:`.routes_v1`, :mod:`.routes_v2`) take their summaries,
answers and request bodies from the ``*_ROUTE`` tables here, so a handler holds
only what it does. Routes read their query parameters themselves (no
per-request model building), so those are documented here too.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response

from . import api_models as m
from .state import API_PREFIX

logger = logging.getLogger(__name__)


def query_param(
    name: str, description: str, required: bool = False, kind: str = "string", fmt: str = ""
) -> dict[str, Any]:
    """An OpenAPI query parameter. Routes read their query parameters themselves (no
    per-request model building), so they are documented here rather than in signatures."""
    schema: dict[str, Any] = {"type": kind}
    if fmt:
        schema["format"] = fmt
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": schema,
    }


QUERY_PARAMETERS = [
    query_param("cal_id", m.ID_DOC, fmt="uuid"),
    query_param("filename", "Equal to this file name"),
    query_param("cal_type", "Equal to this calibration type"),
    query_param("origin", "Equal to this origin"),
    query_param("date_time_start", "datetime_obs >= this"),
    query_param("date_time_end", "datetime_obs <= this"),
    query_param("last_updated_start", "last_updated > this"),
    query_param("last_updated_end", "last_updated <= this"),
    query_param("cal_version_min", "cal_version >= this"),
    query_param("cal_version_max", "cal_version <= this"),
    query_param("fetch", "all (default) or first"),
]
V2_QUERY_PARAMETERS = [
    query_param("columns", "Comma-separated columns to return"),
    query_param("limit", "At most this many records", kind="integer"),
    query_param("offset", "Skip this many records", kind="integer"),
    query_param(
        "include_retracted",
        "1: also retracted records, every record with published_at, retracted_at and "
        "retract_reason (default 0: retracted records are left out)",
        kind="integer",
    ),
]


#: ``changes`` pages hold at most this many records.
MAX_CHANGES_LIMIT = 10_000

_BINARY = {"type": "string", "format": "binary"}
_RECORD_OR_LIST = {
    "anyOf": [
        {"$ref": "#/components/schemas/RecordIn"},
        {"type": "array", "items": {"$ref": "#/components/schemas/RecordIn"}},
    ]
}

# -- v1 ----------------------------------------------------------------------------------
QUERY_ROUTE: dict[str, Any] = {
    "summary": "Query records",
    "response_model": list[m.Record] | m.Record | m.NoMatch,
    "responses": m.error_responses(400, 401, 403, 404),
    "description": "Filters combine with AND; any other query parameter is an equality "
    "filter on that column. Ordered by last_updated, then id. With cal_id or "
    "fetch=first the answer is one record.",
    # The v2 parameters (columns, limit, offset) are added by build_openapi.
    "openapi_extra": {"parameters": QUERY_PARAMETERS},
}
LAST_UPDATED_ROUTE: dict[str, Any] = {
    "summary": "Newest last_updated",
    "response_model": m.LastUpdated,
    "responses": m.error_responses(401, 403, 404),
}
ADD_ROUTE: dict[str, Any] = {
    "summary": "Add or replace records (upsert by id, all or nothing)",
    "response_model": m.AddResult,
    "responses": m.error_responses(400, 401, 403, 404, 408, 409, 413),
    "openapi_extra": {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _RECORD_OR_LIST}},
        }
    },
}
DOWNLOAD_ROUTE: dict[str, Any] = {
    "summary": "Download a calibration file as a zip archive",
    "response_class": Response,
    "responses": {
        200: {
            "description": "A zip archive with one member, the file under its record's filename",
            "content": {"application/zip": {"schema": _BINARY}},
        },
        **m.error_responses(400, 401, 403, 404),
    },
    "openapi_extra": {"parameters": [query_param("cal_id", m.ID_DOC, required=True, fmt="uuid")]},
}

# -- v2 ----------------------------------------------------------------------------------
HEALTHZ_ROUTE: dict[str, Any] = {"summary": "Protocol and version", "response_model": m.Health}
CHANGES_ROUTE: dict[str, Any] = {
    "summary": "Records changed after seq",
    "response_model": m.ChangesPage,
    "responses": m.error_responses(400, 401, 403, 404),
    "openapi_extra": {
        "parameters": [
            query_param("since", "Last seq seen (default 0)", kind="integer"),
            query_param(
                "limit", f"Page size, 1..{MAX_CHANGES_LIMIT} (default 1000)", kind="integer"
            ),
        ]
    },
}


def _lifecycle_route(summary: str, body: type, answer: type) -> dict[str, Any]:
    return {
        "summary": summary,
        "response_model": answer,
        "responses": m.error_responses(400, 401, 403, 404, 408, 413),
        "openapi_extra": {
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": body.model_json_schema(
                            ref_template="#/components/schemas/{model}"
                        )
                    }
                },
            }
        },
    }


RETRACT_ROUTE = _lifecycle_route(
    "Retract records: they stay, with a time and reason, and leave default queries "
    "(all or nothing; 404 names unknown ids)",
    m.RetractRequest,
    m.RetractResult,
)
UNRETRACT_ROUTE = _lifecycle_route(
    "Make retracted records live again (all or nothing)", m.UnretractRequest, m.UnretractResult
)
GET_FILE_ROUTE: dict[str, Any] = {
    "summary": "Download the raw file (resumable with Range)",
    "response_class": Response,
    "responses": {
        200: m.binary_content("The whole file"),
        206: m.binary_content("The requested tail of the file"),
        **m.error_responses(400, 401, 403, 404, 416),
    },
}
PUT_FILE_ROUTE: dict[str, Any] = {
    "summary": "Upload the raw file (checked by length and MD5)",
    "status_code": 201,
    "response_model": m.UploadResult,
    "responses": {
        200: {"model": m.UploadResult, "description": "The same bytes were already stored"},
        **m.error_responses(400, 401, 403, 404, 408, 409, 413, 422),
    },
    "openapi_extra": {
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": _BINARY}},
        }
    },
}


def build_openapi(app: FastAPI, protocol: int = 2) -> dict[str, Any]:
    """The generated schema, with FastAPI's 422 validation answers replaced by our 400.

    Parameters
    ----------
    app : FastAPI
        The archive application.
    protocol : int
        2 documents the v2 query parameters (``columns``, ``limit``, ``offset``,
        ``include_retracted``).

    Returns
    -------
    dict
        The OpenAPI document (cached on ``app``).

    Examples
    --------
    >>> app.openapi = lambda: build_openapi(app, protocol=2)  # doctest: +SKIP
    """
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    if protocol == 2:
        query = schema.get("paths", {}).get(API_PREFIX + "/{instrument}/query", {}).get("get")
        if query is not None:
            query["parameters"] = query.get("parameters", []) + V2_QUERY_PARAMETERS
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (m.RecordIn, m.ErrorBody):
        components.setdefault(
            model.__name__, model.model_json_schema(ref_template="#/components/schemas/{model}")
        )
    components.update(components[m.ErrorBody.__name__].pop("$defs", {}))
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    error_ref = {"$ref": f"#/components/schemas/{m.ErrorBody.__name__}"}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            validation = responses.get("422", {})
            if "HTTPValidationError" in json.dumps(validation):
                del responses["422"]
            responses.setdefault(
                "400",
                {
                    "description": "Bad input",
                    "content": {"application/json": {"schema": error_ref}},
                },
            )
    app.openapi_schema = schema
    return schema
