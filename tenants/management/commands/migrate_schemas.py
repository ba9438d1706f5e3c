"""`migrate_schemas` that skips tenant schemas already up to date and shows its progress.

django-tenants runs Django's `migrate` in every schema, about 0.1 s each even with nothing to do.
This command (it replaces django-tenants' own: `tenants` comes before `django_tenants` in
INSTALLED_APPS) first asks the database, in one query per 500 schemas, which schemas lack a
migration of the code, and migrates only those, with django-tenants' own per-schema runner.
The public schema is always migrated. The template schema (`TENANT_BASE_SCHEMA`, which new
tenant schemas are cloned from) is created when absent and migrated first, holding the template's
lock so no clone reads it half-migrated. Runs that name a schema, an app or a target migration, or
fake, prune or plan, are django-tenants' unchanged.

One broken tenant does not stop the run: a schema that is missing or whose name cannot be selected
is reported and skipped, and a schema whose migration fails is reported and the others are still
migrated; the command then exits non-zero naming the schemas that failed.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django_tenants.management.commands import SyncCommon
from django_tenants.management.commands.migrate_schemas import (
    GET_EXECUTOR_FUNCTION,
    MigrateSchemasCommand,
)
from django_tenants.migration_executors.base import run_migrations
from django_tenants.utils import get_public_schema_name, has_multi_type_tenants, schema_exists

from tenants.models import Tenant
from tenants.schema_clone import template_locked, template_schema
from tenants.schema_migrations import (
    forget_status,
    missing_migrations,
    tenant_schemas,
    unusable_schemas,
)

_UNCHANGED_OPTIONS = ("app_label", "migration_name", "fake", "fake_initial", "prune", "plan")
BAR_WIDTH = 30


class Command(MigrateSchemasCommand):
    help = (
        "Migrate the public schema and every tenant schema (spare schemas and the template "
        "included) that lacks a migration; current schemas are skipped."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--all-schemas",
            action="store_true",
            dest="all_schemas",
            help="Run migrate in every tenant schema, even those already up to date.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if (
            options.get("all_schemas")
            or options.get("schema_name")
            or has_multi_type_tenants()
            or any(options.get(name) for name in _UNCHANGED_OPTIONS)
        ):
            super().handle(*args, **options)
            forget_status()
            return
        SyncCommon.handle(self, *args, **options)
        public = get_public_schema_name()
        executor = GET_EXECUTOR_FUNCTION(codename=self.executor)(self.args, self.options)
        if self.sync_public:
            executor.run_migrations(tenants=[public])
        failed = self._migrate_tenants(executor) if self.sync_tenant else []
        forget_status()
        if failed:
            raise CommandError(
                f"migrations failed in {len(failed)} tenant schemas (the others were migrated): "
                + ", ".join(repr(name) for name in failed)
            )

    def _migrate_tenants(self, executor: Any) -> list[str]:
        """Migrate every tenant schema that is behind; returns those whose migration failed."""
        verbosity = int(self.options.get("verbosity", 1))
        template = template_schema()
        if template is not None and not schema_exists(template):
            # Built here like any schema behind the code: every migration is missing.
            with connection.cursor() as cursor:
                cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {connection.ops.quote_name(template)}")
        # Names and ids from one query: a spare renamed by onboarding meanwhile is still found
        # by its id under its new name.
        ids = tenant_schemas()
        # A missing schema or an unselectable name cannot be migrated: said always, on stderr.
        unusable = unusable_schemas(ids)
        for name, why in unusable.items():
            self.stderr.write(f"{name!r}: skipped, {why} (tenant id {ids[name]}): repair by hand")
        names = [name for name in ids if name not in unusable]
        missing = missing_migrations(names)
        behind = [name for name in names if missing.get(name, 1)]
        skipped = len(names) - len(behind)
        bar = self.stdout.isatty() and verbosity >= 1
        if verbosity >= 1:
            self.stdout.write(
                f"Tenant schemas: {len(ids)} in all, {len(behind)} behind, "
                f"{skipped} up to date, {len(unusable)} unusable."
            )
        if verbosity >= 2:
            for name in names:
                if name not in behind:
                    self.stdout.write(f"  {name}: up to date, skipped")
        # On a terminal the bar replaces migrate's per-schema chatter unless -v 2 asks for it.
        inner = dict(self.options)
        if bar:
            inner["verbosity"] = max(0, verbosity - 1)
        migrated = 0
        failed: list[str] = []
        parallel = executor.codename != "standard"
        if parallel and behind:
            # The multiprocessing and subprocess executors run the list themselves.
            type(executor)(self.args, inner).run_migrations(tenants=list(behind))
            migrated = len(behind)
        else:
            for index, name in enumerate(behind):
                current = _current_name(name, ids.get(name))
                if current is None:
                    # Deleted while this run was going: nothing left to migrate.
                    self._line(bar, f"[{index + 1}/{len(behind)}] {name}: deleted, skipped")
                    continue
                if verbosity >= 1:
                    self._line(
                        bar,
                        f"[{index + 1}/{len(behind)}] {current}: "
                        f"{missing[name]} migrations to apply",
                    )
                try:
                    if current == template:
                        self._migrate_template(inner, executor.codename, current, index, behind)
                    else:
                        run_migrations(
                            self.args, inner, executor.codename, current,
                            idx=index, count=len(behind),
                        )
                except Exception as exc:  # one schema's failure must not stop the others
                    self._line(bar, "")
                    self.stderr.write(f"{current!r}: migration failed: {exc}")
                    failed.append(current)
                    # As django-tenants does after a schema: a fresh connection, public schema.
                    connection.close()
                    connection.set_schema_to_public()  # type: ignore[attr-defined]
                    continue
                migrated += 1
                if bar:
                    self._draw_bar(index + 1, len(behind))
        if bar:
            self.stdout.write("")
        if verbosity >= 1:
            problems = f", {len(failed)} failed" if failed else ""
            problems += f", {len(unusable)} unusable" if unusable else ""
            self.stdout.write(
                f"Tenant schemas: {migrated} migrated, {skipped} skipped (up to date){problems}.",
                self.style.ERROR if problems else self.style.SUCCESS,
            )
        return failed

    def _migrate_template(
        self, options: dict[str, Any], codename: str, name: str, index: int, behind: list[str]
    ) -> None:
        """Migrate the template holding its lock, on a connection the migration leaves alone."""
        holder = connections.create_connection(DEFAULT_DB_ALIAS)
        try:
            with template_locked(holder):
                run_migrations(
                    self.args, options, codename, name, idx=index, count=len(behind)
                )
        finally:
            holder.close()

    def _line(self, bar: bool, text: str) -> None:
        # On a terminal, clear the bar first; the next _draw_bar puts it back below the line.
        self.stdout.write(("\r\033[K" if bar else "") + text)

    def _draw_bar(self, done: int, total: int) -> None:
        filled = BAR_WIDTH * done // total if total else BAR_WIDTH
        self.stdout.write(
            f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{total}", ending=""
        )
        self.stdout.flush()


def _current_name(schema_name: str, tenant_id: int | None) -> str | None:
    """The schema's name now: onboarding may have renamed a spare schema since the check, and
    a tenant may have been deleted."""
    if tenant_id is None:
        return schema_name
    return Tenant.objects.filter(pk=tenant_id).values_list("schema_name", flat=True).first()
