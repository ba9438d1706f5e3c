"""Move a tenant's schema to another Citus worker while consumes keep arriving: none is lost,
none is applied twice, and the balance is exactly what was granted minus what was answered 200.

    DATABASE_URL=<coordinator> python deploy/citus/move_under_load.py <api key> <schema> <node id>

Run by deploy/citus/e2e.sh (`make e2e-citus`) on a tenant with the demo catalog (product
REPORTS, feature `reports`). A customer gets 100,000 units by an adjustment; CLIENTS threads
(default 4) each send consumes of 1 unit, every one with its own Idempotency-Key, through
Django's test client (one database connection per thread) for a second, then during
`citus_schema_move` of the schema to the node (the service `tenant_schema_move`, online: logical
replication, writes blocked only for the switch), and for a second after. Every answer must be
200 (none 5xx); afterwards the usages in the schema are exactly the 200s, the balance is the
grant minus them, every shard of the schema is on the node, and a replay of a key answered
before the move is still a replay. e2e.sh runs `billing_verify` after it. Exits non-zero when a
check fails.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
import uuid
from collections import Counter
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_platform.settings")
os.environ.setdefault("SECURE_HTTPS", "false")

import django  # noqa: E402

django.setup()
logging.disable(logging.CRITICAL)  # the access log of every request

from django.db import connection, connections  # noqa: E402
from django.test import Client  # noqa: E402
from psycopg import sql  # noqa: E402

from tenants import selectors, services  # noqa: E402

CLIENTS = int(os.environ.get("CLIENTS", "4"))
GRANTED = 100_000
failures = 0


def say(message: str) -> None:
    print(f"[citus-move-load] {message}", flush=True)


def check(label: str, ok: bool, detail: Any = "") -> None:
    global failures
    say(f"{'ok  ' if ok else 'FAIL'} {label}{f': {detail}' if detail else ''}")
    if not ok:
        failures += 1


def post(client: Client, key: str, path: str, body: Any, idempotency_key: str = "") -> Any:
    headers: dict[str, Any] = {"HTTP_X_API_KEY": key, "SERVER_NAME": "127.0.0.1"}
    if idempotency_key:
        headers["HTTP_IDEMPOTENCY_KEY"] = idempotency_key
    return client.post(f"/api/v1/{path}", json.dumps(body), content_type="application/json",
                       **headers)


class Load(threading.Thread):
    def __init__(self, key: str, external_id: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.key, self.external_id, self.stop = key, external_id, stop
        self.statuses: Counter[int] = Counter()
        self.answered: list[tuple[float, str]] = []  # (monotonic time, idempotency key) of 200s
        self.slowest = 0.0

    def run(self) -> None:
        client = Client()
        try:
            while not self.stop.is_set():
                idempotency_key = str(uuid.uuid4())
                started = time.monotonic()
                try:
                    response = post(client, self.key, "billing/quota/consume",
                                    {"external_id": self.external_id, "feature": "reports",
                                     "amount": 1}, idempotency_key)
                    status = response.status_code
                except Exception:
                    status = 599
                self.slowest = max(self.slowest, time.monotonic() - started)
                self.statuses[status] += 1
                if status == 200:
                    self.answered.append((started, idempotency_key))
        finally:
            connections.close_all()


def main(key: str, schema: str, node_ref: str) -> int:
    client = Client()
    external_id = f"citus-move-{uuid.uuid4().hex[:8]}"
    response = post(client, key, "billing/adjustments",
                    {"external_id": external_id, "product": "REPORTS", "amount": GRANTED,
                     "reason": "load for a schema move"})
    check(f"adjustment of {GRANTED} units -> 201", response.status_code == 201,
          response.status_code)
    customer_id = json.loads(response.content)["customer_id"]
    target = selectors.citus_node_get(ref=node_ref)
    stop = threading.Event()
    loads = [Load(key, external_id, stop) for _ in range(CLIENTS)]
    for load in loads:
        load.start()
    time.sleep(1.0)
    before_move = sum(load.statuses[200] for load in loads)
    move_started = time.monotonic()
    moved = services.tenant_schema_move(schema=schema, target=target)
    move_seconds = time.monotonic() - move_started
    during_move = sum(load.statuses[200] for load in loads) - before_move
    time.sleep(1.0)
    stop.set()
    for load in loads:
        load.join(timeout=60)
    connection.close()
    statuses: Counter[int] = sum((load.statuses for load in loads), Counter())
    answered = [item for load in loads for item in load.answered]
    say(f"moved {moved} in {move_seconds:.2f} s; {CLIENTS} clients sent "
        f"{sum(statuses.values())} consumes: {dict(statuses)} ({during_move} answered 200 during "
        f"the move; slowest answer {max(load.slowest for load in loads):.2f} s)")
    check("the schema moved", moved is not None and moved.target == target.address, moved)
    check("consumes were answered during the move", during_move > 0, during_move)
    check("every consume answered 200 (no 5xx, no lost connection)",
          set(statuses) == {200}, dict(statuses))

    placement = selectors.tenant_placement_get(schema=schema)
    check(f"every shard of {schema} is on {target.address}",
          placement is not None and placement.node is not None
          and placement.node.node_id == target.node_id, placement)
    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL("SELECT count(*), COALESCE(sum(amount), 0) FROM {} WHERE customer_id = %s")
            .format(sql.Identifier(schema, "billable_usage")),
            [customer_id],
        )
        usages, amount = cursor.fetchone() or (0, 0)
    check("the usages are exactly the consumes answered 200",
          (usages, amount) == (len(answered), len(answered)),
          f"{usages} usages, {amount} units; {len(answered)} answered 200")
    balance = client.get("/api/v1/billing/balance",
                         {"external_id": external_id, "feature": "reports"},
                         HTTP_X_API_KEY=key, SERVER_NAME="127.0.0.1")
    remaining = json.loads(balance.content).get("remaining")
    check("the balance is the grant minus the consumes answered 200",
          remaining == GRANTED - len(answered), f"{remaining} = {GRANTED} - {len(answered)}?")
    first = min(answered)[1]
    replay = post(client, key, "billing/quota/consume",
                  {"external_id": external_id, "feature": "reports", "amount": 1}, first)
    check("a key answered before the move is a replay after it",
          replay.status_code == 200 and replay.headers.get("Idempotent-Replayed") == "true",
          replay.status_code)
    say("all checks passed" if not failures else f"{failures} checks failed")
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3]))
