"""The shape of a PostgreSQL schema, read from the catalogs, with its own name taken out.

Two schemas with equal shapes have the same tables, columns, constraints (deferrability
included), indexes, triggers, functions, sequences (and their positions) and recorded migrations.
"""

from __future__ import annotations

from typing import Any

from django.db import connection

_QUERIES: dict[str, str] = {
    "tables": """
        SELECT table_name, table_type FROM information_schema.tables
        WHERE table_schema = %(s)s ORDER BY 1""",
    "columns": """
        SELECT table_name, column_name, ordinal_position, data_type, udt_name,
               character_maximum_length, numeric_precision, numeric_scale, is_nullable,
               column_default, is_identity, identity_generation, identity_start,
               identity_increment, is_generated, generation_expression, collation_name
        FROM information_schema.columns WHERE table_schema = %(s)s ORDER BY 1, 3""",
    "constraints": """
        SELECT cl.relname, co.conname, co.contype, co.condeferrable, co.condeferred,
               co.convalidated, pg_get_constraintdef(co.oid, true)
        FROM pg_constraint co JOIN pg_class cl ON cl.oid = co.conrelid
        JOIN pg_namespace n ON n.oid = cl.relnamespace WHERE n.nspname = %(s)s ORDER BY 1, 2""",
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname = %(s)s ORDER BY 1, 2""",
    "triggers": """
        SELECT cl.relname, t.tgname, t.tgenabled, pg_get_triggerdef(t.oid, true)
        FROM pg_trigger t JOIN pg_class cl ON cl.oid = t.tgrelid
        JOIN pg_namespace n ON n.oid = cl.relnamespace
        WHERE n.nspname = %(s)s AND NOT t.tgisinternal ORDER BY 1, 2""",
    "functions": """
        SELECT p.proname, pg_get_function_identity_arguments(p.oid), pg_get_functiondef(p.oid)
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = %(s)s ORDER BY 1, 2""",
    "sequences": """
        SELECT s.sequencename, s.data_type::text, s.start_value, s.increment_by, s.min_value,
               s.max_value, s.cycle, s.last_value, d.deptype, dc.relname, a.attname
        FROM pg_sequences s
        JOIN pg_namespace n ON n.nspname = s.schemaname
        JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = s.sequencename
        LEFT JOIN pg_depend d ON d.objid = c.oid AND d.classid = 'pg_class'::regclass
             AND d.refclassid = 'pg_class'::regclass
        LEFT JOIN pg_class dc ON dc.oid = d.refobjid
        LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
        WHERE s.schemaname = %(s)s ORDER BY 1""",
    "views": """
        SELECT viewname, definition FROM pg_views WHERE schemaname = %(s)s ORDER BY 1""",
    "types": """
        SELECT t.typname, t.typtype FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE n.nspname = %(s)s AND t.typtype NOT IN ('c', 'b') ORDER BY 1""",
}


def _scrub(value: Any, schema: str) -> Any:
    if isinstance(value, str):
        return value.replace(f'"{schema}".', "<schema>.").replace(f"{schema}.", "<schema>.")
    return value


def schema_shape(schema: str) -> dict[str, list[tuple[Any, ...]]]:
    """Everything a migration run leaves in `schema`, comparable across schema names."""
    shape: dict[str, list[tuple[Any, ...]]] = {}
    with connection.cursor() as cursor:
        for part, sql in _QUERIES.items():
            cursor.execute(sql, {"s": schema})
            shape[part] = [tuple(_scrub(v, schema) for v in row) for row in cursor.fetchall()]
        cursor.execute(f'SELECT app, name FROM "{schema}".django_migrations ORDER BY app, name')
        shape["django_migrations"] = list(cursor.fetchall())
    return shape
