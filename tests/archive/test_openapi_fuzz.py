"""schemathesis over /openapi.json: no 5xx, and every answer matches the schema."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES = 20


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("instrument", ["hispec", None])
def test_schemathesis(shared_archive, mode, instrument):
    """Each operation gets EXAMPLES generated requests (with an admin token)."""
    origin = shared_archive.base.rsplit("/api/", 1)[0]
    schema = schemathesis.openapi.from_url(origin + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 10
    for operation in operations:
        strategy = operation.as_strategy(
            generation_mode=mode,
            headers={"Authorization": f"Bearer {shared_archive.tokens['admin']}"},
            path_parameters={"instrument": instrument} if instrument else None,
        )

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def call(case):
            case.call_and_validate(base_url=origin, checks=CHECKS)

        try:
            call()
        except Unsatisfiable:
            # Negative mode on an operation with nothing left to break (e.g. healthz).
            assert mode is GenerationMode.NEGATIVE, operation.label
