"""The one-statement can-use check (`balance_check`) answers exactly what the selectors answer.

`balance_check` resolves the reference and adds up the batches in one schema-qualified, prepared
statement; `balance_get(customer=customer_find(ref))` is the definition it must equal, errors
included. Random histories (hypothesis) of grants, holds, debits, revocations, expiry, merges and
time compare the two on every kind of reference; fixed cases pin the edges; the HTTP tests check
the answer on the wire, the one round trip, that it opens no transaction and that the schema
comes from the key.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from psycopg import pq

from billable import clock
from billable.models import BatchState, Customer, Offer, Product, QuotaBatch
from billable.results import Balance
from billable.selectors import CustomerRef, balance_check, balance_get, customer_find
from billable.services import grants as grant_services
from billable.services import holds as hold_services
from billable.services import merge as merge_services
from billable.services.catalog import ItemSpec, offer_create, product_create
from billable.services.customers import customer_ensure
from billable.services.sweep import batches_expire_due
from billing_platform.core.errors import BillingError
from tests.support.api import Api, assert_problem
from tests.support.tenants import TenantFixture, fresh_tenant

# Product key -> (type, features). `work` is covered by quantity and period products, `vip` by
# period and unlimited ones, so access and units meet on one name.
PRODUCTS: dict[str, tuple[str, list[str]]] = {
    "UNITS": ("quantity", ["work"]),
    "EXTRA": ("quantity", ["work", "bonus_work"]),
    "PASS": ("period", ["work", "vip"]),
    "UNL": ("unlimited", ["vip"]),
}
OFFERS: dict[str, list[tuple[str, int, str, int | None]]] = {
    "F_U5_2H": [("UNITS", 5, "hours", 2)],
    "F_U3": [("UNITS", 3, "forever", None)],
    "F_E4_5H": [("EXTRA", 4, "hours", 5)],
    "F_MIX": [("UNITS", 2, "hours", 1), ("EXTRA", 3, "forever", None)],
    "F_PASS_3H": [("PASS", 1, "hours", 3)],
    "F_PASS_2X3H": [("PASS", 2, "hours", 3)],
    "F_UNL_1H": [("UNL", 1, "hours", 1)],
}
NAMES = ("work", "WORK", "bonus_work", "vip", "units", "Extra", "pass", "unl", "nothing")
CORE_NAMES = ("work", "vip", "bonus_work", "extra")
# Checked after every step; the rest are drawn by `compare_one`.
STEP_NAMES = ("work", "vip")
# (provider, external id) of the machine's three customers.
IDENTITIES = [("default", "u0"), ("tg", "u1"), ("mail", "u2")]
OFFSETS = (timedelta(0), timedelta(minutes=90), timedelta(hours=4), timedelta(days=2))
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


def outcome(call: Callable[[], Balance]) -> Any:
    """A balance with its expiry as text (what the wire carries), or the error's identity."""
    try:
        balance = call()
    except BillingError as exc:
        return ("error", type(exc), exc.code, exc.detail, exc.extra)
    expires = balance.expires_at
    return (balance, expires.isoformat() if expires is not None else None)


def assert_same_answer(schema_name: str, ref: CustomerRef, name: str) -> None:
    fast = outcome(lambda: balance_check(schema_name=schema_name, ref=ref, feature=name))
    full = outcome(lambda: balance_get(customer=customer_find(ref), feature=name))
    assert fast == full, (ref, name, clock.now())


def references(customers: list[Customer]) -> list[CustomerRef]:
    """Every kind of reference to these customers, and some to nobody."""
    refs = [CustomerRef(customer_id=str(c.pk)) for c in customers]
    refs += [CustomerRef(external_id=external, provider=p) for p, external in IDENTITIES]
    refs += [
        CustomerRef(customer_id=str(customers[0].pk), external_id="u0"),
        CustomerRef(customer_id=str(customers[0].pk), external_id="u1", provider="tg"),
        CustomerRef(customer_id=str(customers[1].pk), external_id="u2", provider="mail"),
        CustomerRef(customer_id=str(customers[1].pk), external_id="ghost"),
        CustomerRef(external_id="ghost"),
        CustomerRef(external_id="u0", provider="tg"),
        CustomerRef(customer_id=UNKNOWN_ID),
        CustomerRef(customer_id=UNKNOWN_ID, external_id="u0"),
        CustomerRef(customer_id="not-a-uuid", external_id="u0"),
        CustomerRef(customer_id=str(customers[2].pk).upper()),
    ]
    return refs


