"""Where a consume's time goes in the server: py-spy samples of gunicorn's workers under load.

    python -m billing_platform.devserver.launcher exec -- python -m bench.profile [SECONDS]

Drives consume (1,000 customers, 16 clients) while `py-spy` (pip install py-spy) samples every
worker, then prints the share of samples spent in the parts of a request, inclusive (a sample
counts for every part on its stack). Writes bench/results/profile.txt (collapsed stacks).
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from bench import fixtures, harness
from bench.context import CUSTOMERS, Context

# (label, a substring of a frame "function (file:line)") in the order a request meets them.
PARTS = [
    ("gunicorn: accept, parse, respond", "handle_request (gunicorn"),
    ("middleware before the view", "__call__ (django/utils/deprecation.py"),
    ("logging", "logging/__init__.py"),
    ("API-key resolution (cache, HMAC)", "resolve (tenants/resolution.py"),
    ("rate limit", "ratelimits.py"),
    ("request transaction wrapper", "wrapper (billing_platform/http/pipeline.py"),
    ("ninja: parse and validate input", "_get_values (ninja/operation.py"),
    ("the view (customer, consume, presenter)", "consume (billable/api/quota.py"),
    ("customer lookup", "customer_ensure (billable/services/customers.py"),
    ("quota_consume service", "quota_consume (billable/services/quota.py"),
    ("signals (webhook fan-out)", "send (django/dispatch/dispatcher.py"),
    ("ninja: render the answer", "_result_to_response (ninja/operation.py"),
    ("waiting for PostgreSQL (psycopg wait)", "wait (psycopg/"),
    ("commit", "commit (psycopg/connection.py"),
    ("SQL compilation (ORM)", "as_sql (django/db/models/sql/compiler.py"),
]


def main(argv: list[str]) -> int:
    seconds = int(argv[0]) if argv else 15
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        raise SystemExit("py-spy is missing: pip install py-spy")
    ctx = Context()
    try:
        server = ctx.server
        key = ctx.tenant.key
        workers = [
            int(p) for p in subprocess.run(["pgrep", "-P", str(server.process.pid)],
                                           capture_output=True, text=True).stdout.split()
        ]
        rng = random.Random(3)

        def request(index: int) -> tuple[str, str, dict[str, Any]]:
            return "POST", "/api/v1/billing/quota/consume", {
                "json": {"external_id": f"c{rng.randint(1, CUSTOMERS)}",
                         "feature": fixtures.FEATURE},
                "headers": {"X-API-Key": key},
            }

        outputs = [harness.RESULTS / f"profile-{pid}.txt" for pid in workers]
        harness.RESULTS.mkdir(parents=True, exist_ok=True)
        spies = [
            subprocess.Popen([spy, "record", "--pid", str(pid), "--duration", str(seconds),
                              "--rate", "200", "--format", "raw", "--output", str(out),
                              "--nonblocking"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for pid, out in zip(workers, outputs, strict=True)
        ]
        load = threading.Thread(target=harness.drive, args=(server.base_url, request),
                                kwargs={"label": "profile", "concurrency": 16, "warmup": 0,
                                        "seconds": seconds + 2})
        load.start()
        for spy_process in spies:
            spy_process.wait()
        load.join()
        stacks: Counter[str] = Counter()
        for out in outputs:
            for line in out.read_text().splitlines():
                stack, _, count = line.rpartition(" ")
                if count.isdigit():
                    stacks[stack] += int(count)
            out.unlink()
        (harness.RESULTS / "profile.txt").write_text(
            "".join(f"{stack} {count}\n" for stack, count in stacks.most_common())
        )
        total = sum(stacks.values())
        busy = sum(n for s, n in stacks.items() if "handle_request (gunicorn" in s)
        rows = []
        for label, needle in PARTS:
            samples = sum(n for s, n in stacks.items() if needle in s)
            rows.append([label, samples, f"{samples / busy:.0%}" if busy else "-"])
        print(harness.table(
            f"consume under load: py-spy samples of {len(workers)} workers "
            f"({total} samples, {busy} inside a request)",
            ["part (inclusive)", "samples", "share of request time"], rows,
        ))
    finally:
        ctx.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
