"""A real n8n for the tests: private user folder, free ports, offline settings, CLI import.

The pinned n8n is installed by `make e2e-n8n` under var/n8n. Workflows and credentials are imported
and activated with the CLI before `n8n start` (a running n8n only notices CLI changes after a
restart). The Billable community node (integrations/n8n) is built and packed once per session,
then installed into each n8n's community node folder with npm, as n8n installs a package itself.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support import ROOT
from tests.support.processes import stop_process

N8N_VERSION = "1.123.81"
N8N_BIN = ROOT / "var" / "n8n" / "node_modules" / ".bin" / "n8n"
WORKFLOWS_DIR = ROOT / "docs" / "n8n"  # built with the Billable node
HTTP_WORKFLOWS_DIR = WORKFLOWS_DIR / "http"  # HTTP Request nodes only
NODE_PACKAGE_DIR = ROOT / "integrations" / "n8n"
NODE_PACKAGE = "n8n-nodes-billable"
NPM_TIMEOUT = 600.0
OWNER = {"email": "owner@example.com", "firstName": "E2e", "lastName": "Owner",
         "password": "E2e-owner-password-1"}
START_TIMEOUT = 60.0
CLI_TIMEOUT = 120.0


def n8n_env(folder: Path, port: int, broker_port: int) -> dict[str, str]:
    """The environment of every n8n command: nothing phones home, Code nodes may use crypto."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("N8N_", "DB_", "WEBHOOK_URL", "NODE_FUNCTION"))
    }
    env.update(
        N8N_USER_FOLDER=str(folder),
        N8N_LISTEN_ADDRESS="127.0.0.1",
        N8N_PORT=str(port),
        N8N_HOST="127.0.0.1",
        N8N_PROTOCOL="http",
        WEBHOOK_URL=f"http://127.0.0.1:{port}/",
        N8N_ENCRYPTION_KEY="e2e-only-not-a-secret",
        DB_TYPE="sqlite",
        N8N_DIAGNOSTICS_ENABLED="false",
        N8N_VERSION_NOTIFICATIONS_ENABLED="false",
        N8N_TEMPLATES_ENABLED="false",
        N8N_PERSONALIZATION_ENABLED="false",
        N8N_HIRING_BANNER_ENABLED="false",
        N8N_DYNAMIC_BANNERS_ENABLED="false",
        N8N_AI_ENABLED="false",
        N8N_SECURE_COOKIE="false",
        N8N_RUNNERS_ENABLED="true",
        N8N_RUNNERS_BROKER_PORT=str(broker_port),
        NODE_FUNCTION_ALLOW_BUILTIN="crypto",
        N8N_ENFORCE_SETTINGS_FILE_PERMISSIONS="true",
        N8N_PUBLIC_API_DISABLED="true",
        N8N_LOG_LEVEL="info",
    )
    return env


