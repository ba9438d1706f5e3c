"""Big tenants for the console's scale tests: rows written in SQL, without the services."""

from __future__ import annotations

from typing import Any


def insert_customers(cursor: Any, count: int) -> None:
    """`count` customers in the current schema, the newest made a second ago, one a second."""
    cursor.execute(
        "INSERT INTO billable_customer (id, metadata, created_at)"
        " SELECT gen_random_uuid(), '{}'::jsonb, now() - make_interval(secs => n)"
        " FROM generate_series(1, %s) n",
        [count],
    )
