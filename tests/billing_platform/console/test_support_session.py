"""An operator's support session: opened from the admin's tenant page with a reason, for a
limited time; the operator then uses that one tenant's console as a support member, every
action audited as `operator:<id>` in the tenant's log; it ends with the End button or at expiry.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django_tenants.utils import tenant_context

from billable import clock
from billable.models import Customer, Grant, LedgerEntry
from billable.selectors import CustomerRef
from billable.services.catalog import ItemSpec, offer_create, product_create
from billable.services.customers import customer_ensure
from billing_platform.console.models import AuditEntry, SupportSession
from tests.support.admin import staff_client
from tests.support.console import form_key, make_member, signed_in_client
from tests.support.tenants import TenantFixture

START = "/console/support/start/{}/"
REASON = "Ticket 4521: the customer asks why export is refused."


@pytest.fixture
def shop(acme: TenantFixture) -> TenantFixture:
    """acme with a bonus offer and a customer `ann`."""
    with tenant_context(acme.tenant):
        product_create(key="credits", name="Credits", product_type="quantity", features=["run"])
        offer_create(
            sku="bonus_10",
            name="Ten credits",
            price=Decimal("0"),
            currency="EUR",
            items=[ItemSpec("CREDITS", 10)],
        )
        customer_ensure(CustomerRef(external_id="ann"))
    return acme


def _operator(name: str = "olga", *perms: str) -> tuple[Client, User]:
    client = staff_client(name, *(perms or ("view_tenant", "change_tenant")))
    return client, User.objects.get(username=name)


def _start(client: Client, tenant_id: int, reason: str = REASON) -> tuple[Any, str]:
    page = client.get(START.format(tenant_id))
    assert page.status_code == 200, page.content[:300]
    key = form_key(page.content)
    return client.post(START.format(tenant_id), {"form_key": key, "reason": reason}), key


def _ann(tenant: TenantFixture) -> Customer:
    with tenant_context(tenant.tenant):
        return Customer.objects.get(identities__external_id="ann")


def test_a_staff_user_without_a_session_sees_no_tenant(acme: TenantFixture) -> None:
    client, _user = _operator()
    for path in ("/console/", "/console/customers/", "/console/settings/", "/console/audit/"):
        response = client.get(path)
        assert response.status_code == 403, path
        assert 'id="support-none"' in response.content.decode()
        assert "Acme" not in response.content.decode()


def test_the_admins_tenant_page_links_the_support_session(acme: TenantFixture) -> None:
    client, _user = _operator()
    page = client.get(f"/admin/tenants/tenant/{acme.tenant.pk}/change/").content.decode()
    assert f'href="{START.format(acme.tenant.pk)}"' in page
    # An operator who may only view tenants is offered none and may open none.
    viewer, _ = _operator("vera", "view_tenant")
    page = viewer.get(f"/admin/tenants/tenant/{acme.tenant.pk}/change/").content.decode()
    assert "Open the console for support" not in page
    assert viewer.get(START.format(acme.tenant.pk)).status_code == 403
    assert viewer.post(START.format(acme.tenant.pk), {"reason": "x"}).status_code == 403
    assert not SupportSession.objects.exists()


def test_a_member_or_a_visitor_cannot_open_one(acme: TenantFixture) -> None:
    make_member(acme.tenant, "owner@example.com", "owner")
    member = signed_in_client("owner@example.com")
    assert member.post(START.format(acme.tenant.pk), {"reason": "x"}).status_code == 403
    anonymous = Client().get(START.format(acme.tenant.pk))
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/admin/login/")
    assert not SupportSession.objects.exists()


def test_a_reason_is_required(acme: TenantFixture) -> None:
    client, _user = _operator()
    response, _key = _start(client, acme.tenant.pk, reason="   ")
    assert response.status_code == 422
    assert "Say why." in response.content.decode()
    assert not SupportSession.objects.exists()
    assert client.get("/console/").status_code == 403


def test_the_operator_acts_as_support_in_that_tenant_audited(shop: TenantFixture) -> None:
    client, user = _operator()
    response, _key = _start(client, shop.tenant.pk)
    assert response["Location"] == "/console/"

    session = SupportSession.objects.get()
    assert session.operator == user and session.tenant_id == shop.tenant.pk
    assert session.reason == REASON and session.ended_at is None
    assert session.expires_at - session.started_at == timedelta(minutes=30)
    overview = client.get("/console/").content.decode()
    assert 'id="support-banner"' in overview
    assert f"Support session by <strong>olga</strong> until {session.expires_at:%H:%M} UTC" in (
        overview
    )
    assert 'action="/console/support/end/"' in overview
    started = AuditEntry.objects.get(tenant=shop.tenant, action="support.started")
    assert started.actor == f"operator:{user.pk}" and started.user == user
    assert started.detail["reason"] == REASON

    # A support member: grants for a customer, no settings form, no team, no audit log.
    ann = _ann(shop)
    page = client.get(f"/console/customers/{ann.pk}/")
    assert page.status_code == 200
    granted = client.post(
        f"/console/customers/{ann.pk}/grant/",
        {"form_key": form_key(page.content), "offer": "BONUS_10", "reason": "goodwill"},
    )
    assert granted.status_code == 302
    grant = AuditEntry.objects.get(tenant=shop.tenant, action="customer.grant")
    assert grant.actor == f"operator:{user.pk}" and grant.target == f"customer:{ann.pk}"
    with tenant_context(shop.tenant):
        assert Grant.objects.get().actor == f"operator:{user.pk}"
        assert set(LedgerEntry.objects.values_list("actor", flat=True)) == {f"operator:{user.pk}"}
    assert client.get("/console/team/").status_code == 403
    assert client.get("/console/audit/").status_code == 403
    # The operator's own account (its second factor) is not managed from a tenant's console.
    assert client.get("/console/account/security/").status_code == 403
    assert client.post("/console/settings/", {"form_key": "k" * 24}).status_code == 403

    # The tenant's owner reads all of it in its audit log.
    make_member(shop.tenant, "owner@example.com", "owner")
    owner = signed_in_client("owner@example.com")
    log = owner.get(f"/console/audit/?actor=operator:{user.pk}").context["page"].items
    assert [e.action for e in log] == ["customer.grant", "support.started"]


def test_a_session_for_one_tenant_never_shows_another(
    shop: TenantFixture, globex: TenantFixture
) -> None:
    client, _user = _operator()
    _start(client, shop.tenant.pk)
    with tenant_context(globex.tenant):
        gina = customer_ensure(CustomerRef(external_id="gina"))

    assert client.get(f"/console/customers/{gina.pk}/").status_code == 404
    assert client.get("/console/customers/?q=gina").context["page"].items == []
    switched = client.post("/console/switch/", {"tenant": str(globex.tenant.pk)})
    assert switched.status_code == 404
    assert "Globex" not in client.get("/console/").content.decode()


def test_the_end_button_ends_it_and_access_with_it(acme: TenantFixture) -> None:
    client, user = _operator()
    _start(client, acme.tenant.pk)

    response = client.post("/console/support/end/")

    assert response.status_code == 302
    assert response["Location"] == f"/admin/tenants/tenant/{acme.tenant.pk}/change/"
    assert SupportSession.objects.get().ended_at is not None
    ended = AuditEntry.objects.get(tenant=acme.tenant, action="support.ended")
    assert ended.actor == f"operator:{user.pk}" and ended.detail["why"] == "ended"
    assert client.get("/console/").status_code == 403
    # Ending twice ends once.
    client.post("/console/support/end/")
    assert AuditEntry.objects.filter(action="support.ended").count() == 1


def test_signing_out_of_the_console_ends_it(acme: TenantFixture) -> None:
    client, _user = _operator()
    _start(client, acme.tenant.pk)

    client.post("/console/logout/")

    assert SupportSession.objects.get().ended_at is not None
    ended = AuditEntry.objects.get(tenant=acme.tenant, action="support.ended")
    assert ended.detail["why"] == "signed_out"


def test_it_ends_by_itself_at_expiry(acme: TenantFixture) -> None:
    client, _user = _operator()
    _start(client, acme.tenant.pk)
    session = SupportSession.objects.get()
    assert client.get("/console/").status_code == 200

    with clock.frozen(session.expires_at + timedelta(seconds=1)):
        response = client.get("/console/customers/")

    assert response.status_code == 403 and 'id="support-none"' in response.content.decode()
    session.refresh_from_db()
    assert session.ended_at == session.expires_at
    ended = AuditEntry.objects.get(tenant=acme.tenant, action="support.ended")
    assert ended.detail["why"] == "expired"
    assert client.get("/console/").status_code == 403


def test_a_double_submitted_start_opens_one_session(acme: TenantFixture) -> None:
    client, _user = _operator()
    _response, key = _start(client, acme.tenant.pk)
    again = client.post(START.format(acme.tenant.pk), {"form_key": key, "reason": REASON})
    assert again.status_code == 302
    assert SupportSession.objects.count() == 1
    assert AuditEntry.objects.filter(action="support.started").count() == 1
    assert client.get("/console/").status_code == 200


def test_a_new_session_ends_the_previous_one(acme: TenantFixture, globex: TenantFixture) -> None:
    client, _user = _operator()
    _start(client, acme.tenant.pk)
    _start(client, globex.tenant.pk)

    first, second = SupportSession.objects.order_by("pk")
    assert first.ended_at is not None and second.ended_at is None
    assert AuditEntry.objects.get(tenant=acme.tenant, action="support.ended").detail["why"] == (
        "replaced"
    )
    assert "Globex" in client.get("/console/").content.decode()


def test_losing_the_permission_ends_access(acme: TenantFixture) -> None:
    client, user = _operator()
    _start(client, acme.tenant.pk)
    user.user_permissions.clear()
    assert client.get("/console/").status_code == 403


def test_the_start_form_needs_its_csrf_token(acme: TenantFixture) -> None:
    _client, user = _operator()
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    page = browser.get(START.format(acme.tenant.pk))
    response = browser.post(
        START.format(acme.tenant.pk), {"form_key": form_key(page.content), "reason": REASON}
    )
    assert response.status_code == 403
    assert not SupportSession.objects.exists()
