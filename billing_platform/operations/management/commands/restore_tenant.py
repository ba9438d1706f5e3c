"""`manage.py restore_tenant SLUG --from URL [--schema NAME]`: one tenant's schema from a copy."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing_platform.core.errors import BillingError
from billing_platform.operations.restore import tenant_restore
from tenants import selectors


class Command(BaseCommand):
    help = (
        "Replace a suspended tenant's schema with its copy in another database (a scratch "
        "restore of a backup): a new schema is built from the template, the rows are copied "
        "table by table, and the schemas are swapped; the old one is kept as "
        "<schema>_before_restore. Works on plain PostgreSQL and on Citus (docs/operations.md)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="the tenant's slug (suspended)")
        parser.add_argument(
            "--from", dest="source", required=True,
            help="the database URL holding the copy (e.g. postgres://…/billable_scratch)",
        )
        parser.add_argument(
            "--schema", default="", help="the copy's schema name (default: the tenant's own)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            tenant = selectors.tenant_get(slug=options["slug"])
            result = tenant_restore(
                tenant=tenant, source_url=options["source"], source_schema=options["schema"]
            )
        except BillingError as exc:
            raise CommandError(f"{exc.code}: {exc.detail}") from exc
        total = sum(result.rows.values())
        self.stdout.write(
            f"Restored {result.schema} ({total} rows in {len(result.rows)} tables); the schema "
            f"it replaced is {result.kept_as}: check the tenant (manage.py billing_verify), "
            f"reactivate it, then DROP SCHEMA {result.kept_as} CASCADE."
        )
