"""Consumption of quota (balances are read by `billable.selectors`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from billable import clock, errors, signals
from billable.models import Customer, Direction, Usage
from billable.selectors import has_usable_access
from billable.services import ledger
from billable.tenancy import current_settings
from billing_platform.core.db import service_atomic
from billing_platform.core.errors import ValidationFailed


@dataclass(frozen=True)
class Consumption:
    usage: Usage
    remaining: int | None
    unlimited: bool


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
            "amount is an integer of at least 1.", field="amount", msg="must be >= 1"
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
    InsufficientQuota (402, with `remaining`); locks the customer's row, then the batches it
    spends, in the fixed order of `billable.services.ledger`.
    """
    require_positive_amount(amount)
    now = clock.now()
    with service_atomic():
        customer = ledger.lock_customer(customer)
        if has_usable_access(customer.pk, feature, now):
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
