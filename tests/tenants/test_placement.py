"""`manage.py tenant_placement` on plain PostgreSQL: every subcommand refuses, cleanly.

Placement is Citus's (schema-based sharding, docs/scaling.md); the command itself is exercised on
a real 3-node cluster by `make e2e-citus` (deploy/citus/e2e.sh). Here, on the test database
without the `citus` extension: a clear message, exit status 1, no traceback, nothing touched.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tenants import selectors, services
from tests.support import ROOT
from tests.support.processes import server_env

SUBCOMMANDS = [
    ["list"],
    ["move", "alpha", "--to", "127.0.0.1:5432"],
    ["move", "alpha", "--to", "2", "--block-writes"],
    ["rebalance"],
    ["rebalance", "--dry-run"],
]


@pytest.fixture
def plain_postgresql(db: None) -> None:
    """These tests are about a database without Citus: on a Citus cluster's test database
    (deploy/citus/pytest.sh) there is nothing for them to check; make e2e-citus runs the command."""
    if selectors.citus_enabled():
        pytest.skip("the test database has the citus extension (a Citus cluster)")


def test_the_database_has_no_citus(plain_postgresql: None) -> None:
    assert selectors.citus_enabled() is False


@pytest.mark.parametrize("argv", SUBCOMMANDS, ids=" ".join)
def test_every_subcommand_refuses_without_citus(argv: list[str], plain_postgresql: None) -> None:
    with pytest.raises(CommandError, match="no 'citus' extension") as info:
        call_command("tenant_placement", *argv)
    assert "docs/scaling.md" in str(info.value)


def test_the_services_refuse_without_citus(plain_postgresql: None) -> None:
    with pytest.raises(selectors.CitusUnavailable):
        selectors.tenant_placements()
    with pytest.raises(selectors.CitusUnavailable):
        selectors.citus_worker_nodes()
    with pytest.raises(selectors.CitusUnavailable):
        services.tenant_placement_rebalance(dry_run=True)
    node = selectors.Node(2, "127.0.0.1", 5432)
    with pytest.raises(selectors.CitusUnavailable):
        services.tenant_schema_move(schema="public", target=node)


def test_an_unknown_transfer_mode_is_refused_before_the_database() -> None:
    node = selectors.Node(2, "127.0.0.1", 5432)
    with pytest.raises(ValueError, match="shard transfer mode"):
        services.tenant_schema_move(schema="t_x", target=node, transfer_mode="copy")


def test_a_worker_is_found_by_node_id_or_address(monkeypatch: pytest.MonkeyPatch) -> None:
    nodes = [selectors.Node(2, "10.0.0.2", 5432), selectors.Node(3, "10.0.0.3", 5433)]
    monkeypatch.setattr(selectors, "citus_worker_nodes", lambda: nodes)
    assert selectors.citus_node_get(ref="3") == nodes[1]
    assert selectors.citus_node_get(ref="10.0.0.2:5432") == nodes[0]
    for unknown in ("1", "10.0.0.2:5433", "10.0.0.9", "worker"):
        with pytest.raises(ValueError, match=r"no worker node .* the workers are: 2 \(10.0.0.2"):
            selectors.citus_node_get(ref=unknown)


@pytest.mark.parametrize("argv", [["list"], ["move", "alpha", "--to", "2"], ["rebalance"]],
                         ids=" ".join)
def test_the_command_line_exits_1_with_a_message_and_no_traceback(
    argv: list[str], plain_postgresql: None
) -> None:
    # The real command line over the test database, as an operator runs it.
    done = subprocess.run(
        [sys.executable, "manage.py", "tenant_placement", *argv],
        cwd=ROOT,
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert "tenant_placement: this database has no 'citus' extension" in done.stderr
    assert done.stdout == ""