def npm(args: list[str], cwd: Path) -> str:
    result = subprocess.run(
        ["npm", *args, "--no-audit", "--no-fund"], cwd=cwd, capture_output=True, text=True,
        timeout=NPM_TIMEOUT, check=False,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"npm {' '.join(args)} in {cwd} exited with {result.returncode}:\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result.stdout


def pack_node_package(destination: Path) -> Path:
    """Build integrations/n8n from its lock file and pack it as npm would publish it."""
    npm(["ci"], NODE_PACKAGE_DIR)
    npm(["run", "build"], NODE_PACKAGE_DIR)
    destination.mkdir(parents=True, exist_ok=True)
    out = npm(["pack", "--json", f"--pack-destination={destination}"], NODE_PACKAGE_DIR)
    return destination / json.loads(out)[0]["filename"]


def render(text: str, values: Mapping[str, str]) -> str:
    for name, value in values.items():
        text = text.replace(name, value)
    return text


@dataclass
class N8n:
    folder: Path
    port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def webhook_url(self, path: str) -> str:
        return f"{self.base_url}/webhook/{path}"

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(N8N_BIN), *args], env=self.env, cwd=self.folder, capture_output=True,
            text=True, timeout=CLI_TIMEOUT, check=False,
        )
        if result.returncode != 0:
            raise AssertionError(
                f"n8n {' '.join(args)} exited with {result.returncode}:\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result

    def import_credentials(self, credentials: list[dict[str, Any]]) -> None:
        path = self.folder / "credentials.json"
        path.write_text(json.dumps(credentials))
        self.cli("import:credentials", f"--input={path}")

    def import_workflows(self, directory: Path) -> None:
        """Import every workflow file of a directory in one CLI call."""
        self.cli("import:workflow", "--separate", f"--input={directory}")

    def activate_all(self) -> None:
        self.cli("update:workflow", "--all", "--active=true")

    def active_workflow_ids(self) -> set[str]:
        out = self.cli("list:workflow", "--active=true").stdout
        return {line.split("|", 1)[0] for line in out.splitlines() if "|" in line}

    def install_package(self, tarball: Path) -> None:
        """Install a community node package where n8n looks for them: ~/.n8n/nodes/node_modules.

        Peer dependencies (n8n-workflow) are n8n's own and not installed beside the package.
        """
        nodes = self.folder / ".n8n" / "nodes"
        nodes.mkdir(parents=True, exist_ok=True)
        if not (nodes / "package.json").exists():
            (nodes / "package.json").write_text('{"name": "installed-nodes", "private": true}')
        npm(["install", str(tarball), "--legacy-peer-deps", "--ignore-scripts"], nodes)

    @contextmanager
    def rest(self) -> Iterator[httpx.Client]:
        """The editor's REST API, logged in as the owner (set up on first use)."""
        client = httpx.Client(base_url=f"{self.base_url}/rest", timeout=30.0,
                              headers={"browser-id": "billable-e2e"})
        setup = client.post("/owner/setup", json=OWNER)
        if setup.status_code != 200:
            login = client.post("/login", json={"emailOrLdapLoginId": OWNER["email"],
                                                "password": OWNER["password"]})
            assert login.status_code == 200, (setup.text, login.text)
        try:
            yield client
        finally:
            client.close()

    def executions(self, workflow_id: str) -> list[dict[str, Any]]:
        """The workflow's executions, newest first: {id, status, data} (data: flatted JSON)."""
        db = self.folder / ".n8n" / "database.sqlite"
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            rows = conn.execute(
                "SELECT e.id, e.status, d.data FROM execution_entity e "
                "JOIN execution_data d ON d.executionId = e.id "
                "WHERE e.workflowId = ? ORDER BY e.id DESC", (workflow_id,),
            ).fetchall()
        return [{"id": r[0], "status": r[1], "data": r[2]} for r in rows]

    def static_data(self, workflow_id: str) -> dict[str, Any]:
        """What the workflow's nodes keep between runs (the Billable Trigger's registration)."""
        db = self.folder / ".n8n" / "database.sqlite"
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            row = conn.execute(
                "SELECT staticData FROM workflow_entity WHERE id = ?", (workflow_id,)
            ).fetchone()
        return dict(json.loads(row[0])) if row and row[0] else {}

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def start(self, probe_paths: list[str]) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [str(N8N_BIN), "start"], env=self.env, cwd=self.folder,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        pending = list(probe_paths)
        while pending:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"n8n exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"n8n did not register {pending} within {START_TIMEOUT:.0f} s:\n"
                    f"{self.log_tail()}"
                )
            try:
                # No hook token: a registered route answers 403, an unknown one 404.
                status = httpx.post(self.webhook_url(pending[0]), timeout=2.0).status_code
            except httpx.HTTPError:
                status = 0
            if status not in (0, 404, 502, 503):
                pending.pop(0)
                continue
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None:
            # Its own session: the task runner child goes with it.
            stop_process(self.process, 15, group=True)


@contextmanager
def n8n_instance(folder: Path, port: int, broker_port: int) -> Iterator[N8n]:
    folder.mkdir(parents=True, exist_ok=True)
    instance = N8n(
        folder=folder, port=port, env=n8n_env(folder, port, broker_port),
        log_path=folder / "n8n.log",
    )
    try:
        yield instance
    finally:
        instance.stop()
