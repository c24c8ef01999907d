"""``/openapi.json``: the generated schema, completed where routes read their input themselves."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from . import api_models as m

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
]


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """The generated schema, with FastAPI's 422 validation answers replaced by our 400."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
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
