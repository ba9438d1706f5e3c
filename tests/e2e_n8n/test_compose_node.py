"""The Billable node as the `local` profile of deploy/compose.yaml hands it to n8n, in a real n8n.

Opt-in: `make e2e-n8n`. The `n8n-node` service's command runs as the compose file writes it, its
container paths mapped to this checkout (the read-only source mount) and to a temporary folder
per named volume. n8n then starts on a fresh user folder laid out as `n8n-local` mounts its
volumes under the image's home (/home/node), with those of `n8n-local`'s environment variables
that name a mounted path, and must list the node types the workflows of docs/n8n use.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e_n8n.n8n import (
    NODE_PACKAGE_DIR,
    NPM_TIMEOUT,
    START_TIMEOUT,
    WORKFLOWS_DIR,
    N8n,
    n8n_instance,
)
from tests.support.deploy import DEPLOY, compose_service
from tests.support.processes import free_port

pytestmark = [pytest.mark.n8n, pytest.mark.e2e]

BUILDER = "n8n-node"
N8N_SERVICE = "n8n-local"
IMAGE_HOME = "/home/node"  # the n8n image's home: n8n keeps its state in /home/node/.n8n


def mounts(service: dict[str, Any], volumes: Path) -> dict[str, Path]:
    """Container path -> host path of a service's volumes (short syntax): a bind mount (relative
    to deploy/) is the checkout's folder, a named volume a folder of its own under `volumes`."""
    mapped: dict[str, Path] = {}
    for spec in service.get("volumes", []):
        source, target = str(spec).split(":")[:2]
        if source.startswith((".", "/")):
            mapped[target] = (DEPLOY / source).resolve()
        else:
            mapped[target] = volumes / source
            mapped[target].mkdir(parents=True, exist_ok=True)
    return mapped


def host_paths(text: str, mapped: dict[str, Path]) -> str:
    """A value or a shell command with its mounted container paths mapped to this host."""
    for target in sorted(mapped, key=len, reverse=True):
        pattern = rf"(?<![\w./-]){re.escape(target)}(?=[/\s'\"]|$)"
        text = re.sub(pattern, lambda _match, t=target: str(mapped[t]), text)
    return text


def run_builder(volumes: Path) -> None:
    """The builder's command, as a list or a `sh -c` script, its working directory (a scratch
    folder when no volume is mounted there) and its mounts mapped to this host."""
    service = compose_service(BUILDER)
    mapped = mounts(service, volumes)
    workdir = service.get("working_dir")
    if workdir and host_paths(workdir, mapped) == workdir:
        mapped[workdir] = volumes / "scratch"
        mapped[workdir].mkdir(parents=True)
    cwd = host_paths(workdir, mapped) if workdir else str(volumes)
    command = service["command"]
    parts = shlex.split(command) if isinstance(command, str) else [str(p) for p in command]
    argv = [host_paths(part, mapped) for part in parts]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=NPM_TIMEOUT, check=False,
                            cwd=cwd)
    assert result.returncode == 0, (
        f"{BUILDER}: {argv} exited with {result.returncode}:\n"
        f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )


def lay_out_user_folder(folder: Path, volumes: Path) -> dict[str, str]:
    """Link `n8n-local`'s volumes into the user folder where the service mounts them under the
    image's home (outermost first); return its path-valued environment, mapped to this host."""
    service = compose_service(N8N_SERVICE)
    mapped = mounts(service, volumes)
    folder.mkdir(parents=True, exist_ok=True)
    for target in sorted(mapped, key=len):
        if target.startswith(IMAGE_HOME + "/"):
            link = folder / target.removeprefix(IMAGE_HOME + "/")
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(mapped[target], target_is_directory=True)
    environment = service.get("environment", {})
    assert isinstance(environment, dict), f"{N8N_SERVICE}: expected the environment as a mapping"
    return {
        name: host_paths(str(value), mapped)
        for name, value in environment.items()
        if host_paths(str(value), mapped) != str(value)
    }


def wait_started(n8n: N8n) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while "Editor is now accessible" not in n8n.log_path.read_text(errors="replace"):
        assert n8n.process is not None
        if n8n.process.poll() is not None:
            raise AssertionError(f"n8n exited with {n8n.process.returncode}:\n{n8n.log_tail()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"n8n did not start within {START_TIMEOUT:.0f} s:\n"
                                 f"{n8n.log_tail()}")
        time.sleep(0.2)


def documented_node_types(package: str) -> set[str]:
    """The Billable node types the workflows of docs/n8n use."""
    types: set[str] = set()
    for path in sorted(WORKFLOWS_DIR.glob("*.json")):
        types |= {node["type"] for node in json.loads(path.read_text())["nodes"]
                  if node["type"].startswith(f"{package}.")}
    return types


def test_the_compose_local_profile_gives_n8n_the_node_the_workflows_use(tmp_path: Path) -> None:
    package = json.loads((NODE_PACKAGE_DIR / "package.json").read_text())["name"]
    expected = {f"{package}.billable", f"{package}.billableTrigger"}
    used = documented_node_types(package)
    assert used == expected, used

    volumes = tmp_path / "volumes"
    run_builder(volumes)
    folder = tmp_path / "home"
    extra_env = lay_out_user_folder(folder, volumes)
    with n8n_instance(folder, free_port(), free_port()) as n8n:
        n8n.env.update(extra_env)
        n8n.start([])
        wait_started(n8n)
        with n8n.rest() as client:
            nodes = client.get(f"{n8n.base_url}/types/nodes.json")
            credentials = client.get(f"{n8n.base_url}/types/credentials.json")
        assert nodes.status_code == credentials.status_code == 200, (nodes.text, credentials.text)
        listed = {node["name"] for node in nodes.json()}
        billable = sorted(name for name in listed if "billable" in name.lower())
        assert expected <= listed, (billable, n8n.log_tail())
        assert "billableApi" in {credential["name"] for credential in credentials.json()}
