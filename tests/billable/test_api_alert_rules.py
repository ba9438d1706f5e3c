"""Usage alerts (`/billing/alert-rules`) and the `quota.threshold_reached` events they send."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django_tenants.utils import tenant_context

from billable import clock, signals
from billable.models import AlertFiring, AlertRule
from billable.results import Threshold
from billable.selectors import CustomerRef
from billable.services.alerts import alert_rule_create, alert_rule_delete
from billable.services.customers import customer_ensure
from billable.services.grants import offer_grant
from billable.services.subscriptions import subscriptions_advance_all
from billing_platform.webhooks.events import validate_data
from billing_platform.webhooks.models import Event
from tests.support.api import Api, assert_problem
from tests.support.concurrency import ConcTenant, hammer, poster, statuses
from tests.support.signals import connected
from tests.support.tenants import TenantFixture, make_key
from tests.support.webhooks import create_endpoint

Catalog = dict[str, Any]
RULE_KEYS = {"id", "feature", "plan", "thresholds", "is_active", "created_at", "updated_at"}
REACHED = "quota.threshold_reached"
# A consume in the test's transaction (tests/billable/test_api_query_budgets.py).
CONSUME_QUERIES = 4


@pytest.fixture
def hooked(api: Api, acme: TenantFixture, settings: Any) -> dict[str, Any]:
    """An endpoint of acme's taking every event (its deliveries are never attempted here)."""
    settings.WEBHOOKS_ALLOW_PRIVATE_NETWORKS = True
    return create_endpoint(api, acme.key, "http://127.0.0.1:9/hook")


def _rule(api: Api, acme: TenantFixture, **body: Any) -> dict[str, Any]:
    response = api.post("billing/alert-rules", json=body, key=acme.key)
    assert response.status == 201, response.body
    return response.json  # type: ignore[no-any-return]


def _grant(api: Api, acme: TenantFixture, who: str, sku: str = "reports_10") -> None:
    response = api.post("billing/grants", json={"external_id": who, "sku": sku,
                                                "kind": "bonus"}, key=acme.key)
    assert response.status == 201, response.body


def _consume(api: Api, acme: TenantFixture, who: str, amount: int) -> int:
    response = api.post("billing/quota/consume", json={"external_id": who, "feature": "reports",
                                                       "amount": amount}, key=acme.key)
    assert response.status == 200, response.body
    return int(response.json["remaining"])


def _reached(acme: TenantFixture) -> list[dict[str, Any]]:
    """The data of acme's quota.threshold_reached events, oldest first (each validated)."""
    events = Event.objects.filter(tenant=acme.tenant, type=REACHED).order_by("created_at", "id")
    return [validate_data(REACHED, event.data).model_dump(mode="json") for event in events]


def _plan(api: Api, acme: TenantFixture, key: str, amount: int) -> None:
    body = {"key": key, "name": key, "price": "0", "currency": "USD",
            "entitlements": [{"type": "allowance", "product": "reports", "amount": amount}]}
    response = api.post("billing/plans", json=body, key=acme.key)
    assert response.status == 201, response.body


def _subscribe(api: Api, acme: TenantFixture, who: str, plan: str) -> dict[str, Any]:
    response = api.post("billing/subscriptions", json={"external_id": who, "plan": plan},
                        key=acme.key)
    assert response.status == 201, response.body
    return response.json  # type: ignore[no-any-return]


# --- The rules