@pytest.fixture
def fast_catalog(in_acme: TenantFixture) -> dict[str, Offer]:
    """Products and offers of these tests (in the test's rolled-back transaction)."""
    for key, (kind, features) in PRODUCTS.items():
        product_create(key=key, name=key.title(), product_type=kind, features=features)
    return {
        sku: offer_create(
            sku=sku,
            name=sku,
            price=Decimal("1"),
            currency="USD",
            items=[ItemSpec(product, quantity, unit, value) for product, quantity, unit, value
                   in items],
        )
        for sku, items in OFFERS.items()
    }


class BalanceMachine(RuleBasedStateMachine):
    """Random histories of one tenant's three customers; both answers compared after each step."""

    offers: dict[str, Offer] = {}
    schema_name = ""

    def __init__(self) -> None:
        super().__init__()
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        self.now = timezone.now().replace(microsecond=0)
        clock.set_now(self.now)
        self.customers = [
            customer_ensure(CustomerRef(external_id=external, provider=provider))
            for provider, external in IDENTITIES
        ]
        self.refs = references(self.customers)

    def teardown(self) -> None:
        clock.set_now(None)
        transaction.set_rollback(True)
        self._atomic.__exit__(None, None, None)

    def attempt(self, action: Callable[[], Any]) -> None:
        """Run a service; a refusal (402, 409, 422) is part of a random history."""
        with suppress(BillingError):
            action()

    @rule(
        customer=st.integers(0, 2),
        sku=st.sampled_from(sorted(OFFERS)),
        kind=st.sampled_from(["bonus", "manual"]),
        override=st.sampled_from([None, None, timedelta(minutes=30), timedelta(hours=6)]),
        start=st.sampled_from([None, None, timedelta(hours=-1), timedelta(hours=2)]),
    )
    def grant(
        self, customer: int, sku: str, kind: str, override: timedelta | None,
        start: timedelta | None,
    ) -> None:
        # A grant made earlier or later than now gives batches that start before or after it.
        at = self.now + (start or timedelta(0))
        with clock.frozen(at):
            self.attempt(lambda: grant_services.offer_grant(
                customer=self.customers[customer],
                offer=self.offers[sku],
                kind=kind,
                expires_at=None if override is None else at + override,
            ))

    @rule(customer=st.integers(0, 2), name=st.sampled_from(CORE_NAMES),
          amount=st.integers(1, 6))
    def hold(self, customer: int, name: str, amount: int) -> None:
        self.attempt(lambda: hold_services.hold_create(
            customer=self.customers[customer], feature=name, amount=amount, ttl_seconds=600
        ))

    @rule(customer=st.integers(0, 2), product=st.sampled_from(["UNITS", "EXTRA"]),
          amount=st.integers(1, 8))
    def debit(self, customer: int, product: str, amount: int) -> None:
        self.attempt(lambda: grant_services.adjustment_create(
            customer=self.customers[customer], product_key=product, amount=-amount,
            reason="property",
        ))

    @precondition(lambda self: QuotaBatch.objects.exists())
    @rule(pick=st.integers(0, 1000))
    def revoke(self, pick: int) -> None:
        batches = list(QuotaBatch.objects.order_by("created_at", "id"))
        batch = batches[pick % len(batches)]
        self.attempt(lambda: grant_services.batch_revoke(batch=batch, reason="property"))

    @rule(step=st.sampled_from([timedelta(minutes=20), timedelta(hours=1), timedelta(hours=3)]))
    def advance_time(self, step: timedelta) -> None:
        self.now += step
        clock.set_now(self.now)

    @rule()
    def expire_batches(self) -> None:
        batches_expire_due()
        hold_services.holds_expire_due()

    @rule(source=st.integers(0, 2), into=st.integers(0, 2))
    def merge(self, source: int, into: int) -> None:
        self.attempt(lambda: merge_services.customer_merge(
            target=Customer.objects.get(pk=self.customers[into].pk),
            source=Customer.objects.get(pk=self.customers[source].pk),
        ))

    @rule(ref=st.integers(0, 100), name=st.sampled_from(NAMES), offset=st.sampled_from(OFFSETS))
    def compare_one(self, ref: int, name: str, offset: timedelta) -> None:
        with clock.frozen(self.now + offset):
            assert_same_answer(self.schema_name, self.refs[ref % len(self.refs)], name)

    @invariant()
    def answers_agree(self) -> None:
        for ref in self.refs[:6]:
            for name in STEP_NAMES:
                assert_same_answer(self.schema_name, ref, name)


