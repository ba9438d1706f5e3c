"""Request and response shapes of the platform and key endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from ninja import Field

from billing_platform.core.schema_types import Schema, UtcDateTime

Scope = Literal["billing:read", "billing:write", "billing:grant", "admin"]


class TenantOut(Schema):
    slug: str
    name: str
    schema_name: str
    status: Literal["active", "suspended"]
    rate_limit: str
    created_at: datetime


class TenantCreateIn(Schema):
    name: str = Field(..., min_length=1, max_length=200)
    slug: str = Field(..., min_length=1, max_length=64)
    rate_limit: str | None = Field(None, description="'N/s', 'N/m', 'N/h', 'N/d' or '0'.")
    demo_catalog: bool = False


class TenantCreatedOut(Schema):
    tenant: TenantOut
    api_key: str = Field(..., description="The tenant's first key (all scopes); shown once.")


class TenantPatchIn(Schema):
    name: str | None = Field(None, min_length=1, max_length=200)
    status: Literal["active", "suspended"] | None = None
    rate_limit: str | None = None


class TenantPage(Schema):
    items: list[TenantOut]
    next_cursor: str | None


class ApiKeyOut(Schema):
    id: str
    name: str
    prefix: str
    scopes: list[Scope]
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreatedOut(ApiKeyOut):
    key: str = Field(..., description="The full secret; shown only in this response.")


class ApiKeyCreateIn(Schema):
    name: str = Field(..., min_length=1, max_length=100)
    scopes: list[Scope] | None = Field(None, description="Defaults to all four scopes.")
    expires_at: UtcDateTime | None = None


class PlatformKeyCreateIn(Schema):
    name: str = Field(..., min_length=1, max_length=100)
    scopes: list[Scope] | None = None


class ApiKeyPage(Schema):
    items: list[ApiKeyOut]
    next_cursor: str | None
