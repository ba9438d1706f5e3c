"""Tenant-schema models of the billing engine.

Every table here exists once per tenant schema. No foreign key points into the public schema
(Citus-ready, and a tenant migration never locks a shared table); customers are known only by
their external identities.
"""

from __future__ import annotations

import uuid

from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.db import models
from django.db.models import Q


class ProductType(models.TextChoices):
    QUANTITY = "quantity", "Quantity (countable units)"
    PERIOD = "period", "Period (time-boxed access)"
    UNLIMITED = "unlimited", "Unlimited"


class PeriodUnit(models.TextChoices):
    HOURS = "hours", "hours"
    DAYS = "days", "days"
    MONTHS = "months", "months"
    YEARS = "years", "years"
    FOREVER = "forever", "forever"


class CatalogKey(models.Model):
    """The one namespace shared by product keys, offer SKUs, plan keys and declared currency
    codes (a unique row per name)."""

    key = models.CharField(max_length=64, primary_key=True)
    kind = models.CharField(max_length=8)  # "product", "offer", "plan" or "currency"


class Currency(models.Model):
    """A currency the tenant declares beside ISO 4217 (Telegram Stars, `XTR`): prices in it have
    `minor_digits` places. Its code is in the `CatalogKey` namespace, so no product (above all no
    currency product) shares it. The digits are fixed once an offer, plan version or order uses
    the code, which keeps every amount already written in it exact."""

    id = models.BigAutoField(primary_key=True)
    code = models.CharField(max_length=8, unique=True)
    name = models.CharField(max_length=200)
    minor_digits = models.PositiveSmallIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(minor_digits__gte=0, minor_digits__lte=4),
                name="currency_minor_digits_range",
            ),
            models.CheckConstraint(
                condition=Q(code__regex=r"^[A-Z][A-Z0-9]{2,7}$"), name="currency_code_shape"
            ),
        ]

    def __str__(self) -> str:
        return self.code


class Product(models.Model):
    id = models.BigAutoField(primary_key=True)
    key = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    product_type = models.CharField(max_length=16, choices=ProductType.choices)
    is_active = models.BooleanField(default=True)
    is_currency = models.BooleanField(default=False)
    metadata = models.JSONField(default=dict, blank=True)
    # Lower-case feature names, mirrored from metadata.features for indexed lookup.
    features = ArrayField(models.CharField(max_length=64), default=list, blank=True)
    # Credits one unit of a feature costs from this (quantity) product's batches: {feature: n}.
    credit_costs = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [GinIndex(fields=["features"], name="product_features_gin")]
        constraints = [
            models.CheckConstraint(
                condition=Q(product_type__in=["quantity", "period", "unlimited"]),
                name="product_type_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.key


class Offer(models.Model):
    id = models.BigAutoField(primary_key=True)
    sku = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    price = models.DecimalField(max_digits=20, decimal_places=4)
    currency = models.CharField(max_length=64)
    is_active = models.BooleanField(default=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(price__gte=0), name="offer_price_non_negative"),
        ]

    def __str__(self) -> str:
        return self.sku


class OfferItem(models.Model):
    id = models.BigAutoField(primary_key=True)
    offer = models.ForeignKey(Offer, on_delete=models.CASCADE, related_name="items")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="offer_items")
    quantity = models.BigIntegerField()
    period_unit = models.CharField(
        max_length=8, choices=PeriodUnit.choices, default=PeriodUnit.FOREVER
    )
    period_value = models.PositiveIntegerField(null=True, blank=True)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ("position", "id")
        constraints = [
            models.CheckConstraint(
                condition=Q(quantity__gte=1), name="offer_item_quantity_positive"
            ),
        ]


class PlanInterval(models.TextChoices):
    DAYS = "days", "days"
    WEEKS = "weeks", "weeks"
    MONTHS = "months", "months"
    YEARS = "years", "years"


class EntitlementType(models.TextChoices):
    ALLOWANCE = "allowance", "allowance"
    ACCESS = "access", "access"
    VALUE = "value", "value"


class UpgradeAllowance(models.TextChoices):
    PRORATED = "prorated", "prorated"
    FULL = "full", "full"


