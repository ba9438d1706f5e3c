"""The platform admin: login and CSRF, onboarding form, tenant changes and key revocation."""

from __future__ import annotations

import re
from collections.abc import Iterator
from io import StringIO
from types import SimpleNamespace
from typing import Any

import pytest
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils.html import escape
from django_ratelimit import core as ratelimit_core

from billing_platform.core import crypto
from tenants.models import ApiKey, PlatformKey, Tenant, TenantStatus
from tenants.services import api_key_revoke, platform_key_create, tenant_delete_request
from tests.support.admin import offered_actions, staff_client
from tests.support.api import Api, assert_problem
from tests.support.tenants import TenantFixture, fresh_tenant, make_key

# The limiter's fixed windows must not roll in the middle of a test.
pytestmark = pytest.mark.usefixtures("limiter_now")

ADD_URL = "/admin/tenants/tenant/add/"
TENANTS_URL = "/admin/tenants/tenant/"
API_KEYS_URL = "/admin/tenants/apikey/"
PLATFORM_KEYS_URL = "/admin/tenants/platformkey/"
_KEY_ON_PAGE = re.compile(r'id="api-key"[^>]*>(bk_[A-Za-z0-9_\-]+)<')


def _superuser(username: str = "operator") -> User:
    return User.objects.create_superuser(username, f"{username}@example.com", "correct-horse-9")


@pytest.fixture
def committed_operator(committed: None) -> Iterator[Client]:
    """A logged-in superuser whose rows are committed, and removed after the test."""
    user = _superuser("adm-committed-operator")
    client = Client()
    client.force_login(user)
    yield client
    client.logout()
    user.delete()


def _onboard_data(**overrides: Any) -> dict[str, Any]:
    return {"name": "Admin Made", "slug": "adm-made", "rate_limit": "", "_save": "Save"} | overrides


def _settings_data(tenant: Tenant) -> dict[str, Any]:
    """A tenant's settings as its change form posts them (an unticked box is not sent)."""
    posted: dict[str, Any] = {}
    for name, value in tenant.merged_settings.items():
        if value is True:
            posted[name] = "on"
        elif value is not False:
            posted[name] = "" if value is None else str(value)
    return posted


def _change_data(tenant: Tenant, **overrides: Any) -> dict[str, Any]:
    data = {
        "name": tenant.name,
        "status": tenant.status,
        "rate_limit": tenant.rate_limit,
        **_settings_data(tenant),
        "_save": "Save",
    }
    return {name: value for name, value in (data | overrides).items() if value is not None}


def _action(client: Client, url: str, action: str, pks: list[Any]) -> Any:
    return client.post(
        url, {"action": action, "_selected_action": [str(pk) for pk in pks], "index": "0"}
    )


def _form_errors(response: Any) -> dict[str, list[str]]:
    return dict(response.context["adminform"].form.errors)


# --- Access.


def test_admin_requires_a_staff_login(db: None) -> None:
    anonymous = Client()
    for url in ("/admin/", TENANTS_URL, ADD_URL, API_KEYS_URL):
        response = anonymous.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/admin/login/?next="), url

    response = anonymous.post(ADD_URL, _onboard_data(slug="adm-anon"))
    assert response.status_code == 302
    assert not Tenant.objects.filter(slug="adm-anon").exists()

    member = Client()
    member.force_login(User.objects.create_user("member", "m@example.com", "correct-horse-9"))
    response = member.get(TENANTS_URL)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_login_form_lets_an_operator_in(db: None) -> None:
    _superuser()
    client = Client()
    response = client.post(
        "/admin/login/?next=/admin/",
        {"username": "operator", "password": "correct-horse-9", "next": "/admin/"},
    )
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert client.get(TENANTS_URL).status_code == 200


# --- Login throttling.

LOGIN_URL = "/admin/login/?next=/admin/"
OUTSIDER_IP = "203.0.113.7"


def _login(client: Client, username: str, password: str, ip: str = "127.0.0.1") -> Any:
    return client.post(
        LOGIN_URL, {"username": username, "password": password, "next": "/admin/"},
        REMOTE_ADDR=ip,
    )


def _logged_in(client: Client) -> bool:
    return bool(client.get("/admin/").status_code == 200)


def _login_errors(response: Any) -> list[str]:
    assert response.status_code == 200
    return [str(e) for e in response.context["form"].non_field_errors()]


