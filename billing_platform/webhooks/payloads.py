"""The documented shape of `data` for every event type (docs/webhooks.md shows an example of each).

`data` is the object as the API shows it, plus `customer: {id, identities}` for events about a
customer, so a receiver can act without calling back. Unknown fields are refused here so the
tests notice when a payload drifts from its documentation.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from billable.schemas import (
    BatchOut,
    GrantOut,
    HoldOut,
    IdentityOut,
    OrderOut,
    ProductOut,
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
    rewarded_at: datetime | None
    created_at: datetime
    customer: EventCustomer


class ProductEventData(ProductOut):
    """product.deactivated: the product (no customer)."""

    model_config = ConfigDict(extra="forbid")


class CustomerMergedEventData(_Strict):
    """customer.merged; `customer` is the target, now holding the source's identities."""

    target_customer_id: str
    source_customer_id: str
    moved_identities: int
    moved_batches: int
    moved_orders: int
    moved_holds: int
    moved_usages: int
    moved_referrals: int
    customer: EventCustomer


class BatchEventData(BatchOut):
    """batch.expired: the batch in its final state."""

    model_config = ConfigDict(extra="forbid")
    customer: EventCustomer


class WebhookTestEventData(_Strict):
    """webhook.test, sent by POST /webhooks/endpoints/{id}/test."""

    endpoint_id: str
    message: str


PAYLOADS: dict[str, type[BaseModel]] = {
    "order.created": OrderEventData,
    "order.confirmed": OrderEventData,
    "order.cancelled": OrderEventData,
    "order.refunded": OrderEventData,
    "quota.consumed": UsageEventData,
    "quota.low": QuotaLevelEventData,
    "quota.depleted": QuotaLevelEventData,
    "hold.created": HoldEventData,
    "hold.committed": HoldEventData,
    "hold.released": HoldEventData,
    "grant.created": GrantEventData,
    "trial.activated": GrantEventData,
    "referral.attached": ReferralEventData,
    "referral.rewarded": ReferralEventData,
    "product.deactivated": ProductEventData,
    "customer.merged": CustomerMergedEventData,
    "batch.expired": BatchEventData,
    "webhook.test": WebhookTestEventData,
}


def validate_data(event_type: str, data: dict[str, Any]) -> BaseModel:
    """Parse an event's `data` with its documented model (raises pydantic.ValidationError)."""
    return PAYLOADS[event_type].model_validate(data)
