"""Query budgets of the hot paths: consume (with and without an idempotency key) and balance.

Budgets are the counts measured with a warm key cache (the key lookup is cached in Redis), and
include the test transaction's SAVEPOINT/RELEASE around each service transaction. They do not
grow with the number of batches, products or features: an N+1 or an extra round trip fails.
"""

from __future__ import annotations

from typing import Any

import pytest

from billable.models import Offer, Product
from tests.support.api import Api
from tests.support.tenants import TenantFixture

Catalog = dict[str, Product | Offer]

# A consume is one statement (`billable_consume`). Inside this test's transaction it runs in the
# service's savepoint, with the signals' reads; on real commits and with no receiver acting it
# is that statement alone (tests/billable/test_consume_statement.py).
CONSUME_QUERIES = 4
# The record claim, the consume and the settle; here in a savepoint of the test's transaction,
# whose cursor sets the search_path (on real commits: BEGIN, the three, COMMIT).
CONSUME_WITH_KEY_QUERIES = 6
CONSUME_REPLAY_QUERIES = 5
CONSUME_ACCESS_QUERIES = 4
# A balance of one name, known customer or not, is one schema-qualified statement and nothing
# else, not even `SET search_path` (tests/billable/test_balance_fast.py counts it on the wire).
BALANCE_ONE_NAME_QUERIES = 1
# Every name: the search_path, the identity, the batches.
BALANCE_EVERY_NAME_QUERIES = 3
# The entitlements call: the search_path, the identity, the subscriptions, their entitlements,
# their current allowance periods, the batches.
ENTITLEMENTS_QUERIES = 6


def _fund(api: Api, key: str, grants: int) -> None:
    for _ in range(grants):
        for sku in ("reports_10", "reports_5_forever"):
            response = api.post("billing/grants", json={"external_id": "q", "sku": sku,
                                                        "kind": "manual"}, key=key)
            assert response.status == 201
    # A read warms the key cache, so the measured request pays no key lookup.
    assert api.get("billing/products", key=key).status == 200


@pytest.mark.parametrize("grants", [1, 4])
def test_consume_budget(
    api: Api, acme: TenantFixture, catalog: Catalog, django_assert_max_num_queries: Any,
    grants: int,
) -> None:
    _fund(api, acme.key, grants)
    body: dict[str, Any] = {"external_id": "q", "feature": "reports", "amount": 15 * grants - 1}
    with django_assert_max_num_queries(CONSUME_QUERIES):
        response = api.post("billing/quota/consume", json=body, key=acme.key)
    assert response.status == 200 and response.json["remaining"] == 1


def test_consume_with_key_budget(
    api: Api, acme: TenantFixture, catalog: Catalog, django_assert_max_num_queries: Any
) -> None:
    _fund(api, acme.key, 2)
    body = {"external_id": "q", "feature": "reports", "amount": 12}
    headers = {"Idempotency-Key": "budget-1"}
    with django_assert_max_num_queries(CONSUME_WITH_KEY_QUERIES):
        first = api.post("billing/quota/consume", json=body, key=acme.key, headers=headers)
    assert first.status == 200
    with django_assert_max_num_queries(CONSUME_REPLAY_QUERIES):
        replay = api.post("billing/quota/consume", json=body, key=acme.key, headers=headers)
    assert replay.headers.get("Idempotent-Replayed") == "true"
    with django_assert_max_num_queries(CONSUME_WITH_KEY_QUERIES):
        by_field = api.post("billing/quota/consume",
                            json={**body, "amount": 1, "idempotency_key": "budget-2"},
                            key=acme.key)
    assert by_field.status == 200 and by_field.json["remaining"] == 17


def test_consume_with_access_budget(
    api: Api, acme: TenantFixture, catalog: Catalog, django_assert_max_num_queries: Any
) -> None:
    for sku in ("pro_month", "unl_forever"):
        api.post("billing/grants", json={"external_id": "q", "sku": sku, "kind": "manual"},
                 key=acme.key)
    api.get("billing/products", key=acme.key)
    with django_assert_max_num_queries(CONSUME_ACCESS_QUERIES):
        response = api.post("billing/quota/consume",
                            json={"external_id": "q", "feature": "exports"}, key=acme.key)
    assert response.status == 200 and response.json["unlimited"] is True


@pytest.mark.parametrize("grants", [1, 4])
def test_balance_budget(
    api: Api, acme: TenantFixture, catalog: Catalog, django_assert_max_num_queries: Any,
    django_assert_num_queries: Any, grants: int,
) -> None:
    _fund(api, acme.key, grants)
    for sku in ("pro_month", "unl_forever"):
        api.post("billing/grants", json={"external_id": "q", "sku": sku, "kind": "manual"},
                 key=acme.key)
    with django_assert_num_queries(BALANCE_ONE_NAME_QUERIES):
        one = api.get("billing/balance", key=acme.key,
                      query={"external_id": "q", "feature": "report_generation"})
    assert one.json["remaining"] == 15 * grants
    with django_assert_num_queries(BALANCE_ONE_NAME_QUERIES):
        by_id = api.get("billing/balance", key=acme.key,
                        query={"customer_id": one.json["customer_id"], "feature": "pro"})
    assert by_id.json["unlimited"] is True
    with django_assert_max_num_queries(BALANCE_EVERY_NAME_QUERIES):
        every = api.get("billing/balance", key=acme.key, query={"external_id": "q"})
    assert len(every.json["items"]) == 6
    with django_assert_num_queries(BALANCE_ONE_NAME_QUERIES):
        unknown = api.get("billing/balance", key=acme.key,
                          query={"external_id": "nobody", "feature": "reports"})
    assert unknown.json["customer_id"] is None


@pytest.mark.parametrize("plans", [1, 4])
def test_entitlements_budget(
    api: Api, acme: TenantFixture, catalog: Catalog, django_assert_max_num_queries: Any,
    plans: int,
) -> None:
    _fund(api, acme.key, plans)
    for index in range(plans):
        created = api.post("billing/plans", json={
            "key": f"budget_{index}", "name": "b", "price": "0", "currency": "USD",
            "entitlements": [
                {"type": "allowance", "product": "reports", "amount": 1},
                {"type": "access", "product": "pro"},
                {"type": "value", "name": f"v{index}", "value": index},
            ]}, key=acme.key)
        assert created.status == 201, created.body
        subscribed = api.post("billing/subscriptions", json={
            "external_id": "q", "plan": f"budget_{index}"}, key=acme.key)
        assert subscribed.status == 201, subscribed.body
    with django_assert_max_num_queries(ENTITLEMENTS_QUERIES):
        response = api.get("billing/entitlements", key=acme.key, query={"external_id": "q"})
    assert len(response.json["subscriptions"]) == plans
    assert len(response.json["values"]) == plans
