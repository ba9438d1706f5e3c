"""Plans in the console: created from rows, changed (new terms make a new version that new
subscriptions take; subscribers keep theirs), versions retired after a confirmation — through
the engine's plan services, once per form, by admins and owners only."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django_tenants.utils import tenant_context

from billable.models import Plan, PlanVersion, Product
from billable.services.catalog import product_create, product_update
from billable.services.plans import EntitlementSpec, Terms, plan_create, terms_of
from billing_platform.console.models import AuditEntry
from tests.billing_platform.console.test_catalog import _admin, _management, shop
from tests.support.console import form_key
from tests.support.tenants import TenantFixture

__all__ = ["shop"]  # the fixture, shared with the catalog's tests


def _plan_post(sent_key: str, **overrides: str) -> dict[str, str]:
    """A new plan's form as a browser sends it: terms, entitlement rows and metadata rows."""
    data = {
        "form_key": sent_key,
        "key": "scale",
        "name": "Scale",
        "description": "For teams",
        "price": "99.00",
        "currency": "usd",
        "interval_count": "1",
        "interval_unit": "months",
        "trial_days": "14",
        "upgrade_allowance": "full",
        **_management("entitlements", 4),
        "entitlements-0-entitlement_type": "allowance",
        "entitlements-0-product": "CREDITS",
        "entitlements-0-amount": "1000",
        "entitlements-0-reset_count": "",
        "entitlements-0-reset_unit": "",
        "entitlements-0-rollover_cap": "200",
        "entitlements-0-kind": "text",
        "entitlements-1-entitlement_type": "access",
        "entitlements-1-product": "PRO",
        "entitlements-1-kind": "text",
        "entitlements-2-entitlement_type": "value",
        "entitlements-2-name": "seats",
        "entitlements-2-kind": "number",
        "entitlements-2-value": "5",
        "entitlements-3-entitlement_type": "",
        "entitlements-3-kind": "text",
        **_management("metadata", 1),
        "metadata-0-key": "segment",
        "metadata-0-kind": "text",
        "metadata-0-value": "smb",
    }
    data.update(overrides)
    return data


def test_an_admin_creates_a_plan_from_rows(shop: TenantFixture) -> None:
    client = _admin(shop.tenant)
    page = client.get("/console/catalog/new-plan/")
    assert page.status_code == 200 and b'name="entitlements-0-entitlement_type"' in page.content

    response = client.post("/console/catalog/new-plan/", _plan_post(form_key(page.content)))

    assert response.status_code == 302
    assert response["Location"] == "/console/catalog/plans/SCALE/"
    with tenant_context(shop.tenant):
        plan = Plan.objects.get(key="SCALE")
        terms = terms_of(PlanVersion.objects.get(plan=plan, version=1))
    assert (plan.name, plan.upgrade_allowance) == ("Scale", "full")
    assert plan.metadata == {"segment": "smb"}
    assert (terms.price, terms.currency, terms.trial_days) == (99, "USD", 14)
    allowance, access, value = terms.entitlements
    # An allowance without its own reset period resets with the plan's interval.
    assert (allowance.product, allowance.amount, allowance.rollover_cap) == ("CREDITS", 1000, 200)
    assert (allowance.reset_unit, allowance.reset_count) == ("months", 1)
    assert (access.entitlement_type, access.product) == ("access", "PRO")
    assert (value.name, value.value) == ("seats", 5)
    (audit,) = AuditEntry.objects.filter(action="plan.create")
    assert audit.target == "plan:SCALE"
    assert "Created the plan SCALE." in client.get(response["Location"]).content.decode()


def test_a_double_submitted_plan_is_created_once(shop: TenantFixture) -> None:
    client = _admin(shop.tenant, "owner")
    key = form_key(client.get("/console/catalog/new-plan/").content)

    first = client.post("/console/catalog/new-plan/", _plan_post(key))
    second = client.post("/console/catalog/new-plan/", _plan_post(key))

    assert first.status_code == second.status_code == 302
    assert "This form was already sent" in client.get(second["Location"]).content.decode()
    with tenant_context(shop.tenant):
        assert Plan.objects.filter(key="SCALE").count() == 1
    assert AuditEntry.objects.filter(action="plan.create").count() == 1


@pytest.mark.parametrize(
    ("overrides", "status", "shown"),
    [
        # The engine: an allowance is of a quantity product.
        ({"entitlements-0-product": "PRO"}, 422, "An allowance is of a quantity product."),
        # The engine: access is not to a quantity product.
        ({"entitlements-1-product": "CREDITS"}, 422, "a quantity product is an allowance"),
        # The form: each row beside itself.
        ({"entitlements-0-amount": ""}, 422, "How many units?"),
        ({"entitlements-2-value": "five"}, 422, "Write a number, such as 3 or 2.5."),
        ({"entitlements-3-product": "PRO"}, 422, "Choose what this row gives."),
        ({"key": "bonus_10x", "currency": "NOPE"}, 422, "NOPE"),
        ({"key": "team"}, 409, "TEAM is already"),
    ],
)
def test_plan_refusals_are_shown_in_words_and_nothing_is_kept(
    shop: TenantFixture, overrides: dict[str, str], status: int, shown: str
) -> None:
    client = _admin(shop.tenant)
    key = form_key(client.get("/console/catalog/new-plan/").content)

    response = client.post("/console/catalog/new-plan/", _plan_post(key, **overrides))

    assert response.status_code == status
    assert shown in response.content.decode()
    with tenant_context(shop.tenant):
        assert list(Plan.objects.values_list("key", flat=True)) == ["TEAM"]
    assert not AuditEntry.objects.exists()


