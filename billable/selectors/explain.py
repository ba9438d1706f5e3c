"""Why a balance is what it is (`balance_explain`), and what it was at a past instant
(`balance_as_of`).

`balance_explain` lists what makes up a name's balance — the batches that cover it with their
units, unit cost, expiry and source, the active holds reserving units of it, the next allowance
reset and the subscriptions behind it — and, when the name cannot be used, why, as one stable
code (`REASONS`). Support staff read it; an n8n error branch switches on the code.

`balance_as_of` recomputes a balance from the ledger alone: every batch that was usable at that
instant, with the credits and debits written up to it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Q, QuerySet

from billable import clock
from billable.models import (
    BatchState,
    Customer,
    Hold,
    HoldStatus,
    PlanEntitlement,
    QuotaBatch,
    Subscription,
    SubscriptionStatus,
)
from billable.results import Balance, ExplainedBatch, Explanation
from billable.selectors.ledger import (
    COST_SQL,
    COVERS_SQL,
    PRICED_SQL,
    balance_from_parts,
    balance_get,
    cover_params,
    product_cost,
    units_from_pools,
    unknown_balance,
)

# Why a name cannot be used, most telling first: the first that applies is given.
REASONS = (
    "unknown_customer",  # nobody holds the identity
    "reserved_by_holds",  # units exist, but active holds reserve them
    "paused",  # the subscription that covers it is paused
    "subscription_past_due",  # the subscription that covers it awaits payment
    "exhausted",  # what covers it is used up (or holds less than one unit's credit cost)
    "not_started",  # what covers it starts later (a renewal, a dated grant)
    "expired",  # what covered it has expired
    "revoked",  # what covered it was taken back (refund, revocation, end of a plan)
    "not_covered",  # nothing it holds or held covers the name
)
# At most this many batches are listed, soonest expiry first.
MAX_LISTED = 50


def _covers(name: str) -> Q:
    """Rows whose `product` covers the name: `COVERS_SQL` as a filter."""
    key, feature = cover_params(name)
    return Q(product__key=key) | Q(product__features__contains=[feature])


def _covering(customer: Customer, name: str) -> Q:
    return Q(customer=customer) & _covers(name)


def _source_id(batch: QuotaBatch) -> str | None:
    if batch.order_item is not None:
        return str(batch.order_item.order_id)
    if batch.grant_id is not None:
        return str(batch.grant_id)
    if batch.adjustment_id is not None:
        return str(batch.adjustment_id)
    grant = getattr(batch, "subscription_grant", None)
    return str(grant.subscription_id) if grant is not None else None


def _listed(customer: Customer, name: str, now: datetime) -> QuerySet[QuotaBatch]:
    """Batches that count or may count again: not expired, and active, used up or paused."""
    return (
        QuotaBatch.objects.filter(_covering(customer, name))
        .filter(state__in=[BatchState.ACTIVE, BatchState.EXHAUSTED, BatchState.PAUSED])
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .select_related("product", "order_item", "subscription_grant__subscription__plan")
        .order_by("expires_at", "created_at", "id")
    )


def balance_explain(
    *, customer: Customer | None, feature: str, balance: Balance | None = None
) -> Explanation:
    """The balance of `feature` (or the one given) with what makes it up and, when it cannot
    be used, why."""
    balance = balance or balance_get(customer=customer, feature=feature)
    if customer is None:
        return Explanation(balance=balance, reason="unknown_customer")
    now = clock.now()
    rows = list(_listed(customer, feature, now)[: MAX_LISTED + 1])
    truncated = len(rows) > MAX_LISTED
    batches = [
        ExplainedBatch(
            batch=batch,
            unit_cost=product_cost(batch.product.key, batch.product.credit_costs, feature)[0]
            if batch.product.product_type == "quantity"
            else 1,
            usable=batch.state == BatchState.ACTIVE and batch.valid_from <= now,
            source_id=_source_id(batch),
        )
        for batch in rows[:MAX_LISTED]
    ]
    holds = list(
        Hold.objects.filter(
            customer=customer, status=HoldStatus.ACTIVE, unmetered=False,
            feature__iexact=feature.strip(),
        ).order_by("expires_at", "id")
    )
    subscriptions: dict[Any, Subscription] = {}
    next_reset = None
    for item in batches:
        grant = getattr(item.batch, "subscription_grant", None)
        if grant is None:
            continue
        sub = grant.subscription
        subscriptions.setdefault(sub.pk, sub)
        if grant.period_end > now and (next_reset is None or grant.period_end < next_reset):
            will_reset = not sub.cancel_at_period_end or grant.period_end < sub.current_period_end
            if will_reset and item.batch.source == "plan" and sub.status in ("trialing", "active"):
                next_reset = grant.period_end
    past_due = _past_due_covering(customer, feature)
    for sub in past_due:
        subscriptions.setdefault(sub.pk, sub)
    reason = None
    if not balance.can_use:
        reason = _reason(customer, feature, batches, holds, past_due, now)
    return Explanation(
        balance=balance,
        reason=reason,
        batches=batches,
        batches_truncated=truncated,
        holds=holds,
        next_reset=next_reset,
        subscriptions=list(subscriptions.values()),
    )


def _past_due_covering(customer: Customer, name: str) -> list[Subscription]:
    """The customer's past-due subscriptions whose plan version covers the name."""
    due = list(
        Subscription.objects.filter(customer=customer, status=SubscriptionStatus.PAST_DUE)
        .select_related("plan")
    )
    if not due:
        return []
    covered = set(
        PlanEntitlement.objects.filter(version_id__in=[sub.version_id for sub in due])
        .filter(_covers(name))
        .values_list("version_id", flat=True)
    )
    return [sub for sub in due if sub.version_id in covered]


