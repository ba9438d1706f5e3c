"""Consumption of quota (balances are read by `billable.selectors`).

The spending rules run in the database: `billable_spend` and `billable_consume` (migration
`0013_credit_costs`, which replaced `0005_spend_functions`' to count units at credit costs), one
copy per tenant schema, are what every spending path calls: `quota_consume` here, `hold_create`
and the exchange of an order. A consume is one statement;
when no receiver would act on its signals (`signals.may_act`) and no transaction is open, it runs
in autocommit: one round trip, schema-qualified, with no `SET search_path`. Otherwise it runs in
the service's transaction and the signals are sent in it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection
from django.utils import timezone

from billable import clock, errors, signals
from billable.models import Customer, Direction, LedgerEntry, Usage
from billable.selectors import CustomerRef, customer_require, normalise_external_id
from billable.selectors.ledger import cover_params
from billable.services import alerts
from billing_platform.core.db import qualified_cursor, quoted_schema, service_atomic
from billing_platform.core.errors import ValidationFailed

# The signals a consume may send: when no receiver of any would act (and none of the levels'
# signals could be sent, `alerts.levels_may_act`), nothing needs sending.
CONSUME_SIGNALS = (
    signals.quota_consumed,
    signals.transaction_created,
    signals.quota_depleted,
)

# Schema-qualified, so it needs no `SET search_path`; every value is a bound parameter.
CONSUME_SQL = (
    "SELECT outcome, customer_id, total, created_at, entry_ids, batch_ids, amounts, credits, "
    "pool_credits "
    "FROM {schema}.billable_consume(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


@dataclass(frozen=True)
class Consumption:
    usage: Usage
    remaining: int | None
    unlimited: bool
    # Credits left in the products that price the feature (None when none does).
    remaining_credits: int | None = None


@dataclass(frozen=True)
class Spent:
    """What a spend took: the units there were before, and the debit entries it wrote."""

    total: int
    entries: list[LedgerEntry]
    # Credits left afterwards in the products that price the name (None when none does).
    pool_credits: int | None = None


def thresholds_signal(customer: Customer, name: str, before: int, after: int) -> None:
    """Send `quota_low`, `quota_depleted` and `quota_threshold_reached` for the levels a spend
    took `name` across (`billable.services.alerts`)."""
    if signals.may_act(signals.quota_low):
        threshold = alerts.legacy_threshold(name)
        if threshold > 0 and before > threshold >= after:
            signals.quota_low.send(
                sender=Usage, customer=customer, feature=name, remaining=after,
                threshold=threshold,
            )
    if before > 0 and after == 0:
        signals.quota_depleted.send(sender=Usage, customer=customer, feature=name)
    alerts.alerts_signal(customer, name, before, after)


def require_positive_amount(amount: int) -> None:
    """Amounts consumed or reserved are integers >= 1 (422 otherwise)."""
    if isinstance(amount, bool) or not isinstance(amount, int) or amount < 1:
        raise ValidationFailed(
            "amount is an integer of at least 1.", field="amount", msg="must be >= 1"
        )


def _short(
    name: str, amount: int, total: int, pool: int | None = None
) -> errors.PaymentRequired:
    """The 402 of a spend that found `total` units; with products pricing the name in credits
    (`pool` credits left in them), the answer carries `remaining_credits` too."""
    extra = {} if pool is None else {"remaining_credits": int(pool)}
    if total == 0:
        if pool:
            return errors.QuotaExhausted(
                f"{pool} credits are left: fewer than one unit of {name!r} costs.",
                remaining=0, **extra,
            )
        return errors.QuotaExhausted(
            f"Nothing usable covers {name!r} for this customer.", remaining=0, **extra
        )
    return errors.InsufficientQuota(
        f"{amount} units were asked for; {total} are left.", remaining=total, **extra
    )


def _debits(
    entry_ids: list[int] | None,
    batch_ids: list[Any] | None,
    amounts: list[int] | None,
    *,
    action_type: str,
    action_id: str,
    actor: str,
    usage_id: Any,
    hold_id: Any,
    at: datetime,
    metadata: dict[str, Any] | None = None,
) -> list[LedgerEntry]:
    """The debit entries a spend function wrote, as saved model instances."""
    entries = []
    for pk, batch_id, amount in zip(entry_ids or [], batch_ids or [], amounts or [], strict=True):
        entry = LedgerEntry(
            pk=pk, batch_id=batch_id, direction=Direction.DEBIT, amount=int(amount),
            action_type=action_type, action_id=action_id, actor=actor, usage_id=usage_id,
            hold_id=hold_id, metadata=metadata or {}, created_at=at,
        )
        entry._state.adding = False
        entry._state.db = connection.alias
        entries.append(entry)
    return entries


def entries_signal(entries: list[LedgerEntry]) -> None:
    """`transaction_created` for each entry a spend wrote (once the rows they name exist)."""
    for entry in entries:
        signals.transaction_created.send(sender=LedgerEntry, entry=entry)


def debit(
    customer_id: Any,
    name: str,
    amount: int,
    now: datetime,
    *,
    action_type: str,
    action_id: str = "",
    actor: str = "",
    usage_id: Any = None,
    hold_id: Any = None,
    product_id: Any = None,
    metadata: dict[str, Any] | None = None,
) -> Spent:
    """Debit `amount` units of `name` soonest-expiring batch first, if there are enough.

    With `product_id`, only that product's batches are spent (a currency), not every product
    whose features include `name`. When the usable batches hold fewer units, nothing is written
    and `Spent.entries` is empty. The caller holds the customer's row lock; the entries name
    `usage_id` or `hold_id`, whose rows the caller writes in the same transaction, and then
    sends `entries_signal(spent.entries)`.
    """
    key, feature = cover_params(name)
    at = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT total, entry_ids, batch_ids, amounts, pool_credits FROM billable_spend("
            "%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [customer_id, key, feature, product_id, amount, now, action_type, action_id or "",
             actor or "", usage_id, hold_id, at,
             LedgerEntry._meta.get_field("metadata").get_db_prep_value(
                 metadata or {}, connection
             )],
        )
        total, entry_ids, batch_ids, amounts, pool_credits = cursor.fetchone()
    entries = _debits(
        entry_ids, batch_ids, amounts, action_type=action_type, action_id=action_id or "",
        actor=actor or "", usage_id=usage_id, hold_id=hold_id, at=at, metadata=metadata or {},
    )
    return Spent(total=int(total), entries=entries, pool_credits=pool_credits)


def spend(
    customer: Customer,
    name: str,
    amount: int,
    now: datetime,
    *,
    action_type: str,
    action_id: str = "",
    actor: str = "",
    usage_id: Any = None,
    hold_id: Any = None,
    product_id: Any = None,
) -> Spent:
    """`debit`, raising the 402s (quota_exhausted, insufficient_quota) when it cannot."""
    spent = debit(
        customer.pk, name, amount, now, action_type=action_type, action_id=action_id,
        actor=actor, usage_id=usage_id, hold_id=hold_id, product_id=product_id,
    )
    if spent.total < amount:
        raise _short(name, amount, spent.total, spent.pool_credits)
    return spent


def _target(customer: Customer | None, ref: CustomerRef | None) -> tuple[Any, str, str | None]:
    """(customer id, provider, external id) for the consume function."""
    if customer is not None:
        return customer.pk, "", None
    if ref is None:
        raise ValueError("quota_consume needs a customer or a reference")
    if ref.customer_id:
        return customer_require(ref).pk, "", None  # 404, or 422 customer_mismatch
    if ref.external_id is None:
        raise errors.CustomerNotFound()
    return None, ref.provider, normalise_external_id(ref.external_id)


def quota_consume(
    *,
    customer: Customer | None = None,
    ref: CustomerRef | None = None,
    feature: str,
    amount: int = 1,
    action_type: str = "usage",
    action_id: str = "",
    metadata: dict[str, Any] | None = None,
    actor: str = "",
) -> Consumption:
    """Consume quota for a feature, soonest-expiring batch first, all or nothing.

    The customer is given, or named by `ref` (an identity nobody holds has nothing to consume:
    402, and no customer is created). Period or unlimited access covers the use without
    decrement. Raises QuotaExhausted or InsufficientQuota (402, with `remaining`).
    """
    require_positive_amount(amount)
    customer_id, provider, external_id = _target(customer, ref)
    now = clock.now()
    usage_id = uuid.uuid4()
    metadata = metadata or {}
    key, cover = cover_params(feature)
    schema = connection.schema_name  # type: ignore[attr-defined]
    params = [
        schema, customer_id, provider, external_id, feature, key, cover, amount, now,
        action_type, action_id or "", actor or "",
        Usage._meta.get_field("metadata").get_db_prep_value(metadata, connection), usage_id,
    ]
    sql = CONSUME_SQL.format(schema=quoted_schema(schema))
    acts = signals.may_act(*CONSUME_SIGNALS) or alerts.levels_may_act(feature)
    if not acts and not connection.in_atomic_block:
        with qualified_cursor(prepared=True) as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        return _consumed(row, feature, amount, action_type, action_id, actor, usage_id,
                         metadata, entries=False)[0]
    with service_atomic():
        with qualified_cursor(prepared=True) as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        if row[0] != "short":  # a short consume wrote nothing; its 402 is raised below
            result, entries = _consumed(
                row, feature, amount, action_type, action_id, actor, usage_id, metadata,
                entries=acts,
            )
            if acts:
                _announce(result, entries, customer, feature, amount)
            return result
    return _consumed(
        row, feature, amount, action_type, action_id, actor, usage_id, metadata, entries=False
    )[0]


def _announce(
    result: Consumption,
    entries: list[LedgerEntry],
    customer: Customer | None,
    feature: str,
    amount: int,
) -> None:
    """The consume's signals, in its transaction: entries, `quota_consumed`, thresholds."""
    acting = customer
    if acting is None or acting.pk != result.usage.customer_id:
        acting = Customer(pk=result.usage.customer_id)
        acting._state.adding = False
        acting._state.db = connection.alias
    entries_signal(entries)
    signals.quota_consumed.send(
        sender=Usage, usage=result.usage, customer=acting, remaining=result.remaining,
        unlimited=result.unlimited, remaining_credits=result.remaining_credits,
    )
    if result.remaining is not None:
        thresholds_signal(acting, feature, result.remaining + amount, result.remaining)


