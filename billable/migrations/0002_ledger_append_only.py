"""The database itself refuses UPDATE, DELETE and TRUNCATE of ledger entries.

Citus-safe (docs/scaling.md): on a Citus coordinator the tenant's tables are distributed (schema-based
sharding), where Citus refuses triggers unless `citus.enable_unsafe_triggers` is on, and forwards a
trigger's DDL to the worker as the whole query text it arrived in, which fails when that text holds
more than one statement ("cannot insert multiple commands into a prepared statement"). So the
setting comes first (for this migration's transaction only) and every statement is its own item.
On plain PostgreSQL `citus.enable_unsafe_triggers` is an unknown placeholder setting: setting it
does nothing, and the triggers are the same.
"""

from django.db import migrations

CITUS_UNSAFE_TRIGGERS = "SET LOCAL citus.enable_unsafe_triggers = on"

FORWARD = [
    CITUS_UNSAFE_TRIGGERS,
    """
CREATE FUNCTION billable_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'billable_ledgerentry is append-only (% refused)', TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$
""",
    """
CREATE TRIGGER billable_ledger_no_update_delete
    BEFORE UPDATE OR DELETE ON billable_ledgerentry
    FOR EACH ROW EXECUTE FUNCTION billable_ledger_append_only()
""",
    """
CREATE TRIGGER billable_ledger_no_truncate
    BEFORE TRUNCATE ON billable_ledgerentry
    FOR EACH STATEMENT EXECUTE FUNCTION billable_ledger_append_only()
""",
]

BACKWARD = [
    CITUS_UNSAFE_TRIGGERS,
    "DROP TRIGGER IF EXISTS billable_ledger_no_truncate ON billable_ledgerentry",
    "DROP TRIGGER IF EXISTS billable_ledger_no_update_delete ON billable_ledgerentry",
    "DROP FUNCTION IF EXISTS billable_ledger_append_only()",
]


class Migration(migrations.Migration):
    dependencies = [("billable", "0001_initial")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
