"""The end of a tenant's life: export its data as JSON lines, then purge it for good.

`tenant_export` writes one JSON object per line, `{"model": "<app>.<model>", "row": {...}}`: the
tenant row, its keys' public metadata, its webhook endpoints, events and deliveries, every other
public row that belongs to it (its console members, invitations, audit log, ...), and every
row of every billing table in its schema, read in one repeatable-read snapshot. Secrets never
leave: no key hashes, no webhook secrets or custom headers, no trial-identity secret.

`tenant_purge` drops the schema and deletes every public row of the tenant (deliveries, events,
endpoints, keys, domains, the tenant row) in one transaction, and removes the cached key
resolutions, so the tenant's keys answer 401 within a second. The platform API's DELETE
only suspends and revokes; `tenants_purge_due` (run by `run_worker`) purges those tenants once
`TENANT_PURGE_AFTER_HOURS` have passed, and `manage.py delete_tenant` purges one at once.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import IO, Any

from django.apps import apps
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, models, transaction
from django.utils import timezone
from django_tenants.utils import app_labels, schema_context

from billing_platform.core.db import reset_to_public
from billing_platform.core.errors import TenantUnavailable
from billing_platform.webhooks.models import Delivery, Endpoint, Event
from tenants import resolution
from tenants.models import ApiKey, Domain, Tenant, TenantStatus
from tenants.schema_migrations import unusable_schemas

logger = logging.getLogger("billable.tenants")

EXPORT_FORMAT = 1
# Columns that hold secrets or their hashes: never exported.
_SECRET_FIELDS: dict[str, frozenset[str]] = {
    "tenants.tenant": frozenset({"identity_secret"}),
    "tenants.apikey": frozenset({"key_hash", "hash_version"}),
    "webhooks.endpoint": frozenset(
        {"secret_encrypted", "previous_secret_encrypted", "headers_encrypted"}
    ),
    # Stored answers to replay: the answer to POST /keys or /webhooks/endpoints holds a secret.
    "billable.idempotencyrecord": frozenset({"body"}),
    # The hash of an invitation link's token would let its holder test a guessed link.
    "console.invitation": frozenset({"token_hash"}),
}


class _Encoder(DjangoJSONEncoder):
    """Django's encoder (dates, decimals, UUIDs) plus binary columns as base64."""

    def default(self, o: Any) -> Any:
        if isinstance(o, bytes | memoryview):
            return base64.b64encode(bytes(o)).decode("ascii")
        return super().default(o)


def _label(model: type[models.Model]) -> str:
    return model._meta.label_lower


def _rows(queryset: models.QuerySet[Any]) -> Iterator[dict[str, Any]]:
    model = queryset.model
    hidden = _SECRET_FIELDS.get(_label(model), frozenset())
    names = [
        field.attname
        for field in model._meta.concrete_fields
        if field.name not in hidden and field.attname not in hidden
    ]
    yield from queryset.order_by("pk").values(*names).iterator(chunk_size=2000)


def _public_models_of_a_tenant() -> list[tuple[type[models.Model], str]]:
    """Every model of the shared apps with a foreign key to the tenant, and that key's name (the
    console's members, invitations and audit log, ...), so a new app's rows are exported without
    the export knowing the app."""
    found: list[tuple[type[models.Model], str]] = []
    for model in apps.get_models():
        if model._meta.proxy or model._meta.app_label not in app_labels(settings.SHARED_APPS):
            continue
        for field in model._meta.concrete_fields:
            if field.is_relation and field.related_model is Tenant:
                found.append((model, field.name))
                break
    return found


def _tenant_models() -> list[type[models.Model]]:
    """Every model of the tenant apps, in their declaration order (rows carry their keys)."""
    found: list[type[models.Model]] = []
    for label in app_labels(settings.TENANT_APPS):
        found.extend(m for m in apps.get_app_config(label).get_models() if not m._meta.proxy)
    return found


