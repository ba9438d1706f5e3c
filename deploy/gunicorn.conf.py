"""gunicorn settings for production, `make run` and the e2e tests. Every value can be changed from
the environment; `--bind`/`--workers` on the command line win over these.

Sync workers: the ORM code is synchronous, and each worker holds one PostgreSQL connection (the
budget in docs/scaling.md). gthread workers (threads with keep-alive) were measured beside them
(`make bench NAME=consume` prints the comparison): no more requests per second on the 2-core
machine, a worse p99, and one connection per thread."""

import multiprocessing
import os
from typing import Any

bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2))
worker_class = "sync"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 10
keepalive = 5
# Workers are not recycled: each recycled worker would leave its metric files behind for good.
max_requests = 0
# The application writes one JSON access line per request (billable.access); gunicorn's own
# plain-text access log is off unless asked for ("-": stdout).
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")

# gunicorn >= 25.1 opens a control socket at one fixed path per user ($HOME/.gunicorn/gunicorn.ctl),
# so a second instance on the host (make run beside the e2e tests or a benchmark) takes it over.
# It is off unless GUNICORN_CONTROL_SOCKET names a path; older gunicorn ignores both settings.
_control_socket = os.environ.get("GUNICORN_CONTROL_SOCKET", "")
control_socket_disable = not _control_socket
if _control_socket:
    control_socket = _control_socket

# Prometheus metrics from every worker: prometheus_client's multiprocess mode keeps each process's
# counts in files under PROMETHEUS_MULTIPROC_DIR and /metrics sums them. The variable must be set
# before any worker imports prometheus_client, so here; without one, each start gets its own.
# A reload (HUP) reads this file again with the variable already set: remember, in the
# environment too, that the directory is this server's own, to remove it at exit.
_OWN = "BILLABLE_OWN_METRICS_DIR"
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    import tempfile

    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="billable-metrics-")
    os.environ[_OWN] = os.environ["PROMETHEUS_MULTIPROC_DIR"]
_own_metrics_dir = os.environ.get(_OWN) == os.environ["PROMETHEUS_MULTIPROC_DIR"]


def on_starting(server: Any) -> None:
    """Start from zero: drop the files of processes that are gone (a previous run's)."""
    import re

    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(directory):
        match = re.search(r"_(\d+)\.db$", name)
        if match is None:
            continue
        try:
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            os.remove(os.path.join(directory, name))
        except PermissionError:
            pass  # alive, another user's process


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    if _own_metrics_dir:
        import shutil

        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
