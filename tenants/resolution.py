"""Resolve an API key to its caller and tenant, cached; invalidate when a key or tenant changes.

Two caches, by lookup id: Redis, shared by every process, so a warm request costs no SQL; and in
front of it a copy in this process kept for `LOCAL_SECONDS`, so most warm requests cost no
network round trip either. Every change that matters (revocation, expiry, suspension, rate
limit, settings) drops this process's copies and moves the shared entries' generations on, at
once and again when its transaction commits: this process sees it on its next request, every
other process once its copy expires (within the one second the API contract allows). The Ninja
auth classes that call `resolve` are in `tenants.auth`.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone

from billing_platform.core import errors
from billing_platform.core.identity import KeyContext, TenantRef
from tenants import keys
from tenants.models import ApiKey, PlatformKey, Tenant, TenantStatus

_NEGATIVE_TTL = 10
LAST_USED_INTERVAL = 60
# How long this process uses its own copy of a resolved key without asking Redis: a change made
# in another process takes effect here within this time.
LOCAL_SECONDS = 1.0
_LOCAL_MAX_ENTRIES = 10_000


def _cache_key(kind: str, lookup_id: str) -> str:
    return f"auth:{kind}:{lookup_id}"


def _generation_key(kind: str, lookup_id: str) -> str:
    """Changes whenever the key or its tenant changes; a cached entry names the one it saw."""
    return f"auth:generation:{kind}:{lookup_id}"


def _epoch(value: Any) -> float | None:
    return value.timestamp() if value is not None else None


def tenant_ref(tenant: Tenant) -> TenantRef:
    return TenantRef(
        id=tenant.pk,
        slug=tenant.slug,
        schema_name=tenant.schema_name,
        status=tenant.status,
        rate_limit=tenant.rate_limit,
        settings=tenant.merged_settings,
    )


# Apps above this one add what a request needs to know of its tenant to the cached entry
# (`TenantRef` fields), loaded with the key: the webhooks app adds the active subscriptions,
# the billing engine the active alert rules of the tenant's schema.
TenantEntryLoader = Callable[[Tenant], Any]
_tenant_entry_loaders: dict[str, TenantEntryLoader] = {}


def register_tenant_entry_field(name: str, loader: TenantEntryLoader) -> None:
    """Cache `loader(tenant)` as the `TenantRef` field `name` of every key's entry.

    `name` must be a field `TenantRef` declares (the request reads it there, typed).
    """
    if name not in {f.name for f in dataclasses.fields(TenantRef)}:
        raise ValueError(f"TenantRef has no field {name!r}")
    _tenant_entry_loaders[name] = loader


def _tenant_entry(tenant: Tenant) -> dict[str, Any]:
    ref = tenant_ref(tenant)
    entry: dict[str, Any] = {
        "id": ref.id,
        "slug": ref.slug,
        "schema_name": ref.schema_name,
        "status": ref.status,
        "rate_limit": ref.rate_limit,
        "settings": ref.settings,
    }
    for name, loader in _tenant_entry_loaders.items():
        entry[name] = loader(tenant)
    return entry


def _load(kind: str, lookup_id: str) -> dict[str, Any] | None:
    row: ApiKey | PlatformKey | None
    if kind == keys.TENANT_PREFIX:
        row = ApiKey.objects.select_related("tenant").filter(lookup_id=lookup_id).first()
    else:
        row = PlatformKey.objects.filter(lookup_id=lookup_id).first()
    if row is None:
        return None
    entry: dict[str, Any] = {
        "kind": kind,
        "key_id": str(row.pk),
        "name": row.name,
        "key_hash": row.key_hash,
        "hash_version": row.hash_version,
        "expires_at": _epoch(row.expires_at),
        "revoked": row.revoked_at is not None,
        "last_used_at": _epoch(row.last_used_at),
        "scopes": list(keys_scopes(row)),
        "tenant": _tenant_entry(row.tenant) if isinstance(row, ApiKey) else None,
    }
    return entry


def keys_scopes(row: ApiKey | PlatformKey) -> list[str]:
    return list(row.scopes) if isinstance(row, ApiKey) else ["platform"]


# Keys this process has recorded a use of, with when: at most one shared-cache call per key
# and minute from each process.
_touched: dict[str, float] = {}


def _touch(entry: dict[str, Any], now: float) -> None:
    """Record last use at most once a minute per key, across all processes.

    Never writes the cached entry back: a request that read it before a revocation must not
    put the old entry in place again.
    """
    key_id = entry["key_id"]
    last = max(entry.get("last_used_at") or 0.0, _touched.get(key_id, 0.0))
    if now - last < LAST_USED_INTERVAL:
        return
    _touched[key_id] = now
    if not cache.add(f"auth:touched:{key_id}", 1, LAST_USED_INTERVAL):
        return
    model = ApiKey if entry["kind"] == keys.TENANT_PREFIX else PlatformKey
    model.objects.filter(pk=key_id).update(last_used_at=timezone.now())


@dataclasses.dataclass(frozen=True)
class _Copy:
    """This process's copy of a resolved key: the cached entry and the caller it stands for."""

    entry: dict[str, Any]
    context: KeyContext
    expires: float  # time.monotonic()


# Copies of found keys only (unknown lookup ids ask Redis every time), so what fills this is
# bounded by the keys that exist; the bound is a backstop.
_copies: dict[tuple[str, str], _Copy] = {}
# Moved on by every invalidation in this process: a lookup that read Redis or the row before an
# invalidation keeps no copy of what it read (another thread may have changed the key meanwhile).
_invalidations = 0
_invalidations_lock = threading.Lock()


