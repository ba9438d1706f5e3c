"""The Team page's actions: an owner changes a member's role, removes a member (confirmed
first) and revokes a pending invitation — once per form, audited, never leaving the team
without an owner, and never reaching another tenant's members."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client

from billing_platform.console.models import AuditEntry, Invitation, Membership
from tests.support.console import form_key, make_member, signed_in_client
from tests.support.tenants import TenantFixture

OWNER = "owner@team.example"


def _owner(tenant: object) -> Client:
    make_member(tenant, OWNER, "owner")  # type: ignore[arg-type]
    return signed_in_client(OWNER)


def _membership(email: str, tenant: object) -> Membership:
    return Membership.objects.get(user__username=email, tenant=tenant)


def _role_key(client: Client, membership: Membership) -> str:
    page = client.get("/console/team/").content.decode()
    row = page[page.index(f'id="member-{membership.pk}"') :]
    return form_key(row)


def test_an_owner_changes_a_role_once(acme: TenantFixture) -> None:
    owner = _owner(acme.tenant)
    ann = make_member(acme.tenant, "ann@team.example", "viewer")
    membership = _membership("ann@team.example", acme.tenant)
    key = _role_key(owner, membership)
    path = f"/console/team/members/{membership.pk}/role/"

    first = owner.post(path, {"form_key": key, "role": "admin"})
    again = owner.post(path, {"form_key": key, "role": "admin"})

    assert first.status_code == again.status_code == 302
    membership.refresh_from_db()
    assert membership.role == "admin"
    (entry,) = AuditEntry.objects.filter(action="member.role")
    assert entry.detail["before"] == "viewer" and entry.detail["role"] == "admin"
    assert entry.detail["email"] == ann.email
    shown = owner.get("/console/team/").content.decode()
    assert "This form was already sent; nothing more was done." in shown
    # The new role applies on the member's next page: admins reach the catalog's forms.
    ann_client = signed_in_client("ann@team.example")
    assert ann_client.get("/console/catalog/new-product/").status_code == 200


def test_the_last_owner_can_be_neither_demoted_nor_removed(acme: TenantFixture) -> None:
    owner = _owner(acme.tenant)
    mine = _membership(OWNER, acme.tenant)

    demoted = owner.post(
        f"/console/team/members/{mine.pk}/role/",
        {"form_key": _role_key(owner, mine), "role": "admin"},
        follow=True,
    )
    removed = owner.post(
        f"/console/team/members/{mine.pk}/remove/",
        {"form_key": "k" * 20 + "remove", "confirmed": "on"},
        follow=True,
    )

    for answer in (demoted, removed):
        assert "A team keeps at least one owner" in answer.content.decode()
    mine.refresh_from_db()
    assert mine.role == "owner"
    assert not AuditEntry.objects.exists()

    # With a second owner, the first may step down.
    make_member(acme.tenant, "second@team.example", "owner")
    stepped = owner.post(
        f"/console/team/members/{mine.pk}/role/",
        {"form_key": _role_key(owner, mine), "role": "admin"},
    )
    assert stepped.status_code == 302
    mine.refresh_from_db()
    assert mine.role == "admin"
    assert owner.get("/console/team/").status_code == 403  # no longer an owner


def test_removing_a_member_is_confirmed_and_their_next_page_is_refused(
    acme: TenantFixture,
) -> None:
    owner = _owner(acme.tenant)
    make_member(acme.tenant, "bob@team.example", "support")
    bob = signed_in_client("bob@team.example")
    assert bob.get("/console/customers/").status_code == 200
    membership = _membership("bob@team.example", acme.tenant)
    path = f"/console/team/members/{membership.pk}/remove/"
    fields = {"form_key": "r" * 24}

    asked = owner.post(path, fields)
    assert asked.status_code == 200 and b'id="confirm"' in asked.content
    assert b"Remove bob@team.example from" in asked.content
    assert Membership.objects.filter(pk=membership.pk).exists()
    done = owner.post(path, {**fields, "confirmed": "on"})
    again = owner.post(path, {**fields, "confirmed": "on"})

    assert done.status_code == 302 and again.status_code == 404  # gone: nothing to remove
    assert not Membership.objects.filter(pk=membership.pk).exists()
    assert AuditEntry.objects.filter(action="member.remove").count() == 1
    assert bob.get("/console/customers/").status_code == 403


def test_a_revoked_invitation_link_no_longer_works(acme: TenantFixture) -> None:
    owner = _owner(acme.tenant)
    out = StringIO()
    call_command("console_invite", acme.tenant.slug, "new@team.example", stdout=out)
    link = re.search(r"/console/invitations/\S+/", out.getvalue())
    assert link
    invitation = Invitation.objects.get(email="new@team.example")
    assert Client().get(link.group(0)).status_code == 200

    revoked = owner.post(
        f"/console/team/invitations/{invitation.pk}/revoke/", {"form_key": "v" * 24}
    )

    assert revoked.status_code == 302
    assert Client().get(link.group(0)).status_code == 404
    assert "new@team.example" not in owner.get("/console/team/").content.decode().split(
        'id="invitations"'
    )[1].split("</ul>")[0]
    assert AuditEntry.objects.filter(action="invitation.revoke").count() == 1


@pytest.mark.parametrize("role", ["viewer", "support", "admin"])
def test_only_owners_manage_the_team(acme: TenantFixture, role: str) -> None:
    make_member(acme.tenant, "someone@team.example", "viewer")
    target = _membership("someone@team.example", acme.tenant)
    make_member(acme.tenant, f"{role}-x@team.example", role)
    client = signed_in_client(f"{role}-x@team.example")

    for path, data in (
        (f"/console/team/members/{target.pk}/role/", {"form_key": "a" * 24, "role": "owner"}),
        (f"/console/team/members/{target.pk}/remove/", {"form_key": "b" * 24, "confirmed": "on"}),
    ):
        assert client.post(path, data).status_code == 403, path
    target.refresh_from_db()
    assert target.role == "viewer"
    assert not AuditEntry.objects.exists()


def test_another_tenants_members_and_invitations_are_not_found(
    acme: TenantFixture, globex: TenantFixture
) -> None:
    owner = _owner(acme.tenant)
    make_member(globex.tenant, "theirs@team.example", "owner")
    theirs = _membership("theirs@team.example", globex.tenant)
    call_command("console_invite", globex.tenant.slug, "invited@team.example", stdout=StringIO())
    invitation = Invitation.objects.get(email="invited@team.example")

    answers = [
        owner.post(
            f"/console/team/members/{theirs.pk}/role/", {"form_key": "c" * 24, "role": "viewer"}
        ),
        owner.post(
            f"/console/team/members/{theirs.pk}/remove/", {"form_key": "d" * 24, "confirmed": "on"}
        ),
        owner.post(f"/console/team/invitations/{invitation.pk}/revoke/", {"form_key": "e" * 24}),
    ]

    assert [a.status_code for a in answers] == [404, 404, 404]
    assert all(b"theirs@team.example" not in a.content for a in answers)
    theirs.refresh_from_db()
    invitation.refresh_from_db()
    assert theirs.role == "owner" and Invitation.objects.filter(pk=invitation.pk).exists()
    assert invitation.expires_at > invitation.created_at
    assert not AuditEntry.objects.filter(tenant=acme.tenant).exists()


def test_a_team_form_without_its_csrf_token_is_refused(acme: TenantFixture) -> None:
    _owner(acme.tenant)
    make_member(acme.tenant, "zed@team.example", "viewer")
    target = _membership("zed@team.example", acme.tenant)
    signed = signed_in_client(OWNER)
    strict = Client(enforce_csrf_checks=True)
    strict.cookies = signed.cookies
    refused = strict.post(
        f"/console/team/members/{target.pk}/role/", {"form_key": "f" * 24, "role": "owner"}
    )
    assert refused.status_code == 403
    target.refresh_from_db()
    assert target.role == "viewer"


@pytest.mark.parametrize("data", [{}, {"form_key": "short"}, {"form_key": "g" * 24, "role": "god"}])
def test_malformed_team_posts_change_nothing(acme: TenantFixture, data: dict[str, str]) -> None:
    owner = _owner(acme.tenant)
    make_member(acme.tenant, "kim@team.example", "viewer")
    target = _membership("kim@team.example", acme.tenant)

    role = owner.post(f"/console/team/members/{target.pk}/role/", data, follow=True)
    revoke = owner.post("/console/team/invitations/999999/revoke/", data)

    assert role.status_code == 200 and b'id="members"' in role.content
    assert revoke.status_code == 404
    target.refresh_from_db()
    assert target.role == "viewer"
    assert not AuditEntry.objects.exists()
