"""Referrals (links, cycles, rewards) and customer merges through the API."""

from __future__ import annotations

from typing import Any

import pytest
from django.db.models import Sum
from django_tenants.utils import schema_context

from billable import errors
from billable.models import (
    Customer,
    ExternalIdentity,
    Grant,
    Hold,
    LedgerEntry,
    Order,
    QuotaBatch,
    Referral,
    Usage,
)
from billable.services.merge import customer_merge
from tenants.services import tenant_settings_update
from tests.support.api import Api, assert_problem
from tests.support.tenants import TenantFixture

Catalog = dict[str, Any]


def refer(api: Api, key: str, referrer: Any, referee: Any) -> Any:
    def ref(value: Any) -> dict[str, Any]:
        return value if isinstance(value, dict) else {"external_id": value}

    return api.post("billing/referrals", json={"referrer": ref(referrer),
                                               "referee": ref(referee)}, key=key)


def ident(api: Api, key: str, external_id: Any, provider: str = "default") -> str:
    response = api.post("billing/identify", json={"provider": provider,
                                                  "external_id": external_id}, key=key)
    assert response.status == 200, response.body
    return response.json["customer_id"]  # type: ignore[no-any-return]


def remaining(api: Api, key: str, query: dict[str, Any], feature: str = "reports") -> Any:
    response = api.get("billing/balance", key=key, query={**query, "feature": feature})
    assert response.status == 200, response.body
    return response.json["remaining"]


def pay(api: Api, key: str, external_id: str, sku: str = "reports_10") -> dict[str, Any]:
    order = api.post("billing/orders", json={"external_id": external_id,
                                             "items": [{"sku": sku}]}, key=key).json
    confirmed = api.post(f"billing/orders/{order['id']}/confirm", json={}, key=key)
    assert confirmed.status == 200, confirmed.body
    return confirmed.json  # type: ignore[no-any-return]


# --- Referrals


def test_attach_by_id_or_identity_and_repeat(api: Api, acme: TenantFixture,
                                             sent: dict[str, list[Any]]) -> None:
    referrer_id = ident(api, acme.key, "ref-a")
    first = refer(api, acme.key, {"customer_id": referrer_id}, {"external_id": 42})
    assert first.status == 201, first.body
    assert first.json["created"] is True and first.json["referrer_id"] == referrer_id
    referee_id = first.json["referee_id"]
    assert ident(api, acme.key, "42") == referee_id
    again = refer(api, acme.key, "ref-a", {"customer_id": referee_id})
    assert again.status == 200 and again.json["created"] is False
    assert again.json["id"] == first.json["id"]
    assert len(sent["referral_attached"]) == 1
    with schema_context(acme.tenant.schema_name):
        assert Referral.objects.count() == 1


def test_self_referral_422(api: Api, acme: TenantFixture) -> None:
    assert_problem(refer(api, acme.key, "me", "me"), 422, "self_referral")
    me = ident(api, acme.key, "me")
    assert_problem(refer(api, acme.key, {"customer_id": me}, "me"), 422, "self_referral")
    with schema_context(acme.tenant.schema_name):
        assert Referral.objects.count() == 0


def test_already_referred_409(api: Api, acme: TenantFixture) -> None:
    assert refer(api, acme.key, "a", "b").status == 201
    assert_problem(refer(api, acme.key, "c", "b"), 409, "already_referred")
    with schema_context(acme.tenant.schema_name):
        assert Referral.objects.count() == 1


def test_cycles_409(api: Api, acme: TenantFixture) -> None:
    assert refer(api, acme.key, "A", "B").status == 201
    assert_problem(refer(api, acme.key, "B", "A"), 409, "referral_cycle")
    assert refer(api, acme.key, "B", "C").status == 201
    assert_problem(refer(api, acme.key, "C", "A"), 409, "referral_cycle")
    assert refer(api, acme.key, "C", "D").status == 201
    assert_problem(refer(api, acme.key, "D", "A"), 409, "referral_cycle")
    # not a cycle: a new root may refer the chain's head
    assert refer(api, acme.key, "Z", "A").status == 201
    with schema_context(acme.tenant.schema_name):
        assert Referral.objects.count() == 4


@pytest.fixture
def known_referrers(acme: TenantFixture) -> None:
    tenant_settings_update(tenant_id=acme.tenant.pk,
                           changes={"referral_require_known_referrer": True})


