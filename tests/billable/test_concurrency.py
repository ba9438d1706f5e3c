"""Races against the real database: real threads, one connection each, requests released together.

Every case runs in a fresh committed tenant (the `conc` fixture: created for this module, dropped
afterwards) and drives the API through Django's test client, one client per thread
(tests/support/concurrency.py). A `threading.Barrier` makes the requests overlap; the assertions
then read the committed ledger.
"""

from __future__ import annotations

import itertools
import secrets
from datetime import timedelta

from django.db import connection
from django.db.models import Sum
from django.test import Client
from django_tenants.utils import tenant_context

from billable.models import (
    Customer,
    ExternalIdentity,
    Grant,
    Hold,
    LedgerEntry,
    QuotaBatch,
    TrialHistory,
    Usage,
)
from billable.selectors import CustomerRef, balance_get, ledger_verify
from billable.services.customers import customer_ensure
from billable.services.grants import offer_grant
from tests.support.api import Api, Response
from tests.support.concurrency import Call, ConcTenant, hammer, poster, statuses


def grant(conc: ConcTenant, external_id: str, *skus: str) -> Customer:
    with tenant_context(conc.tenant):
        customer = customer_ensure(CustomerRef(external_id=external_id))
        for sku in skus:
            offer_grant(customer=customer, offer=conc.offers[sku], kind="bonus")
    return customer


def ledger_totals(conc: ConcTenant, customer: Customer) -> dict[str, int]:
    """Credits, debits and remaining of the customer's batches, read back from the database."""
    with tenant_context(conc.tenant):
        entries = LedgerEntry.objects.filter(batch__customer=customer)
        credits = entries.filter(direction="credit").aggregate(s=Sum("amount"))["s"] or 0
        debits = entries.filter(direction="debit").aggregate(s=Sum("amount"))["s"] or 0
        batches = QuotaBatch.objects.filter(customer=customer)
        remaining = batches.aggregate(s=Sum("remaining"))["s"] or 0
        negative = batches.filter(remaining__lt=0).count()
        balance = balance_get(customer=customer, feature="compute").remaining
        report = ledger_verify(slug=conc.tenant.slug)
    assert report.ok, [drift.describe() for drift in report.drifts]
    assert negative == 0
    return {
        "credits": int(credits),
        "debits": int(debits),
        "remaining": int(remaining),
        "balance": int(balance or 0),
    }


def test_the_module_runs_on_the_test_database(db: None) -> None:
    """Also makes pytest-django create the test database when this module runs alone.

    pytest-django sets up databases only for tests that use `db` (or a django_db marker); the
    `committed` fixture alone would leave the connection on the development database.
    """
    assert str(connection.settings_dict["NAME"]).startswith("test_")


def test_64_consumers_on_50_units_get_exactly_50(conc: ConcTenant, committed: None) -> None:
    # given: 50 units in two batches
    customer = grant(conc, "race-64", "c20_30d", "c30")
    body = {"customer_id": str(customer.pk), "feature": "compute", "amount": 1}

    def consume(api: Api) -> Response:
        return api.post("billing/quota/consume", json=body, key=conc.key)

    # when
    responses = hammer([consume] * 64)

    # then
    assert statuses(responses) == {200: 50, 402: 14}, [r.body[:200] for r in responses]
    for response in responses:
        if response.status == 402:
            assert response.json["code"] in ("insufficient_quota", "quota_exhausted")
            assert response.json["remaining"] == 0
    remaining_seen = sorted(r.json["remaining"] for r in responses if r.status == 200)
    assert remaining_seen == list(range(50)), "each success saw a distinct balance"
    totals = ledger_totals(conc, customer)
    assert totals == {"credits": 50, "debits": 50, "remaining": 0, "balance": 0}
    with tenant_context(conc.tenant):
        assert Usage.objects.filter(customer=customer).count() == 50
        usage_debits = LedgerEntry.objects.filter(
            batch__customer=customer, direction="debit", action_type="usage"
        ).aggregate(s=Sum("amount"))["s"]
        assert usage_debits == 50


