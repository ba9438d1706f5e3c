"""What the engine's services and selectors return when it is more than a model.

Read by the presenters, which sit below the services and selectors that produce these."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from billable.models import Customer, Hold, QuotaBatch, Subscription


@dataclass(frozen=True)
class IdentifyResult:
    customer: Customer
    created: bool
    trial_eligible: bool


@dataclass(frozen=True)
class IdentityAttachResult:
    customer: Customer
    # False when the customer already held the identity (nothing changed).
    created: bool


@dataclass(frozen=True)
class ImportConflict:
    """An entry of an import that was not applied, and why (a problem code and its detail)."""

    index: int
    code: str
    detail: str


@dataclass(frozen=True)
class ImportResult:
    created: int
    updated: int
    unchanged: int
    conflicts: list[ImportConflict]
    # (index of the entry, its customer's id), for every entry applied or unchanged.
    customers: list[tuple[int, str]]


@dataclass(frozen=True)
class MergeResult:
    target: Customer
    moved_identities: int
    moved_batches: int
    moved_orders: int
    moved_holds: int
    moved_usages: int
    moved_referrals: int


@dataclass(frozen=True)
class CreditPool:
    """A product that prices a feature in credits: its cost per unit and the credits left."""

    product: str
    unit_cost: int
    credits: int


@dataclass(frozen=True)
class Balance:
    customer_id: Any
    feature: str
    can_use: bool
    remaining: int | None
    unlimited: bool
    expires_at: datetime | None
    message: str
    credit_pools: tuple[CreditPool, ...] = ()


@dataclass(frozen=True)
class ExplainedBatch:
    """A batch covering a name, as an explanation lists it."""

    batch: QuotaBatch
    unit_cost: int  # credits one unit of the name costs from it (1 without a cost)
    usable: bool  # active and started: it counts now
    source_id: str | None  # the order, grant, adjustment or subscription it came from


@dataclass(frozen=True)
class Explanation:
    """What makes up a balance and, when the name cannot be used, why (`selectors.explain`)."""

    balance: Balance
    reason: str | None
    batches: list[ExplainedBatch] = field(default_factory=list)
    batches_truncated: bool = False
    holds: list[Hold] = field(default_factory=list)
    next_reset: datetime | None = None
    subscriptions: list[Subscription] = field(default_factory=list)


@dataclass(frozen=True)
class FeatureEntitlement:
    balance: Balance
    # Units per allowance period, over the subscriptions in force; None without an allowance.
    allowance: int | None
    # When the current allowance period ends and the next one's units come; None when no
    # allowance covers the feature or none follows.
    next_reset: datetime | None
    # What makes the balance up, when asked for.
    explanation: Explanation | None = None


@dataclass(frozen=True)
class Entitlements:
    customer: Customer | None
    as_of: datetime
    features: list[FeatureEntitlement] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)
    subscriptions: list[Subscription] = field(default_factory=list)


ChangeAt = Literal["now", "period_end"]


@dataclass(frozen=True)
class ChangeResult:
    """A subscription's change of plan: when it takes effect, and what is owed for it."""

    subscription: Subscription
    at: ChangeAt
    # For a change now from a paid period: the price difference for the time left in it,
    # for the tenant to charge (never below zero); None otherwise.
    amount_due: Decimal | None


@dataclass(frozen=True)
class Threshold:
    """One level of an alert rule: `value` units, or `value` percent of the period's allowance."""

    type: Literal["absolute", "percent"]
    value: int


@dataclass(frozen=True)
class ActiveRule:
    """An active alert rule as the spending paths read it (cached with the tenant's key)."""

    id: str
    feature: str  # lower-case, or "*"
    plan_id: int | None
    plan_key: str | None
    thresholds: tuple[Threshold, ...]

    def names(self, folded: str) -> bool:
        return self.feature in (folded, "*")


@dataclass(frozen=True)
class AlertContext:
    """What the alert rules need to know of a customer for one feature at one time."""

    # Plans of the customer's subscriptions in force.
    plan_ids: frozenset[int]
    # Units per allowance period of the feature over those subscriptions; None without one.
    allowance: int | None
    # The current allowance period of the feature (the one ending first); None without one.
    period: tuple[datetime, datetime] | None
