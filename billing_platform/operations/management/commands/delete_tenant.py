"""`manage.py delete_tenant SLUG --confirm SLUG`: drop a tenant's schema and rows for good."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from billing_platform.core.errors import BillingError
from billing_platform.operations.lifecycle import tenant_purge
from tenants import selectors


class Command(BaseCommand):
    help = (
        "Delete a tenant for good: drop its schema, delete its keys, webhook endpoints, events, "
        "deliveries, domains and row, and forget its cached keys. Never prompts: refuses unless "
        "--confirm repeats the slug. Export first (export_tenant) to keep a copy."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="the tenant's slug")
        parser.add_argument(
            "--confirm", metavar="SLUG", help="the same slug again: nothing happens without it"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        slug: str = options["slug"]
        if options["confirm"] != slug:
            raise CommandError(
                f"refusing to delete {slug!r}: repeat its slug with --confirm {slug} "
                "(this drops its schema and data for good)."
            )
        try:
            tenant = selectors.tenant_get(slug=slug)
        except BillingError as exc:
            raise CommandError(f"{exc.code}: no tenant {slug!r}") from exc
        schema = tenant.schema_name
        try:
            tenant_purge(tenant=tenant)
        except DatabaseError as exc:
            # Typically lock_timeout: requests still hold its tables. Nothing was changed.
            raise CommandError(
                f"{slug!r} was not deleted ({exc.__class__.__name__}: {exc}); nothing changed. "
                "Suspend it first (DELETE /api/v1/platform/tenants/...) and try again."
            ) from exc
        self.stdout.write(f"Tenant {slug} deleted: schema {schema} dropped, rows removed.")