def test_forty_wrong_passwords_then_the_right_one_is_refused(db: None) -> None:
    _superuser()
    guesser = Client()
    answers = [_login(guesser, "operator", f"guess-{i}", ip=OUTSIDER_IP) for i in range(40)]

    assert all(_login_errors(a) for a in answers)
    locked = _login_errors(answers[-1])
    assert len(locked) == 1 and "Too many failed logins" in locked[0], locked
    response = _login(guesser, "operator", "correct-horse-9", ip=OUTSIDER_IP)
    assert "Too many failed logins" in _login_errors(response)[0]
    assert not _logged_in(guesser)
    # The account lock holds from any other address too, and for any spelling of the name.
    elsewhere = Client()
    assert "Too many failed logins" in _login_errors(
        _login(elsewhere, "OPERATOR", "correct-horse-9", ip="198.51.100.1")
    )[0]
    assert not _logged_in(elsewhere)


def test_failures_are_limited_per_client_address(db: None) -> None:
    _superuser("adm-other")
    sprayer = Client()
    for i in range(20):
        _login(sprayer, f"nobody-{i}", "wrong", ip=OUTSIDER_IP)

    response = _login(sprayer, "adm-other", "correct-horse-9", ip=OUTSIDER_IP)

    assert "Too many failed logins" in _login_errors(response)[0]
    assert not _logged_in(sprayer)
    # Another address is not held back by it.
    assert _login(Client(), "adm-other", "correct-horse-9", ip="198.51.100.2").status_code == 302


def test_an_outsider_cannot_lock_an_operator_out_of_a_known_browser(db: None) -> None:
    _superuser()
    browser = Client()
    assert _login(browser, "operator", "correct-horse-9").status_code == 302
    browser.post("/admin/logout/")
    assert not _logged_in(browser)

    for i in range(40):
        _login(Client(), "operator", f"guess-{i}", ip=OUTSIDER_IP)

    # The browser that signed in before (a signed cookie) is not held back by the account lock...
    assert _login(browser, "operator", "correct-horse-9").status_code == 302
    assert _logged_in(browser)
    # ...a new one is, until an operator unlocks the account.
    fresh = Client()
    refused = _login(fresh, "operator", "correct-horse-9")
    assert "Too many failed logins" in _login_errors(refused)[0]
    out = StringIO()
    call_command("unlock_admin_login", "--username", "operator", stdout=out)
    assert "operator" in out.getvalue()
    assert _login(fresh, "operator", "correct-horse-9").status_code == 302


def test_a_known_browser_has_its_own_limit(db: None) -> None:
    _superuser()
    browser = Client()
    assert _login(browser, "operator", "correct-horse-9").status_code == 302
    browser.post("/admin/logout/")

    for i in range(5):
        _login(browser, "operator", f"guess-{i}")

    assert "Too many failed logins" in _login_errors(
        _login(browser, "operator", "correct-horse-9")
    )[0]
    # The cookie is signed for one account: another account there meets the usual limits only.
    _superuser("adm-second")
    assert _login(browser, "adm-second", "correct-horse-9").status_code == 302


def test_a_lock_ends_with_its_window_and_an_address_can_be_unlocked(
    db: None, monkeypatch: pytest.MonkeyPatch, limiter_now: float
) -> None:
    _superuser()
    client = Client()
    for i in range(5):
        _login(client, "operator", f"guess-{i}", ip=OUTSIDER_IP)
    assert "Too many failed logins" in _login_errors(
        _login(client, "operator", "correct-horse-9", ip=OUTSIDER_IP)
    )[0]

    # 15 minutes on, the window is over and the right password works again.
    later = limiter_now + 901
    monkeypatch.setattr(ratelimit_core, "time", SimpleNamespace(time=lambda: later))
    assert _login(client, "operator", "correct-horse-9", ip=OUTSIDER_IP).status_code == 302

    # An address past its limit is unlocked by the same command.
    _superuser("adm-ip")
    for i in range(20):
        _login(Client(), f"nobody-{i}", "wrong", ip=OUTSIDER_IP)
    assert _login_errors(_login(Client(), "adm-ip", "correct-horse-9", ip=OUTSIDER_IP))
    call_command("unlock_admin_login", "--ip", OUTSIDER_IP, stdout=StringIO())
    assert _login(Client(), "adm-ip", "correct-horse-9", ip=OUTSIDER_IP).status_code == 302


