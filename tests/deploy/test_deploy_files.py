"""The deployment files agree with the code: valid syntax, real commands, known variables.

No Docker engine or systemd runs here: the compose file is validated against the Compose
Specification's JSON schema (the copy check-jsonschema ships) and the units with
`systemd-analyze verify`; tests/e2e/test_production_commands.py runs their commands.
"""

from __future__ import annotations

import copy
import importlib.resources
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from django.conf import settings
from django.core.management import get_commands, load_command_class

from tests.support import ROOT
from tests.support.deploy import (
    COMPOSE_FILE,
    DEPLOY,
    ROLES,
    SOURCES,
    SYSTEMD_DIR,
    VM_APP_DIR,
    VM_VENV_BIN,
    compose,
    compose_argvs,
    compose_interpolations,
    compose_service,
    env_example_names,
    env_reads,
    localize,
    makefile_variables,
    production_argvs,
    unit,
    unit_argvs,
    unit_environment,
    unit_values,
)

APP_SERVICES = ("migrate", "api", "webhooks", "worker")
CITUS_SERVICES = ("citus-coordinator", "citus-worker-1", "citus-worker-2", "citus-init")
LOCAL_SERVICES = ("postgres-local", "api-local", "n8n-node", "n8n-local")
UNITS = tuple(sorted(path.name for path in SYSTEMD_DIR.glob("*.service")))
LONG_RUNNING_UNITS = (
    "billable-web.service", "billable-webhooks.service", "billable-worker.service"
)
# What production reads its configuration with: settings, gunicorn config, launcher, service finder.
CONFIG_READERS = (
    ROOT / "billing_platform" / "settings.py",
    DEPLOY / "gunicorn.conf.py",
    ROOT / "billing_platform" / "devserver" / "launcher.py",
    ROOT / "billing_platform" / "devserver" / "services.py",
)
# Every variable the project's own code reads anywhere.
CODE_READERS = (
    ROOT / "billing_platform", ROOT / "tenants", ROOT / "billable", DEPLOY, ROOT / "manage.py"
)
# Read by Django itself (manage.py and wsgi.py only set a default).
READ_BY_DJANGO = {"DJANGO_SETTINGS_MODULE"}
# Read by Docker Compose from deploy/.env (which profiles `docker compose up` starts).
READ_BY_COMPOSE = {"COMPOSE_PROFILES"}


def compose_schema_validator() -> jsonschema.protocols.Validator:
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads(vendor.joinpath("compose-spec.json").read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema)  # type: ignore[no-any-return]


# --- compose


def test_compose_file_is_valid_by_the_compose_specification() -> None:
    validator = compose_schema_validator()

    errors = sorted(validator.iter_errors(compose()), key=lambda error: list(error.path))

    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]
    # The schema is strict enough to catch a misspelt key.
    broken = copy.deepcopy(compose())
    broken["services"]["worker"]["comand"] = broken["services"]["worker"].pop("command")
    assert list(validator.iter_errors(broken)), "the schema accepted a misspelt key"


def test_compose_runs_every_service_the_platform_needs() -> None:
    services = compose()["services"]

    assert set(services) == {
        "postgres", "redis", *APP_SERVICES, "n8n",
        *CITUS_SERVICES, *LOCAL_SERVICES,
    }
    assert services["postgres"]["image"] == "postgres:15"
    assert services["redis"]["image"].startswith("redis:")
    assert services["n8n"]["image"] == "n8nio/n8n:1.123.81"
    # Every service belongs to a profile; the app runs under production and citus alike.
    assert services["n8n"]["profiles"] == ["n8n"]
    assert services["postgres"]["profiles"] == ["production"]
    assert set(services["redis"]["profiles"]) == {"production", "citus", "local"}
    for name in APP_SERVICES:
        assert set(services[name]["profiles"]) == {"production", "citus"}, name
    for name in CITUS_SERVICES:
        assert services[name]["profiles"] == ["citus"], name
    for name in LOCAL_SERVICES:
        assert services[name]["profiles"] == ["local"], name


