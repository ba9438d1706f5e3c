"""Plain-data views of billing objects, as the API shows them (and webhook events carry them)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from billable.currencies import format_amount
from billable.models import (
    Adjustment,
    AlertRule,
    Currency,
    Customer,
    Grant,
    Hold,
    LedgerEntry,
    Offer,
    Order,
    OrderStatus,
    Plan,
    PlanEntitlement,
    PlanVersion,
    Product,
    QuotaBatch,
    Referral,
    Subscription,
    Usage,
)
from billable.results import (
    Balance,
    ChangeResult,
    Entitlements,
    Explanation,
    IdentifyResult,
    ImportResult,
    MergeResult,
)
from billable.tenancy import currency_digits


def _amount(amount: Decimal, currency: str) -> str:
    """An amount as the API shows it: a string with its currency's minor digits."""
    return format_amount(amount, currency_digits(currency))


def product_data(product: Product) -> dict[str, Any]:
    return {
        "key": product.key,
        "name": product.name,
        "description": product.description,
        "product_type": product.product_type,
        "is_active": product.is_active,
        "is_currency": product.is_currency,
        "features": list(product.features),
        "credit_costs": product.credit_costs or {},
        "metadata": product.metadata,
        "created_at": product.created_at,
    }


def currency_data(currency: Currency) -> dict[str, Any]:
    return {
        "code": currency.code,
        "name": currency.name,
        "minor_digits": currency.minor_digits,
        "created_at": currency.created_at,
    }


def alert_rule_data(rule: AlertRule) -> dict[str, Any]:
    return {
        "id": str(rule.pk),
        "feature": rule.feature,
        "plan": rule.plan.key if rule.plan is not None else None,
        "thresholds": [
            {"type": item["type"], "value": item["value"]} for item in rule.thresholds
        ],
        "is_active": rule.is_active,
        "created_at": rule.created_at,
        "updated_at": rule.updated_at,
    }


def offer_data(offer: Offer) -> dict[str, Any]:
    return {
        "sku": offer.sku,
        "name": offer.name,
        "description": offer.description,
        "price": _amount(offer.price, offer.currency),
        "currency": offer.currency,
        "is_active": offer.is_active,
        "metadata": offer.metadata,
        "items": [
            {
                "product": item.product.key,
                "quantity": item.quantity,
                "period_unit": item.period_unit,
                "period_value": item.period_value,
            }
            for item in offer.items.all()
        ],
        "created_at": offer.created_at,
    }


def entitlement_data(entitlement: PlanEntitlement) -> dict[str, Any]:
    allowance = entitlement.entitlement_type == "allowance"
    return {
        "type": entitlement.entitlement_type,
        "product": entitlement.product.key if entitlement.product is not None else None,
        "amount": entitlement.amount,
        "reset_unit": entitlement.reset_unit or None,
        "reset_count": entitlement.reset_count,
        "rollover_cap": entitlement.rollover_cap if allowance else None,
        "name": entitlement.name or None,
        "value": entitlement.value,
    }


def _terms_data(version: PlanVersion) -> dict[str, Any]:
    return {
        "interval_unit": version.interval_unit,
        "interval_count": version.interval_count,
        "price": _amount(version.price, version.currency),
        "currency": version.currency,
        "trial_days": version.trial_days,
        "entitlements": [entitlement_data(e) for e in version.entitlements.all()],
        "retired_at": version.retired_at,
    }


def plan_version_data(plan: Plan, version: PlanVersion) -> dict[str, Any]:
    return {
        "plan": plan.key,
        "version": version.version,
        "is_current": version.version == plan.current_version,
        **_terms_data(version),
        "created_at": version.created_at,
    }


def plan_data(plan: Plan, current: PlanVersion) -> dict[str, Any]:
    """A plan with its current version's terms."""
    return {
        "key": plan.key,
        "name": plan.name,
        "description": plan.description,
        "is_active": plan.is_active,
        "metadata": plan.metadata,
        "upgrade_allowance": plan.upgrade_allowance,
        "version": current.version,
        **_terms_data(current),
        "created_at": plan.created_at,
        "updated_at": plan.updated_at,
    }


