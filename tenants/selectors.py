"""Reads of the public schema."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.db.models import QuerySet
from django_tenants.utils import get_public_schema_name

from billing_platform.core import errors
from tenants.models import ApiKey, Tenant, TenantStatus


def tenant_list() -> QuerySet[Tenant]:
    return Tenant.objects.exclude(status__in=[TenantStatus.SPARE, TenantStatus.BUILDING])


def tenant_get(*, slug: str) -> Tenant:
    tenant = tenant_list().filter(slug=slug.lower()).first()
    if tenant is None:
        raise errors.TenantNotFound()
    return tenant


def api_key_list(*, tenant_id: int) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(tenant_id=tenant_id)


def api_key_get(*, tenant_id: int, key_id: str) -> ApiKey:
    """A key of this tenant; another tenant's key id is 404 like an unknown one."""
    key = None
    try:
        key = ApiKey.objects.filter(tenant_id=tenant_id, pk=key_id).first()
    except Exception:  # not a UUID: a malformed id is simply unknown
        key = None
    if key is None:
        raise errors.ApiKeyNotFound()
    return key


# --- Placement on a Citus cluster (schema-based sharding, docs/scaling.md) ---------------------


class CitusUnavailable(Exception):
    """The database has no `citus` extension: there is nothing to place or move."""

    def __init__(self) -> None:
        super().__init__(
            "this database has no 'citus' extension: tenant placement applies only to a Citus "
            "cluster with schema-based sharding (docs/scaling.md); on plain PostgreSQL every "
            "tenant schema lives in the one database."
        )


@dataclass(frozen=True)
class Node:
    """A Citus node (`pg_dist_node`): where a distributed schema's shards can be placed."""

    node_id: int
    host: str
    port: int
    should_have_shards: bool = True
    active: bool = True

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class SchemaPlacement:
    """One schema and the node its shards live on (None: not distributed, or no table yet)."""

    schema: str
    slug: str | None
    kind: str  # a TenantStatus value, "template" or "other"
    distributed: bool
    node: Node | None
    shards: int


def citus_enabled() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'citus'")
        return cursor.fetchone() is not None


def _require_citus() -> None:
    if not citus_enabled():
        raise CitusUnavailable()


def citus_worker_nodes() -> list[Node]:
    """The primary nodes other than the coordinator (group 0), by node id."""
    _require_citus()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nodeid, nodename, nodeport, shouldhaveshards, isactive FROM pg_dist_node "
            "WHERE noderole = 'primary' AND groupid <> 0 ORDER BY nodeid"
        )
        return [Node(*row) for row in cursor.fetchall()]


def citus_node_get(*, ref: str) -> Node:
    """A primary worker by node id (`3`) or address (`host:port`); ValueError when unknown."""
    nodes = citus_worker_nodes()
    ref = ref.strip()
    if ref.isdigit():
        found = [node for node in nodes if node.node_id == int(ref)]
    else:
        host, _, port = ref.rpartition(":")
        found = [
            node
            for node in nodes
            if port.isdigit() and node.host == host and node.port == int(port)
        ]
    if not found:
        known = ", ".join(f"{node.node_id} ({node.address})" for node in nodes) or "none"
        raise ValueError(f"no worker node {ref!r}; the workers are: {known}")
    return found[0]


# Every distributed schema (`pg_dist_schema`) and the primary node(s) holding the placements of
# its tables' shards: all of a distributed schema's tables are single-shard and co-located, so
# they live on one node (two only in the middle of a move).
_PLACEMENT_SQL = """
SELECT s.schemaid::regnamespace::text AS schema, n.nodeid, n.nodename, n.nodeport,
       n.shouldhaveshards, n.isactive, count(DISTINCT sh.shardid) AS shards
FROM pg_dist_schema s
LEFT JOIN pg_dist_partition p ON p.colocationid = s.colocationid
LEFT JOIN pg_dist_shard sh ON sh.logicalrelid = p.logicalrelid
LEFT JOIN pg_dist_placement pl ON pl.shardid = sh.shardid
LEFT JOIN pg_dist_node n ON n.groupid = pl.groupid AND n.noderole = 'primary'
GROUP BY 1, 2, 3, 4, 5, 6
ORDER BY 1, 2
"""


