"""The documented shape of `data` for every event type, and how it is built from its signal.

docs/webhooks.md shows an example of each.

`data` is the object as the API shows it, plus `customer: {id, identities}` for events about a
customer, so a receiver can act without calling back. Unknown fields are refused here so the
tests notice when a payload drifts from its documentation.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from billable import presenters
from billable.schemas import (
    AdjustmentOut,
    BatchOut,
    GrantOut,
    HoldOut,
    IdentityOut,
    MergeOut,
    OrderOut,
    ProductOut,
    SubscriptionOut,
    UsageOut,
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EventCustomer(_Strict):
    """The customer an event concerns, with every identity it is known by."""

    id: str
    identities: list[IdentityOut]


class OrderEventData(OrderOut):
    """order.created, order.confirmed, order.cancelled, order.refunded."""

    model_config = ConfigDict(extra="forbid")
    customer: EventCustomer


class UsageEventData(UsageOut):
    """quota.consumed: the usage, with `remaining` after the consumption."""

    model_config = ConfigDict(extra="forbid")
    customer: EventCustomer


class QuotaLevelEventData(_Strict):
    """quota.low (remaining fell to the threshold or below) and quota.depleted (to zero)."""

    customer_id: str
    feature: str
    remaining: int
    threshold: int | None
    customer: EventCustomer


class ThresholdData(_Strict):
    """The threshold crossed: its type and value as the rule gives them, and in units."""

    type: str
    value: int
    units: int


class PeriodData(_Strict):
    start: datetime
    end: datetime


class QuotaThresholdEventData(_Strict):
    """quota.threshold_reached: a spend took the feature's remaining units from above a
    threshold of an alert rule to at or below it (once per allowance period)."""

    customer_id: str
    feature: str
    remaining: int
    threshold: ThresholdData
    rule_id: str
    plan: str | None
    allowance: int | None
    period: PeriodData | None
    customer: EventCustomer


class HoldEventData(HoldOut):
    """hold.created, hold.committed, hold.released (also when a hold expires)."""

    model_config = ConfigDict(extra="forbid")
    customer: EventCustomer


class GrantEventData(GrantOut):
    """grant.created and trial.activated: the grant with the batches it created."""

    model_config = ConfigDict(extra="forbid")
    customer: EventCustomer


class ReferralEventData(_Strict):
    """referral.attached and referral.rewarded; `customer` is the referee."""

    id: str
    referrer_id: str
    referee_id: str
    metadata: dict[str, Any]
    rewarded_at: datetime | None
    created_at: datetime
    customer: EventCustomer


class SubscriptionEventData(SubscriptionOut):
    """subscription.created, .renewed, .paused, .resumed, .past_due, .cancelled, .expired: the
    subscription as it is after the change."""

    model_config = ConfigDict(extra="forbid")
    customer: EventCustomer


class SubscriptionRenewalDueEventData(SubscriptionOut):
    """subscription.renewal_due: the subscription, and the pending order that pays for its next
    period (charge it, then confirm the order)."""

    model_config = ConfigDict(extra="forbid")
    customer: EventCustomer
    order: OrderOut


class SubscriptionPlanChangedEventData(SubscriptionOut):
    """subscription.plan_changed: the subscription under its new plan version, and the one it
    left."""

    model_config = ConfigDict(extra="forbid")
    customer: EventCustomer
    previous_plan: str
    previous_version: int


class AllowanceResetEventData(_Strict):
    """allowance.reset: a subscription's new allowance period, written ahead of its start."""

    subscription_id: str
    plan: str
    product: str
    amount: int
    period_start: datetime
    period_end: datetime
    customer: EventCustomer


class ProductEventData(ProductOut):
    """product.deactivated: the product (no customer)."""

    model_config = ConfigDict(extra="forbid")


class CustomerMergedEventData(MergeOut):
    """customer.merged: the merge's answer, the source's id, and `customer`: the target, now
    holding the source's identities."""

    model_config = ConfigDict(extra="forbid")
    source_customer_id: str
    customer: EventCustomer


class BatchEventData(BatchOut):
    """batch.expired: the batch in its final state."""

    model_config = ConfigDict(extra="forbid")
    customer: EventCustomer


class BatchRevokedEventData(BatchOut):
    """batch.revoked: the batch in its final state, and what revoked it: `action_type`
    (`revoke` for POST /billing/batches/{id}/revoke, `refund`, `plan.ended`, `plan.changed`, ...),
    `action_id` (the batch, order or subscription) and the reason given, if any."""

    model_config = ConfigDict(extra="forbid")
    action_type: str
    action_id: str
    reason: str
    customer: EventCustomer


class CustomerCreatedEventData(_Strict):
    """customer.created: a customer made for an identity nobody held (by identify, a call that
    names a customer by identity, or the import). Like every event, it names the customer under
    `customer`, which an erasure empties of identities."""

    customer_id: str
    created_at: datetime
    customer: EventCustomer


