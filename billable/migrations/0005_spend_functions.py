"""The spending rules as database functions, one copy per tenant schema.

`billable_spend` locks a customer's usable quantity batches covering a name (or of one product)
in spend order, and when they hold enough, debits them soonest-expiry first with one ledger
entry per batch; when they do not, it writes nothing and says how much there is.
`billable_consume` is a whole consume in one statement: the customer by identity or id, its row
locked (following merges), period or unlimited access, the usage, the spend.

They are the implementation every spending path calls (consume, holds, exchange, a negative
adjustment), through `billable.services.quota`. Unqualified names resolve in the schema the caller names:
`billable_consume` sets the search_path for its own transaction to the schema it is given (the
one it is called in), so it can be called schema-qualified from any connection state in
autocommit, one round trip. The covering rule is `billable.selectors.ledger.COVERS_SQL`'s.
"""

from django.db import migrations

SPEND = """
CREATE FUNCTION billable_spend(
    p_customer uuid, p_key text, p_feature text, p_product bigint, p_amount bigint,
    p_now timestamptz, p_action_type text, p_action_id text, p_actor text,
    p_usage uuid, p_hold uuid, p_at timestamptz, p_metadata jsonb,
    OUT total bigint, OUT entry_ids bigint[], OUT batch_ids uuid[], OUT amounts bigint[]
) LANGUAGE plpgsql AS $$
DECLARE
    lot record;
    lot_ids uuid[] := '{}';
    lot_left bigint[] := '{}';
    left_to_take bigint;
    take bigint;
    take_ids uuid[] := '{}';
    take_amounts bigint[] := '{}';
BEGIN
    total := 0;
    -- The fixed lock order: soonest expiry first (never-expiring last), then oldest.
    IF p_product IS NOT NULL THEN
        FOR lot IN
            SELECT b.id, b.remaining
            FROM billable_quotabatch b JOIN billable_product p ON p.id = b.product_id
            WHERE b.customer_id = p_customer AND b.state = 'active' AND b.remaining > 0
              AND b.valid_from <= p_now AND (b.expires_at IS NULL OR b.expires_at > p_now)
              AND p.product_type = 'quantity' AND p.id = p_product
            ORDER BY b.expires_at ASC NULLS LAST, b.created_at ASC, b.id ASC
            FOR UPDATE OF b
        LOOP
            lot_ids := lot_ids || lot.id;
            lot_left := lot_left || lot.remaining;
            total := total + lot.remaining;
        END LOOP;
    ELSE
        FOR lot IN
            SELECT b.id, b.remaining
            FROM billable_quotabatch b JOIN billable_product p ON p.id = b.product_id
            WHERE b.customer_id = p_customer AND b.state = 'active' AND b.remaining > 0
              AND b.valid_from <= p_now AND (b.expires_at IS NULL OR b.expires_at > p_now)
              AND p.product_type = 'quantity'
              AND (p.key = p_key OR p.features @> ARRAY[p_feature]::varchar(64)[])
            ORDER BY b.expires_at ASC NULLS LAST, b.created_at ASC, b.id ASC
            FOR UPDATE OF b
        LOOP
            lot_ids := lot_ids || lot.id;
            lot_left := lot_left || lot.remaining;
            total := total + lot.remaining;
        END LOOP;
    END IF;
    entry_ids := '{}';
    batch_ids := '{}';
    amounts := '{}';
    IF total < p_amount THEN
        RETURN;  -- nothing written: the caller answers 402 with `total`
    END IF;
    left_to_take := p_amount;
    FOR i IN 1 .. coalesce(array_length(lot_ids, 1), 0) LOOP
        EXIT WHEN left_to_take <= 0;
        take := least(lot_left[i], left_to_take);
        take_ids := take_ids || lot_ids[i];
        take_amounts := take_amounts || take;
        left_to_take := left_to_take - take;
    END LOOP;
    WITH applied AS (
        UPDATE billable_quotabatch AS b
        SET remaining = b.remaining - v.amount,
            state = CASE WHEN b.remaining - v.amount = 0 THEN 'exhausted' ELSE b.state END
        FROM unnest(take_ids, take_amounts) AS v(id, amount)
        WHERE b.id = v.id
        RETURNING b.id
    ), entries AS (
        INSERT INTO billable_ledgerentry
            (batch_id, direction, amount, action_type, action_id, actor, usage_id, hold_id,
             metadata, created_at)
        SELECT v.id, 'debit', v.amount, p_action_type, p_action_id, p_actor, p_usage, p_hold,
               p_metadata, p_at
        FROM unnest(take_ids, take_amounts) WITH ORDINALITY AS v(id, amount, n)
        ORDER BY v.n
        RETURNING id, batch_id, amount
    )
    SELECT array_agg(e.id ORDER BY e.id), array_agg(e.batch_id ORDER BY e.id),
           array_agg(e.amount ORDER BY e.id)
    INTO entry_ids, batch_ids, amounts
    FROM entries e;
END;
$$;
"""