def tenant_placements() -> list[SchemaPlacement]:
    """Where each tenant's, spare's and the template's schema lives, from Citus's catalog.

    Tenants first (by slug), then spares and schemas being built, the template, then any other
    distributed schema. A tenant schema that is not distributed (created before
    `citus.enable_schema_based_sharding` was on) is listed with no node: it lives on the
    coordinator as a plain schema.
    """
    _require_citus()
    with connection.cursor() as cursor:
        cursor.execute(_PLACEMENT_SQL)
        rows = cursor.fetchall()
    nodes: dict[str, Node | None] = {}
    shards: dict[str, int] = {}
    for schema, node_id, host, port, should_have, active, count in rows:
        if node_id is not None:
            nodes[schema] = Node(node_id, host, port, should_have, active)
        else:
            nodes.setdefault(schema, None)
        shards[schema] = shards.get(schema, 0) + int(count)
    tenants = {
        t.schema_name: t
        for t in Tenant.objects.exclude(schema_name=get_public_schema_name()).only(
            "slug", "schema_name", "status"
        )
    }
    template = getattr(settings, "TENANT_BASE_SCHEMA", None) or None
    order = {"active": 0, "suspended": 0, "spare": 1, "building": 1, "template": 2, "other": 3}
    result = []
    for schema in set(tenants) | set(nodes):
        tenant = tenants.get(schema)
        if tenant is not None:
            kind = str(tenant.status)
        elif schema == template:
            kind = "template"
        else:
            kind = "other"
        result.append(
            SchemaPlacement(
                schema=schema,
                slug=tenant.slug if tenant is not None else None,
                kind=kind,
                distributed=schema in nodes,
                node=nodes.get(schema),
                shards=shards.get(schema, 0),
            )
        )
    result.sort(key=lambda p: (order.get(p.kind, 3), p.slug or "", p.schema))
    return result


def tenant_placement_get(*, schema: str) -> SchemaPlacement | None:
    return next((p for p in tenant_placements() if p.schema == schema), None)


@dataclass(frozen=True)
class NodeHealth:
    """A primary node of the cluster, whether the coordinator reaches it, and how many
    distributed schemas (tenants, spares, the template) it holds."""

    node: Node
    role: str  # "coordinator" or "worker"
    reachable: bool
    schemas: int


# Each primary node, whether the coordinator can connect to it (Citus's own check, a new
# connection each time), and the distributed schemas with a table placed on it.
_HEALTH_SQL = """
SELECT n.nodeid, n.nodename, n.nodeport, n.shouldhaveshards, n.isactive, n.groupid = 0,
       n.isactive AND citus_check_connection_to_node(n.nodename, n.nodeport),
       (SELECT count(DISTINCT s.schemaid) FROM pg_dist_schema s
        JOIN pg_dist_partition p ON p.colocationid = s.colocationid
        JOIN pg_dist_shard sh ON sh.logicalrelid = p.logicalrelid
        JOIN pg_dist_placement pl ON pl.shardid = sh.shardid
        WHERE pl.groupid = n.groupid)
FROM pg_dist_node n
WHERE n.noderole = 'primary'
ORDER BY n.groupid, n.nodeid
"""


def citus_cluster_health(*, connect_timeout_ms: int = 2000) -> list[NodeHealth] | None:
    """The cluster's primary nodes and whether each answers; None on plain PostgreSQL.

    A node that does not answer within `connect_timeout_ms` is unreachable (Citus's own
    timeout is 30 s, too long for a health check)."""
    if not citus_enabled():
        return None
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT set_config('citus.node_connection_timeout', %s, true)",
                       [str(connect_timeout_ms)])
        cursor.execute(_HEALTH_SQL)
        rows = cursor.fetchall()
    return [
        NodeHealth(
            node=Node(node_id, host, port, should_have, active),
            role="coordinator" if is_coordinator else "worker",
            reachable=bool(reachable),
            schemas=int(schemas),
        )
        for node_id, host, port, should_have, active, is_coordinator, reachable, schemas in rows
    ]
