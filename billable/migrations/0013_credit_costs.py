"""Credit costs: a quantity product prices some of its features in its own units.

`Product.credit_costs` maps a feature to the units (credits) one unit of it costs, from that
product's batches. The spend functions of `0005_spend_functions` are replaced by versions that
count a feature's units product by product: a product holding T credits at cost c gives
floor(T / c) units, a unit is never split between two products, and credits within one product
are interchangeable, taken soonest-expiring batch first. Without a cost (or at cost 1) they
spend exactly as before. Each debit at a cost says so in its metadata (`unit_cost`, `feature`);
a usage records the credits it took (`Usage.credits`).

Each SQL statement is its own `RunSQL` item.
"""

from importlib import import_module

from django.db import migrations, models

PREVIOUS = import_module("billable.migrations.0005_spend_functions")

DROP_CONSUME = """
DROP FUNCTION IF EXISTS billable_consume(
    text, uuid, text, text, text, text, text, bigint, timestamptz, text, text, text, jsonb, uuid)
"""
DROP_SPEND = """
DROP FUNCTION IF EXISTS billable_spend(
    uuid, text, text, bigint, bigint, timestamptz, text, text, text, uuid, uuid, timestamptz, jsonb)
"""

SPEND = """
CREATE FUNCTION billable_spend(
    p_customer uuid, p_key text, p_feature text, p_product bigint, p_amount bigint,
    p_now timestamptz, p_action_type text, p_action_id text, p_actor text,
    p_usage uuid, p_hold uuid, p_at timestamptz, p_metadata jsonb,
    OUT total bigint, OUT entry_ids bigint[], OUT batch_ids uuid[], OUT amounts bigint[],
    OUT pool_credits bigint
) LANGUAGE plpgsql AS $$
DECLARE
    lot record;
    lot_ids uuid[] := '{}';
    lot_left bigint[] := '{}';
    lot_product bigint[] := '{}';
    lot_cost bigint[] := '{}';
    costed boolean := false;
    pools bigint[] := '{}';
    pool_cost bigint[] := '{}';
    pool_sum bigint[] := '{}';
    pool_open bigint[] := '{}';
    j int;
    c bigint;
    need bigint;
    take bigint;
    back bigint;
    take_ids uuid[] := '{}';
    take_amounts bigint[] := '{}';
    take_product bigint[] := '{}';
    take_cost bigint[] := '{}';
BEGIN
    total := 0;
    pool_credits := NULL;
    -- The fixed lock order: soonest expiry first (never-expiring last), then oldest. The cost
    -- of a unit from a batch: 1 for its product's own key or a product spent directly,
    -- otherwise its product's credit cost of the feature (NULL when it has none: 1).
    FOR lot IN
        SELECT b.id, b.remaining, b.product_id,
               CASE WHEN p_product IS NOT NULL OR p.key = p_key THEN NULL
                    ELSE (p.credit_costs ->> p_feature)::bigint END AS cost
        FROM billable_quotabatch b JOIN billable_product p ON p.id = b.product_id
        WHERE b.customer_id = p_customer AND b.state = 'active' AND b.remaining > 0
          AND b.valid_from <= p_now AND (b.expires_at IS NULL OR b.expires_at > p_now)
          AND p.product_type = 'quantity'
          AND (CASE WHEN p_product IS NOT NULL THEN p.id = p_product
                    ELSE (p.key = p_key OR p.features @> ARRAY[p_feature]::varchar(64)[]) END)
        ORDER BY b.expires_at ASC NULLS LAST, b.created_at ASC, b.id ASC
        FOR UPDATE OF b
    LOOP
        lot_ids := lot_ids || lot.id;
        lot_left := lot_left || lot.remaining;
        lot_product := lot_product || lot.product_id;
        lot_cost := lot_cost || lot.cost;
        IF lot.cost IS NOT NULL THEN
            costed := true;
            pool_credits := coalesce(pool_credits, 0) + lot.remaining;
        END IF;
        IF lot.cost IS NULL OR lot.cost = 1 THEN
            total := total + lot.remaining;
        ELSE
            j := array_position(pools, lot.product_id);
            IF j IS NULL THEN
                pools := pools || lot.product_id;
                pool_cost := pool_cost || lot.cost;
                pool_sum := pool_sum || 0::bigint;
                pool_open := pool_open || 0::bigint;
                j := array_length(pools, 1);
            END IF;
            pool_sum[j] := pool_sum[j] + lot.remaining;
        END IF;
    END LOOP;
    FOR k IN 1 .. coalesce(array_length(pools, 1), 0) LOOP
        total := total + pool_sum[k] / pool_cost[k];
    END LOOP;
    entry_ids := '{}';
    batch_ids := '{}';
    amounts := '{}';
    IF total < p_amount THEN
        RETURN;  -- nothing written: the caller answers 402 with `total`
    END IF;
    -- `need`: units still to pay. A batch at cost c gives credits toward whole units of its
    -- product; credits given toward a unit that another product finished paying go back.
    need := p_amount;
    FOR i IN 1 .. coalesce(array_length(lot_ids, 1), 0) LOOP
        EXIT WHEN need <= 0;
        c := coalesce(lot_cost[i], 1);
        IF c = 1 THEN
            take := least(lot_left[i], need);
            need := need - take;
        ELSE
            j := array_position(pools, lot_product[i]);
            -- in numeric: `need * c` may pass bigint (10^12 units at a cost of 10^9)
            take := least(lot_left[i]::numeric, need::numeric * c - pool_open[j])::bigint;
            need := need - (pool_open[j] + take) / c;
            pool_open[j] := (pool_open[j] + take) % c;
        END IF;
        IF take > 0 THEN
            take_ids := take_ids || lot_ids[i];
            take_amounts := take_amounts || take;
            take_product := take_product || lot_product[i];
            take_cost := take_cost || lot_cost[i];
        END IF;
    END LOOP;
    FOR k IN 1 .. coalesce(array_length(pools, 1), 0) LOOP
        back := pool_open[k];
        FOR i IN REVERSE coalesce(array_length(take_ids, 1), 0) .. 1 LOOP
            EXIT WHEN back <= 0;
            IF take_product[i] = pools[k] AND take_amounts[i] > 0 THEN
                c := least(take_amounts[i], back);
                take_amounts[i] := take_amounts[i] - c;
                back := back - c;
            END IF;
        END LOOP;
    END LOOP;
    IF costed THEN
        SELECT coalesce(array_agg(v.id ORDER BY v.n), '{}'),
               coalesce(array_agg(v.amount ORDER BY v.n), '{}'),
               coalesce(array_agg(v.cost ORDER BY v.n), '{}')
        INTO take_ids, take_amounts, take_cost
        FROM unnest(take_ids, take_amounts, take_cost) WITH ORDINALITY AS v(id, amount, cost, n)
        WHERE v.amount > 0;
        SELECT pool_credits - coalesce(sum(v.amount), 0) INTO pool_credits
        FROM unnest(take_amounts, take_cost) AS v(amount, cost) WHERE v.cost IS NOT NULL;
    END IF;
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
               CASE WHEN v.cost IS NULL THEN p_metadata
                    ELSE p_metadata || jsonb_build_object('feature', p_feature,
                                                          'unit_cost', v.cost) END,
               p_at
        FROM unnest(take_ids, take_amounts, take_cost) WITH ORDINALITY AS v(id, amount, cost, n)
        ORDER BY v.n
        RETURNING id, batch_id, amount
    )
    SELECT array_agg(e.id ORDER BY e.id), array_agg(e.batch_id ORDER BY e.id),
           array_agg(e.amount ORDER BY e.id)
    INTO entry_ids, batch_ids, amounts
    FROM entries e;
END;
$$
"""

