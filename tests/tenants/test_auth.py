"""The authentication matrix of api.md: every 401/403 code, both header styles, isolation."""

from __future__ import annotations

from datetime import timedelta

from django.db import connection
from django.utils import timezone

from tenants.models import ApiKey
from tenants.services import api_key_revoke, tenant_update
from tests.support.api import Api, assert_problem
from tests.support.tenants import TenantFixture, make_key


def test_missing_key_is_401_with_www_authenticate(api: Api, acme: TenantFixture) -> None:
    response = api.get("keys")
    assert_problem(response, 401, "not_authenticated")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_malformed_and_unknown_keys_are_401(api: Api, acme: TenantFixture) -> None:
    for key in ("nonsense", "bk_short_x", acme.key[:-1] + ("A" if acme.key[-1] != "A" else "B")):
        assert_problem(api.get("keys", key=key), 401, "not_authenticated")


def test_bearer_and_header_both_work(api: Api, acme: TenantFixture) -> None:
    assert api.get("keys", key=acme.key).status == 200
    bearer = api.get("keys", headers={"Authorization": f"Bearer {acme.key}"})
    assert bearer.status == 200
    assert api.get("keys", headers={"Authorization": f"Basic {acme.key}"}).status == 401


def test_revoked_key_is_401_api_key_revoked(api: Api, acme: TenantFixture) -> None:
    key, raw = make_key(acme.tenant)
    assert api.get("keys", key=raw).status == 200  # warms the cache
    api_key_revoke(key=key)
    assert_problem(api.get("keys", key=raw), 401, "api_key_revoked")


def test_expired_key_is_401_api_key_expired(api: Api, acme: TenantFixture) -> None:
    _key, raw = make_key(acme.tenant, expires_at=timezone.now() - timedelta(seconds=1))
    assert_problem(api.get("keys", key=raw), 401, "api_key_expired")


def test_key_expiring_later_works_until_then(api: Api, acme: TenantFixture) -> None:
    _key, raw = make_key(acme.tenant, expires_at=timezone.now() + timedelta(hours=1))
    assert api.get("keys", key=raw).status == 200


def test_suspended_tenant_is_403_and_reactivation_restores(
    api: Api, acme: TenantFixture
) -> None:
    assert api.get("keys", key=acme.key).status == 200
    tenant_update(tenant=acme.tenant, status="suspended")
    assert_problem(api.get("keys", key=acme.key), 403, "tenant_suspended")
    tenant_update(tenant=acme.tenant, status="active")
    assert api.get("keys", key=acme.key).status == 200


def test_missing_scope_is_403_insufficient_scope(api: Api, acme: TenantFixture) -> None:
    _key, raw = make_key(acme.tenant, scopes=["billing:read"])
    body = assert_problem(api.get("keys", key=raw), 403, "insufficient_scope")
    assert body["required_scope"] == "admin"


def test_platform_key_on_tenant_route_is_wrong_key_type(
    api: Api, acme: TenantFixture, platform_key: str
) -> None:
    assert_problem(api.get("keys", key=platform_key), 403, "wrong_key_type")


def test_tenant_key_on_platform_route_is_wrong_key_type(api: Api, acme: TenantFixture) -> None:
    assert_problem(api.get("platform/tenants", key=acme.key), 403, "wrong_key_type")


def test_unknown_route_is_404_before_authentication(api: Api) -> None:
    assert_problem(api.get("billing/does-not-exist"), 404, "not_found")
    assert_problem(api.get("/nowhere"), 404, "not_found")


def test_other_tenants_key_id_is_404(api: Api, acme: TenantFixture, globex: TenantFixture) -> None:
    theirs, _raw = make_key(globex.tenant)
    assert_problem(api.delete(f"keys/{theirs.pk}", key=acme.key), 404, "api_key_not_found")
    theirs.refresh_from_db()
    assert theirs.revoked_at is None


def test_lists_show_only_own_keys(api: Api, acme: TenantFixture, globex: TenantFixture) -> None:
    make_key(globex.tenant, name="globex-only")
    names = {item["name"] for item in api.get("keys", key=acme.key).json["items"]}
    assert "globex-only" not in names
    own = set(ApiKey.objects.filter(tenant=acme.tenant).values_list("name", flat=True))
    assert names == own


def test_malformed_key_id_is_404_not_422(api: Api, acme: TenantFixture) -> None:
    assert_problem(api.delete("keys/not-a-uuid", key=acme.key), 404, "api_key_not_found")


def test_last_used_at_written_at_most_once_a_minute(api: Api, acme: TenantFixture) -> None:
    key, raw = make_key(acme.tenant)
    assert key.last_used_at is None
    api.get("keys", key=raw)
    key.refresh_from_db()
    first = key.last_used_at
    assert first is not None
    api.get("keys", key=raw)
    key.refresh_from_db()
    assert key.last_used_at == first


def test_warm_lookup_costs_no_query(
    api: Api, acme: TenantFixture, django_assert_max_num_queries: object
) -> None:
    api.get("keys", key=acme.key)  # warm
    from tenants.resolution import resolve

    with django_assert_max_num_queries(0):  # type: ignore[operator]
        context = resolve(acme.key)
    assert context.tenant is not None and context.tenant.slug == "acme"


def test_connection_is_public_after_requests(api: Api, acme: TenantFixture) -> None:
    for response in (
        api.get("keys", key=acme.key),
        api.delete("keys/00000000-0000-0000-0000-000000000000", key=acme.key),
        api.post("keys", json={"name": ""}, key=acme.key),
    ):
        assert response.status in (200, 404, 422)
        assert connection.schema_name == "public"
        with connection.cursor() as cursor:
            cursor.execute("SHOW search_path")
            (path,) = cursor.fetchone()
        assert "t_acme" not in path and path.startswith("public")
