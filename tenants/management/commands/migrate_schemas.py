"""`migrate_schemas` that skips tenant schemas already up to date and shows its progress.

django-tenants runs Django's `migrate` in every schema, about 0.1 s each even with nothing to do.
This command (it replaces django-tenants' own: `tenants` comes before `django_tenants` in
INSTALLED_APPS) first asks the database, in one query per 500 schemas, which schemas lack a
migration of the code, and migrates only those, with django-tenants' own per-schema runner.
The public schema is always migrated. The template schema (`TENANT_BASE_SCHEMA`, which new
tenant schemas are cloned from) is created when absent and migrated first and by itself, whatever
the executor, holding the template's lock so no clone reads it half-migrated (and so does a run
naming it with `-s`); only then are the other schemas handed to the executor. `--all-schemas`
runs `migrate` in every tenant schema, the template included, current or not. Runs that name a
schema, an app or a target migration, or fake, prune or plan, are django-tenants' unchanged.

One broken tenant does not stop the run: a schema that is missing or whose name cannot be selected
is reported and skipped, and a schema whose migration fails is reported and the others are still
migrated; the command then exits non-zero naming the schemas that failed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
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
from tenants.schema_clone import template_lock_held, template_locked, template_schema
from tenants.schema_migrations import (
    forget_recorded,
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
            help="Run migrate in every tenant schema (the template included), current or not.",
        )
        parser.add_argument(
            "--recheck",
            action="store_true",
            help="Read every schema's migrations, even those recorded as current for this code "
            "(after a schema's django_migrations was changed by hand).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if (
            options.get("schema_name")
            or has_multi_type_tenants()
            or any(options.get(name) for name in _UNCHANGED_OPTIONS)
        ):
            template = template_schema()
            # A target migration, --fake or --prune may take migrations away: the schemas it
            # runs in are read again by the next check (before, and after for a concurrent one).
            touched = [options["schema_name"]] if options.get("schema_name") else None
            forget_recorded(touched)
            try:
                if template is not None and options.get("schema_name") == template:
                    # The template by name: still holding its lock (unless this process holds it).
                    with _template_lock():
                        super().handle(*args, **options)
                else:
                    super().handle(*args, **options)
            finally:
                forget_recorded(touched)
                forget_status()
            return
        SyncCommon.handle(self, *args, **options)
        public = get_public_schema_name()
        executor = GET_EXECUTOR_FUNCTION(codename=self.executor)(self.args, self.options)
        if self.sync_public:
            executor.run_migrations(tenants=[public])
        failed = (
            self._migrate_tenants(executor, every=bool(options.get("all_schemas")))
            if self.sync_tenant
            else []
        )
        forget_status()
        if failed:
            raise CommandError(
                f"migrations failed in {len(failed)} tenant schemas (the others were migrated): "
                + ", ".join(repr(name) for name in failed)
            )

    def _migrate_tenants(self, executor: Any, *, every: bool = False) -> list[str]:
        """Migrate every tenant schema that is behind (with `every`, every tenant schema);
        returns those whose migration failed.

        The template comes first and by itself, whatever the executor: created if absent and
        migrated, both holding its lock on a connection of its own (so no clone reads it
        half-migrated and the worker's refill never creates it at the same time); only then are
        the other schemas handed to the executor.
        """
        template = template_schema()
        with _template_lock() if template is not None else nullcontext():
            if template is not None and not schema_exists(template):
                # Built here like any schema behind the code: every migration is missing.
                with connection.cursor() as cursor:
                    cursor.execute(
                        f"CREATE SCHEMA IF NOT EXISTS {connection.ops.quote_name(template)}"
                    )
            plan = self._plan(every)
            if template is not None and template in plan.behind:
                self._migrate_one(plan, template, 0)
        rest = [name for name in plan.behind if name != template]
        offset = len(plan.behind) - len(rest)
        if executor.codename != "standard" and rest:
            # The multiprocessing and subprocess executors run the list themselves.
            type(executor)(self.args, plan.inner).run_migrations(tenants=rest)
            plan.migrated += len(rest)
        else:
            for index, name in enumerate(rest, start=offset):
                self._migrate_one(plan, name, index)
        if plan.bar:
            self.stdout.write("")
        if plan.migrated:
            # Read what was migrated once more, so those found current are recorded and the next
            # check (`/readyz`, the next run) reads only the record.
            missing_migrations(tenant_schemas())
        if plan.verbosity >= 1:
            problems = f", {len(plan.failed)} failed" if plan.failed else ""
            problems += f", {len(plan.unusable)} unusable" if plan.unusable else ""
            self.stdout.write(
                f"Tenant schemas: {plan.migrated} migrated, {plan.skipped} skipped "
                f"(up to date){problems}.",
                self.style.ERROR if problems else self.style.SUCCESS,
            )
        return plan.failed

    def _plan(self, every: bool) -> _Plan:
        """Which tenant schemas to migrate (those behind, or with `every` all), said on stdout."""
        verbosity = int(self.options.get("verbosity", 1))
        # Names and ids from one query: a spare renamed by onboarding meanwhile is still found
        # by its id under its new name.
        ids = tenant_schemas()
        # A missing schema or an unselectable name cannot be migrated: said always, on stderr.
        unusable = unusable_schemas(ids)
        for name, why in unusable.items():
            self.stderr.write(f"{name!r}: skipped, {why} (tenant id {ids[name]}): repair by hand")
        names = [name for name in ids if name not in unusable]
        missing = missing_migrations(names, recheck=bool(self.options.get("recheck")))
        behind = [name for name in names if every or missing.get(name, 1)]
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
        return _Plan(ids, unusable, missing, behind, skipped, bar, verbosity, inner)

    def _migrate_one(self, plan: _Plan, name: str, index: int) -> None:
        """Run `migrate` in one schema of the plan; a failure is reported and recorded."""
        total = len(plan.behind)
        current = _current_name(name, plan.ids.get(name))
        if current is None:
            # Deleted while this run was going: nothing left to migrate.
            self._line(plan.bar, f"[{index + 1}/{total}] {name}: deleted, skipped")
            return
        if plan.verbosity >= 1:
            self._line(
                plan.bar,
                f"[{index + 1}/{total}] {current}: {plan.missing.get(name, 0)} migrations to apply",
            )
        try:
            run_migrations(self.args, plan.inner, "standard", current, idx=index, count=total)
        except Exception as exc:  # one schema's failure must not stop the others
            self._line(plan.bar, "")
            self.stderr.write(f"{current!r}: migration failed: {exc}")
            plan.failed.append(current)
            # As django-tenants does after a schema: a fresh connection, public schema.
            connection.close()
            connection.set_schema_to_public()  # type: ignore[attr-defined]
            return
        plan.migrated += 1
        if plan.bar:
            self._draw_bar(index + 1, total)

    def _line(self, bar: bool, text: str) -> None:
        # On a terminal, clear the bar first; the next _draw_bar puts it back below the line.
        self.stdout.write(("\r\033[K" if bar else "") + text)

    def _draw_bar(self, done: int, total: int) -> None:
        filled = BAR_WIDTH * done // total if total else BAR_WIDTH
        self.stdout.write(
            f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{total}", ending=""
        )
        self.stdout.flush()


@contextmanager
def _template_lock() -> Iterator[None]:
    """Hold the template's lock exclusively on a connection of its own (migrations close the
    default one), unless this process already holds it (the worker's `template_migrate`)."""
    if template_lock_held():
        yield
        return
    holder = connections.create_connection(DEFAULT_DB_ALIAS)
    try:
        with template_locked(holder):
            yield
    finally:
        holder.close()


@dataclass
class _Plan:
    ids: dict[str, int | None]
    unusable: dict[str, str]
    missing: dict[str, int]
    behind: list[str]
    skipped: int
    bar: bool
    verbosity: int
    inner: dict[str, Any]
    migrated: int = 0
    failed: list[str] = field(default_factory=list)


def _current_name(schema_name: str, tenant_id: int | None) -> str | None:
    """The schema's name now: onboarding may have renamed a spare schema since the check, and
    a tenant may have been deleted."""
    if tenant_id is None:
        return schema_name
    return Tenant.objects.filter(pk=tenant_id).values_list("schema_name", flat=True).first()