def _renewal_order_id(sub: Subscription) -> str | None:
    """The pending renewal order: annotated by the selector, else read (an event's data)."""
    if hasattr(sub, "renewal_order_pk"):
        found = sub.renewal_order_pk
    else:
        found = (
            Order.objects.filter(subscription=sub, status=OrderStatus.PENDING)
            .order_by("period_number")
            .values_list("pk", flat=True)
            .first()
        )
    return str(found) if found is not None else None


def _scheduled_change(sub: Subscription) -> dict[str, Any] | None:
    scheduled = sub.scheduled_version
    if scheduled is None:
        return None
    return {"plan": scheduled.plan.key, "version": scheduled.version, "at": sub.current_period_end}


def subscription_change_data(result: ChangeResult) -> dict[str, Any]:
    sub = result.subscription
    currency = sub.version.currency
    return {
        "at": result.at,
        "amount_due": (
            _amount(result.amount_due, currency) if result.amount_due is not None else None
        ),
        "currency": currency,
        "subscription": subscription_data(sub),
    }


def subscription_data(sub: Subscription) -> dict[str, Any]:
    return {
        "id": str(sub.pk),
        "customer_id": str(sub.customer_id),
        "plan": sub.plan.key,
        "version": sub.version.version,
        "status": sub.status,
        "current_period_start": sub.current_period_start,
        "current_period_end": sub.current_period_end,
        "trial_end": sub.trial_end,
        "cancel_at_period_end": sub.cancel_at_period_end,
        "paused_at": sub.paused_at,
        "scheduled_change": _scheduled_change(sub),
        "paid_through": sub.covered_until,
        "renewal_order_id": _renewal_order_id(sub),
        "ended_at": sub.ended_at,
        "metadata": sub.metadata,
        "created_at": sub.created_at,
    }


def customer_data(customer: Customer) -> dict[str, Any]:
    return {
        **customer_brief(customer),
        "metadata": customer.metadata,
        "created_at": customer.created_at,
        "merged_into": str(customer.merged_into_id) if customer.merged_into_id else None,
    }


def identify_data(result: IdentifyResult) -> dict[str, Any]:
    return {
        "customer_id": str(result.customer.pk),
        "created": result.created,
        "trial_eligible": result.trial_eligible,
        "metadata": result.customer.metadata,
    }


def import_data(result: ImportResult) -> dict[str, Any]:
    """What an import did: counts, the entries not applied, and each applied entry's customer."""
    return {
        "created": result.created,
        "updated": result.updated,
        "unchanged": result.unchanged,
        "conflicts": [
            {"index": c.index, "code": c.code, "detail": c.detail} for c in result.conflicts
        ],
        "customers": [
            {"index": index, "customer_id": customer_id}
            for index, customer_id in result.customers
        ],
    }


def merge_data(result: MergeResult) -> dict[str, Any]:
    """What a merge moved to its target (the `customer.merged` event adds the source's id)."""
    return {
        "target_customer_id": str(result.target.pk),
        "moved_identities": result.moved_identities,
        "moved_batches": result.moved_batches,
        "moved_orders": result.moved_orders,
        "moved_holds": result.moved_holds,
        "moved_usages": result.moved_usages,
        "moved_referrals": result.moved_referrals,
    }


def customer_brief(customer: Customer) -> dict[str, Any]:
    """The customer part of every event: id and identities."""
    return {
        "id": str(customer.pk),
        "identities": [
            {"provider": i.provider, "external_id": i.external_id}
            for i in customer.identities.all()
        ],
    }


def batch_data(batch: QuotaBatch) -> dict[str, Any]:
    return {
        "id": str(batch.pk),
        "product": batch.product.key,
        "initial": batch.initial,
        "remaining": batch.remaining,
        "valid_from": batch.valid_from,
        "expires_at": batch.expires_at,
        "state": batch.state,
        "source": batch.source,
        "created_at": batch.created_at,
    }


