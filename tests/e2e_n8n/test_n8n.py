"""A real n8n (pinned, var/n8n) driving the production server with the workflows of docs/n8n/.

Opt-in: `make e2e-n8n`. Every test runs twice, once per set of documented workflows:
- "node": docs/n8n/*.json, built with the Billable community node (integrations/n8n), packed and
  installed into n8n's community node folder with npm. Workflows 4-6 start with the Billable
  Trigger, which registers its own endpoints when n8n activates them and checks the signatures;
- "http": docs/n8n/http/*.json, HTTP Request nodes and a Code node that checks the signatures,
  with three endpoints registered by the test (a custom header for their Header Auth).
One stack per set: gunicorn with production settings, the real webhook worker process, a fresh
tenant with its catalog, n8n with the seven workflows imported and activated by the CLI, and a
small receiver standing in for the "notify", "charge" and "model" URLs.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from tests.e2e_n8n.n8n import (
    HTTP_WORKFLOWS_DIR,
    NODE_PACKAGE,
    WORKFLOWS_DIR,
    N8n,
    n8n_instance,
    pack_node_package,
    render,
)
from tests.support.processes import Process, Server, free_port, production_server, webhook_worker

# django_db: so pytest-django creates this session's test database (the server runs over it); the
# module's stack commits its tenant itself and drops it afterwards, like the `committed` fixture.
pytestmark = [pytest.mark.n8n, pytest.mark.e2e, pytest.mark.django_db]

CALL_TIMEOUT = 30.0  # per webhook call into n8n: the first Code node run takes seconds
DELIVERY_TIMEOUT = 60.0
HOOK_HEADER = "X-Hook-Token"
API_CRED_ID = "billableApiKey01"  # http: Header Auth with the billing key
HOOK_CRED_ID = "billableHookTk01"
NODE_CRED_ID = "billableNodeKey1"  # node: Billable API credential, the billing key
ADMIN_CRED_ID = "billableAdmKey01"  # node: Billable API credential for the triggers (admin)
WORKFLOW_DIRS = {"node": WORKFLOWS_DIR, "http": HTTP_WORKFLOWS_DIR}
WORKFLOW_FILES = {name: sorted(d.glob("*.json")) for name, d in WORKFLOW_DIRS.items()}
TRIGGER_TYPE = f"{NODE_PACKAGE}.billableTrigger"
# About the node only: these tests take the "node" stack alone.
NODE_ONLY = pytest.mark.parametrize("stack", ["node"], indirect=True)
PATHS = {
    "payment": "billable-payment-received",
    "bot": "billable-bot-start",
    "paid": "billable-paid-action",
    "depleted": "billable-quota-depleted",
    "referral": "billable-referral-rewarded",
    "renewal": "billable-subscription-renewal",
    "ai": "billable-ai-request",
}
AI_COSTS = {"small_model": 1, "large_model": 10, "image": 25}


class Notifications:
    """What n8n posted to the notify URL (a stand-in for a chat or e-mail service)."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def add(self, body: dict[str, Any]) -> None:
        with self.lock:
            self.items.append(body)

    def where(self, **match: Any) -> list[dict[str, Any]]:
        with self.lock:
            return [n for n in self.items if all(n.get(k) == v for k, v in match.items())]


def _receiver(notifications: Notifications) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            received = json.loads(self.rfile.read(length) or b"{}")
            answer: dict[str, Any] = {"ok": True}
            if self.path == "/charge":  # a payment provider's charge: it answers a payment id
                received = {**received, "charge": True,
                            "idempotency_key": self.headers.get("Idempotency-Key")}
                answer["payment_id"] = f"pay_{received.get('order_id')}"
            elif self.path == "/model":  # an AI model: it answers the prompt
                received = {**received, "model_call": True,
                            "idempotency_key": self.headers.get("Idempotency-Key")}
                answer["answer"] = f"{received.get('model')} says: {received.get('prompt')}"
            notifications.add(received)
            body = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@dataclass
class Stack:
    variant: str  # "node" or "http"
    tenant: Any
    server: Server
    active_workflow_ids: set[str]
    n8n: N8n
    api: httpx.Client  # the tenant's API, with its key
    hook_token: str
    endpoints: dict[str, dict[str, Any]]
    notifications: Notifications
    worker: Process
    triggers: dict[str, dict[str, Any]] = field(default_factory=dict)  # node: name -> trigger
    timings: dict[str, float] = field(default_factory=dict)

    def hook(self, name: str, body: Any, *, token: str | None = None) -> httpx.Response:
        headers = {HOOK_HEADER: self.hook_token if token is None else token}
        return httpx.post(
            self.n8n.webhook_url(PATHS[name]), json=body, headers=headers, timeout=CALL_TIMEOUT
        )

    def diagnostics(self) -> str:
        return (
            f"--- n8n log\n{self.n8n.log_tail()}\n--- worker log\n"
            f"{self.worker.log_tail()}"
        )


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, (response.status_code, response.text[:1000])
    return response.json()


