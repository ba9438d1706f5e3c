"""Alert rules: the API's reads, the active rules the spending paths check, and a customer's
plans, allowance and period for one feature (`alert_context`).

The active rules travel with the request's resolved key (`TenantRef.alert_rules`, loaded by
`alert_rule_entries` and dropped with the key's cache entry when a rule changes), so a spend
reads them without a query; outside a request they are read once per run scope.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from typing import Any, cast

from django.db import connection
from django.db.models import QuerySet

from billable import errors
from billable.models import AlertRule, EntitlementType
from billable.results import ActiveRule, AlertContext, Threshold
from billable.selectors.entitlements import IN_FORCE
from billable.selectors.ids import uuid_or_none
from billable.selectors.ledger import COST_SQL, COVERS_SQL, cover_params
from billable.tenancy import current_schema
from billing_platform.core.db import qualified_cursor, quoted_schema
from billing_platform.core.identity import AlertRuleEntry
from billing_platform.core.scope import scoped
from tenants.models import Tenant


def alert_rule_list() -> QuerySet[AlertRule]:
    """Every alert rule, with its plan (pages list the newest first)."""
    return AlertRule.objects.select_related("plan")


def alert_rule_get(*, rule_id: Any) -> AlertRule:
    """The rule with this id; 404 `alert_rule_not_found` (a malformed id too)."""
    pk = uuid_or_none(rule_id)
    found = alert_rule_list().filter(pk=pk).first() if pk is not None else None
    if found is None:
        raise errors.AlertRuleNotFound()
    return found


def _entry(
    pk: Any, feature: str, plan_id: int | None, plan_key: str | None, thresholds: Any
) -> AlertRuleEntry:
    return (
        str(pk),
        feature,
        plan_id,
        plan_key,
        tuple((str(item["type"]), int(item["value"])) for item in thresholds or ()),
    )


def alert_rule_entries(tenant: Tenant) -> tuple[AlertRuleEntry, ...]:
    """A tenant's active rules for its keys' cached entry (read from the public schema).

    A schema not yet migrated to alert rules has none.
    """
    schema = quoted_schema(tenant.schema_name)
    with qualified_cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [f"{schema}.billable_alertrule"])
        if not cursor.fetchone()[0]:
            return ()
        cursor.execute(
            f"SELECT r.id, r.feature, r.plan_id, p.key, r.thresholds "  # noqa: S608
            f"FROM {schema}.billable_alertrule r LEFT JOIN {schema}.billable_plan p "
            "ON p.id = r.plan_id WHERE r.is_active ORDER BY r.created_at, r.id"
        )
        rows = cursor.fetchall()
    return tuple(
        _entry(pk, feature, plan_id, plan_key, _json(thresholds))
        for pk, feature, plan_id, plan_key, thresholds in rows
    )


def _json(value: Any) -> Any:
    if isinstance(value, str):  # Django's connection hands jsonb to raw cursors as text
        return json.loads(value)
    return value


def _schema_entries() -> tuple[AlertRuleEntry, ...]:
    rows = AlertRule.objects.filter(is_active=True).order_by("created_at", "id")
    return tuple(
        _entry(*row)
        for row in rows.values_list("id", "feature", "plan_id", "plan__key", "thresholds")
    )


@lru_cache(maxsize=512)
def _parsed(entries: tuple[AlertRuleEntry, ...]) -> tuple[ActiveRule, ...]:
    return tuple(
        ActiveRule(
            id=pk,
            feature=feature,
            plan_id=plan_id,
            plan_key=plan_key,
            thresholds=tuple(
                Threshold(type=cast(Any, kind), value=value) for kind, value in thresholds
            ),
        )
        for pk, feature, plan_id, plan_key, thresholds in entries
    )


def alert_rules_active() -> tuple[ActiveRule, ...]:
    """The active rules of the schema in use: from the request's key, else read (once per run
    scope)."""
    tenant = getattr(connection, "tenant", None)
    carried = getattr(tenant, "alert_rules", None)
    if isinstance(carried, tuple):
        return _parsed(carried)
    return _parsed(scoped(("alert_rules", current_schema()), _schema_entries))


def alert_rules_naming(feature: str) -> tuple[ActiveRule, ...]:
    """The active rules that name `feature` (any case) or `*`."""
    folded = feature.lower()
    return tuple(rule for rule in alert_rules_active() if rule.names(folded))


# The customer's subscriptions in force, each with the allowance entitlements covering the
# name (their amounts in units of the name: a credit product's amount over its cost) and their
# current periods (a period a change of plan revoked counts for nothing).
_CONTEXT_SQL = f"""
SELECT s.id, s.plan_id, e.id,
       e.amount / (SELECT {COST_SQL} FROM billable_product p WHERE p.id = e.product_id),
       g.period_start, g.period_end
FROM billable_subscription s
LEFT JOIN billable_planentitlement e
  ON e.version_id = s.version_id AND e.entitlement_type = %s
 AND EXISTS (SELECT 1 FROM billable_product p WHERE p.id = e.product_id AND {COVERS_SQL})
LEFT JOIN billable_subscriptiongrant g
  ON g.subscription_id = s.id AND g.entitlement_id = e.id
 AND g.period_start <= %s AND g.period_end > %s
 AND EXISTS (SELECT 1 FROM billable_quotabatch b
             WHERE b.id = g.batch_id AND b.state IN ('active', 'exhausted'))
WHERE s.customer_id = %s AND s.status = ANY(%s)
"""  # noqa: S608  (a constant fragment; every value is a bound parameter)


def alert_context(*, customer_id: Any, feature: str, now: datetime) -> AlertContext:
    """The customer's plans in force, and the feature's allowance and current period: one
    query."""
    key, cover = cover_params(feature)
    with connection.cursor() as cursor:
        cursor.execute(
            _CONTEXT_SQL,
            [key, cover, EntitlementType.ALLOWANCE.value, key, cover, now, now, customer_id,
             [str(status) for status in IN_FORCE]],
        )
        rows = cursor.fetchall()
    plan_ids: set[int] = set()
    amounts: dict[tuple[Any, int], int] = {}
    period: tuple[datetime, datetime] | None = None
    for subscription_id, plan_id, entitlement_id, amount, start, end in rows:
        plan_ids.add(plan_id)
        if entitlement_id is not None:
            amounts[(subscription_id, entitlement_id)] = int(amount or 0)
        if start is not None and (period is None or end < period[1]):
            period = (start, end)
    return AlertContext(
        plan_ids=frozenset(plan_ids),
        allowance=sum(amounts.values()) if amounts else None,
        period=period,
    )
