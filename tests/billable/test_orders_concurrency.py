"""Races on orders, trials and referrals against the real database (threads, one connection each).

Like tests/billable/test_concurrency.py: a fresh committed tenant for this module (the `conc`
fixture, dropped afterwards), one Django test client per thread, a Barrier to release the requests
together (tests/support/concurrency.py), and assertions on the committed rows.
"""

from __future__ import annotations

import secrets
from typing import Any

from django.db import connection
from django.db.models import Sum
from django.test import Client
from django_tenants.utils import tenant_context

from billable.models import Grant, LedgerEntry, Order, QuotaBatch, Referral, TrialHistory
from billable.selectors import CustomerRef, ledger_verify
from billable.services.customers import customer_ensure
from billable.services.orders import LineIn, order_confirm, order_create
from tests.support.api import Api
from tests.support.concurrency import Call, ConcTenant, hammer, poster, statuses


def new_order(conc: ConcTenant, external_id: str, *, paid: bool = False) -> Order:
    with tenant_context(conc.tenant):
        customer = customer_ensure(CustomerRef(external_id=external_id))
        order = order_create(customer=customer, items=[LineIn(sku="C10", quantity=2)])
        if paid:
            order = order_confirm(order=order, payment_id=f"pre-{order.pk}")
    return order


def order_ledger(conc: ConcTenant, order: Order) -> dict[str, Any]:
    with tenant_context(conc.tenant):
        fresh = Order.objects.get(pk=order.pk)
        batches = QuotaBatch.objects.filter(order_item__order=order)
        entries = LedgerEntry.objects.filter(batch__in=batches)
        credits = entries.filter(direction="credit")
        report = ledger_verify(slug=conc.tenant.slug)
        result = {
            "status": fresh.status,
            "batches": batches.count(),
            "credit_entries": credits.count(),
            "credited": credits.aggregate(s=Sum("amount"))["s"] or 0,
            "refunded": entries.filter(direction="debit", action_type="refund")
            .aggregate(s=Sum("amount"))["s"] or 0,
            "remaining": batches.aggregate(s=Sum("remaining"))["s"] or 0,
        }
    assert report.ok, [drift.describe() for drift in report.drifts]
    return result


def test_the_module_runs_on_the_test_database(db: None) -> None:
    assert str(connection.settings_dict["NAME"]).startswith("test_")


def test_16_confirms_of_one_order_grant_once(conc: ConcTenant, committed: None) -> None:
    order = new_order(conc, f"conf-{secrets.token_hex(3)}")
    path = f"billing/orders/{order.pk}/confirm"

    responses = hammer([poster(conc, path, {"payment_id": f"pay-{order.pk}"})] * 16)

    assert statuses(responses) == {200: 16}, [(r.status, r.body[:200]) for r in responses]
    assert {r.json["paid_at"] for r in responses} == {responses[0].json["paid_at"]}
    assert order_ledger(conc, order) == {
        "status": "paid", "batches": 1, "credit_entries": 1, "credited": 20, "refunded": 0,
        "remaining": 20,
    }


def test_16_confirms_with_different_payment_ids_one_wins(conc: ConcTenant,
                                                         committed: None) -> None:
    order = new_order(conc, f"confd-{secrets.token_hex(3)}")
    path = f"billing/orders/{order.pk}/confirm"
    calls = [poster(conc, path, {"payment_id": f"pay-{order.pk}-{i}"}) for i in range(16)]

    responses = hammer(calls)

    assert statuses(responses) == {200: 1, 409: 15}, [(r.status, r.body[:200]) for r in responses]
    assert {r.json["code"] for r in responses if r.status == 409} == {"order_already_paid"}
    assert order_ledger(conc, order)["credit_entries"] == 1


