"""Session-wide fixtures: real PostgreSQL and Redis, two committed tenants, an HTTP helper.

The test database is created once per session; the two tenants (`acme`, `globex`) and their keys
are committed once, and every test runs inside a transaction that is rolled back, so a test sees
them fresh. Tests that need committed data (threads, servers) use `committed` and their own
tenants. Fixtures shared by several packages live here; the helpers they are built on, and that
tests import, live in tests/support/.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django_ratelimit import core as ratelimit_core
from django_tenants.utils import tenant_context

from billable.models import Customer, Offer, Product
from billable.selectors import CustomerRef
from billable.services.catalog import ItemSpec, offer_create, product_create
from billable.services.customers import customer_ensure
from tenants.models import Tenant
from tenants.services import platform_key_create, tenant_onboard, tenant_settings_update
from tests.support.api import Api
from tests.support.concurrency import ConcTenant
from tests.support.signals import captured_billing_signals
from tests.support.tenants import (
    TenantFixture,
    drop_tenants,
    fresh_tenant,
    require_test_database,
)


def _clear_cache_prefix() -> None:
    client = redis.Redis.from_url(settings.REDIS_URL)
    prefix = settings.CACHES["default"].get("KEY_PREFIX", "")
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(scope="session")
def committed_tenants(
    django_db_setup: None, django_db_blocker: Any
) -> dict[str, TenantFixture]:
    with django_db_blocker.unblock():
        result = {}
        for slug in ("acme", "globex"):
            tenant, key_row, raw = tenant_onboard(name=slug.title(), slug=slug)
            result[slug] = TenantFixture(tenant=tenant, key=raw, key_row=key_row)
    return result


@pytest.fixture(scope="session")
def committed_platform_key(django_db_setup: None, django_db_blocker: Any) -> str:
    with django_db_blocker.unblock():
        _key, raw = platform_key_create(name="tests")
    return raw


@pytest.fixture(autouse=True)
def _isolated_cache() -> Iterator[None]:
    """Each test starts with an empty cache (only this run's prefix is touched)."""
    _clear_cache_prefix()
    yield
    _clear_cache_prefix()


@pytest.fixture(autouse=True)
def _public_schema_after_test() -> Iterator[None]:
    yield
    connection.set_schema_to_public()


@pytest.fixture
def acme(committed_tenants: dict[str, TenantFixture], db: None) -> TenantFixture:
    return committed_tenants["acme"]


@pytest.fixture
def globex(committed_tenants: dict[str, TenantFixture], db: None) -> TenantFixture:
    return committed_tenants["globex"]


@pytest.fixture
def platform_key(committed_platform_key: str, db: None) -> str:
    return committed_platform_key


@pytest.fixture
def api(client: Client) -> Api:
    return Api(client)


@pytest.fixture
def operator(db: None) -> Client:
    """A client logged in to the admin as a superuser."""
    client = Client()
    client.force_login(
        User.objects.create_superuser("operator", "operator@example.com", "correct-horse-9")
    )
    return client


# --- The billing engine in acme's schema


@pytest.fixture
def in_acme(acme: TenantFixture) -> Iterator[TenantFixture]:
    """Run service code in acme's schema (inside the test's rolled-back transaction)."""
    connection.set_schema(acme.tenant.schema_name)
    yield acme
    connection.set_schema_to_public()


@pytest.fixture
def catalog(in_acme: TenantFixture) -> dict[str, Product | Offer]:
    items: dict[str, Product | Offer] = {
        "REPORTS": product_create(
            key="reports", name="Reports", product_type="quantity",
            features=["report_generation"],
        ),
        "PRO": product_create(
            key="pro", name="Pro", product_type="period", features=["priority_support"]
        ),
        "UNL": product_create(
            key="unl", name="Unlimited", product_type="unlimited", features=["exports"]
        ),
    }
    items["REPORTS_10"] = offer_create(
        sku="reports_10", name="10 reports", price=Decimal("9.00"), currency="usd",
        items=[ItemSpec("REPORTS", 10, "days", 30)],
    )
    items["REPORTS_5_FOREVER"] = offer_create(
        sku="reports_5_forever", name="5 reports", price=Decimal("4.00"), currency="USD",
        items=[ItemSpec("REPORTS", 5)],
    )
    items["PRO_MONTH"] = offer_create(
        sku="pro_month", name="Pro month", price=Decimal("19.00"), currency="USD",
        items=[ItemSpec("PRO", 1, "months", 1)],
    )
    items["UNL_FOREVER"] = offer_create(
        sku="unl_forever", name="Unlimited", price=Decimal("99.00"), currency="USD",
        items=[ItemSpec("UNL", 1)],
    )
    return items


@pytest.fixture
def alice(in_acme: TenantFixture) -> Customer:
    return customer_ensure(CustomerRef(external_id="alice"))


@pytest.fixture
def sent() -> Iterator[dict[str, list[dict[str, Any]]]]:
    """The keyword arguments of every billing signal sent during the test, by signal name."""
    with captured_billing_signals() as calls:
        yield calls


# --- Committed data. pytest-django's transactional tests truncate every public table afterwards,
# which would erase the session's tenants and keys; tests that need real commits (threads,
# servers, schema builds) use `committed` instead and remove what they create themselves.


@pytest.fixture
def committed(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """Database access with real commits: no wrapping transaction, no flush afterwards."""
    with django_db_blocker.unblock():
        # pytest-django creates the test database only when a collected test asks for `db`;
        # never commit into a development database.
        require_test_database()
        yield
        connection.set_schema_to_public()


@pytest.fixture
def cleanup_tenants(committed: None) -> Iterator[list[str]]:
    """Slugs appended here are revoked and dropped (schema included) after the test."""
    created: list[str] = []
    yield created
    drop_tenants(Tenant.objects.filter(slug__in=created))


@pytest.fixture(scope="module")
def conc(django_db_setup: None, django_db_blocker: Any) -> Iterator[ConcTenant]:
    """A committed tenant for races from real threads (tests/support/concurrency.py).

    No rate limit, a small catalog and referral rewards in its schema; one per module, dropped
    afterwards.
    """
    with django_db_blocker.unblock(), fresh_tenant(
        "conc", name="Concurrency", rate_limit="0"
    ) as fresh:
        with tenant_context(fresh.tenant):
            product_create(
                key="credits", name="Credits", product_type="quantity", features=["compute"]
            )
            product_create(key="pro", name="Pro access", product_type="period")
            product_create(key="bonus", name="Bonus", product_type="quantity", features=["bonus"])
            offers = {
                "c20_30d": offer_create(
                    sku="c20_30d", name="20 credits", price=Decimal("2"), currency="USD",
                    items=[ItemSpec("CREDITS", 20, "days", 30)],
                ),
                "c30": offer_create(
                    sku="c30", name="30 credits", price=Decimal("3"), currency="USD",
                    items=[ItemSpec("CREDITS", 30)],
                ),
                "c10": offer_create(
                    sku="c10", name="10 credits", price=Decimal("1"), currency="USD",
                    items=[ItemSpec("CREDITS", 10)],
                ),
                "pro_30d": offer_create(
                    sku="pro_30d", name="Pro, 30 days", price=Decimal("9"), currency="USD",
                    items=[ItemSpec("PRO", 1, "days", 30)],
                ),
                "trial": offer_create(
                    sku="trial_5", name="Trial", price=Decimal("0"), currency="USD",
                    items=[ItemSpec("CREDITS", 5, "days", 7)],
                    metadata={"is_trial": True},
                ),
                "reward": offer_create(
                    sku="reward_3", name="Reward", price=Decimal("0"), currency="USD",
                    items=[ItemSpec("BONUS", 3)],
                ),
            }
        tenant_settings_update(tenant_id=fresh.tenant.pk, changes={
            "referral_reward_sku": "reward_3", "referee_reward_sku": "reward_3"})
        yield ConcTenant(tenant=fresh.tenant, key=fresh.key, offers=offers)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        marker = item.get_closest_marker("django_db")
        uses_flush = bool(marker and marker.kwargs.get("transaction"))
        fixtures = getattr(item, "fixturenames", ())
        if uses_flush or "transactional_db" in fixtures or "live_server" in fixtures:
            raise pytest.UsageError(
                f"{item.nodeid}: transactional_db / django_db(transaction=True) / live_server "
                "truncate the public tables after the test and destroy the session tenants. "
                "Use the `committed` fixture (tests/conftest.py) and clean up what the test "
                "creates; for a live server use tests/support/servers.py (live_server_url)."
            )


@pytest.fixture
def limiter_now(monkeypatch: pytest.MonkeyPatch) -> float:
    """Hold the rate limiter's clock still for a test; the test moves it on explicitly.

    django-ratelimit's fixed windows roll at an offset of each counted value, so a test that
    straddled a roll would see its count start afresh.
    """
    now = time.time()
    monkeypatch.setattr(ratelimit_core, "time", SimpleNamespace(time=lambda: now))
    return now
