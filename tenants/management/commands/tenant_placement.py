"""`manage.py tenant_placement list | move SLUG --to NODE | rebalance`: tenants on Citus.

On a Citus cluster with schema-based sharding every tenant schema is a distributed schema whose
tables live whole on one worker (docs/scaling.md). This lists where each one lives, moves one
(`citus_schema_move`) and evens them out (`citus_rebalance_start` / `citus_rebalance_wait`).
On plain PostgreSQL every subcommand refuses with a message and exit status 1.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from tenants import selectors, services
from tenants.models import Tenant


class Command(BaseCommand):
    help = (
        "Where tenant schemas live on a Citus cluster, and moving them between workers: "
        "'list', 'move SLUG --to HOST:PORT|NODE_ID' (citus_schema_move), 'rebalance' "
        "(citus_rebalance_start). Refuses on plain PostgreSQL."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("list", help="each tenant and spare schema and the worker it lives on")
        move = sub.add_parser("move", help="move one tenant's schema to another worker")
        move.add_argument("slug", help="the tenant's slug (or a schema name, e.g. a spare's)")
        move.add_argument("--to", required=True, metavar="HOST:PORT|NODE_ID",
                          help="the target worker (see 'list')")
        rebalance = sub.add_parser("rebalance", help="even out the schemas over the workers")
        rebalance.add_argument("--dry-run", action="store_true",
                               help="print the moves the rebalancer would make, move nothing")
        for p in (move, rebalance):
            p.add_argument(
                "--block-writes", action="store_true",
                help="copy with writes blocked (shard_transfer_mode block_writes) instead of "
                "the online logical move, e.g. without wal_level = logical on the workers",
            )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            if not selectors.citus_enabled():
                raise selectors.CitusUnavailable()
            getattr(self, "_" + options["action"])(options)
        except selectors.CitusUnavailable as exc:
            raise CommandError(f"tenant_placement: {exc}") from exc
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        except DatabaseError as exc:
            raise CommandError(f"Citus refused: {exc}".strip()) from exc

    def _list(self, options: dict[str, Any]) -> None:
        placements = selectors.tenant_placements()
        workers = selectors.citus_worker_nodes()
        self.stdout.write("workers: " + ", ".join(
            f"{n.node_id}={n.address}" + ("" if n.should_have_shards else " (no new shards)")
            + ("" if n.active else " (inactive)")
            for n in workers
        ))
        rows = [("SLUG", "SCHEMA", "KIND", "NODE", "NODE ID", "TABLES")]
        for p in placements:
            if p.node is not None:
                node, node_id = p.node.address, str(p.node.node_id)
            else:
                node, node_id = ("(no tables)" if p.distributed else "(coordinator, local)"), "-"
            rows.append((p.slug or "-", p.schema, p.kind, node, node_id, str(p.shards)))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            cells = (c.ljust(w) for c, w in zip(r, widths, strict=True))
            self.stdout.write("  ".join(cells).rstrip())
        per_node: dict[str, int] = {n.address: 0 for n in workers}
        for p in placements:
            if p.node is not None:
                per_node[p.node.address] = per_node.get(p.node.address, 0) + 1
        counts = ", ".join(f"{a}={c}" for a, c in per_node.items())
        self.stdout.write(f"schemas per worker: {counts}")

    def _move(self, options: dict[str, Any]) -> None:
        ref: str = options["slug"]
        tenant = Tenant.objects.filter(slug=ref.lower()).first()
        schema = tenant.schema_name if tenant is not None else ref
        target = selectors.citus_node_get(ref=options["to"])
        mode = "block_writes" if options["block_writes"] else "auto"
        placement = selectors.tenant_placement_get(schema=schema)
        if placement is None:
            raise CommandError(
                f"no tenant or distributed schema {ref!r} (see 'tenant_placement list')"
            )
        if placement.node is not None and placement.node.node_id == target.node_id:
            self.stdout.write(f"{schema} is on {target.address} (node {target.node_id}) already.")
            return
        self.stderr.write(
            f"moving {schema} ({placement.shards} tables) from "
            f"{placement.node.address if placement.node else '?'} to {target.address} ({mode})…"
        )
        moved = services.tenant_schema_move(schema=schema, target=target, transfer_mode=mode)
        if moved is None:
            self.stdout.write(f"{schema} is on {target.address} (node {target.node_id}) already.")
        else:
            self.stdout.write(
                f"moved {moved.schema}: {moved.source} -> {moved.target} "
                f"(node {target.node_id}, {moved.shards} tables, {mode})"
            )

    def _rebalance(self, options: dict[str, Any]) -> None:
        mode = "block_writes" if options["block_writes"] else "auto"
        result = services.tenant_placement_rebalance(transfer_mode=mode, dry_run=options["dry_run"])
        verb = "would move" if options["dry_run"] else "moved"
        for m in result.moves:
            self.stdout.write(f"{verb} {m.schema}: {m.source} -> {m.target} ({m.shards} tables)")
        if not result.moves:
            self.stdout.write("balanced: nothing to move.")
        elif result.job_id is not None:
            self.stdout.write(
                f"rebalance job {result.job_id}: {result.state}, "
                f"{len(result.moves)} schema(s) moved"
            )
            if result.state != "finished":
                raise CommandError(
                    f"rebalance job {result.job_id} ended {result.state}: "
                    "see citus_rebalance_status()"
                )
