"""The shared key cache never outlives a change: a lookup racing a revocation cannot re-cache it.

Real threads, real PostgreSQL and Redis; a barrier around the lookup's database read holds the
reader between reading the old row and caching it, which is where a late write used to land.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connections

from billing_platform.core import errors
from tenants import resolution
from tenants.models import ApiKey, Tenant
from tenants.services import api_key_create, api_key_revoke, tenant_update
from tests.support.tenants import TenantFixture


def test_the_module_runs_on_the_test_database(db: None) -> None:
    """Makes pytest-django create the test database when this module runs alone."""
    from django.db import connection

    assert str(connection.settings_dict["NAME"]).startswith("test_")


@pytest.fixture
def acme_committed(
    committed_tenants: dict[str, TenantFixture], committed: None
) -> TenantFixture:
    """The session's acme tenant, outside any test transaction (changes really commit)."""
    return committed_tenants["acme"]


@pytest.fixture
def committed_key(acme_committed: TenantFixture) -> Iterator[tuple[ApiKey, str]]:
    key, raw = api_key_create(tenant=acme_committed.tenant, name="cache-race")
    yield key, raw
    ApiKey.objects.filter(pk=key.pk).delete()


def _hold_load_until(
    monkeypatch: pytest.MonkeyPatch, loaded: threading.Event, go: threading.Event
) -> None:
    real_load = resolution._load

    def load(kind: str, lookup_id: str) -> dict[str, Any] | None:
        entry = real_load(kind, lookup_id)
        loaded.set()
        assert go.wait(10)
        return entry

    monkeypatch.setattr(resolution, "_load", load)


def _resolve_in_thread(raw: str, outcome: list[Any]) -> threading.Thread:
    def run() -> None:
        try:
            outcome.append(resolution.resolve(raw))
        except errors.BillingError as exc:
            outcome.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_lookup_racing_a_revocation_does_not_re_cache_the_key(
    committed_key: tuple[ApiKey, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    key, raw = committed_key
    loaded, go = threading.Event(), threading.Event()
    _hold_load_until(monkeypatch, loaded, go)
    outcome: list[Any] = []

    # given: a lookup that has read the key's row (still valid) but not yet cached it
    reader = _resolve_in_thread(raw, outcome)
    assert loaded.wait(10)

    # when: the key is revoked and committed, then the lookup caches what it read
    api_key_revoke(key=key)
    go.set()
    reader.join(10)
    assert isinstance(outcome[0], resolution.KeyContext)  # it was valid when it was read
    monkeypatch.undo()

    # then: the next lookup sees the revocation, not the entry cached late
    with pytest.raises(errors.ApiKeyRevoked):
        resolution.resolve(raw)


def test_lookup_racing_a_suspension_does_not_re_cache_the_tenant(
    acme_committed: TenantFixture,
    committed_key: tuple[ApiKey, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _key, raw = committed_key
    loaded, go = threading.Event(), threading.Event()
    _hold_load_until(monkeypatch, loaded, go)
    outcome: list[Any] = []
    reader = _resolve_in_thread(raw, outcome)
    assert loaded.wait(10)
    tenant = Tenant.objects.get(pk=acme_committed.tenant.pk)
    tenant_update(tenant=tenant, status="suspended")
    try:
        go.set()
        reader.join(10)
        monkeypatch.undo()
        with pytest.raises(errors.TenantSuspended):
            resolution.resolve(raw)
    finally:
        tenant_update(tenant=Tenant.objects.get(pk=acme_committed.tenant.pk), status="active")
    assert resolution.resolve(raw).tenant is not None


def test_warm_lookups_record_last_use_without_rewriting_the_entry(
    committed_key: tuple[ApiKey, str]
) -> None:
    key, raw = committed_key
    resolution.resolve(raw)
    key.refresh_from_db()
    assert key.last_used_at is not None
    api_key_revoke(key=key)
    # Later lookups in this process find the revocation at once, whatever they touched before.
    for _ in range(3):
        with pytest.raises(errors.ApiKeyRevoked):
            resolution.resolve(raw)