def test_create_read_list_change_and_delete(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    _plan(api, acme, "pro_plan", 10)
    created = _rule(api, acme, feature="Reports", plan="pro_plan",
                    thresholds=[{"type": "percent", "value": 20},
                                {"type": "absolute", "value": 3}])
    assert set(created) == RULE_KEYS
    assert (created["feature"], created["plan"], created["is_active"]) == (
        "reports", "PRO_PLAN", True
    )
    assert created["thresholds"] == [{"type": "percent", "value": 20},
                                     {"type": "absolute", "value": 3}]
    general = _rule(api, acme, feature="*", thresholds=[{"type": "absolute", "value": 0}])
    assert general["plan"] is None
    rule_id = created["id"]
    assert api.get(f"billing/alert-rules/{rule_id}", key=acme.key).json == created
    listed = api.get("billing/alert-rules", key=acme.key).json
    assert [item["id"] for item in listed["items"]] == [general["id"], rule_id]
    changed = api.patch(f"billing/alert-rules/{rule_id}", key=acme.key, json={
        "thresholds": [{"type": "absolute", "value": 5}], "is_active": False})
    assert changed.status == 200, changed.body
    assert (changed.json["thresholds"], changed.json["is_active"]) == (
        [{"type": "absolute", "value": 5}], False
    )
    assert api.delete(f"billing/alert-rules/{rule_id}", key=acme.key).status == 204
    assert_problem(api.get(f"billing/alert-rules/{rule_id}", key=acme.key), 404,
                   "alert_rule_not_found")
    assert_problem(api.delete(f"billing/alert-rules/{rule_id}", key=acme.key), 404,
                   "alert_rule_not_found")
    assert_problem(api.get("billing/alert-rules/not-a-uuid", key=acme.key), 404,
                   "alert_rule_not_found")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"feature": "reports", "thresholds": []}, "validation_error"),
        ({"feature": "reports", "thresholds": [{"type": "absolute", "value": n}
                                               for n in range(11)]}, "validation_error"),
        ({"feature": "reports", "thresholds": [{"type": "percent", "value": 0}]},
         "validation_error"),
        ({"feature": "reports", "thresholds": [{"type": "percent", "value": 101}]},
         "validation_error"),
        ({"feature": "reports", "thresholds": [{"type": "absolute", "value": -1}]},
         "validation_error"),
        ({"feature": "reports", "thresholds": [{"type": "absolute", "value": 2},
                                               {"type": "absolute", "value": 2}]},
         "validation_error"),
        ({"feature": "reports", "thresholds": [{"type": "ratio", "value": 2}]},
         "validation_error"),
        ({"feature": "a b", "thresholds": [{"type": "absolute", "value": 2}]},
         "validation_error"),
        ({"feature": "reports", "plan": "nope", "thresholds": [{"type": "absolute", "value": 2}]},
         "unknown_plan"),
    ],
)
def test_invalid_rules_are_refused(
    api: Api, acme: TenantFixture, catalog: Catalog, body: dict[str, Any], code: str
) -> None:
    assert_problem(api.post("billing/alert-rules", json=body, key=acme.key), 422, code)
    with tenant_context(acme.tenant):
        assert not AlertRule.objects.exists()


