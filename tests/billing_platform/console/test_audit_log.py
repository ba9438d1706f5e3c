"""The audit log page: every entry of the tenant, newest first, paged, filtered by action,
person, target and dates; owners only; another tenant's entries never shown."""

from __future__ import annotations

from datetime import timedelta

from django.test import Client
from django.utils import timezone

from billing_platform.console.models import AuditEntry
from tenants.models import Tenant
from tests.support.console import make_member, signed_in_client
from tests.support.tenants import TenantFixture

URL = "/console/audit/"


def _entry(tenant: Tenant, action: str, *, actor: str = "ann@example.com", target: str = "",
           days_ago: int = 0) -> AuditEntry:
    entry = AuditEntry.objects.create(tenant=tenant, actor=actor, action=action, target=target)
    if days_ago:
        AuditEntry.objects.filter(pk=entry.pk).update(
            created_at=timezone.now() - timedelta(days=days_ago)
        )
    return entry


def _owner(tenant: Tenant) -> Client:
    make_member(tenant, "owner@example.com", "owner")
    return signed_in_client("owner@example.com")


def _shown(client: Client, query: str = "") -> list[str]:
    """The actions listed, in order, with their targets."""
    response = client.get(f"{URL}?{query}")
    assert response.status_code == 200
    return [f"{e.action} {e.target}".strip() for e in response.context["page"].items]


def test_the_owner_reads_every_entry_newest_first_filtered(
    acme: TenantFixture, globex: TenantFixture
) -> None:
    client = _owner(acme.tenant)
    _entry(acme.tenant, "customer.grant", target="customer:c1", days_ago=10)
    _entry(acme.tenant, "order.confirm", actor="bob@example.com", target="order:o1", days_ago=3)
    _entry(acme.tenant, "customer.adjust", actor="operator:7", target="customer:c1", days_ago=1)
    _entry(globex.tenant, "customer.grant", target="customer:c1")

    assert _shown(client) == ["customer.adjust customer:c1", "order.confirm order:o1",
                              "customer.grant customer:c1"]
    assert _shown(client, "action=customer.grant") == ["customer.grant customer:c1"]
    assert _shown(client, "actor=Bob@Example.com") == ["order.confirm order:o1"]
    assert _shown(client, "actor=operator:7") == ["customer.adjust customer:c1"]
    assert _shown(client, "target=customer:c1") == ["customer.adjust customer:c1",
                                                    "customer.grant customer:c1"]
    today = timezone.now().date()
    since = (today - timedelta(days=5)).isoformat()
    until = (today - timedelta(days=2)).isoformat()
    assert _shown(client, f"created_from={since}&created_to={until}") == ["order.confirm order:o1"]
    assert _shown(client, "target=customer:c1&actor=ann@example.com") == [
        "customer.grant customer:c1"
    ]
    assert _shown(client, "action=nothing.like.this") == []


def test_the_log_pages_by_keyset_and_a_bad_cursor_or_date_is_no_error(
    acme: TenantFixture,
) -> None:
    client = _owner(acme.tenant)
    AuditEntry.objects.bulk_create(
        AuditEntry(tenant=acme.tenant, actor="ann@example.com", action="customer.grant",
                   target=f"customer:{n}")
        for n in range(60)
    )
    first = client.get(URL)
    page = first.context["page"]
    assert len(page.items) == 50 and page.next_cursor
    assert f"cursor={page.next_cursor}" in first.content.decode()
    second = client.get(f"{URL}?cursor={page.next_cursor}").context["page"]
    assert len(second.items) == 10 and second.next_cursor is None
    assert {e.pk for e in page.items}.isdisjoint(e.pk for e in second.items)
    # A cursor this page did not issue, or a date that is no date: the first page, no error.
    assert client.get(f"{URL}?cursor=not-a-cursor").status_code == 200
    response = client.get(f"{URL}?created_from=yesterday")
    assert response.status_code == 200 and response.context["form"].errors["created_from"]


def test_only_owners_read_the_audit_log(acme: TenantFixture) -> None:
    for role in ("viewer", "support", "admin"):
        make_member(acme.tenant, f"{role}@example.com", role)
        client = signed_in_client(f"{role}@example.com")
        assert client.get(URL).status_code == 403, role
        assert f'href="{URL}"' not in client.get("/console/settings/").content.decode()


def test_another_tenants_entries_are_never_shown(
    acme: TenantFixture, globex: TenantFixture
) -> None:
    client = _owner(acme.tenant)
    secret = _entry(globex.tenant, "customer.grant", actor="gina@globex.example",
                    target="customer:globex-only")
    for query in ("", "target=customer:globex-only", "actor=gina@globex.example",
                  f"tenant={globex.tenant.pk}"):
        html = client.get(f"{URL}?{query}").content.decode()
        assert "globex-only" not in html.split('id="audit-entries"', 1)[1], query
        assert "gina@globex.example" not in html.split('id="audit-entries"', 1)[1], query
    assert secret.pk not in {e.pk for e in client.get(URL).context["page"].items}


def test_the_team_page_links_the_full_log_and_the_settings(acme: TenantFixture) -> None:
    client = _owner(acme.tenant)
    html = client.get("/console/team/").content.decode()
    assert f'href="{URL}"' in html and 'href="/console/settings/"' in html
    settings_page = client.get("/console/settings/").content.decode()
    assert 'href="/console/team/"' in settings_page and f'href="{URL}"' in settings_page


def test_an_entrys_detail_is_shown_as_text_and_json(acme: TenantFixture) -> None:
    client = _owner(acme.tenant)
    AuditEntry.objects.create(
        tenant=acme.tenant,
        actor="ann@example.com",
        action="settings.update",
        target="settings",
        detail={"changes": {"public_catalog": {"old": False, "new": True}}, "why": "<b>x</b>"},
    )
    html = client.get(URL).content.decode()
    shown = 'changes: {"public_catalog": {"new": true, "old": false}}'
    assert shown.replace('"', "&quot;") in html
    # Escaped like everything a person typed.
    assert "why: &lt;b&gt;x&lt;/b&gt;" in html
