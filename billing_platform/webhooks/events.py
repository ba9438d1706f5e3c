"""The one registry of webhook event types: name, the signal that raises it, its data.

Everything that needs the list of event types reads it here: the subscription check and the API
schema (`EVENT_TYPES`), the fan-out (`EVENTS`: which signal becomes which event, built how) and
the documented payloads (`validate_data`). docs/webhooks.md describes each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.dispatch import Signal
from pydantic import BaseModel

from billable import signals
from billing_platform.webhooks import payloads as p


@dataclass(frozen=True)
class EventKind:
    name: str
    payload: type[BaseModel]
    # The billing signal that raises the event, and how its arguments become `data`; None for
    # the events the platform sends itself (webhook.test).
    signal: Signal | None = None
    build: p.Builder | None = None


EVENTS: tuple[EventKind, ...] = (
    EventKind("order.created", p.OrderEventData, signals.order_created, p.build_order),
    EventKind("order.confirmed", p.OrderEventData, signals.order_confirmed, p.build_order),
    EventKind("order.cancelled", p.OrderEventData, signals.order_cancelled, p.build_order),
    EventKind("order.refunded", p.OrderEventData, signals.order_refunded, p.build_order),
    EventKind("quota.consumed", p.UsageEventData, signals.quota_consumed, p.build_usage),
    EventKind("quota.low", p.QuotaLevelEventData, signals.quota_low, p.build_quota_level),
    EventKind(
        "quota.depleted", p.QuotaLevelEventData, signals.quota_depleted, p.build_quota_level
    ),
    EventKind(
        "quota.threshold_reached", p.QuotaThresholdEventData, signals.quota_threshold_reached,
        p.build_quota_threshold,
    ),
    EventKind("hold.created", p.HoldEventData, signals.hold_created, p.build_hold),
    EventKind("hold.committed", p.HoldEventData, signals.hold_committed, p.build_hold),
    EventKind("hold.released", p.HoldEventData, signals.hold_released, p.build_hold),
    EventKind("grant.created", p.GrantEventData, signals.grant_created, p.build_grant),
    EventKind("trial.activated", p.GrantEventData, signals.trial_activated, p.build_grant),
    EventKind(
        "referral.attached", p.ReferralEventData, signals.referral_attached, p.build_referral
    ),
    EventKind(
        "referral.rewarded", p.ReferralEventData, signals.referral_rewarded, p.build_referral
    ),
    EventKind(
        "product.deactivated", p.ProductEventData, signals.product_deactivated, p.build_product
    ),
    EventKind(
        "customer.merged", p.CustomerMergedEventData, signals.customer_merged, p.build_merged
    ),
    EventKind(
        "customer.created", p.CustomerCreatedEventData, signals.customer_created,
        p.build_customer,
    ),
    EventKind("batch.expired", p.BatchEventData, signals.batch_expired, p.build_batch),
    EventKind(
        "batch.revoked", p.BatchRevokedEventData, signals.batch_revoked, p.build_batch_revoked
    ),
    EventKind(
        "adjustment.created", p.AdjustmentEventData, signals.adjustment_created,
        p.build_adjustment,
    ),
    EventKind(
        "subscription.created", p.SubscriptionEventData, signals.subscription_created,
        p.build_subscription,
    ),
    EventKind(
        "subscription.renewal_due", p.SubscriptionRenewalDueEventData,
        signals.subscription_renewal_due, p.build_renewal_due,
    ),
    EventKind(
        "subscription.renewed", p.SubscriptionEventData, signals.subscription_renewed,
        p.build_subscription,
    ),
    EventKind(
        "subscription.plan_changed", p.SubscriptionPlanChangedEventData,
        signals.subscription_plan_changed, p.build_plan_changed,
    ),
    EventKind(
        "subscription.paused", p.SubscriptionEventData, signals.subscription_paused,
        p.build_subscription,
    ),
    EventKind(
        "subscription.resumed", p.SubscriptionEventData, signals.subscription_resumed,
        p.build_subscription,
    ),
    EventKind(
        "subscription.past_due", p.SubscriptionEventData, signals.subscription_past_due,
        p.build_subscription,
    ),
    EventKind(
        "subscription.cancelled", p.SubscriptionEventData, signals.subscription_cancelled,
        p.build_subscription,
    ),
    EventKind(
        "subscription.expired", p.SubscriptionEventData, signals.subscription_expired,
        p.build_subscription,
    ),
    EventKind(
        "allowance.reset", p.AllowanceResetEventData, signals.allowance_reset,
        p.build_allowance_reset,
    ),
    EventKind("webhook.test", p.WebhookTestEventData),
)

EVENT_TYPES: tuple[str, ...] = tuple(kind.name for kind in EVENTS)
PAYLOADS: dict[str, type[BaseModel]] = {kind.name: kind.payload for kind in EVENTS}
WEBHOOK_TEST = "webhook.test"


def validate_data(event_type: str, data: dict[str, Any]) -> BaseModel:
    """Parse an event's `data` with its documented model (raises pydantic.ValidationError)."""
    return PAYLOADS[event_type].model_validate(data)
