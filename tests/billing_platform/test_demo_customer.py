"""The demo customer of `make run`: the API's consume example, tried against the demo tenant,
answers 200."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django_tenants.utils import tenant_context

from billable.services.catalog import demo_catalog_install
from billing_platform.operations.services import demo_customer_ensure
from tests.support.api import Api
from tests.support.tenants import TenantFixture


@pytest.fixture(scope="module")
def consume_example() -> dict[str, Any]:
    """The request example of consume in the OpenAPI document (built once: it takes seconds)."""
    schema = Api(Client()).get("/api/v1/openapi.json").json
    operation = schema["paths"]["/api/v1/billing/quota/consume"]["post"]
    example: dict[str, Any] = operation["requestBody"]["content"]["application/json"]["example"]
    return example


def test_the_consume_example_answers_200_for_the_demo_customer(
    api: Api, acme: TenantFixture, consume_example: dict[str, Any]
) -> None:
    # given: the demo catalog and the demo customer, as `make run` seeds them
    with tenant_context(acme.tenant):
        demo_catalog_install()
    assert demo_customer_ensure(acme.tenant) is True
    example = consume_example

    # when
    response = api.post("billing/quota/consume", key=acme.key, json=example)

    # then
    assert response.status == 200, response.json
    assert response.json["feature"] == example["feature"]
    assert response.json["remaining"] == 10 - example["amount"]


def test_the_demo_customer_is_topped_up_only_when_it_has_nothing_left(
    api: Api, acme: TenantFixture, consume_example: dict[str, Any]
) -> None:
    # given
    with tenant_context(acme.tenant):
        demo_catalog_install()
    demo_customer_ensure(acme.tenant)
    example = consume_example

    # when: units are left, nothing is granted; once they are spent, a bonus is
    again_with_units = demo_customer_ensure(acme.tenant)
    spent = api.post("billing/quota/consume", key=acme.key,
                     json={**example, "amount": 10, "action_id": "spend-all"})
    exhausted = api.post("billing/quota/consume", key=acme.key, json=example)
    topped_up = demo_customer_ensure(acme.tenant)
    after = api.post("billing/quota/consume", key=acme.key,
                     json={**example, "action_id": "after-top-up"})

    # then
    assert again_with_units is False
    assert spent.status == 200, spent.json
    assert exhausted.status == 402 and exhausted.json["code"] == "quota_exhausted"
    assert topped_up is True
    assert after.status == 200 and after.json["remaining"] == 9
