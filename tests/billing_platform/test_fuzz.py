"""API fuzzing with schemathesis against the live OpenAPI schema: no 5xx, responses conform.

Every operation runs with a valid key (a tenant key of an unlimited tenant, the platform key on
/platform). Each example runs inside a savepoint that is rolled back, so onboarding examples
claim the one spare schema and give it back. `make fuzz` raises the example count.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections, transaction
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from billing_platform.operations.services import platform_tenant_onboard
from tenants.models import Tenant
from tenants.services import spare_pool_refill

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "8"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", get_wsgi_application())


@pytest.fixture(scope="session")
def fuzz_key(django_db_setup: None, django_db_blocker: Any) -> str:
    with django_db_blocker.unblock():
        _tenant, _key, raw = platform_tenant_onboard(
            name="Fuzz", slug="fuzz-tenant", rate_limit="0", demo_catalog=True
        )
        spare_pool_refill(target=1)
    return raw


@pytest.fixture(autouse=True)
def _keep_test_connection() -> Any:
    """Like Django's test client: requests must not close the test's connection."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation(
    case: Any, fuzz_key: str, committed_platform_key: str, db: None
) -> None:
    key = committed_platform_key if case.path.startswith("/api/v1/platform") else fuzz_key
    with transaction.atomic():
        response = case.call(headers={"X-API-Key": key})
        transaction.set_rollback(True)
    case.validate_response(response, checks=CHECKS)
    assert Tenant.objects.filter(slug="fuzz-tenant", status="active").exists()
