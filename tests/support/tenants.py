"""Tenants for the tests: the session's tenants' shape, fresh committed tenants, API keys.

Tests that commit (threads, servers, other processes) make their own tenants and drop them again:
pytest-django's flush after a transactional test would erase the session's tenants too.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from django.db import connection

from tenants.models import ApiKey, Tenant
from tenants.services import api_key_create, api_key_revoke, tenant_onboard


@dataclass
class TenantFixture:
    tenant: Tenant
    key: str
    key_row: ApiKey


def make_key(tenant: Tenant, **kwargs: Any) -> tuple[ApiKey, str]:
    return api_key_create(tenant=tenant, name=kwargs.pop("name", "test"), **kwargs)


def require_test_database() -> None:
    """Fail unless this process uses the test database: the caller commits."""
    if not str(connection.settings_dict["NAME"]).startswith("test_"):
        pytest.fail(
            "the test database is not set up: this commits, so it must not run here; run the "
            "module with the whole suite or give it a test that uses `db`"
        )


def drop_tenants(tenants: Iterable[Tenant]) -> None:
    """Revoke the keys of committed tenants and drop them, schemas included."""
    connection.set_schema_to_public()
    for tenant in tenants:
        for key in ApiKey.objects.filter(tenant=tenant):
            api_key_revoke(key=key)
        tenant.delete(force_drop=True)


@contextmanager
def fresh_tenant(
    prefix: str, *, name: str | None = None, rate_limit: str | None = None
) -> Iterator[TenantFixture]:
    """A committed tenant with the slug `<prefix>-<random>`; dropped afterwards (if still there)."""
    require_test_database()
    slug = f"{prefix}-{secrets.token_hex(4)}"
    tenant, key_row, raw = tenant_onboard(name=name or slug, slug=slug, rate_limit=rate_limit)
    try:
        yield TenantFixture(tenant=tenant, key=raw, key_row=key_row)
    finally:
        drop_tenants(Tenant.objects.filter(pk=tenant.pk))
