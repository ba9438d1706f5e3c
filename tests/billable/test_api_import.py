"""HTTP tests of `POST /billing/customers/import`: customers, identities and past trials in bulk."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.db import connection

from billable.models import Customer, ExternalIdentity, TrialHistory
from tests.support.api import Api, Response, assert_problem
from tests.support.tenants import TenantFixture, make_key

Catalog = dict[str, Any]


def _import(api: Api, key: str, *entries: dict[str, Any], **extra: Any) -> Response:
    return api.post("billing/customers/import", json={"customers": list(entries)}, key=key,
                    **extra)


def _ok(response: Response) -> dict[str, Any]:
    assert response.status == 200, response.body
    return response.json  # type: ignore[no-any-return]


def _ids(*pairs: tuple[str, Any]) -> list[dict[str, Any]]:
    return [{"provider": p, "external_id": e} for p, e in pairs]


def _identify(api: Api, key: str, external_id: Any, provider: str = "default",
              **body: Any) -> str:
    response = api.post("billing/identify", json={"provider": provider,
                                                  "external_id": external_id, **body}, key=key)
    assert response.status == 200, response.body
    return response.json["customer_id"]  # type: ignore[no-any-return]


def _state(acme: TenantFixture) -> tuple[int, list[tuple[str, str, str]], int]:
    connection.set_schema(acme.tenant.schema_name)
    identities = sorted(
        (str(c), p, e) for c, p, e in
        ExternalIdentity.objects.values_list("customer_id", "provider", "external_id")
    )
    return Customer.objects.count(), identities, TrialHistory.objects.count()


def test_creates_customers_with_their_identities(api: Api, acme: TenantFixture) -> None:
    body = _ok(_import(
        api, acme.key,
        {"identities": _ids(("telegram", 1001), ("email", " ann@example.com ")),
         "metadata": {"name": "Ann"}},
        {"identities": _ids(("telegram", "1002"))},
    ))
    assert set(body) == {"created", "updated", "unchanged", "conflicts", "customers"}
    assert (body["created"], body["updated"], body["unchanged"]) == (2, 0, 0)
    assert body["conflicts"] == []
    assert [c["index"] for c in body["customers"]] == [0, 1]
    ann = body["customers"][0]["customer_id"]
    # Normalised as identify does: the integer is its decimal string, spaces trimmed.
    assert _identify(api, acme.key, " 1001", "telegram") == ann
    assert _identify(api, acme.key, "ann@example.com", "email") == ann
    customer = api.get(f"billing/customers/{ann}", key=acme.key).json
    assert customer["metadata"] == {"name": "Ann"}
    assert customer["identities"] == _ids(("telegram", "1001"), ("email", "ann@example.com"))


def test_completes_an_existing_customer_and_reports_unchanged(
    api: Api, acme: TenantFixture
) -> None:
    ann = _identify(api, acme.key, "2001", "telegram", profile={"name": "Ann", "city": "Oslo"})
    entry = {"identities": _ids(("telegram", 2001), ("email", "a@x.io")),
             "metadata": {"city": "Bergen"}}
    body = _ok(_import(api, acme.key, entry))
    assert (body["created"], body["updated"], body["unchanged"]) == (0, 1, 0)
    assert body["customers"] == [{"index": 0, "customer_id": ann}]
    customer = api.get(f"billing/customers/{ann}", key=acme.key).json
    assert customer["identities"] == _ids(("telegram", "2001"), ("email", "a@x.io"))
    assert customer["metadata"] == {"name": "Ann", "city": "Bergen"}  # shallow-merged
    # The same entry again changes nothing.
    again = _ok(_import(api, acme.key, entry))
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 1)
    assert again["customers"] == [{"index": 0, "customer_id": ann}]


def test_a_later_entry_sees_an_earlier_one(api: Api, acme: TenantFixture) -> None:
    body = _ok(_import(
        api, acme.key,
        {"identities": _ids(("telegram", "3001"))},
        {"identities": _ids(("telegram", "3001"), ("email", "b@x.io"))},
    ))
    assert (body["created"], body["updated"]) == (1, 1)
    first, second = (c["customer_id"] for c in body["customers"])
    assert first == second
    assert _state(acme)[0] == 1


def test_a_conflicting_entry_is_reported_and_not_applied_while_others_apply(
    api: Api, acme: TenantFixture
) -> None:
    ann = _identify(api, acme.key, "4001", "telegram")
    bob = _identify(api, acme.key, "bob@x.io", "email")
    carl = _identify(api, acme.key, "carl@x.io", "email")
    before = _state(acme)
    body = _ok(_import(
        api, acme.key,
        # Ann's and Bob's identities together: two customers.
        {"identities": _ids(("telegram", "4001"), ("email", "bob@x.io"), ("phone", "1")),
         "metadata": {"lost": True}, "trials_used": ["trial_7d"]},
        {"identities": _ids(("telegram", "4002"))},
        # Carl holds another email already.
        {"identities": _ids(("email", "carl@x.io"), ("telegram", "4003"))},
        {"identities": _ids(("telegram", "4003"), ("email", "carl-2@x.io"))},
    ))
    assert (body["created"], body["updated"], body["unchanged"]) == (1, 1, 0)
    assert [(c["index"], c["code"]) for c in body["conflicts"]] == [(0, "identity_conflict"),
                                                                   (3, "identity_conflict")]
    assert all(c["detail"] for c in body["conflicts"])
    assert [c["index"] for c in body["customers"]] == [1, 2]
    assert body["customers"][1]["customer_id"] == carl
    # Entry 0 left nothing: no phone identity, no metadata, no trial history.
    count, identities, trials = _state(acme)
    assert trials == before[2] == 0
    assert not any(p == "phone" for _, p, _ in identities)
    assert count == before[0] + 1
    for customer_id in (ann, bob):
        assert api.get(f"billing/customers/{customer_id}", key=acme.key).json["metadata"] == {}


def test_metadata_too_large_is_an_entry_conflict(api: Api, acme: TenantFixture) -> None:
    _identify(api, acme.key, "5001", "telegram", profile={"a": "x" * 10_000})
    body = _ok(_import(
        api, acme.key,
        {"identities": _ids(("telegram", "5001")), "metadata": {"b": "y" * 10_000}},
        {"identities": _ids(("telegram", "5002"))},
    ))
    assert [(c["index"], c["code"]) for c in body["conflicts"]] == [(0, "metadata_too_large")]
    assert body["created"] == 1


def test_trials_used_refuse_a_trial_grant_and_a_plan_trial(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    body = _ok(_import(
        api, acme.key,
        {"identities": _ids(("telegram", "6001"), ("email", "Past.Trial@Gmail.com")),
         "trials_used": ["reports_5_forever"]},
        {"identities": _ids(("telegram", "6002"))},
    ))
    assert body["created"] == 2
    assert not api.post("billing/identify", json={"provider": "telegram", "external_id": 6001},
                        key=acme.key).json["trial_eligible"]
    # A trial grant, by the customer or by an identity given to another customer.
    assert_problem(api.post("billing/grants", json={
        "provider": "telegram", "external_id": "6001", "sku": "reports_10", "kind": "trial",
    }, key=acme.key), 409, "trial_already_used")
    assert_problem(api.post("billing/grants", json={
        "external_id": "someone-new", "sku": "reports_10", "kind": "trial",
        "identities": {"email": "pasttrial+x@gmail.com"},
    }, key=acme.key), 409, "trial_already_used")
    # A plan's trial as well.
    assert api.post("billing/plans", json={
        "key": "pro_plan", "name": "Pro", "price": "19.00", "currency": "USD", "trial_days": 7,
        "entitlements": [{"type": "access", "product": "pro"}],
    }, key=acme.key).status == 201
    assert_problem(api.post("billing/subscriptions", json={
        "provider": "telegram", "external_id": "6001", "plan": "pro_plan",
    }, key=acme.key), 409, "trial_already_used")
    # The entry without trials_used keeps its trial.
    assert api.post("billing/grants", json={
        "provider": "telegram", "external_id": "6002", "sku": "reports_10", "kind": "trial",
    }, key=acme.key).status == 201


def test_trials_used_on_an_existing_customer_updates_it_once(
    api: Api, acme: TenantFixture
) -> None:
    _identify(api, acme.key, "7001", "telegram")
    entry = {"identities": _ids(("telegram", "7001")), "trials_used": ["PRO_PLAN"]}
    assert _ok(_import(api, acme.key, entry))["updated"] == 1
    trials = _state(acme)[2]
    assert trials == 2  # the customer's id and its identity
    assert _ok(_import(api, acme.key, entry))["unchanged"] == 1
    assert _state(acme)[2] == trials


def test_idempotent_replay_applies_nothing_twice(api: Api, acme: TenantFixture) -> None:
    entry = {"identities": _ids(("telegram", "8001"))}
    headers = {"Idempotency-Key": "import-8001"}
    first = _import(api, acme.key, entry, headers=headers)
    second = _import(api, acme.key, entry, headers=headers)
    assert first.status == second.status == 200
    assert second.body == first.body and second.headers.get("Idempotent-Replayed") == "true"
    assert _state(acme)[0] == 1
    # The same key for another body: refused.
    assert_problem(_import(api, acme.key, {"identities": _ids(("telegram", "8002"))},
                           headers=headers), 422, "idempotency_key_reused")


def _errors(response: Response) -> list[tuple[Any, ...]]:
    return [tuple(e["loc"]) for e in assert_problem(response, 422, "validation_error")["errors"]]


def test_the_whole_body_is_validated_first(api: Api, acme: TenantFixture) -> None:
    good = {"identities": _ids(("telegram", "9001"))}
    locs = _errors(_import(
        api, acme.key,
        good,
        {"identities": []},
        {"identities": _ids(("telegram", "  "))},
        {"identities": _ids(("email", "a@x.io"), ("email", "b@x.io"))},
        {"identities": _ids(("telegram", "9002")), "trials_used": ["no spaces"]},
    ))
    assert all(loc[:2] == ("body", "payload") for loc in locs), locs
    flagged = {loc[3] for loc in locs if loc[2] == "customers"}
    assert flagged == {1, 2, 3, 4}, locs
    assert _state(acme)[0] == 0  # the good entry was not applied either


def test_the_same_identity_twice_in_an_entry_counts_once(api: Api, acme: TenantFixture) -> None:
    body = _ok(_import(api, acme.key,
                       {"identities": _ids(("telegram", "9101"), ("telegram", 9101))}))
    assert body["created"] == 1
    assert len(_state(acme)[1]) == 1


@pytest.mark.parametrize(("entries", "identities"), [(0, 1), (1001, 1), (1, 21)])
def test_limits(api: Api, acme: TenantFixture, entries: int, identities: int) -> None:
    entry = {"identities": _ids(*((f"p{i}", "x") for i in range(identities)))}
    response = api.post("billing/customers/import",
                        json={"customers": [entry] * entries}, key=acme.key)
    assert_problem(response, 422, "validation_error")
    assert _state(acme)[0] == 0


def test_a_thousand_entries_in_one_call(api: Api, acme: TenantFixture) -> None:
    entries = [
        {"identities": _ids(("telegram", str(10_000 + i)), ("email", f"u{i}@x.io")),
         "trials_used": ["trial"] if i % 2 else []}
        for i in range(1000)
    ]
    started = time.monotonic()
    body = _ok(_import(api, acme.key, *entries))
    elapsed = time.monotonic() - started
    assert body["created"] == 1000 and not body["conflicts"]
    count, identities, trials = _state(acme)
    assert (count, len(identities), trials) == (1000, 2000, 500 * 3)
    assert elapsed < 60, elapsed


def test_needs_admin_scope(api: Api, acme: TenantFixture) -> None:
    _row, writer = make_key(acme.tenant, scopes=["billing:write", "billing:grant"])
    assert_problem(_import(api, writer, {"identities": _ids(("telegram", "1"))}), 403,
                   "insufficient_scope")
    assert _state(acme)[0] == 0


def test_openapi_shows_examples(api: Api) -> None:
    paths = api.get("/api/v1/openapi.json").json["paths"]
    imported = paths["/api/v1/billing/customers/import"]["post"]
    assert imported["requestBody"]["content"]["application/json"]["example"]["customers"]
    answer = imported["responses"]["200"]["content"]["application/json"]
    assert answer["schema"] and answer["example"]["conflicts"]
    attach = paths["/api/v1/billing/customers/{customer_id}/identities"]["post"]
    assert attach["requestBody"]["content"]["application/json"]["example"]
    assert {"200", "201", "404", "409", "422"} <= set(attach["responses"])