def entry_data(entry: LedgerEntry) -> dict[str, Any]:
    return {
        "id": str(entry.pk),
        "batch_id": str(entry.batch_id),
        "product": entry.batch.product.key,
        "direction": entry.direction,
        "amount": entry.amount,
        "action_type": entry.action_type,
        "action_id": entry.action_id,
        "actor": entry.actor,
        "metadata": entry.metadata,
        "created_at": entry.created_at,
    }


def usage_data(
    usage: Usage,
    *,
    remaining: int | None,
    unlimited: bool,
    remaining_credits: int | None = None,
) -> dict[str, Any]:
    return {
        "usage_id": str(usage.pk),
        "customer_id": str(usage.customer_id),
        "feature": usage.feature,
        "amount": usage.amount,
        "credits": usage.credits,
        "remaining": remaining,
        "remaining_credits": remaining_credits,
        "unlimited": unlimited,
        "metadata": usage.metadata,
        "created_at": usage.created_at,
    }


def usage_record_data(usage: Usage) -> dict[str, Any]:
    """A past usage, as `GET /billing/usages` lists it."""
    return {
        "id": str(usage.pk),
        "customer_id": str(usage.customer_id),
        "feature": usage.feature,
        "amount": usage.amount,
        "credits": usage.credits,
        "action_type": usage.action_type,
        "action_id": usage.action_id,
        "metadata": usage.metadata,
        "created_at": usage.created_at,
    }


def balance_data(balance: Balance) -> dict[str, Any]:
    """One feature's balance; `customer_id` is null for an unknown customer."""
    return {
        "customer_id": str(balance.customer_id) if balance.customer_id is not None else None,
        "feature": balance.feature,
        "can_use": balance.can_use,
        "remaining": balance.remaining,
        "unlimited": balance.unlimited,
        "expires_at": balance.expires_at,
        "message": balance.message,
        "credit_pools": [
            {"product": pool.product, "unit_cost": pool.unit_cost, "credits": pool.credits}
            for pool in balance.credit_pools
        ],
    }


def subscription_brief(sub: Subscription) -> dict[str, Any]:
    """A subscription as the entitlements call shows it: its dates, not its terms."""
    live = sub.status in ("trialing", "active")
    if sub.status == "past_due":
        ends_at = sub.next_due_at  # expiry, unless it is paid before
    elif live and sub.cancel_at_period_end:
        ends_at = sub.current_period_end
    else:
        ends_at = None
    return {
        "id": str(sub.pk),
        "plan": sub.plan.key,
        "version": sub.version.version,
        "status": sub.status,
        "current_period_end": sub.current_period_end,
        "paid_through": sub.covered_until,
        "renews_at": sub.current_period_end if live and not sub.cancel_at_period_end else None,
        "ends_at": ends_at,
    }


def entitlements_data(found: Entitlements) -> dict[str, Any]:
    customer = found.customer
    return {
        "customer_id": str(customer.pk) if customer is not None else None,
        "as_of": found.as_of,
        "features": [
            {
                **balance_data(feature.balance),
                "allowance": feature.allowance,
                "next_reset": feature.next_reset,
                **(
                    {"explain": explanation_data(feature.explanation)}
                    if feature.explanation is not None
                    else {}
                ),
            }
            for feature in found.features
        ],
        "values": found.values,
        "subscriptions": [subscription_brief(sub) for sub in found.subscriptions],
    }