def test_confirm_racing_cancel(conc: ConcTenant, committed: None) -> None:
    for _round in range(3):
        order = new_order(conc, f"cc-{secrets.token_hex(3)}")
        confirm = poster(conc, f"billing/orders/{order.pk}/confirm", {})
        cancel = poster(conc, f"billing/orders/{order.pk}/cancel", {})

        responses = hammer([confirm, cancel] * 8)

        confirms, cancels = responses[::2], responses[1::2]
        assert set(statuses(responses)) <= {200, 409}, statuses(responses)
        for response in responses:
            if response.status == 409:
                assert response.json["code"] == "invalid_order_state"
        ledger = order_ledger(conc, order)
        if ledger["status"] == "paid":
            assert all(r.status == 200 for r in confirms)
            assert all(r.status == 409 for r in cancels)
            assert ledger["credit_entries"] == 1 and ledger["credited"] == 20
        else:
            assert ledger["status"] == "cancelled"
            assert all(r.status == 409 for r in confirms)
            assert statuses(cancels) == {200: 1, 409: 7}
            assert ledger["batches"] == 0 and ledger["credit_entries"] == 0


def test_confirm_racing_refund(conc: ConcTenant, committed: None) -> None:
    order = new_order(conc, f"cr-{secrets.token_hex(3)}", paid=True)
    confirm = poster(conc, f"billing/orders/{order.pk}/confirm", {})
    refund = poster(conc, f"billing/orders/{order.pk}/refund", {})

    responses = hammer([confirm, refund] * 8)

    confirms, refunds = responses[::2], responses[1::2]
    assert statuses(refunds) == {200: 1, 409: 7}, [(r.status, r.body[:200]) for r in refunds]
    assert set(statuses(confirms)) <= {200, 409}
    for response in confirms:
        if response.status == 200:
            assert response.json["status"] == "paid"
        else:
            assert response.json["code"] == "invalid_order_state"
    assert order_ledger(conc, order) == {
        "status": "refunded", "batches": 1, "credit_entries": 1, "credited": 20,
        "refunded": 20, "remaining": 0,
    }


def test_16_trials_across_identity_forms_grant_once(conc: ConcTenant,
                                                    committed: None) -> None:
    token = secrets.token_hex(4)
    number = secrets.randbelow(10**9) + 10**9
    forms: list[dict[str, Any]] = [
        {"provider": "tg", "external_id": number, "identities": {"email": f"{token}@B.com "}},
        {"provider": "tg", "external_id": str(number), "identities": {"email": f"{token}@b.com"}},
        {"provider": "email", "external_id": f" {token.upper()}@B.com "},
        {"provider": "email", "external_id": f"{token}@b.com"},
    ]
    calls: list[Call] = [
        poster(conc, "billing/grants", {**forms[i % 4], "sku": "trial_5", "kind": "trial"})
        for i in range(16)
    ]

    responses = hammer(calls)

    assert statuses(responses) == {201: 1, 409: 15}, [(r.status, r.body[:200]) for r in responses]
    assert {r.json["code"] for r in responses if r.status == 409} == {"trial_already_used"}
    (winner,) = [r for r in responses if r.status == 201]
    with tenant_context(conc.tenant):
        grants = Grant.objects.filter(
            kind="trial", customer__identities__external_id__in=[
                str(number), f"{token}@B.com", f"{token.upper()}@B.com", f"{token}@b.com"]
        ).distinct()
        assert [str(g.pk) for g in grants] == [winner.json["id"]]
        assert TrialHistory.objects.filter(grant_id=winner.json["id"]).count() >= 1
        assert QuotaBatch.objects.filter(grant_id=winner.json["id"]).count() == 1


def test_8_referrers_racing_for_one_referee(conc: ConcTenant, committed: None) -> None:
    token = secrets.token_hex(3)
    calls = [
        poster(conc, "billing/referrals", {"referrer": {"external_id": f"rr-{token}-{i}"},
                                            "referee": {"external_id": f"ree-{token}"}})
        for i in range(8)
    ]

    responses = hammer(calls)

    assert statuses(responses) == {201: 1, 409: 7}, [(r.status, r.body[:200]) for r in responses]
    assert {r.json["code"] for r in responses if r.status == 409} == {"already_referred"}
    with tenant_context(conc.tenant):
        assert Referral.objects.filter(
            referee__identities__external_id=f"ree-{token}").count() == 1


