from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from billable.selectors import tenants_verify, verified_tenants


class Command(BaseCommand):
    help = (
        "Check every tenant's ledger: each batch's remaining equals its credits minus its "
        "debits, and no batch is negative. Exits non-zero listing the batches that drift and "
        "the tenants whose schema could not be checked (the others are checked all the same)."
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
        unchecked = [report for report in reports if report.error]
        for report in reports:
            if report.error:
                # repr: a broken name may hold a line break or other invisible characters.
                self.stdout.write(
                    f"{report.slug!r} ({report.schema_name!r}): NOT CHECKED, {report.error}"
                )
                continue
            status = "ok" if report.ok else f"DRIFT in {len(report.drifts)} batches"
            self.stdout.write(
                f"{report.slug} ({report.schema_name}): {report.batches} batches, "
                f"{report.entries} ledger entries: {status}"
            )
            drifting += len(report.drifts)
        self.stdout.write(
            f"{len(reports) - len(unchecked)} tenants checked, {drifting} drifting batches."
        )
        if unchecked:
            self.stdout.write(f"{len(unchecked)} tenants not checked.")
        if drifting or unchecked:
            lines = [
                f"{report.slug}: {drift.describe()}"
                for report in reports
                for drift in report.drifts
            ]
            lines += [f"{report.slug!r}: not checked, {report.error}" for report in unchecked]
            raise CommandError(
                f"ledger drift in {drifting} batches, {len(unchecked)} tenants not checked:\n"
                + "\n".join(lines)
            )