class Plan(models.Model):
    """A subscription offer. Its terms (interval, price, entitlements) live in versions: a change
    of terms makes a new version, and a subscription keeps the version it took."""

    id = models.BigAutoField(primary_key=True)
    # In the one namespace of product keys and offer SKUs (`CatalogKey`, kind "plan").
    key = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    is_active = models.BooleanField(default=True)
    metadata = models.JSONField(default=dict, blank=True)
    # The version new subscriptions take: the latest.
    current_version = models.PositiveIntegerField(default=1)
    # A subscription changed to this plan at once gets the rest of the current allowance
    # period's units in proportion to the time left ("prorated") or all of them ("full").
    upgrade_allowance = models.CharField(
        max_length=16, choices=UpgradeAllowance.choices, default=UpgradeAllowance.PRORATED
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(upgrade_allowance="prorated") | Q(upgrade_allowance="full"),
                name="plan_upgrade_allowance_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.key


class PlanVersion(models.Model):
    """One version of a plan's terms; never changed once written, except `retired_at`."""

    id = models.BigAutoField(primary_key=True)
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="versions")
    version = models.PositiveIntegerField()
    interval_unit = models.CharField(max_length=8, choices=PlanInterval.choices)
    interval_count = models.PositiveIntegerField(default=1)
    price = models.DecimalField(max_digits=20, decimal_places=4)
    currency = models.CharField(max_length=64)
    trial_days = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    # A retired version takes no new subscriptions; its subscribers keep it.
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("plan_id", "version")
        constraints = [
            models.UniqueConstraint(fields=["plan", "version"], name="plan_version_unique"),
            models.CheckConstraint(
                condition=Q(interval_count__gte=1), name="plan_interval_count_positive"
            ),
            models.CheckConstraint(
                condition=Q(interval_unit__in=["days", "weeks", "months", "years"]),
                name="plan_interval_unit_valid",
            ),
            models.CheckConstraint(condition=Q(price__gte=0), name="plan_price_non_negative"),
        ]


class PlanEntitlement(models.Model):
    """What a plan version gives: an allowance of a quantity product per reset period (with
    an optional rollover cap), access to a period or unlimited product's features for the
    subscription's period, or a configuration value."""

    id = models.BigAutoField(primary_key=True)
    version = models.ForeignKey(PlanVersion, on_delete=models.CASCADE, related_name="entitlements")
    position = models.PositiveSmallIntegerField(default=0)
    entitlement_type = models.CharField(max_length=16, choices=EntitlementType.choices)
    # allowance and access
    product = models.ForeignKey(
        Product, on_delete=models.PROTECT, null=True, blank=True, related_name="plan_entitlements"
    )
    # allowance
    amount = models.BigIntegerField(null=True, blank=True)
    reset_unit = models.CharField(
        max_length=8, choices=PlanInterval.choices, blank=True, default=""
    )
    reset_count = models.PositiveIntegerField(null=True, blank=True)
    rollover_cap = models.BigIntegerField(null=True, blank=True)
    # value
    name = models.CharField(max_length=64, blank=True, default="")
    value = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ("version_id", "position", "id")
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(
                        entitlement_type="allowance",
                        product__isnull=False,
                        amount__gte=1,
                        reset_unit__in=["days", "weeks", "months", "years"],
                        reset_count__gte=1,
                        rollover_cap__gte=0,
                    )
                    | Q(entitlement_type="access", product__isnull=False)
                    | Q(entitlement_type="value", product__isnull=True)
                ),
                name="plan_entitlement_shape",
            ),
        ]


class Customer(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    metadata = models.JSONField(default=dict, blank=True)
    merged_into = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="merged_from"
    )
    erased_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        # The console's customer list, newest first, paged by (created_at, id).
        indexes = [models.Index(fields=["-created_at", "-id"], name="customer_recent_idx")]

    def __str__(self) -> str:
        return str(self.id)


