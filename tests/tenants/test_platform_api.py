"""The platform API: onboarding, listing, changing and deleting tenants; tenant key creation."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connection

from tenants.models import ApiKey, Tenant, TenantStatus
from tenants.schema_migrations import forget_recorded
from tests.support.api import Api, assert_problem
from tests.support.tenants import TenantFixture, drop_tenants


def _schema_exists(name: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", [name])
        return cursor.fetchone() is not None


@pytest.fixture
def cleanup_tenants(cleanup_tenants: list[str]) -> Iterator[list[str]]:
    """tests/conftest.py's `cleanup_tenants`, and every spare schema, built or being built."""
    yield cleanup_tenants
    drop_tenants(Tenant.objects.filter(status__in=[TenantStatus.SPARE, TenantStatus.BUILDING]))


def test_onboarding_gives_a_working_tenant_at_once(
    api: Api, committed_platform_key: str, cleanup_tenants: list[str]
) -> None:
    cleanup_tenants.append("pa-new-one")
    response = api.post(
        "platform/tenants",
        json={"name": "New One", "slug": "pa-new-one", "rate_limit": "100/m"},
        key=committed_platform_key,
    )
    assert response.status == 201, response.body
    body = response.json
    assert body["tenant"] == {
        "slug": "pa-new-one",
        "name": "New One",
        "schema_name": "t_pa_new_one",
        "status": "active",
        "rate_limit": "100/m",
        "created_at": body["tenant"]["created_at"],
    }
    key = body["api_key"]
    assert key.startswith("bk_")
    assert _schema_exists("t_pa_new_one")
    listed = api.get("keys", key=key)
    assert listed.status == 200
    (only,) = listed.json["items"]
    assert set(only["scopes"]) == {"billing:read", "billing:write", "billing:grant", "admin"}


def test_onboarding_claims_a_spare_schema(
    api: Api, committed_platform_key: str, cleanup_tenants: list[str]
) -> None:
    from tenants.services import spare_pool_refill

    spare_pool_refill(target=1)
    spare = Tenant.objects.get(status=TenantStatus.SPARE)
    cleanup_tenants.append("pa-spare-claim")
    response = api.post(
        "platform/tenants", json={"name": "Spare", "slug": "pa-spare-claim"},
        key=committed_platform_key,
    )
    assert response.status == 201
    claimed = Tenant.objects.get(slug="pa-spare-claim")
    assert claimed.pk == spare.pk
    assert claimed.schema_name == "t_pa_spare_claim"
    assert _schema_exists("t_pa_spare_claim")
    assert not _schema_exists(spare.schema_name)
    assert not Tenant.objects.filter(status=TenantStatus.SPARE).exists()
    # The renamed schema carries its migration history with it.
    with connection.cursor() as cursor:
        cursor.execute('SELECT app FROM "t_pa_spare_claim".django_migrations')
        apps = {row[0] for row in cursor.fetchall()}
    assert "billable" in apps or not _has_billable_migrations()
    assert api.get("keys", key=response.json["api_key"]).status == 200


def _has_billable_migrations() -> bool:
    from django.db.migrations.loader import MigrationLoader

    return any(app == "billable" for app, _ in MigrationLoader(None).disk_migrations)


@pytest.mark.parametrize(
    "slug", ["ab", "1abc", "Abc", "a_bc", "a" * 41, "public", "admin", "template", "with space"]
)
def test_invalid_slugs_are_422(
    api: Api, platform_key: str, slug: str
) -> None:
    response = api.post("platform/tenants", json={"name": "X", "slug": slug}, key=platform_key)
    assert_problem(response, 422, "invalid_slug")
    assert not Tenant.objects.filter(slug=slug).exists()


def test_duplicate_slug_is_409(api: Api, platform_key: str, acme: TenantFixture) -> None:
    response = api.post("platform/tenants", json={"name": "X", "slug": "acme"}, key=platform_key)
    assert_problem(response, 409, "slug_taken")


def test_bad_rate_limit_is_422(api: Api, platform_key: str) -> None:
    response = api.post(
        "platform/tenants", json={"name": "X", "slug": "pa-rate", "rate_limit": "fast"},
        key=platform_key,
    )
    body = assert_problem(response, 422, "validation_error")
    assert body["errors"][0]["loc"] == ["body", "rate_limit"]


def test_list_and_get_exclude_spares(
    api: Api, platform_key: str, acme: TenantFixture, globex: TenantFixture
) -> None:
    Tenant.objects.create(
        slug="spare-zzz", name="(spare)", schema_name="spare_zzz", status=TenantStatus.SPARE
    )
    slugs = [t["slug"] for t in api.get("platform/tenants", key=platform_key).json["items"]]
    assert "acme" in slugs and "globex" in slugs and "spare-zzz" not in slugs
    assert api.get("platform/tenants/acme", key=platform_key).json["schema_name"] == "t_acme"
    assert_problem(api.get("platform/tenants/spare-zzz", key=platform_key), 404, "tenant_not_found")
    assert_problem(api.get("platform/tenants/nobody", key=platform_key), 404, "tenant_not_found")