def test_csrf_is_enforced(db: None) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(_superuser())
    before = Tenant.objects.count()

    response = client.post(ADD_URL, _onboard_data(slug="adm-csrf"))

    assert response.status_code == 403
    assert Tenant.objects.count() == before
    # The same client with the form's token gets past CSRF (and is stopped by the invalid slug).
    client.get(ADD_URL)
    token = client.cookies["csrftoken"].value
    response = client.post(ADD_URL, _onboard_data(slug="Bad Slug", csrfmiddlewaretoken=token))
    assert response.status_code == 200
    assert "slug" in _form_errors(response)
    assert Tenant.objects.count() == before


def test_a_view_only_operator_changes_nothing(acme: TenantFixture) -> None:
    viewer = staff_client("viewer", "view_tenant", "view_apikey", "view_platformkey")
    key, _raw = make_key(acme.tenant, name="kept")
    platform, _ = platform_key_create(name="adm-kept")

    # Every list is readable; no action is offered on any of them.
    for url in (TENANTS_URL, API_KEYS_URL, PLATFORM_KEYS_URL):
        assert offered_actions(viewer, url) == set(), url
    # Posting the actions anyway, the onboarding form, or a tenant's change form does nothing.
    _action(viewer, TENANTS_URL, "suspend_tenants", [acme.tenant.pk])
    _action(viewer, API_KEYS_URL, "revoke_keys", [key.pk])
    _action(viewer, PLATFORM_KEYS_URL, "revoke_keys", [platform.pk])
    assert viewer.get(ADD_URL).status_code == 403
    assert viewer.post(ADD_URL, _onboard_data(slug="adm-viewer")).status_code == 403
    change = viewer.post(
        f"{TENANTS_URL}{acme.tenant.pk}/change/", _change_data(acme.tenant, name="Renamed")
    )
    assert change.status_code == 403
    tenant = Tenant.objects.get(pk=acme.tenant.pk)
    assert (tenant.status, tenant.name) == (TenantStatus.ACTIVE, acme.tenant.name)
    assert ApiKey.objects.get(pk=key.pk).revoked_at is None
    assert PlatformKey.objects.get(pk=platform.pk).revoked_at is None
    assert not Tenant.objects.filter(slug="adm-viewer").exists()


def test_each_action_needs_its_own_permission(acme: TenantFixture) -> None:
    # Changing tenants does not revoke keys, and revoking tenant keys does not touch platform keys.
    tenant_changer = staff_client("tenant-changer", "view_tenant", "change_tenant", "view_apikey")
    assert offered_actions(tenant_changer, TENANTS_URL) == {
        "suspend_tenants", "reactivate_tenants"
    }
    assert offered_actions(tenant_changer, API_KEYS_URL) == set()
    assert tenant_changer.get(ADD_URL).status_code == 403
    revoker = staff_client("revoker", "view_apikey", "change_apikey", "view_platformkey")
    assert offered_actions(revoker, API_KEYS_URL) == {"revoke_keys"}
    assert offered_actions(revoker, PLATFORM_KEYS_URL) == set()
    onboarder = staff_client("onboarder", "view_tenant", "add_tenant")
    assert onboarder.get(ADD_URL).status_code == 200
    assert offered_actions(onboarder, TENANTS_URL) == set()


# --- Onboarding.


def test_onboarding_redirects_to_a_page_that_shows_the_key_once(
    api: Api, cleanup_tenants: list[str], committed_operator: Client
) -> None:
    operator = committed_operator
    cleanup_tenants.append("adm-onboard")

    assert operator.get(ADD_URL).status_code == 200
    response = operator.post(
        ADD_URL, _onboard_data(name="Onboarded Co", slug="adm-onboard", rate_limit="120/m")
    )

    # Post/Redirect/Get: the answer to the POST is a redirect, the key is on the page it names.
    assert response.status_code == 302, response.content[:500]
    tenant = Tenant.objects.get(slug="adm-onboard")
    (key,) = ApiKey.objects.filter(tenant=tenant)
    result_url = response["Location"]
    assert result_url == f"{TENANTS_URL}{tenant.pk}/onboarded/{key.pk}/"
    shown = operator.get(result_url)
    assert shown.status_code == 200
    assert "no-store" in shown["Cache-Control"]
    match = _KEY_ON_PAGE.search(shown.content.decode())
    assert match, shown.content.decode()
    raw = match.group(1)
    assert (tenant.name, tenant.status, tenant.rate_limit, tenant.schema_name) == (
        "Onboarded Co",
        TenantStatus.ACTIVE,
        "120/m",
        "t_adm_onboard",
    )
    listed = api.get("keys", key=raw)
    assert listed.status == 200, listed.body
    (only,) = listed.json["items"]
    assert set(only["scopes"]) == {"billing:read", "billing:write", "billing:grant", "admin"}
    assert LogEntry.objects.filter(object_id=str(tenant.pk)).exists()

    # A reload of the result page shows no secret and onboards nothing.
    reloaded = operator.get(result_url)
    assert reloaded.status_code == 200
    page = reloaded.content.decode()
    assert raw not in page and 'id="api-key"' not in page
    assert "shown once already" in page and key.prefix in page
    assert Tenant.objects.filter(slug="adm-onboard").count() == 1
    assert ApiKey.objects.filter(tenant=tenant).count() == 1
    # Shown once: no later page carries the key or the tenant's identity secret.
    for url in (TENANTS_URL, f"{TENANTS_URL}{tenant.pk}/change/", API_KEYS_URL):
        page = operator.get(url).content.decode()
        assert raw not in page, url
        assert tenant.identity_secret not in page, url


