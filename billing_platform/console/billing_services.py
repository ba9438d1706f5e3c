"""The catalog, orders and customer-correction actions of the console.

Each calls the engine's service behind the matching API endpoint (`billable.services.catalog`,
`plans`, `orders`, `grants`), so its rules, errors, signals and webhooks are the API's, and
returns the `Outcome` that `services.submitted` records with the audit entry. The views run
them inside `submitted`, never alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from billable.models import Customer, Offer, Order, Plan, PlanVersion, Product, QuotaBatch
from billable.services import catalog as catalog_services
from billable.services import customers as customer_services
from billable.services import grants as grant_services
from billable.services import merge as merge_services
from billable.services import orders as order_services
from billable.services import plans as plan_services
from billable.services.catalog import ItemSpec
from billable.services.plans import Terms
from billing_platform.console.services import Actor, Outcome
from billing_platform.core.patches import UNSET


@dataclass(frozen=True)
class ProductFields:
    """What the product form gives: every field of `POST/PATCH /billing/products` but the key."""

    name: str
    product_type: str
    description: str
    is_currency: bool
    features: list[str]
    credit_costs: dict[str, int]
    metadata: dict[str, Any]


@dataclass(frozen=True)
class OfferFields:
    """What the offer form gives: every field of `POST/PATCH /billing/offers` but the SKU."""

    name: str
    price: Decimal
    currency: str
    description: str
    items: list[ItemSpec]
    metadata: dict[str, Any]


# --- Products


def _product_kwargs(fields: ProductFields) -> dict[str, Any]:
    """The form's fields as the engine's `product_create` and `product_update` take them."""
    return {
        "name": fields.name,
        "product_type": fields.product_type,
        "description": fields.description,
        "is_currency": fields.is_currency,
        "metadata": fields.metadata,
        "features": fields.features,
        "credit_costs": fields.credit_costs,
    }


def product_create(*, actor: Actor, key: str, fields: ProductFields) -> Outcome:
    """A new active product (`POST /billing/products`); 409 `key_taken`, 422 as the API."""
    product = catalog_services.product_create(
        key=key,
        **_product_kwargs(fields),
    )
    return Outcome(
        message=f"Created the product {product.key}.",
        target=f"product:{product.key}",
        detail={"name": product.name, "product_type": product.product_type},
    )


def product_update(*, actor: Actor, product: Product, fields: ProductFields) -> Outcome:
    """Change a product (`PATCH /billing/products/{key}`); 409 `product_in_use` for a type or
    currency flag fixed by its batches or plans."""
    before = {"name": product.name, "product_type": product.product_type}
    product = catalog_services.product_update(
        product=product,
        **_product_kwargs(fields),
    )
    return Outcome(
        message=f"Saved the product {product.key}.",
        target=f"product:{product.key}",
        detail={"before": before, "features": list(product.features)},
    )


def product_set_active(*, actor: Actor, product: Product, active: bool) -> Outcome:
    """Activate or deactivate a product; deactivating sends `product.deactivated`."""
    product = catalog_services.product_update(product=product, is_active=active)
    state = "Activated" if active else "Deactivated"
    return Outcome(
        message=f"{state} the product {product.key}.",
        target=f"product:{product.key}",
        detail={"is_active": active},
    )


# --- Offers


def _same_items(offer: Offer, items: Sequence[ItemSpec]) -> bool:
    current = [
        (item.product.key, item.quantity, item.period_unit, item.period_value or None)
        for item in offer.items.all()
    ]
    given = [
        (item.product.upper(), item.quantity, item.period_unit, item.period_value or None)
        for item in items
    ]
    return current == given


def offer_create(*, actor: Actor, sku: str, fields: OfferFields) -> Outcome:
    """A new active offer (`POST /billing/offers`); 409 `key_taken`, 422 `unknown_product`,
    `inactive_product`, `invalid_currency` as the API."""
    offer = catalog_services.offer_create(
        sku=sku,
        name=fields.name,
        price=fields.price,
        currency=fields.currency,
        items=fields.items,
        description=fields.description,
        metadata=fields.metadata,
    )
    return Outcome(
        message=f"Created the offer {offer.sku}.",
        target=f"offer:{offer.sku}",
        detail={"name": offer.name, "price": str(offer.price), "currency": offer.currency},
    )


def offer_update(*, actor: Actor, offer: Offer, fields: OfferFields) -> Outcome:
    """Change an offer (`PATCH /billing/offers/{sku}`); its items are replaced only when they
    changed, so an offer holding a since-deactivated product can still be renamed."""
    before = {"price": str(offer.price), "currency": offer.currency}
    items = UNSET if _same_items(offer, fields.items) else fields.items
    offer = catalog_services.offer_update(
        offer=offer,
        name=fields.name,
        description=fields.description,
        price=fields.price,
        currency=fields.currency,
        metadata=fields.metadata,
        items=items,
    )
    return Outcome(
        message=f"Saved the offer {offer.sku}.",
        target=f"offer:{offer.sku}",
        detail={
            "before": before,
            "price": str(offer.price),
            "currency": offer.currency,
            "items_replaced": items is not UNSET,
        },
    )


def offer_set_active(*, actor: Actor, offer: Offer, active: bool) -> Outcome:
    """Activate or deactivate an offer: an inactive one can be neither ordered nor granted."""
    offer = catalog_services.offer_update(offer=offer, is_active=active)
    state = "Activated" if active else "Deactivated"
    return Outcome(
        message=f"{state} the offer {offer.sku}.",
        target=f"offer:{offer.sku}",
        detail={"is_active": active},
    )


# --- Plans


@dataclass(frozen=True)
class PlanFields:
    """What the plan form gives: every field of `POST/PATCH /billing/plans` but the key and
    `is_active`."""

    name: str
    description: str
    upgrade_allowance: str
    metadata: dict[str, Any]
    terms: Terms


def plan_create(*, actor: Actor, key: str, fields: PlanFields) -> Outcome:
    """A new active plan whose terms are version 1 (`POST /billing/plans`); 409 `key_taken`,
    422 `unknown_product`, `inactive_product`, `invalid_currency` as the API."""
    plan = plan_services.plan_create(
        key=key,
        name=fields.name,
        description=fields.description,
        upgrade_allowance=fields.upgrade_allowance,
        metadata=fields.metadata,
        terms=fields.terms,
    )
    return Outcome(
        message=f"Created the plan {plan.key}.",
        target=f"plan:{plan.key}",
        detail={"name": plan.name, "version": plan.current_version},
    )


def plan_update(*, actor: Actor, plan: Plan, fields: PlanFields) -> Outcome:
    """Change a plan (`PATCH /billing/plans/{key}`): terms that differ from the current
    version's make the next version, which new subscriptions take; subscribers keep theirs."""
    before = plan.current_version
    terms = fields.terms
    plan = plan_services.plan_update(
        plan=plan,
        name=fields.name,
        description=fields.description,
        upgrade_allowance=fields.upgrade_allowance,
        metadata=fields.metadata,
        interval_unit=terms.interval_unit,
        interval_count=terms.interval_count,
        price=terms.price,
        currency=terms.currency,
        trial_days=terms.trial_days,
        entitlements=terms.entitlements,
    )
    if plan.current_version != before:
        told = f"its terms are now version {plan.current_version}; subscribers keep theirs"
    else:
        told = f"its terms are unchanged (version {plan.current_version})"
    return Outcome(
        message=f"Saved the plan {plan.key}: {told}.",
        target=f"plan:{plan.key}",
        detail={"version_before": before, "version": plan.current_version},
    )