def test_32_consumes_with_one_idempotency_key_debit_once(
    conc: ConcTenant, committed: None
) -> None:
    # given
    customer = grant(conc, "race-idem", "c10")
    body = {"customer_id": str(customer.pk), "feature": "compute", "amount": 3}
    idem_key = f"idem-{secrets.token_hex(8)}"

    def consume(api: Api) -> Response:
        return api.post(
            "billing/quota/consume", json=body, key=conc.key,
            headers={"Idempotency-Key": idem_key},
        )

    # when
    responses = hammer([consume] * 32)

    # then: one original, 31 byte-identical replays
    assert statuses(responses) == {200: 32}, [(r.status, r.body[:200]) for r in responses]
    originals = [r for r in responses if r.headers.get("Idempotent-Replayed") != "true"]
    replays = [r for r in responses if r.headers.get("Idempotent-Replayed") == "true"]
    assert len(originals) == 1 and len(replays) == 31
    assert {r.body for r in replays} == {originals[0].body}
    assert originals[0].json["remaining"] == 7
    totals = ledger_totals(conc, customer)
    assert totals == {"credits": 10, "debits": 3, "remaining": 7, "balance": 7}
    with tenant_context(conc.tenant):
        assert Usage.objects.filter(customer=customer).count() == 1


def test_16_concurrent_trials_for_one_identity_grant_once(
    conc: ConcTenant, committed: None
) -> None:
    # given: an identity nobody has seen yet, and an extra identity checked with it
    external_id = f"trial-{secrets.token_hex(4)}"
    body = {
        "external_id": external_id,
        "sku": "trial_5",
        "kind": "trial",
        "identities": {"email": f"{external_id}@example.com"},
    }

    def trial(api: Api) -> Response:
        return api.post("billing/grants", json=body, key=conc.key)

    # when
    responses = hammer([trial] * 16)

    # then
    assert statuses(responses) == {201: 1, 409: 15}, [(r.status, r.body[:200]) for r in responses]
    assert {r.json["code"] for r in responses if r.status == 409} == {"trial_already_used"}
    (winner,) = [r for r in responses if r.status == 201]
    with tenant_context(conc.tenant):
        customer = customer_ensure(CustomerRef(external_id=external_id))
        assert str(customer.pk) == winner.json["customer_id"]
        assert Grant.objects.filter(customer=customer).count() == 1
        assert QuotaBatch.objects.filter(customer=customer).count() == 1
        # the customer's id, its identity and the extra one
        assert TrialHistory.objects.filter(grant_id=winner.json["id"]).count() == 3
    totals = ledger_totals(conc, customer)
    assert totals == {"credits": 5, "debits": 0, "remaining": 5, "balance": 5}


def test_holds_racing_consumes_add_up(conc: ConcTenant, committed: None) -> None:
    # given: 30 units in two batches; 20 holds of 2 and 20 consumes of 1 want 60
    customer = grant(conc, "race-holds", "c20_30d", "c10")
    ref = {"customer_id": str(customer.pk), "feature": "compute"}

    def hold(api: Api) -> Response:
        return api.post("billing/holds", json={**ref, "amount": 2}, key=conc.key)

    def consume(api: Api) -> Response:
        return api.post("billing/quota/consume", json={**ref, "amount": 1}, key=conc.key)

    # when: phase 1, reserve and consume together
    first = hammer([hold, consume] * 20)

    # then: every unit went to exactly one winner
    held = [r for r in first if r.status == 201]
    consumed = [r for r in first if r.status == 200]
    assert set(statuses(first)) <= {200, 201, 402}, statuses(first)
    assert 2 * len(held) + len(consumed) in (29, 30)
    # A last single unit cannot be held in twos: 29 means one unit is left and holds failed.
    assert ledger_totals(conc, customer)["balance"] == 30 - 2 * len(held) - len(consumed)

    # when: phase 2, settle every hold twice at once (commit 0, 1 or 2, or release) while 20
    # more consume
    kept = 0
    settle: list[Call] = []
    for index, response in enumerate(held):
        hold_id = response.json["id"]
        if index % 4 == 3:
            path, payload = f"billing/holds/{hold_id}/release", {}
        else:
            path, payload = f"billing/holds/{hold_id}/commit", {"amount": index % 3}
            kept += index % 3
        settle.extend([poster(conc, path, payload)] * 2)
    second = hammer(settle + [consume] * 20)

    # then: each hold settled once (the repeat answers it unchanged), consumes took only what was
    # back, nothing negative
    settled = second[: len(settle)]
    late = second[len(settle) :]
    assert all(r.status == 200 for r in settled), [(r.status, r.body[:200]) for r in settled]
    for twin, other in zip(settled[::2], settled[1::2], strict=True):
        assert twin.json == other.json
        assert twin.json["status"] in ("committed", "released")
    assert set(statuses(late)) <= {200, 402}, statuses(late)
    late_consumed = sum(1 for r in late if r.status == 200)
    spent = len(consumed) + kept + late_consumed
    totals = ledger_totals(conc, customer)
    assert totals["credits"] - totals["debits"] == totals["remaining"] == 30 - spent
    assert totals["balance"] == totals["remaining"]
    with tenant_context(conc.tenant):
        usages = Usage.objects.filter(customer=customer).aggregate(s=Sum("amount"))["s"] or 0
        assert usages == spent
        returned = LedgerEntry.objects.filter(
            batch__customer=customer, action_type="hold.return"
        ).aggregate(s=Sum("amount"))["s"] or 0
        assert returned == 2 * len(held) - kept
        statuses_left = set(Hold.objects.filter(customer=customer).values_list("status", flat=True))
        assert statuses_left <= {"committed", "released"}


