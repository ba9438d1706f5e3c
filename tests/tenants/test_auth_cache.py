"""The key caches never outlive a change.

The shared cache (Redis): a lookup racing a revocation cannot re-cache it. Real threads, real
PostgreSQL and Redis; a barrier around the lookup's database read holds the reader between reading
the old row and caching it, which is where a late write used to land.

This process's copies: a warm lookup asks neither Redis nor the database; a change made here is
seen at once, a change made by another process (a real one) within `LOCAL_SECONDS`.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from billing_platform.core import errors
from tenants import resolution
from tenants.models import ApiKey, Tenant
from tenants.services import api_key_create, api_key_revoke, tenant_update
from tests.support import ROOT
from tests.support.processes import production_server, server_env
from tests.support.tenants import TenantFixture, fresh_tenant


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


# --- This process's copies


class _CountingCache:
    """Stands in for the shared cache: counts the lookups' round trips, forwards them."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        self.calls += 1
        return getattr(self.real, name)


@pytest.fixture
def shared_cache(monkeypatch: pytest.MonkeyPatch) -> _CountingCache:
    counting = _CountingCache(resolution.cache)
    monkeypatch.setattr(resolution, "cache", counting)
    return counting


def test_a_warm_lookup_asks_neither_redis_nor_the_database(
    committed_key: tuple[ApiKey, str], shared_cache: _CountingCache
) -> None:
    _key, raw = committed_key
    # given: one lookup (which also records the key's first use)
    first = resolution.resolve(raw)
    calls = shared_cache.calls

    # when
    with CaptureQueriesContext(connection) as queries:
        again = [resolution.resolve(raw) for _ in range(5)]

    # then
    assert shared_cache.calls == calls
    assert queries.captured_queries == []
    assert all(context == first for context in again)


def test_a_copy_is_used_for_local_seconds_then_redis_is_asked_again(
    committed_key: tuple[ApiKey, str],
    shared_cache: _CountingCache,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _key, raw = committed_key
    now = time.monotonic()
    monkeypatch.setattr(
        resolution, "time", SimpleNamespace(time=time.time, monotonic=lambda: now)
    )
    resolution.resolve(raw)
    calls = shared_cache.calls

    now += resolution.LOCAL_SECONDS - 0.01
    resolution.resolve(raw)
    assert shared_cache.calls == calls

    now += 0.02
    resolution.resolve(raw)
    assert shared_cache.calls == calls + 1  # one round trip: the entry and its generation


def test_lookups_inside_a_transaction_neither_use_nor_make_copies(
    committed_key: tuple[ApiKey, str], shared_cache: _CountingCache
) -> None:
    _key, raw = committed_key
    resolution.resolve(raw)
    calls = shared_cache.calls
    with transaction.atomic():
        resolution.resolve(raw)
        assert shared_cache.calls == calls + 1
        resolution.resolve(raw)
        assert shared_cache.calls == calls + 2


def test_a_revocation_in_this_process_is_refused_at_once(
    committed_key: tuple[ApiKey, str]
) -> None:
    key, raw = committed_key
    resolution.resolve(raw)
    api_key_revoke(key=key)
    with pytest.raises(errors.ApiKeyRevoked):
        resolution.resolve(raw)


def test_a_suspension_in_this_process_is_refused_at_once(
    acme_committed: TenantFixture, committed_key: tuple[ApiKey, str]
) -> None:
    _key, raw = committed_key
    resolution.resolve(raw)
    tenant_update(tenant=Tenant.objects.get(pk=acme_committed.tenant.pk), status="suspended")
    try:
        with pytest.raises(errors.TenantSuspended):
            resolution.resolve(raw)
    finally:
        tenant_update(tenant=Tenant.objects.get(pk=acme_committed.tenant.pk), status="active")
    assert resolution.resolve(raw).tenant is not None


_REVOKE_ON_CUE = textwrap.dedent("""
    import sys
    import django
    django.setup()
    from tenants.models import ApiKey
    from tenants.services import api_key_revoke
    print("ready", flush=True)
    sys.stdin.readline()
    api_key_revoke(key=ApiKey.objects.get(pk=sys.argv[1]))
    print("revoked", flush=True)
""")


def test_a_revocation_by_another_process_reaches_this_one_within_local_seconds(
    committed_key: tuple[ApiKey, str]
) -> None:
    key, raw = committed_key
    other = subprocess.Popen(
        [sys.executable, "-c", _REVOKE_ON_CUE, str(key.pk)], cwd=ROOT, env=server_env(),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert other.stdout is not None and other.stdin is not None
        assert other.stdout.readline().strip() == "ready"
        # given: this process holds a fresh copy of the key
        resolution.resolve(raw)
        copied = time.monotonic()

        # when: another process revokes it (committed, Redis told)
        other.stdin.write("go\n")
        other.stdin.flush()
        assert other.stdout.readline().strip() == "revoked"

        # then: this process's copy may serve until it expires, never longer
        if time.monotonic() - copied < resolution.LOCAL_SECONDS:
            resolution.resolve(raw)  # still the copy: no round trip told this process
        time.sleep(max(0.0, copied + resolution.LOCAL_SECONDS - time.monotonic()))
        with pytest.raises(errors.ApiKeyRevoked):
            resolution.resolve(raw)
    finally:
        other.kill()
        other.wait(10)


@pytest.mark.e2e
def test_the_server_refuses_a_key_revoked_elsewhere_within_one_second(committed: None) -> None:
    with fresh_tenant("key-copies") as tenant, production_server(workers=1) as server:
        headers = {"X-API-Key": tenant.key}
        url = f"{server.base_url}/api/v1/keys"
        assert httpx.get(url, headers=headers, timeout=10).status_code == 200

        api_key_revoke(key=tenant.key_row)
        revoked = time.monotonic()
        while True:
            response = httpx.get(url, headers=headers, timeout=10)
            if response.status_code != 200:
                break
            assert time.monotonic() - revoked < resolution.LOCAL_SECONDS + 0.5
            time.sleep(0.05)
        assert response.status_code == 401
        assert response.json()["code"] == "api_key_revoked"
