"""Health checks at the server root."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone

from tests.support.api import Api
from tests.support.tenants import TenantFixture


def test_healthz(api: Api) -> None:
    response = api.get("/healthz")
    assert response.status == 200 and response.json == {"status": "ok"}


def test_readyz_checks_database_and_redis(api: Api, db: None) -> None:
    from tenants.selectors import citus_enabled

    response = api.get("/readyz")
    assert response.status == 200, response.body
    body = dict(response.json)
    if citus_enabled():  # a Citus cluster's test database (deploy/citus/pytest.sh)
        cluster = body.pop("cluster")
        assert cluster["unreachable"] == [] and len(cluster["nodes"]) >= 2, cluster
    assert body == {
        "status": "ready",
        "migrations": {"pending": False, "public": 0, "tenant_schemas_behind": 0},
    }


def test_readyz_reports_pending_migrations(api: Api, db: None) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM django_migrations WHERE app = 'tenants'")
    response = api.get("/readyz")
    assert response.status == 503
    assert "database" in response.json["failures"]
    assert response.json["migrations"]["pending"] is True
    assert response.json["migrations"]["public"] > 0


def _age(tenant: Any, seconds: int) -> None:
    from tenants.models import Tenant

    Tenant.objects.filter(pk=tenant.pk).update(
        created_at=timezone.now() - timedelta(seconds=seconds)
    )


def _unapply_last_billable_migration(tenant: Any) -> None:
    """Make a tenant's schema lack a migration (inside the test's transaction)."""
    from django.db import connection

    from tenants.schema_migrations import forget_recorded

    with connection.cursor() as cursor:
        cursor.execute(
            f'DELETE FROM "{tenant.schema_name}".django_migrations '
            "WHERE app = 'billable' AND name = '0003_orders_referrals'"
        )
    # Changed by hand: the schema's record of being current no longer holds.
    forget_recorded([tenant.schema_name])


def test_readyz_is_503_while_a_tenant_schema_is_behind(api: Api, acme: TenantFixture) -> None:
    # given: acme's schema lacks its last billable migration (inside the test's transaction)

    from tenants.schema_migrations import forget_status

    _age(acme.tenant, 3600)
    _unapply_last_billable_migration(acme.tenant)
    forget_status()

    # when
    response = api.get("/readyz")

    # then: code whose migrations have not reached every tenant is not ready to serve them
    assert response.status == 503, response.body
    assert response.json["migrations"] == {
        "pending": True, "public": 0, "tenant_schemas_behind": 1,
    }
    assert "tenant schemas behind" in response.json["failures"]["database"]


def test_readyz_leaves_out_a_tenant_whose_schema_is_being_built(
    api: Api, acme: TenantFixture
) -> None:

    from tenants.schema_migrations import forget_status

    _age(acme.tenant, 5)  # created a moment ago: its schema may still be migrating
    _unapply_last_billable_migration(acme.tenant)
    forget_status()
    response = api.get("/readyz")
    assert response.status == 200, response.body
    assert response.json["migrations"]["tenant_schemas_behind"] == 0


def test_the_schemas_the_check_reads_are_the_tenants_past_the_first_minute(
    acme: TenantFixture,
) -> None:
    # A script that checks /readyz against one tenant (deploy/citus/worker_down.py) waits until
    # its schema is among these: before that the check answers without reading it.
    from tenants.schema_migrations import NEW_SCHEMA_GRACE_SECONDS, readiness_schema_names

    _age(acme.tenant, NEW_SCHEMA_GRACE_SECONDS - 5)
    assert acme.tenant.schema_name not in readiness_schema_names()
    _age(acme.tenant, NEW_SCHEMA_GRACE_SECONDS + 1)
    assert acme.tenant.schema_name in readiness_schema_names()


def test_readyz_caches_the_tenant_check_until_a_migration_run(
    api: Api, acme: TenantFixture
) -> None:

    from tenants.schema_migrations import forget_status

    _age(acme.tenant, 3600)
    forget_status()
    assert api.get("/readyz").json["migrations"]["tenant_schemas_behind"] == 0
    _unapply_last_billable_migration(acme.tenant)
    # The cached answer stands until it expires or migrate_schemas clears it.
    assert api.get("/readyz").json["migrations"]["tenant_schemas_behind"] == 0
    forget_status()
    assert api.get("/readyz").json["migrations"]["tenant_schemas_behind"] == 1


def test_readyz_leaves_out_the_template_schema(api: Api, db: None) -> None:
    # given: a configured template with no migration at all (the worker migrates it; no
    # request is ever served from it)
    from django.db import connection
    from django.test import override_settings

    from tenants.schema_migrations import forget_status

    with connection.cursor() as cursor:
        cursor.execute('CREATE SCHEMA "tmpl_readyz"')
    with override_settings(TENANT_BASE_SCHEMA="tmpl_readyz"):
        forget_status()

        # when
        response = api.get("/readyz")

    # then: no tenant schema is behind
    assert response.status == 200, response.body
    assert response.json["migrations"]["tenant_schemas_behind"] == 0