@pytest.mark.timeout(600)
def test_fast_answer_equals_the_selectors_over_random_histories(
    fast_catalog: dict[str, Offer], acme: TenantFixture
) -> None:
    BalanceMachine.offers = fast_catalog
    BalanceMachine.schema_name = acme.tenant.schema_name
    try:
        run_state_machine_as_test(
            BalanceMachine,
            settings=settings(
                max_examples=12,
                stateful_step_count=15,
                deadline=None,
                database=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
    finally:
        BalanceMachine.offers = {}
        clock.set_now(None)


# --- Fixed cases


@pytest.fixture
def people(fast_catalog: dict[str, Offer]) -> list[Customer]:
    return [
        customer_ensure(CustomerRef(external_id=external, provider=provider))
        for provider, external in IDENTITIES
    ]


def _grant(customer: Customer, offers: dict[str, Offer], sku: str, **extra: Any) -> list[Any]:
    result = grant_services.offer_grant(
        customer=customer, offer=offers[sku], kind="manual", **extra
    )
    return list(result.batches)


def _check_everything(acme: TenantFixture, people: list[Customer], at: Any = None) -> None:
    with clock.frozen(at or clock.now()):
        for ref in references(people):
            for name in NAMES:
                assert_same_answer(acme.tenant.schema_name, ref, name)


def test_quantity_over_several_batches_and_expiries(
    acme: TenantFixture, fast_catalog: dict[str, Offer], people: list[Customer]
) -> None:
    start = clock.now()
    with clock.frozen(start):
        _grant(people[0], fast_catalog, "F_U5_2H")
        _grant(people[0], fast_catalog, "F_U3")
        _grant(people[0], fast_catalog, "F_MIX")
        _grant(people[0], fast_catalog, "F_E4_5H", expires_at=start + timedelta(minutes=30))
    with clock.frozen(start + timedelta(hours=1)):
        _grant(people[0], fast_catalog, "F_U3")  # starts an hour from now
    with clock.frozen(start):
        balance = balance_check(
            schema_name=acme.tenant.schema_name, ref=CustomerRef(external_id="u0"), feature="work"
        )
    assert (balance.can_use, balance.remaining, balance.unlimited) == (True, 17, False)
    for offset in (timedelta(0), timedelta(minutes=30), timedelta(hours=1), timedelta(hours=3)):
        _check_everything(acme, people, start + offset)


def test_spent_revoked_expired_and_held_units_do_not_count(
    acme: TenantFixture, fast_catalog: dict[str, Offer], people: list[Customer]
) -> None:
    start = clock.now()
    with clock.frozen(start):
        (revoked,) = _grant(people[0], fast_catalog, "F_U5_2H")
        _grant(people[0], fast_catalog, "F_U3")
        _grant(people[0], fast_catalog, "F_E4_5H")
        grant_services.batch_revoke(batch=revoked, reason="test")
        grant_services.adjustment_create(
            customer=people[0], product_key="EXTRA", amount=-4, reason="test"
        )
        assert QuotaBatch.objects.filter(state=BatchState.EXHAUSTED).count() == 1
        hold_services.hold_create(customer=people[0], feature="work", amount=2)
        left = balance_check(
            schema_name=acme.tenant.schema_name, ref=CustomerRef(external_id="u0"), feature="work"
        )
        assert (left.remaining, left.message) == (1, "1 unit left.")
        _check_everything(acme, people)
    with clock.frozen(start + timedelta(days=1)):
        _grant(people[0], fast_catalog, "F_U5_2H")
    # Expired but not yet swept, then swept.
    _check_everything(acme, people, start + timedelta(days=1, hours=3))
    with clock.frozen(start + timedelta(days=1, hours=3)):
        assert batches_expire_due() == 2  # the new batch, and the spent one
    _check_everything(acme, people, start + timedelta(days=1, hours=3))


def test_period_and_unlimited_access(
    acme: TenantFixture, fast_catalog: dict[str, Offer], people: list[Customer]
) -> None:
    start = clock.now()
    with clock.frozen(start):
        _grant(people[1], fast_catalog, "F_PASS_3H")
        _grant(people[1], fast_catalog, "F_PASS_2X3H")  # renewals: access runs on for 9 hours
        _grant(people[1], fast_catalog, "F_U3")
        balance = balance_check(
            schema_name=acme.tenant.schema_name,
            ref=CustomerRef(external_id="u1", provider="tg"),
            feature="WORK",
        )
    assert balance.unlimited and balance.remaining is None
    assert balance.expires_at == start + timedelta(hours=9)
    with clock.frozen(start + timedelta(hours=12)):
        # A gap: access granted later starts after the current access has ended.
        _grant(people[1], fast_catalog, "F_PASS_3H", expires_at=start + timedelta(hours=14))
    for offset in (0, 2, 4, 10, 13, 15):
        _check_everything(acme, people, start + timedelta(hours=offset))
    with clock.frozen(start + timedelta(hours=2)):
        _grant(people[2], fast_catalog, "F_UNL_1H")  # starts in two hours
    with clock.frozen(start):
        _grant(people[2], fast_catalog, "F_PASS_3H")
        assert balance_check(
            schema_name=acme.tenant.schema_name,
            ref=CustomerRef(external_id="u2", provider="mail"),
            feature="vip",
        ).expires_at == start + timedelta(hours=3)
        _grant(people[2], fast_catalog, "F_UNL_1H")
        unlimited = balance_check(
            schema_name=acme.tenant.schema_name,
            ref=CustomerRef(external_id="u2", provider="mail"),
            feature="vip",
        )
    assert unlimited.unlimited and unlimited.expires_at is None
    for minutes in (0, 60, 120, 150, 240):
        _check_everything(acme, people, start + timedelta(minutes=minutes))


def test_references_unknown_merged_and_mismatched(
    acme: TenantFixture, fast_catalog: dict[str, Offer], people: list[Customer]
) -> None:
    schema = acme.tenant.schema_name
    _grant(people[0], fast_catalog, "F_U3")
    _grant(people[1], fast_catalog, "F_U5_2H")
    unknown = balance_check(schema_name=schema, ref=CustomerRef(external_id="ghost"),
                            feature="work")
    assert unknown == Balance(None, "work", False, 0, False, None, "Unknown customer.")
    _check_everything(acme, people)
    # u1's customer merged into u0's, then u0's into u2's: the first id resolves down the chain.
    merge_services.customer_merge(target=people[0], source=people[1])
    _check_everything(acme, people)
    merge_services.customer_merge(
        target=Customer.objects.get(pk=people[2].pk), source=Customer.objects.get(pk=people[0].pk)
    )
    chained = balance_check(schema_name=schema, ref=CustomerRef(customer_id=str(people[1].pk)),
                            feature="work")
    assert chained.customer_id == people[2].pk and chained.remaining == 8
    _check_everything(acme, people)


# --- On the wire


def _balance(api: Api, key: str, **query: Any) -> Any:
    response = api.get("billing/balance", key=key, query=query)
    assert response.status == 200, response.body
    return response


def test_http_answers_equal_the_list_of_every_name(
    api: Api, acme: TenantFixture, fast_catalog: dict[str, Offer], people: list[Customer]
) -> None:
    _grant(people[0], fast_catalog, "F_MIX")
    _grant(people[0], fast_catalog, "F_PASS_3H")
    _grant(people[0], fast_catalog, "F_UNL_1H")
    _grant(people[1], fast_catalog, "F_E4_5H")
    for person in people[:2]:
        listed = _balance(api, acme.key, customer_id=str(person.pk)).json
        assert listed["items"]
        for item in listed["items"]:
            one = _balance(api, acme.key, customer_id=str(person.pk), feature=item["feature"])
            assert list(one.json.items()) == list(item.items())


def test_http_edges(
    api: Api, acme: TenantFixture, globex: TenantFixture, fast_catalog: dict[str, Offer],
    people: list[Customer],
) -> None:
    _grant(people[0], fast_catalog, "F_U3")
    ghost = _balance(api, acme.key, external_id="ghost", feature="work").json
    assert list(ghost.items()) == [
        ("customer_id", None), ("feature", "work"), ("can_use", False), ("remaining", 0),
        ("unlimited", False), ("expires_at", None), ("message", "Unknown customer."),
        ("credit_pools", []),
    ]
    ok = _balance(api, acme.key, customer_id=str(people[0].pk), external_id="u0", feature="work")
    assert ok.json["remaining"] == 3
    for query, status, code in [
        ({"customer_id": UNKNOWN_ID}, 404, "customer_not_found"),
        ({"customer_id": "nope"}, 404, "customer_not_found"),
        ({"customer_id": str(people[0].pk), "external_id": "u1", "provider": "tg"}, 422,
         "customer_mismatch"),
        ({"customer_id": str(people[0].pk), "external_id": "ghost"}, 422, "customer_mismatch"),
    ]:
        response = api.get("billing/balance", key=acme.key, query={**query, "feature": "work"})
        assert_problem(response, status, code)
    # The schema is the key's: another tenant's key does not see acme's customers.
    foreign = api.get("billing/balance", key=globex.key,
                      query={"customer_id": str(people[0].pk), "feature": "work"})
    assert_problem(foreign, 404, "customer_not_found")
    assert _balance(api, globex.key, external_id="u0", feature="work").json["customer_id"] is None
    # ...and the connection is the public schema's again for whatever comes next.
    assert connection.schema_name == "public"  # type: ignore[attr-defined]
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_schema()")
        assert cursor.fetchone() == ("public",)


@contextmanager
def wire() -> Iterator[list[str]]:
    """The protocol messages of Django's connection while the block runs (libpq's trace)."""
    connection.ensure_connection()
    pgconn = connection.connection.pgconn
    lines: list[str] = []
    with tempfile.TemporaryFile("w+") as trace:
        pgconn.trace(trace.fileno())
        pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        try:
            yield lines
        finally:
            pgconn.untrace()
            trace.seek(0)
            lines.extend(trace.read().splitlines())


def round_trips(lines: list[str]) -> list[str]:
    """The transaction status the server reported at the end of each round trip."""
    return [line.split()[-1] for line in lines if "\tReadyForQuery" in line]


def test_one_round_trip_counting_everything_on_the_connection(
    api: Api, acme: TenantFixture, fast_catalog: dict[str, Offer], people: list[Customer]
) -> None:
    _grant(people[0], fast_catalog, "F_U3")
    _balance(api, acme.key, external_id="u0", feature="work")  # warms the key cache
    for query in ({"external_id": "u0"}, {"customer_id": str(people[0].pk)},
                  {"external_id": "ghost"}):
        with wire() as lines:
            _balance(api, acme.key, feature="work", **query)
        assert len(round_trips(lines)) == 1, lines
        sent = [line for line in lines if line.startswith("F")]
        assert not any("search_path" in line or "BEGIN" in line for line in sent), sent


@pytest.mark.timeout(120)
def test_no_transaction_and_one_round_trip_in_autocommit(committed: None, api: Api) -> None:
    with fresh_tenant("fastbal", rate_limit="0") as fresh:
        connection.set_schema(fresh.tenant.schema_name)
        try:
            product_create(key="units", name="Units", product_type="quantity",
                           features=["work"])
            customer = customer_ensure(CustomerRef(external_id="u0"))
            grant_services.adjustment_create(customer=customer, product_key="UNITS", amount=4,
                                             reason="test")
        finally:
            connection.set_schema_to_public()
        assert not connection.in_atomic_block
        _balance(api, fresh.key, external_id="u0", feature="work")  # prepares the statement
        with wire() as lines:
            answer = _balance(api, fresh.key, external_id="u0", feature="work").json
        assert answer["remaining"] == 4
        # One round trip, after which the server is idle: no transaction was opened.
        assert round_trips(lines) == ["I"], lines
        assert not any("search_path" in line or "BEGIN" in line for line in lines), lines


def test_the_statement_is_prepared_once_per_schema(
    api: Api, acme: TenantFixture, fast_catalog: dict[str, Offer], people: list[Customer]
) -> None:
    for query in ({"external_id": "u0"}, {"customer_id": str(people[0].pk)},
                  {"customer_id": str(people[0].pk), "external_id": "u0"}):
        _balance(api, acme.key, feature="work", **query)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
            [f'%"{acme.tenant.schema_name}".billable_externalidentity%'],
        )
        assert cursor.fetchone() == (1,)


def test_products_covering_a_name_are_the_selectors(
    acme: TenantFixture, fast_catalog: dict[str, Offer], people: list[Customer]
) -> None:
    # A feature two products share, and a key spelled like another product's feature.
    product_create(key="work", name="Work", product_type="quantity", features=["units"])
    grant_services.adjustment_create(customer=people[0], product_key="WORK", amount=2,
                                     reason="test")
    _grant(people[0], fast_catalog, "F_MIX")
    assert Product.objects.filter(key="WORK").exists()
    _check_everything(acme, people)