def _reason(
    customer: Customer,
    name: str,
    batches: list[ExplainedBatch],
    holds: list[Hold],
    past_due: list[Subscription],
    now: datetime,
) -> str:
    if holds:
        return "reserved_by_holds"
    if any(item.batch.state == BatchState.PAUSED for item in batches):
        return "paused"
    if past_due:
        return "subscription_past_due"
    started = [item for item in batches if item.batch.valid_from <= now]
    if started:
        return "exhausted"
    if batches:
        return "not_started"
    last = (
        QuotaBatch.objects.filter(_covering(customer, name))
        .order_by("-created_at", "-id")
        .only("state", "expires_at")
        .first()
    )
    if last is None:
        return "not_covered"
    if last.state == BatchState.REVOKED:
        return "revoked"
    if last.state == BatchState.EXHAUSTED:
        return "exhausted"
    return "expired"


def balance_as_of(*, customer: Customer | None, feature: str, at: datetime) -> Balance:
    """The balance of `feature` at the instant `at`, from the ledger: each batch usable then
    (started, not expired, created by then) with its credits less its debits written by then.
    Units of a priced feature use today's credit costs; a pause, which moves a subscription's
    batches in time, is not undone."""
    if customer is None:
        return unknown_balance(feature)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT p.product_type, p.key, {COST_SQL}, {PRICED_SQL}, b.valid_from, b.expires_at,
                   COALESCE(SUM(CASE WHEN e.direction = 'credit' THEN e.amount
                                     ELSE -e.amount END), 0)
            FROM billable_quotabatch b
            JOIN billable_product p ON p.id = b.product_id
            LEFT JOIN billable_ledgerentry e ON e.batch_id = b.id AND e.created_at <= %s
            WHERE b.customer_id = %s AND b.created_at <= %s AND b.valid_from <= %s
              AND (b.expires_at IS NULL OR b.expires_at > %s) AND {COVERS_SQL}
            GROUP BY b.id, p.id
            """,  # noqa: S608  (constant fragments; every value is a bound parameter)
            [*cover_params(feature), *cover_params(feature), at, customer.pk, at, at, at,
             *cover_params(feature)],
        )
        rows = cursor.fetchall()
    credits: dict[str, tuple[int, bool, int]] = {}
    access = False
    segments: list[tuple[datetime, datetime | None]] = []
    unlimited = False
    for product_type, key, cost, priced, valid_from, expires_at, units in rows:
        if product_type != "quantity":
            if units > 0:
                access = True
                unlimited = unlimited or product_type == "unlimited"
                segments.append((valid_from, expires_at))
            continue
        held = credits.get(key, (int(cost), bool(priced), 0))
        credits[key] = (held[0], held[1], held[2] + int(units))
    remaining, pools = units_from_pools(
        [(key, cost, priced, max(total, 0)) for key, (cost, priced, total) in credits.items()]
    )
    return balance_from_parts(
        customer.pk, feature, remaining=remaining, unlimited=unlimited, access=access,
        segments=segments, now=at, credit_pools=pools,
    )
