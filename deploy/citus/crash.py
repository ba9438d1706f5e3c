"""The billing change and its outbox row on Citus: a crash of the coordinator in the middle of
the two-phase commit leaves both or neither.

    DATABASE_URL=<coordinator> python deploy/citus/crash.py <api key> <schema name>

Run by deploy/citus/e2e.sh (`make e2e-citus`), as root (it attaches gdb to a PostgreSQL
backend), after a tenant with the demo catalog was onboarded. A consume changes the tenant's
tables on a worker and writes its `quota.consumed` event (and the idempotency record) on the
coordinator, in one request. For each of two points of the commit, the coordinator backend
serving the request is stopped there with gdb and killed with SIGKILL; PostgreSQL then restarts
the coordinator (crash recovery), and Citus's `recover_prepared_transactions()` finishes what
was left prepared on the worker:

1. after the worker's part is PREPAREd, before the coordinator commits: the coordinator never
   committed, so recovery rolls the worker's part back. Neither the consume nor its event
   exists, and the same request sent again (same Idempotency-Key) applies once.
2. after the coordinator committed (with Citus's record of the prepared part), before COMMIT
   PREPARED reached the worker: recovery commits the worker's part. Both exist, and the same
   request sent again is a replay.

While the backend is stopped, before the kill, the workers are asked how many transactions
they hold prepared: one in both cases (a one-phase commit, as with plain coordinator tables,
would show none: the worker's part commits before the coordinator's, and a crash between them
loses the event of a committed consume).
The endpoint registered for the event is http://127.0.0.1:9/ (nothing is posted: no webhook
worker runs). Exits non-zero when a check fails.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import time
import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_platform.settings")
os.environ.setdefault("SECURE_HTTPS", "false")
os.environ["WEBHOOKS_ALLOW_PRIVATE_NETWORKS"] = "true"  # the endpoint is 127.0.0.1

import django  # noqa: E402

django.setup()
logging.disable(logging.CRITICAL)  # the access log, and the 500 of the killed request

import psycopg  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from psycopg import sql  # noqa: E402

failures = 0
OUTBOX_TABLES = ("webhooks_event", "webhooks_delivery")
PROBE_FILE = os.path.join(ROOT, "var", "citus-crash-prepared.txt")


def say(message: str) -> None:
    print(f"[citus-crash] {message}", flush=True)


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


def one(conn: psycopg.Connection[Any], query: Any, params: Any = None) -> Any:
    """The first column of the one row `query` returns."""
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def wait_for_coordinator(url: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
                return
        except psycopg.Error:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def prepared_on_workers(url: str) -> int:
    """Transactions left prepared on the workers (Citus's gids start with citus_)."""
    total = 0
    with psycopg.connect(url, autocommit=True) as conn:
        nodes = conn.execute(
            "SELECT nodename, nodeport FROM pg_dist_node WHERE groupid <> 0 "
            "AND noderole = 'primary'").fetchall()
    for host, port in nodes:
        worker_url = urlunsplit(urlsplit(url)._replace(netloc=f"postgres@{host}:{port}"))
        with psycopg.connect(worker_url, autocommit=True) as worker:
            total += one(
                worker, "SELECT count(*) FROM pg_prepared_xacts WHERE gid LIKE 'citus\\_%%'")
    return total


def state(url: str, tenant_id: int, schema: str, customer_id: str) -> tuple[int, int]:
    """(usages of the customer, quota.consumed events naming it), read on the coordinator."""
    with psycopg.connect(url, autocommit=True) as conn:
        usages = one(
            conn,
            sql.SQL("SELECT count(*) FROM {} WHERE customer_id = %s").format(
                sql.Identifier(schema, "billable_usage")),
            [customer_id])
        events = one(
            conn,
            "SELECT count(*) FROM webhooks_event WHERE tenant_id = %s AND type = 'quota.consumed' "
            "AND data->>'customer_id' = %s", [tenant_id, customer_id])
    return usages, events


def crash_during_consume(client: Client, key: str, external_id: str, idempotency_key: str,
                         breakpoint_at: str, finish: bool) -> tuple[str, int]:
    """Send a consume whose coordinator backend gdb stops at `breakpoint_at` (at its return
    when `finish`) and kills; what the client saw, and how many transactions the workers held
    prepared while the backend was stopped."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(PROBE_FILE)
    connection.close()
    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone() or (None,)
    commands = ["set pagination off", "set confirm off", f"break {breakpoint_at}", "continue"]
    if finish:
        commands.append("finish")
    probe = f"{sys.executable} {os.path.abspath(__file__)} --prepared > {PROBE_FILE}"
    commands += ["info symbol $pc", f"shell {probe}", "kill"]
    gdb = subprocess.Popen(
        ["gdb", "-p", str(pid), "-batch", "-nx",
         *(arg for command in commands for arg in ("-ex", command))],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    # The breakpoint must be in place before the request runs.
    assert gdb.stdout is not None
    seen = []
    for line in gdb.stdout:
        seen.append(line)
        if line.startswith("Breakpoint 1 at"):
            break
    time.sleep(1.0)  # `continue` follows the breakpoint at once
    try:
        response = post(client, key, "billing/quota/consume",
                        {"external_id": external_id, "feature": "reports", "amount": 1},
                        idempotency_key)
        outcome = f"HTTP {response.status_code}"
    except Exception as exc:  # the backend died under the request
        outcome = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    rest = gdb.communicate(timeout=60)[0]
    stopped = "Breakpoint 1," in rest
    check(f"gdb stopped the backend {pid} in {breakpoint_at} and killed it", stopped,
          "" if stopped else "".join(seen) + rest)
    with contextlib.suppress(Exception):  # the connection died with the backend
        connection.close()
    with open(PROBE_FILE) as probe_file:
        prepared = int(probe_file.read().strip() or -1)
    return outcome, prepared


def scenario(client: Client, key: str, url: str, tenant_id: int, schema: str, name: str,
             breakpoint_at: str, finish: bool, expect_applied: bool, expect_event: bool) -> None:
    external_id = f"citus-crash-{name}"
    granted = post(client, key, "billing/grants",
                   {"external_id": external_id, "sku": "reports_10", "kind": "bonus"})
    check(f"{name}: grant -> 201", granted.status_code == 201, granted.status_code)
    customer_id = json.loads(granted.content)["customer_id"]
    before = state(url, tenant_id, schema, customer_id)
    idempotency_key = str(uuid.uuid4())
    outcome, prepared = crash_during_consume(client, key, external_id, idempotency_key,
                                             breakpoint_at, finish)
    check(f"{name}: one transaction prepared on a worker while the backend was stopped",
          prepared == 1, prepared)
    say(f"{name}: the request saw {outcome}")
    wait_for_coordinator(url)
    left = prepared_on_workers(url)
    say(f"{name}: coordinator back; {left} transaction(s) left prepared on the workers")
    with psycopg.connect(url, autocommit=True) as conn:
        recovered = one(conn, "SELECT recover_prepared_transactions()")
    say(f"{name}: recover_prepared_transactions() -> {recovered}")
    check(f"{name}: nothing left prepared after recovery", prepared_on_workers(url) == 0)
    usages, events = state(url, tenant_id, schema, customer_id)
    applied = usages - before[0]
    emitted = events - before[1]
    check(f"{name}: consume {'applied' if expect_applied else 'not applied'}",
          applied == (1 if expect_applied else 0), f"usages +{applied}")
    check(f"{name}: its event {'recorded' if expect_event else 'not recorded'}",
          emitted == (1 if expect_event else 0), f"quota.consumed events +{emitted}")
    if expect_applied == expect_event:
        retry = post(client, key, "billing/quota/consume",
                     {"external_id": external_id, "feature": "reports", "amount": 1},
                     idempotency_key)
        replayed = retry.headers.get("Idempotent-Replayed") == "true"
        check(f"{name}: the same request again -> 200, "
              f"{'a replay' if expect_applied else 'applied now'}",
              retry.status_code == 200 and replayed == expect_applied,
              f"{retry.status_code} replayed={replayed}")
        usages, events = state(url, tenant_id, schema, customer_id)
        check(f"{name}: one consume and one event in the end",
              (usages - before[0], events - before[1]) == (1, 1),
              f"usages +{usages - before[0]}, events +{events - before[1]}")


def main(key: str, schema: str) -> int:
    url = os.environ["DATABASE_URL"]
    client = Client()
    response = post(client, key, "webhooks/endpoints",
                    {"url": "http://127.0.0.1:9/hook", "event_types": ["quota.consumed"]})
    check("webhook endpoint for quota.consumed -> 201", response.status_code == 201,
          response.content[:200])
    with psycopg.connect(url, autocommit=True) as conn:
        tenant_id = one(conn, "SELECT id FROM tenants_tenant WHERE schema_name = %s", [schema])
        managed = one(
            conn,
            "SELECT count(*) FROM pg_dist_partition WHERE logicalrelid = ANY(%s::regclass[])",
            [list(OUTBOX_TABLES)])
    check("the outbox tables are Citus-managed", managed == len(OUTBOX_TABLES), managed)

    # 1. between PREPARE on the worker and the coordinator's commit
    scenario(client, key, url, tenant_id, schema, "prepared",
             "CoordinatedRemoteTransactionsPrepare", finish=True,
             expect_applied=False, expect_event=False)
    # 2. after the coordinator's commit, before COMMIT PREPARED on the worker
    scenario(client, key, url, tenant_id, schema, "committed",
             "CoordinatedRemoteTransactionsCommit", finish=False,
             expect_applied=True, expect_event=True)

    say("all checks passed" if not failures else f"{failures} checks failed")
    return 1 if failures else 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--prepared"]:  # run by gdb while the backend is stopped
        print(prepared_on_workers(os.environ["DATABASE_URL"]))
        sys.exit(0)
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
