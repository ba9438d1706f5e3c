"""Black-box flows against the production server (gunicorn, 2 workers) over real HTTP."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tenants.models import PlatformKey, Tenant
from tenants.resolution import LOCAL_SECONDS
from tenants.services import platform_key_create
from tests.support.processes import Server
from tests.support.tenants import drop_tenants

pytestmark = pytest.mark.e2e

PROBLEM_JSON = "application/problem+json"


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith(PROBLEM_JSON), response.headers
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert body["status"] == status, body
    return body


@pytest.fixture
def platform_key(committed: None) -> Iterator[str]:
    """A committed platform key, removed afterwards."""
    key, raw = platform_key_create(name=f"e2e-{secrets.token_hex(3)}")
    yield raw
    PlatformKey.objects.filter(pk=key.pk).delete()


@pytest.fixture
def disposable_slugs(committed: None) -> Iterator[list[str]]:
    """Slugs the test onboards; their tenants and schemas are dropped afterwards."""
    slugs: list[str] = []
    yield slugs
    drop_tenants(Tenant.objects.filter(slug__in=slugs))


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=10.0) as client:
        yield client


def test_health_endpoints_answer_200(http: httpx.Client, server: Server) -> None:
    # given: the server reported both workers booted
    assert server.log().count("Booting worker with pid") >= 2

    # when / then
    healthz = http.get("/healthz")
    readyz = http.get("/readyz")
    assert healthz.status_code == 200, healthz.text
    assert healthz.json() == {"status": "ok"}
    assert readyz.status_code == 200, readyz.text
    assert readyz.json()["status"] == "ready"
    assert readyz.json()["migrations"]["pending"] is False


@pytest.mark.parametrize("path", ["/api/v1/no-such-thing", "/no-such-page"])
def test_unknown_path_is_a_problem_404(http: httpx.Client, path: str) -> None:
    response = http.get(path)

    body = assert_problem(response, 404, "not_found")
    assert body["type"].endswith("/not_found")
    assert path in body["detail"]


def test_onboard_revoke_and_suspend_through_the_production_server(
    http: httpx.Client, platform_key: str, disposable_slugs: list[str]
) -> None:
    platform = {"X-API-Key": platform_key}
    slug = f"e2e-{secrets.token_hex(4)}"
    disposable_slugs.append(slug)

    # onboarding answers with a first key that works at once
    created = http.post(
        "/api/v1/platform/tenants", json={"name": "E2E", "slug": slug}, headers=platform
    )
    assert created.status_code == 201, created.text
    assert created.json()["tenant"]["slug"] == slug
    tenant_key = {"X-API-Key": created.json()["api_key"]}
    listed = http.get("/api/v1/keys", headers=tenant_key)
    assert listed.status_code == 200, listed.text
    assert len(listed.json()["items"]) == 1

    # a second key, used often enough that both workers have resolved it
    second = http.post("/api/v1/keys", json={"name": "second"}, headers=tenant_key)
    assert second.status_code == 201, second.text
    second_key = {"X-API-Key": second.json()["key"]}
    for _ in range(8):
        warm = http.get("/api/v1/keys", headers=second_key)
        assert warm.status_code == 200, warm.text

    # revoking it is seen by every worker within a second (each keeps a resolved key that long)
    revoked = http.delete(f"/api/v1/keys/{second.json()['id']}", headers=tenant_key)
    assert revoked.status_code == 204, revoked.text
    time.sleep(LOCAL_SECONDS + 0.2)
    for _ in range(12):
        assert_problem(http.get("/api/v1/keys", headers=second_key), 401, "api_key_revoked")
    assert http.get("/api/v1/keys", headers=tenant_key).status_code == 200

    # suspending the tenant stops its key within a second
    suspended = http.patch(
        f"/api/v1/platform/tenants/{slug}", json={"status": "suspended"}, headers=platform
    )
    assert suspended.status_code == 200, suspended.text
    assert suspended.json()["status"] == "suspended"
    time.sleep(LOCAL_SECONDS + 0.2)
    for _ in range(6):
        assert_problem(http.get("/api/v1/keys", headers=tenant_key), 403, "tenant_suspended")

    # and reactivating it lets the key in again
    active = http.patch(
        f"/api/v1/platform/tenants/{slug}", json={"status": "active"}, headers=platform
    )
    assert active.status_code == 200, active.text
    time.sleep(LOCAL_SECONDS + 0.2)
    for _ in range(4):
        assert http.get("/api/v1/keys", headers=tenant_key).status_code == 200