class ExternalIdentity(models.Model):
    id = models.BigAutoField(primary_key=True)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="identities")
    provider = models.CharField(max_length=64)
    external_id = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("id",)
        constraints = [
            models.UniqueConstraint(fields=["provider", "external_id"], name="identity_unique"),
        ]
        # The console's search by an external id of any provider, exact or by its beginning
        # (`LIKE 'abc%'` whatever the database's collation).
        indexes = [
            models.Index(
                fields=["external_id"],
                name="identity_external_id_idx",
                opclasses=["varchar_pattern_ops"],
            ),
        ]


class Grant(models.Model):
    """An offer activated without payment (trial, bonus, referral reward, manual)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="grants")
    sku = models.CharField(max_length=64)
    kind = models.CharField(max_length=16)
    reason = models.TextField(blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)
    actor = models.CharField(max_length=100, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)


class Adjustment(models.Model):
    """A support correction: credit (a new batch) or debit (usable batches) of one product."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="adjustments")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+")
    amount = models.BigIntegerField()
    reason = models.TextField()
    actor = models.CharField(max_length=100, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)


class BatchState(models.TextChoices):
    ACTIVE = "active", "active"
    EXHAUSTED = "exhausted", "exhausted"
    EXPIRED = "expired", "expired"
    REVOKED = "revoked", "revoked"
    # A paused subscription's batch: neither usable nor expiring until the subscription
    # is unpaused.
    PAUSED = "paused", "paused"


class BatchSource(models.TextChoices):
    PURCHASE = "purchase", "purchase"
    EXCHANGE = "exchange", "exchange"
    TRIAL = "trial", "trial"
    BONUS = "bonus", "bonus"
    REFERRAL = "referral", "referral"
    MANUAL = "manual", "manual"
    ADJUSTMENT = "adjustment", "adjustment"
    PLAN = "plan", "plan"


class QuotaBatch(models.Model):
    """One grant of units (or of access) of one product to one customer."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="batches")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="batches")
    initial = models.BigIntegerField()
    remaining = models.BigIntegerField()
    valid_from = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True)
    state = models.CharField(max_length=16, choices=BatchState.choices, default=BatchState.ACTIVE)
    source = models.CharField(max_length=16, choices=BatchSource.choices)
    grant = models.ForeignKey(
        Grant, null=True, blank=True, on_delete=models.PROTECT, related_name="batches"
    )
    adjustment = models.ForeignKey(
        Adjustment, null=True, blank=True, on_delete=models.PROTECT, related_name="batches"
    )
    order_item = models.ForeignKey(
        "OrderItem", null=True, blank=True, on_delete=models.PROTECT, related_name="batches"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["customer", "product", "expires_at"],
                name="batch_usable_idx",
                condition=Q(state="active"),
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(remaining__gte=0), name="batch_remaining_non_negative"
            ),
            models.CheckConstraint(condition=Q(initial__gte=0), name="batch_initial_non_negative"),
            models.CheckConstraint(
                condition=Q(state__in=["active", "exhausted", "expired", "revoked", "paused"]),
                name="batch_state_valid",
            ),
        ]


class Usage(models.Model):
    """One successful consume (or hold commit)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="usages")
    feature = models.CharField(max_length=64)
    amount = models.BigIntegerField()
    # Units taken from batches: `amount` times the credit cost of each product that paid (just
    # `amount` without costs); 0 when access covered the use.
    credits = models.BigIntegerField(default=0)
    action_type = models.CharField(max_length=64, default="usage")
    action_id = models.CharField(max_length=255, blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["customer", "-created_at", "-id"], name="usage_customer_recent"),
            # The console's overview: consumption per feature per day, read from the index alone.
            models.Index(
                fields=["created_at"], include=["feature", "amount"], name="usage_recent_idx"
            ),
        ]


class HoldStatus(models.TextChoices):
    ACTIVE = "active", "active"
    COMMITTED = "committed", "committed"
    RELEASED = "released", "released"
    EXPIRED = "expired", "expired"