def test_the_secret_waits_encrypted_in_the_session_and_only_for_its_own_page(
    cleanup_tenants: list[str],
    committed_operator: Client,
    committed_tenants: dict[str, TenantFixture],
) -> None:
    acme = committed_tenants["acme"]
    operator = committed_operator
    cleanup_tenants.append("adm-sess")
    response = operator.post(ADD_URL, _onboard_data(slug="adm-sess"))
    assert response.status_code == 302
    tenant = Tenant.objects.get(slug="adm-sess")
    (key,) = ApiKey.objects.filter(tenant=tenant)

    # Held encrypted: the session row never carries the key in clear.
    (token,) = operator.session["billable.once"].values()
    assert key.prefix not in token
    assert crypto.decrypt(token).startswith(key.prefix + "_")
    # Another tenant's URL with this key's id finds no key; the secret stays for its own page.
    assert operator.get(f"{TENANTS_URL}{acme.tenant.pk}/onboarded/{key.pk}/").status_code == 404
    assert _KEY_ON_PAGE.search(operator.get(response["Location"]).content.decode())
    assert operator.session.get("billable.once") is None


@pytest.mark.parametrize("slug", ["ab", "Abc", "1abc", "a_bc", "admin", "with space"])
def test_invalid_slug_is_a_form_error_and_creates_nothing(operator: Client, slug: str) -> None:
    before = Tenant.objects.count()

    response = operator.post(ADD_URL, _onboard_data(slug=slug))

    assert response.status_code == 200
    assert "slug" in _form_errors(response)
    assert Tenant.objects.count() == before


def test_duplicate_slug_is_a_form_error_and_creates_nothing(
    operator: Client, acme: TenantFixture
) -> None:
    before = Tenant.objects.count()

    response = operator.post(ADD_URL, _onboard_data(name="Another", slug="acme"))

    assert response.status_code == 200
    assert _form_errors(response)["slug"] == ["A tenant with this slug already exists"]
    assert Tenant.objects.count() == before
    assert Tenant.objects.get(slug="acme").name == acme.tenant.name


def test_bad_rate_limit_is_a_form_error(operator: Client) -> None:
    before = Tenant.objects.count()

    response = operator.post(ADD_URL, _onboard_data(slug="adm-rate", rate_limit="fast"))

    assert response.status_code == 200
    assert "rate_limit" in _form_errors(response)
    assert Tenant.objects.count() == before


# --- Tenant list and changes.


def test_changelist_hides_spares_and_filters(
    operator: Client, acme: TenantFixture, globex: TenantFixture
) -> None:
    Tenant.objects.create(
        slug="spare-adm", name="(spare)", schema_name="spare_adm", status=TenantStatus.SPARE
    )
    globex.tenant.status = TenantStatus.SUSPENDED
    globex.tenant.save()

    def slugs(query: dict[str, str]) -> set[str]:
        response = operator.get(TENANTS_URL, query)
        assert response.status_code == 200
        return {t.slug for t in response.context["cl"].result_list}

    assert {"acme", "globex"} <= slugs({})
    assert "spare-adm" not in slugs({})
    assert slugs({"status": "suspended"}) == {"globex"}
    assert "globex" not in slugs({"status": "active"})
    assert slugs({"q": "acme"}) == {"acme"}
    spare = Tenant.objects.get(slug="spare-adm")
    assert operator.get(f"{TENANTS_URL}{spare.pk}/change/").status_code == 302