def _consumed(
    row: tuple[Any, ...],
    feature: str,
    amount: int,
    action_type: str,
    action_id: str,
    actor: str,
    usage_id: Any,
    metadata: dict[str, Any],
    *,
    entries: bool,
) -> tuple[Consumption, list[LedgerEntry]]:
    """The consume function's answer as a `Consumption` and, when asked (for the signals), its
    ledger entries; raises the 402s."""
    outcome, customer_id, total, created_at, entry_ids, batch_ids, amounts, credits, pool = row
    if outcome == "short":
        raise _short(feature, amount, int(total), pool)
    usage = Usage(
        pk=usage_id, customer_id=customer_id, feature=feature, amount=amount,
        credits=int(credits or 0), action_type=action_type, action_id=action_id or "",
        metadata=metadata, created_at=created_at,
    )
    usage._state.adding = False
    usage._state.db = connection.alias
    if outcome == "unlimited":
        return Consumption(usage=usage, remaining=None, unlimited=True), []
    debits = (
        _debits(
            entry_ids, batch_ids, amounts, action_type=action_type, action_id=action_id or "",
            actor=actor or "", usage_id=usage_id, hold_id=None, at=created_at,
        )
        if entries
        else []
    )
    remaining = int(total) - amount
    return Consumption(
        usage=usage, remaining=remaining, unlimited=False, remaining_credits=pool
    ), debits