class AdjustmentEventData(AdjustmentOut):
    """adjustment.created: the adjustment with the batch it credited or the batches it
    debited."""

    model_config = ConfigDict(extra="forbid")
    customer: EventCustomer


class WebhookTestEventData(_Strict):
    """webhook.test, sent by POST /webhooks/endpoints/{id}/test."""

    endpoint_id: str
    message: str


# --- How each event's data is built from its billing signal's arguments.

Builder = Callable[[dict[str, Any]], dict[str, Any]]


def _with_customer(data: dict[str, Any], customer: Any) -> dict[str, Any]:
    return {**data, "customer": presenters.customer_brief(customer)}


def build_order(kw: dict[str, Any]) -> dict[str, Any]:
    return _with_customer(presenters.order_data(kw["order"]), kw["customer"])


def build_hold(kw: dict[str, Any]) -> dict[str, Any]:
    return _with_customer(presenters.hold_data(kw["hold"]), kw["customer"])


def build_grant(kw: dict[str, Any]) -> dict[str, Any]:
    return _with_customer(presenters.grant_data(kw["grant"], kw["batches"]), kw["customer"])


def build_usage(kw: dict[str, Any]) -> dict[str, Any]:
    data = presenters.usage_data(
        kw["usage"], remaining=kw["remaining"], unlimited=kw["unlimited"],
        remaining_credits=kw.get("remaining_credits"),
    )
    return _with_customer(data, kw["customer"])


def build_quota_level(kw: dict[str, Any]) -> dict[str, Any]:
    data = {
        "customer_id": str(kw["customer"].pk),
        "feature": kw["feature"],
        "remaining": kw.get("remaining", 0),
        "threshold": kw.get("threshold"),
    }
    return _with_customer(data, kw["customer"])


def build_quota_threshold(kw: dict[str, Any]) -> dict[str, Any]:
    data = {
        "customer_id": str(kw["customer"].pk),
        "feature": kw["feature"],
        "remaining": kw["remaining"],
        "threshold": kw["threshold"],
        "rule_id": str(kw["rule_id"]),
        "plan": kw["plan"],
        "allowance": kw["allowance"],
        "period": kw["period"],
    }
    return _with_customer(data, kw["customer"])


def build_referral(kw: dict[str, Any]) -> dict[str, Any]:
    referral = kw["referral"]
    data = {
        "id": str(referral.pk),
        "referrer_id": str(referral.referrer_id),
        "referee_id": str(referral.referee_id),
        "metadata": referral.metadata,
        "rewarded_at": referral.rewarded_at,
        "created_at": referral.created_at,
    }
    return _with_customer(data, kw["referee"])


def build_merged(kw: dict[str, Any]) -> dict[str, Any]:
    data = {**presenters.merge_data(kw["result"]), "source_customer_id": str(kw["source"].pk)}
    return _with_customer(data, kw["target"])


def build_batch(kw: dict[str, Any]) -> dict[str, Any]:
    return _with_customer(presenters.batch_data(kw["batch"]), kw["customer"])


def build_batch_revoked(kw: dict[str, Any]) -> dict[str, Any]:
    data = {
        **presenters.batch_data(kw["batch"]),
        "action_type": kw["action_type"],
        "action_id": kw["action_id"],
        "reason": kw["reason"],
    }
    return _with_customer(data, kw["customer"])


def build_customer(kw: dict[str, Any]) -> dict[str, Any]:
    customer = kw["customer"]
    data = {"customer_id": str(customer.pk), "created_at": customer.created_at}
    return _with_customer(data, customer)


def build_adjustment(kw: dict[str, Any]) -> dict[str, Any]:
    data = presenters.adjustment_data(kw["adjustment"], kw["batches"])
    return _with_customer(data, kw["customer"])


def build_product(kw: dict[str, Any]) -> dict[str, Any]:
    return presenters.product_data(kw["product"])


def build_subscription(kw: dict[str, Any]) -> dict[str, Any]:
    sub = kw["subscription"]
    return _with_customer(presenters.subscription_data(sub), sub.customer)


def build_renewal_due(kw: dict[str, Any]) -> dict[str, Any]:
    sub = kw["subscription"]
    data = {**presenters.subscription_data(sub), "order": presenters.order_data(kw["order"])}
    return _with_customer(data, sub.customer)


def build_plan_changed(kw: dict[str, Any]) -> dict[str, Any]:
    sub, previous = kw["subscription"], kw["previous_version"]
    data = {
        **presenters.subscription_data(sub),
        "previous_plan": previous.plan.key,
        "previous_version": previous.version,
    }
    return _with_customer(data, sub.customer)


def build_allowance_reset(kw: dict[str, Any]) -> dict[str, Any]:
    sub = kw["subscription"]
    data = {
        "subscription_id": str(sub.pk),
        "plan": sub.plan.key,
        "product": kw["product"].key,
        "amount": kw["amount"],
        "period_start": kw["period_start"],
        "period_end": kw["period_end"],
    }
    return _with_customer(data, sub.customer)