def _edit_post(client: Any, **overrides: str) -> dict[str, str]:
    """The edit form of TEAM as the page fills it, sent back with `overrides`."""
    page = client.get("/console/catalog/plans/TEAM/edit/").content.decode()
    assert 'name="key"' not in page
    data = _plan_post(form_key(page))
    del data["key"]
    data.update(
        {
            "name": "Team",
            "description": "",
            "price": "29",
            "trial_days": "7",
            "upgrade_allowance": "prorated",
            **_management("entitlements", 1, 1),
            "entitlements-0-entitlement_type": "allowance",
            "entitlements-0-product": "CREDITS",
            "entitlements-0-amount": "100",
            "entitlements-0-reset_count": "1",
            "entitlements-0-reset_unit": "months",
            "entitlements-0-rollover_cap": "0",
            **_management("metadata", 0),
        }
    )
    data.update(overrides)
    return data


def test_the_edit_form_shows_the_current_terms(shop: TenantFixture) -> None:
    client = _admin(shop.tenant)
    page = client.get("/console/catalog/plans/TEAM/edit/").content.decode()
    for shown in ('value="29"', 'value="USD"', 'value="7"', 'value="100"', "makes version 2"):
        assert shown in page, shown


def test_a_name_change_keeps_the_version_and_a_price_change_makes_the_next(
    shop: TenantFixture,
) -> None:
    client = _admin(shop.tenant)

    renamed = client.post("/console/catalog/plans/TEAM/edit/", _edit_post(client, name="Teams"))
    assert renamed.status_code == 302
    assert "its terms are unchanged (version 1)" in client.get(renamed["Location"]).content.decode()
    repriced = client.post(
        "/console/catalog/plans/TEAM/edit/", _edit_post(client, name="Teams", price="39")
    )
    assert repriced.status_code == 302
    assert "its terms are now version 2" in client.get(repriced["Location"]).content.decode()

    with tenant_context(shop.tenant):
        plan = Plan.objects.get(key="TEAM")
        versions = {v.version: v.price for v in plan.versions.all()}
    assert plan.name == "Teams" and plan.current_version == 2
    assert versions == {1: 29, 2: 39}  # the first version's terms never change
    actions = list(AuditEntry.objects.order_by("created_at").values_list("action", "detail"))
    assert [a for a, _ in actions] == ["plan.update", "plan.update"]
    assert [d["version"] for _, d in actions] == [1, 2]


def test_a_plan_keeps_a_product_deactivated_since(shop: TenantFixture) -> None:
    """A product deactivated after the plan named it does not stop a change of price."""
    client = _admin(shop.tenant)
    with tenant_context(shop.tenant):
        product_create(key="legacy", name="Legacy", product_type="quantity")
    added = client.post(
        "/console/catalog/plans/TEAM/edit/",
        _edit_post(
            client,
            **_management("entitlements", 2),
            **{
                "entitlements-1-entitlement_type": "allowance",
                "entitlements-1-product": "LEGACY",
                "entitlements-1-amount": "3",
                "entitlements-1-kind": "text",
            },
        ),
    )
    assert added.status_code == 302
    with tenant_context(shop.tenant):
        product_update(product=Product.objects.get(key="LEGACY"), is_active=False)

    data = _edit_post(client, price="49")
    page = client.get("/console/catalog/plans/TEAM/edit/").content.decode()
    assert "LEGACY · Legacy (inactive)" in page
    data |= _management("entitlements", 2, 2) | {
        "entitlements-1-entitlement_type": "allowance",
        "entitlements-1-product": "LEGACY",
        "entitlements-1-amount": "3",
        "entitlements-1-reset_count": "1",
        "entitlements-1-reset_unit": "months",
        "entitlements-1-rollover_cap": "0",
        "entitlements-1-kind": "text",
    }
    repriced = client.post("/console/catalog/plans/TEAM/edit/", data)

    assert repriced.status_code == 302
    with tenant_context(shop.tenant):
        assert Plan.objects.get().current_version == 3


