"""Signing in to the console, its throttle, CSRF, roles, tenants and isolation between them."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.contrib.auth.models import User
from django.test import Client
from django_tenants.utils import tenant_context

from billable.models import Customer, Grant, Offer
from billable.selectors import CustomerRef
from billable.services.catalog import ItemSpec, offer_create, product_create
from billable.services.customers import customer_ensure
from billing_platform.console.models import AuditEntry
from billing_platform.console.permissions import ROLE_ACTIONS, Action, allowed
from tests.support.console import PASSWORD, form_key, make_member, sign_in, signed_in_client
from tests.support.tenants import TenantFixture

OUTSIDER_IP = "203.0.113.9"


def _login_errors(response: Any) -> list[str]:
    assert response.status_code == 200
    return [str(e) for e in response.context["form"].non_field_errors()]


# --- Signing in


def test_an_anonymous_visitor_is_sent_to_the_login_page(db: None) -> None:
    response = Client().get("/console/customers/?q=ann")
    assert response.status_code == 302
    assert response["Location"] == "/console/login/?next=%2Fconsole%2Fcustomers%2F%3Fq%3Dann"


def test_a_member_signs_in_by_email_in_any_case_and_out_again(acme: TenantFixture) -> None:
    make_member(acme.tenant, "ann@example.com")
    client = Client()

    response = sign_in(client, "Ann@Example.COM")

    assert response.status_code == 302 and response["Location"] == "/console/"
    page = client.get("/console/")
    assert page.status_code == 200
    assert b"Acme" in page.content and b'id="active-customers"' in page.content
    client.post("/console/logout/")
    assert client.get("/console/").status_code == 302


def test_a_wrong_password_is_refused_in_plain_words(acme: TenantFixture) -> None:
    make_member(acme.tenant, "ann@example.com")
    client = Client()
    errors = _login_errors(sign_in(client, "ann@example.com", "not-it"))
    assert errors == ["That email and password do not match an account."]
    assert client.get("/console/").status_code == 302


def test_the_next_page_is_followed_only_on_this_site(acme: TenantFixture) -> None:
    make_member(acme.tenant, "ann@example.com")
    here = Client().post(
        "/console/login/",
        {"email": "ann@example.com", "password": PASSWORD, "next": "/console/customers/"},
    )
    assert here["Location"] == "/console/customers/"
    away = Client().post(
        "/console/login/",
        {"email": "ann@example.com", "password": PASSWORD, "next": "https://evil.example/"},
    )
    assert away["Location"] == "/console/"


def test_failed_logins_lock_the_account_for_a_while(acme: TenantFixture) -> None:
    make_member(acme.tenant, "ann@example.com")
    guesser = Client()
    for i in range(5):
        sign_in(guesser, "ann@example.com", f"guess-{i}", REMOTE_ADDR=OUTSIDER_IP)

    # The right password is refused too, from anywhere, until the window ends.
    refused = _login_errors(
        sign_in(Client(), "ANN@example.com", PASSWORD, REMOTE_ADDR="198.51.100.4")
    )
    assert len(refused) == 1 and refused[0].startswith("Too many failed sign-ins"), refused
    assert guesser.get("/console/").status_code == 302


def test_failed_logins_are_limited_per_address(acme: TenantFixture) -> None:
    make_member(acme.tenant, "bob@example.com")
    sprayer = Client()
    for i in range(20):
        sign_in(sprayer, f"nobody-{i}@example.com", "wrong", REMOTE_ADDR=OUTSIDER_IP)

    refused = _login_errors(sign_in(sprayer, "bob@example.com", PASSWORD, REMOTE_ADDR=OUTSIDER_IP))
    assert refused[0].startswith("Too many failed sign-ins")
    assert (
        sign_in(Client(), "bob@example.com", PASSWORD, REMOTE_ADDR="198.51.100.5").status_code
        == 302
    )


def test_a_form_without_its_csrf_token_is_refused(acme: TenantFixture) -> None:
    make_member(acme.tenant, "ann@example.com")
    browser = Client(enforce_csrf_checks=True)

    response = browser.post("/console/login/", {"email": "ann@example.com", "password": PASSWORD})
    assert response.status_code == 403
    # With the token of the form it was given, the same post goes through.
    page = browser.get("/console/login/")
    token = page.cookies["csrftoken"].value
    response = browser.post(
        "/console/login/",
        {"email": "ann@example.com", "password": PASSWORD, "csrfmiddlewaretoken": token},
    )
    assert response.status_code == 302


def test_an_account_without_a_team_sees_no_tenant(acme: TenantFixture) -> None:
    User.objects.create_user("lone@example.com", "lone@example.com", PASSWORD)
    client = signed_in_client("lone@example.com")
    response = client.get("/console/customers/")
    assert response.status_code == 403
    assert b"No team yet" in response.content


# --- Roles


def test_the_roles_nest_as_documented() -> None:
    assert ROLE_ACTIONS["viewer"] < ROLE_ACTIONS["support"] < ROLE_ACTIONS["admin"]
    assert ROLE_ACTIONS["admin"] < ROLE_ACTIONS["owner"] == frozenset(Action)
    assert allowed("support", Action.CUSTOMERS_GRANT) and not allowed(
        "viewer", Action.CUSTOMERS_GRANT
    )
    assert not allowed("admin", Action.TEAM_MANAGE) and allowed("owner", Action.AUDIT_READ)
    assert not allowed("nobody", Action.VIEW)


def _customer_with_offer(tenant: Any) -> tuple[Customer, Offer]:
    with tenant_context(tenant):
        product_create(key="credits", name="Credits", product_type="quantity", features=["run"])
        offer = offer_create(
            sku="bonus_10",
            name="Ten credits",
            price=Decimal("0"),
            currency="USD",
            items=[ItemSpec("CREDITS", 10)],
        )
        customer = customer_ensure(CustomerRef(external_id="ann-42"))
    return customer, offer


def test_a_viewer_sees_no_grant_form_and_its_post_is_refused(acme: TenantFixture) -> None:
    customer, _offer = _customer_with_offer(acme.tenant)
    make_member(acme.tenant, "owner@example.com", "owner")
    make_member(acme.tenant, "viewer@example.com", "viewer")
    owner_page = signed_in_client("owner@example.com").get(f"/console/customers/{customer.pk}/")
    key = form_key(owner_page.content)
    viewer = signed_in_client("viewer@example.com")

    page = viewer.get(f"/console/customers/{customer.pk}/")
    assert page.status_code == 200
    assert b"ann-42" in page.content
    assert b'id="grant"' not in page.content and b"form_key" not in page.content
    response = viewer.post(
        f"/console/customers/{customer.pk}/grant/",
        {"form_key": key, "offer": "BONUS_10", "reason": "goodwill"},
    )

    assert response.status_code == 403
    with tenant_context(acme.tenant):
        assert not Grant.objects.exists()
    assert not AuditEntry.objects.exists()
    # Nor may a viewer open the team page.
    assert viewer.get("/console/team/").status_code == 403


# --- Several tenants, and isolation between them


def test_a_member_of_two_tenants_switches_between_them(
    acme: TenantFixture, globex: TenantFixture
) -> None:
    make_member(acme.tenant, "agency@example.com", "viewer")
    make_member(globex.tenant, "agency@example.com", "owner")
    with tenant_context(globex.tenant):
        customer_ensure(CustomerRef(external_id="globex-only"))
    client = signed_in_client("agency@example.com")

    first = client.get("/console/customers/")
    assert b"Acme" in first.content and b"globex-only" not in first.content
    assert b'name="tenant"' in first.content  # the switcher
    client.post("/console/switch/", {"tenant": str(globex.tenant.pk)})
    second = client.get("/console/customers/")

    assert b"globex-only" in second.content
    assert client.get("/console/team/").status_code == 200  # owner in globex
    client.post("/console/switch/", {"tenant": str(acme.tenant.pk)})
    assert client.get("/console/team/").status_code == 403  # viewer in acme


def test_switching_to_a_tenant_without_a_membership_changes_nothing(
    acme: TenantFixture, globex: TenantFixture
) -> None:
    make_member(acme.tenant, "ann@example.com", "owner")
    with tenant_context(globex.tenant):
        customer_ensure(CustomerRef(external_id="globex-secret"))
    client = signed_in_client("ann@example.com")

    response = client.post("/console/switch/", {"tenant": str(globex.tenant.pk)})

    assert response.status_code == 404
    page = client.get("/console/customers/?q=globex")
    assert b"globex-secret" not in page.content and b"Acme" in page.content


def test_another_tenants_customer_is_not_found_by_url_or_form(
    acme: TenantFixture, globex: TenantFixture
) -> None:
    theirs, _offer = _customer_with_offer(globex.tenant)
    make_member(acme.tenant, "ann@example.com", "owner")
    client = signed_in_client("ann@example.com")
    key = form_key(client.get("/console/team/").content)

    page = client.get(f"/console/customers/{theirs.pk}/")
    assert page.status_code == 404
    assert b"ann-42" not in page.content and str(theirs.pk).encode() not in page.content
    search = client.get(f"/console/customers/?q={theirs.pk}")
    assert b"ann-42" not in search.content and b"No customer matches" in search.content
    grant = client.post(
        f"/console/customers/{theirs.pk}/grant/",
        {"form_key": key, "offer": "BONUS_10", "reason": "sneaky"},
    )

    assert grant.status_code == 404
    with tenant_context(globex.tenant):
        assert not Grant.objects.exists()
    assert not AuditEntry.objects.exists()


def test_an_unknown_console_path_answers_the_consoles_own_404(db: None) -> None:
    response = Client().get("/console/nowhere/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def test_console_without_its_slash_leads_to_the_console(db: None) -> None:
    response = Client().get("/console")
    assert response.status_code == 302 and response["Location"] == "/console/"
