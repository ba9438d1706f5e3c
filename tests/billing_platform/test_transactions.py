"""The request transaction under lock contention: a key still in use, a database that stays busy.

A second real PostgreSQL connection holds what a concurrent request would hold; the request's
own connection gets a short `lock_timeout` so the waits are brief.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.db import connection

from billable.models import LedgerEntry, QuotaBatch
from tenants.services import api_key_create
from tests.support.api import Api, assert_problem
from tests.support.tenants import TenantFixture


@pytest.fixture
def other_connection() -> Iterator[psycopg.Connection[Any]]:
    """A second session on the test database, as another request's transaction would be."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    params.pop("prepare_threshold", None)
    with psycopg.connect(**params, autocommit=False) as other:
        yield other
        other.rollback()


@pytest.fixture
def short_lock_timeout() -> None:
    # Session-level, inside the test's transaction: rolled back with it.
    with connection.cursor() as cursor:
        cursor.execute("SET lock_timeout = '150ms'")


def test_a_key_still_held_by_another_request_is_409_in_use(
    api: Api, acme: TenantFixture, other_connection: psycopg.Connection[Any],
    short_lock_timeout: None,
) -> None:
    from tenants.selectors import citus_enabled

    if citus_enabled():
        pytest.skip("on Citus the wait is on the worker, where neither this lock_timeout nor "
                    "the server's (DB_LOCK_TIMEOUT_MS) applies: the request waits until "
                    "statement_timeout and answers 503 (docs/scaling.md, the limits)")
    # given: another transaction has claimed the key and not finished
    other_connection.execute(
        f'INSERT INTO "{acme.tenant.schema_name}".billable_idempotencyrecord '
        "(key, request_hash, content_type, created_at) VALUES ('held-key', 'x', '', now())"
    )

    # when
    response = api.post("billing/identify", json={"external_id": "in-use"}, key=acme.key,
                        headers={"Idempotency-Key": "held-key"})

    # then: no effect, and the key still belongs to the first request
    assert_problem(response, 409, "idempotency_key_in_use")
    assert "Idempotent-Replayed" not in response.headers
    found = api.get("billing/customers", key=acme.key, query={"external_id": "in-use"})
    assert found.json["items"] == []


def test_a_lock_that_outlasts_every_retry_is_503_database_busy(
    api: Api, acme: TenantFixture, catalog: Any, alice: Any,
    other_connection: psycopg.Connection[Any], short_lock_timeout: None,
) -> None:
    # given: units to consume, and another transaction that keeps usage records from being
    # written (the test's own transaction already holds the batch table, so lock that one)
    granted = api.post("billing/grants", json={"external_id": "alice", "sku": "reports_10",
                                               "kind": "bonus"}, key=acme.key)
    assert granted.status == 201, granted.body
    other_connection.execute(
        f'LOCK TABLE "{acme.tenant.schema_name}".billable_usage IN SHARE MODE'
    )

    before = int(api.get("keys", key=acme.key).headers["RateLimit-Remaining"])

    # when
    response = api.post("billing/quota/consume", json={"external_id": "alice",
                                                       "feature": "reports"}, key=acme.key)

    # then: a 503 the client can retry, and nothing spent
    problem = assert_problem(response, 503, "database_busy")
    assert problem["status"] == 503
    assert int(response.headers["Retry-After"]) >= 1
    # Every attempt ran the request again, but the tenant's limit counted it once.
    assert int(response.headers["RateLimit-Remaining"]) == before - 1
    other_connection.rollback()
    connection.set_schema(acme.tenant.schema_name)
    assert QuotaBatch.objects.get(customer=alice).remaining == 10
    assert not LedgerEntry.objects.filter(direction="debit").exists()


def test_a_database_error_while_the_key_is_resolved_is_a_503_problem_not_a_500(
    api: Api, acme: TenantFixture, other_connection: psycopg.Connection[Any],
    short_lock_timeout: None,
) -> None:
    # given: a key not resolved yet, whose resolution reads the tenant's alert rules, and
    # another transaction holding that table (as a Citus worker that does not answer would)
    _row, key = api_key_create(tenant=acme.tenant, name="resolved under a lock")
    other_connection.execute(
        f'LOCK TABLE "{acme.tenant.schema_name}".billable_alertrule IN ACCESS EXCLUSIVE MODE'
    )

    # when
    response = api.post("billing/identify", json={"external_id": "locked-out"}, key=key)

    # then: the API's problem answer, with a Retry-After
    assert_problem(response, 503, "database_busy")
    assert response.headers["Retry-After"]
