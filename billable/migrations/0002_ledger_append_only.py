"""The database itself refuses UPDATE, DELETE and TRUNCATE of ledger entries."""

from django.db import migrations

FORWARD = """
CREATE FUNCTION billable_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'billable_ledgerentry is append-only (% refused)', TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$;
CREATE TRIGGER billable_ledger_no_update_delete
    BEFORE UPDATE OR DELETE ON billable_ledgerentry
    FOR EACH ROW EXECUTE FUNCTION billable_ledger_append_only();
CREATE TRIGGER billable_ledger_no_truncate
    BEFORE TRUNCATE ON billable_ledgerentry
    FOR EACH STATEMENT EXECUTE FUNCTION billable_ledger_append_only();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS billable_ledger_no_truncate ON billable_ledgerentry;
DROP TRIGGER IF EXISTS billable_ledger_no_update_delete ON billable_ledgerentry;
DROP FUNCTION IF EXISTS billable_ledger_append_only();
"""


class Migration(migrations.Migration):
    dependencies = [("billable", "0001_initial")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