def plan_version_retire(*, actor: Actor, plan: Plan, version: PlanVersion) -> Outcome:
    """Retire a version (`POST /billing/plans/{key}/versions/{n}/retire`): no new subscription
    takes it; its subscribers keep it."""
    plan_services.plan_version_retire(version=version)
    return Outcome(
        message=f"Retired version {version.version} of the plan {plan.key}.",
        target=f"plan:{plan.key}",
        detail={"version": version.version},
    )


def plan_set_active(*, actor: Actor, plan: Plan, active: bool) -> Outcome:
    """Activate or deactivate a plan (`PATCH /billing/plans/{key}` with `is_active`); its
    subscribers keep their terms."""
    plan = plan_services.plan_update(plan=plan, is_active=active)
    state = "Activated" if active else "Deactivated"
    return Outcome(
        message=f"{state} the plan {plan.key}.",
        target=f"plan:{plan.key}",
        detail={"is_active": active},
    )


# --- Orders


def order_confirm(
    *, actor: Actor, order: Order, payment_id: str | None, payment_method: str
) -> Outcome:
    """Mark a pending order paid and grant its items (`POST /billing/orders/{id}/confirm`):
    409 `invalid_order_state`, `order_already_paid`, `payment_id_conflict`."""
    order = order_services.order_confirm(
        order=order,
        payment_id=payment_id,
        payment_method=payment_method or None,
        actor=actor.ledger_actor,
    )
    return Outcome(
        message=f"Confirmed the order {order.pk}: its items are granted.",
        target=f"order:{order.pk}",
        detail={"payment_id": order.payment_id, "payment_method": order.payment_method},
    )