def test_change_form_goes_through_the_service(
    api: Api, operator: Client, acme: TenantFixture
) -> None:
    assert api.get("keys", key=acme.key).status == 200  # caches the key with the tenant active
    url = f"{TENANTS_URL}{acme.tenant.pk}/change/"
    page = operator.get(url).content.decode()
    assert acme.tenant.identity_secret not in page
    assert 'name="schema_name"' not in page and 'name="slug"' not in page

    response = operator.post(
        url, _change_data(acme.tenant, status="suspended", rate_limit="10/s", name="Acme 2")
    )

    assert response.status_code == 302, _form_errors(response)
    tenant = Tenant.objects.get(pk=acme.tenant.pk)
    assert (tenant.status, tenant.rate_limit, tenant.name) == ("suspended", "10/s", "Acme 2")
    assert_problem(api.get("keys", key=acme.key), 403, "tenant_suspended")


def test_change_form_refuses_bad_values(operator: Client, globex: TenantFixture) -> None:
    url = f"{TENANTS_URL}{globex.tenant.pk}/change/"

    bad_rate = operator.post(url, _change_data(globex.tenant, rate_limit="fast"))
    spare = operator.post(url, _change_data(globex.tenant, status="spare"))
    tenant_delete_request(tenant=globex.tenant, confirm="globex")
    deleting = operator.post(url, _change_data(globex.tenant, status="active"))

    assert bad_rate.status_code == 200 and "rate_limit" in _form_errors(bad_rate)
    assert spare.status_code == 200 and "status" in _form_errors(spare)
    assert deleting.status_code == 200 and "status" in _form_errors(deleting)
    tenant = Tenant.objects.get(pk=globex.tenant.pk)
    assert (tenant.status, tenant.rate_limit) == ("suspended", globex.tenant.rate_limit)


def test_suspend_and_reactivate_actions(api: Api, operator: Client, acme: TenantFixture) -> None:
    assert api.get("keys", key=acme.key).status == 200

    response = _action(operator, TENANTS_URL, "suspend_tenants", [acme.tenant.pk])

    assert response.status_code == 302
    assert Tenant.objects.get(pk=acme.tenant.pk).status == TenantStatus.SUSPENDED
    assert_problem(api.get("keys", key=acme.key), 403, "tenant_suspended")
    _action(operator, TENANTS_URL, "reactivate_tenants", [acme.tenant.pk])
    assert Tenant.objects.get(pk=acme.tenant.pk).status == TenantStatus.ACTIVE
    assert api.get("keys", key=acme.key).status == 200


def test_reactivate_action_skips_a_tenant_being_deleted(
    operator: Client, globex: TenantFixture
) -> None:
    tenant_delete_request(tenant=globex.tenant, confirm="globex")

    response = _action(operator, TENANTS_URL, "reactivate_tenants", [globex.tenant.pk])

    assert response.status_code == 302
    assert Tenant.objects.get(pk=globex.tenant.pk).status == TenantStatus.SUSPENDED
    shown = [str(m) for m in operator.get(TENANTS_URL).context["messages"]]
    assert any("globex" in message and "deleted" in message for message in shown), shown


# --- Keys.


def test_revoke_action_refuses_the_key_at_once(
    api: Api, operator: Client, acme: TenantFixture
) -> None:
    key, raw = make_key(acme.tenant, name="to revoke")
    assert api.get("keys", key=raw).status == 200  # caches the key as valid

    response = _action(operator, API_KEYS_URL, "revoke_keys", [key.pk])

    assert response.status_code == 302
    assert ApiKey.objects.get(pk=key.pk).revoked_at is not None
    assert_problem(api.get("keys", key=raw), 401, "api_key_revoked")
    assert api.get("keys", key=acme.key).status == 200


