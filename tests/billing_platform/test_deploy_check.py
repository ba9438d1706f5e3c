"""`manage.py check --deploy` is clean with production settings, and catches plain-HTTP ones."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest
from django.conf import settings

from tests.support import ROOT
from tests.support.processes import database_url

HTTPS_WARNINGS = ("security.W004", "security.W008", "security.W012", "security.W016")

# Variables that would turn production settings into test or development ones.
_NOT_PRODUCTION = (
    "BILLABLE_TESTING",
    "TEST_DATABASE_NAME",
    "DEBUG",
    "SECURE_HTTPS",
    "SECURE_SSL_REDIRECT",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "ALLOWED_HOSTS",
)


def check_deploy(**overrides: str) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if name not in _NOT_PRODUCTION}
    env.update(
        DJANGO_SETTINGS_MODULE="billing_platform.settings",
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(64),
        DATABASE_URL=database_url(),
        REDIS_URL=settings.REDIS_URL,
        API_KEY_HASH_SECRETS=settings.API_KEY_HASH_SECRETS,
        ENCRYPTION_KEYS=",".join(settings.ENCRYPTION_KEYS),
    )
    env.update(overrides)
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_production_settings_pass_check_deploy() -> None:
    assert settings.REDIS_URL, "production settings use Redis; the tests always have it"

    result = check_deploy()

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues" in result.stdout, output
    assert "WARNING" not in output, output
    assert "security." not in output, output


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"SECURE_HTTPS": "false"}, HTTPS_WARNINGS),
        ({"SECURE_HTTPS": "true", "DEBUG": "true"}, ("security.W018",)),
        ({"SECRET_KEY": "short"}, ("security.W009",)),
        ({"REDIS_URL": ""}, ("billable.E001",)),
    ],
    ids=["plain-http", "debug-on", "weak-secret-key", "no-redis"],
)
def test_check_deploy_reports_unsafe_settings(
    overrides: dict[str, str], expected: tuple[str, ...]
) -> None:
    result = check_deploy(**overrides)

    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    for warning in expected:
        assert warning in output, (warning, output)
