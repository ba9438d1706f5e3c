"""`manage.py export_tenant SLUG [--output FILE]`: the tenant's data as JSON lines."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing_platform.core.errors import BillingError
from billing_platform.operations.lifecycle import tenant_export
from tenants import selectors
from tenants.models import Tenant


class Command(BaseCommand):
    help = (
        "Export a tenant's data as JSON lines, one {\"model\", \"row\"} object per row: the "
        "tenant, its keys' metadata, webhook endpoints, events and deliveries (no secrets), and "
        "every billing table of its schema. Writes to stdout unless --output is given."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="the tenant's slug")
        parser.add_argument("--output", "-o", help="file to write (replaced if it exists)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            tenant = selectors.tenant_get(slug=options["slug"])
        except BillingError as exc:
            raise CommandError(f"{exc.code}: no tenant {options['slug']!r}") from exc
        output: str | None = options["output"]
        try:
            counts = self._export(tenant, output)
        except BillingError as exc:  # the tenant's schema is missing or cannot be selected
            raise CommandError(f"{exc.code}: {exc.detail}") from exc
        total = sum(counts.values())
        self.stderr.write(
            f"Exported {total} rows of {tenant.slug} "
            f"({', '.join(f'{label}: {n}' for label, n in sorted(counts.items()))})."
        )

    def _export(self, tenant: Tenant, output: str | None) -> dict[str, int]:
        if not output:
            return tenant_export(tenant=tenant, out=getattr(self.stdout, "_out", sys.stdout))
        path = Path(output)
        # Written beside the target and renamed, so a failed export leaves no partial file.
        partial = path.with_name(path.name + ".partial")
        try:
            with partial.open("w", encoding="utf-8") as out:
                counts = tenant_export(tenant=tenant, out=out)
            partial.replace(path)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise CommandError(f"cannot write {output}: {exc.strerror}") from exc
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return counts