def test_key_pages_never_show_secrets_and_allow_no_edits(
    operator: Client, acme: TenantFixture
) -> None:
    key, raw = make_key(acme.tenant, name="visible")
    listing = operator.get(API_KEYS_URL)
    assert listing.status_code == 200
    listed = listing.content.decode()
    assert key.prefix in listed and "visible" in listed
    page = operator.get(f"{API_KEYS_URL}{key.pk}/change/")
    assert page.status_code == 200
    for secret in (raw, key.key_hash, raw.rsplit("_", 1)[-1]):
        assert secret not in listed and secret not in page.content.decode()
    assert 'name="name"' not in page.content.decode()  # view only
    assert operator.get(f"{API_KEYS_URL}add/").status_code == 403
    assert operator.get(f"{API_KEYS_URL}{key.pk}/delete/").status_code == 403
    assert operator.post(f"{API_KEYS_URL}{key.pk}/change/", {"name": "x"}).status_code == 403
    assert ApiKey.objects.get(pk=key.pk).name == "visible"
    assert operator.get(f"{PLATFORM_KEYS_URL}add/").status_code == 403
    assert operator.get("/admin/tenants/domain/").status_code == 404


def test_revoked_filter(operator: Client, acme: TenantFixture) -> None:
    revoked, _ = make_key(acme.tenant, name="gone")
    api_key_revoke(key=revoked)

    def names(query: dict[str, str]) -> set[str]:
        return {k.name for k in operator.get(API_KEYS_URL, query).context["cl"].result_list}

    assert "gone" in names({"revoked": "yes"}) and "gone" not in names({"revoked": "no"})
    assert acme.key_row.name in names({"revoked": "no"})


def test_platform_key_revoke_action(api: Api, operator: Client) -> None:
    key, raw = platform_key_create(name="adm-platform")
    assert api.get("platform/tenants", key=raw).status == 200

    response = _action(operator, PLATFORM_KEYS_URL, "revoke_keys", [key.pk])

    assert response.status_code == 302
    assert PlatformKey.objects.get(pk=key.pk).revoked_at is not None
    assert_problem(api.get("platform/tenants", key=raw), 401, "api_key_revoked")
    page = operator.get(f"{PLATFORM_KEYS_URL}{key.pk}/change/").content.decode()
    assert key.key_hash not in page and raw not in page


# --- Labels and help texts.


def test_models_are_named_in_words(operator: Client, acme: TenantFixture) -> None:
    index = operator.get("/admin/").content.decode()
    for label in ("Tenants", "API keys", "Platform keys"):
        assert f">{label}<" in index, label
    key, _raw = make_key(acme.tenant, name="labelled")
    assert str(key) == f"labelled ({key.prefix}…)"
    assert str(acme.tenant) == "acme"
    page = operator.get(f"{API_KEYS_URL}{key.pk}/change/").content.decode()
    assert f"labelled ({key.prefix}…)" in page
    assert "ApiKey object" not in page


def test_slug_help_text_is_shown_whole(operator: Client) -> None:
    page = operator.get(ADD_URL).content.decode()

    # Escaped once, so the browser shows "t_<slug>" rather than swallowing "<slug>" as a tag.
    assert "The schema is t_&lt;slug&gt;, &#x27;-&#x27; written &#x27;_&#x27;" in page
    assert "t_<slug>" not in page and "&amp;lt;" not in page


# --- Settings: one typed field each, validated by the API's schema.


def test_settings_are_a_form_of_typed_fields(operator: Client, acme: TenantFixture) -> None:
    page = operator.get(f"{TENANTS_URL}{acme.tenant.pk}/change/").content.decode()

    assert 'type="number" name="low_balance_threshold" value="0"' in page
    assert 'type="number" name="idempotency_retention_days" value="7"' in page
    assert 'type="checkbox" name="public_catalog"' in page
    assert 'type="text" name="referral_reward_sku"' in page
    # Every setting has its field; the raw JSON line is gone.
    for name in acme.tenant.merged_settings:
        assert f'name="{name}"' in page, name
    assert "&quot;low_balance_threshold&quot;" not in page


