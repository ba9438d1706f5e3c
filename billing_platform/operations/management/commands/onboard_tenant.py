from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing_platform.core.errors import BillingError
from billing_platform.operations.services import platform_tenant_onboard


class Command(BaseCommand):
    help = "Onboard a tenant; prints JSON with the tenant and its first API key."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True)
        parser.add_argument("--slug", required=True)
        parser.add_argument("--rate-limit", default=None)
        parser.add_argument("--demo-catalog", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            tenant, _key, raw = platform_tenant_onboard(
                name=options["name"],
                slug=options["slug"],
                rate_limit=options["rate_limit"],
                demo_catalog=options["demo_catalog"],
            )
        except BillingError as exc:
            raise CommandError(f"{exc.code}: {exc.detail}") from exc
        self.stdout.write(
            json.dumps(
                {
                    "tenant": {
                        "slug": tenant.slug,
                        "name": tenant.name,
                        "schema_name": tenant.schema_name,
                        "status": tenant.status,
                        "rate_limit": tenant.rate_limit,
                        "created_at": tenant.created_at.isoformat(),
                    },
                    "api_key": raw,
                },
                indent=2,
            )
        )