def test_app_services_build_one_image_from_the_dockerfile() -> None:
    for name in APP_SERVICES:
        service = compose_service(name)
        build = service["build"]
        assert (COMPOSE_FILE.parent / build["context"]).resolve() == ROOT, name
        assert (ROOT / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile", name
        assert service["image"] == compose_service("api")["image"], name
        assert service["env_file"] == ".env", name
    # A database not yet accepting connections fails migrate once; it runs again until it ends.
    assert compose_service("migrate")["restart"] == "on-failure"
    for name in ("api", "webhooks", "worker"):
        assert compose_service(name)["restart"] == "unless-stopped", name


def test_services_start_in_order_and_report_health() -> None:
    services = compose()["services"]

    def test_line(name: str) -> str:
        return " ".join(services[name]["healthcheck"]["test"])

    # Over TCP: the image's first-start server listens on its socket only.
    assert "pg_isready -h 127.0.0.1" in test_line("postgres")
    assert "redis-cli ping" in test_line("redis")
    assert "http://127.0.0.1:8000/healthz" in test_line("api")
    assert services["migrate"]["depends_on"] == {
        # the one of the two that the profile (production, citus) runs
        "postgres": {"condition": "service_healthy", "required": False},
        "citus-init": {"condition": "service_completed_successfully", "required": False},
        "redis": {"condition": "service_healthy"},
    }
    for name in ("api", "webhooks", "worker"):
        assert services[name]["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"}
        }, name
    assert services["n8n"]["depends_on"] == {"api": {"condition": "service_healthy"}}


def test_api_healthcheck_runs_on_the_image_python() -> None:
    # python:3.11-slim has no curl: the check is the image's own Python.
    check = compose_service("api")["healthcheck"]["test"]
    assert check[:3] == ["CMD", "python", "-c"]
    compile(check[3], "<healthcheck>", "exec")


# --- commands (compose and systemd)


def assert_real_command(argv: list[str], local: list[str]) -> str:
    """The argv is a management command this project has, with options its parser accepts."""
    script = Path(local[1]) if Path(local[1]).is_absolute() else ROOT / local[1]
    assert script == ROOT / "manage.py", argv
    name = argv[2]
    commands = get_commands()
    assert name in commands, f"{name} is not a management command"
    command = load_command_class(commands[name], name)
    command.create_parser("manage.py", name).parse_args(argv[3:])
    return name


def assert_gunicorn(argv: list[str], local: list[str]) -> None:
    assert Path(argv[0]).name == "gunicorn", argv
    assert argv[1] == "billing_platform.wsgi", argv
    assert (ROOT / "billing_platform" / "wsgi.py").exists()
    config = Path(local[local.index("-c") + 1])
    config = config if config.is_absolute() else ROOT / config
    assert config == DEPLOY / "gunicorn.conf.py", argv
    assert config.exists()


# What each role runs, in order; "gunicorn" is the API server. Compose's migrate job also collects
# the static files into the volume the API reads; on a VM each API machine collects its own.
EXPECTED_COMMANDS = {
    "compose": {
        "migrate": ["migrate_schemas", "collectstatic"],
        "web": ["gunicorn"],
        "webhooks": ["run_webhook_worker"],
        "worker": ["run_worker"],
    },
    "systemd": {
        "migrate": ["migrate_schemas"],
        "web": ["collectstatic", "gunicorn"],
        "webhooks": ["run_webhook_worker"],
        "worker": ["run_worker"],
    },
}


@pytest.mark.parametrize("source", SOURCES)
def test_every_role_runs_the_expected_commands(source: str) -> None:
    for role in ROLES:
        names = []
        for argv in production_argvs(source, role):
            local = localize(argv, source)
            if Path(argv[0]).name == "gunicorn":
                assert_gunicorn(argv, local)
                names.append("gunicorn")
            else:
                assert Path(argv[0]).name == "python", argv
                names.append(assert_real_command(argv, local))
        assert names == EXPECTED_COMMANDS[source][role], (source, role)
        for argv in production_argvs(source, role):
            if argv[2:3] in (["migrate_schemas"], ["collectstatic"]):
                assert "--noinput" in argv, argv


def test_web_unit_collects_static_files_before_each_start_and_reload() -> None:
    pre = unit_values("billable-web.service", "Service", "ExecStartPre")
    reload = unit_values("billable-web.service", "Service", "ExecReload")
    assert reload[0] == pre[0]
    assert "collectstatic" in pre[0]
    assert reload[-1] == "/bin/kill -s HUP $MAINPID"
    assert unit_environment("billable-web.service")["STATIC_ROOT"] == "/var/lib/billable/static"
    assert unit("billable-web.service")["Service"]["StateDirectory"] == "billable"