def _customers(acme: TenantFixture) -> int:
    with schema_context(acme.tenant.schema_name):
        return Customer.objects.count()


def test_an_unknown_referrer_is_created_by_default(api: Api, acme: TenantFixture) -> None:
    response = refer(api, acme.key, "new-referrer", "new-referee")
    assert response.status == 201, response.body
    assert ident(api, acme.key, "new-referrer") == response.json["referrer_id"]


def test_an_unknown_referrer_is_refused_when_required_known(
    api: Api, acme: TenantFixture, known_referrers: None, sent: dict[str, list[Any]]
) -> None:
    response = refer(api, acme.key, {"external_id": "stranger", "provider": "telegram"},
                     "kr-referee")
    problem = assert_problem(response, 422, "unknown_referrer")
    assert problem["detail"]
    # Nothing was created: neither customer, nor the link, nor a signal.
    assert _customers(acme) == 0
    assert sent["referral_attached"] == []
    # An unknown customer_id stays 404, as everywhere.
    assert_problem(refer(api, acme.key, {"customer_id": "6a3c1e9e-0000-4000-8000-000000000000"},
                         "kr-referee"), 404, "customer_not_found")
    assert _customers(acme) == 0


def test_a_known_referrer_still_attaches_and_may_bring_a_new_referee(
    api: Api, acme: TenantFixture, known_referrers: None
) -> None:
    referrer_id = ident(api, acme.key, "kr-known", "telegram")
    by_identity = refer(api, acme.key, {"external_id": "kr-known", "provider": "telegram"},
                        "kr-new-referee")
    assert by_identity.status == 201, by_identity.body
    assert by_identity.json["referrer_id"] == referrer_id
    by_id = refer(api, acme.key, {"customer_id": referrer_id}, "kr-other-referee")
    assert by_id.status == 201, by_id.body
    assert _customers(acme) == 3


def test_an_erased_referrer_is_unknown_by_identity(
    api: Api, acme: TenantFixture, known_referrers: None
) -> None:
    gone = ident(api, acme.key, "kr-gone")
    assert api.delete(f"billing/customers/{gone}", key=acme.key).status == 204
    assert_problem(refer(api, acme.key, "kr-gone", "kr-someone"), 422, "unknown_referrer")