def tenant_export(*, tenant: Tenant, out: IO[str]) -> dict[str, int]:
    """Write the tenant's data to `out` as JSON lines; returns the rows written per model.

    Raises TenantUnavailable, before writing anything, when the tenant's schema is missing or
    its name cannot be selected: an export without the billing tables would look complete.
    """
    unusable = unusable_schemas([tenant.schema_name]).get(tenant.schema_name)
    if unusable:
        raise TenantUnavailable(
            f"Tenant {tenant.slug!r} cannot be exported: schema {tenant.schema_name!r}: "
            f"{unusable}."
        )
    counts: dict[str, int] = {}

    def write(label: str, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            out.write(json.dumps({"model": label, "row": row}, cls=_Encoder, sort_keys=True))
            out.write("\n")
            counts[label] = counts.get(label, 0) + 1

    write("export", [{
        "format": EXPORT_FORMAT,
        "slug": tenant.slug,
        "schema_name": tenant.schema_name,
        "exported_at": timezone.now(),
    }])
    # One snapshot for the public rows and the schema, so the export is consistent.
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        public: list[tuple[type[models.Model], models.QuerySet[Any]]] = [
            (Tenant, Tenant.objects.filter(pk=tenant.pk)),
            (ApiKey, ApiKey.objects.filter(tenant=tenant)),
            (Endpoint, Endpoint.objects.filter(tenant=tenant)),
            (Event, Event.objects.filter(tenant=tenant)),
            (Delivery, Delivery.objects.filter(event__tenant=tenant)),
        ]
        listed = {model for model, _ in public}
        public += [
            (model, model._default_manager.filter(**{field: tenant}))
            for model, field in _public_models_of_a_tenant()
            if model not in listed
        ]
        for model, queryset in public:
            write(_label(model), _rows(queryset))
        with schema_context(tenant.schema_name):
            for model in _tenant_models():
                write(_label(model), _rows(model._default_manager.all()))
    return counts


def tenant_purge(*, tenant: Tenant) -> None:
    """Drop the tenant's schema and every public row of it, for good, in one transaction.

    Its cached key resolutions are deleted at once and again after commit, so no process keeps
    accepting its keys.
    """
    reset_to_public()
    with transaction.atomic():
        tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
        now = timezone.now()
        # Refuse the keys first and forget their resolutions; the rows go below.
        ApiKey.objects.filter(tenant=tenant, revoked_at__isnull=True).update(revoked_at=now)
        resolution.invalidate_tenant(tenant)
        with connection.cursor() as cursor:
            cursor.execute(
                f"DROP SCHEMA IF EXISTS {connection.ops.quote_name(tenant.schema_name)} CASCADE"
            )
            # Plain SQL rather than the ORM's cascade, which would load every row into memory.
            cursor.execute(
                "DELETE FROM webhooks_deliveryattempt WHERE delivery_id IN ("
                " SELECT d.id FROM webhooks_delivery d JOIN webhooks_event e ON e.id = d.event_id"
                " WHERE e.tenant_id = %s)",
                [tenant.pk],
            )
            cursor.execute(
                "DELETE FROM webhooks_deliveryattempt WHERE delivery_id IN ("
                " SELECT d.id FROM webhooks_delivery d"
                " JOIN webhooks_endpoint p ON p.id = d.endpoint_id WHERE p.tenant_id = %s)",
                [tenant.pk],
            )
            cursor.execute(
                "DELETE FROM webhooks_delivery WHERE event_id IN ("
                " SELECT id FROM webhooks_event WHERE tenant_id = %s)"
                " OR endpoint_id IN (SELECT id FROM webhooks_endpoint WHERE tenant_id = %s)",
                [tenant.pk, tenant.pk],
            )
            cursor.execute("DELETE FROM webhooks_event WHERE tenant_id = %s", [tenant.pk])
            cursor.execute("DELETE FROM webhooks_endpoint WHERE tenant_id = %s", [tenant.pk])
        ApiKey.objects.filter(tenant=tenant).delete()
        Domain.objects.filter(tenant=tenant).delete()
        Tenant.objects.filter(pk=tenant.pk).delete()
    logger.info("tenant %s purged (schema %s dropped)", tenant.slug, tenant.schema_name)


def tenants_purge_due(*, now: Any = None) -> list[str]:
    """Purge the tenants whose deletion was requested over TENANT_PURGE_AFTER_HOURS ago."""
    cutoff = (now or timezone.now()) - timedelta(hours=settings.TENANT_PURGE_AFTER_HOURS)
    due = list(
        Tenant.objects.filter(
            deletion_requested_at__isnull=False, deletion_requested_at__lte=cutoff
        ).exclude(status__in=[TenantStatus.SPARE, TenantStatus.BUILDING])
    )
    purged = []
    for tenant in due:
        try:
            tenant_purge(tenant=tenant)
        except Exception:  # one tenant's failure (a lock timeout) must not stop the others
            logger.exception("purging tenant %s failed; retried on the next pass", tenant.slug)
            continue
        purged.append(tenant.slug)
    return purged