class Hold(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="holds")
    feature = models.CharField(max_length=64)
    amount = models.BigIntegerField()
    committed_amount = models.BigIntegerField(null=True, blank=True)
    # True when period or unlimited access covered the hold: nothing was reserved.
    unmetered = models.BooleanField(default=False)
    # Units taken from batches for it: `amount` times the credit cost of the product(s) that
    # paid; after a commit, what was kept.
    credits = models.BigIntegerField(default=0)
    status = models.CharField(max_length=16, choices=HoldStatus.choices, default=HoldStatus.ACTIVE)
    expires_at = models.DateTimeField()
    usage = models.ForeignKey(
        Usage, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["expires_at"], name="hold_active_expiry_idx", condition=Q(status="active")
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gte=1), name="hold_amount_positive"),
        ]


class Direction(models.TextChoices):
    CREDIT = "credit", "credit"
    DEBIT = "debit", "debit"


class LedgerEntry(models.Model):
    """An immutable credit or debit of units against a batch (the database refuses changes)."""

    id = models.BigAutoField(primary_key=True)
    batch = models.ForeignKey(QuotaBatch, on_delete=models.PROTECT, related_name="entries")
    direction = models.CharField(max_length=6, choices=Direction.choices)
    amount = models.BigIntegerField()
    action_type = models.CharField(max_length=64)
    action_id = models.CharField(max_length=255, blank=True, default="")
    actor = models.CharField(max_length=100, blank=True, default="")
    usage = models.ForeignKey(
        Usage, null=True, blank=True, on_delete=models.PROTECT, related_name="entries"
    )
    hold = models.ForeignKey(
        Hold, null=True, blank=True, on_delete=models.PROTECT, related_name="entries"
    )
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["batch", "id"], name="ledger_batch_idx")]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="ledger_amount_positive"),
            models.CheckConstraint(
                condition=Q(direction__in=["credit", "debit"]), name="ledger_direction_valid"
            ),
        ]


class TrialHistory(models.Model):
    """HMAC of one identity that has taken a trial in this tenant (never the identity itself)."""

    id = models.BigAutoField(primary_key=True)
    identity_hash = models.CharField(max_length=64, unique=True)
    grant = models.ForeignKey(
        Grant, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # A plan's trial: the subscription that started with it.
    subscription = models.ForeignKey(
        "Subscription", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)


class IdempotencyRecord(models.Model):
    """The first answer to a request sent with an Idempotency-Key, replayed byte for byte."""

    id = models.BigAutoField(primary_key=True)
    key = models.CharField(max_length=255, unique=True)
    request_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField(null=True)
    content_type = models.CharField(max_length=100, blank=True, default="")
    body = models.BinaryField(null=True)  # encrypted (it can hold a new key or signing secret)
    # The customers the stored answer names, so erasing a customer can redact it.
    # Nullable, so code that predates the column keeps inserting while tenants migrate.
    customer_ids = ArrayField(models.CharField(max_length=64), null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["created_at"], name="idempotency_created_idx"),
            GinIndex(fields=["customer_ids"], name="idempotency_customers_idx"),
        ]


class OrderStatus(models.TextChoices):
    PENDING = "pending", "pending"
    PAID = "paid", "paid"
    CANCELLED = "cancelled", "cancelled"
    REFUNDED = "refunded", "refunded"


