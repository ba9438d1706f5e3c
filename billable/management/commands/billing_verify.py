from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from billable.selectors import tenants_verify, verified_tenants


class Command(BaseCommand):
    help = (
        "Check every tenant's ledger: each batch's remaining equals its credits minus its "
        "debits, and no batch is negative. Exits non-zero listing the batches that drift."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--tenant",
            action="append",
            dest="tenants",
            metavar="SLUG",
            help="only this tenant (repeat for several; default: every active and suspended one)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        slugs: list[str] | None = options["tenants"]
        if slugs:
            unknown = sorted(set(slugs) - {t.slug for t in verified_tenants(slugs)})
            if unknown:
                raise CommandError(f"no active or suspended tenant: {', '.join(unknown)}")
        reports = tenants_verify(slugs=slugs)
        drifting = 0
        for report in reports:
            status = "ok" if report.ok else f"DRIFT in {len(report.drifts)} batches"
            self.stdout.write(
                f"{report.slug} ({report.schema_name}): {report.batches} batches, "
                f"{report.entries} ledger entries: {status}"
            )
            drifting += len(report.drifts)
        self.stdout.write(f"{len(reports)} tenants checked, {drifting} drifting batches.")
        if drifting:
            lines = [
                f"{report.slug}: {drift.describe()}"
                for report in reports
                for drift in report.drifts
            ]
            raise CommandError(
                f"ledger drift in {drifting} batches:\n" + "\n".join(lines)
            )