def test_8_same_links_at_once_create_one(conc: ConcTenant, committed: None) -> None:
    token = secrets.token_hex(3)
    body = {"referrer": {"external_id": f"sa-{token}"}, "referee": {"external_id": f"sb-{token}"}}

    responses = hammer([poster(conc, "billing/referrals", body)] * 8)

    assert statuses(responses) == {201: 1, 200: 7}, [(r.status, r.body[:200]) for r in responses]
    assert [r.json["created"] for r in responses].count(True) == 1
    assert len({r.json["id"] for r in responses}) == 1


def test_opposite_links_at_once_never_make_a_cycle(conc: ConcTenant, committed: None) -> None:
    for _round in range(4):
        token = secrets.token_hex(3)
        a, b = {"external_id": f"ca-{token}"}, {"external_id": f"cb-{token}"}
        with tenant_context(conc.tenant):  # both customers exist up front
            customer_ensure(CustomerRef(external_id=a["external_id"]))
            customer_ensure(CustomerRef(external_id=b["external_id"]))

        responses = hammer([poster(conc, "billing/referrals", {"referrer": a, "referee": b}),
                            poster(conc, "billing/referrals", {"referrer": b, "referee": a})]
                           * 4)

        created = [r for r in responses if r.status == 201]
        assert len(created) == 1, [(r.status, r.body[:200]) for r in responses]
        assert set(statuses(responses)) <= {200, 201, 409}
        with tenant_context(conc.tenant):
            assert Referral.objects.filter(
                referee__identities__external_id__in=[a["external_id"], b["external_id"]]
            ).count() == 1


def test_referee_paying_twice_at_once_rewards_once(conc: ConcTenant, committed: None) -> None:
    token = secrets.token_hex(3)
    referrer, referee = f"rwa-{token}", f"rwb-{token}"
    with tenant_context(conc.tenant):
        from billable.services.referrals import referral_attach

        referral_attach(referrer=customer_ensure(CustomerRef(external_id=referrer)),
                        referee=customer_ensure(CustomerRef(external_id=referee)))
    orders = [new_order(conc, referee) for _ in range(8)]
    calls = [poster(conc, f"billing/orders/{o.pk}/confirm", {}) for o in orders]

    responses = hammer(calls)

    assert statuses(responses) == {200: 8}, [(r.status, r.body[:200]) for r in responses]

    api = Api(Client())

    def bonus(external_id: str) -> Any:
        return api.get("billing/balance", key=conc.key,
                       query={"external_id": external_id, "feature": "bonus"}).json["remaining"]

    stats = api.get("billing/referrals/stats", key=conc.key, query={"external_id": referrer})
    assert stats.json == {"referred": 1, "rewarded": 1}
    assert (bonus(referrer), bonus(referee)) == (3, 3)
    with tenant_context(conc.tenant):
        assert Grant.objects.filter(
            kind="referral", customer__identities__external_id__in=[referrer, referee]
        ).count() == 2


def test_merge_racing_an_attach_never_makes_a_cycle(conc: ConcTenant, committed: None) -> None:
    for _round in range(6):
        token = secrets.token_hex(3)
        with tenant_context(conc.tenant):
            from billable.services.referrals import referral_attach

            r, s, t = (customer_ensure(CustomerRef(provider=x, external_id=f"m-{token}"))
                       for x in ("r", "s", "t"))
            referral_attach(referrer=r, referee=s)  # R → S
        # merging S into T makes R → T, while T → R is being attached: one of them must lose
        merge = poster(conc, "billing/customers/merge",
                       {"target_customer_id": str(t.pk), "source_customer_id": str(s.pk)})
        attach = poster(conc, "billing/referrals", {"referrer": {"customer_id": str(t.pk)},
                                                    "referee": {"customer_id": str(r.pk)}})

        responses = hammer([merge, attach])

        assert responses[0].status == 200, responses[0].body[:200]
        assert responses[1].status in (201, 409), responses[1].body[:200]
        with tenant_context(conc.tenant):
            links = set(Referral.objects.filter(referee__in=[r, t]).values_list(
                "referrer_id", "referee_id"))
        assert not {(r.pk, t.pk), (t.pk, r.pk)} <= links, links