class Order(models.Model):
    """A purchase; items keep a snapshot of the offers as they were when it was created."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="orders")
    status = models.CharField(
        max_length=16, choices=OrderStatus.choices, default=OrderStatus.PENDING
    )
    total = models.DecimalField(max_digits=24, decimal_places=4)
    currency = models.CharField(max_length=64)
    # NULL (not "") until paid, so the partial unique constraint ignores unpaid orders.
    payment_id = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    payment_method = models.CharField(max_length=64, blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)
    reason = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    refunded_at = models.DateTimeField(null=True, blank=True)
    # A renewal order pays for billing period `period_number` of this subscription.
    subscription = models.ForeignKey(
        "Subscription", null=True, blank=True, on_delete=models.PROTECT, related_name="orders"
    )
    period_number = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["customer", "created_at"], name="order_customer_idx"),
            # The console's orders list: newest first, and newest first of one status.
            models.Index(fields=["-created_at", "-id"], name="order_recent_idx"),
            models.Index(fields=["status", "-created_at", "-id"], name="order_status_recent_idx"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["subscription", "period_number"],
                condition=Q(status="pending") | Q(status="paid"),
                name="order_one_renewal_per_period",
            ),
            models.CheckConstraint(
                condition=Q(subscription__isnull=True, period_number__isnull=True)
                | Q(subscription__isnull=False, period_number__gte=1),
                name="order_renewal_shape",
            ),
            models.UniqueConstraint(
                fields=["payment_id"],
                condition=Q(payment_id__isnull=False),
                name="order_payment_id_unique",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "paid", "cancelled", "refunded"]),
                name="order_status_valid",
            ),
        ]


class OrderItem(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="items")
    sku = models.CharField(max_length=64)
    name = models.CharField(max_length=200)
    quantity = models.PositiveIntegerField()
    unit_price = models.DecimalField(max_digits=20, decimal_places=4)
    # The offer's items when the order was created: product id, key, type, quantity, period.
    snapshot = models.JSONField(default=list)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ("position", "id")


class Referral(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    referrer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="referrals")
    referee = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="referred_by")
    metadata = models.JSONField(default=dict, blank=True)
    rewarded_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["referee"], name="referral_one_referrer"),
            models.CheckConstraint(
                condition=~Q(referrer=models.F("referee")), name="referral_not_self"
            ),
        ]


class SubscriptionStatus(models.TextChoices):
    TRIALING = "trialing", "trialing"
    ACTIVE = "active", "active"
    PAST_DUE = "past_due", "past_due"
    PAUSED = "paused", "paused"
    CANCELLED = "cancelled", "cancelled"
    EXPIRED = "expired", "expired"


LIVE_SUBSCRIPTION_STATUSES = ("trialing", "active", "past_due", "paused")


class Subscription(models.Model):
    """A customer's subscription to one version of a plan.

    `current_period_start`/`_end` is the billing period (or the trial) the subscription is in;
    `covered_until` is how far its rights are granted: the end of the last period that was paid
    for, given free, or trialled. Allowance periods are anchored at `anchored_at`.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="subscriptions")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="subscriptions")
    version = models.ForeignKey(
        PlanVersion, on_delete=models.PROTECT, related_name="subscriptions"
    )
    # A change of plan that takes effect when the current period ends (a downgrade).
    scheduled_version = models.ForeignKey(
        PlanVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    status = models.CharField(max_length=16, choices=SubscriptionStatus.choices)
    # Allowance periods are counted from here: period `allowance_base` starts at this instant,
    # the next ones at calendar steps from it. A trial's allowances end with the trial
    # (`allowance_until`); the paid periods after it, and a subscription paid again after it
    # lapsed, begin a new run of allowance periods aligned with their billing periods.
    anchored_at = models.DateTimeField()
    allowance_base = models.PositiveIntegerField(default=0)
    allowance_until = models.DateTimeField(null=True, blank=True)
    # Runs of one entitlement's allowance periods that differ from the above (after a pause):
    # {entitlement id: [anchor (ISO 8601), index of the period that starts there]}.
    allowance_runs = models.JSONField(default=dict, blank=True)
    # Since when a `paused` subscription is paused.
    paused_at = models.DateTimeField(null=True, blank=True)
    # Billing periods are counted from here: period `anchor_period` starts at this instant (the
    # first period after any trial, or the first one paid after a lapse), so a monthly plan
    # started on Jan 31 renews on Feb 28/29, Mar 31, Apr 30, ...
    billing_anchor = models.DateTimeField()
    anchor_period = models.PositiveIntegerField(default=1)
    period_number = models.PositiveIntegerField(default=0)  # 0 during a trial
    current_period_start = models.DateTimeField()
    current_period_end = models.DateTimeField()
    covered_until = models.DateTimeField()
    # The number of the billing period that ends at `covered_until`.
    covered_period = models.PositiveIntegerField(default=0)
    # The last billing period whose renewal was announced (`subscription.renewal_due`).
    renewal_notified_period = models.PositiveIntegerField(default=0)
    trial_end = models.DateTimeField(null=True, blank=True)
    cancel_at_period_end = models.BooleanField(default=False)
    ended_at = models.DateTimeField(null=True, blank=True)
    # When the sweep next has work for it: an allowance period to write, or the period's end.
    next_due_at = models.DateTimeField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["next_due_at"], name="subscription_due_idx",
                condition=Q(next_due_at__isnull=False),
            ),
            models.Index(fields=["customer", "created_at"], name="subscription_customer_idx"),
            # The console's overview: subscriptions counted by status from the index alone.
            models.Index(fields=["status"], name="subscription_status_idx"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["customer", "plan"],
                # Equalities, not IN: a schema cloned from the template re-creates the index
                # from its definition, and an IN list does not read back the same.
                condition=(
                    Q(status="trialing") | Q(status="active") | Q(status="past_due")
                    | Q(status="paused")
                ),
                name="subscription_one_live_per_plan",
            ),
            models.CheckConstraint(
                condition=Q(
                    status__in=["trialing", "active", "past_due", "paused", "cancelled",
                                "expired"]
                ),
                name="subscription_status_valid",
            ),
        ]


