"""Reads of quota: usable batches, balances, holds and the ledger.

A batch is usable when `state = active`, `valid_from <= now` and (`expires_at` is null or later
than now): `LIVE_SQL` and `STARTED_SQL`. A name is covered by the products whose key it is or
whose features include it (`COVERS_SQL`), for every read here, for the one-statement balance
check (`billable.selectors.balance`) and for the locks the ledger services take.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from django.db import connection
from django.db.models import Q, QuerySet, Value
from django.db.models.functions import Coalesce

from billable import clock, errors
from billable.models import (
    BatchState,
    Customer,
    Hold,
    LedgerEntry,
    ProductType,
    QuotaBatch,
    Usage,
)
from billable.results import Balance, CreditPool
from billable.selectors.ids import uuid_or_none

# Batches without expiry sort after every dated one.
FAR_FUTURE_AWARE = datetime(9999, 12, 31, tzinfo=UTC)

# Products covering a name: the name is their key, or one of their features.
COVERS_SQL = "(p.key = %s OR p.features @> ARRAY[%s]::varchar(64)[])"
# A batch `b` that still counts: active and not expired (it may start later, as a renewal does).
# Parameter: now.
LIVE_SQL = "b.state = 'active' AND (b.expires_at IS NULL OR b.expires_at > %s)"
# A live batch that has started is usable. Parameter: now.
STARTED_SQL = "b.valid_from <= %s"


# A unit of the name costs this many units of a covering product's batches: its credit cost of
# the feature, 1 without one or when the name is its key. Parameters: cover_params(name).
COST_SQL = (
    "(CASE WHEN p.key = %s THEN 1 ELSE COALESCE((p.credit_costs ->> %s)::bigint, 1) END)"
)
# Whether a covering product prices the name in credits. Parameters: cover_params(name).
PRICED_SQL = "(p.key <> %s AND (p.credit_costs ->> %s) IS NOT NULL)"


def cover_params(name: str) -> list[str]:
    return [name.upper(), name.lower()]


def units_from_pools(
    parts: Sequence[tuple[str, int, bool, int]],
) -> tuple[int, tuple[CreditPool, ...]]:
    """Units of a name from (product key, cost, priced, credits) per covering product:
    floor(credits / cost) each, no unit split between products; and the priced products."""
    units = sum(credits // cost for _key, cost, _priced, credits in parts)
    pools = tuple(
        CreditPool(product=key, unit_cost=cost, credits=credits)
        for key, cost, priced, credits in sorted(parts)
        if priced
    )
    return units, pools


def product_cost(key: str, costs: dict[str, Any] | str | None, name: str) -> tuple[int, bool]:
    if key == name.upper():
        return 1, False
    found: dict[str, Any] = (json.loads(costs) if isinstance(costs, str) else costs) or {}
    cost = found.get(name.lower())  # a raw cursor reads jsonb as text
    return (int(cost), True) if cost is not None else (1, False)


def usable_batches(*, customer: Customer, product: str | None = None) -> QuerySet[QuotaBatch]:
    """Usable batches in consumption order (soonest expiry first, never-expiring last); of one
    product key (any case) when `product` is given."""
    now = clock.now()
    found = (
        QuotaBatch.objects.filter(customer=customer, state="active", valid_from__lte=now)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .select_related("product")
        .annotate(sort_expires=Coalesce("expires_at", Value(FAR_FUTURE_AWARE)))
    )
    return found if product is None else found.filter(product__key=product.strip().upper())


def has_usable_access(customer_id: Any, name: str, now: datetime) -> bool:
    """Whether usable period or unlimited access covers `name`."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT 1 FROM billable_quotabatch b JOIN billable_product p ON p.id = b.product_id
            WHERE b.customer_id = %s AND {LIVE_SQL} AND {STARTED_SQL}
              AND p.product_type <> 'quantity' AND {COVERS_SQL}
            LIMIT 1
            """,  # noqa: S608  (constant fragments; every value is a bound parameter)
            [customer_id, now, now, *cover_params(name)],
        )
        return cursor.fetchone() is not None


def period_access_end(customer_id: Any, product_id: Any, now: datetime) -> datetime | None:
    """Where the customer's contiguous access to a period product ends (>= now).

    None means access without end (a batch without expiry is usable).
    """
    rows = list(
        QuotaBatch.objects.filter(
            customer_id=customer_id, product_id=product_id, state=BatchState.ACTIVE
        )
        .exclude(expires_at__lte=now)
        .order_by("valid_from")
        .values_list("valid_from", "expires_at")
    )
    return contiguous_end(rows, now)


def contiguous_end(
    segments: Sequence[tuple[datetime, datetime | None]], now: datetime
) -> datetime | None:
    end = now
    for valid_from, expires_at in sorted(segments, key=lambda s: s[0]):
        if valid_from > end:
            break
        if expires_at is None:
            return None
        end = max(end, expires_at)
    return end


def unknown_balance(name: str) -> Balance:
    """The balance of any name for an identity nobody has yet."""
    return Balance(None, name, False, 0, False, None, "Unknown customer.")


def balance_from_parts(
    customer_id: Any,
    name: str,
    *,
    remaining: int,
    unlimited: bool,
    access: bool,
    segments: Sequence[tuple[datetime, datetime | None]],
    now: datetime,
    credit_pools: tuple[CreditPool, ...] = (),
) -> Balance:
    """The balance of a name from the live batches covering it.

    `remaining`: units of the started quantity batches; `unlimited`: a started unlimited batch;
    `access`: a started period or unlimited batch; `segments`: (valid_from, expires_at) of every
    live period or unlimited batch, started or not (renewals extend access).
    """
    if access:
        end = None if unlimited else contiguous_end(segments, now)
        return Balance(
            customer_id=customer_id,
            feature=name,
            can_use=True,
            remaining=None,
            unlimited=True,
            expires_at=end,
            message="Access is active."
            if end is None
            else f"Access is active until {end:%Y-%m-%dT%H:%M:%SZ}.",
            credit_pools=credit_pools,
        )
    return Balance(
        customer_id=customer_id,
        feature=name,
        can_use=remaining > 0,
        remaining=remaining,
        unlimited=False,
        expires_at=None,
        message=(
            f"{remaining} unit{'' if remaining == 1 else 's'} left."
            if remaining > 0
            else "No units left for this feature."
        ),
        credit_pools=credit_pools,
    )


def _balance_from_rows(
    customer_id: Any, name: str, rows: list[tuple[Any, ...]], now: datetime
) -> Balance:
    """rows: (product_type, remaining, valid_from, expires_at, product key, credit costs) of
    live batches."""
    started = [row for row in rows if row[2] <= now]
    credits: dict[str, int] = {}
    costs: dict[str, tuple[int, bool]] = {}
    for row in started:
        if row[0] == ProductType.QUANTITY:
            credits[row[4]] = credits.get(row[4], 0) + int(row[1])
            costs[row[4]] = product_cost(row[4], row[5], name)
    remaining, pools = units_from_pools(
        [(key, *costs[key], total) for key, total in credits.items()]
    )
    return balance_from_parts(
        customer_id,
        name,
        remaining=remaining,
        credit_pools=pools,
        unlimited=any(r[0] == ProductType.UNLIMITED for r in started),
        access=any(r[0] != ProductType.QUANTITY for r in started),
        segments=[(r[2], r[3]) for r in rows if r[0] != ProductType.QUANTITY],
        now=now,
    )


def balance_get(*, customer: Customer | None, feature: str) -> Balance:
    """The balance of one feature name or product key."""
    now = clock.now()
    if customer is None:
        return unknown_balance(feature)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT p.product_type, b.remaining, b.valid_from, b.expires_at, p.key,
                   p.credit_costs
            FROM billable_quotabatch b JOIN billable_product p ON p.id = b.product_id
            WHERE b.customer_id = %s AND {LIVE_SQL} AND {COVERS_SQL}
            """,  # noqa: S608  (constant fragments; every value is a bound parameter)
            [customer.pk, now, *cover_params(feature)],
        )
        rows = cursor.fetchall()
    return _balance_from_rows(customer.pk, feature, rows, now)