def test_stats(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    for referee in ("s1", "s2", "s3"):
        assert refer(api, acme.key, "boss", referee).status == 201
    stats = api.get("billing/referrals/stats", key=acme.key, query={"external_id": "boss"})
    assert stats.json == {"referred": 3, "rewarded": 0}
    assert api.get("billing/referrals/stats", key=acme.key,
                   query={"external_id": "s1"}).json == {"referred": 0, "rewarded": 0}
    assert_problem(api.get("billing/referrals/stats", key=acme.key,
                           query={"external_id": "nobody"}), 404, "customer_not_found")


@pytest.fixture
def rewards(acme: TenantFixture, catalog: Catalog) -> None:
    tenant_settings_update(tenant_id=acme.tenant.pk, changes={
        "referral_reward_sku": "reports_5_forever", "referee_reward_sku": "unl_forever"})


def test_reward_on_first_paid_order_once(api: Api, acme: TenantFixture, rewards: None,
                                         sent: dict[str, list[Any]]) -> None:
    assert refer(api, acme.key, "rw-a", "rw-b").status == 201
    pending = api.post("billing/orders", json={"external_id": "rw-b",
                                               "items": [{"sku": "reports_10"}]},
                       key=acme.key).json
    assert remaining(api, acme.key, {"external_id": "rw-a"}) == 0
    api.post(f"billing/orders/{pending['id']}/cancel", key=acme.key)
    assert sent["referral_rewarded"] == []
    first = pay(api, acme.key, "rw-b")
    assert remaining(api, acme.key, {"external_id": "rw-a"}) == 5
    referee_unl = api.get("billing/balance", key=acme.key,
                          query={"external_id": "rw-b", "feature": "exports"}).json
    assert referee_unl["can_use"] is True and referee_unl["unlimited"] is True
    assert len(sent["referral_rewarded"]) == 1
    # replaying the confirm and paying again grant nothing more
    api.post(f"billing/orders/{first['id']}/confirm", json={}, key=acme.key)
    pay(api, acme.key, "rw-b")
    assert remaining(api, acme.key, {"external_id": "rw-a"}) == 5
    assert len(sent["referral_rewarded"]) == 1
    # a refund does not take the reward back
    assert api.post(f"billing/orders/{first['id']}/refund", key=acme.key).status == 200
    assert remaining(api, acme.key, {"external_id": "rw-a"}) == 5
    assert api.get("billing/balance", key=acme.key, query={
        "external_id": "rw-b", "feature": "exports"}).json["can_use"] is True
    assert api.get("billing/referrals/stats", key=acme.key,
                   query={"external_id": "rw-a"}).json == {"referred": 1, "rewarded": 1}
    with schema_context(acme.tenant.schema_name):
        kinds = list(Grant.objects.filter(kind="referral").values_list("sku", flat=True))
        assert sorted(kinds) == ["REPORTS_5_FOREVER", "UNL_FOREVER"]


def test_no_reward_without_setting_or_referral(api: Api, acme: TenantFixture, catalog: Catalog,
                                               sent: dict[str, list[Any]]) -> None:
    assert refer(api, acme.key, "nr-a", "nr-b").status == 201
    pay(api, acme.key, "nr-b")
    assert remaining(api, acme.key, {"external_id": "nr-a"}) == 0
    assert sent["referral_rewarded"] == []


def test_reward_after_a_refunded_first_order_is_not_given_again(
    api: Api, acme: TenantFixture, rewards: None, sent: dict[str, list[Any]]
) -> None:
    assert refer(api, acme.key, "rr-a", "rr-b").status == 201
    first = pay(api, acme.key, "rr-b")
    api.post(f"billing/orders/{first['id']}/refund", key=acme.key)
    pay(api, acme.key, "rr-b")
    assert remaining(api, acme.key, {"external_id": "rr-a"}) == 5
    assert len(sent["referral_rewarded"]) == 1


# --- Merge


def _setup_pair(api: Api, key: str) -> tuple[str, str]:
    target = ident(api, key, 1, provider="tg")
    source = ident(api, key, "x@y.z", provider="email")
    by_src = {"customer_id": source}
    by_tgt = {"customer_id": target}
    for ref in (by_src, by_tgt):
        granted = api.post("billing/grants", json={**ref, "sku": "reports_10", "kind": "bonus"},
                           key=key)
        assert granted.status == 201, granted.body
    order = api.post("billing/orders", json={**by_src, "items": [{"sku": "reports_5_forever"}]},
                     key=key).json
    assert api.post(f"billing/orders/{order['id']}/confirm", json={}, key=key).status == 200
    api.post("billing/orders", json={**by_src, "items": [{"sku": "reports_10"}]}, key=key)
    assert api.post("billing/quota/consume", json={**by_src, "feature": "reports", "amount": 2},
                    key=key).status == 200
    assert api.post("billing/holds", json={**by_src, "feature": "reports", "amount": 3},
                    key=key).status == 201
    assert refer(api, key, by_src, "friend-1").status == 201
    assert refer(api, key, by_src, "friend-2").status == 201
    return target, source


def test_merge_moves_everything(api: Api, acme: TenantFixture, catalog: Catalog,
                                sent: dict[str, list[Any]]) -> None:
    target, source = _setup_pair(api, acme.key)
    with schema_context(acme.tenant.schema_name):
        ledger_before = sorted(LedgerEntry.objects.values_list(
            "id", "batch_id", "direction", "amount", "action_type"))
        batches_before = set(QuotaBatch.objects.filter(customer_id=source)
                             .values_list("id", flat=True))
    assert len(batches_before) == 2
    before_source = remaining(api, acme.key, {"customer_id": source})
    before_target = remaining(api, acme.key, {"customer_id": target})
    assert (before_source, before_target) == (10, 10)

    merged = api.post("billing/customers/merge", json={
        "target_customer_id": target, "source_customer_id": source}, key=acme.key)

    assert merged.status == 200, merged.body
    assert merged.json == {
        "target_customer_id": target, "moved_identities": 1, "moved_batches": 2,
        "moved_orders": 2, "moved_holds": 1, "moved_usages": 1, "moved_referrals": 2,
    }
    with schema_context(acme.tenant.schema_name):
        assert ExternalIdentity.objects.filter(customer_id=source).count() == 0
        assert ExternalIdentity.objects.filter(customer_id=target).count() == 2
        for model in (QuotaBatch, Order, Hold, Usage, Grant):
            assert model.objects.filter(customer_id=source).count() == 0, model
        assert QuotaBatch.objects.filter(customer_id=target).count() == 3
        assert Order.objects.filter(customer_id=target).count() == 2
        assert Referral.objects.filter(referrer_id=target).count() == 2
        assert Referral.objects.filter(referrer_id=source).count() == 0
        assert sorted(LedgerEntry.objects.values_list(
            "id", "batch_id", "direction", "amount", "action_type")) == ledger_before
        assert Customer.objects.get(pk=source).merged_into_id is not None
        assert str(Customer.objects.get(pk=source).merged_into_id) == target
    shown = api.get(f"billing/customers/{source}", key=acme.key).json
    assert shown["merged_into"] == target
    # the source's id now resolves to the target
    assert remaining(api, acme.key, {"customer_id": source}) == 20
    assert remaining(api, acme.key, {"customer_id": target}) == 20
    assert remaining(api, acme.key, {"provider": "email", "external_id": "x@y.z"}) == 20
    consumed = api.post("billing/quota/consume", json={
        "customer_id": source, "feature": "reports", "amount": 1}, key=acme.key)
    assert consumed.status == 200 and consumed.json["remaining"] == 19
    listed = api.get("billing/orders", key=acme.key, query={"customer_id": source}).json
    assert len(listed["items"]) == 2
    assert {o["customer_id"] for o in listed["items"]} == {target}
    assert len(sent["customer_merged"]) == 1
    call = sent["customer_merged"][0]
    assert str(call["target"].pk) == target and str(call["source"].pk) == source
    # merging again (the source is gone) is refused
    assert_problem(api.post("billing/customers/merge", json={
        "target_customer_id": target, "source_customer_id": source}, key=acme.key),
        422, "same_customer")


def test_merge_identity_conflict(api: Api, acme: TenantFixture, catalog: Catalog,
                                 sent: dict[str, list[Any]]) -> None:
    target = ident(api, acme.key, "t@x.io", provider="email")
    source = ident(api, acme.key, "s@x.io", provider="email")
    api.post("billing/grants", json={"customer_id": source, "sku": "reports_10",
                                     "kind": "bonus"}, key=acme.key)
    response = api.post("billing/customers/merge", json={
        "target_customer_id": target, "source_customer_id": source}, key=acme.key)
    assert_problem(response, 409, "identity_conflict")
    with schema_context(acme.tenant.schema_name):
        assert Customer.objects.get(pk=source).merged_into_id is None
        assert QuotaBatch.objects.filter(customer_id=source).count() == 1
        assert ExternalIdentity.objects.filter(customer_id=source).count() == 1
    assert sent["customer_merged"] == []


def test_merge_same_customer_and_unknown(api: Api, acme: TenantFixture) -> None:
    one = ident(api, acme.key, "solo")
    assert_problem(api.post("billing/customers/merge", json={
        "target_customer_id": one, "source_customer_id": one}, key=acme.key),
        422, "same_customer")
    assert_problem(api.post("billing/customers/merge", json={
        "target_customer_id": one,
        "source_customer_id": "00000000-0000-0000-0000-000000000000"}, key=acme.key),
        404, "customer_not_found")


def test_merge_drops_referral_between_the_two(api: Api, acme: TenantFixture,
                                              catalog: Catalog) -> None:
    target = ident(api, acme.key, "mt")
    source = ident(api, acme.key, 77, provider="tg")
    assert refer(api, acme.key, "mt", {"customer_id": source}).status == 201
    merged = api.post("billing/customers/merge", json={
        "target_customer_id": target, "source_customer_id": source}, key=acme.key)
    assert merged.status == 200, merged.body
    with schema_context(acme.tenant.schema_name):
        assert Referral.objects.filter(referrer_id=target, referee_id=target).count() == 0
        assert Referral.objects.count() == 0
        total = LedgerEntry.objects.aggregate(s=Sum("amount"))["s"]
    assert total is None


# --- A merge never makes a referral cycle


def _referral_cycle_through(schema: str, customer_id: str) -> bool:
    """Whether walking up the referrers from this customer comes back to it."""
    with schema_context(schema):
        seen: set[Any] = set()
        current: Any = customer_id
        while current is not None and str(current) not in seen:
            seen.add(str(current))
            current = (Referral.objects.filter(referee_id=current)
                       .values_list("referrer_id", flat=True).first())
            if current is not None and str(current) == customer_id:
                return True
        return False


def test_merge_drops_an_incoming_referral_that_would_close_a_cycle(
    api: Api, acme: TenantFixture
) -> None:
    # given T referred R, and R referred S (T → R → S)
    target, middle = ident(api, acme.key, "cy-t"), ident(api, acme.key, "cy-r")
    source = ident(api, acme.key, 501, provider="tg")
    assert refer(api, acme.key, "cy-t", "cy-r").status == 201
    assert refer(api, acme.key, "cy-r", {"customer_id": source}).status == 201
    # (the endpoint itself refuses R → T)
    assert_problem(refer(api, acme.key, "cy-r", "cy-t"), 409, "referral_cycle")

    # when S merges into T, R → S would become R → T: T → R → T
    merged = api.post("billing/customers/merge", json={
        "target_customer_id": target, "source_customer_id": source}, key=acme.key)

    # then the merge succeeds without the cycle: T keeps its own link to R
    assert merged.status == 200, merged.body
    assert not _referral_cycle_through(acme.tenant.schema_name, target)
    with schema_context(acme.tenant.schema_name):
        links = set(Referral.objects.values_list("referrer_id", "referee_id"))
    assert {(str(a), str(b)) for a, b in links} == {(target, middle)}
    assert merged.json["moved_referrals"] == 0


def test_merge_drops_an_outgoing_referral_that_would_close_a_cycle(
    api: Api, acme: TenantFixture
) -> None:
    # given S referred Z, and Z referred Y, and Y referred T (S → Z → Y → T)
    target = ident(api, acme.key, "co-t")
    source = ident(api, acme.key, 502, provider="tg")
    z, y = ident(api, acme.key, "co-z"), ident(api, acme.key, "co-y")
    assert refer(api, acme.key, {"customer_id": source}, "co-z").status == 201
    assert refer(api, acme.key, "co-z", "co-y").status == 201
    assert refer(api, acme.key, "co-y", "co-t").status == 201
    assert refer(api, acme.key, {"customer_id": source}, "co-other").status == 201

    # when S merges into T, S → Z would become T → Z: T → Z → Y → T
    merged = api.post("billing/customers/merge", json={
        "target_customer_id": target, "source_customer_id": source}, key=acme.key)

    # then T keeps its own referrer (Y), the link that closed the cycle goes, the others move
    assert merged.status == 200, merged.body
    assert not _referral_cycle_through(acme.tenant.schema_name, target)
    with schema_context(acme.tenant.schema_name):
        links = {(str(a), str(b)) for a, b in
                 Referral.objects.values_list("referrer_id", "referee_id")}
    assert (y, target) in links and (z, y) in links
    assert (target, z) not in links
    assert merged.json["moved_referrals"] == 1
    # and the endpoint's own rule holds afterwards (Z → Y → T: T may not refer Z)
    assert_problem(refer(api, acme.key, "co-t", "co-z"), 409, "referral_cycle")



def test_a_referral_answers_its_metadata_and_times(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    body = {"referrer": {"external_id": "rm-1"}, "referee": {"external_id": "rm-2"},
            "metadata": {"source": "link"}}
    made = api.post("billing/referrals", json=body, key=acme.key)
    assert made.status == 201, made.body
    assert (made.json["metadata"], made.json["rewarded_at"]) == ({"source": "link"}, None)
    again = api.post("billing/referrals", json=body, key=acme.key)
    assert (again.json["created"], again.json["created_at"]) == (False, made.json["created_at"])


def test_an_erased_customer_is_never_merged(api: Api, acme: TenantFixture, catalog: Catalog,
                                            sent: dict[str, list[Any]]) -> None:
    """An erased person's anonymous rows are moved to no one, and no one's go to them: the
    engine refuses either way (the console and the API share it)."""
    live = ident(api, acme.key, "live")
    gone = ident(api, acme.key, "gone")
    api.post("billing/grants", json={"customer_id": gone, "sku": "reports_10",
                                     "kind": "bonus"}, key=acme.key)
    assert api.delete(f"billing/customers/{gone}", key=acme.key).status == 204

    with schema_context(acme.tenant.schema_name):
        for target, source in ((live, gone), (gone, live)):
            with pytest.raises(errors.CustomerErased):
                customer_merge(target=Customer.objects.get(pk=target),
                               source=Customer.objects.get(pk=source))
        assert str(QuotaBatch.objects.get().customer_id) == gone
        assert str(ExternalIdentity.objects.get().customer_id) == live
        assert not Customer.objects.filter(merged_into__isnull=False).exists()
    assert sent["customer_merged"] == []
