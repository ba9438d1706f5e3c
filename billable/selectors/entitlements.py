"""Everything a customer is entitled to, in one answer: `entitlements_get`.

For an app or an n8n workflow to cache: every feature the customer can use or has used up
(its balance, and for allowances what one period gives and when it resets), the configuration
values of its live subscriptions, and those subscriptions' renewal dates.

How subscriptions combine: allowances and access are batches, so several subscriptions add up
like any batches (two plans allowing 100 reports each give 200 a period). Configuration values
are merged by name: numbers take the largest, lists the union (in order), booleans true if any
is, anything else the value of the newest subscription.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from billable import clock
from billable.models import (
    Customer,
    EntitlementType,
    PlanEntitlement,
    Subscription,
    SubscriptionGrant,
    SubscriptionStatus,
)
from billable.results import Entitlements, FeatureEntitlement
from billable.selectors.explain import balance_explain
from billable.selectors.ledger import balance_from_parts, balance_list, product_cost

# Subscriptions whose rights are in force: a past-due one holds none until it is paid.
IN_FORCE = (SubscriptionStatus.TRIALING, SubscriptionStatus.ACTIVE)


def _names(entitlement: PlanEntitlement) -> list[str]:
    product = entitlement.product
    return [] if product is None else [product.key, *product.features]


def merge_values(current: Any, new: Any) -> Any:
    """Two subscriptions' values of one name, `new` from the newer one."""
    if isinstance(current, bool) or isinstance(new, bool):
        if isinstance(current, bool) and isinstance(new, bool):
            return current or new
        return new
    if isinstance(current, int | float) and isinstance(new, int | float):
        return max(current, new)
    if isinstance(current, list) and isinstance(new, list):
        merged = list(current)
        merged.extend(item for item in new if item not in merged)
        return merged
    return new


def _will_reset(sub: Subscription, period_end: datetime) -> bool:
    """Whether another allowance period follows the one ending at `period_end`."""
    if sub.cancel_at_period_end:
        return period_end < sub.current_period_end
    return True


def entitlements_get(*, customer: Customer | None, explain: bool = False) -> Entitlements:
    """What `customer` is entitled to now; an unknown customer (None) to nothing. With
    `explain`, each feature's balance comes with its explanation (`selectors.explain`)."""
    now = clock.now()
    if customer is None:
        return Entitlements(customer=None, as_of=now)
    subscriptions = list(
        Subscription.objects.filter(customer=customer)
        .exclude(status__in=[SubscriptionStatus.CANCELLED, SubscriptionStatus.EXPIRED])
        .select_related("plan", "version")
        .order_by("created_at", "id")
    )
    in_force = [sub for sub in subscriptions if sub.status in IN_FORCE]
    entitlements = list(
        PlanEntitlement.objects.filter(version__in=[sub.version_id for sub in in_force])
        .select_related("product")
        .order_by("position", "id")
    )
    by_version: dict[Any, list[PlanEntitlement]] = {}
    for entitlement in entitlements:
        by_version.setdefault(entitlement.version_id, []).append(entitlement)

    values: dict[str, Any] = {}
    allowance: dict[str, int] = {}
    shown: dict[str, str] = {}
    for sub in in_force:
        for entitlement in by_version.get(sub.version_id, []):
            if entitlement.entitlement_type == EntitlementType.VALUE:
                name = entitlement.name
                values[name] = (
                    merge_values(values[name], entitlement.value)
                    if name in values
                    else entitlement.value
                )
                continue
            # A product key and a feature spelled alike are one name: counted once.
            names = {name.lower(): name for name in reversed(_names(entitlement))}
            for folded, name in names.items():
                shown.setdefault(folded, name)
                if entitlement.entitlement_type == EntitlementType.ALLOWANCE:
                    # in units of the name: a credit product's amount over the name's cost
                    product = entitlement.product
                    cost = 1
                    if product is not None:
                        cost = product_cost(product.key, product.credit_costs, name)[0]
                    units = (entitlement.amount or 0) // cost
                    allowance[folded] = allowance.get(folded, 0) + units

    resets: dict[str, datetime] = {}
    current = (
        SubscriptionGrant.objects.filter(
            subscription__in=in_force,
            entitlement__entitlement_type=EntitlementType.ALLOWANCE,
            period_start__lte=now,
            period_end__gt=now,
            # a period a change of plan revoked resets nothing
            batch__state__in=["active", "exhausted"],
        )
        .select_related("entitlement__product")
    )
    by_id = {sub.pk: sub for sub in in_force}
    for grant in current:
        if not _will_reset(by_id[grant.subscription_id], grant.period_end):
            continue
        for folded in {name.lower() for name in _names(grant.entitlement)}:
            if folded not in resets or grant.period_end < resets[folded]:
                resets[folded] = grant.period_end

    balances = {balance.feature.lower(): balance for balance in balance_list(customer=customer)}
    for folded, name in shown.items():
        if folded not in balances:  # no live batch covers it (an allowance used up): none left
            balances[folded] = balance_from_parts(
                customer.pk, name, remaining=0, unlimited=False, access=False, segments=[],
                now=now,
            )
    features = [
        FeatureEntitlement(
            balance=balances[folded],
            allowance=allowance.get(folded),
            next_reset=resets.get(folded),
            explanation=balance_explain(
                customer=customer, feature=balances[folded].feature, balance=balances[folded]
            )
            if explain
            else None,
        )
        for folded in sorted(balances)
    ]
    return Entitlements(
        customer=customer, as_of=now, features=features, values=values,
        subscriptions=subscriptions,
    )