def _catalog(api: httpx.Client) -> None:
    products = [
        {"key": "credits", "name": "Credits", "product_type": "quantity",
         "features": ["pdf_analysis"]},
        {"key": "pro", "name": "Pro access", "product_type": "period", "features": ["pro"]},
        # One pool of credits, each model costing its own number of them (docs/n8n.md, workflow 7).
        {"key": "ai_credits", "name": "AI credits", "product_type": "quantity",
         "features": list(AI_COSTS), "credit_costs": AI_COSTS},
    ]
    offers = [
        {"sku": "credits_10", "name": "10 credits", "price": "5.00", "currency": "usd",
         "items": [{"product": "credits", "quantity": 10}]},
        {"sku": "credits_1", "name": "1 credit", "price": "0.00", "currency": "usd",
         "items": [{"product": "credits", "quantity": 1}]},
        {"sku": "credits_2", "name": "2 credits", "price": "0.00", "currency": "usd",
         "items": [{"product": "credits", "quantity": 2}]},
        {"sku": "topup", "name": "Top-up: 10 credits", "price": "4.00", "currency": "usd",
         "items": [{"product": "credits", "quantity": 10}]},
        {"sku": "ref_bonus", "name": "Referral bonus: 5 credits", "price": "0.00",
         "currency": "usd", "items": [{"product": "credits", "quantity": 5}]},
        {"sku": "ref_reward", "name": "Referral reward: 3 credits", "price": "0.00",
         "currency": "usd", "items": [{"product": "credits", "quantity": 3}]},
        {"sku": "pro_trial", "name": "Pro, 7 days free", "price": "0.00", "currency": "usd",
         "items": [{"product": "pro", "quantity": 1, "period_unit": "days", "period_value": 7}]},
        {"sku": "ai_credits_30", "name": "30 AI credits", "price": "3.00", "currency": "usd",
         "items": [{"product": "ai_credits", "quantity": 30}]},
    ]
    for product in products:
        _ok(api.post("/billing/products", json=product), 201)
    for offer in offers:
        _ok(api.post("/billing/offers", json=offer), 201)
    _ok(api.patch("/settings", json={"referral_reward_sku": "ref_reward"}))
    # A daily paid plan: with 3 days' notice, each period's renewal is due as it begins.
    _ok(api.post("/billing/plans", json={
        "key": "daily_pro", "name": "Pro, daily", "price": "1.50", "currency": "usd",
        "interval_unit": "days",
        "entitlements": [{"type": "allowance", "product": "credits", "amount": 20},
                         {"type": "access", "product": "pro"}],
    }), 201)


def _triggers(files: list[Path]) -> dict[str, dict[str, Any]]:
    """The Billable Trigger of each workflow (4, 5, 6), by the name the tests use."""
    names = {"4-": "depleted", "5-": "referral", "6-": "renewal"}
    found = {}
    for path in files:
        data = json.loads(path.read_text())
        for node in data["nodes"]:
            if node["type"] == TRIGGER_TYPE:
                name = next(n for p, n in names.items() if path.name.startswith(p))
                found[name] = {"workflow_id": data["id"], "workflow_name": data["name"],
                               "path": f"{node['webhookId']}/webhook",
                               "events": node["parameters"]["events"]}
    return found


@pytest.fixture(scope="session")
def node_tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pack_node_package(tmp_path_factory.mktemp("n8n-package"))