CONSUME = """
CREATE FUNCTION billable_consume(
    p_schema text, p_customer uuid, p_provider text, p_external_id text,
    p_feature_name text, p_key text, p_feature text, p_amount bigint, p_now timestamptz,
    p_action_type text, p_action_id text, p_actor text, p_metadata jsonb, p_usage uuid,
    OUT outcome text, OUT customer_id uuid, OUT total bigint, OUT created_at timestamptz,
    OUT entry_ids bigint[], OUT batch_ids uuid[], OUT amounts bigint[]
) LANGUAGE plpgsql AS $$
DECLARE
    acting uuid;
    merged uuid;
    seen uuid[];
    spent record;
BEGIN
    PERFORM set_config('search_path', quote_ident(p_schema) || ', public', true);
    created_at := clock_timestamp();
    acting := p_customer;
    IF acting IS NULL THEN
        SELECT i.customer_id INTO acting FROM billable_externalidentity i
        WHERE i.provider = p_provider AND i.external_id = p_external_id;
        IF acting IS NULL THEN
            -- Nobody holds the identity: nothing can cover the use, and nothing is written.
            outcome := 'short';
            total := 0;
            RETURN;
        END IF;
    END IF;
    -- The customer's row first (FOR KEY SHARE: spenders do not wait for each other, a merge
    -- waits for them all); a merge that committed meanwhile moved everything on.
    seen := ARRAY[acting];
    LOOP
        SELECT c.merged_into_id INTO merged FROM billable_customer c
        WHERE c.id = acting FOR KEY SHARE;
        EXIT WHEN merged IS NULL OR merged = ANY(seen);
        acting := merged;
        seen := seen || merged;
    END LOOP;
    customer_id := acting;
    IF EXISTS (
        SELECT 1 FROM billable_quotabatch b JOIN billable_product p ON p.id = b.product_id
        WHERE b.customer_id = acting AND b.state = 'active' AND b.valid_from <= p_now
          AND (b.expires_at IS NULL OR b.expires_at > p_now)
          AND p.product_type <> 'quantity'
          AND (p.key = p_key OR p.features @> ARRAY[p_feature]::varchar(64)[])
    ) THEN
        outcome := 'unlimited';
    ELSE
        SELECT * INTO spent FROM billable_spend(
            acting, p_key, p_feature, NULL, p_amount, p_now, p_action_type, p_action_id,
            p_actor, p_usage, NULL, created_at, '{}'::jsonb);
        total := spent.total;
        IF spent.total < p_amount THEN
            outcome := 'short';
            RETURN;
        END IF;
        outcome := 'spent';
        entry_ids := spent.entry_ids;
        batch_ids := spent.batch_ids;
        amounts := spent.amounts;
    END IF;
    INSERT INTO billable_usage
        (id, customer_id, feature, amount, action_type, action_id, metadata, created_at)
    VALUES (p_usage, acting, p_feature_name, p_amount, p_action_type, p_action_id,
            p_metadata, created_at);
END;
$$;
"""

BACKWARD = """
DROP FUNCTION IF EXISTS billable_consume(
    text, uuid, text, text, text, text, text, bigint, timestamptz, text, text, text, jsonb, uuid);
DROP FUNCTION IF EXISTS billable_spend(
    uuid, text, text, bigint, bigint, timestamptz, text, text, text, uuid, uuid, timestamptz, jsonb);
"""


class Migration(migrations.Migration):
    dependencies = [("billable", "0004_idempotency_customer_ids")]

    operations = [migrations.RunSQL([SPEND, CONSUME], BACKWARD)]
