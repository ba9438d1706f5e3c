"""Write services of the public schema: onboarding, the spare-schema pool, keys, tenant changes.

Onboarding claims a pre-built spare schema (a real `Tenant` row with status `spare`, kept current
by `migrate_schemas` like any tenant) and renames it to `t_<slug>` inside one short transaction;
the claim NOTIFYs `SPARE_CLAIMED_CHANNEL`, which wakes the worker to refill the pool at once.
Only when no spare is left does it build a schema: a clone of the template schema
(`tenants/schema_clone.py`), or by migrations when there is no current template or the clone
fails (logged), outside the
claim's transaction, because django-tenants commits and reconnects while it migrates.

A schema being built has a `building` row whose builder holds that row's advisory lock (and the
pool's, for spares) on a connection of its own, which the migrations' reconnects leave alone: no
reader (sweep, verify, export, `migrate_schemas`) visits it, no claim takes it, and a refill drops
it only once its lock is free, i.e. its builder is gone.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import time
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import (
    DEFAULT_DB_ALIAS,
    DatabaseError,
    IntegrityError,
    ProgrammingError,
    connection,
    connections,
    transaction,
)
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone
from django_tenants.utils import schema_exists

from billing_platform.core import errors, metrics
from billing_platform.core.db import sqlstate
from billing_platform.core.patches import save_patch
from tenants import keys, resolution, selectors
from tenants.models import (
    ALL_SCOPES,
    ApiKey,
    PlatformKey,
    Tenant,
    TenantStatus,
)
from tenants.schema_clone import (
    TemplateUnavailable,
    schema_clone,
    template_migrate,
    template_schema,
)
from tenants.schema_migrations import missing_migrations

logger = logging.getLogger("billable.tenants")

SLUG_RE = re.compile(r"^[a-z][a-z0-9-]{2,39}$")
RESERVED_SLUGS = frozenset({"public", "www", "admin", "api", "platform", "static", "template"})
RATE_LIMIT_RE = re.compile(r"^(0|[1-9][0-9]{0,8}/[smhd])$")
MAX_KEYS_PER_TENANT = 50
# pg_advisory_lock key that serialises spare-pool refills across processes ("BILLSPAR").
_SPARE_LOCK_ID = 0x42494C4C53504152
DUPLICATE_SCHEMA = "42P06"
# NOTIFYed (on commit) when a spare is claimed or the pool was empty: `run_worker` LISTENs.
SPARE_CLAIMED_CHANNEL = "billable_spare_claimed"


def schema_name_for(slug: str) -> str:
    return "t_" + slug.replace("-", "_")


def validate_slug(slug: str) -> str:
    if not SLUG_RE.fullmatch(slug):
        raise errors.InvalidSlug(
            "A slug is 3–40 characters of a-z, 0-9 and '-', starting with a letter."
        )
    if slug in RESERVED_SLUGS:
        raise errors.InvalidSlug(f"'{slug}' is reserved.")
    return slug


def validate_rate_limit(rate_limit: str) -> str:
    if not RATE_LIMIT_RE.fullmatch(rate_limit):
        raise errors.ValidationFailed(
            "rate_limit is 'N/s', 'N/m', 'N/h', 'N/d' or '0' (unlimited).",
            field="rate_limit",
            msg="invalid rate limit",
        )
    return rate_limit


def validate_scopes(scopes: Sequence[str] | None) -> list[str]:
    if scopes is None:
        return list(ALL_SCOPES)
    unknown = sorted(set(scopes) - set(ALL_SCOPES))
    if unknown or not scopes:
        raise errors.ValidationFailed(
            f"Scopes are a non-empty subset of {', '.join(ALL_SCOPES)}.",
            field="scopes",
            msg=f"unknown scopes: {unknown}",
        )
    return [scope for scope in ALL_SCOPES if scope in scopes]


def _check_scopes_held(scopes: Sequence[str], held: Collection[str]) -> None:
    """A key hands out only scopes it holds: scopes are independent, `admin` included."""
    missing = [scope for scope in scopes if scope not in held]
    if missing:
        raise errors.InsufficientScope(
            "A key can only create keys with scopes it holds; this one lacks "
            f"{', '.join(missing)}.",
            required_scope=missing[0],
            missing_scopes=missing,
        )


# --- Keys.


def api_key_create(
    *,
    tenant: Tenant,
    name: str,
    scopes: Sequence[str] | None = None,
    expires_at: datetime | None = None,
    issuer_scopes: Collection[str] | None = None,
    issuer_expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """Create a tenant key; the raw key is returned once and never stored.

    `issuer_scopes` and `issuer_expires_at` are those of the tenant key asking (`POST /keys`):
    the new key may hold only those scopes, else `InsufficientScope`, and may not outlive an
    expiring issuer (without `expires_at` it expires with the issuer; a later one is 422). `None`
    scopes are an operator's (platform key, command, admin).
    """
    scopes = validate_scopes(scopes)
    if issuer_scopes is not None:
        _check_scopes_held(scopes, issuer_scopes)
    if issuer_expires_at is not None:
        if expires_at is None:
            expires_at = issuer_expires_at
        elif expires_at > issuer_expires_at:
            raise errors.ValidationFailed(
                "A key may not outlive the key that creates it: expires_at is at most "
                f"{issuer_expires_at.isoformat()}.",
                field="expires_at",
                msg="after the creating key's expiry",
            )
    with transaction.atomic():
        # Lock the tenant row so concurrent creations cannot pass the limit together.
        Tenant.objects.select_for_update().filter(pk=tenant.pk).exists()
        active = (
            ApiKey.objects.filter(tenant=tenant, revoked_at__isnull=True)
            .exclude(expires_at__lte=timezone.now())
            .count()
        )
        if active >= MAX_KEYS_PER_TENANT:
            raise errors.TooManyKeys(f"A tenant may hold {MAX_KEYS_PER_TENANT} active keys.")
        new = keys.generate(keys.TENANT_PREFIX)
        key = ApiKey.objects.create(
            tenant=tenant,
            name=name,
            lookup_id=new.lookup_id,
            key_hash=new.key_hash,
            hash_version=new.hash_version,
            scopes=scopes,
            expires_at=expires_at,
        )
        resolution.invalidate_key(key)
    return key, new.raw


def api_key_revoke(*, key: ApiKey) -> ApiKey:
    """Revoke a key (idempotent); every process refuses it within a second."""
    with transaction.atomic():
        ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        key.refresh_from_db()
        resolution.invalidate_key(key)
    return key


def platform_key_create(
    *, name: str, expires_at: datetime | None = None
) -> tuple[PlatformKey, str]:
    new = keys.generate(keys.PLATFORM_PREFIX)
    with transaction.atomic():
        key = PlatformKey.objects.create(
            name=name,
            lookup_id=new.lookup_id,
            key_hash=new.key_hash,
            hash_version=new.hash_version,
            expires_at=expires_at,
        )
        resolution.invalidate_key(key)
    return key, new.raw


def platform_key_revoke(*, key: PlatformKey) -> PlatformKey:
    with transaction.atomic():
        PlatformKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        key.refresh_from_db()
        resolution.invalidate_key(key)
    return key


# --- Onboarding.


SPARE_CANDIDATES = 5


def _claim_spare(*, slug: str, name: str, rate_limit: str) -> Tenant | None:
    """Inside the caller's transaction: take a spare schema and make it this tenant's.

    Only a finished spare (not one still `building`) whose schema has every migration of this
    code: one built by older code during a release is left for `migrate_schemas`.
    """
    candidates = list(
        Tenant.objects.select_for_update(skip_locked=True)
        .filter(status=TenantStatus.SPARE)
        .order_by("id")[:SPARE_CANDIDATES]
    )
    behind = missing_migrations([c.schema_name for c in candidates]) if candidates else {}
    spare = next((c for c in candidates if not behind.get(c.schema_name)), None)
    if spare is None:
        return None
    new_schema = schema_name_for(slug)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                f"ALTER SCHEMA {connection.ops.quote_name(spare.schema_name)} "
                f"RENAME TO {connection.ops.quote_name(new_schema)}"
            )
    except ProgrammingError as exc:
        # A concurrent onboarding of this slug committed its schema first.
        if sqlstate(exc) == DUPLICATE_SCHEMA:
            raise errors.SlugTaken() from exc
        raise
    spare.slug = slug
    spare.name = name
    spare.schema_name = new_schema
    spare.status = TenantStatus.ACTIVE
    spare.rate_limit = rate_limit
    spare.identity_secret = secrets.token_hex(32)
    spare.created_at = timezone.now()
    spare.save()
    _pool_notify()
    return spare


def _pool_notify() -> None:
    """Wake the worker to refill the pool when the current transaction commits."""
    with connection.cursor() as cursor:
        cursor.execute(f"NOTIFY {SPARE_CLAIMED_CHANNEL}")


@contextmanager
def _lock_connection() -> Iterator[BaseDatabaseWrapper]:
    """A database connection of its own, for advisory locks held while schemas are built.

    django-tenants commits and closes the default connection after migrating a schema, which
    would release a session lock taken there (and with it the pool's lock, mid-refill).
    """
    holder = connections.create_connection(DEFAULT_DB_ALIAS)
    try:
        yield holder
    finally:
        holder.close()


def _advisory(holder: BaseDatabaseWrapper, function: str, lock_id: int) -> bool:
    """Call an advisory-lock function on `holder`; False when a try or an unlock did not hold."""
    with holder.cursor() as cursor:
        cursor.execute(f"SELECT {function}(%s)", [lock_id])
        row = cursor.fetchone()
    return bool(row and row[0] is not False)


def _build_lock_id(tenant_id: int) -> int:
    """The advisory lock the builder of a `building` row holds until the row is built or gone."""
    digest = hashlib.blake2b(f"tenant-build:{tenant_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _schema_build(holder: BaseDatabaseWrapper, *, status: str, **fields: Any) -> Tenant:
    """Create a `building` tenant row, build its schema by migrations, then give it `status`.

    Must run outside any transaction. The row's build lock is held on `holder` from before the
    row is visible until it has its final status, so a refill never takes a live build for one
    a crash left. If the build fails, the row and the schema go again; a schema of that name that
    already existed is someone else's and is left alone (SlugTaken).
    """
    if not transaction.get_autocommit():
        raise RuntimeError("A tenant schema cannot be built inside a transaction.")
    try:
        with transaction.atomic():
            tenant = Tenant.objects.create(status=TenantStatus.BUILDING, **fields)
            _advisory(holder, "pg_advisory_lock", _build_lock_id(tenant.pk))
    except (IntegrityError, ValidationError) as exc:
        # The slug or schema name is taken (django-tenants checks the name before the insert).
        raise errors.SlugTaken() from exc
    try:
        try:
            _schema_create(tenant)
        except Exception as exc:
            if sqlstate(exc) == DUPLICATE_SCHEMA:
                Tenant.objects.filter(pk=tenant.pk).delete()
                raise errors.SlugTaken() from exc
            for row in Tenant.objects.filter(pk=tenant.pk, status=TenantStatus.BUILDING):
                row.delete(force_drop=True)
            raise
        Tenant.objects.filter(pk=tenant.pk).update(status=status)
        tenant.status = status
    finally:
        _advisory(holder, "pg_advisory_unlock", _build_lock_id(tenant.pk))
    return tenant


def _schema_create(tenant: Tenant) -> str:
    """Create the schema of a `building` row: a clone of the template (one transaction, ~0.1 s),
    else by migrations (~0.5–1 s) when there is no current template or the clone fails for any
    reason but a taken name; returns which. Must run outside any transaction."""
    if template_schema() is not None:
        try:
            with transaction.atomic():
                schema_clone(target=tenant.schema_name)
            return "clone"
        except TemplateUnavailable as exc:
            logger.warning("building %s by migrations: %s", tenant.schema_name, exc)
        except DatabaseError as exc:
            # The clone's own transaction is rolled back, nothing of it is left: any failure of
            # it but a taken name (the caller's SlugTaken) falls back to the migrations.
            if sqlstate(exc) == DUPLICATE_SCHEMA:
                raise
            logger.exception(
                "cloning the template failed, building %s by migrations", tenant.schema_name
            )
    tenant.create_schema(check_if_exists=False, verbosity=0)
    return "migrations"


def _build_schema(*, slug: str, name: str, rate_limit: str) -> Tenant:
    """Slow path: clone (or migrate) a fresh schema. Must run outside any transaction."""
    with _lock_connection() as holder:
        return _schema_build(
            holder,
            status=TenantStatus.ACTIVE,
            slug=slug,
            name=name,
            schema_name=schema_name_for(slug),
            rate_limit=rate_limit,
        )


def tenant_onboard(
    *,
    name: str,
    slug: str,
    rate_limit: str | None = None,
    key_name: str = "onboarding",
    contact_email: str = "",
    expect_build: bool = False,
) -> tuple[Tenant, ApiKey, str]:
    """Create a tenant with a working schema and a first key holding every scope.

    Building a schema because no spare is left is logged as a warning (the pool is too small),
    unless the caller expects it (`expect_build`: the first tenant of a new database).

    Raises InvalidSlug (422), SlugTaken (409) and ValidationFailed (422, bad rate limit).
    """
    started = time.perf_counter()
    validate_slug(slug)
    rate_limit = validate_rate_limit(rate_limit or "600/m")
    if Tenant.objects.filter(slug=slug).exists() or schema_exists(schema_name_for(slug)):
        raise errors.SlugTaken()
    tenant: Tenant | None = None
    path = "spare"
    try:
        with transaction.atomic():
            tenant = _claim_spare(slug=slug, name=name, rate_limit=rate_limit)
            if tenant is not None:
                key, raw = api_key_create(tenant=tenant, name=key_name)
    except IntegrityError as exc:
        raise errors.SlugTaken() from exc
    if tenant is None:
        logger.log(
            logging.INFO if expect_build else logging.WARNING,
            "no spare schema left; building %s", slug,
        )
        path = "build"
        with transaction.atomic():
            _pool_notify()
        tenant = _build_schema(slug=slug, name=name, rate_limit=rate_limit)
        key, raw = api_key_create(tenant=tenant, name=key_name)
    if contact_email:
        Tenant.objects.filter(pk=tenant.pk).update(contact_email=contact_email)
        tenant.contact_email = contact_email
    metrics.ONBOARDING_SECONDS.labels(path=path).observe(time.perf_counter() - started)
    return tenant, key, raw


def _abandoned_builds_drop(holder: BaseDatabaseWrapper) -> None:
    """Drop the `building` rows (and schemas) whose builder is gone: their build lock is free."""
    for stale in Tenant.objects.filter(status=TenantStatus.BUILDING):
        lock_id = _build_lock_id(stale.pk)
        if not _advisory(holder, "pg_try_advisory_lock", lock_id):
            continue  # still being built (an onboarding without a spare)
        try:
            # Built and released since the read above, or still abandoned: the row says which.
            for row in Tenant.objects.filter(pk=stale.pk, status=TenantStatus.BUILDING):
                logger.warning("dropping %s, left half-built by a crashed build", row.schema_name)
                row.delete(force_drop=True)
        finally:
            _advisory(holder, "pg_advisory_unlock", lock_id)


def spare_pool_refill(*, target: int | None = None) -> int:
    """Build spare schemas until `target` are waiting; returns how many were built.

    One process at a time refills: it holds the pool's advisory lock, on a connection of its own,
    until it is done; the others return at once. It first creates or migrates the template schema
    if it is missing or behind (`template_migrate`); spares are clones of it.
    """
    target = settings.TENANT_SPARE_SCHEMAS if target is None else target
    with _lock_connection() as holder:
        # Released when `holder` closes, whatever happens below.
        if not _advisory(holder, "pg_try_advisory_lock", _SPARE_LOCK_ID):
            return 0
        _abandoned_builds_drop(holder)
        try:
            if template_migrate(holder):
                logger.info("template schema %s built or migrated", template_schema())
        except Exception:
            # Spares are then built by migrations, slower but the same.
            logger.exception("template schema %s could not be migrated", template_schema())
        missing = target - Tenant.objects.filter(status=TenantStatus.SPARE).count()
        built = 0
        for _ in range(max(0, missing)):
            token = secrets.token_hex(6)
            _schema_build(
                holder,
                status=TenantStatus.SPARE,
                slug=f"spare-{token}",
                name="(spare schema)",
                schema_name=f"spare_{token}",
            )
            built += 1
    return built


# --- Tenant changes.


def tenant_update(
    *,
    tenant: Tenant,
    name: str | None = None,
    status: str | None = None,
    rate_limit: str | None = None,
) -> Tenant:
    """Change a tenant; every process sees the change within a second."""
    if status is not None and status not in (TenantStatus.ACTIVE, TenantStatus.SUSPENDED):
        raise errors.ValidationFailed(
            "status is 'active' or 'suspended'.", field="status", msg="invalid status"
        )
    if tenant.status in (TenantStatus.SPARE, TenantStatus.BUILDING):
        raise errors.TenantNotFound()
    with transaction.atomic():
        tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
        if status == TenantStatus.ACTIVE and tenant.deletion_requested_at is not None:
            raise errors.TenantDeleting()
        if rate_limit is not None:
            rate_limit = validate_rate_limit(rate_limit)
        save_patch(tenant, {"name": name, "status": status, "rate_limit": rate_limit}, missing=None)
        resolution.invalidate_tenant(tenant)
    return tenant


def tenant_settings_update(*, tenant_id: int, changes: dict[str, Any]) -> Tenant:
    with transaction.atomic():
        tenant = Tenant.objects.select_for_update().get(pk=tenant_id)
        tenant.settings = {**tenant.merged_settings, **changes}
        tenant.save(update_fields=["settings", "updated_at"])
        resolution.invalidate_tenant(tenant)
    return tenant


def tenant_delete_request(*, tenant: Tenant, confirm: str | None) -> Tenant:
    """Suspend at once and revoke every key; the schema is dropped later by a job."""
    if confirm != tenant.slug:
        raise errors.ConfirmationRequired()
    with transaction.atomic():
        tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
        now = timezone.now()
        tenant.status = TenantStatus.SUSPENDED
        tenant.deletion_requested_at = tenant.deletion_requested_at or now
        tenant.save()
        ApiKey.objects.filter(tenant=tenant, revoked_at__isnull=True).update(revoked_at=now)
        resolution.invalidate_tenant(tenant)
    return tenant


# --- Placement on a Citus cluster (schema-based sharding, docs/scaling.md) ---------------------

# citus.shard_transfer_mode: `auto` replicates logically (online: writes go on until a short
# final lock) and needs `wal_level = logical` on the workers and a replica identity on every
# table; `block_writes` copies while the schema's tables refuse writes.
TRANSFER_MODES = ("auto", "force_logical", "block_writes")


@dataclass(frozen=True)
class PlacementMove:
    schema: str
    source: str  # host:port
    target: str  # host:port
    shards: int


def tenant_schema_move(
    *, schema: str, target: selectors.Node, transfer_mode: str = "auto"
) -> PlacementMove | None:
    """Move a distributed schema (all its shards) to `target` with `citus_schema_move`.

    None when it is on `target` already. ValueError when the schema is not a distributed schema
    or has no tables; Citus's own errors (a mode it cannot use, a node that is down) propagate as
    `DatabaseError`. Runs outside any transaction: Citus's move commits in steps of its own.
    """
    if transfer_mode not in TRANSFER_MODES:
        raise ValueError(f"unknown shard transfer mode {transfer_mode!r}")
    placement = selectors.tenant_placement_get(schema=schema)
    if placement is None or not placement.distributed:
        raise ValueError(f"schema {schema!r} is not a distributed schema: nothing to move")
    if placement.node is None:
        raise ValueError(f"schema {schema!r} has no tables yet: nothing to move")
    if placement.node.node_id == target.node_id:
        return None
    if connection.in_atomic_block:
        raise RuntimeError("tenant_schema_move must not run inside a transaction")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT citus_schema_move(%s::regnamespace, %s, %s, %s::citus.shard_transfer_mode)",
            [_quoted_ident(schema), target.host, target.port, transfer_mode],
        )
    logger.info(
        "schema %s moved from %s to %s (%s)",
        schema, placement.node.address, target.address, transfer_mode,
    )
    return PlacementMove(schema, placement.node.address, target.address, placement.shards)


def _quoted_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class RebalanceResult:
    moves: list[PlacementMove]
    job_id: int | None
    state: str | None  # the background job's final state (`finished`), None when nothing moved


# One row per co-located shard group (= one distributed schema) the rebalancer would move.
_REBALANCE_PLAN_SQL = """
SELECT DISTINCT ON (p.colocationid) n.nspname, plan.sourcename, plan.sourceport,
       plan.targetname, plan.targetport,
       (SELECT count(*) FROM pg_dist_partition q WHERE q.colocationid = p.colocationid)
FROM get_rebalance_table_shards_plan() plan
JOIN pg_dist_partition p ON p.logicalrelid = plan.table_name
JOIN pg_class c ON c.oid = p.logicalrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
ORDER BY p.colocationid
"""


def tenant_placement_rebalance(
    *, transfer_mode: str = "auto", dry_run: bool = False
) -> RebalanceResult:
    """Even out the schemas over the workers with Citus's rebalancer.

    The moves are read from `get_rebalance_table_shards_plan()` (a distributed schema is one
    co-located group of single-shard tables, which the rebalancer moves whole), then
    `citus_rebalance_start()` runs them as a background job and `citus_rebalance_wait()` waits
    for it. With `dry_run` only the plan is returned.
    """
    if transfer_mode not in TRANSFER_MODES:
        raise ValueError(f"unknown shard transfer mode {transfer_mode!r}")
    if not selectors.citus_enabled():
        raise selectors.CitusUnavailable()
    with connection.cursor() as cursor:
        cursor.execute(_REBALANCE_PLAN_SQL)
        moves = [
            PlacementMove(schema, f"{sh}:{sp}", f"{th}:{tp}", int(count))
            for schema, sh, sp, th, tp, count in cursor.fetchall()
        ]
        if dry_run or not moves:
            return RebalanceResult(moves, None, None)
        cursor.execute(
            "SELECT citus_rebalance_start(shard_transfer_mode => %s::citus.shard_transfer_mode)",
            [transfer_mode],
        )
        row = cursor.fetchone()
        job_id = row[0] if row else None
        if job_id is None:
            return RebalanceResult([], None, None)
        cursor.execute("SELECT citus_rebalance_wait()")
        cursor.execute("SELECT state::text FROM pg_dist_background_job WHERE job_id = %s", [job_id])
        state_row = cursor.fetchone()
    logger.info("rebalance job %s: %d schema(s) moved", job_id, len(moves))
    return RebalanceResult(moves, job_id, state_row[0] if state_row else None)
