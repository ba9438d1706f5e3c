"""Balance and consumption of quota."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection

from billable import clock, errors, signals
from billable.models import Customer, Direction, ProductType, Usage
from billable.services import ledger
from billable.tenancy import current_settings
from billing_platform.core.db import service_atomic
from billing_platform.core.errors import ValidationFailed


@dataclass(frozen=True)
class Balance:
    customer_id: Any
    feature: str
    can_use: bool
    remaining: int | None
    unlimited: bool
    expires_at: datetime | None
    message: str


@dataclass(frozen=True)
class Consumption:
    usage: Usage
    remaining: int | None
    unlimited: bool


def _balance_from_rows(
    customer_id: Any, name: str, rows: list[tuple[Any, ...]], now: datetime
) -> Balance:
    """rows: (product_type, remaining, valid_from, expires_at) of active, unexpired batches."""
    access_segments = [
        (valid_from, expires_at)
        for product_type, _remaining, valid_from, expires_at in rows
        if product_type != ProductType.QUANTITY
    ]
    usable_access = [seg for seg in access_segments if seg[0] <= now]
    if usable_access:
        has_unlimited_type = any(r[0] == ProductType.UNLIMITED and r[2] <= now for r in rows)
        end = None if has_unlimited_type else ledger.contiguous_end(access_segments, now)
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
        )
    remaining = sum(int(r[1]) for r in rows if r[0] == ProductType.QUANTITY and r[2] <= now)
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
    )


def balance_get(*, customer: Customer | None, feature: str) -> Balance:
    """The balance of one feature name or product key."""
    now = clock.now()
    if customer is None:
        return Balance(None, feature, False, 0, False, None, "Unknown customer.")
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT p.product_type, b.remaining, b.valid_from, b.expires_at
            FROM billable_quotabatch b JOIN billable_product p ON p.id = b.product_id
            WHERE b.customer_id = %s AND b.state = 'active'
              AND (b.expires_at IS NULL OR b.expires_at > %s) AND {ledger.COVERS_SQL}
            """,
            [customer.pk, now, *ledger.cover_params(feature)],
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
            """
            SELECT b.id, p.key, p.features, p.product_type, b.remaining, b.valid_from,
                   b.expires_at
            FROM billable_quotabatch b JOIN billable_product p ON p.id = b.product_id
            WHERE b.customer_id = %s AND b.state = 'active'
              AND (b.expires_at IS NULL OR b.expires_at > %s)
            """,
            [customer.pk, now],
        )
        rows = cursor.fetchall()
    # Names match case-insensitively: a product key and a feature spelled alike are one name.
    shown: dict[str, str] = {}
    by_name: dict[str, dict[Any, tuple[Any, ...]]] = {}
    for batch_id, key, features, product_type, remaining, valid_from, expires_at in rows:
        for name in [key, *features]:
            folded = name.lower()
            if folded not in shown or name == key:
                shown[folded] = name
            by_name.setdefault(folded, {})[batch_id] = (
                product_type,
                remaining,
                valid_from,
                expires_at,
            )
    return [
        _balance_from_rows(customer.pk, shown[folded], list(batches.values()), now)
        for folded, batches in sorted(by_name.items())
    ]


def thresholds_signal(customer: Customer, name: str, before: int, after: int) -> None:
    """Send `quota_low` / `quota_depleted` if a spend took `name` across them."""
    threshold = int(current_settings().get("low_balance_threshold") or 0)
    if threshold > 0 and before > threshold >= after:
        signals.quota_low.send(
            sender=Usage, customer=customer, feature=name, remaining=after, threshold=threshold
        )
    if before > 0 and after == 0:
        signals.quota_depleted.send(sender=Usage, customer=customer, feature=name)


def require_positive_amount(amount: int) -> None:
    """Amounts consumed or reserved are integers >= 1 (422 otherwise)."""
    if isinstance(amount, bool) or not isinstance(amount, int) or amount < 1:
        raise ValidationFailed(
            "amount is an integer of at least 1.",
            errors=[{"loc": ["body", "amount"], "msg": "must be >= 1"}],
        )


def spend(
    customer: Customer, name: str, amount: int, now: datetime, *, product_id: Any = None
) -> tuple[list[ledger.Take], int]:
    """Lock and allocate `amount` units of `name`; raises the 402s. Returns takes and total.

    With `product_id`, only that product's batches are spent (a currency), not every product
    whose features include `name`.
    """
    if product_id is not None:
        lots = ledger.lock_quantity_lots(customer.pk, now, product_id=product_id)
    else:
        lots = ledger.lock_quantity_lots(customer.pk, now, name=name)
    total = sum(lot.remaining for lot in lots)
    if total == 0:
        raise errors.QuotaExhausted(
            f"Nothing usable covers {name!r} for this customer.", remaining=0
        )
    if total < amount:
        raise errors.InsufficientQuota(
            f"{amount} units were asked for; {total} are left.", remaining=total
        )
    return ledger.allocate(lots, amount), total


def quota_consume(
    *,
    customer: Customer,
    feature: str,
    amount: int = 1,
    action_type: str = "usage",
    action_id: str = "",
    metadata: dict[str, Any] | None = None,
    actor: str = "",
) -> Consumption:
    """Consume quota for a feature, soonest-expiring batch first, all or nothing.

    Period or unlimited access covers the use without decrement. Raises QuotaExhausted or
    InsufficientQuota (402, with `remaining`); locks the batches it spends in a fixed order.
    """
    require_positive_amount(amount)
    now = clock.now()
    with service_atomic():
        if ledger.has_usable_access(customer.pk, feature, now):
            usage = Usage.objects.create(
                customer=customer,
                feature=feature,
                amount=amount,
                action_type=action_type,
                action_id=action_id,
                metadata=metadata or {},
            )
            signals.quota_consumed.send(
                sender=Usage, usage=usage, customer=customer, remaining=None, unlimited=True
            )
            return Consumption(usage=usage, remaining=None, unlimited=True)
        # The usage row first: the batch locks taken next are then held for two round trips
        # (the debit and the commit). A 402 rolls the usage back with everything else.
        usage = Usage.objects.create(
            customer=customer,
            feature=feature,
            amount=amount,
            action_type=action_type,
            action_id=action_id,
            metadata=metadata or {},
        )
        takes, total = spend(customer, feature, amount, now)
        ledger.write_entries(
            takes,
            direction=Direction.DEBIT,
            action_type=action_type,
            action_id=action_id,
            actor=actor,
            usage=usage,
        )
        after = total - amount
        signals.quota_consumed.send(
            sender=Usage, usage=usage, customer=customer, remaining=after, unlimited=False
        )
        thresholds_signal(customer, feature, total, after)
        return Consumption(usage=usage, remaining=after, unlimited=False)
