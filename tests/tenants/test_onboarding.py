"""Onboarding and the spare-schema pool under races, against real PostgreSQL from real threads.

Every test here commits (schemas are built and renamed for real), so each removes what it made:
the tenants it names and every spare schema, built or being built.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connection, connections
from django.test import override_settings
from django_tenants.signals import schema_pre_migration

from billable.selectors import verified_tenants
from billable.services.sweep import due_tenants_sweep
from tenants.models import Tenant, TenantStatus
from tenants.schema_migrations import missing_migrations, tenant_schemas
from tenants.services import spare_pool_refill, tenant_onboard
from tests.support.api import Api, Response, assert_problem
from tests.support.concurrency import hammer, statuses
from tests.support.tenants import drop_tenants

JOIN_TIMEOUT = 180.0


def test_the_module_runs_on_the_test_database(db: None) -> None:
    assert str(connection.settings_dict["NAME"]).startswith("test_")


def _schemas(prefix: str) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)", [prefix]
        )
        return {row[0] for row in cursor.fetchall()}


def _drop_pool() -> None:
    drop_tenants(Tenant.objects.filter(status__in=[TenantStatus.SPARE, TenantStatus.BUILDING]))


@pytest.fixture
def made(cleanup_tenants: list[str]) -> Iterator[list[str]]:
    """`cleanup_tenants`, starting and ending with an empty spare pool."""
    _drop_pool()
    yield cleanup_tenants
    _drop_pool()


def _threads(*targets: Callable[[], None]) -> list[BaseException]:
    """Run each target in its own thread (own connection); the exceptions they raised."""
    failures: list[BaseException] = []

    def run(target: Callable[[], None]) -> None:
        try:
            target()
        except BaseException as exc:  # reported to the test
            failures.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(t,)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    return failures


# --- Slugs.


@pytest.mark.parametrize("slug", ["pa-nl\n", "pa-crlf\r\n", "pa-nl\n\n"])
def test_a_slug_with_a_line_break_is_422(api: Api, platform_key: str, slug: str) -> None:
    response = api.post("platform/tenants", json={"name": "X", "slug": slug}, key=platform_key)
    assert_problem(response, 422, "invalid_slug")
    assert not Tenant.objects.filter(slug__startswith="pa-nl").exists()
    assert not Tenant.objects.filter(slug__startswith="pa-crlf").exists()


def test_a_rate_limit_with_a_line_break_is_422(api: Api, platform_key: str) -> None:
    response = api.post(
        "platform/tenants", json={"name": "X", "slug": "pa-rate-nl", "rate_limit": "10/m\n"},
        key=platform_key,
    )
    body = assert_problem(response, 422, "validation_error")
    assert body["errors"][0]["loc"] == ["body", "rate_limit"]


# --- Concurrent onboardings of one slug.


@pytest.mark.parametrize("spares", [0, 3, 6])
def test_six_onboardings_of_one_slug_make_one_tenant_and_five_409s(
    committed_platform_key: str, made: list[str], spares: int
) -> None:
    # given: a pool of `spares` built schemas (none: each onboarding would build its own)
    slug = f"race-{secrets.token_hex(3)}"
    made.append(slug)
    assert spare_pool_refill(target=spares) == spares

    def onboard(api: Api) -> Response:
        return api.post("platform/tenants", json={"name": "Race", "slug": slug},
                        key=committed_platform_key)

    # when: six at once
    responses = hammer([onboard] * 6)

    # then: one tenant, five clean 409s, and every schema where it belongs
    assert statuses(responses) == {201: 1, 409: 5}, [r.body[:300] for r in responses]
    for response in responses:
        if response.status == 409:
            assert_problem(response, 409, "slug_taken")
    tenant = Tenant.objects.get(slug=slug)
    assert tenant.status == TenantStatus.ACTIVE
    assert missing_migrations([tenant.schema_name]) == {tenant.schema_name: 0}
    (created,) = [r for r in responses if r.status == 201]
    assert created.json["tenant"]["schema_name"] == tenant.schema_name
    left = Tenant.objects.filter(status=TenantStatus.SPARE)
    assert left.count() in (spares, spares - 1)
    assert not Tenant.objects.filter(status=TenantStatus.BUILDING).exists()
    assert _schemas("spare_") == {spare.schema_name for spare in left}


# --- The spare pool.


def _pool_full(target: int) -> bool:
    rows = Tenant.objects.filter(status__in=[TenantStatus.SPARE, TenantStatus.BUILDING])
    return sorted(rows.values_list("status", flat=True)) == [TenantStatus.SPARE] * target


def test_two_workers_refilling_at_once_build_the_pool_once(made: list[str]) -> None:
    # given: two workers whose ticks keep coming while the pool is built
    target = 3
    built = [0, 0]
    deadline = time.monotonic() + 150

    def worker(index: int) -> Callable[[], None]:
        def run() -> None:
            while time.monotonic() < deadline:
                done = spare_pool_refill(target=target)
                built[index] += done
                if not done and _pool_full(target):
                    return
                time.sleep(0.05)

        return run

    # when
    failures = _threads(worker(0), worker(1))

    # then: no build was dropped under its builder; exactly `target` current spares
    assert not failures, failures
    assert sum(built) == target, built
    assert _pool_full(target)
    spares = list(Tenant.objects.filter(status=TenantStatus.SPARE).values_list(
        "schema_name", flat=True))
    assert missing_migrations(spares) == dict.fromkeys(spares, 0)
    assert _schemas("spare_") == set(spares)


def test_a_refill_drops_builds_left_by_a_crash(made: list[str]) -> None:
    # given: two `building` rows whose builders are gone (a spare and an onboarding)
    token = secrets.token_hex(6)
    crashed = [
        Tenant.objects.create(slug=f"spare-{token}", name="(spare schema)",
                              schema_name=f"spare_{token}", status=TenantStatus.BUILDING),
        Tenant.objects.create(slug="pa-crashed", name="Crashed", schema_name="t_pa_crashed",
                              status=TenantStatus.BUILDING),
    ]
    made.append("pa-crashed")
    with connection.cursor() as cursor:
        for row in crashed:
            cursor.execute(f'CREATE SCHEMA "{row.schema_name}"')

    # when
    spare_pool_refill(target=0)

    # then
    assert not Tenant.objects.filter(pk__in=[row.pk for row in crashed]).exists()
    assert not _schemas("spare_") and not _schemas("t_pa_crashed")


@pytest.fixture
def paused_build() -> Iterator[tuple[threading.Event, threading.Event, list[str]]]:
    """Holds a schema build just before its migrations run: (reached, release, schema names)."""
    reached, release = threading.Event(), threading.Event()
    names: list[str] = []

    def hold(sender: Any, schema_name: str, **kwargs: Any) -> None:
        if schema_name in names:
            reached.set()
            release.wait(JOIN_TIMEOUT)

    schema_pre_migration.connect(hold, weak=False)
    try:
        yield reached, release, names
    finally:
        release.set()
        schema_pre_migration.disconnect(hold)


@override_settings(TENANT_BASE_SCHEMA="")  # no template: the build runs the migrations
def test_a_schema_being_built_is_left_alone_until_it_is_ready(
    made: list[str],
    paused_build: tuple[threading.Event, threading.Event, list[str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # given: no spare left, so an onboarding builds its schema by migrations; held mid-build
    reached, release, names = paused_build
    slug = f"slow-{secrets.token_hex(3)}"
    schema = "t_" + slug.replace("-", "_")
    names.append(schema)
    made.append(slug)
    result: list[Any] = []
    onboarding = threading.Thread(target=lambda: _onboard_into(result, slug))
    onboarding.start()
    try:
        assert reached.wait(JOIN_TIMEOUT), "the build never started"

        # when: the sweep, billing_verify, migrate_schemas and a refill run meanwhile
        row = Tenant.objects.get(slug=slug)
        with caplog.at_level(logging.INFO):
            due_tenants_sweep(everything=True)
        spare_pool_refill(target=0)

        # then: none of them touches it; it is still being built
        assert row.status == TenantStatus.BUILDING
        assert schema not in caplog.text
        assert slug not in {t.slug for t in verified_tenants()}
        assert schema not in tenant_schemas()
        assert Tenant.objects.get(pk=row.pk).status == TenantStatus.BUILDING
        assert _schemas(schema) == {schema}
    finally:
        release.set()
        onboarding.join(JOIN_TIMEOUT)

    # and once built, it is an active tenant with every migration
    assert not onboarding.is_alive()
    assert result and not isinstance(result[0], BaseException), result
    tenant = Tenant.objects.get(slug=slug)
    assert tenant.status == TenantStatus.ACTIVE
    assert missing_migrations([schema]) == {schema: 0}


def _onboard_into(result: list[Any], slug: str) -> None:
    try:
        result.append(tenant_onboard(name="Slow", slug=slug))
    except BaseException as exc:  # reported to the test
        result.append(exc)
    finally:
        connections.close_all()