def test_settings_form_saves_through_the_service(
    api: Api, operator: Client, acme: TenantFixture
) -> None:
    url = f"{TENANTS_URL}{acme.tenant.pk}/change/"

    response = operator.post(
        url,
        _change_data(
            acme.tenant,
            low_balance_threshold="5",
            public_catalog="on",
            referral_reward_sku="reports_10",
            subscription_grace_days="10",
        ),
    )

    assert response.status_code == 302, _form_errors(response)
    # The API reads what the admin saved (the cached tenant was invalidated), SKU upper-cased.
    body = api.get("settings", key=acme.key).json
    assert body["low_balance_threshold"] == 5
    assert body["public_catalog"] is True
    assert body["referral_reward_sku"] == "REPORTS_10"
    assert body["subscription_grace_days"] == 10
    assert body["idempotency_retention_days"] == 7
    entry = LogEntry.objects.filter(object_id=str(acme.tenant.pk)).latest("action_time")
    assert "Low balance threshold" in entry.get_change_message()
    # Emptying a reward SKU clears it, as null does in the API.
    tenant = Tenant.objects.get(pk=acme.tenant.pk)
    cleared = operator.post(url, _change_data(tenant, referral_reward_sku=""))
    assert cleared.status_code == 302, _form_errors(cleared)
    assert Tenant.objects.get(pk=acme.tenant.pk).merged_settings["referral_reward_sku"] is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("low_balance_threshold", "-1"),
        ("idempotency_retention_days", "31"),
        ("idempotency_retention_days", "0"),
        ("subscription_renewal_notice_days", "0"),
        ("subscription_grace_days", "366"),
        ("referral_reward_sku", "no spaces"),
        ("referee_reward_sku", "x" * 65),
    ],
)
def test_settings_the_api_refuses_are_refused_with_its_message(
    api: Api, operator: Client, acme: TenantFixture, name: str, value: str
) -> None:
    before = Tenant.objects.get(pk=acme.tenant.pk)
    refused = api.patch("settings", json={name: int(value) if value.lstrip("-").isdigit()
                                          else value}, key=acme.key)
    problem = assert_problem(refused, 422, "validation_error")
    (api_error,) = problem["errors"]

    response = operator.post(
        f"{TENANTS_URL}{acme.tenant.pk}/change/",
        _change_data(acme.tenant, name="Renamed too", **{name: value}),
    )

    assert response.status_code == 200
    assert _form_errors(response) == {name: [api_error["msg"]]}
    assert escape(api_error["msg"]) in response.content.decode()
    after = Tenant.objects.get(pk=acme.tenant.pk)
    # Nothing half-applied: neither the setting nor the name changed.
    assert (after.settings, after.name) == (before.settings, before.name)


def test_a_view_only_operator_reads_the_settings(acme: TenantFixture) -> None:
    viewer = staff_client("settings-viewer", "view_tenant")
    page = viewer.get(f"{TENANTS_URL}{acme.tenant.pk}/change/").content.decode()
    assert "<th>idempotency_retention_days</th><td>7</td>" in page
    assert 'name="idempotency_retention_days"' not in page
    # Neither key creation nor deletion is offered, and both are refused.
    assert "Create an API key" not in page
    assert viewer.get(f"{TENANTS_URL}{acme.tenant.pk}/keys/add/").status_code == 403
    assert viewer.get(f"{TENANTS_URL}{acme.tenant.pk}/delete/").status_code == 403


# --- Creating a tenant key.


def _key_data(**overrides: Any) -> dict[str, Any]:
    return {"name": "n8n", "scopes": ["billing:read"], "expires_at": ""} | overrides


def test_a_key_created_in_the_admin_works_and_is_shown_once(
    api: Api, operator: Client, acme: TenantFixture
) -> None:
    change_page = operator.get(f"{TENANTS_URL}{acme.tenant.pk}/change/").content.decode()
    add_url = f"{TENANTS_URL}{acme.tenant.pk}/keys/add/"
    assert f'href="{add_url}"' in change_page
    assert operator.get(add_url).status_code == 200

    response = operator.post(
        add_url,
        _key_data(scopes=["billing:read", "billing:grant"], expires_at="2099-01-31T12:30"),
    )

    assert response.status_code == 302, response.content[:1000]
    key = ApiKey.objects.get(tenant=acme.tenant, name="n8n")
    assert response["Location"] == f"{TENANTS_URL}{acme.tenant.pk}/keys/{key.pk}/"
    assert key.scopes == ["billing:read", "billing:grant"]
    assert key.expires_at is not None and key.expires_at.isoformat() == "2099-01-31T12:30:00+00:00"
    shown = operator.get(response["Location"])
    assert "no-store" in shown["Cache-Control"]
    match = _KEY_ON_PAGE.search(shown.content.decode())
    assert match, shown.content.decode()
    raw = match.group(1)
    # The key answers on the billing API with the scopes it was given, and no others.
    assert api.get("billing/products", key=raw).status == 200
    assert_problem(api.get("keys", key=raw), 403, "insufficient_scope")
    assert LogEntry.objects.filter(object_id=str(key.pk)).exists()
    # A reload shows no secret and creates no second key.
    again = operator.get(response["Location"]).content.decode()
    assert raw not in again and "shown once already" in again
    assert ApiKey.objects.filter(tenant=acme.tenant, name="n8n").count() == 1


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (_key_data(scopes=[]), "scopes"),
        (_key_data(scopes=["billing:everything"]), "scopes"),
        (_key_data(name=""), "name"),
        (_key_data(expires_at="2001-01-01T00:00"), "expires_at"),
        (_key_data(expires_at="tomorrow"), "expires_at"),
    ],
)
def test_a_bad_key_form_creates_nothing(
    operator: Client, acme: TenantFixture, data: dict[str, Any], field: str
) -> None:
    before = ApiKey.objects.filter(tenant=acme.tenant).count()

    response = operator.post(f"{TENANTS_URL}{acme.tenant.pk}/keys/add/", data)

    assert response.status_code == 200
    assert field in _form_errors(response)
    assert ApiKey.objects.filter(tenant=acme.tenant).count() == before


