from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from billing_platform.operations.services import platform_sweep


class Command(BaseCommand):
    help = "Expire batches and holds and purge old idempotency keys in every tenant schema."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--all", action="store_true", help="sweep every schema, not only those due"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        totals = platform_sweep(everything=options["all"])
        self.stdout.write(
            f"tenants={totals['tenants']} tenants_failed={totals['tenants_failed']} "
            f"subscriptions_advanced={totals['subscriptions_advanced']} "
            f"batches_expired={totals['batches_expired']} "
            f"holds_expired={totals['holds_expired']} "
            f"idempotency_purged={totals['idempotency_purged']}"
        )
