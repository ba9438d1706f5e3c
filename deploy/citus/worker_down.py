"""/readyz and the metrics while a Citus worker is down, and right after it is back.

    DATABASE_URL=<coordinator> python deploy/citus/worker_down.py <cluster.sh> <tenant schema>

Run by deploy/citus/e2e.sh (`make e2e-citus`) on a migrated cluster with tenants; the worker
is the one holding the tenant's schema when the script stops it. The migration check leaves out
tenants created in the last minute, so the script first waits until the tenant is older than
that and checks that the schema is among those the check reads (else every migration check
below would pass without reading it). Through Django's test client: /readyz is `ready` with
every node reachable; the worker is stopped
(`cluster.sh stop-node`, its data kept); /readyz answers 200 `degraded`, naming the worker, with
the cached migration result, then, the cache dropped, with the migrations unknown (not "schemas
behind the code"), `billable_citus_node_up` is 0 for it, and a consume of the tenant answers
503 `database_busy` with Retry-After (a key is made for it);
the worker is started again, and at once /readyz is `ready` with no tenant schema behind, and
the gauge is 1. Exits non-zero when a check fails.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_platform.settings")
os.environ.setdefault("SECURE_HTTPS", "false")
os.environ["METRICS_TOKEN"] = secrets.token_hex(16)

import django  # noqa: E402

django.setup()
logging.disable(logging.WARNING)  # the access log and the "degraded" warning

from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402

from tenants.models import Tenant  # noqa: E402
from tenants.schema_migrations import (  # noqa: E402
    NEW_SCHEMA_GRACE_SECONDS,
    forget_recorded,
    forget_status,
    readiness_schema_names,
)
from tenants.services import api_key_create  # noqa: E402

failures = 0


def check(label: str, ok: bool, detail: Any = "") -> None:
    global failures
    print(f"[citus-worker-down] {'ok  ' if ok else 'FAIL'} {label}"
          f"{f': {detail}' if detail else ''}", flush=True)
    if not ok:
        failures += 1


def readyz(client: Client) -> tuple[int, dict[str, Any]]:
    response = client.get("/readyz", SERVER_NAME="127.0.0.1")
    return response.status_code, json.loads(response.content)


def node_up(client: Client, port: int) -> str | None:
    """The value of billable_citus_node_up for the node on `port`, as scraped."""
    response = client.get("/metrics", SERVER_NAME="127.0.0.1",
                          HTTP_AUTHORIZATION=f"Bearer {os.environ['METRICS_TOKEN']}")
    for line in response.content.decode().splitlines():
        if line.startswith("billable_citus_node_up{") and f':{port}"' in line:
            return line.rsplit(" ", 1)[1]
    return None


def wait_past_grace(tenant: Tenant) -> None:
    """The migration check leaves out tenants created in the last NEW_SCHEMA_GRACE_SECONDS: it
    would answer 0 without reading the schema, and every check below would pass for nothing."""
    wait = (tenant.created_at + timedelta(seconds=NEW_SCHEMA_GRACE_SECONDS + 1)
            - timezone.now()).total_seconds()
    if wait > 0:
        age = NEW_SCHEMA_GRACE_SECONDS + 1 - wait
        print(f"[citus-worker-down] {tenant.schema_name} is {age:.0f} s old: waiting {wait:.0f} s,"
              " until the migration check reads it", flush=True)
        time.sleep(wait)


def placement(schema: str) -> tuple[str, int]:
    """The cluster.sh name and the port of the worker holding every shard of `schema` now."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT DISTINCT nodeport FROM citus_shards WHERE citus_table_type = "
                       "'schema' AND table_name::text LIKE %s", [f"{schema}.%"])
        ports = [row[0] for row in cursor.fetchall()]
    if len(ports) != 1:
        raise SystemExit(f"{schema} is not on exactly one worker: {ports}")
    citus_dir = Path(os.environ.get("CITUS_DIR", os.path.join(ROOT, "var", "citus")))
    worker = next(path.parent.name for path in citus_dir.glob("*/port")
                  if int(path.read_text()) == ports[0])
    return worker, ports[0]


def main(cluster: str, schema: str) -> int:
    client = Client()
    tenant = Tenant.objects.get(schema_name=schema)
    wait_past_grace(tenant)
    checked = readiness_schema_names()
    check(f"{schema} is among the schemas the migration check reads", schema in checked, checked)
    _row, key = api_key_create(tenant=tenant, name="worker-down check")
    worker, port = placement(schema)  # looked up last: a move or a rebalance ran before
    print(f"[citus-worker-down] {schema} lives on {worker} (port {port})")
    forget_status()  # a result cached before the tenant was old enough to be read
    status, body = readyz(client)
    check("before: /readyz 200 ready, every node reachable",
          status == 200 and body["status"] == "ready" and body["cluster"]["unreachable"] == [],
          "" if status == 200 and body["status"] == "ready" else body)
    check("before: billable_citus_node_up is 1", node_up(client, port) == "1.0",
          node_up(client, port))
    subprocess.run([cluster, "stop-node", worker], check=True)
    try:
        status, body = readyz(client)
        check(f"{worker} down: /readyz 200 degraded, naming it",
              status == 200 and body["status"] == "degraded"
              and body["cluster"]["unreachable"] == [f"127.0.0.1:{port}"], body)
        check(f"{worker} down: the cached migration check still answers",
              (body.get("migrations") or {}).get("tenant_schemas_behind") == 0,
              body.get("migrations"))
        forget_status()  # as after a migration run: the check runs again
        status, body = readyz(client)
        check(f"{worker} down, nothing cached: the check answers from the public schema's "
              "records (no worker read)",
              status == 200 and body["status"] == "degraded"
              and (body.get("migrations") or {}).get("tenant_schemas_behind") == 0,
              f"{status} {body.get('migrations')}")
        forget_recorded()  # no record either: the check must read the schemas now
        forget_status()
        status, body = readyz(client)
        check(f"{worker} down, nothing cached or recorded: 200 degraded, migrations unknown, not "
              "'schemas behind the code'",
              status == 200 and body["status"] == "degraded" and body.get("migrations") is None
              and "failures" not in body, f"{status} {body}")
        check(f"{worker} down: billable_citus_node_up is 0", node_up(client, port) == "0.0",
              node_up(client, port))
        response = client.post(
            "/api/v1/billing/quota/consume",
            json.dumps({"external_id": "citus-worker-down", "feature": "reports", "amount": 1}),
            content_type="application/json", HTTP_X_API_KEY=key, SERVER_NAME="127.0.0.1")
        problem = json.loads(response.content or b"{}")
        check(f"{worker} down: a consume of a tenant there -> 503 problem, retry later",
              response.status_code == 503 and problem.get("code") == "database_busy"
              and response.headers.get("Retry-After") is not None,
              f"{response.status_code} {problem.get('code')}")
    finally:
        subprocess.run([cluster, "start-node", worker], check=True)
    status, body = readyz(client)
    check(f"{worker} back: /readyz 200 ready at once, no schema behind",
          status == 200 and body["status"] == "ready"
          and body["migrations"]["tenant_schemas_behind"] == 0, body)
    check(f"{worker} back: billable_citus_node_up is 1", node_up(client, port) == "1.0",
          node_up(client, port))
    print(f"[citus-worker-down] {'all checks passed' if not failures else f'{failures} failed'}")
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