class SubscriptionGrant(models.Model):
    """One batch a subscription granted, written once: an allowance entitlement's reset period,
    or an access entitlement's billing period (`period_index` counts the entitlement's periods).

    For an allowance, `rolled_over` records that the period's unused units (capped) went on to
    the next period, in `rollover_batch`.
    """

    id = models.BigAutoField(primary_key=True)
    subscription = models.ForeignKey(
        Subscription, on_delete=models.PROTECT, related_name="grants"
    )
    entitlement = models.ForeignKey(
        PlanEntitlement, on_delete=models.PROTECT, related_name="subscription_grants"
    )
    period_index = models.PositiveIntegerField()
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    # None for a period that gives nothing: what an immediate plan change leaves of an
    # allowance already used up.
    batch = models.OneToOneField(
        QuotaBatch, null=True, blank=True, on_delete=models.PROTECT,
        related_name="subscription_grant",
    )
    rollover_batch = models.OneToOneField(
        QuotaBatch, null=True, blank=True, on_delete=models.PROTECT, related_name="rolled_into"
    )
    rolled_over = models.BooleanField(default=False)

    class Meta:
        ordering = ("subscription_id", "entitlement_id", "period_index")
        constraints = [
            models.UniqueConstraint(
                fields=["subscription", "entitlement", "period_index"],
                name="subscription_grant_once",
            ),
        ]


class ThresholdType(models.TextChoices):
    ABSOLUTE = "absolute", "absolute (units)"
    PERCENT = "percent", "percent (of the period's allowance)"


class AlertRule(models.Model):
    """Levels of a feature's remaining units that send `quota_threshold_reached` when a spend
    takes the balance from above one to at or below it.

    `feature` is a lower-case name or `*` (every feature); with a `plan`, the rule applies only
    to customers with a subscription to it in force, and overrides the general rules.
    `thresholds` is a list of `{"type": "absolute" | "percent", "value": int}`.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    feature = models.CharField(max_length=64)
    plan = models.ForeignKey(
        Plan, null=True, blank=True, on_delete=models.PROTECT, related_name="alert_rules"
    )
    thresholds = models.JSONField(default=list)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            # One rule per feature and plan, the general rule (no plan) included.
            models.UniqueConstraint(
                fields=["feature", "plan"], nulls_distinct=False, name="alert_rule_unique"
            ),
        ]


class AlertFiring(models.Model):
    """A threshold crossing that was announced: once per customer, rule, feature, threshold and
    allowance period (`period_key`, the period's bounds); '' when the customer has no period,
    where a crossing is announced each time the balance comes down through the threshold."""

    id = models.BigAutoField(primary_key=True)
    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="firings")
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="+")
    feature = models.CharField(max_length=64)
    threshold_type = models.CharField(max_length=16, choices=ThresholdType.choices)
    threshold_value = models.BigIntegerField()
    period_key = models.CharField(max_length=100, blank=True, default="")
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)
    remaining = models.BigIntegerField()
    fired_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=[
                    "rule", "customer", "feature", "threshold_type", "threshold_value",
                    "period_key",
                ],
                name="alert_firing_once",
            ),
        ]