def test_list_paginates_with_a_cursor(
    api: Api, platform_key: str, acme: TenantFixture, globex: TenantFixture
) -> None:
    first = api.get("platform/tenants", key=platform_key, query={"limit": 1}).json
    assert len(first["items"]) == 1 and first["next_cursor"]
    second = api.get(
        "platform/tenants", key=platform_key, query={"limit": 1, "cursor": first["next_cursor"]}
    ).json
    assert second["items"][0]["slug"] != first["items"][0]["slug"]
    bad = api.get("platform/tenants", key=platform_key, query={"cursor": "garbage!"})
    assert_problem(bad, 422, "validation_error")
    assert_problem(
        api.get("platform/tenants", key=platform_key, query={"limit": 0}), 422, "validation_error"
    )


def test_patch_suspends_and_changes_rate_limit(
    api: Api, platform_key: str, acme: TenantFixture
) -> None:
    response = api.patch(
        "platform/tenants/acme", json={"status": "suspended", "rate_limit": "0"}, key=platform_key
    )
    assert response.status == 200
    assert response.json["status"] == "suspended" and response.json["rate_limit"] == "0"
    assert_problem(api.get("keys", key=acme.key), 403, "tenant_suspended")
    assert api.patch(
        "platform/tenants/acme", json={"status": "active"}, key=platform_key
    ).status == 200
    assert api.get("keys", key=acme.key).status == 200
    assert_problem(
        api.patch("platform/tenants/acme", json={"status": "spare"}, key=platform_key),
        422, "validation_error",
    )


def test_delete_needs_confirmation_then_suspends_and_revokes(
    api: Api, platform_key: str, globex: TenantFixture
) -> None:
    assert_problem(
        api.delete("platform/tenants/globex", key=platform_key), 422, "confirmation_required"
    )
    assert_problem(
        api.delete("platform/tenants/globex", key=platform_key, query={"confirm": "acme"}),
        422, "confirmation_required",
    )
    assert api.get("keys", key=globex.key).status == 200
    response = api.delete("platform/tenants/globex", key=platform_key, query={"confirm": "globex"})
    assert response.status == 202
    assert response.json["status"] == "suspended"
    assert not ApiKey.objects.filter(tenant=globex.tenant, revoked_at__isnull=True).exists()
    assert_problem(api.get("keys", key=globex.key), 401, "api_key_revoked")
    # A tenant being deleted cannot be reactivated.
    assert_problem(
        api.patch("platform/tenants/globex", json={"status": "active"}, key=platform_key),
        409, "tenant_deleting",
    )


def test_platform_creates_tenant_keys_with_chosen_scopes(
    api: Api, platform_key: str, acme: TenantFixture
) -> None:
    response = api.post(
        "platform/tenants/acme/keys", json={"name": "reader", "scopes": ["billing:read"]},
        key=platform_key,
    )
    assert response.status == 201
    assert response.json["scopes"] == ["billing:read"]
    assert_problem(api.get("keys", key=response.json["key"]), 403, "insufficient_scope")
    assert_problem(
        api.post("platform/tenants/nobody/keys", json={"name": "x"}, key=platform_key),
        404, "tenant_not_found",
    )


def test_onboarding_never_claims_a_spare_still_being_built_or_behind(
    api: Api, committed_platform_key: str, cleanup_tenants: list[str]
) -> None:
    from tenants.services import spare_pool_refill

    spare_pool_refill(target=2)
    building, behind = Tenant.objects.filter(status=TenantStatus.SPARE).order_by("id")
    # given: one spare whose build is still running, one built by code older than this
    Tenant.objects.filter(pk=building.pk).update(status=TenantStatus.BUILDING)
    with connection.cursor() as cursor:
        cursor.execute(
            f'DELETE FROM "{behind.schema_name}".django_migrations '
            "WHERE app = 'billable' AND name = '0004_idempotency_customer_ids'"
        )
    forget_recorded([behind.schema_name])  # changed by hand: its record no longer holds
    cleanup_tenants.append("pa-no-half-built")

    # when
    response = api.post("platform/tenants", json={"name": "X", "slug": "pa-no-half-built"},
                        key=committed_platform_key)

    # then: built by migrations instead; both spares untouched
    assert response.status == 201, response.body
    tenant = Tenant.objects.get(slug="pa-no-half-built")
    assert tenant.pk not in (building.pk, behind.pk)
    assert Tenant.objects.get(pk=building.pk).status == TenantStatus.BUILDING
    assert Tenant.objects.get(pk=behind.pk).status == TenantStatus.SPARE
    assert _schema_exists(building.schema_name) and _schema_exists(behind.schema_name)
    assert api.get("keys", key=response.json["api_key"]).status == 200
    # The next refill (nothing else builds while it holds the lock) clears the abandoned build.
    spare_pool_refill(target=2)
    assert not Tenant.objects.filter(pk=building.pk).exists()
    assert not _schema_exists(building.schema_name)
    Tenant.objects.get(pk=behind.pk).delete(force_drop=True)