def test_one_rule_per_feature_and_plan(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    _plan(api, acme, "pro_plan", 10)
    rule = {"feature": "reports", "thresholds": [{"type": "absolute", "value": 2}]}
    _rule(api, acme, **rule)
    assert_problem(api.post("billing/alert-rules", json={**rule, "feature": "REPORTS"},
                            key=acme.key), 409, "alert_rule_exists")
    _rule(api, acme, **rule, plan="pro_plan")  # a plan's rule is another rule
    assert_problem(api.post("billing/alert-rules", json={**rule, "plan": "PRO_PLAN"},
                            key=acme.key), 409, "alert_rule_exists")
    with tenant_context(acme.tenant):
        assert AlertRule.objects.count() == 2
        first = AlertRule.objects.order_by("created_at").first()
    assert first is not None
    bad = api.patch(f"billing/alert-rules/{first.pk}", key=acme.key,
                    json={"thresholds": [{"type": "percent", "value": 500}]})
    assert_problem(bad, 422, "validation_error")


def test_a_create_replays_under_an_idempotency_key(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    body = {"feature": "reports", "thresholds": [{"type": "absolute", "value": 2}]}
    first = api.post("billing/alert-rules", json=body, key=acme.key,
                     headers={"Idempotency-Key": "rule-once"})
    again = api.post("billing/alert-rules", json=body, key=acme.key,
                     headers={"Idempotency-Key": "rule-once"})
    assert (first.status, again.status) == (201, 201) and again.json == first.json
    with tenant_context(acme.tenant):
        assert AlertRule.objects.count() == 1


def test_reading_needs_read_and_changing_needs_admin(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    _row, writer = make_key(acme.tenant, name="writer", scopes=["billing:write", "billing:read"])
    assert api.get("billing/alert-rules", key=writer).status == 200
    assert_problem(
        api.post("billing/alert-rules", json={"feature": "reports", "thresholds": [
            {"type": "absolute", "value": 2}]}, key=writer),
        403, "insufficient_scope",
    )


# --- Crossings


def test_an_absolute_threshold_is_announced_once_per_crossing(
    api: Api, acme: TenantFixture, catalog: Catalog, hooked: dict[str, Any]
) -> None:
    # given 10 reports, no subscription (no period), and a rule at 5 units
    rule = _rule(api, acme, feature="reports",
                 thresholds=[{"type": "absolute", "value": 5}])
    _grant(api, acme, "abs")
    # when consumes go 10 → 6 → 5 → 4 → 3
    assert _consume(api, acme, "abs", 4) == 6
    assert _reached(acme) == []
    assert _consume(api, acme, "abs", 1) == 5
    assert _consume(api, acme, "abs", 1) == 4
    assert _consume(api, acme, "abs", 1) == 3
    # then one event, at the crossing
    (event,) = _reached(acme)
    assert event["feature"] == "reports" and event["remaining"] == 5
    assert event["threshold"] == {"type": "absolute", "value": 5, "units": 5}
    assert (event["rule_id"], event["plan"], event["allowance"], event["period"]) == (
        rule["id"], None, None, None
    )
    # and without a period, a top-up above the threshold arms it again
    _grant(api, acme, "abs")
    assert _consume(api, acme, "abs", 9) == 4
    assert [e["remaining"] for e in _reached(acme)] == [5, 4]


def test_a_percent_threshold_is_announced_once_per_allowance_period(
    api: Api, acme: TenantFixture, catalog: Catalog, hooked: dict[str, Any]
) -> None:
    # given a free monthly plan allowing 10 reports, and a rule at 50 % of the allowance
    _plan(api, acme, "monthly", 10)
    sub = _subscribe(api, acme, "pct", "monthly")
    _rule(api, acme, feature="reports", thresholds=[{"type": "percent", "value": 50}])
    # when the customer goes 10 → 4, is topped up above it (14) and comes down again
    assert _consume(api, acme, "pct", 6) == 4
    _grant(api, acme, "pct")
    assert _consume(api, acme, "pct", 10) == 4
    # then one event for the period
    (event,) = _reached(acme)
    assert event["threshold"] == {"type": "percent", "value": 50, "units": 5}
    assert (event["allowance"], event["remaining"]) == (10, 4)
    assert event["period"]["start"][:19] == sub["current_period_start"][:19]
    assert event["period"]["end"][:19] == sub["current_period_end"][:19]
    # when the next period starts (the sweep writes its allowance) and it comes down again
    later = clock.now() + timedelta(days=32)
    with clock.frozen(later):
        connection.set_schema(acme.tenant.schema_name)
        subscriptions_advance_all()
        connection.set_schema_to_public()
        balance = api.get("billing/balance", key=acme.key,
                          query={"external_id": "pct", "feature": "reports"}).json
        _consume(api, acme, "pct", balance["remaining"] - 5)
        _consume(api, acme, "pct", 1)
    # then it is announced again, for the new period
    first, second = _reached(acme)
    assert second["remaining"] == 5 and second["period"]["start"] > first["period"]["start"]


def test_a_customer_without_an_allowance_ignores_percent_thresholds(
    api: Api, acme: TenantFixture, catalog: Catalog, hooked: dict[str, Any]
) -> None:
    _rule(api, acme, feature="reports", thresholds=[{"type": "percent", "value": 90}])
    _grant(api, acme, "bought")
    assert _consume(api, acme, "bought", 9) == 1
    assert _reached(acme) == []


def test_a_plan_rule_overrides_the_general_one(
    api: Api, acme: TenantFixture, catalog: Catalog, hooked: dict[str, Any]
) -> None:
    # given a general rule at 8 units and, for the plan's subscribers, one at 3
    _plan(api, acme, "teams", 10)
    general = _rule(api, acme, feature="*", thresholds=[{"type": "absolute", "value": 8}])
    planned = _rule(api, acme, feature="*", plan="teams",
                    thresholds=[{"type": "absolute", "value": 3}])
    _subscribe(api, acme, "member", "teams")
    _grant(api, acme, "outsider")
    # when both come down from 10 to 2
    for who in ("member", "outsider"):
        assert _consume(api, acme, who, 1) == 9
        assert _consume(api, acme, who, 7) == 2
    # then the subscriber's crossing is the plan rule's, the other customer's the general one's
    by_rule = {event["rule_id"]: event for event in _reached(acme)}
    assert set(by_rule) == {general["id"], planned["id"]}
    assert (by_rule[planned["id"]]["plan"], by_rule[planned["id"]]["threshold"]["units"]) == (
        "TEAMS", 3
    )
    assert by_rule[general["id"]]["plan"] is None
    assert by_rule[general["id"]]["customer"]["identities"][0]["external_id"] == "outsider"


def test_a_hold_crosses_a_threshold_too(
    api: Api, acme: TenantFixture, catalog: Catalog, hooked: dict[str, Any]
) -> None:
    _rule(api, acme, feature="reports", thresholds=[{"type": "absolute", "value": 7}])
    _grant(api, acme, "holder")
    held = api.post("billing/holds", json={"external_id": "holder", "feature": "reports",
                                           "amount": 4}, key=acme.key)
    assert held.status == 201, held.body
    (event,) = _reached(acme)
    assert (event["remaining"], event["threshold"]["units"]) == (6, 7)


def test_inactive_and_deleted_rules_send_nothing(
    api: Api, acme: TenantFixture, catalog: Catalog, hooked: dict[str, Any]
) -> None:
    rule = _rule(api, acme, feature="reports", is_active=False,
                 thresholds=[{"type": "absolute", "value": 9}])
    _grant(api, acme, "quiet")
    assert _consume(api, acme, "quiet", 2) == 8
    api.patch(f"billing/alert-rules/{rule['id']}", key=acme.key, json={"is_active": True})
    _grant(api, acme, "quiet")
    assert _consume(api, acme, "quiet", 10) == 8  # 18 → 8: through 9
    assert len(_reached(acme)) == 1
    assert api.delete(f"billing/alert-rules/{rule['id']}", key=acme.key).status == 204
    with tenant_context(acme.tenant):
        assert not AlertFiring.objects.exists()
    _grant(api, acme, "quiet")
    assert _consume(api, acme, "quiet", 10) == 8
    assert len(_reached(acme)) == 1


def test_the_setting_still_sends_quota_low_where_no_rule_names_the_feature(
    api: Api, acme: TenantFixture, catalog: Catalog, hooked: dict[str, Any]
) -> None:
    assert api.patch("settings", json={"low_balance_threshold": 5}, key=acme.key).status == 200
    _rule(api, acme, feature="exports", thresholds=[{"type": "absolute", "value": 1}])
    _grant(api, acme, "legacy")
    _consume(api, acme, "legacy", 6)
    low = Event.objects.filter(tenant=acme.tenant, type="quota.low")
    assert [(e.data["remaining"], e.data["threshold"]) for e in low] == [(4, 5)]
    # a rule for every feature replaces the setting
    _rule(api, acme, feature="*", thresholds=[{"type": "absolute", "value": 3}])
    _grant(api, acme, "legacy")
    _consume(api, acme, "legacy", 12)  # 14 → 2: through 5 and 3
    assert low.count() == 1
    assert [e["threshold"]["units"] for e in _reached(acme)] == [3]


def test_no_receiver_no_rule_work(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    # A rule without any endpoint taking the event records nothing (nothing is sent).
    _rule(api, acme, feature="reports", thresholds=[{"type": "absolute", "value": 5}])
    _grant(api, acme, "unheard")
    _consume(api, acme, "unheard", 8)
    with tenant_context(acme.tenant):
        assert not AlertFiring.objects.exists()


def test_a_rule_that_is_not_crossed_costs_no_query(
    api: Api, acme: TenantFixture, catalog: Catalog, settings: Any,
    django_assert_num_queries: Any,
) -> None:
    settings.WEBHOOKS_ALLOW_PRIVATE_NETWORKS = True
    create_endpoint(api, acme.key, "http://127.0.0.1:9/hook", event_types=[REACHED])
    _grant(api, acme, "cheap")
    _grant(api, acme, "cheap")
    body = {"external_id": "cheap", "feature": "reports", "amount": 1}
    assert api.get("billing/products", key=acme.key).status == 200  # a warm key
    with django_assert_num_queries(CONSUME_QUERIES):
        assert api.post("billing/quota/consume", json=body, key=acme.key).status == 200
    _rule(api, acme, feature="reports", thresholds=[{"type": "absolute", "value": 5}])
    assert api.get("billing/products", key=acme.key).status == 200
    with django_assert_num_queries(CONSUME_QUERIES):
        assert api.post("billing/quota/consume", json=body, key=acme.key).status == 200
    # a crossing costs two more: the customer's plans and period, and the record; then the
    # fan-out writes the event (the customer's identities, the event, its deliveries, NOTIFY)
    body["amount"] = 13  # 18 → 5
    with django_assert_num_queries(CONSUME_QUERIES + 2 + 4):
        assert api.post("billing/quota/consume", json=body, key=acme.key).status == 200
    assert len(_reached(acme)) == 1


# --- Concurrency


def test_concurrent_consumes_announce_a_crossing_once(
    conc: ConcTenant, django_db_blocker: Any
) -> None:
    # given a committed rule at 10 credits and a customer with 30 credits
    with django_db_blocker.unblock():
        with tenant_context(conc.tenant):
            rule = alert_rule_create(feature="compute",
                                     thresholds=[Threshold(type="absolute", value=10)])
            offer_grant(customer=customer_ensure(CustomerRef(external_id="racer")),
                        offer=conc.offers["c30"], kind="bonus")
        received: list[dict[str, Any]] = []

        def receive(sender: Any, **kwargs: Any) -> None:
            received.append(kwargs)

        try:
            # when 24 consumes of one credit run at once
            with connected(signals.quota_threshold_reached, receive):
                answers = hammer([
                    poster(conc, "billing/quota/consume",
                           {"external_id": "racer", "feature": "compute", "amount": 1})
                    for _ in range(24)
                ])
            # then every one succeeded and the crossing of 10 was announced once
            assert statuses(answers) == {200: 24}
            assert [(r["remaining"], r["threshold"]["units"]) for r in received] == [(10, 10)]
            with tenant_context(conc.tenant):
                assert AlertFiring.objects.filter(rule=rule).count() == 1
        finally:
            with tenant_context(conc.tenant):
                alert_rule_delete(rule=rule)


def test_a_percent_of_a_credit_allowance_counts_in_units_of_the_feature(
    api: Api, acme: TenantFixture, catalog: Any, hooked: dict[str, Any]
) -> None:
    # a plan of 100 credits a period; a large-model call costs 10: an allowance of 10 calls
    made = api.post("billing/products", json={
        "key": "ai_credits", "name": "AI credits", "product_type": "quantity",
        "features": ["large_model"], "credit_costs": {"large_model": 10}}, key=acme.key)
    assert made.status == 201, made.body
    body = {"key": "ai_plan", "name": "AI", "price": "0", "currency": "USD",
            "entitlements": [{"type": "allowance", "product": "ai_credits", "amount": 100}]}
    assert api.post("billing/plans", json=body, key=acme.key).status == 201
    _subscribe(api, acme, "ai-1", "ai_plan")
    features = {f["feature"]: f for f in api.get("billing/entitlements", key=acme.key,
                                                 query={"external_id": "ai-1"}).json["features"]}
    assert (features["large_model"]["allowance"], features["AI_CREDITS"]["allowance"]) == (
        10, 100)
    _rule(api, acme, feature="large_model", thresholds=[{"type": "percent", "value": 50}])
    for expected_remaining in (9, 8, 7, 6, 5, 4):
        response = api.post("billing/quota/consume", json={
            "external_id": "ai-1", "feature": "large_model"}, key=acme.key)
        assert response.status == 200, response.body
        assert response.json["remaining"] == expected_remaining
        # 50 % of 10 calls is 5: reached by the call that leaves 5, once
        assert len(_reached(acme)) == (1 if expected_remaining <= 5 else 0)
    (reached,) = _reached(acme)
    assert (reached["remaining"], reached["threshold"]["units"], reached["allowance"]) == (
        5, 5, 10)
