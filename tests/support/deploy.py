"""Readers of the deployment files, shared by tests/deploy and tests/e2e.

The compose file and the systemd units are parsed here once, and their commands are turned into
the same commands in this checkout, so the tests check and run exactly what production runs.
"""

from __future__ import annotations

import configparser
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.support import ROOT

DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "compose.yaml"
SYSTEMD_DIR = DEPLOY / "systemd"
ENV_EXAMPLE = DEPLOY / "env.example"

# Where the app lives in the image (compose) and on a VM (systemd units, deploy/README.md).
IMAGE_APP_DIR = "/app"
VM_APP_DIR = "/opt/billable/app"
VM_VENV_BIN = "/opt/billable/venv/bin"

# The four process roles and the compose service / systemd unit that runs each.
ROLES: dict[str, dict[str, str]] = {
    "migrate": {"compose": "migrate", "systemd": "billable-migrate.service"},
    "web": {"compose": "api", "systemd": "billable-web.service"},
    "webhooks": {"compose": "webhooks", "systemd": "billable-webhooks.service"},
    "worker": {"compose": "worker", "systemd": "billable-worker.service"},
}
SOURCES = ("compose", "systemd")

_ENV_READ = re.compile(
    r"""(?:\benv|\benviron|\bos)\.(?:get|getenv|str|bool|int|float|list|db_url|url|json)\(\s*"""
    r"""['"]([A-Z][A-Z0-9_]*)['"]"""
    r"""|\benviron\[\s*['"]([A-Z][A-Z0-9_]*)['"]\s*\]"""
)
_ENV_LINE = re.compile(r"^\s*#?\s*([A-Z][A-Z0-9_]*)=", re.MULTILINE)
_INTERPOLATION = re.compile(r"\$\{([A-Z][A-Z0-9_]*)")


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return data


def compose_service(name: str) -> dict[str, Any]:
    service: dict[str, Any] = compose()["services"][name]
    return service


def compose_argvs(service: str) -> list[list[str]]:
    """The commands a compose service runs; `sh -c "a && b"` gives [a, b]."""
    command = compose_service(service)["command"]
    argv = shlex.split(command) if isinstance(command, str) else [str(part) for part in command]
    if argv[:2] == ["sh", "-c"]:
        return [shlex.split(part) for part in argv[2].split("&&")]
    return [argv]


def compose_interpolations() -> set[str]:
    """Variables compose substitutes (`${NAME...}`) from deploy/.env or the shell."""
    return set(_INTERPOLATION.findall(COMPOSE_FILE.read_text()))


class _Repeated(dict):  # type: ignore[type-arg]
    """Keeps every value of a repeated option (ExecStart=, Environment=) one per line."""

    def __setitem__(self, key: str, value: Any) -> None:
        if isinstance(value, list) and isinstance(self.get(key), list):
            self[key].extend(value)
        else:
            super().__setitem__(key, value)


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(
        strict=False, interpolation=None, dict_type=_Repeated, empty_lines_in_values=False
    )
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((SYSTEMD_DIR / name).read_text(), source=name)
    return parser


def unit_values(name: str, section: str, option: str) -> list[str]:
    parsed = unit(name)
    if not parsed.has_option(section, option):
        return []
    return [line for line in parsed.get(section, option).splitlines() if line.strip()]


def unit_argvs(name: str) -> list[list[str]]:
    """ExecStartPre= then ExecStart= commands, in the order systemd runs them."""
    lines = unit_values(name, "Service", "ExecStartPre") + unit_values(name, "Service", "ExecStart")
    return [shlex.split(line) for line in lines]


def unit_environment(name: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for line in unit_values(name, "Service", "Environment"):
        for assignment in shlex.split(line):
            key, _, value = assignment.partition("=")
            pairs[key] = value
    return pairs


def production_argvs(source: str, role: str) -> list[list[str]]:
    """The role's commands as the compose file or the unit writes them, in order.

    For the long-running roles the last one is the process that keeps running; any before it
    (the unit's ExecStartPre=) run to completion first.
    """
    name = ROLES[role][source]
    return compose_argvs(name) if source == "compose" else unit_argvs(name)


def localize(argv: list[str], source: str) -> list[str]:
    """The same command in this checkout: this virtualenv's executables, this checkout's files."""
    bin_dir = Path(sys.executable).parent
    local: list[str] = []
    for index, part in enumerate(argv):
        if source == "systemd":
            if part.startswith(VM_VENV_BIN + "/"):
                part = str(bin_dir / part.removeprefix(VM_VENV_BIN + "/"))
            elif part.startswith(VM_APP_DIR + "/"):
                part = str(ROOT / part.removeprefix(VM_APP_DIR + "/"))
        elif index == 0 and part in ("python", "gunicorn"):
            # The image's PATH has them; the working directory is the checkout's copy (/app).
            part = str(bin_dir / part)
        elif part.startswith(IMAGE_APP_DIR + "/"):
            part = str(ROOT / part.removeprefix(IMAGE_APP_DIR + "/"))
        local.append(part)
    return local


def env_example_names() -> set[str]:
    """Every variable deploy/env.example names, set or commented out."""
    return set(_ENV_LINE.findall(ENV_EXAMPLE.read_text()))


def env_reads(*paths: Path) -> set[str]:
    """Environment variables the given Python files (or folders of them) read by name."""
    names: set[str] = set()
    for path in paths:
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for file in files:
            if "migrations" in file.parts:
                continue
            for match in _ENV_READ.finditer(file.read_text()):
                names.add(match.group(1) or match.group(2))
    return names


def makefile_variables() -> set[str]:
    """Variables the Makefile lets the environment set (`NAME ?= default`)."""
    return set(re.findall(r"^([A-Z][A-Z0-9_]*)\s*\?=", (ROOT / "Makefile").read_text(), re.M))
