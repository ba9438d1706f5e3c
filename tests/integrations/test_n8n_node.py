"""The n8n community node (integrations/n8n): it builds from its lock file, its unit tests pass, it
packs as npm would publish it, and it accepts what the platform signs.

Needs node and npm (CI has them); `npm ci` installs the pinned dev dependencies (TypeScript and
n8n-workflow's types) into integrations/n8n/node_modules, offline once npm's cache holds them.
The node in a real n8n is `make e2e-n8n`'s.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from billing_platform.webhooks.delivery import signature_headers
from billing_platform.webhooks.services import new_signing_secret
from tests.support import ROOT

PACKAGE = ROOT / "integrations" / "n8n"
NPM_TIMEOUT = 300

pytestmark = pytest.mark.skipif(
    shutil.which("npm") is None or shutil.which("node") is None,
    reason="node and npm are needed to build the n8n node",
)


def _run(*args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        list(args), cwd=PACKAGE, capture_output=True, text=True, input=stdin,
        timeout=NPM_TIMEOUT, check=False,
    )
    assert result.returncode == 0, (args, result.stdout[-4000:], result.stderr[-4000:])
    return result.stdout


@pytest.fixture(scope="module")
def built() -> Path:
    _run("npm", "ci", "--prefer-offline", "--no-audit", "--no-fund")
    _run("npm", "run", "build")
    return PACKAGE / "dist"


def test_unit_tests_pass(built: Path) -> None:
    out = _run("npm", "test")
    assert "# fail 0" in out, out[-3000:]


def test_the_package_publishes_the_build_only(built: Path) -> None:
    packed = json.loads(_run("npm", "pack", "--dry-run", "--json"))[0]
    files = {f["path"] for f in packed["files"]}
    declared = json.loads((PACKAGE / "package.json").read_text())["n8n"]
    for path in declared["nodes"] + declared["credentials"]:
        assert path in files, (path, sorted(files))
    assert {"package.json", "dist/nodes/Billable/billable.svg"} <= files, sorted(files)
    assert not [f for f in files if f.startswith(("src/", "test/", "node_modules/"))], files


VERIFY = """
const { verifyStandardWebhook } = require('./dist/shared/signature');
const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const verdicts = input.cases.map((c) =>
  verifyStandardWebhook(c.secret, c.headers, Buffer.from(c.body, 'utf8')));
process.stdout.write(JSON.stringify(verdicts));
"""


def test_the_trigger_accepts_what_the_platform_signs(built: Path) -> None:
    """The server's signing code and the node's check agree, and only on the exact bytes."""
    secret, old, other = new_signing_secret(), new_signing_secret(), new_signing_secret()
    # Bytes JSON.stringify(JSON.parse(body)) does not give back: 1.0, an integer-like key, ë.
    body = '{"id":"evt_1","type":"order.created","data":{"metadata":{"ratio":1.0,"10":"Zoë"}}}'
    headers = signature_headers("evt_1", body, [secret])
    rotated = signature_headers("evt_1", body, [secret, old])  # during a rotation: two
    cases = [
        {"secret": secret, "headers": headers, "body": body},
        {"secret": old, "headers": rotated, "body": body},
        {"secret": other, "headers": headers, "body": body},
        {"secret": secret, "headers": headers, "body": body.replace("1.0", "1")},
        {"secret": secret, "headers": {**headers, "webhook-id": "evt_2"}, "body": body},
    ]
    verdicts = json.loads(_run("node", "-e", VERIFY, stdin=json.dumps({"cases": cases})))
    assert [v["ok"] for v in verdicts] == [True, True, False, False, False], verdicts
    assert verdicts[0]["id"] == "evt_1"
