"""schemathesis against the app's own OpenAPI schema: no request may produce a 5xx, and every
answer is one the schema documents (status code, content type, headers, body).

Driven through schemathesis' programmatic API (its pytest plugin does not support pytest 9 yet).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from driftline.api.app import create_app
from driftline.service import Service
from driftline.settings import load_settings
from driftline.simulate import FILE_DROP, Traffic, generate


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root = tmp_path_factory.mktemp("fuzz")
    ref = root / "ref.parquet"
    generate(Traffic(n=5000, seed=1000)).drop(FILE_DROP).write_parquet(ref)
    service = Service(
        load_settings(
            store=f"chdb://{root / 'store'}", references={"churn": str(ref)}, api_keys={"k": ["admin"]}
        )
    )
    try:
        yield schemathesis.openapi.from_asgi("/openapi.json", create_app(service))
    finally:
        service.stop()


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.mark.parametrize("run", [0, 1])
def test_every_answer_is_documented_and_none_is_a_server_error(schema: Any, run: int) -> None:
    operations = [op.ok() for op in schema.get_all_operations()]
    assert len(operations) >= 17
    for operation in operations:

        @given(operation.as_strategy())
        @seed(1000 + run)
        @settings(
            max_examples=30,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def check(case: Any) -> None:
            case.call_and_validate(headers={"authorization": "Bearer k"}, checks=CHECKS)

        check()
