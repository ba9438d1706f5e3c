"""Public-schema models: tenants, their domains, tenant API keys and platform keys."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

from django.db import models
from django_tenants.models import DomainMixin, TenantMixin

DEFAULT_RATE_LIMIT = "600/m"

DEFAULT_SETTINGS: dict[str, Any] = {
    "low_balance_threshold": 0,
    "idempotency_retention_days": 7,
    "referral_reward_sku": None,
    "referee_reward_sku": None,
    "public_catalog": False,
    # Days a subscription stays `past_due` after its paid period before it expires.
    "subscription_grace_days": 3,
    # Days before a paid period ends that its renewal order is made (`subscription.renewal_due`).
    "subscription_renewal_notice_days": 3,
    # Refuse a referral whose referrer nobody holds (422 `unknown_referrer`) instead of
    # creating that referrer's customer.
    "referral_require_known_referrer": False,
}


def _new_identity_secret() -> str:
    return secrets.token_hex(32)


def _default_settings() -> dict[str, Any]:
    return dict(DEFAULT_SETTINGS)


class TenantStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    SUSPENDED = "suspended", "Suspended"
    # A pre-built schema waiting to be claimed by onboarding; never reachable by a key.
    SPARE = "spare", "Spare (unclaimed)"
    # A schema still being migrated (a spare, or a tenant onboarded when no spare was left):
    # never claimed, swept, verified, exported or migrated by others.
    BUILDING = "building", "Spare (being built)"


class Tenant(TenantMixin):
    """A customer project of the platform: one PostgreSQL schema `t_<slug>`."""

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    status = models.CharField(
        max_length=16, choices=TenantStatus.choices, default=TenantStatus.ACTIVE, db_index=True
    )
    rate_limit = models.CharField(max_length=32, default=DEFAULT_RATE_LIMIT)
    # Keys the HMAC of trial identities, so hashes differ between tenants and cannot be reversed
    # by hashing every phone number.
    identity_secret = models.CharField(max_length=64, default=_new_identity_secret, editable=False)
    settings = models.JSONField(default=_default_settings)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    deletion_requested_at = models.DateTimeField(null=True, blank=True)
    contact_email = models.EmailField(blank=True, default="")
    # When the billing sweep next has work in this schema (null: unknown, sweep it).
    sweep_due_at = models.DateTimeField(null=True, blank=True, db_index=True)

    # Schemas are created explicitly (spare pool, onboarding fallback), never on save() inside a
    # request transaction; see tenants.services.onboarding.
    auto_create_schema = False
    auto_drop_schema = False

    class Meta:
        ordering = ("-created_at", "-id")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=["active", "suspended", "spare", "building"]),
                name="tenant_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.slug

    @property
    def merged_settings(self) -> dict[str, Any]:
        return {**DEFAULT_SETTINGS, **(self.settings or {})}


class Domain(DomainMixin):
    """Required by django-tenants; requests are routed by API key, not by hostname."""


class KeyScope(models.TextChoices):
    BILLING_READ = "billing:read", "billing:read"
    BILLING_WRITE = "billing:write", "billing:write"
    BILLING_GRANT = "billing:grant", "billing:grant"
    ADMIN = "admin", "admin"


ALL_SCOPES: tuple[str, ...] = tuple(scope.value for scope in KeyScope)


class BaseKey(models.Model):
    """A secret shown once; only its keyed hash is stored."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100)
    lookup_id = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    hash_version = models.PositiveSmallIntegerField(editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def prefix(self) -> str:
        raise NotImplementedError


class ApiKey(BaseKey):
    """A tenant's API key: `bk_<lookup id>_<secret>`."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    scopes = models.JSONField(default=list)

    class Meta:
        ordering = ("-created_at",)
        verbose_name = "API key"

    @property
    def prefix(self) -> str:
        return f"bk_{self.lookup_id}"


class PlatformKey(BaseKey):
    """A platform operator's key for `/platform/*`: `bpk_<lookup id>_<secret>`."""

    class Meta:
        ordering = ("-created_at",)
        verbose_name = "platform key"

    @property
    def prefix(self) -> str:
        return f"bpk_{self.lookup_id}"


class SchemaMigrationRecord(models.Model):
    """A schema found to hold every migration of a code version, by the schema's oid.

    Written by `tenants.schema_migrations` after it checked the schema itself, read so that the
    next check costs one query on the public schema instead of one per schema (on Citus, a tenant
    schema's `django_migrations` lives on a worker). The oid, not the name: a renamed schema
    (a spare claimed by onboarding) keeps its record, and one dropped and created again under the
    same name does not inherit it.
    """

    schema_oid = models.BigIntegerField(primary_key=True)
    graph_digest = models.CharField(max_length=16)
    verified_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"schema {self.schema_oid}: {self.graph_digest}"
