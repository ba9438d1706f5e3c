"""A consume is one schema-qualified statement in autocommit, on real commits.

The request path opens no transaction around consume (`own_transaction`), and when no receiver
would act on its signals, `quota_consume` runs `billable_consume` alone: no `BEGIN`, no
`SET search_path`, no `COMMIT` of its own. A tenant whose endpoint subscribes to a consume event
gets the signals, and their outbox rows, in one transaction with the change.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.dispatch import Signal, receiver
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import tenant_context

from billable import signals
from billable.models import LedgerEntry, Usage
from billable.selectors import ledger_verify
from billing_platform.webhooks.models import Event
from billing_platform.webhooks.services import endpoint_create, endpoint_delete
from tests.support.api import Api, assert_problem
from tests.support.concurrency import ConcTenant


def _grant(api: Api, conc: ConcTenant, external_id: str, sku: str = "c30") -> str:
    response = api.post(
        "billing/grants", json={"external_id": external_id, "sku": sku, "kind": "manual"},
        key=conc.key,
    )
    assert response.status == 201, response.body
    return str(response.json["customer_id"])


def _consume(api: Api, conc: ConcTenant, **body: Any) -> tuple[Any, list[str]]:
    """The answer and every statement sent (the text as written, prepared or not), with
    `BEGIN` and `COMMIT` around them when the consume ran in a transaction."""
    sent: list[str] = []

    def record(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        sent.append(sql)
        return execute(sql, params, many, context)

    with CaptureQueriesContext(connection) as captured, connection.execute_wrapper(record):
        response = api.post(
            "billing/quota/consume", json={"feature": "compute", **body}, key=conc.key
        )
    control = [q["sql"] for q in captured.captured_queries if q["sql"] in ("BEGIN", "COMMIT")]
    assert len(captured.captured_queries) == len(sent) + len(control)
    return response, (["BEGIN", *sent, "COMMIT"] if control else sent)


@pytest.fixture
def warm(api: Api, conc: ConcTenant, committed: None) -> Api:
    # A read first: the key's resolution is cached, as on a warm server.
    assert api.get("billing/products", key=conc.key).status == 200
    return api


def test_the_module_runs_on_the_test_database(db: None) -> None:
    assert str(connection.settings_dict["NAME"]).startswith("test_")


def test_a_consume_is_one_statement_in_autocommit(warm: Api, conc: ConcTenant) -> None:
    external_id = f"one-{uuid.uuid4().hex[:8]}"
    customer_id = _grant(warm, conc, external_id)

    response, statements = _consume(warm, conc, external_id=external_id, amount=3)

    assert response.status == 200, response.body
    assert response.json["remaining"] == 27 and response.json["customer_id"] == customer_id
    assert len(statements) == 1, statements  # no BEGIN, no SET search_path, no COMMIT
    assert f'FROM "{conc.tenant.schema_name}".billable_consume(' in statements[0]
    assert connection.get_autocommit()
    with tenant_context(conc.tenant):
        usage = Usage.objects.get(pk=response.json["usage_id"])
        assert usage.amount == 3 and str(usage.customer_id) == customer_id
        debits = LedgerEntry.objects.filter(usage=usage, direction="debit")
        assert sum(e.amount for e in debits) == 3
        assert ledger_verify().drifts == []


def test_a_short_consume_is_one_statement_and_writes_nothing(
    warm: Api, conc: ConcTenant
) -> None:
    external_id = f"short-{uuid.uuid4().hex[:8]}"
    customer_id = _grant(warm, conc, external_id, "c10")

    response, statements = _consume(warm, conc, external_id=external_id, amount=11)

    assert_problem(response, 402, "insufficient_quota")
    assert response.json["remaining"] == 10
    assert len(statements) == 1
    with tenant_context(conc.tenant):
        assert not Usage.objects.filter(customer_id=customer_id).exists()
        assert not LedgerEntry.objects.filter(
            batch__customer_id=customer_id, direction="debit"
        ).exists()


def test_an_unknown_identity_is_402_and_creates_no_customer(
    warm: Api, conc: ConcTenant
) -> None:
    external_id = f"nobody-{uuid.uuid4().hex[:8]}"

    response, statements = _consume(warm, conc, external_id=external_id)

    assert_problem(response, 402, "quota_exhausted")
    assert response.json["remaining"] == 0
    assert len(statements) == 1
    with tenant_context(conc.tenant):
        from billable.models import ExternalIdentity

        assert not ExternalIdentity.objects.filter(external_id=external_id).exists()


def test_period_access_covers_without_a_debit(warm: Api, conc: ConcTenant) -> None:
    external_id = f"pro-{uuid.uuid4().hex[:8]}"
    _grant(warm, conc, external_id, "pro_30d")

    response, statements = _consume(warm, conc, external_id=external_id, feature="pro")

    assert response.status == 200, response.body
    assert response.json["unlimited"] is True and response.json["remaining"] is None
    assert len(statements) == 1


@pytest.fixture
def listener() -> Iterator[list[dict[str, Any]]]:
    """A receiver of `quota_consumed` of our own: it always acts."""
    seen: list[dict[str, Any]] = []

    @receiver(signals.quota_consumed, dispatch_uid="test-consume-statement")
    def record(sender: Any, **kwargs: Any) -> None:
        seen.append({**kwargs, "atomic": connection.in_atomic_block})

    try:
        yield seen
    finally:
        signals.quota_consumed.disconnect(dispatch_uid="test-consume-statement")


def test_a_receiver_gets_the_signal_inside_the_transaction(
    warm: Api, conc: ConcTenant, listener: list[dict[str, Any]]
) -> None:
    external_id = f"sig-{uuid.uuid4().hex[:8]}"
    customer_id = _grant(warm, conc, external_id)

    response, statements = _consume(warm, conc, external_id=external_id, amount=2)

    assert response.status == 200
    assert len(listener) == 1
    assert listener[0]["atomic"] is True
    assert listener[0]["remaining"] == 28 and listener[0]["unlimited"] is False
    assert str(listener[0]["usage"].pk) == response.json["usage_id"]
    assert str(listener[0]["customer"].pk) == customer_id
    assert len(statements) >= 1


def test_may_act_counts_unconditional_receivers(listener: list[dict[str, Any]]) -> None:
    assert signals.may_act(signals.quota_consumed)


def test_may_act_asks_conditional_receivers() -> None:
    signal = Signal()
    wanted = {"now": False}
    signals.connect_conditional(
        signal, lambda sender, **kwargs: None, dispatch_uid="test-conditional",
        acts=lambda: wanted["now"],
    )
    try:
        assert not signals.may_act(signal)
        wanted["now"] = True
        assert signals.may_act(signal)
    finally:
        signal.disconnect(dispatch_uid="test-conditional")
    assert not signals.may_act(signal)


def test_a_subscribed_endpoint_gets_the_event_of_a_committed_consume(
    warm: Api, conc: ConcTenant, settings: Any
) -> None:
    settings.WEBHOOKS_ALLOW_PRIVATE_NETWORKS = True  # the endpoint is never posted to here
    external_id = f"hook-{uuid.uuid4().hex[:8]}"
    _grant(warm, conc, external_id)
    endpoint, _secret = endpoint_create(
        tenant_id=conc.tenant.pk, url="http://127.0.0.1:9/hook", event_types=["quota.consumed"]
    )
    try:
        # The key's cached subscriptions were invalidated by the new endpoint.
        response, statements = _consume(warm, conc, external_id=external_id)
        assert response.status == 200
        assert len(statements) > 1  # the consume, then the outbox rows, in one transaction
        events = Event.objects.filter(tenant_id=conc.tenant.pk, type="quota.consumed")
        usage_ids = [e.data.get("usage_id") for e in events]
        assert response.json["usage_id"] in usage_ids
    finally:
        endpoint_delete(endpoint=endpoint)


def test_with_a_key_the_claim_consume_and_settle_are_one_transaction(
    warm: Api, conc: ConcTenant
) -> None:
    external_id = f"key-{uuid.uuid4().hex[:8]}"
    _grant(warm, conc, external_id)
    key = {"Idempotency-Key": f"k-{uuid.uuid4()}"}

    sent: list[str] = []

    def record(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        sent.append(sql)
        return execute(sql, params, many, context)

    with CaptureQueriesContext(connection) as first_sql, connection.execute_wrapper(record):
        first = warm.post("billing/quota/consume", key=conc.key, headers=key,
                          json={"external_id": external_id, "feature": "compute", "amount": 4})
    with CaptureQueriesContext(connection) as replay_sql:
        replay = warm.post("billing/quota/consume", key=conc.key, headers=key,
                           json={"external_id": external_id, "feature": "compute", "amount": 4})

    assert first.status == 200 and first.json["remaining"] == 26
    captured = [q["sql"] for q in first_sql.captured_queries]
    assert captured[0] == "BEGIN" and captured[-1] == "COMMIT", captured
    statements = captured[1:-1]  # no SET search_path: every statement names the schema
    assert len(statements) == 3, captured
    assert f'"{conc.tenant.schema_name}".billable_idempotencyrecord' in statements[0]
    assert len(sent) == 3 and "billable_consume(" in sent[1]  # as sent, prepared or not
    assert statements[2].startswith("UPDATE") and "billable_idempotencyrecord" in statements[2]
    assert replay.status == 200 and replay.body == first.body
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert len(replay_sql.captured_queries) == 4  # BEGIN, the claim, the stored answer, COMMIT
    with tenant_context(conc.tenant):
        assert Usage.objects.filter(pk=first.json["usage_id"]).count() == 1
        assert sum(
            e.amount for e in LedgerEntry.objects.filter(usage_id=first.json["usage_id"])
        ) == 4


def test_with_a_key_a_402_is_kept_and_nothing_is_spent(warm: Api, conc: ConcTenant) -> None:
    external_id = f"key402-{uuid.uuid4().hex[:8]}"
    customer_id = _grant(warm, conc, external_id, "c10")
    key = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    body = {"external_id": external_id, "feature": "compute", "amount": 11}

    first = warm.post("billing/quota/consume", key=conc.key, headers=key, json=body)
    again = warm.post("billing/quota/consume", key=conc.key, headers=key, json=body)

    assert_problem(first, 402, "insufficient_quota")
    assert again.status == 402 and again.body == first.body
    assert again.headers.get("Idempotent-Replayed") == "true"
    with tenant_context(conc.tenant):
        assert not Usage.objects.filter(customer_id=customer_id).exists()