def test_systemd_units_use_the_vm_layout() -> None:
    for name in UNITS:
        for argv in unit_argvs(name):
            assert argv[0].startswith(VM_VENV_BIN + "/"), (name, argv)
            assert all(
                not part.startswith("/") or part.startswith((VM_VENV_BIN, VM_APP_DIR))
                for part in argv
            ), (name, argv)


def test_dockerfile_builds_the_image_the_services_run() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    instructions = [
        line.strip() for line in re.sub(r"\\\n", " ", dockerfile).splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert instructions[0] == "FROM python:3.11-slim"
    assert "RUN pip install ." in instructions
    users = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), users
    assert "WORKDIR /app" in instructions
    # Every package the project installs is copied, from a path the build context sends.
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    copied = [part for line in instructions if line.startswith("COPY ")
              for part in line.split()[1:-1]]
    for source in copied:
        assert (ROOT / source).exists(), source
        assert f"!{source}" in ignore, f"{source} is excluded from the build context"
    pyproject = (ROOT / "pyproject.toml").read_text()
    packages = re.search(r"include = \[(.*?)\]", pyproject)
    assert packages
    for pattern in re.findall(r'"([\w]+)\*"', packages.group(1)):
        assert pattern in copied, f"package {pattern} is not copied into the image"
    # The image's default command is the API's.
    cmd = next(line for line in instructions if line.startswith("CMD "))
    assert json.loads(cmd.removeprefix("CMD ")) == compose_argvs("api")[0]


def test_the_image_files_are_enough_to_run_the_app(tmp_path: Path) -> None:
    """The files the Dockerfile copies, laid out as in the image, load every app and URL."""
    dockerfile = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    workdir = Path("/")
    for line in dockerfile.splitlines():
        parts = line.split()
        if parts[:1] == ["WORKDIR"]:
            workdir = Path(parts[1])
        if parts[:1] == ["COPY"]:
            *sources, target = parts[1:]
            destination = tmp_path / (workdir / target).relative_to("/")
            for source in sources:
                path = ROOT / source
                into = destination / path.name if target.endswith("/") else destination
                if path.is_dir():
                    shutil.copytree(path, into, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    into.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(path, into)
    app_dir = tmp_path / workdir.relative_to("/")
    assert workdir == Path("/app") and (app_dir / "manage.py").is_file()
    env = {name: value for name, value in os.environ.items() if name != "BILLABLE_TESTING"}
    env.update(
        SECRET_KEY=settings.SECRET_KEY,
        API_KEY_HASH_SECRETS=settings.API_KEY_HASH_SECRETS,
        ENCRYPTION_KEYS=",".join(settings.ENCRYPTION_KEYS),
        REDIS_URL=settings.REDIS_URL,
        DJANGO_SETTINGS_MODULE="billing_platform.settings",
    )

    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c",
         "import billing_platform; from django.urls import resolve; resolve('/readyz');"
         " print(billing_platform.__file__)"],
        cwd=app_dir, env=env, capture_output=True, text=True, timeout=120, check=False,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    # The copied package was used, not the checkout's.
    loaded_from = result.stdout.strip().splitlines()[-1]
    assert loaded_from == str(app_dir / "billing_platform" / "__init__.py")


# --- environment variables


def test_env_example_lists_every_variable_the_configuration_reads() -> None:
    read = env_reads(*CONFIG_READERS)
    # The scan finds reads of every form the configuration uses.
    assert {"SECRET_KEY", "DATABASE_URL", "DB_LOCK_TIMEOUT_MS", "WEBHOOK_RETRY_SCHEDULE",
            "BIND", "WEB_CONCURRENCY", "USE_PRIVATE_SERVICES", "PORT"} <= read

    missing = read - env_example_names()

    assert not missing, f"add these to deploy/env.example: {sorted(missing)}"


def test_env_example_names_only_variables_something_reads() -> None:
    known = (
        env_reads(*CODE_READERS) | READ_BY_DJANGO | makefile_variables()
        | compose_interpolations() | READ_BY_COMPOSE
    )

    stale = env_example_names() - known

    assert not stale, f"deploy/env.example names variables nothing reads: {sorted(stale)}"


