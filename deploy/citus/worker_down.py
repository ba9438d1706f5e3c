"""/readyz and the metrics while a Citus worker is down, and right after it is back.

    DATABASE_URL=<coordinator> python deploy/citus/worker_down.py <cluster.sh> <tenant schema>

Run by deploy/citus/e2e.sh (`make e2e-citus`) on a migrated cluster with tenants; the worker
is the one holding the tenant's schema. Through Django's test client: /readyz is `ready` with
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

from tenants.models import Tenant  # noqa: E402
from tenants.schema_migrations import forget_recorded, forget_status  # noqa: E402
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


def main(cluster: str, schema: str) -> int:
    client = Client()
    with connection.cursor() as cursor:
        cursor.execute("SELECT DISTINCT nodeport FROM citus_shards WHERE citus_table_type = "
                       "'schema' AND table_name::text LIKE %s", [f"{schema}.%"])
        (port,) = cursor.fetchone()
    citus_dir = Path(os.environ.get("CITUS_DIR", os.path.join(ROOT, "var", "citus")))
    worker = next(path.parent.name for path in citus_dir.glob("*/port")
                  if int(path.read_text()) == port)
    print(f"[citus-worker-down] {schema} lives on {worker} (port {port})")
    _row, key = api_key_create(tenant=Tenant.objects.get(schema_name=schema),
                               name="worker-down check")
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
