"""HTTP tests of idempotency keys on tenant POSTs (header `Idempotency-Key`, body field)."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from billable.models import (
    Grant,
    Hold,
    IdempotencyRecord,
    LedgerEntry,
    Offer,
    Product,
    QuotaBatch,
    Usage,
)
from tenants.models import ApiKey
from tests.support.api import Api, Response, assert_problem
from tests.support.tenants import TenantFixture, make_key

Catalog = dict[str, Product | Offer]

CONSUME = "billing/quota/consume"


def _post(api: Api, acme: TenantFixture, path: str, body: Any, key: str | None = None) -> Response:
    headers = {"Idempotency-Key": key} if key is not None else None
    return api.post(path, json=body, key=acme.key, headers=headers)


def _units(acme: TenantFixture) -> int:
    connection.set_schema(acme.tenant.schema_name)
    return sum(QuotaBatch.objects.values_list("remaining", flat=True))


def _records(acme: TenantFixture) -> list[str]:
    connection.set_schema(acme.tenant.schema_name)
    return list(IdempotencyRecord.objects.values_list("key", flat=True))


@pytest.fixture
def funded(api: Api, acme: TenantFixture, catalog: Catalog) -> str:
    grant = api.post("billing/grants", json={"external_id": "i", "sku": "reports_10",
                                             "kind": "manual"}, key=acme.key)
    assert grant.status == 201
    return grant.json["batches"][0]["id"]  # type: ignore[no-any-return]


def _assert_replay(first: Response, second: Response) -> None:
    assert second.status == first.status
    assert second.body == first.body
    assert second.content_type == first.content_type
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert "Idempotent-Replayed" not in first.headers


# --- replay, nothing applied twice


def test_header_key_replays_consume(api: Api, acme: TenantFixture, funded: str) -> None:
    body = {"external_id": "i", "feature": "reports", "amount": 3}
    first = _post(api, acme, CONSUME, body, "c-1")
    second = _post(api, acme, CONSUME, body, "c-1")
    assert first.status == 200
    _assert_replay(first, second)
    assert _units(acme) == 7
    assert Usage.objects.count() == 1
    assert LedgerEntry.objects.filter(direction="debit").count() == 1
    # Key order and spacing do not make a different body.
    reordered = api.request("POST", CONSUME, key=acme.key, headers={"Idempotency-Key": "c-1"},
                            body='{ "amount": 3, "feature": "reports", "external_id": "i" }',
                            content_type="application/json")
    _assert_replay(first, reordered)
    assert _units(acme) == 7


def test_body_field_key_replays(api: Api, acme: TenantFixture, funded: str) -> None:
    body = {"external_id": "i", "feature": "reports", "amount": 2, "idempotency_key": "b-1"}
    first = _post(api, acme, CONSUME, body)
    second = _post(api, acme, CONSUME, body)
    assert first.status == 200
    _assert_replay(first, second)
    assert _units(acme) == 8
    # The field is not part of the compared body: the header with the same key replays it.
    by_header = _post(api, acme, CONSUME, {k: v for k, v in body.items()
                                           if k != "idempotency_key"}, "b-1")
    _assert_replay(first, by_header)
    assert _units(acme) == 8


def test_header_wins_over_body_field(api: Api, acme: TenantFixture, funded: str) -> None:
    body = {"external_id": "i", "feature": "reports", "idempotency_key": "field-1"}
    first = _post(api, acme, CONSUME, body, "header-1")
    assert first.status == 200
    assert _records(acme) == ["header-1"]
    # The same header with another field value is the same request.
    again = _post(api, acme, CONSUME, {**body, "idempotency_key": "field-2"}, "header-1")
    _assert_replay(first, again)
    # The field's key was never used, so it applies anew.
    fresh = _post(api, acme, CONSUME, body)
    assert fresh.status == 200 and "Idempotent-Replayed" not in fresh.headers
    assert _units(acme) == 8


def test_keys_are_per_path(api: Api, acme: TenantFixture, funded: str) -> None:
    first = _post(api, acme, CONSUME, {"external_id": "i", "feature": "reports"}, "p-1")
    assert first.status == 200
    hold = _post(api, acme, "billing/holds", {"external_id": "i", "feature": "reports",
                                              "amount": 1}, "p-1")
    assert_problem(hold, 422, "idempotency_key_reused")
    assert _units(acme) == 9
    assert Hold.objects.count() == 0


def test_reused_key_with_different_body(api: Api, acme: TenantFixture, funded: str) -> None:
    first = _post(api, acme, CONSUME, {"external_id": "i", "feature": "reports"}, "r-1")
    assert first.status == 200
    reused = _post(api, acme, CONSUME, {"external_id": "i", "feature": "reports", "amount": 2},
                   "r-1")
    assert_problem(reused, 422, "idempotency_key_reused")
    assert "Idempotent-Replayed" not in reused.headers
    assert _units(acme) == 9
    # The original is still replayed afterwards.
    _assert_replay(first, _post(api, acme, CONSUME, {"external_id": "i", "feature": "reports"},
                                "r-1"))


def test_keys_are_per_tenant(
    api: Api, acme: TenantFixture, globex: TenantFixture, funded: str
) -> None:
    mine = _post(api, acme, CONSUME, {"external_id": "i", "feature": "reports"}, "t-1")
    assert mine.status == 200
    theirs = api.post("billing/identify", json={"external_id": "i"}, key=globex.key,
                      headers={"Idempotency-Key": "t-1"})
    assert theirs.status == 200 and "Idempotent-Replayed" not in theirs.headers


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("billing/holds", {"external_id": "i", "feature": "reports", "amount": 2}),
        ("billing/grants", {"external_id": "i", "sku": "reports_5_forever", "kind": "bonus"}),
        ("billing/adjustments", {"external_id": "i", "product": "reports", "amount": 4,
                                 "reason": "r"}),
        ("billing/identify", {"external_id": "new-one", "profile": {"a": 1}}),
        ("billing/products", {"key": "idem_p", "name": "P", "product_type": "quantity"}),
        ("billing/offers", {"sku": "idem_o", "name": "O", "price": "2", "currency": "USD",
                            "items": [{"product": "reports"}]}),
    ],
)
def test_every_billing_post_replays(
    api: Api, acme: TenantFixture, funded: str, path: str, body: dict[str, Any]
) -> None:
    first = _post(api, acme, path, body, "e-1")
    assert first.status in (200, 201), first.body
    second = _post(api, acme, path, body, "e-1")
    _assert_replay(first, second)
    third = _post(api, acme, path, {**body, "idempotency_key": "e-1"})
    _assert_replay(first, third)
    connection.set_schema(acme.tenant.schema_name)
    assert Hold.objects.count() == (1 if path == "billing/holds" else 0)
    assert Grant.objects.count() == (2 if path == "billing/grants" else 1)
    assert _units(acme) == {"billing/holds": 8, "billing/grants": 15,
                            "billing/adjustments": 14}.get(path, 10)


def test_hold_commit_and_revoke_replay(api: Api, acme: TenantFixture, funded: str) -> None:
    hold = _post(api, acme, "billing/holds", {"external_id": "i", "feature": "reports",
                                              "amount": 4}).json
    path = f"billing/holds/{hold['id']}/commit"
    first = _post(api, acme, path, {"amount": 1}, "h-1")
    assert first.status == 200
    _assert_replay(first, _post(api, acme, path, {"amount": 1}, "h-1"))
    assert _units(acme) == 9
    revoke = f"billing/batches/{funded}/revoke"
    first_revoke = _post(api, acme, revoke, {"reason": "x"}, "v-1")
    assert first_revoke.status == 200
    _assert_replay(first_revoke, _post(api, acme, revoke, {"reason": "x"}, "v-1"))
    connection.set_schema(acme.tenant.schema_name)
    assert LedgerEntry.objects.filter(action_type="revoke").count() == 1


# --- what is stored


def test_402_is_stored_and_replayed(api: Api, acme: TenantFixture, funded: str) -> None:
    body = {"external_id": "i", "feature": "reports", "amount": 11}
    first = _post(api, acme, CONSUME, body, "402")
    assert_problem(first, 402, "insufficient_quota")
    # More units arrive; the stored answer is still what the key gets.
    api.post("billing/grants", json={"external_id": "i", "sku": "reports_5_forever",
                                     "kind": "bonus"}, key=acme.key)
    second = _post(api, acme, CONSUME, body, "402")
    _assert_replay(first, second)
    assert _units(acme) == 15
    # A new key applies.
    assert _post(api, acme, CONSUME, body, "402-b").status == 200
    assert _units(acme) == 4


def test_409_is_stored_and_replayed(api: Api, acme: TenantFixture, funded: str) -> None:
    path = f"billing/batches/{funded}/revoke"
    assert _post(api, acme, path, {}).status == 200
    first = _post(api, acme, path, {}, "409")
    assert_problem(first, 409, "batch_not_active")
    _assert_replay(first, _post(api, acme, path, {}, "409"))
    assert "409" in _records(acme)


def test_validation_answer_is_not_stored(api: Api, acme: TenantFixture, funded: str) -> None:
    bad = _post(api, acme, CONSUME, {"external_id": "i", "feature": "reports", "amount": 0},
                "v-1")
    assert_problem(bad, 422, "validation_error")
    assert _records(acme) == []
    good = _post(api, acme, CONSUME, {"external_id": "i", "feature": "reports", "amount": 2},
                 "v-1")
    assert good.status == 200 and "Idempotent-Replayed" not in good.headers
    assert _units(acme) == 8


def test_business_422_is_not_stored(api: Api, acme: TenantFixture, funded: str) -> None:
    bad = _post(api, acme, "billing/grants", {"external_id": "i", "sku": "nope",
                                              "kind": "bonus"}, "u-1")
    assert_problem(bad, 422, "unknown_sku")
    assert _records(acme) == []
    good = _post(api, acme, "billing/grants", {"external_id": "i", "sku": "reports_10",
                                               "kind": "bonus"}, "u-1")
    assert good.status == 201


def test_404_is_not_stored(api: Api, acme: TenantFixture, funded: str) -> None:
    missing = _post(api, acme, "billing/holds/nope/release", {}, "n-1")
    assert_problem(missing, 404, "hold_not_found")
    assert _records(acme) == []
    again = _post(api, acme, "billing/holds/nope/release", {}, "n-1")
    assert_problem(again, 404, "hold_not_found")
    assert "Idempotent-Replayed" not in again.headers


def test_auth_failures_are_not_stored(api: Api, acme: TenantFixture, funded: str) -> None:
    _row, reader = make_key(acme.tenant, scopes=["billing:read"])
    body = {"external_id": "i", "feature": "reports"}
    refused = api.post(CONSUME, json=body, key=reader, headers={"Idempotency-Key": "a-1"})
    assert_problem(refused, 403, "insufficient_scope")
    assert _records(acme) == []
    assert _post(api, acme, CONSUME, body, "a-1").status == 200


# --- key format


@pytest.mark.parametrize("bad", ["", "x" * 256, "tab\there", "caf\u00e9", "line\x7f"])
def test_invalid_header_key(api: Api, acme: TenantFixture, funded: str, bad: str) -> None:
    response = api.client.post(
        "/api/v1/" + CONSUME,
        data={"external_id": "i", "feature": "reports"},
        content_type="application/json",
        HTTP_X_API_KEY=acme.key,
        HTTP_IDEMPOTENCY_KEY=bad,
    )
    assert response.status_code == 422, response.content
    assert response.json()["code"] == "validation_error" and response.json()["errors"]
    assert _units(acme) == 10


@pytest.mark.parametrize("bad", ["", "x" * 256, "new\nline", 5, ["k"]])
def test_invalid_body_field_key(api: Api, acme: TenantFixture, funded: str, bad: Any) -> None:
    response = _post(api, acme, CONSUME, {"external_id": "i", "feature": "reports",
                                          "idempotency_key": bad})
    assert_problem(response, 422, "validation_error")
    assert _units(acme) == 10


def test_longest_printable_key_is_accepted(api: Api, acme: TenantFixture, funded: str) -> None:
    key = "~ !" + "k" * 252
    body = {"external_id": "i", "feature": "reports"}
    first = _post(api, acme, CONSUME, body, key)
    assert first.status == 200
    _assert_replay(first, _post(api, acme, CONSUME, body, key))


# --- no body


def test_post_without_body_replays(api: Api, acme: TenantFixture, funded: str) -> None:
    path = f"/api/v1/billing/batches/{funded}/revoke"
    first = api.client.generic("POST", path, HTTP_X_API_KEY=acme.key, HTTP_IDEMPOTENCY_KEY="nb")
    second = api.client.generic("POST", path, HTTP_X_API_KEY=acme.key, HTTP_IDEMPOTENCY_KEY="nb")
    assert first.status_code == second.status_code == 200
    assert first.content == second.content and second.headers["Idempotent-Replayed"] == "true"
    # `{}` is the same request as no body at all.
    same = api.post(path, json={}, key=acme.key, headers={"Idempotency-Key": "nb"})
    assert same.status == 200 and same.body == first.content


# --- /keys takes the header too


def test_keys_post_takes_the_header(api: Api, acme: TenantFixture) -> None:
    body = {"name": "ci", "scopes": ["billing:read"]}
    first = api.post("keys", json=body, key=acme.key, headers={"Idempotency-Key": "key-1"})
    assert first.status == 201, first.body
    second = api.post("keys", json=body, key=acme.key, headers={"Idempotency-Key": "key-1"})
    _assert_replay(first, second)
    assert ApiKey.objects.filter(tenant=acme.tenant, name="ci").count() == 1
    reused = api.post("keys", json={**body, "name": "other"}, key=acme.key,
                      headers={"Idempotency-Key": "key-1"})
    assert_problem(reused, 422, "idempotency_key_reused")
    bad = api.post("keys", json=body, key=acme.key, headers={"Idempotency-Key": ""})
    assert_problem(bad, 422, "validation_error")
    assert ApiKey.objects.filter(tenant=acme.tenant, name="ci").count() == 1


# --- A stored answer goes only to a caller allowed to make the request


def test_replay_needs_the_scope_of_the_first_request(api: Api, acme: TenantFixture) -> None:
    headers = {"Idempotency-Key": "key-create-once"}
    first = api.post("keys", json={"name": "made once"}, key=acme.key, headers=headers)
    assert first.status == 201
    secret = first.json["key"]
    _row, reader = make_key(acme.tenant, name="reader", scopes=["billing:read"])

    replay = api.post("keys", json={"name": "made once"}, key=reader, headers=headers)

    assert_problem(replay, 403, "insufficient_scope")
    assert secret.encode() not in replay.body
    assert "Idempotent-Replayed" not in replay.headers


def test_replays_count_against_the_tenant_rate_limit(api: Api, acme: TenantFixture) -> None:
    from tenants.services import tenant_update

    tenant_update(tenant=acme.tenant, rate_limit="1000/h")
    headers = {"Idempotency-Key": "identify-counted"}
    body = {"external_id": "counted"}
    before = int(api.get("keys", key=acme.key).headers["RateLimit-Remaining"])
    first = api.post("billing/identify", json=body, key=acme.key, headers=headers)
    replay = api.post("billing/identify", json=body, key=acme.key, headers=headers)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert int(first.headers["RateLimit-Remaining"]) == before - 1
    assert int(replay.headers["RateLimit-Remaining"]) == before - 2


def test_authentication_comes_before_the_idempotency_key(api: Api, acme: TenantFixture) -> None:
    too_long = {"Idempotency-Key": "k" * 300}
    assert_problem(api.post("billing/identify", json={"external_id": "x"}, headers=too_long),
                   401, "not_authenticated")
    assert_problem(api.post("billing/identify", json={"external_id": "x"}, key=acme.key,
                            headers=too_long), 422, "validation_error")