def test_8_concurrent_period_grants_extend_one_after_another(
    conc: ConcTenant, committed: None
) -> None:
    # given: a customer with no access yet, so there is no batch to lock
    external_id = f"period-{secrets.token_hex(4)}"
    grant(conc, external_id)
    body = {"external_id": external_id, "sku": "pro_30d", "kind": "bonus"}

    # when: eight renewals at once
    responses = hammer([poster(conc, "billing/grants", body)] * 8)

    # then: eight back-to-back 30-day segments, none overlapping, none lost
    assert statuses(responses) == {201: 8}, [(r.status, r.body[:200]) for r in responses]
    with tenant_context(conc.tenant):
        customer = customer_ensure(CustomerRef(external_id=external_id))
        segments = list(
            QuotaBatch.objects.filter(customer=customer, product__key="PRO")
            .order_by("valid_from")
            .values_list("valid_from", "expires_at")
        )
    assert len(segments) == 8
    for (_start, end), (next_start, _next_end) in itertools.pairwise(segments):
        assert next_start == end
    assert segments[-1][1] - segments[0][0] == timedelta(days=240)


def test_8_customers_attaching_one_identity_at_once_one_wins(
    conc: ConcTenant, committed: None
) -> None:
    # given: eight customers, and an identity none of them holds
    tag = secrets.token_hex(4)
    customers = [grant(conc, f"attach-{tag}-{i}") for i in range(8)]
    body = {"provider": "email", "external_id": f"shared-{tag}@example.com"}

    # when: each asks for the identity at the same moment
    calls = [
        poster(conc, f"billing/customers/{customer.pk}/identities", body)
        for customer in customers
    ]
    responses = hammer(calls)

    # then: one holds it; the others are told 409, not 500
    assert statuses(responses) == {201: 1, 409: 7}, [(r.status, r.body[:200]) for r in responses]
    assert {r.json["code"] for r in responses if r.status == 409} == {"identity_conflict"}
    (winner,) = [r for r in responses if r.status == 201]
    with tenant_context(conc.tenant):
        holders = list(
            ExternalIdentity.objects.filter(**body).values_list("customer_id", flat=True)
        )
    assert [str(pk) for pk in holders] == [winner.json["id"]]


def test_8_imports_of_one_new_person_at_once_make_one_customer(
    conc: ConcTenant, committed: None
) -> None:
    # given: a person nobody has seen, imported by eight requests, each with one more identity
    tag = secrets.token_hex(4)
    shared = {"provider": "telegram", "external_id": f"imp-{tag}"}

    def entry(i: int) -> dict[str, object]:
        return {"identities": [shared, {"provider": f"site{i}", "external_id": f"{tag}-{i}"}],
                "trials_used": ["trial_5"]}

    # when
    responses = hammer([
        poster(conc, "billing/customers/import", {"customers": [entry(i)]}) for i in range(8)
    ])

    # then: each applied its entry to the one customer
    assert statuses(responses) == {200: 8}, [(r.status, r.body[:200]) for r in responses]
    assert sum(r.json["created"] for r in responses) == 1
    assert sum(r.json["updated"] for r in responses) == 7
    assert not any(r.json["conflicts"] for r in responses)
    ids = {r.json["customers"][0]["customer_id"] for r in responses}
    assert len(ids) == 1
    with tenant_context(conc.tenant):
        customer = Customer.objects.get(pk=ids.pop())
        assert customer.identities.count() == 9
    # and the person's trial is taken
    refused = poster(conc, "billing/grants", {**shared, "sku": "trial_5", "kind": "trial"})
    assert refused(Api(Client())).status == 409
