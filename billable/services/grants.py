"""Granting offers (the primitive behind orders, trials, bonuses and referral rewards),
adjustments and batch revocation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from billable import clock, errors, signals
from billable.catalog_keys import normalise_key
from billable.models import (
    Adjustment,
    BatchSource,
    BatchState,
    Customer,
    Grant,
    Offer,
    Product,
    ProductType,
    QuotaBatch,
)
from billable.periods import check_expiry, period_end
from billable.selectors import offer_for_grant, period_access_end
from billable.services import ledger
from billable.services.quota import debit, entries_signal
from billing_platform.core.db import service_atomic
from billing_platform.core.errors import ValidationFailed

GRANT_KINDS = ("trial", "bonus", "referral", "manual")


def grant_batches(
    *,
    customer: Customer,
    items: list[dict[str, Any]],
    source: str,
    times: int = 1,
    expires_at: datetime | None = None,
    actor: str = "",
    action_type: str,
    action_id: str = "",
    grant_id: Any = None,
    order_item_id: Any = None,
) -> list[QuotaBatch]:
    """Create the batches for a list of offer items (a live offer's or an order's snapshot).

    Each item: {product_id, product_type, quantity, period_unit, period_value}. Quantity
    products get `quantity × times` units expiring one period from now; period products extend
    access by `times` periods from where current access ends; unlimited ones get one batch.
    `expires_at` (bonus and manual grants) overrides every computed expiry.
    """
    now = clock.now()
    customer_id = customer.pk
    if any(item["product_type"] == ProductType.PERIOD for item in items):
        # Lock the customer row (FOR UPDATE, following `merged_into`), so two renewals extend
        # in turn even when the customer has no batch yet to lock (the first two grants would
        # otherwise both start now). The callers took it already, first, in the fixed order of
        # `billable.services.ledger`; this keeps the guarantee for any caller that did not.
        customer_id = ledger.lock_customer_row(customer.pk, exclusive=True)
    batches = []
    for item in items:
        product_type = item["product_type"]
        start = now
        if product_type == ProductType.QUANTITY:
            units = item["quantity"] * times
            end = period_end(now, item["period_unit"], item["period_value"])
        elif product_type == ProductType.PERIOD:
            units = 1
            current_end = period_access_end(customer_id, item["product_id"], now)
            start = now if current_end is None else current_end
            end = period_end(
                start, item["period_unit"], item["period_value"], times * item["quantity"]
            )
        else:
            units = 1
            end = period_end(now, item["period_unit"], item["period_value"])
        if expires_at is not None:
            start, end = now, expires_at
        batches.append(
            ledger.batch_create(
                customer_id=customer_id,
                product_id=item["product_id"],
                product_type=product_type,
                units=units,
                valid_from=start,
                expires_at=end,
                source=source,
                actor=actor,
                action_type=action_type,
                action_id=action_id,
                grant_id=grant_id,
                order_item_id=order_item_id,
            )
        )
    return batches


def offer_items(offer: Offer) -> list[dict[str, Any]]:
    return [
        {
            "product_id": item.product_id,
            "product_key": item.product.key,
            "product_type": item.product.product_type,
            "quantity": item.quantity,
            "period_unit": item.period_unit,
            "period_value": item.period_value,
        }
        for item in offer.items.all()
    ]


@dataclass(frozen=True)
class GrantResult:
    grant: Grant
    batches: list[QuotaBatch]


def offer_grant(
    *,
    customer: Customer,
    offer: Offer,
    kind: str,
    reason: str = "",
    expires_at: datetime | None = None,
    metadata: dict[str, Any] | None = None,
    actor: str = "",
) -> GrantResult:
    """Activate an offer without payment; sends `grant_created`.

    Raises `ExpiryOutOfRange` when an expiry would pass `LATEST_EXPIRY` (a renewal of access
    that already runs that far).
    """
    if kind not in GRANT_KINDS:
        raise ValidationFailed(
            f"kind is one of {', '.join(GRANT_KINDS)}.", field="kind", msg="invalid kind"
        )
    if kind in ("bonus", "manual"):
        check_expiry(expires_at)
    with service_atomic():
        # Re-read the offer: it or one of its products may have been deactivated meanwhile.
        offer = offer_for_grant(offer.sku)
        items = offer_items(offer)
        # The customer's row first (FOR UPDATE when a period item will extend access): a merge
        # waits for this grant, or one that committed meanwhile is followed to its target.
        customer = ledger.lock_customer(
            customer, exclusive=any(item["product_type"] == ProductType.PERIOD for item in items)
        )
        grant = Grant.objects.create(
            customer=customer,
            sku=offer.sku,
            kind=kind,
            reason=reason or "",
            metadata=metadata or {},
            actor=actor,
        )
        batches = grant_batches(
            customer=customer,
            items=items,
            source=kind,
            expires_at=expires_at if kind in ("bonus", "manual") else None,
            actor=actor,
            action_type=f"grant.{kind}",
            action_id=str(grant.pk),
            grant_id=grant.pk,
        )
        signals.grant_created.send(sender=Grant, grant=grant, customer=customer, batches=batches)
    return GrantResult(grant=grant, batches=batches)


@dataclass(frozen=True)
class AdjustmentResult:
    adjustment: Adjustment
    batches: list[QuotaBatch]


def adjustment_create(
    *,
    customer: Customer,
    product_key: str,
    amount: int,
    reason: str,
    expires_at: datetime | None = None,
    actor: str = "",
) -> AdjustmentResult:
    """Credit a new batch (amount > 0) or debit usable batches (amount < 0) of a product."""
    if amount == 0:
        raise ValidationFailed("amount is a non-zero integer.", field="amount", msg="zero")
    if not reason or not reason.strip():
        raise ValidationFailed("reason is required.", field="reason", msg="required")
    check_expiry(expires_at)
    key = normalise_key(product_key, field="product")
    product = Product.objects.filter(key=key).first()
    if product is None:
        raise errors.UnknownProduct(f"No product has the key {key}.")
    if product.product_type != ProductType.QUANTITY:
        raise errors.NotAQuantityProduct()
    now = clock.now()
    with service_atomic():
        customer = ledger.lock_customer(customer)  # before the batches it may debit
        adjustment = Adjustment.objects.create(
            customer=customer, product=product, amount=amount, reason=reason, actor=actor
        )
        if amount > 0:
            batches = [
                ledger.batch_create(
                    customer_id=customer.pk,
                    product_id=product.pk,
                    product_type=product.product_type,
                    units=amount,
                    valid_from=now,
                    expires_at=expires_at,
                    source=BatchSource.ADJUSTMENT,
                    actor=actor,
                    action_type="adjustment",
                    action_id=str(adjustment.pk),
                    adjustment_id=adjustment.pk,
                )
            ]
        else:
            spent = debit(
                customer.pk, product.key, -amount, now, action_type="adjustment",
                action_id=str(adjustment.pk), actor=actor, product_id=product.pk,
                metadata={"reason": reason},
            )
            if spent.total < -amount:
                raise errors.InsufficientQuota(
                    f"{-amount} units cannot be debited; {spent.total} are left.",
                    remaining=spent.total,
                )
            entries_signal(spent.entries)
            batches = list(
                QuotaBatch.objects.filter(pk__in=[e.batch_id for e in spent.entries]).order_by(
                    "expires_at", "created_at"
                )
            )
        signals.adjustment_created.send(
            sender=Adjustment, adjustment=adjustment, customer=customer, batches=batches
        )
    return AdjustmentResult(adjustment=adjustment, batches=batches)


def batch_revoke(
    *,
    batch: QuotaBatch,
    reason: str = "",
    actor: str = "",
    action_type: str = "revoke",
    action_id: str = "",
) -> QuotaBatch:
    """Revoke one batch: a debit of what remained; 409 batch_not_active if it is not active."""
    with service_atomic():
        # The fixed order of `billable.services.ledger`: the customer's row first (a merge that
        # moved the batch meanwhile is followed to its target), then the batch.
        ledger.lock_customer_row(batch.customer_id)
        batch = QuotaBatch.objects.select_for_update(of=("self",)).get(pk=batch.pk)
        if batch.state != BatchState.ACTIVE:
            raise errors.BatchNotActive(f"The batch is {batch.state}.")
        ledger.batch_close(
            batch=batch,
            state=BatchState.REVOKED,
            action_type=action_type,
            action_id=action_id or str(batch.pk),
            actor=actor,
            metadata={"reason": reason} if reason else None,
        )
        batch.refresh_from_db()
    return batch