def test_retiring_a_version_is_confirmed_then_applied_once(shop: TenantFixture) -> None:
    client = _admin(shop.tenant, "owner")
    page = client.get("/console/catalog/plans/TEAM/").content.decode()
    assert 'id="retire-1"' in page
    key = form_key(page[page.index('id="retire-1"') :])
    path = "/console/catalog/plans/TEAM/versions/1/retire/"

    asked = client.post(path, {"form_key": key})
    assert b'id="confirm"' in asked.content and b"Retire version 1" in asked.content
    with tenant_context(shop.tenant):
        assert PlanVersion.objects.get(plan__key="TEAM").retired_at is None
    done = client.post(path, {"form_key": key, "confirmed": "on"})
    again = client.post(path, {"form_key": key, "confirmed": "on"})

    assert done.status_code == again.status_code == 302
    with tenant_context(shop.tenant):
        assert PlanVersion.objects.get(plan__key="TEAM").retired_at is not None
    assert AuditEntry.objects.filter(action="plan.retire_version").count() == 1
    shown = client.get("/console/catalog/plans/TEAM/").content.decode()
    assert "retired" in shown and 'id="retire-1"' not in shown
    unknown = client.post("/console/catalog/plans/TEAM/versions/9/retire/", {"form_key": key})
    assert unknown.status_code == 404


@pytest.mark.parametrize("role", ["viewer", "support"])
def test_who_may_not_manage_plans_gets_403_and_changes_nothing(
    shop: TenantFixture, role: str
) -> None:
    owner = _admin(shop.tenant, "owner")
    key = form_key(owner.get("/console/catalog/new-plan/").content)
    client = _admin(shop.tenant, role)

    page = client.get("/console/catalog/plans/TEAM/").content.decode()
    assert "Edit" not in page and 'id="retire-1"' not in page
    assert "New plan" not in client.get("/console/catalog/plans/").content.decode()
    for path, data in {
        "/console/catalog/new-plan/": _plan_post(key),
        "/console/catalog/plans/TEAM/edit/": _plan_post(key, name="Hacked"),
        "/console/catalog/plans/TEAM/versions/1/retire/": {"form_key": key, "confirmed": "on"},
    }.items():
        assert client.post(path, data).status_code == 403, path
    assert client.get("/console/catalog/new-plan/").status_code == 403
    with tenant_context(shop.tenant):
        plan = Plan.objects.get()
        assert (plan.name, plan.current_version) == ("Team", 1)
        assert plan.versions.get().retired_at is None
    assert not AuditEntry.objects.exists()


def test_another_tenants_plan_is_not_found(shop: TenantFixture, globex: TenantFixture) -> None:
    with tenant_context(globex.tenant):
        product_create(key="globex_secret", name="Secret", product_type="quantity")
    client = _admin(shop.tenant)
    key = form_key(client.get("/console/catalog/new-plan/").content)

    with tenant_context(globex.tenant):
        plan_create(
            key="globex_plan",
            name="Secret plan",
            terms=Terms(
                "months", 1, Decimal(1), "USD", 0,
                (EntitlementSpec("allowance", "GLOBEX_SECRET", 1),),
            ),
        )
    for path in ("plans/GLOBEX_PLAN/", "plans/GLOBEX_PLAN/edit/"):
        page = client.get(f"/console/catalog/{path}")
        assert page.status_code == 404 and b"Secret" not in page.content, path
    edit = client.post("/console/catalog/plans/GLOBEX_PLAN/edit/", _plan_post(key, name="Mine"))
    retire = client.post(
        "/console/catalog/plans/GLOBEX_PLAN/versions/1/retire/",
        {"form_key": key, "confirmed": "on"},
    )
    named = client.post(
        "/console/catalog/new-plan/", _plan_post(key, **{"entitlements-0-product": "GLOBEX_SECRET"})
    )

    assert edit.status_code == retire.status_code == 404
    assert named.status_code == 422 and "GLOBEX_SECRET is not one of the available choices" in (
        named.content.decode()
    )
    with tenant_context(globex.tenant):
        plan = Plan.objects.get()
        assert plan.name == "Secret plan" and plan.versions.get().retired_at is None
    assert not AuditEntry.objects.exists()


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"form_key": "m" * 24},
        {"form_key": "m" * 24, "entitlements-TOTAL_FORMS": "many"},
        {
            "form_key": "m" * 24,
            "price": "NaN",
            **_management("entitlements", 1),
            "entitlements-0-entitlement_type": "bogus",
        },
    ],
)
def test_malformed_plan_posts_answer_in_words_and_change_nothing(
    shop: TenantFixture, data: dict[str, str]
) -> None:
    client = _admin(shop.tenant)
    for path in ("/console/catalog/new-plan/", "/console/catalog/plans/TEAM/edit/"):
        assert client.post(path, data).status_code == 422, path
    retire = client.post("/console/catalog/plans/TEAM/versions/1/retire/", data)
    assert retire.status_code in (200, 302)  # a confirmation page, or "out of date"
    with tenant_context(shop.tenant):
        plan = Plan.objects.get()
        assert (plan.name, plan.current_version) == ("Team", 1)
        assert plan.versions.get().retired_at is None
    assert not AuditEntry.objects.exists()
