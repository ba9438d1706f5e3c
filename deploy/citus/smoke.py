"""Billable against a Citus coordinator: the API through Django's test client, and the ledger's
append-only guarantee on the worker that holds the tenant's shards.

    DATABASE_URL=<coordinator> python deploy/citus/smoke.py <api key> <schema name> [run]

Run by deploy/citus/e2e.sh (`make e2e-citus`) after a tenant with the demo catalog was onboarded.
It uses the migrated database itself (no test database): a grant of REPORTS_10, a consume of 3,
the balance (7), the wallet's entries, /readyz; then UPDATE, DELETE and TRUNCATE of ledger
entries through the coordinator and directly on the worker's shard, each of which must be refused.
Run N (default 1; e.g. 2 after the tenant's schema was moved to another worker) uses the customer
`citus-e2e-N` and first checks that the customers of the runs before it still have their balance
and wallet (nothing lost by the move). Exits non-zero when a check fails.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_platform.settings")
os.environ.setdefault("SECURE_HTTPS", "false")

import django  # noqa: E402

django.setup()
logging.disable(logging.INFO)  # the access log of every request

import psycopg  # noqa: E402
from django.test import Client  # noqa: E402
from psycopg import sql  # noqa: E402

failures = 0


def check(label: str, ok: bool, detail: Any = "") -> None:
    global failures
    print(f"[citus-smoke] {'ok  ' if ok else 'FAIL'} {label}{f': {detail}' if detail else ''}")
    if not ok:
        failures += 1


def api(client: Client, key: str, method: str, path: str, body: Any = None,
        **query: str) -> tuple[int, Any]:
    url = f"/api/v1/{path}"
    if method == "GET":
        response = client.get(url, query, HTTP_X_API_KEY=key, SERVER_NAME="127.0.0.1")
    else:
        response = client.post(url, json.dumps(body), content_type="application/json",
                               HTTP_X_API_KEY=key, SERVER_NAME="127.0.0.1")
    return response.status_code, json.loads(response.content or b"null")


def refused(conn: psycopg.Connection[Any], statement: sql.Composed) -> str:
    """Run `statement` in a rolled-back transaction; the error's SQLSTATE, or 'accepted'."""
    try:
        with conn.transaction():
            conn.execute(statement)
            raise RuntimeError("rollback")
    except psycopg.Error as exc:
        return f"{exc.sqlstate} {str(exc).splitlines()[0]}"
    except RuntimeError:
        return "accepted"


def main(key: str, schema: str, run: int = 1) -> int:
    client = Client()
    for earlier in range(1, run):
        status, balance = api(client, key, "GET", "billing/balance",
                              external_id=f"citus-e2e-{earlier}", feature="reports")
        check(f"run {earlier}'s customer kept: remaining 7",
              status == 200 and balance.get("remaining") == 7, f"{status} {balance}")
        status, entries = api(client, key, "GET", "billing/wallet/transactions",
                              external_id=f"citus-e2e-{earlier}")
        kept = [e["direction"] for e in entries.get("items", [])] if status == 200 else entries
        check(f"run {earlier}'s wallet kept: debit, credit", kept == ["debit", "credit"], kept)
    external_id = f"citus-e2e-{run}"
    status, _grant = api(client, key, "POST", "billing/grants",
                        {"external_id": external_id, "sku": "reports_10", "kind": "bonus"})
    check("grant REPORTS_10 -> 201", status == 201, status if status != 201 else "")
    status, consumed = api(client, key, "POST", "billing/quota/consume",
                           {"external_id": external_id, "feature": "reports", "amount": 3})
    check("consume 3 -> 200, remaining 7", status == 200 and consumed.get("remaining") == 7,
          f"{status} {consumed}")
    status, balance = api(client, key, "GET", "billing/balance",
                          external_id=external_id, feature="reports")
    check("balance -> remaining 7", status == 200 and balance.get("remaining") == 7,
          f"{status} {balance}")
    status, entries = api(client, key, "GET", "billing/wallet/transactions",
                          external_id=external_id)
    directions = [e["direction"] for e in entries.get("items", [])] if status == 200 else entries
    check("wallet transactions -> debit, credit", directions == ["debit", "credit"], directions)
    ready = client.get("/readyz", SERVER_NAME="127.0.0.1")
    check("/readyz -> 200", ready.status_code == 200, ready.content.decode()[:300])

    url = os.environ["DATABASE_URL"]
    table = sql.Identifier(schema, "billable_ledgerentry")
    with psycopg.connect(url, autocommit=True) as coordinator:
        for label, statement in (
            ("UPDATE", sql.SQL("UPDATE {} SET amount = amount + 1").format(table)),
            ("DELETE", sql.SQL("DELETE FROM {}").format(table)),
            ("TRUNCATE", sql.SQL("TRUNCATE {}").format(table)),
        ):
            outcome = refused(coordinator, statement)
            check(f"coordinator: {label} of {schema}.billable_ledgerentry refused",
                  outcome.startswith("23001"), outcome)
        shard = coordinator.execute(
            "SELECT shard_name, nodename, nodeport FROM citus_shards "
            "WHERE table_name = %s::regclass", [f"{schema}.billable_ledgerentry"],
        ).fetchone()
        entries_count = coordinator.execute(
            sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()
    check(f"{schema}.billable_ledgerentry is a shard on a worker", shard is not None, shard)
    if shard is None:
        return 1
    shard_name, host, port = shard
    print(f"[citus-smoke] {schema}.billable_ledgerentry: shard {shard_name} on {host}:{port}, "
          f"{entries_count[0] if entries_count else '?'} entries")
    worker_url = urlunsplit(urlsplit(url)._replace(netloc=f"postgres@{host}:{port}"))
    shard_table = sql.Identifier(*shard_name.split(".", 1))
    with psycopg.connect(worker_url, autocommit=True) as worker:
        triggers = [row[0] for row in worker.execute(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal "
            "ORDER BY 1", [shard_name]).fetchall()]
        # Citus copies row triggers to shards but no TRUNCATE trigger ("we don't have truncate
        # triggers on shard relations"): TRUNCATE is refused by the trigger of the distributed
        # table (on every node, metadata is synced), and on the shard itself by Citus's own
        # protection of shards (unless `citus.enable_manual_changes_to_shards` is turned on).
        check("worker: the shard carries the row trigger",
              any(name.startswith("billable_ledger_no_update_delete") for name in triggers),
              triggers)
        for label, statement in (
            ("UPDATE", sql.SQL("UPDATE {} SET amount = amount + 1").format(shard_table)),
            ("DELETE", sql.SQL("DELETE FROM {}").format(shard_table)),
        ):
            outcome = refused(worker, statement)
            check(f"worker: {label} of shard {shard_name} refused",
                  outcome.startswith("23001"), outcome)
        outcome = refused(worker, sql.SQL("TRUNCATE {}").format(shard_table))
        check(f"worker: TRUNCATE of shard {shard_name} refused",
              outcome != "accepted", outcome)
        outcome = refused(worker, sql.SQL("TRUNCATE {}").format(table))
        check(f"worker: TRUNCATE of {schema}.billable_ledgerentry refused",
              outcome.startswith("23001"), outcome)
    print(f"[citus-smoke] {'all checks passed' if not failures else f'{failures} failed'}")
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4) or (len(sys.argv) == 4 and not sys.argv[3].isdigit()):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) == 4 else 1))
