from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing_platform.core.errors import BillingError
from tenants import selectors
from tenants.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key for a tenant; prints the key on its last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, help="the tenant's slug")
        parser.add_argument("--name", required=True)
        parser.add_argument(
            "--scope", action="append", dest="scopes", help="repeat for several (default: all)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            tenant = selectors.tenant_get(slug=options["tenant"])
            key, raw = api_key_create(tenant=tenant, name=options["name"], scopes=options["scopes"])
        except BillingError as exc:
            raise CommandError(f"{exc.code}: {exc.detail}") from exc
        self.stderr.write(f"API key {key.prefix}… for {tenant.slug}; it is shown once:")
        self.stdout.write(raw)