def test_the_key_limit_is_a_form_error(
    operator: Client, acme: TenantFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    active = ApiKey.objects.filter(tenant=acme.tenant, revoked_at__isnull=True).count()
    monkeypatch.setattr("tenants.services.MAX_KEYS_PER_TENANT", active)

    response = operator.post(f"{TENANTS_URL}{acme.tenant.pk}/keys/add/", _key_data())

    assert response.status_code == 200
    assert "active keys" in " ".join(_form_errors(response)["__all__"])
    assert ApiKey.objects.filter(tenant=acme.tenant).count() == active


def test_key_pages_of_an_unknown_tenant_or_key_are_404(
    operator: Client, acme: TenantFixture, globex: TenantFixture
) -> None:
    assert operator.get(f"{TENANTS_URL}999999/keys/add/").status_code == 404
    # A key of one tenant under another tenant's URL is not found.
    url = f"{TENANTS_URL}{globex.tenant.pk}/keys/{acme.key_row.pk}/"
    assert operator.get(url).status_code == 404


# --- Deleting a tenant.


def _schema_exists(name: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", [name])
        return cursor.fetchone() is not None


def test_deleting_a_tenant_drops_its_schema_once_confirmed(
    api: Api, committed_operator: Client
) -> None:
    operator = committed_operator
    with fresh_tenant("adm-del") as doomed:
        schema = doomed.tenant.schema_name
        url = f"{TENANTS_URL}{doomed.tenant.pk}/delete/"
        page = operator.get(url)
        assert page.status_code == 200
        assert f'<code id="schema-name">{schema}</code>' in page.content.decode()

        wrong = operator.post(url, {"confirm": "acme"})
        assert wrong.status_code == 200 and "confirm" in wrong.context["form"].errors
        assert _schema_exists(schema) and api.get("keys", key=doomed.key).status == 200

        response = operator.post(url, {"confirm": doomed.tenant.slug})

        assert response.status_code == 302 and response["Location"] == TENANTS_URL
        assert not _schema_exists(schema)
        assert not Tenant.objects.filter(pk=doomed.tenant.pk).exists()
        assert not ApiKey.objects.filter(tenant_id=doomed.tenant.pk).exists()
        assert_problem(api.get("keys", key=doomed.key), 401, "not_authenticated")
        entry = LogEntry.objects.get(object_id=str(doomed.tenant.pk), action_flag=DELETION)
        assert entry.object_repr == doomed.tenant.slug
        shown = [str(m) for m in operator.get(TENANTS_URL).context["messages"]]
        assert any(schema in message for message in shown), shown


def test_tenants_are_deleted_one_by_one_only(operator: Client, acme: TenantFixture) -> None:
    # No bulk delete: it would remove the rows and leave the schemas.
    assert offered_actions(operator, TENANTS_URL) == {"suspend_tenants", "reactivate_tenants"}
    _action(operator, TENANTS_URL, "delete_selected", [acme.tenant.pk])
    assert Tenant.objects.filter(pk=acme.tenant.pk).exists()
    # The confirmation page needs the delete permission.
    changer = staff_client("no-delete", "view_tenant", "change_tenant")
    assert changer.get(f"{TENANTS_URL}{acme.tenant.pk}/delete/").status_code == 403
    assert changer.post(
        f"{TENANTS_URL}{acme.tenant.pk}/delete/", {"confirm": "acme"}
    ).status_code == 403
    assert Tenant.objects.filter(pk=acme.tenant.pk).exists()
