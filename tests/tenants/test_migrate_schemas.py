"""`migrate_schemas` over many real schemas: behind schemas are migrated, current ones skipped.

A temporary copy of billable's migrations with one more migration (a column added by SQL) stands
in for a release: the command runs against 20 fresh tenant schemas (one of them a spare) plus
every other schema of the test database. Everything the module adds is removed afterwards: the
tenants and their schemas, the column and the migration's records.
"""

from __future__ import annotations

import io
import re
import secrets
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings

import billable.migrations
from tenants.models import Tenant, TenantStatus
from tenants.schema_migrations import (
    forget_recorded,
    missing_migrations,
    required_migrations,
    tenant_schema_names,
)
from tenants.services import tenant_onboard
from tests.support.tenants import drop_tenants, require_test_database

NEW = "0099_release_marker"
COLUMN = "release_marker"
MODULE = "billable_release_migrations"


def _billable_leaf() -> str:
    from django.db.migrations.loader import MigrationLoader

    leaves = [name for app, name in MigrationLoader(None).graph.leaf_nodes() if app == "billable"]
    assert len(leaves) == 1, leaves
    return leaves[0]


NEW_MIGRATION = '''
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("billable", "{leaf}")]
    operations = [
        migrations.RunSQL(
            "ALTER TABLE billable_product ADD COLUMN {COLUMN} integer NOT NULL DEFAULT 7",
            reverse_sql="ALTER TABLE billable_product DROP COLUMN {COLUMN}",
        ),
    ]
'''


def test_the_module_runs_on_the_test_database(db: None) -> None:
    assert str(connection.settings_dict["NAME"]).startswith("test_")


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migration package: billable's migrations plus one new migration."""
    root = tmp_path_factory.mktemp("release")
    package = root / MODULE
    shutil.copytree(Path(billable.migrations.__file__).parent, package,
                    ignore=shutil.ignore_patterns("__pycache__"))
    (package / f"{NEW}.py").write_text(NEW_MIGRATION.format(leaf=_billable_leaf(), COLUMN=COLUMN))
    sys.path.insert(0, str(root))
    try:
        yield MODULE
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m.startswith(MODULE)]:
            del sys.modules[name]


@pytest.fixture(scope="module")
def twenty(django_db_setup: None, django_db_blocker: Any) -> Iterator[list[Tenant]]:
    """19 tenants and one spare schema, committed, built at the current leaf migration."""
    require_test_database()
    token = secrets.token_hex(3)
    made: list[Tenant] = []
    with django_db_blocker.unblock():
        try:
            for index in range(19):
                tenant, _key, _raw = tenant_onboard(name=f"M{index}", slug=f"mig{token}-{index}")
                made.append(tenant)
            spare = Tenant.objects.create(
                slug=f"spare-mig{token}", name="(spare schema)",
                schema_name=f"spare_mig{token}", status=TenantStatus.SPARE,
            )
            made.append(spare)
            spare.create_schema(check_if_exists=True, verbosity=0)
            yield made
        finally:
            drop_tenants(made)


def _unrelease() -> None:
    """Take the new migration out of every schema again (column and record)."""
    connection.set_schema_to_public()
    names = ["public", *tenant_schema_names()]
    with connection.cursor() as cursor:
        for name in names:
            cursor.execute(
                "SELECT 1 FROM information_schema.tables "
                "WHERE table_schema = %s AND table_name = 'django_migrations'", [name])
            if cursor.fetchone() is None:
                continue
            cursor.execute(f'ALTER TABLE IF EXISTS "{name}".billable_product '
                           f"DROP COLUMN IF EXISTS {COLUMN}")
            cursor.execute(f'DELETE FROM "{name}".django_migrations '
                           "WHERE app = 'billable' AND name = %s", [NEW])
    forget_recorded(names)  # changed by hand: the records of being current no longer hold


@pytest.fixture
def released(release: str, committed: None) -> Iterator[None]:
    required_migrations.cache_clear()
    try:
        with override_settings(MIGRATION_MODULES={"billable": release}):
            required_migrations.cache_clear()
            yield
    finally:
        required_migrations.cache_clear()
        _unrelease()


def _migrate(*args: str) -> tuple[int, int, str]:
    out = io.StringIO()
    call_command("migrate_schemas", *args, "--noinput", stdout=out)
    text = out.getvalue()
    match = re.search(r"Tenant schemas: (\d+) migrated, (\d+) skipped", text)
    assert match, text
    return int(match.group(1)), int(match.group(2)), text


def _has_column(schema: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM information_schema.columns WHERE table_schema = %s "
            "AND table_name = 'billable_product' AND column_name = %s", [schema, COLUMN])
        return cursor.fetchone() is not None


def test_a_release_migrates_every_schema_then_skips_them_all(
    twenty: list[Tenant], released: None
) -> None:
    # given: every schema is one migration behind the code
    all_schemas = tenant_schema_names()
    assert len(all_schemas) >= 20
    assert all(missing_migrations(all_schemas)[name] == 1 for name in all_schemas)
    assert not any(_has_column(tenant.schema_name) for tenant in twenty)

    # when
    migrated, skipped, _ = _migrate()

    # then: all were migrated (the spare too), and the column is in each of the 20 schemas
    assert (migrated, skipped) == (len(all_schemas), 0)
    assert all(_has_column(tenant.schema_name) for tenant in twenty)
    assert set(missing_migrations(all_schemas).values()) == {0}
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT {COLUMN} FROM "{twenty[0].schema_name}".billable_product')
        assert cursor.fetchall() == []

    # when: nothing is left to do
    migrated, skipped, text = _migrate()

    # then: every schema is skipped, and the summary says so
    assert (migrated, skipped) == (0, len(all_schemas))
    assert f"{len(all_schemas)} in all, 0 behind" in text


