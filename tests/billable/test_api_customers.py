"""HTTP tests of customers: identify, list, get, erase, and how requests name a customer."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from django.db import connection

from billable.models import (
    Customer,
    ExternalIdentity,
    IdempotencyRecord,
    LedgerEntry,
    Offer,
    Product,
)
from tests.support.api import Api, assert_problem
from tests.support.tenants import TenantFixture

Catalog = dict[str, Product | Offer]

CUSTOMER_KEYS = {"id", "identities", "metadata", "created_at", "merged_into"}


def _identify(api: Api, key: str, **body: Any) -> dict[str, Any]:
    response = api.post("billing/identify", json=body, key=key)
    assert response.status == 200, response.body
    return response.json  # type: ignore[no-any-return]


def _customers(acme: TenantFixture) -> int:
    connection.set_schema(acme.tenant.schema_name)
    return Customer.objects.count()


# --- identify


def test_identify_creates_then_finds_and_merges_profile(api: Api, acme: TenantFixture) -> None:
    first = _identify(api, acme.key, external_id=" 777 ", provider="telegram",
                      profile={"name": "Ann", "plan": "a"})
    assert set(first) == {"customer_id", "created", "trial_eligible", "metadata"}
    assert first["created"] is True and first["trial_eligible"] is True
    assert first["metadata"] == {"name": "Ann", "plan": "a"}
    uuid.UUID(first["customer_id"])
    again = _identify(api, acme.key, external_id=777, provider="telegram",
                      profile={"plan": "b", "city": "Oslo"})
    assert again["customer_id"] == first["customer_id"] and again["created"] is False
    assert again["metadata"] == {"name": "Ann", "plan": "b", "city": "Oslo"}
    connection.set_schema(acme.tenant.schema_name)
    identity = ExternalIdentity.objects.get(customer_id=first["customer_id"])
    assert (identity.provider, identity.external_id) == ("telegram", "777")


def test_identify_default_provider_is_distinct(api: Api, acme: TenantFixture) -> None:
    a = _identify(api, acme.key, external_id="5")
    b = _identify(api, acme.key, external_id="5", provider="email")
    assert a["customer_id"] != b["customer_id"]
    assert _identify(api, acme.key, external_id=5, provider="default")["customer_id"] == (
        a["customer_id"]
    )


def test_identify_trial_eligibility(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    api.post("billing/grants", json={"external_id": "t1", "sku": "reports_5_forever",
                                     "kind": "trial"}, key=acme.key)
    assert _identify(api, acme.key, external_id="t1")["trial_eligible"] is False
    assert _identify(api, acme.key, external_id="t2")["trial_eligible"] is True


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"external_id": "   "},
        {"external_id": ""},
        {"external_id": None},
        {"external_id": "x" * 256},
        {"external_id": 1.5},
        {"external_id": "a", "provider": ""},
        {"external_id": "a", "profile": "not-an-object"},
        {"external_id": "a", "profile": {"blob": "x" * 17000}},
    ],
)
def test_identify_validation(api: Api, acme: TenantFixture, body: dict[str, Any]) -> None:
    response = api.post("billing/identify", json=body, key=acme.key)
    assert assert_problem(response, 422, "validation_error")["errors"]
    assert _customers(acme) == 0


# --- list, get, erase


def test_customer_list_and_filters(api: Api, acme: TenantFixture) -> None:
    a = _identify(api, acme.key, external_id="a", provider="tg")["customer_id"]
    b = _identify(api, acme.key, external_id=42)["customer_id"]
    c = _identify(api, acme.key, external_id="c")["customer_id"]
    listing = api.get("billing/customers", key=acme.key).json
    assert [x["id"] for x in listing["items"]] == [c, b, a]
    assert listing["next_cursor"] is None
    assert set(listing["items"][0]) == CUSTOMER_KEYS
    by_provider = api.get("billing/customers", key=acme.key, query={"provider": "tg"}).json
    assert [x["id"] for x in by_provider["items"]] == [a]
    by_external = api.get("billing/customers", key=acme.key, query={"external_id": "42"}).json
    assert [x["id"] for x in by_external["items"]] == [b]
    assert by_external["items"][0]["identities"] == [{"provider": "default", "external_id": "42"}]
    none = api.get(
        "billing/customers", key=acme.key, query={"external_id": "a", "provider": "default"}
    ).json
    assert none == {"items": [], "next_cursor": None}
    page1 = api.get("billing/customers", key=acme.key, query={"limit": 2}).json
    page2 = api.get(
        "billing/customers", key=acme.key, query={"limit": 2, "cursor": page1["next_cursor"]}
    ).json
    assert [x["id"] for x in page1["items"] + page2["items"]] == [c, b, a]
    assert page2["next_cursor"] is None


def test_customer_list_does_not_create(api: Api, acme: TenantFixture) -> None:
    api.get("billing/customers", key=acme.key, query={"external_id": "ghost"})
    assert _customers(acme) == 0


def test_customer_get(api: Api, acme: TenantFixture) -> None:
    made = _identify(api, acme.key, external_id="g", profile={"k": 1})
    response = api.get(f"billing/customers/{made['customer_id']}", key=acme.key)
    assert response.status == 200
    assert response.json["id"] == made["customer_id"]
    assert response.json["identities"] == [{"provider": "default", "external_id": "g"}]
    assert response.json["metadata"] == {"k": 1} and response.json["merged_into"] is None


@pytest.mark.parametrize("bad", [str(uuid.uuid4()), "not-a-uuid", "123", "%20"])
def test_customer_get_and_delete_unknown_or_malformed(
    api: Api, acme: TenantFixture, bad: str
) -> None:
    assert_problem(api.get(f"billing/customers/{bad}", key=acme.key), 404, "customer_not_found")
    assert_problem(
        api.delete(f"billing/customers/{bad}", key=acme.key), 404, "customer_not_found"
    )


def test_customer_delete_erases_identities_keeps_ledger(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    grant = api.post(
        "billing/grants", json={"external_id": "e", "sku": "reports_10", "kind": "bonus"},
        key=acme.key,
    ).json
    customer_id = grant["customer_id"]
    api.post("billing/identify", json={"external_id": "e", "profile": {"email": "x@y"}},
             key=acme.key)
    response = api.delete(f"billing/customers/{customer_id}", key=acme.key)
    assert response.status == 204 and response.body == b""
    body = api.get(f"billing/customers/{customer_id}", key=acme.key).json
    assert body["identities"] == [] and body["metadata"] == {}
    connection.set_schema(acme.tenant.schema_name)
    assert LedgerEntry.objects.filter(batch__customer_id=customer_id).count() == 1
    # The identity is free again: it names a new customer now.
    fresh = _identify(api, acme.key, external_id="e")
    assert fresh["created"] is True and fresh["customer_id"] != customer_id


# --- customer references on reads and writes


def test_external_id_integer_and_string_name_one_customer(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    by_int = api.post("billing/grants", json={"external_id": 1001, "sku": "reports_10",
                                              "kind": "bonus"}, key=acme.key).json
    by_str = api.post("billing/quota/consume", json={"external_id": " 1001 ", "feature": "reports"},
                      key=acme.key).json
    assert by_int["customer_id"] == by_str["customer_id"]
    balance = api.get("billing/balance", key=acme.key,
                      query={"external_id": 1001, "feature": "reports"}).json
    assert balance["customer_id"] == by_int["customer_id"] and balance["remaining"] == 9
    assert _customers(acme) == 1


def test_provider_scopes_external_id(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    api.post("billing/grants", json={"external_id": "p", "provider": "tg", "sku": "reports_10",
                                     "kind": "bonus"}, key=acme.key)
    other = api.get("billing/balance", key=acme.key,
                    query={"external_id": "p", "feature": "reports"}).json
    assert other["customer_id"] is None and other["can_use"] is False
    same = api.get("billing/balance", key=acme.key,
                   query={"external_id": "p", "provider": "tg", "feature": "reports"}).json
    assert same["remaining"] == 10


def test_customer_id_and_identity_naming_different_customers(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    a = _identify(api, acme.key, external_id="a")["customer_id"]
    _identify(api, acme.key, external_id="b")
    body = {"customer_id": a, "external_id": "b", "feature": "reports"}
    assert_problem(api.post("billing/quota/consume", json=body, key=acme.key), 422,
                   "customer_mismatch")
    assert_problem(api.post("billing/holds", json={**body, "amount": 1}, key=acme.key), 422,
                   "customer_mismatch")
    assert_problem(
        api.post("billing/grants", json={"customer_id": a, "external_id": "b",
                                         "sku": "reports_10", "kind": "bonus"}, key=acme.key),
        422, "customer_mismatch",
    )
    for path in ("billing/balance", "billing/wallet", "billing/wallet/batches",
                 "billing/wallet/transactions"):
        response = api.get(path, key=acme.key, query={"customer_id": a, "external_id": "b"})
        assert_problem(response, 422, "customer_mismatch")
    assert _customers(acme) == 2
    agreeing = api.get("billing/balance", key=acme.key,
                       query={"customer_id": a, "external_id": "a", "feature": "reports"})
    assert agreeing.status == 200 and agreeing.json["customer_id"] == a


def test_customer_reference_is_required(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    for path, body in (
        ("billing/quota/consume", {"feature": "reports"}),
        ("billing/holds", {"feature": "reports", "amount": 1}),
        ("billing/grants", {"sku": "reports_10", "kind": "bonus"}),
        ("billing/adjustments", {"product": "reports", "amount": 1, "reason": "r"}),
    ):
        assert assert_problem(api.post(path, json=body, key=acme.key), 422,
                              "validation_error")["errors"]
    for path in ("billing/balance", "billing/wallet", "billing/wallet/batches",
                 "billing/wallet/transactions"):
        assert_problem(api.get(path, key=acme.key), 422, "validation_error")
        assert_problem(api.get(path, key=acme.key, query={"external_id": " "}), 422,
                       "validation_error")


def test_reads_do_not_create_customers(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    balance = api.get("billing/balance", key=acme.key,
                      query={"external_id": "ghost", "feature": "reports"})
    assert balance.status == 200
    assert balance.json["customer_id"] is None and balance.json["can_use"] is False
    listing = api.get("billing/balance", key=acme.key, query={"external_id": "ghost"}).json
    assert listing == {"customer_id": None, "items": []}
    for path in ("billing/wallet", "billing/wallet/batches", "billing/wallet/transactions"):
        assert_problem(api.get(path, key=acme.key, query={"external_id": "ghost"}), 404,
                       "customer_not_found")
        assert_problem(api.get(path, key=acme.key, query={"customer_id": str(uuid.uuid4())}),
                       404, "customer_not_found")
        assert_problem(api.get(path, key=acme.key, query={"customer_id": "junk"}), 404,
                       "customer_not_found")
    assert _customers(acme) == 0


def test_writes_create_unknown_identities(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    hold = api.post("billing/holds", json={"external_id": "w1", "feature": "reports",
                                           "amount": 1}, key=acme.key)
    assert_problem(hold, 402, "quota_exhausted")
    grant = api.post("billing/grants", json={"external_id": "w2", "sku": "reports_10",
                                             "kind": "manual"}, key=acme.key)
    adjustment = api.post("billing/adjustments", json={"external_id": "w3", "product": "reports",
                                                       "amount": 2, "reason": "r"}, key=acme.key)
    assert grant.status == 201 and adjustment.status == 201
    connection.set_schema(acme.tenant.schema_name)
    created = set(ExternalIdentity.objects.values_list("external_id", flat=True))
    assert {"w2", "w3"} <= created


def test_unknown_customer_id_on_write_is_404(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    response = api.post("billing/grants", json={"customer_id": str(uuid.uuid4()),
                                                "sku": "reports_10", "kind": "bonus"},
                        key=acme.key)
    assert_problem(response, 404, "customer_not_found")
    assert _customers(acme) == 0


def test_metadata_limit_counts_utf8_bytes(api: Api, acme: TenantFixture) -> None:
    # 5,000 Cyrillic letters are 10,000 UTF-8 bytes: within 16 KiB, though escaped JSON is 30,000.
    fits = api.post("billing/identify", json={
        "provider": "telegram", "external_id": "utf8-fits", "profile": {"bio": "ж" * 5_000},
    }, key=acme.key)
    assert fits.status == 200 and fits.json["metadata"]["bio"] == "ж" * 5_000
    # 8,200 of them are 16,400 bytes: over the limit, and nothing is created.
    too_big = api.post("billing/identify", json={
        "provider": "telegram", "external_id": "utf8-too-big", "profile": {"bio": "ж" * 8_200},
    }, key=acme.key)
    assert_problem(too_big, 422, "validation_error")
    missing = api.get("billing/customers", key=acme.key,
                      query={"provider": "telegram", "external_id": "utf8-too-big"})
    assert missing.json["items"] == []


def test_stored_answers_are_encrypted_and_erasing_redacts_them(
    api: Api, acme: TenantFixture
) -> None:
    body = {"provider": "telegram", "external_id": "redact-me",
            "profile": {"email": "redact-me@example.com"}}
    headers = {"Idempotency-Key": "identify-redact-me"}
    first = api.post("billing/identify", json=body, key=acme.key, headers=headers)
    assert first.status == 200
    connection.set_schema(acme.tenant.schema_name)
    record = IdempotencyRecord.objects.get(key="identify-redact-me")
    assert b"redact-me@example.com" not in bytes(record.body)  # encrypted at rest
    assert record.customer_ids == [first.json["customer_id"]]
    replay = api.post("billing/identify", json=body, key=acme.key, headers=headers)
    assert replay.body == first.body and replay.headers["Idempotent-Replayed"] == "true"

    assert api.delete(f"billing/customers/{first.json['customer_id']}",
                      key=acme.key).status == 204

    # A retry still replays (nothing is applied again), without the personal data.
    after = api.post("billing/identify", json=body, key=acme.key, headers=headers)
    assert after.status == 200 and after.headers["Idempotent-Replayed"] == "true"
    assert after.json["customer_id"] == first.json["customer_id"]
    assert after.json["metadata"] == {} and b"redact-me@example.com" not in after.body
    assert api.get("billing/customers", key=acme.key,
                   query={"external_id": "redact-me"}).json["items"] == []


def test_erasing_a_merged_id_erases_the_person(api: Api, acme: TenantFixture) -> None:
    old = _identify(api, acme.key, provider="telegram", external_id="old-account")
    new = _identify(api, acme.key, provider="email", external_id="new-account")
    merged = api.post("billing/customers/merge", json={
        "target_customer_id": new["customer_id"], "source_customer_id": old["customer_id"],
    }, key=acme.key)
    assert merged.status == 200, merged.body

    assert api.delete(f"billing/customers/{old['customer_id']}", key=acme.key).status == 204

    target = api.get(f"billing/customers/{new['customer_id']}", key=acme.key).json
    assert target["identities"] == []
    for external_id in ("old-account", "new-account"):
        assert api.get("billing/customers", key=acme.key,
                       query={"external_id": external_id}).json["items"] == []


# --- The metadata limit holds for what is stored, and erasure keeps the trial


def _stored_metadata_bytes(acme: TenantFixture, customer_id: str) -> int:
    connection.set_schema(acme.tenant.schema_name)
    metadata = Customer.objects.get(pk=customer_id).metadata
    return len(json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode())


def test_identify_cannot_grow_metadata_past_16_kib(api: Api, acme: TenantFixture) -> None:
    # given a customer whose metadata is 15 KiB, reached with many small profiles
    first = _identify(api, acme.key, external_id="grower", profile={"k0": "x" * 5_000})
    customer_id = first["customer_id"]
    for index in (1, 2):
        _identify(api, acme.key, external_id="grower", profile={f"k{index}": "x" * 5_000})

    # when one more profile, valid on its own, would take the total past 16 KiB
    response = api.post("billing/identify", json={
        "external_id": "grower", "profile": {"k3": "x" * 2_000}}, key=acme.key)

    # then it is refused and nothing changes
    problem = assert_problem(response, 422, "metadata_too_large")
    assert problem["limit"] == 16 * 1024 and problem["size"] > 16 * 1024
    assert "k3" not in api.get(f"billing/customers/{customer_id}", key=acme.key).json["metadata"]
    assert _stored_metadata_bytes(acme, customer_id) <= 16 * 1024
    # overwriting a key with a smaller value still works
    smaller = _identify(api, acme.key, external_id="grower", profile={"k0": "", "k3": "y"})
    assert smaller["metadata"]["k3"] == "y"


def test_a_customer_already_over_the_limit_can_shrink_but_not_grow(
    api: Api, acme: TenantFixture
) -> None:
    # given metadata stored over the limit before the limit held for the total
    customer_id = _identify(api, acme.key, external_id="legacy-big")["customer_id"]
    connection.set_schema(acme.tenant.schema_name)
    Customer.objects.filter(pk=customer_id).update(
        metadata={f"k{i}": "x" * 1_000 for i in range(40)})

    assert_problem(api.post("billing/identify", json={
        "external_id": "legacy-big", "profile": {"more": 1}}, key=acme.key),
        422, "metadata_too_large")
    shrunk = _identify(api, acme.key, external_id="legacy-big", profile={"k0": "", "k1": ""})
    assert shrunk["metadata"]["k0"] == ""


def test_merge_cannot_make_metadata_larger_than_16_kib(api: Api, acme: TenantFixture) -> None:
    target = _identify(api, acme.key, provider="tg", external_id="mm-t",
                       profile={"t": "x" * 10_000})["customer_id"]
    source = _identify(api, acme.key, provider="email", external_id="mm-s",
                       profile={"s": "x" * 10_000})["customer_id"]

    response = api.post("billing/customers/merge", json={
        "target_customer_id": target, "source_customer_id": source}, key=acme.key)

    assert_problem(response, 422, "metadata_too_large")
    connection.set_schema(acme.tenant.schema_name)
    assert Customer.objects.get(pk=source).merged_into_id is None
    assert ExternalIdentity.objects.filter(customer_id=source).count() == 1
    assert set(Customer.objects.get(pk=target).metadata) == {"t"}


def test_product_metadata_with_features_fits_the_limit(api: Api, acme: TenantFixture) -> None:
    # metadata of 15,000 bytes plus 200 feature names mirrored into metadata.features
    response = api.post("billing/products", json={
        "key": "big", "name": "Big", "product_type": "quantity",
        "metadata": {"notes": "x" * 15_000},
        "features": [f"feature_{i:04d}" for i in range(200)],
    }, key=acme.key)

    assert_problem(response, 422, "metadata_too_large")
    assert api.get("billing/products/BIG", key=acme.key).status == 404


def test_erased_customer_cannot_take_a_second_trial_by_id(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    first = api.post("billing/grants", json={"external_id": "erased-trial", "sku": "reports_10",
                                             "kind": "trial"}, key=acme.key)
    assert first.status == 201, first.body
    customer_id = first.json["customer_id"]
    assert api.delete(f"billing/customers/{customer_id}", key=acme.key).status == 204

    again = api.post("billing/grants", json={"customer_id": customer_id, "sku": "pro_month",
                                             "kind": "trial"}, key=acme.key)

    assert_problem(again, 409, "trial_already_used")
    connection.set_schema(acme.tenant.schema_name)
    assert LedgerEntry.objects.filter(batch__customer_id=customer_id).count() == 1
