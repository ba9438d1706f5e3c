"""The can-use check of one name in one statement: `balance_check`.

Every end user of a tenant asks it before every action, so it costs one round trip and no
transaction: one schema-qualified statement (no `SET search_path` first) resolves the customer
reference, following merges, and adds up the live batches covering the name with the fragments
that define a usable batch and a covering product (`billable.selectors.ledger`). The answer is
`balance_get(customer=customer_find(ref), feature=name)`'s; a reference that `customer_find`
refuses (an unknown id, an identity of another customer) is handed to it, so those errors keep
their one definition.

The statement is prepared on each connection the first time it runs there (one per tenant
schema): later checks skip parsing and planning, which cost the database several times what
executing it does.
"""

from __future__ import annotations

from functools import lru_cache

from billable import clock
from billable.results import Balance
from billable.selectors.customers import CustomerRef, customer_find, normalise_external_id
from billable.selectors.ids import uuid_or_none
from billable.selectors.ledger import (
    COST_SQL,
    COVERS_SQL,
    LIVE_SQL,
    PRICED_SQL,
    STARTED_SQL,
    balance_from_parts,
    balance_get,
    cover_params,
    units_from_pools,
    unknown_balance,
)
from billing_platform.core.db import qualified_cursor, quoted_schema

# Parameters, in order: customer id (text or null), provider, external id (text or null) twice,
# now three times (two `STARTED_SQL`, one `LIVE_SQL`), `cover_params(name)`; for the pools,
# `cover_params(name)` twice (cost, priced), now twice (live, started) and `cover_params(name)`.
# Every value is sent as text or null, or as a timestamp, so one prepared statement serves every
# reference.
# `chain` follows `merged_into` from the customer id and, like `customer_by_id`, stops at the
# customer that was not merged or at the first it meets twice.
_BALANCE_SQL = """
WITH RECURSIVE chain (id, merged_into_id, depth, path, repeated) AS (
    SELECT c.id, c.merged_into_id, 1, ARRAY[c.id], false
    FROM {schema}.billable_customer c WHERE c.id = %s::uuid
  UNION ALL
    SELECT c.id, c.merged_into_id, chain.depth + 1, chain.path || c.id, c.id = ANY(chain.path)
    FROM chain JOIN {schema}.billable_customer c ON c.id = chain.merged_into_id
    WHERE NOT chain.repeated
),
by_id AS (
    SELECT id FROM chain WHERE merged_into_id IS NULL OR repeated ORDER BY depth LIMIT 1
),
by_identity AS (
    SELECT i.customer_id AS id FROM {schema}.billable_externalidentity i
    WHERE i.provider = %s::text AND i.external_id = %s::text
),
target AS (
    SELECT CASE WHEN %s::text IS NULL THEN (SELECT id FROM by_id)
                ELSE (SELECT id FROM by_identity) END AS id
)
SELECT (SELECT id FROM by_id), (SELECT id FROM by_identity), t.id, live.*, pools.*
FROM target t, LATERAL (
    SELECT COALESCE(bool_or(p.product_type = 'unlimited' AND {started}), false),
           COALESCE(bool_or(p.product_type <> 'quantity' AND {started}), false),
           array_agg(b.valid_from) FILTER (WHERE p.product_type <> 'quantity'),
           array_agg(b.expires_at) FILTER (WHERE p.product_type <> 'quantity')
    FROM {schema}.billable_quotabatch b JOIN {schema}.billable_product p ON p.id = b.product_id
    WHERE b.customer_id = t.id AND {live} AND {covers}
) live, LATERAL (
    SELECT array_agg(g.key), array_agg(g.cost), array_agg(g.priced), array_agg(g.credits)
    FROM (
        SELECT p.key, {cost} AS cost, {priced} AS priced, SUM(b.remaining)::bigint AS credits
        FROM {schema}.billable_quotabatch b
        JOIN {schema}.billable_product p ON p.id = b.product_id
        WHERE b.customer_id = t.id AND p.product_type = 'quantity' AND {live} AND {started}
          AND {covers}
        GROUP BY p.id
    ) g
) pools
"""


@lru_cache(maxsize=1024)
def _statement(schema_name: str) -> str:
    return _BALANCE_SQL.format(
        schema=quoted_schema(schema_name), started=STARTED_SQL, live=LIVE_SQL, covers=COVERS_SQL,
        cost=COST_SQL, priced=PRICED_SQL,
    )


def balance_check(*, schema_name: str, ref: CustomerRef, feature: str) -> Balance:
    """The balance of one name for the customer `ref` names, in that tenant schema.

    Raises what `customer_find` raises: CustomerNotFound (404) for an unknown id,
    CustomerMismatch (422) when the id and the identity name different customers.
    """
    key = uuid_or_none(ref.customer_id) if ref.customer_id else None
    blank_identity = ref.external_id is not None and not ref.external_id.strip()
    if (ref.customer_id and key is None) or blank_identity:
        return _balance_by_selectors(ref, feature)
    external_id = normalise_external_id(ref.external_id) if ref.external_id is not None else None
    now = clock.now()
    with qualified_cursor(prepared=True) as cursor:
        cursor.execute(
            _statement(schema_name),
            [
                str(key) if key is not None else None,
                ref.provider,
                external_id,
                external_id,
                now,
                now,
                now,
                *cover_params(feature),
                *cover_params(feature),
                *cover_params(feature),
                now,
                now,
                *cover_params(feature),
            ],
        )
        (by_id, by_identity, customer_id, unlimited, access, starts, ends, keys, costs, priced,
         credits) = cursor.fetchone()
    if ref.customer_id and (by_id is None or (external_id is not None and by_identity != by_id)):
        return _balance_by_selectors(ref, feature)
    if customer_id is None:
        return unknown_balance(feature)
    remaining, pools = units_from_pools(
        list(zip(keys or [], costs or [], priced or [], credits or [], strict=True))
    )
    return balance_from_parts(
        customer_id,
        feature,
        remaining=remaining,
        credit_pools=pools,
        unlimited=unlimited,
        access=access,
        segments=list(zip(starts or [], ends or [], strict=True)),
        now=now,
    )


def _balance_by_selectors(ref: CustomerRef, feature: str) -> Balance:
    """The selectors' answer, in the active schema (the tenant's, for an API request)."""
    return balance_get(customer=customer_find(ref), feature=feature)