@pytest.fixture(scope="module", params=["node", "http"])
def stack(
    request: pytest.FixtureRequest, django_db_setup: None, django_db_blocker: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    from tenants.models import Tenant
    from tenants.services import tenant_onboard

    variant: str = request.param
    files = WORKFLOW_FILES[variant]
    # The server must accept endpoints on 127.0.0.1 (an n8n on the same host).
    os.environ["WEBHOOKS_ALLOW_PRIVATE_NETWORKS"] = "true"
    tmp = tmp_path_factory.mktemp(f"n8n-{variant}")
    timings: dict[str, float] = {}
    slug = f"n8n-{variant}-{secrets.token_hex(4)}"
    with django_db_blocker.unblock():
        tenant, _row, key = tenant_onboard(name=f"n8n e2e ({variant})", slug=slug)
    notifications = Notifications()
    receiver = _receiver(notifications)
    try:
        with production_server(workers=2) as server, httpx.Client(
            base_url=f"{server.base_url}/api/v1", headers={"X-API-Key": key}, timeout=15.0
        ) as api:
            _catalog(api)
            api_base = f"{server.base_url}/api/v1"
            port, broker_port = free_port(), free_port()
            hook_token = secrets.token_urlsafe(24)
            with n8n_instance(tmp / "home", port, broker_port) as n8n:
                endpoints: dict[str, dict[str, Any]] = {}
                triggers = _triggers(files) if variant == "node" else {}
                if variant == "http":
                    for name, types in (("depleted", ["quota.depleted"]),
                                        ("referral", ["referral.rewarded"]),
                                        ("renewal", ["subscription.renewal_due"])):
                        endpoints[name] = _ok(api.post("/webhooks/endpoints", json={
                            "url": n8n.webhook_url(PATHS[name]), "event_types": types,
                            "description": f"n8n {name}", "headers": {HOOK_HEADER: hook_token},
                        }), 201)
                # n8n gets a key with the billing scopes only, as docs/n8n.md advises; the
                # triggers, which register endpoints, one with admin (and billing:read, which
                # the credential's test call reads with).
                n8n_key = _ok(api.post("/keys", json={
                    "name": "n8n", "scopes": ["billing:read", "billing:write", "billing:grant"],
                }), 201)["key"]
                admin_key = _ok(api.post("/keys", json={
                    "name": "n8n triggers", "scopes": ["billing:read", "admin"],
                }), 201)["key"]
                started = time.monotonic()
                if variant == "node":
                    n8n.install_package(request.getfixturevalue("node_tarball"))
                    timings["install_node_s"] = time.monotonic() - started
                n8n.import_credentials([
                    {"id": HOOK_CRED_ID, "name": "Billable hook token", "type": "httpHeaderAuth",
                     "data": {"name": HOOK_HEADER, "value": hook_token}},
                    {"id": API_CRED_ID, "name": "Billable tenant API key",
                     "type": "httpHeaderAuth", "data": {"name": "X-API-Key", "value": n8n_key}},
                    {"id": NODE_CRED_ID, "name": "Billable API (billing)", "type": "billableApi",
                     "data": {"baseUrl": api_base, "apiKey": n8n_key}},
                    {"id": ADMIN_CRED_ID, "name": "Billable API (webhooks)",
                     "type": "billableApi", "data": {"baseUrl": api_base, "apiKey": admin_key}},
                ])
                common = {
                    "__API_BASE__": api_base,
                    "__NOTIFY_URL__": f"http://127.0.0.1:{receiver.server_port}/notify",
                    "__CHARGE_URL__": f"http://127.0.0.1:{receiver.server_port}/charge",
                    "__MODEL_URL__": f"http://127.0.0.1:{receiver.server_port}/model",
                    "__TRIAL_SKU__": "PRO_TRIAL",
                    "__TOPUP_SKU__": "TOPUP",
                    "__BONUS_SKU__": "REF_BONUS",
                    "__FEATURE__": "pdf_analysis",
                }
                secrets_by_file = {"4-": "depleted", "5-": "referral", "6-": "renewal"}
                rendered_dir = tmp / "workflows"
                rendered_dir.mkdir()
                for source in files:
                    whsec = next((endpoints[n]["secret"] for p, n in secrets_by_file.items()
                                  if source.name.startswith(p) and n in endpoints),
                                 "whsec_unused")
                    target = rendered_dir / source.name
                    target.write_text(
                        render(source.read_text(), {**common, "__WHSEC__": whsec})
                    )
                n8n.import_workflows(rendered_dir)
                n8n.activate_all()
                active = n8n.active_workflow_ids()
                timings["import_and_activate_s"] = time.monotonic() - started
                started = time.monotonic()
                probes = [PATHS[n] for n in PATHS if n not in triggers]
                n8n.start(probes + [t["path"] for t in triggers.values()])
                timings["n8n_start_s"] = time.monotonic() - started
                if variant == "node":
                    # The triggers registered their endpoints while n8n activated them.
                    listed = _ok(api.get("/webhooks/endpoints", params={"limit": 100}))["items"]
                    for name, trig in triggers.items():
                        url = n8n.webhook_url(trig["path"])
                        mine = [e for e in listed if e["url"] == url]
                        assert len(mine) == 1, (name, url, listed, n8n.log_tail())
                        endpoints[name] = mine[0]
                # One attempt per test: a failed delivery is retried only after 10 minutes.
                with webhook_worker(lease_seconds=None, threads=None, schedule="600,600,600",
                                    timeout_seconds=30) as worker:
                    yield Stack(
                        variant=variant, tenant=tenant, server=server,
                        active_workflow_ids=active, n8n=n8n, api=api, hook_token=hook_token,
                        endpoints=endpoints, notifications=notifications, worker=worker,
                        triggers=triggers, timings=timings,
                    )
                print(f"\nn8n timings ({variant}): {timings}")
    finally:
        receiver.shutdown()
        receiver.server_close()
        with django_db_blocker.unblock():
            Tenant.objects.filter(pk=tenant.pk).first().delete(force_drop=True)


# --- helpers


def _wait(
    what: str, check: Callable[[], Any], stack: Stack, timeout: float = DELIVERY_TIMEOUT
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}\n{stack.diagnostics()}")


def _deliveries(stack: Stack, event_id: str, endpoint_id: str) -> list[dict[str, Any]]:
    page = _ok(stack.api.get("/webhooks/deliveries", params={
        "event_id": event_id, "endpoint_id": endpoint_id,
    }))
    return page["items"]


def _succeeded(stack: Stack, event_id: str, endpoint_id: str, attempts: int) -> Any:
    def check() -> Any:
        items = _deliveries(stack, event_id, endpoint_id)
        done = [d for d in items if d["status"] == "succeeded"]
        failed = [d for d in items if d["status"] != "succeeded" and d["last_status_code"]]
        if failed:
            pytest.fail(f"delivery failed: {failed}\n{stack.diagnostics()}")
        return len(done) >= attempts and done
    return _wait(f"{attempts} successful deliveries of {event_id}", check, stack)


def _event(stack: Stack, type_: str, **data: Any) -> dict[str, Any]:
    def check() -> Any:
        page = _ok(stack.api.get("/webhooks/events", params={"type": type_, "limit": 200}))
        found = [e for e in page["items"]
                 if all(e["data"].get(k) == v for k, v in data.items())]
        return found[0] if found else None
    return _wait(f"a {type_} event with {data}", check, stack, timeout=15)


def _ledger(stack: Stack, customer: dict[str, Any], action_type: str) -> list[dict[str, Any]]:
    page = _ok(stack.api.get("/billing/wallet/transactions", params={
        **customer, "action_type": action_type, "limit": 200,
    }))
    return page["items"]


def _idempotency_status(stack: Stack, key: str) -> int | None:
    """The stored status of the request made with this Idempotency-Key (None: no such key)."""
    from django_tenants.utils import tenant_context

    from billable.models import IdempotencyRecord

    with tenant_context(stack.tenant):
        rows = list(IdempotencyRecord.objects.filter(key=key).values_list("status_code", flat=True))
    return rows[0] if rows else None


def _event_key_status(stack: Stack, event_id: str) -> int | None:
    """The stored status of the write a workflow made for a Billable event.

    The HTTP workflows send the event id (`webhook-id`) itself as the Idempotency-Key; the node
    derives its default key from it (`n8n:<event id>:<operation>:<item>:<hash of the request>`).
    """
    if stack.variant == "http":
        return _idempotency_status(stack, event_id)
    from django_tenants.utils import tenant_context

    from billable.models import IdempotencyRecord

    with tenant_context(stack.tenant):
        rows = list(IdempotencyRecord.objects.filter(key__startswith=f"n8n:{event_id}:")
                    .values_list("key", "status_code"))
        every = list(IdempotencyRecord.objects.values_list("key", flat=True))
    assert len(rows) == 1, (rows, every)  # one write per event, however often it was delivered
    return rows[0][1]


def _bot_update(user_id: int, text: str) -> dict[str, Any]:
    return {
        "update_id": secrets.randbelow(10**9),
        "message": {
            "message_id": 1, "date": int(time.time()), "text": text,
            "chat": {"id": user_id, "type": "private"},
            "from": {"id": user_id, "is_bot": False, "first_name": "Ann", "username": "ann"},
        },
    }


# --- tests


def test_every_documented_workflow_imports_as_shipped(tmp_path: Path, node_tarball: Path) -> None:
    """The files of docs/n8n and docs/n8n/http import unchanged (placeholders and all) into a
    fresh n8n with the node installed; the two sets have distinct ids and the same file names."""
    assert [p.name for p in WORKFLOW_FILES["node"]] == [p.name for p in WORKFLOW_FILES["http"]]
    ids = {json.loads(p.read_text())["id"] for files in WORKFLOW_FILES.values() for p in files}
    assert len(ids) == 14, ids
    with n8n_instance(tmp_path / "home", free_port(), free_port()) as n8n:
        n8n.install_package(node_tarball)
        for directory in WORKFLOW_DIRS.values():
            n8n.import_workflows(directory)
        listed = n8n.cli("list:workflow").stdout
    for files in WORKFLOW_FILES.values():
        assert len(files) == 7, files
        for path in files:
            data = json.loads(path.read_text())
            assert len(data["id"]) == 16 and data["id"].isalnum(), data["id"]
            assert f"{data['id']}|{data['name']}" in listed, listed


def test_node_workflows_use_the_node_for_every_billable_call() -> None:
    """No HTTP Request node of the node workflows calls the API, and no Code node verifies."""
    for path in WORKFLOW_FILES["node"]:
        text = path.read_text()
        assert "__API_BASE__" not in text and "__WHSEC__" not in text, path.name
        types = {n["type"] for n in json.loads(text)["nodes"]}
        assert f"{NODE_PACKAGE}.billable" in types, path.name


def test_rendered_workflows_are_active_and_need_the_hook_token(stack: Stack) -> None:
    expected = {json.loads(p.read_text())["id"] for p in WORKFLOW_FILES[stack.variant]}
    assert stack.active_workflow_ids == expected
    for name in PATHS:
        if name in stack.triggers:
            continue
        assert stack.hook(name, {}, token="wrong").status_code == 403, name
        assert stack.hook(name, {}, token="").status_code == 403, name


def _registration(stack: Stack, name: str) -> dict[str, Any]:
    """What the trigger keeps for the active workflow in n8n's static data."""
    data = stack.n8n.static_data(stack.triggers[name]["workflow_id"])
    node = next(v for k, v in data.items() if k.startswith("node:"))
    return dict(node.get("live", {}))


def endpoint_secret(stack: Stack, name: str) -> str:
    """The signing secret the trigger got when it registered its endpoint (n8n's static data)."""
    registration = _registration(stack, name)
    assert registration["endpointId"] == stack.endpoints[name]["id"], registration
    assert registration["secret"].startswith("whsec_"), registration
    return str(registration["secret"])


def _signed(secret: str, body: str, *, timestamp: int | None = None) -> dict[str, str]:
    msg_id = f"msg_{secrets.token_hex(8)}"
    at = datetime.now(UTC) if timestamp is None else datetime.fromtimestamp(timestamp, UTC)
    return {"content-type": "application/json", "webhook-id": msg_id,
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": Webhook(secret).sign(msg_id, at, body)}


@NODE_ONLY
def test_triggers_registered_their_endpoints_and_refuse_unsigned_calls(stack: Stack) -> None:
    for name, trig in stack.triggers.items():
        endpoint = stack.endpoints[name]
        assert endpoint["event_types"] == trig["events"], endpoint
        assert endpoint["description"] == f"n8n: {trig['workflow_name']}", endpoint
        assert endpoint["is_active"] is True, endpoint
        url = stack.n8n.webhook_url(trig["path"])
        body = json.dumps({"id": "evt_forged", "type": trig["events"][0], "data": {}})
        # Unsigned, signed with another secret, or signed too long ago: 401, and no run.
        other = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        for headers in ({"content-type": "application/json"}, _signed(other, body),
                        _signed(endpoint_secret(stack, name), body,
                                timestamp=int(time.time()) - 600)):
            answer = httpx.post(url, content=body, headers=headers, timeout=CALL_TIMEOUT)
            assert answer.status_code == 401, (name, answer.status_code, answer.text)
            assert answer.json()["code"] == "invalid_signature", answer.text
        assert not stack.n8n.executions(trig["workflow_id"]), name


def test_bot_start_identifies_and_grants_the_trial_once(stack: Stack) -> None:
    user_id = 5_000_000 + secrets.randbelow(10**6)
    first = _ok(stack.hook("bot", _bot_update(user_id, "/start")))
    assert first["trial"] == "granted", first
    assert first["new_customer"] is True and first["method"] == "sendMessage"
    assert first["chat_id"] == user_id

    second = _ok(stack.hook("bot", _bot_update(user_id, "/start")))
    assert second["trial"] == "not_eligible", second
    assert second["customer_id"] == first["customer_id"] and second["new_customer"] is False

    # Other messages are answered (else the bot platform would retry) and change nothing.
    assert _ok(stack.hook("bot", _bot_update(user_id, "hello"))) == {"ok": True, "ignored": True}

    customers = _ok(stack.api.get("/billing/customers", params={
        "provider": "telegram", "external_id": str(user_id)}))["items"]
    assert [c["id"] for c in customers] == [first["customer_id"]]
    assert customers[0]["metadata"]["username"] == "ann"
    ref = {"customer_id": first["customer_id"]}
    assert len(_ledger(stack, ref, "grant.trial")) == 1
    balance = _ok(stack.api.get("/billing/balance", params={**ref, "feature": "pro"}))
    assert balance["can_use"] is True and balance["unlimited"] is True


def test_paid_action_consumes_once_per_request_and_branches_on_402(stack: Stack) -> None:
    user = str(6_000_000 + secrets.randbelow(10**6))
    ref = {"provider": "telegram", "external_id": user}
    _ok(stack.api.post("/billing/grants", json={**ref, "sku": "credits_2", "kind": "bonus"}), 201)

    first = _ok(stack.hook("paid", {"external_id": user, "request_id": f"{user}-a"}))
    assert first["ok"] is True and first["remaining"] == 1, first
    # n8n's retry (or the caller's) with the same request id is replayed, not charged again.
    again = _ok(stack.hook("paid", {"external_id": user, "request_id": f"{user}-a"}))
    assert again == first
    second = _ok(stack.hook("paid", {"external_id": user, "request_id": f"{user}-b"}))
    assert second["ok"] is True and second["remaining"] == 0, second
    refused = _ok(stack.hook("paid", {"external_id": user, "request_id": f"{user}-c"}))
    assert refused == {"ok": False, "code": "quota_exhausted", "remaining": 0,
                       "text": refused["text"]}, refused

    usages = _ledger(stack, ref, "usage")
    assert len(usages) == 2 and {u["direction"] for u in usages} == {"debit"}


def test_ai_request_spends_the_model_credits_once_and_branches_on_402(stack: Stack) -> None:
    user_id = 6_500_000 + secrets.randbelow(10**6)
    ref = {"provider": "telegram", "external_id": str(user_id)}
    _ok(stack.api.post("/billing/grants", json={**ref, "sku": "ai_credits_30", "kind": "bonus"}),
        201)
    request = {"user_id": user_id, "model": "large_model", "prompt": "Tell me a story",
               "request_id": f"{user_id}-a"}

    first = _ok(stack.hook("ai", request))
    # The cost is the product's: a large_model call takes 10 of the 30 credits.
    assert first["ok"] is True and first["credits"] == 10, first
    assert first["remaining_credits"] == 20 and first["remaining"] == 2, first
    assert first["answer"] == "large_model says: Tell me a story", first
    calls = stack.notifications.where(model_call=True, request_id=request["request_id"])
    assert len(calls) == 1 and calls[0]["user_id"] == str(user_id), calls
    assert calls[0]["idempotency_key"] == f"model-{request['request_id']}"

    # The bot retries the same request: Billable replays the consume, nothing is spent twice.
    again = _ok(stack.hook("ai", request))
    assert again == first
    assert _idempotency_status(stack, f"ai-{request['request_id']}") == 200
    balance = _ok(stack.api.get("/billing/balance", params={**ref, "feature": "large_model"}))
    assert balance["remaining"] == 2, balance
    assert balance["credit_pools"] == [
        {"product": "AI_CREDITS", "unit_cost": 10, "credits": 20}], balance

    # 20 credits left, an image costs 25: the 402 branch answers and the model is not called.
    # The credits buy no whole image, so the code is quota_exhausted (insufficient_quota is for
    # some units but fewer than asked, which a request of 1 unit never meets).
    image = {"user_id": user_id, "model": "image", "prompt": "a cat",
             "request_id": f"{user_id}-b"}
    refused = _ok(stack.hook("ai", image))
    assert refused == {"ok": False, "code": "quota_exhausted", "remaining": 0,
                       "text": refused["text"]}, refused
    assert not stack.notifications.where(model_call=True, request_id=image["request_id"])

    usages = _ok(stack.api.get("/billing/usages", params=ref))["items"]
    assert [(u["feature"], u["amount"], u["credits"], u["action_id"]) for u in usages] == [
        ("large_model", 1, 10, request["request_id"])], usages
    assert usages[0]["metadata"] == {"model": "large_model",
                                     "prompt_chars": len(request["prompt"])}
    assert _ok(stack.api.get("/billing/wallet", params=ref))["balances"] == {"AI_CREDITS": 20}


def test_payment_received_creates_and_confirms_one_order(stack: Stack) -> None:
    user = str(7_000_000 + secrets.randbelow(10**6))
    payment = {"payment_id": f"pay_{secrets.token_hex(6)}", "provider": "telegram",
               "external_id": user, "sku": "credits_10", "quantity": 1,
               "payment_method": "card"}
    order = _ok(stack.hook("payment", payment))
    assert order["status"] == "paid" and order["payment_id"] == payment["payment_id"], order
    assert [i["sku"] for i in order["items"]] == ["CREDITS_10"]
    # The payment provider retries its webhook: same order, granted once.
    assert _ok(stack.hook("payment", payment))["id"] == order["id"]
    ref = {"provider": "telegram", "external_id": user}
    orders = _ok(stack.api.get("/billing/orders", params={"customer_id": order["customer_id"]}))
    assert [o["id"] for o in orders["items"]] == [order["id"]]
    assert _ok(stack.api.get("/billing/wallet", params=ref))["balances"] == {"CREDITS": 10}


def test_quota_depleted_is_verified_and_offers_one_top_up_across_redelivery(
    stack: Stack,
) -> None:
    user = str(8_000_000 + secrets.randbelow(10**6))
    ref = {"provider": "telegram", "external_id": user}
    grant = _ok(
        stack.api.post("/billing/grants", json={**ref, "sku": "credits_1", "kind": "bonus"}), 201
    )
    customer_id = grant["customer_id"]
    _ok(stack.api.post("/billing/quota/consume", json={**ref, "feature": "pdf_analysis"}))

    event = _event(stack, "quota.depleted", customer_id=customer_id)
    endpoint_id = stack.endpoints["depleted"]["id"]
    _succeeded(stack, event["id"], endpoint_id, attempts=1)
    sent = _wait("the notification", lambda: stack.notifications.where(event_id=event["id"]), stack)
    orders = _ok(stack.api.get("/billing/orders", params={"customer_id": customer_id}))["items"]
    assert len(orders) == 1 and orders[0]["status"] == "pending", orders
    assert orders[0]["metadata"] == {"reason": "quota.depleted", "feature": "pdf_analysis",
                                     "event_id": event["id"]}
    assert sent[0]["order_id"] == orders[0]["id"] and sent[0]["sku"] == "TOPUP"

    # The same event again (n8n sees the same webhook-id): the order is replayed, not repeated.
    _ok(stack.api.post(f"/webhooks/events/{event['id']}/redeliver",
                       json={"endpoint_id": endpoint_id}), 202)
    _succeeded(stack, event["id"], endpoint_id, attempts=2)
    sent = _wait("the second notification",
                 lambda: len(stack.notifications.where(event_id=event["id"])) >= 2 and
                 stack.notifications.where(event_id=event["id"]), stack)
    assert {n["order_id"] for n in sent} == {orders[0]["id"]}
    # n8n sent the event id (webhook-id) as the Idempotency-Key of its order.
    assert _event_key_status(stack, event["id"]) == 201
    after = _ok(stack.api.get("/billing/orders", params={"customer_id": customer_id}))["items"]
    assert [o["id"] for o in after] == [orders[0]["id"]]


def test_renewal_due_is_charged_once_and_renews_the_subscription(stack: Stack) -> None:
    ref = {"provider": "telegram", "external_id": str(7_000_000 + secrets.randbelow(10**6))}
    sub = _ok(stack.api.post("/billing/subscriptions", json={**ref, "plan": "daily_pro"}), 201)
    assert sub["renewal_order_id"] is not None  # announced at once: the period is a day
    event = _event(stack, "subscription.renewal_due", id=sub["id"])
    order = event["data"]["order"]
    assert (order["id"], order["total"], order["period_number"]) == (
        sub["renewal_order_id"], "1.50", 2
    )
    endpoint_id = stack.endpoints["renewal"]["id"]
    _succeeded(stack, event["id"], endpoint_id, attempts=1)
    sent = _wait("the notification", lambda: stack.notifications.where(event_id=event["id"]),
                 stack)
    charges = stack.notifications.where(charge=True, order_id=order["id"])
    assert len(charges) == 1 and charges[0]["amount"] == "1.50", charges
    assert charges[0]["idempotency_key"] == f"charge-{order['id']}"
    assert (sent[0]["order_id"], sent[0]["status"]) == (order["id"], "paid")
    assert sent[0]["payment_id"] == f"pay_{order['id']}"
    after = _ok(stack.api.get(f"/billing/subscriptions/{sub['id']}"))
    assert after["renewal_order_id"] is None and after["paid_through"] > sub["paid_through"]
    assert _idempotency_status(stack, f"renewal-{order['id']}") == 200

    # Redelivered: the charge is asked again with the same key (the provider dedupes it), and
    # the confirmation is replayed: one paid order, one period.
    _ok(stack.api.post(f"/webhooks/events/{event['id']}/redeliver",
                       json={"endpoint_id": endpoint_id}), 202)
    _succeeded(stack, event["id"], endpoint_id, attempts=2)
    _wait("the second notification",
          lambda: len(stack.notifications.where(event_id=event["id"])) >= 2, stack)
    again = _ok(stack.api.get(f"/billing/subscriptions/{sub['id']}"))
    assert again["paid_through"] == after["paid_through"]
    orders = _ok(stack.api.get("/billing/orders", params=ref))["items"]
    assert [(o["status"], o["period_number"]) for o in orders] == [("paid", 2)]


def test_referral_rewarded_is_verified_and_grants_the_bonus_once(stack: Stack) -> None:
    referrer = {"provider": "telegram", "external_id": str(9_000_000 + secrets.randbelow(10**6))}
    referee = {"provider": "telegram", "external_id": str(9_500_000 + secrets.randbelow(10**5))}
    _ok(stack.api.post("/billing/referrals", json={"referrer": referrer, "referee": referee}), 201)
    # The referee's first payment (through the payment workflow) rewards the referrer.
    order = _ok(stack.hook("payment", {"payment_id": f"pay_{secrets.token_hex(6)}",
                                       **referee, "sku": "credits_10"}))
    assert order["status"] == "paid", order

    event = _event(stack, "referral.rewarded", referee_id=order["customer_id"])
    referrer_id = event["data"]["referrer_id"]
    endpoint_id = stack.endpoints["referral"]["id"]
    _succeeded(stack, event["id"], endpoint_id, attempts=1)
    _ok(stack.api.post(f"/webhooks/events/{event['id']}/redeliver", json={}), 202)
    _succeeded(stack, event["id"], endpoint_id, attempts=2)

    sent = _wait("two notifications",
                 lambda: len(stack.notifications.where(event_id=event["id"])) >= 2 and
                 stack.notifications.where(event_id=event["id"]), stack)
    assert {n["customer_id"] for n in sent} == {referrer_id}
    assert len({n["grant_id"] for n in sent}) == 1, sent  # the second grant was a replay
    assert _event_key_status(stack, event["id"]) == 201  # keyed by webhook-id
    ref = {"customer_id": referrer_id}
    bonus = _ledger(stack, ref, "grant.bonus")
    assert len(bonus) == 1 and bonus[0]["amount"] == 5, bonus
    assert len(_ledger(stack, ref, "grant.referral")) == 1  # the platform's own reward
    assert _ok(stack.api.get("/billing/wallet", params=ref))["balances"] == {"CREDITS": 8}


def test_webhook_test_event_verifies_and_passes_without_effect(stack: Stack) -> None:
    endpoint_id = stack.endpoints["depleted"]["id"]
    test = _ok(stack.api.post(f"/webhooks/endpoints/{endpoint_id}/test"), 202)
    _succeeded(stack, test["event_id"], endpoint_id, attempts=1)
    assert not stack.notifications.where(event_id=test["event_id"])


def test_verification_uses_the_raw_body_where_re_serialising_differs(stack: Stack) -> None:
    """A body that JSON.stringify(JSON.parse(body)) does not reproduce still verifies in n8n."""
    from billing_platform.webhooks.delivery import event_body
    from billing_platform.webhooks.models import Event

    endpoint_id = stack.endpoints["depleted"]["id"]
    _ok(stack.api.patch(f"/webhooks/endpoints/{endpoint_id}",
                        json={"event_types": ["quota.depleted", "order.created"]}))
    from tenants.resolution import LOCAL_SECONDS

    # The subscriptions travel with the resolved key, of which the other gunicorn worker may use
    # its own copy for LOCAL_SECONDS: until then it records no order.created event.
    time.sleep(LOCAL_SECONDS + 0.5)
    try:
        user = str(9_900_000 + secrets.randbelow(10**5))
        # JavaScript writes 1.0 as 1 and puts integer-like keys first.
        order = _ok(stack.api.post("/billing/orders", json={
            "provider": "telegram", "external_id": user, "items": [{"sku": "topup"}],
            "metadata": {"ratio": 1.0, "note": "Zoë", "10": "ten"},
        }), 201)
        event = _event(stack, "order.created", id=order["id"])
        _succeeded(stack, event["id"], endpoint_id, attempts=1)
    finally:
        _ok(stack.api.patch(f"/webhooks/endpoints/{endpoint_id}",
                            json={"event_types": ["quota.depleted"]}))
    body = event_body(Event.objects.get(pk=event["id"]), stack.tenant.slug)
    assert '"ratio":1.0' in body
    node = subprocess.run(
        ["node", "-e", "const r = require('fs').readFileSync(0, 'utf8');"
         "process.stdout.write(String(JSON.stringify(JSON.parse(r)) === r))"],
        input=body, capture_output=True, text=True, check=True, timeout=30,
    )
    assert node.stdout == "false"


def test_a_wrong_secret_fails_in_n8n_and_the_platform_retries(stack: Stack) -> None:
    # A second endpoint on the same n8n URL has its own secret, which the workflow does not know:
    # the HTTP workflow's Code node fails the run (500), the Billable Trigger answers 401.
    path = stack.triggers["depleted"]["path"] if stack.triggers else PATHS["depleted"]
    other = _ok(stack.api.post("/webhooks/endpoints", json={
        "url": stack.n8n.webhook_url(path), "event_types": ["webhook.test"],
        "headers": {HOOK_HEADER: stack.hook_token},
    }), 201)
    try:
        test = _ok(stack.api.post(f"/webhooks/endpoints/{other['id']}/test"), 202)

        def attempted() -> Any:
            items = _deliveries(stack, test["event_id"], other["id"])
            return items and items[0]["last_status_code"] is not None and items[0]

        delivery = _wait("the failed attempt", attempted, stack)
        assert delivery["last_status_code"] == (401 if stack.triggers else 500), delivery
        assert delivery["status"] == "pending" and delivery["attempts"] == 1, delivery
        assert delivery["next_attempt_at"] is not None
    finally:
        stack.api.delete(f"/webhooks/endpoints/{other['id']}")


# --- the node only: errors, the credential's test, and what deactivating a trigger does


@NODE_ONLY
def test_a_problem_fails_the_node_with_its_code(stack: Stack) -> None:
    """Without "continue on fail", a problem answer is a node error that names its code."""
    payment = {"payment_id": f"pay_{secrets.token_hex(6)}", "provider": "telegram",
               "external_id": str(7_500_000 + secrets.randbelow(10**5)), "sku": "no_such_offer"}
    answer = stack.hook("payment", payment)
    assert answer.status_code == 500, answer.text
    workflow_id = json.loads(WORKFLOW_FILES["node"][0].read_text())["id"]
    failed = _wait("the failed execution", lambda: [
        e for e in stack.n8n.executions(workflow_id) if e["status"] == "error"], stack)
    data = failed[0]["data"]
    assert "unknown_sku: " in data and "(HTTP 422)" in data, data[:3000]
    # The 422 changed nothing: not even the customer was created.
    assert _ok(stack.api.get("/billing/customers", params={
        "provider": "telegram", "external_id": payment["external_id"]}))["items"] == []


@NODE_ONLY
def test_the_credential_test_call_tells_a_good_key_from_a_wrong_one(stack: Stack) -> None:
    api_base = f"{stack.server.base_url}/api/v1"
    with stack.n8n.rest() as rest:
        def check(key: str) -> dict[str, Any]:
            answer = rest.post("/credentials/test", json={"credentials": {
                "id": NODE_CRED_ID, "name": "Billable API (billing)", "type": "billableApi",
                "data": {"baseUrl": api_base, "apiKey": key}}})
            assert answer.status_code == 200, answer.text
            return dict(answer.json()["data"])

        good = _ok(stack.api.post("/keys", json={"name": "check", "scopes": ["billing:read"]}),
                   201)["key"]
        assert check(good)["status"] == "OK", check(good)
        wrong = check(good[:-4] + "AAAA")
        assert wrong["status"] == "Error", wrong


@NODE_ONLY
def test_deactivating_a_trigger_removes_its_endpoint_and_activating_registers_one(
    stack: Stack,
) -> None:
    """Last of the node's tests: it replaces the quota.depleted endpoint."""
    trig = stack.triggers["depleted"]
    before = stack.endpoints["depleted"]
    with stack.n8n.rest() as rest:
        off = rest.post(f"/workflows/{trig['workflow_id']}/deactivate")
        assert off.status_code == 200, off.text
        gone = stack.api.get(f"/webhooks/endpoints/{before['id']}")
        assert gone.status_code == 404, gone.text
        assert _registration(stack, "depleted") == {}

        version = rest.get(f"/workflows/{trig['workflow_id']}").json()["data"]["versionId"]
        on = rest.post(f"/workflows/{trig['workflow_id']}/activate", json={"versionId": version})
        assert on.status_code == 200, on.text
    url = stack.n8n.webhook_url(trig["path"])
    listed = _ok(stack.api.get("/webhooks/endpoints", params={"limit": 100}))["items"]
    mine = [e for e in listed if e["url"] == url]
    assert len(mine) == 1 and mine[0]["id"] != before["id"], mine
    stack.endpoints["depleted"] = mine[0]
    # The new endpoint's secret is the one the trigger checks: its test event is delivered.
    test = _ok(stack.api.post(f"/webhooks/endpoints/{mine[0]['id']}/test"), 202)
    _succeeded(stack, test["event_id"], mine[0]["id"], attempts=1)
