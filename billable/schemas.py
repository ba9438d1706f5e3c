"""Request and response shapes of the billing API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from ninja import Field
from pydantic import AfterValidator, field_validator, model_validator

from billable.currencies import MAX_PRICE
from billable.metadata import MAX_METADATA_BYTES, metadata_bytes
from billing_platform.core.schema_types import Schema, UtcDateTime


def _metadata_size(value: dict[str, Any]) -> dict[str, Any]:
    if metadata_bytes(value) > MAX_METADATA_BYTES:
        raise ValueError("metadata is larger than 16 KiB")
    return value


Metadata = Annotated[dict[str, Any], AfterValidator(_metadata_size)]
Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]
# Credits one unit of a feature costs: {feature: 1 … 1,000,000,000}, at most 100 features.
CreditCosts = Annotated[
    dict[Name, Annotated[int, Field(ge=1, le=1_000_000_000)]], Field(max_length=100)
]
ProductTypeName = Literal["quantity", "period", "unlimited"]
PeriodUnitName = Literal["hours", "days", "months", "years", "forever"]
# An offer's price: a decimal string, or a JSON number, of at most 15 digits before the point.
Price = (
    Annotated[str, Field(pattern=r"^[0-9]{1,15}(\.[0-9]{1,4})?$")]
    | Annotated[float, Field(ge=0, lt=10**15)]
    | Annotated[int, Field(ge=0, le=int(MAX_PRICE))]
)


def _external_id(value: str | int | None) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        raise ValueError("external_id must not be blank")
    if len(text) > 255:
        raise ValueError("external_id is at most 255 characters")
    return text


ExternalId = Annotated[str | int | None, AfterValidator(_external_id)]
RequiredExternalId = Annotated[str | int, AfterValidator(_external_id)]


class CustomerRefIn(Schema):
    """A customer: `customer_id`, or `external_id` (+ `provider`, default `default`)."""

    customer_id: str | None = Field(None, max_length=64)
    external_id: ExternalId = Field(None, description="String or integer; trimmed.")
    provider: str = Field("default", min_length=1, max_length=64)

    @model_validator(mode="after")
    def _one_reference(self) -> CustomerRefIn:
        if self.customer_id is None and self.external_id is None:
            raise ValueError("give customer_id or external_id")
        return self


# The same reference read from the query string (`Query[CustomerQuery]`). No docstring: it
# would become the description of the `CustomerQuery` component in the OpenAPI document.
class CustomerQuery(CustomerRefIn):
    pass


class IdempotentIn(Schema):
    idempotency_key: str | None = Field(
        None,
        min_length=1,
        max_length=255,
        description="Alternative to the Idempotency-Key header (the header wins).",
    )


# --- Products and offers


class ProductIn(Schema):
    key: Name
    name: str = Field(..., min_length=1, max_length=200)
    product_type: ProductTypeName
    description: str = Field("", max_length=5000)
    is_active: bool = True
    is_currency: bool = False
    metadata: Metadata = Field(default_factory=dict)
    features: list[Name] | None = None
    credit_costs: CreditCosts | None = None


class ProductPatch(Schema):
    name: str | None = Field(None, min_length=1, max_length=200)
    product_type: ProductTypeName | None = None
    description: str | None = Field(None, max_length=5000)
    is_active: bool | None = None
    is_currency: bool | None = None
    metadata: Metadata | None = None
    features: list[Name] | None = None
    credit_costs: CreditCosts | None = None


class ProductOut(Schema):
    key: str
    name: str
    description: str
    product_type: ProductTypeName
    is_active: bool
    is_currency: bool
    features: list[str]
    # Credits one unit of a feature costs from this product's batches.
    credit_costs: dict[str, int]
    metadata: dict[str, Any]
    created_at: datetime


class ProductPage(Schema):
    items: list[ProductOut]
    next_cursor: str | None


class OfferItemIn(Schema):
    product: Name
    quantity: int = Field(1, ge=1, le=10**12)
    period_unit: PeriodUnitName = "forever"
    period_value: int | None = Field(None, ge=0, le=100_000)


class OfferItemOut(Schema):
    product: str
    quantity: int
    period_unit: PeriodUnitName
    period_value: int | None


class OfferIn(Schema):
    sku: Name
    name: str = Field(..., min_length=1, max_length=200)
    price: Price = Field(..., description='Decimal amount as a string ("19.00").')
    currency: str = Field(..., min_length=1, max_length=64)
    description: str = Field("", max_length=5000)
    is_active: bool = True
    metadata: Metadata = Field(default_factory=dict)
    items: list[OfferItemIn] = Field(..., min_length=1, max_length=50)


class OfferPatch(Schema):
    name: str | None = Field(None, min_length=1, max_length=200)
    price: Price | None = None
    currency: str | None = Field(None, min_length=1, max_length=64)
    description: str | None = Field(None, max_length=5000)
    is_active: bool | None = None
    metadata: Metadata | None = None
    items: list[OfferItemIn] | None = Field(None, min_length=1, max_length=50)


class OfferOut(Schema):
    sku: str
    name: str
    description: str
    price: str
    currency: str
    is_active: bool
    metadata: dict[str, Any]
    items: list[OfferItemOut]
    created_at: datetime


class OfferPage(Schema):
    items: list[OfferOut]
    next_cursor: str | None


# --- Declared currencies

CurrencyCode = Annotated[
    str, Field(min_length=3, max_length=8, pattern=r"^[A-Za-z][A-Za-z0-9]{2,7}$")
]


class CurrencyIn(Schema):
    code: CurrencyCode = Field(
        ..., description="3–8 letters or digits, starting with a letter; any case, shown "
        "upper-case. Not an ISO 4217 code."
    )
    name: str = Field(..., min_length=1, max_length=200)
    minor_digits: int = Field(0, ge=0, le=4, description="Places after the point in prices.")


class CurrencyPatch(Schema):
    name: str | None = Field(None, min_length=1, max_length=200)
    minor_digits: int | None = Field(
        None, ge=0, le=4, description="Only while no offer, plan version or order uses the code."
    )


class CurrencyOut(Schema):
    code: str
    name: str
    minor_digits: int
    created_at: datetime


class CurrencyPage(Schema):
    items: list[CurrencyOut]
    next_cursor: str | None


# --- Plans

PlanIntervalName = Literal["days", "weeks", "months", "years"]


class AllowanceIn(Schema):
    type: Literal["allowance"]
    product: Name = Field(..., description="A quantity product's key.")
    amount: int = Field(..., ge=1, le=10**12, description="Units granted per reset period.")
    reset_unit: PlanIntervalName | None = Field(
        None, description="The reset period's unit; by default the plan's interval."
    )
    reset_count: int | None = Field(
        None, ge=1, le=100_000,
        description="The reset period's length; by default the plan's interval count (1 when "
        "reset_unit is given).",
    )
    rollover_cap: int = Field(
        0, ge=0, le=10**12, description="Unused units carried into the next period, at most."
    )


class AccessIn(Schema):
    type: Literal["access"]
    product: Name = Field(..., description="A period or unlimited product's key.")


class ValueIn(Schema):
    type: Literal["value"]
    name: Name
    value: Any = Field(..., description="Any JSON value (a limit, a list of models, ...).")


EntitlementIn = Annotated[AllowanceIn | AccessIn | ValueIn, Field(discriminator="type")]


UpgradeAllowanceName = Literal["prorated", "full"]


class PlanIn(Schema):
    key: Name
    name: str = Field(..., min_length=1, max_length=200)
    description: str = Field("", max_length=5000)
    is_active: bool = True
    metadata: Metadata = Field(default_factory=dict)
    upgrade_allowance: UpgradeAllowanceName = Field(
        "prorated",
        description="On a change to this plan at once: the rest of the current allowance "
        "period's units in proportion to the time left, or all of them.",
    )
    interval_unit: PlanIntervalName = "months"
    interval_count: int = Field(1, ge=1, le=100_000)
    price: Price = Field(..., description='Decimal amount per interval as a string ("19.00").')
    currency: str = Field(..., min_length=1, max_length=64)
    trial_days: int = Field(0, ge=0, le=3650)
    entitlements: list[EntitlementIn] = Field(default_factory=list, max_length=50)


class PlanPatch(Schema):
    name: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = Field(None, max_length=5000)
    is_active: bool | None = None
    metadata: Metadata | None = None
    upgrade_allowance: UpgradeAllowanceName | None = None
    interval_unit: PlanIntervalName | None = None
    interval_count: int | None = Field(None, ge=1, le=100_000)
    price: Price | None = None
    currency: str | None = Field(None, min_length=1, max_length=64)
    trial_days: int | None = Field(None, ge=0, le=3650)
    entitlements: list[EntitlementIn] | None = Field(None, max_length=50)


class EntitlementOut(Schema):
    type: Literal["allowance", "access", "value"]
    product: str | None
    amount: int | None
    reset_unit: PlanIntervalName | None
    reset_count: int | None
    rollover_cap: int | None
    name: str | None
    value: Any = None


class PlanVersionOut(Schema):
    plan: str
    version: int
    is_current: bool
    interval_unit: PlanIntervalName
    interval_count: int
    price: str
    currency: str
    trial_days: int
    entitlements: list[EntitlementOut]
    created_at: datetime
    retired_at: datetime | None


class PlanVersionList(Schema):
    items: list[PlanVersionOut]


class PlanOut(Schema):
    key: str
    name: str
    description: str
    is_active: bool
    metadata: dict[str, Any]
    upgrade_allowance: UpgradeAllowanceName
    version: int = Field(..., description="The current version: the terms below.")
    interval_unit: PlanIntervalName
    interval_count: int
    price: str
    currency: str
    trial_days: int
    entitlements: list[EntitlementOut]
    retired_at: datetime | None
    created_at: datetime
    updated_at: datetime


class PlanPage(Schema):
    items: list[PlanOut]
    next_cursor: str | None


# --- Subscriptions

SubscriptionStatusName = Literal[
    "trialing", "active", "past_due", "paused", "cancelled", "expired"
]


IdentityType = Annotated[str, Field(min_length=1, max_length=64)]
IdentityValue = Annotated[str, Field(max_length=255)] | int


class SubscriptionIn(CustomerRefIn, IdempotentIn):
    plan: Name
    version: int | None = Field(
        None, ge=1, description="A version of the plan; by default its current one."
    )
    trial: bool = Field(True, description="Start with the version's trial, if it has one.")
    identities: dict[IdentityType, IdentityValue] = Field(
        default_factory=dict,
        max_length=20,
        description="Extra identities checked for the trial: {type: value}, at most 20.",
    )
    metadata: Metadata = Field(default_factory=dict)


class ScheduledChangeOut(Schema):
    plan: str
    version: int
    at: datetime


class SubscriptionChangeIn(IdempotentIn):
    plan: Name
    version: int | None = Field(None, ge=1, description="By default the plan's current one.")
    at: Literal["now", "period_end"] | None = Field(
        None,
        description="When the change takes effect; by default now for a dearer plan, at the "
        "end of the current period otherwise.",
    )


class SubscriptionOut(Schema):
    id: str
    customer_id: str
    plan: str
    version: int
    status: SubscriptionStatusName
    current_period_start: datetime
    current_period_end: datetime
    trial_end: datetime | None
    cancel_at_period_end: bool
    # Since when a paused subscription is paused.
    paused_at: datetime | None
    # A change of plan that takes effect at the end of the current period.
    scheduled_change: ScheduledChangeOut | None
    # The end of the last billing period paid for (given, for a free plan, or trialled).
    paid_through: datetime
    # The pending order that pays for the next period, once its renewal is due.
    renewal_order_id: str | None
    ended_at: datetime | None
    metadata: dict[str, Any]
    created_at: datetime


class SubscriptionChangeOut(Schema):
    at: Literal["now", "period_end"]
    # For a change now from a paid period: the price difference for the time left in it.
    amount_due: str | None
    currency: str
    subscription: SubscriptionOut


class SubscriptionPage(Schema):
    items: list[SubscriptionOut]
    next_cursor: str | None


# --- Customers


class IdentityOut(Schema):
    provider: str
    external_id: str


class CustomerOut(Schema):
    id: str
    identities: list[IdentityOut]
    metadata: dict[str, Any]
    created_at: datetime
    merged_into: str | None


class CustomerPage(Schema):
    items: list[CustomerOut]
    next_cursor: str | None


class IdentifyIn(IdempotentIn):
    provider: str = Field("default", min_length=1, max_length=64)
    external_id: RequiredExternalId = Field(..., description="String or integer; trimmed.")
    profile: Metadata = Field(default_factory=dict)


class IdentifyOut(Schema):
    customer_id: str
    created: bool
    trial_eligible: bool
    metadata: dict[str, Any]


class IdentityIn(Schema):
    provider: str = Field("default", min_length=1, max_length=64)
    external_id: RequiredExternalId = Field(
        ..., description="String or integer; trimmed, as `POST /billing/identify` does."
    )


class IdentityAttachIn(IdentityIn, IdempotentIn):
    pass


MAX_IMPORT_ENTRIES = 1000
MAX_IMPORT_IDENTITIES = 20


class CustomerImportEntryIn(Schema):
    identities: list[IdentityIn] = Field(
        ...,
        min_length=1,
        max_length=MAX_IMPORT_IDENTITIES,
        description="The customer's identities, at most one external id per provider.",
    )
    metadata: Metadata = Field(
        default_factory=dict,
        description="A new customer's metadata; shallow-merged into an existing customer's.",
    )
    trials_used: list[Name] = Field(
        default_factory=list,
        max_length=20,
        description="Trial SKUs or plan keys this person took in the original module; any "
        "makes them ineligible for every trial here (trials are once per person).",
    )

    @field_validator("identities", mode="after")
    @classmethod
    def _one_per_provider(cls, value: list[IdentityIn]) -> list[IdentityIn]:
        seen: dict[str, str] = {}
        unique = []
        for identity in value:
            external_id = str(identity.external_id)
            if identity.provider in seen:
                if seen[identity.provider] != external_id:
                    raise ValueError(
                        f"two different external ids for provider {identity.provider!r}"
                    )
                continue  # the same identity twice: once is enough
            seen[identity.provider] = external_id
            unique.append(identity)
        return unique


class CustomerImportIn(IdempotentIn):
    customers: list[CustomerImportEntryIn] = Field(
        ..., min_length=1, max_length=MAX_IMPORT_ENTRIES
    )


class ImportConflictOut(Schema):
    index: int
    code: str
    detail: str


class ImportCustomerOut(Schema):
    index: int
    customer_id: str


class CustomerImportOut(Schema):
    created: int
    updated: int
    unchanged: int
    conflicts: list[ImportConflictOut]
    customers: list[ImportCustomerOut]


# --- Balance, consume, holds


class CreditPoolOut(Schema):
    # A product that prices the feature in credits: credits per unit, credits left.
    product: str
    unit_cost: int
    credits: int


class BalanceOut(Schema):
    customer_id: str | None
    feature: str
    can_use: bool
    # Units of the feature: over products that price it in credits, floor(credits / unit_cost)
    # each (a unit is never split between two products).
    remaining: int | None
    unlimited: bool
    expires_at: datetime | None
    message: str
    credit_pools: list[CreditPoolOut]


ExplainReason = Literal[
    "unknown_customer", "reserved_by_holds", "paused", "subscription_past_due", "exhausted",
    "not_started", "expired", "revoked", "not_covered",
]


class ExplainedBatchOut(Schema):
    id: str
    product: str
    # purchase, exchange, trial, bonus, referral, manual, adjustment, plan
    source: str
    # The order, grant, adjustment or subscription the batch came from.
    source_id: str | None
    state: Literal["active", "exhausted", "paused"]
    remaining: int
    # Credits one unit of the feature costs from this batch (1 without a cost).
    unit_cost: int
    # Active and started: it counts now.
    usable: bool
    valid_from: datetime
    expires_at: datetime | None


class ExplainedHoldOut(Schema):
    id: str
    amount: int
    expires_at: datetime
    created_at: datetime


class ExplainedSubscriptionOut(Schema):
    id: str
    plan: str
    status: str
    current_period_end: datetime


class ExplainOut(Schema):
    # Why the feature cannot be used (null when it can): the first that applies of
    # unknown_customer, reserved_by_holds, paused, subscription_past_due, exhausted,
    # not_started, expired, revoked, not_covered.
    reason: ExplainReason | None
    # Batches covering the feature that count or may again (active, used up, paused; not
    # expired), soonest expiry first; at most 50.
    batches: list[ExplainedBatchOut]
    batches_truncated: bool
    # Active holds reserving units of the feature, and their total.
    holds: list[ExplainedHoldOut]
    reserved: int
    # When the next allowance period's units come (null: none follows).
    next_reset: datetime | None
    # The subscriptions behind the listed batches, and past-due ones that cover the feature.
    subscriptions: list[ExplainedSubscriptionOut]


class BalanceExplainedOut(BalanceOut):
    explain: ExplainOut


class BalanceExplainedListOut(Schema):
    customer_id: str | None
    items: list[BalanceExplainedOut]


class FeatureEntitlementOut(BalanceOut):
    # Units one allowance period gives, over the subscriptions in force (null: no allowance).
    allowance: int | None
    # When the current allowance period ends and the next one's units come.
    next_reset: datetime | None


class FeatureEntitlementExplainedOut(FeatureEntitlementOut):
    # What makes the balance up and why it cannot be used.
    explain: ExplainOut


class SubscriptionBriefOut(Schema):
    id: str
    plan: str
    version: int
    status: SubscriptionStatusName
    current_period_end: datetime
    paid_through: datetime
    # The end of the current period when the subscription goes on past it, else null.
    renews_at: datetime | None
    # When it ends: cancelled at period end, or unpaid (past due); else null.
    ends_at: datetime | None


class EntitlementsOut(Schema):
    customer_id: str | None
    as_of: datetime
    features: list[FeatureEntitlementOut]
    values: dict[str, Any]
    subscriptions: list[SubscriptionBriefOut]


class EntitlementsExplainedOut(EntitlementsOut):
    features: list[FeatureEntitlementExplainedOut]  # type: ignore[assignment]


class BalanceListOut(Schema):
    customer_id: str | None
    items: list[BalanceOut]


class ConsumeIn(CustomerRefIn, IdempotentIn):
    feature: Name | None = None
    product_key: Name | None = None
    amount: int = Field(1, ge=1, le=10**12)
    action_type: str = Field("usage", min_length=1, max_length=64)
    action_id: str = Field("", max_length=255)
    metadata: Metadata = Field(default_factory=dict)

    @model_validator(mode="after")
    def _feature(self) -> ConsumeIn:
        if not (self.feature or self.product_key):
            raise ValueError("give feature or product_key")
        return self


class UsageOut(Schema):
    usage_id: str
    customer_id: str
    feature: str
    # Units of the feature used.
    amount: int
    # Units taken from batches: `amount` times the credit cost of the product(s) that paid
    # (`amount` when no product prices the feature); 0 when access covered the use.
    credits: int
    # Units of the feature left (null under period or unlimited access).
    remaining: int | None
    # Credits left in the products that price the feature (null when none does).
    remaining_credits: int | None
    unlimited: bool
    metadata: dict[str, Any]
    created_at: datetime


class UsageRecordOut(Schema):
    id: str
    customer_id: str
    feature: str
    amount: int
    credits: int
    action_type: str
    action_id: str
    metadata: dict[str, Any]
    created_at: datetime


class UsagePage(Schema):
    items: list[UsageRecordOut]
    next_cursor: str | None


class HoldIn(CustomerRefIn, IdempotentIn):
    feature: Name
    amount: int = Field(..., ge=1, le=10**12)
    ttl_seconds: int = Field(900, ge=60, le=86_400)
    metadata: Metadata = Field(default_factory=dict)


class HoldCommitIn(IdempotentIn):
    amount: int | None = Field(None, ge=0, le=10**12)


class HoldReleaseIn(IdempotentIn):
    pass


class HoldOut(Schema):
    id: str
    customer_id: str
    feature: str
    amount: int
    # Units taken from batches: `amount` at the feature's credit cost while active, what was
    # kept once committed, 0 once released or under access.
    credits: int
    status: Literal["active", "committed", "released", "expired"]
    committed_amount: int | None
    expires_at: datetime
    metadata: dict[str, Any]
    created_at: datetime


# --- Batches, ledger, wallet, grants, adjustments


class BatchOut(Schema):
    id: str
    product: str
    initial: int
    remaining: int
    valid_from: datetime
    expires_at: datetime | None
    state: Literal["active", "exhausted", "expired", "revoked", "paused"]
    source: str
    created_at: datetime


class BatchPage(Schema):
    items: list[BatchOut]
    next_cursor: str | None


class LedgerEntryOut(Schema):
    id: str
    batch_id: str
    product: str
    direction: Literal["credit", "debit"]
    amount: int
    action_type: str
    action_id: str
    actor: str
    metadata: dict[str, Any]
    created_at: datetime


class LedgerPage(Schema):
    items: list[LedgerEntryOut]
    next_cursor: str | None


class WalletOut(Schema):
    customer_id: str
    balances: dict[str, int | None]


class GrantIn(CustomerRefIn, IdempotentIn):
    sku: Name
    kind: Literal["trial", "bonus", "referral", "manual"]
    identities: dict[IdentityType, IdentityValue] = Field(
        default_factory=dict,
        max_length=20,
        description="Extra identities checked for trials: {type: value}, at most 20.",
    )
    expires_at: UtcDateTime | None = None
    reason: str = Field("", max_length=1000)
    metadata: Metadata = Field(default_factory=dict)


class GrantOut(Schema):
    id: str
    customer_id: str
    sku: str
    kind: str
    reason: str
    batches: list[BatchOut]
    metadata: dict[str, Any]
    created_at: datetime


class AdjustmentIn(CustomerRefIn, IdempotentIn):
    product: Name
    amount: int = Field(..., ge=-(10**12), le=10**12)
    expires_at: UtcDateTime | None = None
    reason: str = Field(..., min_length=1, max_length=1000)


class AdjustmentOut(Schema):
    id: str
    customer_id: str
    product: str
    amount: int
    batches: list[BatchOut]
    reason: str


class RevokeIn(IdempotentIn):
    reason: str = Field("", max_length=1000)


# --- Alert rules

ThresholdTypeName = Literal["absolute", "percent"]
# A feature or product key, or `*`: every feature.
AlertFeature = Annotated[
    str, Field(min_length=1, max_length=64, pattern=r"^(\*|[A-Za-z0-9_.\-]+)$")
]


class ThresholdIn(Schema):
    type: ThresholdTypeName = Field(
        ..., description="absolute: units; percent: of the period's allowance of the feature."
    )
    value: int = Field(
        ..., ge=0, le=10**12,
        description="Units (absolute, >= 0) or a whole percent (percent, 1–100). The threshold "
        "is reached when a spend takes the remaining units from above it to at or below it.",
    )


class AlertRuleIn(IdempotentIn):
    feature: AlertFeature = Field(
        ..., description="A feature or product key (any case), or `*` for every feature."
    )
    plan: Name | None = Field(
        None,
        description="Only for customers with a subscription to this plan in force; such a rule "
        "overrides the general ones for them.",
    )
    thresholds: list[ThresholdIn] = Field(..., min_length=1, max_length=10)
    is_active: bool = True


class AlertRulePatch(Schema):
    thresholds: list[ThresholdIn] | None = Field(
        None, min_length=1, max_length=10, description="Replaces the rule's thresholds."
    )
    is_active: bool | None = None


class ThresholdOut(Schema):
    type: ThresholdTypeName
    value: int


class AlertRuleOut(Schema):
    id: str
    feature: str = Field(..., description="Lower-case name, or `*`.")
    plan: str | None
    thresholds: list[ThresholdOut]
    is_active: bool
    created_at: datetime
    updated_at: datetime


class AlertRulePage(Schema):
    items: list[AlertRuleOut]
    next_cursor: str | None


# --- Settings


class SettingsOut(Schema):
    low_balance_threshold: int = Field(
        ...,
        description="Units at or below which a spend sends quota.low (0: off), for the features "
        "no active alert rule names (a rule for `*` names them all).",
    )
    idempotency_retention_days: int
    referral_reward_sku: str | None
    referee_reward_sku: str | None
    public_catalog: bool
    subscription_grace_days: int
    subscription_renewal_notice_days: int
    referral_require_known_referrer: bool


class SettingsPatch(Schema):
    """A tenant's settings as `PATCH /settings` and the operators' admin accept them."""

    low_balance_threshold: int | None = Field(None, ge=0, le=10**12)
    idempotency_retention_days: int | None = Field(None, ge=1, le=30)
    referral_reward_sku: Name | None = None
    referee_reward_sku: Name | None = None
    public_catalog: bool | None = None
    subscription_grace_days: int | None = Field(None, ge=0, le=365)
    subscription_renewal_notice_days: int | None = Field(None, ge=1, le=365)
    referral_require_known_referrer: bool | None = None

    @field_validator("referral_reward_sku", "referee_reward_sku", mode="after")
    @classmethod
    def _sku_upper(cls, value: str | None) -> str | None:
        """Offer SKUs are stored upper-case."""
        return value.upper() if value else value


# --- Orders, exchange, referrals, merge


class OrderLineIn(Schema):
    sku: Name
    quantity: int = Field(1, ge=1, le=1_000_000)


class OrderIn(CustomerRefIn, IdempotentIn):
    items: list[OrderLineIn] = Field(..., min_length=1, max_length=100)
    metadata: Metadata = Field(default_factory=dict)


class OrderItemOut(Schema):
    id: str
    sku: str
    name: str
    quantity: int
    unit_price: str


class OrderOut(Schema):
    id: str
    customer_id: str
    status: Literal["pending", "paid", "cancelled", "refunded"]
    total: str
    currency: str
    items: list[OrderItemOut]
    payment_id: str | None
    payment_method: str
    created_at: datetime
    paid_at: datetime | None
    cancelled_at: datetime | None
    refunded_at: datetime | None
    # Why it was cancelled or refunded ("" otherwise).
    reason: str
    metadata: dict[str, Any]
    # A renewal order: the subscription and the billing period it pays for.
    subscription_id: str | None
    period_number: int | None


class OrderPage(Schema):
    items: list[OrderOut]
    next_cursor: str | None


class ConfirmIn(IdempotentIn):
    payment_id: str | None = Field(None, min_length=1, max_length=255)
    payment_method: str | None = Field(None, max_length=64)


class ReasonIn(IdempotentIn):
    reason: str = Field("", max_length=1000)


class ExchangeIn(CustomerRefIn, IdempotentIn):
    sku: Name


class ReferralIn(IdempotentIn):
    referrer: CustomerRefIn
    referee: CustomerRefIn
    metadata: Metadata = Field(default_factory=dict)


class ReferralOut(Schema):
    id: str
    referrer_id: str
    referee_id: str
    # False for a link that existed already (the same referrer and referee again).
    created: bool
    metadata: dict[str, Any]
    rewarded_at: datetime | None
    created_at: datetime


class ReferralStatsOut(Schema):
    referred: int
    rewarded: int


class MergeIn(IdempotentIn):
    target_customer_id: str = Field(..., min_length=1, max_length=64)
    source_customer_id: str = Field(..., min_length=1, max_length=64)


class MergeOut(Schema):
    target_customer_id: str
    moved_identities: int
    moved_batches: int
    moved_orders: int
    moved_holds: int
    moved_usages: int
    moved_referrals: int
