"""Orders: created (pending), confirmed (paid: the snapshot is granted), cancelled, refunded.

pending → paid → refunded, pending → cancelled; anything else is 409 invalid_order_state. Every
transition locks the order row, so concurrent confirms grant once and a confirm racing a cancel
or refund sees the other's result.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from billable import clock, errors, signals
from billable.currencies import MAX_ORDER_TOTAL
from billable.models import (
    BatchState,
    Customer,
    Offer,
    Order,
    OrderItem,
    OrderStatus,
    Product,
    ProductType,
    QuotaBatch,
    Usage,
)
from billable.periods import period_too_long
from billable.selectors import offer_for_grant
from billable.services import ledger, subscriptions
from billable.services.grants import grant_batches, offer_items
from billable.services.quota import entries_signal, spend, thresholds_signal
from billable.services.referrals import referral_reward_first_payment
from billing_platform.core.db import service_atomic
from billing_platform.core.errors import ValidationFailed


@dataclass(frozen=True)
class LineIn:
    sku: str
    quantity: int


def order_create(
    *, customer: Customer, items: list[LineIn], metadata: dict[str, Any] | None = None
) -> Order:
    """Create a pending order at the offers' own prices (a client's price is never used)."""
    if not items:
        raise ValidationFailed("An order has at least one item.", field="items", msg="empty")
    offers = [offer_for_grant(line.sku) for line in items]
    currencies = {offer.currency for offer in offers}
    if len(currencies) > 1:
        raise errors.MixedCurrencies(f"The items are priced in {', '.join(sorted(currencies))}.")
    total = sum(
        (offer.price * line.quantity for offer, line in zip(offers, items, strict=True)), Decimal(0)
    )
    _check_bounds(offers, items, total)
    with service_atomic():
        # The customer's row first: a merge waits for this order, or one that committed meanwhile
        # is followed, so the order never lands on a merged-away customer.
        customer = ledger.lock_customer(customer)
        order = Order.objects.create(
            customer=customer, total=total, currency=offers[0].currency, metadata=metadata or {}
        )
        OrderItem.objects.bulk_create(
            OrderItem(
                order=order,
                sku=offer.sku,
                name=offer.name,
                quantity=line.quantity,
                unit_price=offer.price,
                snapshot=offer_items(offer),
                position=position,
            )
            for position, (offer, line) in enumerate(zip(offers, items, strict=True))
        )
        signals.order_created.send(sender=Order, order=order, customer=customer)
    return order


def _check_bounds(offers: list[Offer], items: list[LineIn], total: Decimal) -> None:
    """Refuse a line buying over 100 years of a period product, or a total past its column."""
    for index, (offer, line) in enumerate(zip(offers, items, strict=True)):
        for item in offer.items.all():
            if item.product.product_type == ProductType.PERIOD and period_too_long(
                item.period_unit, item.period_value, item.quantity * line.quantity
            ):
                raise ValidationFailed(
                    f"{offer.sku} × {line.quantity} is more than 100 years of access.",
                    field=("items", index, "quantity"),
                    msg="more than 100 years",
                )
    if total > MAX_ORDER_TOTAL:
        raise ValidationFailed(
            f"An order's total is at most {MAX_ORDER_TOTAL}.", field="items", msg="total too large"
        )


def _grant_items(
    order: Order, *, customer: Customer, source: str, actor: str
) -> list[QuotaBatch]:
    """Grant the order's snapshot to `customer`: the one the caller locked (the acting one)."""
    batches: list[QuotaBatch] = []
    for item in order.items.all():
        batches.extend(
            grant_batches(
                customer=customer,
                items=item.snapshot,
                source=source,
                times=item.quantity,
                actor=actor,
                action_type="order",
                action_id=str(order.pk),
                order_item_id=item.pk,
            )
        )
    return batches


def _locked(order: Order) -> tuple[Order, Customer]:
    """Lock the order's customer (FOR UPDATE), then re-read the order under FOR UPDATE.

    Every transition starts here, so concurrent ones run in turn and each sees the other's result.
    The customer's row comes first, in the fixed order of `billable.services.ledger`: a merge
    that committed meanwhile is followed to the customer the order now belongs to. Returns the
    order and that acting customer (the end of the `merged_into` chain), the one to grant to;
    an order still on a merged-away customer is moved to it.
    """
    acting = ledger.lock_customer_row(order.customer_id, exclusive=True)
    order = (
        Order.objects.select_for_update(of=("self",))
        .select_related("customer")
        .get(pk=order.pk)
    )
    if order.customer_id != acting:
        # The order was left on a merged-away customer: it goes where everything else went.
        order.customer = Customer.objects.get(pk=acting)
        order.save(update_fields=["customer"])
    return order, order.customer