def order_cancel(*, actor: Actor, order: Order, reason: str) -> Outcome:
    """Cancel a pending order (`POST /billing/orders/{id}/cancel`); 409 otherwise."""
    order = order_services.order_cancel(order=order, reason=reason)
    return Outcome(
        message=f"Cancelled the order {order.pk}.",
        target=f"order:{order.pk}",
        detail={"reason": reason},
    )


def order_refund(*, actor: Actor, order: Order, reason: str) -> Outcome:
    """Refund a paid order, revoking what it granted (`POST /billing/orders/{id}/refund`)."""
    order = order_services.order_refund(order=order, reason=reason, actor=actor.ledger_actor)
    return Outcome(
        message=f"Refunded the order {order.pk}: what it granted is revoked.",
        target=f"order:{order.pk}",
        detail={"reason": reason},
    )


# --- A customer's corrections


def customer_adjust(
    *,
    actor: Actor,
    customer: Customer,
    product_key: str,
    amount: int,
    reason: str,
    expires_at: datetime | None,
) -> Outcome:
    """Credit (amount > 0) or debit (amount < 0) a quantity product's units, as
    `POST /billing/adjustments`: 402 `insufficient_quota`, 422 `not_a_quantity_product`."""
    result = grant_services.adjustment_create(
        customer=customer,
        product_key=product_key,
        amount=amount,
        reason=reason,
        expires_at=expires_at,
        actor=actor.ledger_actor,
    )
    adjustment = result.adjustment
    verb = "Credited" if amount > 0 else "Debited"
    return Outcome(
        message=f"{verb} {abs(amount)} {adjustment.product.key}.",
        target=f"customer:{customer.pk}",
        detail={
            "adjustment_id": str(adjustment.pk),
            "product": adjustment.product.key,
            "amount": amount,
            "reason": reason,
            "batches": [str(batch.pk) for batch in result.batches],
        },
    )


def customer_batch_revoke(
    *, actor: Actor, customer: Customer, batch: QuotaBatch, reason: str
) -> Outcome:
    """Take back what is left of one batch (`POST /billing/batches/{id}/revoke`): 409
    `batch_not_active` for a batch already closed."""
    batch = grant_services.batch_revoke(batch=batch, reason=reason, actor=actor.ledger_actor)
    return Outcome(
        message=f"Revoked the batch {batch.pk} of {batch.product.key}.",
        target=f"customer:{customer.pk}",
        detail={"batch_id": str(batch.pk), "product": batch.product.key, "reason": reason},
    )


# --- Merging and erasing a customer (neither can be undone: admin, owner)


def customer_merge(*, actor: Actor, source: Customer, target: Customer, reason: str) -> Outcome:
    """Move everything of `source` to `target`, as `POST /billing/customers/merge`: 422
    `same_customer` (the same one, or one already merged), 409 `identity_conflict`,
    `subscription_exists`, 422 `customer_erased`; sends `customer.merged`."""
    result = merge_services.customer_merge(target=target, source=source)
    moved = {
        "identities": result.moved_identities,
        "batches": result.moved_batches,
        "orders": result.moved_orders,
        "holds": result.moved_holds,
        "usages": result.moved_usages,
        "referrals": result.moved_referrals,
    }
    return Outcome(
        message=f"Merged the customer {source.pk} into {target.pk}: "
        + ", ".join(f"{n} {what}" for what, n in moved.items())
        + " moved.",
        target=f"customer:{target.pk}",
        detail={"source": str(source.pk), "target": str(target.pk), "reason": reason,
                "moved": moved},
    )


def customer_erase(*, actor: Actor, customer: Customer, reason: str) -> Outcome:
    """Erase the customer's identities and metadata, with every customer merged into it, as
    `DELETE /billing/customers/{id}`: the ledger stays, anonymous; live subscriptions end."""
    ids = customer_services.customer_erase(customer=customer)
    return Outcome(
        message=f"Erased the customer {customer.pk}"
        + (f" and the {len(ids) - 1} merged into it" if len(ids) > 1 else "")
        + ": identities and metadata are gone; the ledger stays, anonymous.",
        target=f"customer:{customer.pk}",
        detail={"customer_ids": ids, "reason": reason},
    )