def test_only_the_schema_missing_a_migration_is_migrated(
    twenty: list[Tenant], released: None
) -> None:
    # given: everything is current, then one schema loses the new migration
    _migrate()
    lagging = twenty[7].schema_name
    with connection.cursor() as cursor:
        cursor.execute(f'ALTER TABLE "{lagging}".billable_product DROP COLUMN {COLUMN}')
        cursor.execute(f'DELETE FROM "{lagging}".django_migrations '
                       "WHERE app = 'billable' AND name = %s", [NEW])
    forget_recorded([lagging])  # changed by hand: its record no longer holds

    # when
    migrated, skipped, text = _migrate()

    # then
    assert (migrated, skipped) == (1, len(tenant_schema_names()) - 1)
    assert f"{lagging}: 1 migrations to apply" in text
    assert _has_column(lagging)


def test_all_schemas_runs_migrate_everywhere(twenty: list[Tenant], committed: None) -> None:
    out = io.StringIO()
    call_command("migrate_schemas", "--tenant", "--all-schemas", "--noinput", "-v", "0",
                 stdout=out)
    assert "skipped" not in out.getvalue()
    assert set(missing_migrations(tenant_schema_names()).values()) == {0}


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_progress_bar(twenty: list[Tenant], released: None) -> None:
    # given: two schemas behind
    _migrate()
    lagging = [twenty[3].schema_name, twenty[-1].schema_name]  # a tenant and the spare
    with connection.cursor() as cursor:
        for name in lagging:
            cursor.execute(f'ALTER TABLE "{name}".billable_product DROP COLUMN {COLUMN}')
            cursor.execute(f'DELETE FROM "{name}".django_migrations '
                           "WHERE app = 'billable' AND name = %s", [NEW])
    forget_recorded(lagging)  # changed by hand: their records no longer hold

    # when
    out = _Terminal()
    call_command("migrate_schemas", "--tenant", "--noinput", stdout=out)

    # then: the bar is redrawn in place after each schema, and migrate's own chatter is left out
    text = out.getvalue()
    assert "\r[" + "#" * 15 + "." * 15 + "] 1/2" in text
    assert "\r[" + "#" * 30 + "] 2/2" in text
    assert "Applying billable" not in text
    assert "Tenant schemas: 2 migrated" in text
    assert all(_has_column(name) for name in lagging)


@pytest.fixture
def template(committed: None) -> Iterator[str]:
    """A template schema (TENANT_BASE_SCHEMA) built at the current leaf; no tenant row."""
    name = f"tmpl_{secrets.token_hex(3)}"
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE SCHEMA "{name}"')
    try:
        call_command("migrate_schemas", "--tenant", "-s", name, "--noinput", "-v", "0",
                     stdout=io.StringIO())
        connection.set_schema_to_public()
        yield name
    finally:
        connection.set_schema_to_public()
        with connection.cursor() as cursor:
            cursor.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def test_the_template_schema_is_migrated_first(
    twenty: list[Tenant], template: str, released: None
) -> None:
    with override_settings(TENANT_BASE_SCHEMA=template):
        assert missing_migrations([template]) == {template: 1}
        migrated, skipped, text = _migrate()
        names = tenant_schema_names()
    assert names[0] == template
    assert migrated == len(names) and skipped == 0
    assert re.search(rf"\[1/\d+\] {template}: 1 migrations to apply", text)
    assert _has_column(template)


def test_a_parallel_executor_gets_the_template_migrated_first_under_its_lock(
    twenty: list[Tenant], template: str, released: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: every schema behind, the multiprocessing executor (recorded, not run)
    from django_tenants.migration_executors.multiproc import MultiprocessingExecutor

    from tenants.management.commands import migrate_schemas
    from tenants.schema_clone import TEMPLATE_LOCK_ID

    handed: list[str] = []
    locked: dict[str, bool] = {}
    real = migrate_schemas.run_migrations

    def record(self: Any, tenants: list[str]) -> None:
        handed.extend(tenants)

    def spy(*args: Any, **kwargs: Any) -> None:
        with connection.cursor() as cursor:
            # Held exclusively by another session: a shared try fails.
            cursor.execute("SELECT pg_try_advisory_xact_lock_shared(%s)", [TEMPLATE_LOCK_ID])
            locked[args[3]] = not cursor.fetchone()[0]
        real(*args, **kwargs)

    monkeypatch.setattr(MultiprocessingExecutor, "run_migrations", record)
    monkeypatch.setattr(migrate_schemas, "run_migrations", spy)

    # when
    with override_settings(TENANT_BASE_SCHEMA=template):
        call_command("migrate_schemas", "--tenant", "--executor", "multiprocessing",
                     "--noinput", "-v", "0", stdout=io.StringIO())
        names = tenant_schema_names()

    # then: the template was migrated here, by itself and holding its lock; the executor got
    # every other schema
    assert locked == {template: True}
    assert _has_column(template)
    assert template not in handed
    assert sorted(handed) == sorted(name for name in names if name != template)


def test_all_schemas_migrates_the_template_too(
    twenty: list[Tenant], template: str, released: None
) -> None:
    with override_settings(TENANT_BASE_SCHEMA=template):
        assert missing_migrations([template]) == {template: 1}
        call_command("migrate_schemas", "--tenant", "--all-schemas", "--noinput", "-v", "0",
                     stdout=io.StringIO())
        assert set(missing_migrations(tenant_schema_names()).values()) == {0}
    assert _has_column(template)