def test_compose_and_units_set_only_variables_the_code_reads() -> None:
    read = env_reads(*CODE_READERS)
    for name in APP_SERVICES:
        environment: dict[str, Any] = compose_service(name).get("environment", {})
        unknown = set(environment) - read
        assert not unknown, (name, unknown)
    assert {"DATABASE_URL", "REDIS_URL"} <= set(compose_service("worker")["environment"])
    assert compose_service("api")["environment"]["BIND"] == "0.0.0.0:8000"
    for name in UNITS:
        unknown = set(unit_environment(name)) - read
        assert not unknown, (name, unknown)
    assert compose_interpolations() <= env_example_names()


# --- systemd


@pytest.mark.parametrize("name", UNITS)
def test_unit_runs_as_its_own_user_with_the_env_file_and_hardening(name: str) -> None:
    parsed = unit(name)
    service = parsed["Service"]

    assert service["User"] == "billable"
    assert service["Group"] == "billable"
    assert service["WorkingDirectory"] == VM_APP_DIR
    assert unit_values(name, "Service", "EnvironmentFile") == ["/etc/billable/env"]
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["ProtectHome"] == "yes"
    assert service["PrivateTmp"] == "yes"
    assert service["CapabilityBoundingSet"] == ""
    assert set(service["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}


def test_units_start_after_migrations_and_restart() -> None:
    migrate = unit("billable-migrate.service")
    assert migrate["Service"]["Type"] == "oneshot"
    # A database still starting at boot is retried, a failing migration not forever.
    assert migrate["Service"]["Restart"] == "on-failure"
    assert int(migrate["Unit"]["StartLimitBurst"]) <= 10
    for name in LONG_RUNNING_UNITS:
        parsed = unit(name)
        assert "billable-migrate.service" in parsed["Unit"]["Wants"].split(), name
        assert "billable-migrate.service" in parsed["Unit"]["After"].split(), name
        assert parsed["Service"]["Restart"] in ("always", "on-failure"), name
        assert parsed["Install"]["WantedBy"] == "multi-user.target", name
        assert parsed["Service"]["StateDirectory"] == "billable", name
    web = unit("billable-web.service")["Service"]
    # gunicorn tells systemd when it serves (sd_notify READY=1; tests/e2e checks it does).
    assert web["Type"] == "notify"


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    env_file = tmp_path / "env"
    env_file.write_text("")
    bin_dir = str(Path(sys.executable).parent)
    for name in UNITS:
        text = (SYSTEMD_DIR / name).read_text()
        # The same units, pointed at this checkout, so the executables it checks exist.
        text = text.replace(VM_VENV_BIN, bin_dir).replace(VM_APP_DIR, str(ROOT))
        text = text.replace("/etc/billable/env", str(env_file))
        (tmp_path / name).write_text(text)

    result = subprocess.run(
        [analyze, "verify", "--man=no", *(str(tmp_path / name) for name in UNITS)],
        capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr.strip() == "", result.stderr
    # A misspelt option is reported, so a clean run means something.
    worker = (tmp_path / "billable-worker.service").read_text()
    (tmp_path / "typo.service").write_text(worker.replace("ProtectSystem=", "ProtectSytem="))
    typo = subprocess.run(
        [analyze, "verify", "--man=no", str(tmp_path / "typo.service")],
        capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
    )
    assert "ProtectSytem" in typo.stderr, typo.stderr


def test_env_file_reads_the_same_in_systemd_compose_and_sh() -> None:
    """Plain NAME=value lines: systemd's EnvironmentFile=, compose's env_file and `set -a; .`
    (deploy/README.md runs manage.py that way) read the same values only without quoting or `$`."""
    plain = {}
    for line in (DEPLOY / "env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            assert re.fullmatch(r"[^\s'\"$`\\;&|<>()]*", value), f"quote-free value needed: {line}"
            plain[name] = value

    result = subprocess.run(
        ["sh", "-c", 'set -a; . "$0"; set +a; env -0', str(DEPLOY / "env.example")],
        capture_output=True, timeout=30, check=True, env={"PATH": "/usr/bin:/bin"},
    )

    sourced = dict(
        entry.split("=", 1) for entry in result.stdout.decode().split("\0") if "=" in entry
    )
    assert len(plain) >= 40
    assert {name: sourced.get(name) for name in plain} == plain
