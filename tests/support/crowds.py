"""Big tenants for the console's scale tests: rows written in SQL, without the services."""

from __future__ import annotations

from typing import Any


def insert_customers(cursor: Any, count: int, identities: dict[str, str] | None = None) -> None:
    """`count` customers in the current schema, the newest made a second ago, one a second; for
    each provider in `identities` one identity each, `<prefix>-<n>`, n counting from the oldest."""
    cursor.execute(
        "INSERT INTO billable_customer (id, metadata, created_at)"
        " SELECT gen_random_uuid(), '{}'::jsonb, now() - make_interval(secs => n)"
        " FROM generate_series(1, %s) n",
        [count],
    )
    for provider, prefix in (identities or {}).items():
        cursor.execute(
            "INSERT INTO billable_externalidentity (customer_id, provider, external_id,"
            " created_at) SELECT id, %s, %s || '-' || row_number() OVER (ORDER BY created_at),"
            " now() FROM billable_customer",
            [provider, prefix],
        )