def balance_list(*, customer: Customer | None) -> list[Balance]:
    """One balance per feature name and product key the customer holds."""
    if customer is None:
        return []
    now = clock.now()
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT b.id, p.key, p.features, p.product_type, b.remaining, b.valid_from,
                   b.expires_at, p.credit_costs
            FROM billable_quotabatch b JOIN billable_product p ON p.id = b.product_id
            WHERE b.customer_id = %s AND {LIVE_SQL}
            """,  # noqa: S608  (constant fragment; every value is a bound parameter)
            [customer.pk, now],
        )
        rows = cursor.fetchall()
    # Names match case-insensitively: a product key and a feature spelled alike are one name.
    shown: dict[str, str] = {}
    by_name: dict[str, dict[Any, tuple[Any, ...]]] = {}
    for batch_id, key, features, product_type, remaining, valid_from, expires_at, costs in rows:
        for name in [key, *features]:
            folded = name.lower()
            if folded not in shown or name == key:
                shown[folded] = name
            by_name.setdefault(folded, {})[batch_id] = (
                product_type,
                remaining,
                valid_from,
                expires_at,
                key,
                costs,
            )
    return [
        _balance_from_rows(customer.pk, shown[folded], list(batches.values()), now)
        for folded, batches in sorted(by_name.items())
    ]


def wallet(*, customer: Customer) -> dict[str, Any]:
    """Units per product key over usable batches; null for period or unlimited access."""
    balances: dict[str, int | None] = {}
    for batch in usable_batches(customer=customer):
        key = batch.product.key
        if batch.product.product_type != "quantity":
            balances[key] = None
        elif key not in balances or balances[key] is not None:
            balances[key] = (balances.get(key) or 0) + batch.remaining
    return {"customer_id": str(customer.pk), "balances": balances}


def ledger_entries(
    *,
    customer: Customer,
    product: str | None = None,
    action_type: str | None = None,
    since: datetime | None = None,
) -> QuerySet[LedgerEntry]:
    queryset = LedgerEntry.objects.filter(batch__customer=customer).select_related("batch__product")
    if product:
        queryset = queryset.filter(batch__product__key=product.upper())
    if action_type:
        queryset = queryset.filter(action_type=action_type)
    if since is not None:
        queryset = queryset.filter(created_at__gte=since)
    return queryset


def usages(
    *,
    customer: Customer,
    feature: str | None = None,
    action_type: str | None = None,
    since: datetime | None = None,
) -> QuerySet[Usage]:
    """A customer's usages (consumes and committed holds), any order; of one feature name (any
    case), one action type, from `since` on, as asked."""
    queryset = Usage.objects.filter(customer=customer)
    if feature:
        queryset = queryset.filter(feature__iexact=feature.strip())
    if action_type:
        queryset = queryset.filter(action_type=action_type)
    if since is not None:
        queryset = queryset.filter(created_at__gte=since)
    return queryset


def batch_get(*, batch_id: str) -> QuotaBatch:
    key = uuid_or_none(batch_id)
    batch = QuotaBatch.objects.select_related("product").filter(pk=key).first() if key else None
    if batch is None:
        raise errors.BatchNotFound()
    return batch


def hold_get(*, hold_id: str) -> Hold:
    key = uuid_or_none(hold_id)
    hold = Hold.objects.filter(pk=key).first() if key else None
    if hold is None:
        raise errors.HoldNotFound()
    return hold