def _uses_copies() -> bool:
    """Copies are made and used only outside a transaction.

    Inside one, a lookup reads through to Redis and the row, so it sees what the transaction
    itself changed, and nothing it read there (perhaps uncommitted) outlives a rollback.
    """
    return not connection.in_atomic_block


def _shared_entry(kind: str, lookup_id: str) -> dict[str, Any] | None:
    """The key's entry from Redis if current, else loaded from its row and cached there."""
    cache_key = _cache_key(kind, lookup_id)
    generation_key = _generation_key(kind, lookup_id)
    found = cache.get_many([cache_key, generation_key])  # one round trip
    generation = found.get(generation_key)
    cached = found.get(cache_key)
    if isinstance(cached, dict) and cached.get("generation") == generation:
        entry: dict[str, Any] | None = cached["entry"]
        return entry
    # Stamped with the generation read *before* the row: if the key or tenant changes
    # meanwhile, the invalidation moves the generation on and this entry is never used.
    entry = _load(kind, lookup_id)
    cache.set(
        cache_key,
        {"generation": generation, "entry": entry},
        settings.API_KEY_CACHE_SECONDS if entry is not None else _NEGATIVE_TTL,
    )
    return entry


def _context(kind: str, entry: dict[str, Any]) -> KeyContext:
    return KeyContext(
        kind=kind,
        key_id=entry["key_id"],
        name=entry["name"],
        scopes=frozenset(entry["scopes"]),
        tenant=TenantRef(**entry["tenant"]) if entry["tenant"] is not None else None,
    )


def _lookup(kind: str, lookup_id: str) -> _Copy | None:
    """The key's entry and caller: this process's copy while fresh, else from Redis or the row."""
    use_copies = _uses_copies()
    now = time.monotonic()
    if use_copies:
        copy = _copies.get((kind, lookup_id))
        if copy is not None and copy.expires > now:
            return copy
    invalidations = _invalidations
    entry = _shared_entry(kind, lookup_id)
    if entry is None:
        return None
    copy = _Copy(entry=entry, context=_context(kind, entry), expires=now + LOCAL_SECONDS)
    if use_copies and invalidations == _invalidations:
        if len(_copies) >= _LOCAL_MAX_ENTRIES:
            _copies.clear()
        _copies[(kind, lookup_id)] = copy
    return copy


def resolve(raw: str) -> KeyContext:
    """Authenticate a presented key; raises the 401/403 errors of the API contract."""
    parsed = keys.parse(raw.strip())
    if parsed is None:
        raise errors.NotAuthenticated("The API key is not of the form bk_… or bpk_….")
    found = _lookup(parsed.kind, parsed.lookup_id)
    if found is None:
        raise errors.NotAuthenticated("Unknown API key.")
    entry, context = found.entry, found.context
    if not keys.verify_key(parsed.raw, entry["key_hash"], entry["hash_version"]):
        raise errors.NotAuthenticated("Unknown API key.")
    if entry["revoked"]:
        raise errors.ApiKeyRevoked()
    now = time.time()
    if entry["expires_at"] is not None and entry["expires_at"] <= now:
        raise errors.ApiKeyExpired()
    if context.tenant is not None:
        if context.tenant.status == TenantStatus.SUSPENDED:
            raise errors.TenantSuspended()
        if context.tenant.status != TenantStatus.ACTIVE:
            raise errors.NotAuthenticated("Unknown API key.")
    _touch(entry, now)
    return context


# --- Invalidation: immediately (this process and the others) and again after commit, so a
# reader that loaded the old row before the commit cannot keep it cached.


def _new_generations(generation_keys: list[str]) -> None:
    # Kept far longer than any entry (API_KEY_CACHE_SECONDS), so an entry never outlives the
    # generation it was checked against, and not for ever.
    timeout = max(86_400, 10 * settings.API_KEY_CACHE_SECONDS)
    cache.set_many({key: uuid.uuid4().hex for key in generation_keys}, timeout=timeout)


def _drop_copies(kind: str, lookup_ids: list[str]) -> None:
    global _invalidations
    with _invalidations_lock:
        _invalidations += 1
    for lookup_id in lookup_ids:
        _copies.pop((kind, lookup_id), None)


def _invalidate(kind: str, lookup_ids: list[str]) -> None:
    """Drop this process's copies and move the keys' generations on, now and after commit."""
    if not lookup_ids:
        return
    generation_keys = [_generation_key(kind, lid) for lid in lookup_ids]
    _drop_copies(kind, lookup_ids)
    cache.delete_many([_cache_key(kind, lid) for lid in lookup_ids])
    _new_generations(generation_keys)

    def after_commit() -> None:
        _drop_copies(kind, lookup_ids)
        _new_generations(generation_keys)

    transaction.on_commit(after_commit)


def invalidate_key(key: ApiKey | PlatformKey) -> None:
    kind = keys.TENANT_PREFIX if isinstance(key, ApiKey) else keys.PLATFORM_PREFIX
    _invalidate(kind, [key.lookup_id])


def invalidate_tenant(tenant: Tenant) -> None:
    lookup_ids = ApiKey.objects.filter(tenant=tenant).values_list("lookup_id", flat=True)
    _invalidate(keys.TENANT_PREFIX, list(lookup_ids))