def order_confirm(
    *,
    order: Order,
    payment_id: str | None = None,
    payment_method: str | None = None,
    actor: str = "",
) -> Order:
    """Mark paid and grant the snapshot (a renewal order: its subscription's next billing
    period); repeating with the same (or no) payment_id is a no-op."""
    with service_atomic():
        order, customer = _locked(order)
        if order.status == OrderStatus.PAID:
            if payment_id is None or payment_id == order.payment_id:
                return order
            raise errors.OrderAlreadyPaid()
        if order.status != OrderStatus.PENDING:
            raise errors.InvalidOrderState(f"A {order.status} order cannot be confirmed.")
        if payment_id is not None and Order.objects.filter(payment_id=payment_id).exists():
            raise errors.PaymentIdConflict()
        order.status = OrderStatus.PAID
        order.paid_at = timezone.now()
        order.payment_id = payment_id
        order.payment_method = payment_method or ""
        try:
            with transaction.atomic():
                order.save(update_fields=["status", "paid_at", "payment_id", "payment_method"])
        except IntegrityError as exc:  # a concurrent confirm of another order took the id
            raise errors.PaymentIdConflict() from exc
        if order.subscription_id is not None:
            # A renewal order: its billing period is what it grants.
            subscriptions.subscription_renewal_paid(order=order)
            batches: list[QuotaBatch] = []
        else:
            batches = _grant_items(order, customer=customer, source="purchase", actor=actor)
        signals.order_confirmed.send(
            sender=Order, order=order, customer=customer, batches=batches
        )
        referral_reward_first_payment(customer=customer, actor=actor)
    return order


def order_cancel(*, order: Order, reason: str = "") -> Order:
    with service_atomic():
        order, _customer = _locked(order)
        if order.status != OrderStatus.PENDING:
            raise errors.InvalidOrderState(f"A {order.status} order cannot be cancelled.")
        order.status = OrderStatus.CANCELLED
        order.cancelled_at = timezone.now()
        order.reason = reason or ""
        order.save(update_fields=["status", "cancelled_at", "reason"])
        signals.order_cancelled.send(sender=Order, order=order, customer=order.customer)
    return order


def order_refund(*, order: Order, reason: str = "", actor: str = "") -> Order:
    """Refund a paid order: revoke every batch it created (consumed units stay consumed). A
    renewal order takes back its billing period (`subscription_renewal_refunded`).

    A referral reward the order earned stays: a refund does not take it back.
    """
    with service_atomic():
        order, _customer = _locked(order)
        if order.status != OrderStatus.PAID:
            raise errors.InvalidOrderState(f"A {order.status} order cannot be refunded.")
        batches = ledger.lock_batches(QuotaBatch.objects.filter(order_item__order=order))
        for batch in batches:
            if batch.state not in (BatchState.ACTIVE, BatchState.EXHAUSTED):
                continue
            ledger.batch_close(
                batch=batch,
                state=BatchState.REVOKED,
                action_type="refund",
                action_id=str(order.pk),
                actor=actor,
                metadata={"reason": reason} if reason else None,
            )
        if order.subscription_id is not None:
            subscriptions.subscription_renewal_refunded(order=order)
        order.status = OrderStatus.REFUNDED
        order.refunded_at = timezone.now()
        order.reason = reason or ""
        order.save(update_fields=["status", "refunded_at", "reason"])
        signals.order_refunded.send(sender=Order, order=order, customer=order.customer)
    return order


def offer_buy_with_currency(*, customer: Customer, sku: str, actor: str = "") -> Order:
    """Buy an offer priced in a currency product by spending that many of its units."""
    offer = offer_for_grant(sku)
    currency = Product.objects.filter(key=offer.currency, is_currency=True).first()
    if currency is None:
        raise errors.NotACurrency(f"{offer.sku} is priced in {offer.currency}.")
    price = int(offer.price)
    now = clock.now()
    with service_atomic():
        # FOR UPDATE, as a confirm: the grant below may extend period access, which takes it.
        customer = ledger.lock_customer(customer, exclusive=True)
        order_id = uuid.uuid4()
        usage_id = uuid.uuid4()
        spent = None
        if price > 0:
            spent = spend(
                customer, currency.key, price, now, action_type="exchange",
                action_id=str(order_id), actor=actor, usage_id=usage_id, product_id=currency.pk,
            )
        order = Order.objects.create(
            id=order_id,
            customer=customer,
            total=offer.price,
            currency=offer.currency,
            status=OrderStatus.PAID,
            payment_method="exchange",
            paid_at=timezone.now(),
        )
        OrderItem.objects.create(
            order=order,
            sku=offer.sku,
            name=offer.name,
            quantity=1,
            unit_price=offer.price,
            snapshot=offer_items(offer),
        )
        if spent is not None:
            Usage.objects.create(
                id=usage_id,
                customer=customer,
                feature=currency.key,
                amount=price,
                action_type="exchange",
                action_id=str(order.pk),
            )
            entries_signal(spent.entries)
            thresholds_signal(customer, currency.key, spent.total, spent.total - price)
        signals.order_created.send(sender=Order, order=order, customer=customer)
        batches = _grant_items(order, customer=customer, source="exchange", actor=actor)
        signals.order_confirmed.send(sender=Order, order=order, customer=customer, batches=batches)
        referral_reward_first_payment(customer=customer, actor=actor)
    return order
