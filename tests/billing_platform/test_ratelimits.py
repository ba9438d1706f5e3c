"""Rate limits: per tenant, per IP on public routes, per IP on failed authentication."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import RequestFactory

from billing_platform.core.ratelimits import client_ip
from tenants.models import Tenant
from tenants.services import tenant_update
from tests.support.api import Api, assert_problem
from tests.support.tenants import TenantFixture, make_key

# The limiter's fixed windows must not roll in the middle of a test.
pytestmark = pytest.mark.usefixtures("limiter_now")


def _limit(tenant: Tenant, rate: str) -> None:
    tenant_update(tenant=tenant, rate_limit=rate)


def test_tenant_limit_counts_down_then_429(api: Api, acme: TenantFixture) -> None:
    _limit(acme.tenant, "3/m")
    remaining = []
    for _ in range(3):
        response = api.get("keys", key=acme.key)
        assert response.status == 200
        assert response.headers["RateLimit-Limit"] == "3"
        remaining.append(response.headers["RateLimit-Remaining"])
        assert 1 <= int(response.headers["RateLimit-Reset"]) <= 60
    assert remaining == ["2", "1", "0"]
    limited = api.get("keys", key=acme.key)
    body = assert_problem(limited, 429, "rate_limited")
    assert body["detail"]
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert limited.headers["RateLimit-Remaining"] == "0"
    assert limited.headers["RateLimit-Limit"] == "3"


def test_all_keys_of_a_tenant_share_its_limit(api: Api, acme: TenantFixture) -> None:
    _key, other = make_key(acme.tenant)
    _limit(acme.tenant, "2/m")
    assert api.get("keys", key=acme.key).status == 200
    assert api.get("keys", key=other).status == 200
    assert_problem(api.get("keys", key=other), 429, "rate_limited")
    assert_problem(api.get("keys", key=acme.key), 429, "rate_limited")


def test_tenants_do_not_share_limits(api: Api, acme: TenantFixture, globex: TenantFixture) -> None:
    _limit(acme.tenant, "1/m")
    assert api.get("keys", key=acme.key).status == 200
    assert api.get("keys", key=acme.key).status == 429
    assert api.get("keys", key=globex.key).status == 200


def test_zero_means_unlimited_without_headers(api: Api, acme: TenantFixture) -> None:
    _limit(acme.tenant, "0")
    for _ in range(20):
        response = api.get("keys", key=acme.key)
        assert response.status == 200
    assert "RateLimit-Limit" not in response.headers


def test_platform_keys_and_health_are_never_limited(
    api: Api, platform_key: str, settings: Any
) -> None:
    settings.PUBLIC_RATE_LIMIT = "1/m"
    settings.AUTH_FAILURE_RATE_LIMIT = "1/m"
    for _ in range(10):
        assert api.get("platform/tenants", key=platform_key).status == 200
        assert api.get("/healthz").status == 200
        assert api.get("/readyz").status == 200


def test_failed_authentication_is_limited_per_ip_without_locking_out_valid_keys(
    api: Api, acme: TenantFixture, settings: Any
) -> None:
    settings.AUTH_FAILURE_RATE_LIMIT = "3/m"
    wrong = acme.key[:-4] + "zzzz"
    for _ in range(3):
        assert_problem(api.get("keys", key=wrong), 401, "not_authenticated")
    limited = api.get("keys", key=wrong)
    assert_problem(limited, 429, "rate_limited")
    assert "Retry-After" in limited.headers
    assert_problem(api.get("keys"), 429, "rate_limited")  # a missing key is a failure too
    assert api.get("keys", key=acme.key).status == 200
    # Another address is not affected.
    other_ip = api.client.get("/api/v1/keys", HTTP_X_API_KEY=wrong, REMOTE_ADDR="10.9.9.9")
    assert other_ip.status_code == 401


def test_an_ipv6_client_is_counted_by_its_slash_64(
    api: Api, acme: TenantFixture, settings: Any
) -> None:
    # One host usually holds a whole /64: hopping between its addresses must not reset the count.
    settings.AUTH_FAILURE_RATE_LIMIT = "2/m"
    wrong = acme.key[:-4] + "zzzz"

    def attempt(ip: str) -> int:
        return int(api.client.get("/api/v1/keys", HTTP_X_API_KEY=wrong, REMOTE_ADDR=ip).status_code)

    assert [attempt(f"2001:db8:1:2::{n}") for n in (1, 2, 3)] == [401, 401, 429]
    assert attempt("2001:db8:1:3::1") == 401  # another /64
    assert attempt("::ffff:10.1.1.1") == 401
    assert attempt("10.1.1.1") == 401
    assert attempt("::ffff:10.1.1.1") == 429  # an IPv4-mapped address is its IPv4 address


def test_public_catalog_is_opt_in_and_limited_per_ip(
    api: Api, acme: TenantFixture, catalog: dict[str, Any], settings: Any
) -> None:
    from tenants.services import tenant_settings_update

    assert_problem(api.get("public/acme/catalog"), 404, "not_found")
    assert_problem(api.get("public/nobody/catalog"), 404, "not_found")
    tenant_settings_update(tenant_id=acme.tenant.pk, changes={"public_catalog": True})
    response = api.get("public/acme/catalog")
    assert response.status == 200
    skus = [offer["sku"] for offer in response.json["items"]]
    assert "REPORTS_10" in skus
    assert response.headers["RateLimit-Limit"] == "60"
    settings.PUBLIC_RATE_LIMIT = "1/m"
    assert api.get("public/acme/catalog").status == 200
    assert_problem(api.get("public/acme/catalog"), 429, "rate_limited")


def test_signup_is_absent_unless_enabled(api: Api, settings: Any, db: None) -> None:
    settings.PLATFORM_OPEN_SIGNUP = False
    for body in ({"name": "X", "slug": "sign-up-a", "email": "a@b.co"}, {"bad": 1}, None):
        assert_problem(api.post("public/signup", json=body), 404, "not_found")
    assert not Tenant.objects.filter(slug="sign-up-a").exists()
    for method in ("GET", "PUT", "DELETE"):
        assert_problem(api.request(method, "public/signup"), 404, "not_found")
    assert "/api/v1/public/signup" not in api.get("openapi.json").json["paths"]
    # Open, the route is there: in the schema, and other methods are 405.
    settings.PLATFORM_OPEN_SIGNUP = True
    assert_problem(api.get("public/signup"), 405, "method_not_allowed")
    assert "/api/v1/public/signup" in api.get("openapi.json").json["paths"]


def test_signup_creates_a_working_tenant_and_is_limited(
    api: Api, settings: Any, committed: None
) -> None:
    settings.PLATFORM_OPEN_SIGNUP = True
    settings.SIGNUP_RATE_LIMIT = "1/h"
    try:
        response = api.post("public/signup",
                            json={"name": "Signed", "slug": "sign-up-b", "email": "o@p.co"})
        assert response.status == 201, response.body
        assert api.get("keys", key=response.json["api_key"]).status == 200
        assert Tenant.objects.get(slug="sign-up-b").contact_email == "o@p.co"
        again = api.post("public/signup",
                         json={"name": "Again", "slug": "sign-up-c", "email": "o@p.co"})
        assert_problem(again, 429, "rate_limited")
        assert not Tenant.objects.filter(slug="sign-up-c").exists()
    finally:
        for tenant in Tenant.objects.filter(slug__in=["sign-up-b", "sign-up-c"]):
            tenant.delete(force_drop=True)


def test_bad_signup_body_is_422_when_enabled(api: Api, settings: Any) -> None:
    settings.PLATFORM_OPEN_SIGNUP = True
    assert_problem(api.post("public/signup", json={"name": "X", "slug": "ok-slug",
                                                   "email": "nope"}), 422, "validation_error")


@pytest.mark.parametrize(
    ("hops", "forwarded", "expected"),
    [
        (0, "1.1.1.1", "127.0.0.9"),
        (1, "1.1.1.1", "1.1.1.1"),
        (1, "6.6.6.6, 1.1.1.1", "1.1.1.1"),
        (2, "6.6.6.6, 1.1.1.1, 10.0.0.2", "1.1.1.1"),
        (2, "1.1.1.1", "127.0.0.9"),
    ],
)
def test_client_ip_trusts_only_the_configured_hops(
    settings: Any, hops: int, forwarded: str, expected: str
) -> None:
    settings.TRUSTED_PROXY_HOPS = hops
    request = RequestFactory().get("/", REMOTE_ADDR="127.0.0.9", HTTP_X_FORWARDED_FOR=forwarded)
    assert client_ip(request) == expected