def explanation_data(found: Explanation) -> dict[str, Any]:
    """What makes up a balance, and why it cannot be used (`reason`, null when it can)."""
    return {
        "reason": found.reason,
        "batches": [
            {
                "id": str(item.batch.pk),
                "product": item.batch.product.key,
                "source": item.batch.source,
                "source_id": item.source_id,
                "state": item.batch.state,
                "remaining": item.batch.remaining,
                "unit_cost": item.unit_cost,
                "usable": item.usable,
                "valid_from": item.batch.valid_from,
                "expires_at": item.batch.expires_at,
            }
            for item in found.batches
        ],
        "batches_truncated": found.batches_truncated,
        "holds": [
            {"id": str(hold.pk), "amount": hold.amount, "expires_at": hold.expires_at,
             "created_at": hold.created_at}
            for hold in found.holds
        ],
        "reserved": sum(hold.amount for hold in found.holds),
        "next_reset": found.next_reset,
        "subscriptions": [
            {"id": str(sub.pk), "plan": sub.plan.key, "status": sub.status,
             "current_period_end": sub.current_period_end}
            for sub in found.subscriptions
        ],
    }


def balance_explained_data(found: Explanation) -> dict[str, Any]:
    return {**balance_data(found.balance), "explain": explanation_data(found)}


def balance_explained_list_data(
    customer: Customer | None, found: list[Explanation]
) -> dict[str, Any]:
    return {
        "customer_id": str(customer.pk) if customer is not None else None,
        "items": [balance_explained_data(item) for item in found],
    }


def balance_list_data(customer: Customer | None, balances: list[Balance]) -> dict[str, Any]:
    """Every feature a customer holds; an unknown customer holds none."""
    return {
        "customer_id": str(customer.pk) if customer is not None else None,
        "items": [balance_data(b) for b in balances],
    }


def hold_data(hold: Hold) -> dict[str, Any]:
    return {
        "id": str(hold.pk),
        "customer_id": str(hold.customer_id),
        "feature": hold.feature,
        "amount": hold.amount,
        "credits": hold.credits,
        "status": hold.status,
        "committed_amount": hold.committed_amount,
        "expires_at": hold.expires_at,
        "metadata": hold.metadata,
        "created_at": hold.created_at,
    }


def grant_data(grant: Grant, batches: list[QuotaBatch]) -> dict[str, Any]:
    return {
        "id": str(grant.pk),
        "customer_id": str(grant.customer_id),
        "sku": grant.sku,
        "kind": grant.kind,
        "reason": grant.reason,
        "batches": [batch_data(b) for b in batches],
        "metadata": grant.metadata,
        "created_at": grant.created_at,
    }


def adjustment_data(adjustment: Adjustment, batches: list[QuotaBatch]) -> dict[str, Any]:
    return {
        "id": str(adjustment.pk),
        "customer_id": str(adjustment.customer_id),
        "product": adjustment.product.key,
        "amount": adjustment.amount,
        "batches": [batch_data(b) for b in batches],
        "reason": adjustment.reason,
    }


def order_data(order: Order) -> dict[str, Any]:
    return {
        "id": str(order.pk),
        "customer_id": str(order.customer_id),
        "status": order.status,
        "total": _amount(order.total, order.currency),
        "currency": order.currency,
        "items": [
            {
                "id": str(item.pk),
                "sku": item.sku,
                "name": item.name,
                "quantity": item.quantity,
                "unit_price": _amount(item.unit_price, order.currency),
            }
            for item in order.items.all()
        ],
        "payment_id": order.payment_id,
        "payment_method": order.payment_method,
        "created_at": order.created_at,
        "paid_at": order.paid_at,
        "cancelled_at": order.cancelled_at,
        "refunded_at": order.refunded_at,
        "reason": order.reason,
        "metadata": order.metadata,
        "subscription_id": str(order.subscription_id) if order.subscription_id else None,
        "period_number": order.period_number,
    }


def referral_data(referral: Referral, *, created: bool) -> dict[str, Any]:
    """A referral as `POST /referrals` answers it: `created` is false for a repeated link."""
    return {
        "id": str(referral.pk),
        "referrer_id": str(referral.referrer_id),
        "referee_id": str(referral.referee_id),
        "created": created,
        "metadata": referral.metadata,
        "rewarded_at": referral.rewarded_at,
        "created_at": referral.created_at,
    }