CONSUME = """
CREATE FUNCTION billable_consume(
    p_schema text, p_customer uuid, p_provider text, p_external_id text,
    p_feature_name text, p_key text, p_feature text, p_amount bigint, p_now timestamptz,
    p_action_type text, p_action_id text, p_actor text, p_metadata jsonb, p_usage uuid,
    OUT outcome text, OUT customer_id uuid, OUT total bigint, OUT created_at timestamptz,
    OUT entry_ids bigint[], OUT batch_ids uuid[], OUT amounts bigint[], OUT credits bigint,
    OUT pool_credits bigint
) LANGUAGE plpgsql AS $$
DECLARE
    acting uuid;
    merged uuid;
    seen uuid[];
    spent record;
BEGIN
    PERFORM set_config('search_path', quote_ident(p_schema) || ', public', true);
    created_at := clock_timestamp();
    credits := 0;
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
        pool_credits := spent.pool_credits;
        IF spent.total < p_amount THEN
            outcome := 'short';
            RETURN;
        END IF;
        outcome := 'spent';
        entry_ids := spent.entry_ids;
        batch_ids := spent.batch_ids;
        amounts := spent.amounts;
        SELECT coalesce(sum(a), 0) INTO credits FROM unnest(spent.amounts) AS a;
    END IF;
    INSERT INTO billable_usage
        (id, customer_id, feature, amount, credits, action_type, action_id, metadata, created_at)
    VALUES (p_usage, acting, p_feature_name, p_amount, credits, p_action_type, p_action_id,
            p_metadata, created_at);
END;
$$
"""


BACKFILL_CREDITS = """
UPDATE billable_usage u SET credits = u.amount
WHERE EXISTS (SELECT 1 FROM billable_ledgerentry e WHERE e.usage_id = u.id)
   OR EXISTS (SELECT 1 FROM billable_hold h WHERE h.usage_id = u.id AND NOT h.unmetered)
"""


class Migration(migrations.Migration):
    dependencies = [("billable", "0012_currencies")]

    operations = [
        migrations.AddField(
            model_name="product",
            name="credit_costs",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.AddField(
            model_name="usage",
            name="credits",
            field=models.BigIntegerField(default=0),
        ),
        # Usages written before costs took from batches exactly their amount, when metered.
        migrations.RunSQL(BACKFILL_CREDITS, migrations.RunSQL.noop),
        migrations.AddIndex(
            model_name="usage",
            index=models.Index(
                fields=["customer", "-created_at", "-id"], name="usage_customer_recent"
            ),
        ),
        migrations.RunSQL(DROP_CONSUME, PREVIOUS.CONSUME),
        migrations.RunSQL(DROP_SPEND, PREVIOUS.SPEND),
        migrations.RunSQL(SPEND, DROP_SPEND),
        migrations.RunSQL(CONSUME, DROP_CONSUME),
    ]
