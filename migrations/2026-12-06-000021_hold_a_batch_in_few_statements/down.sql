ALTER TABLE orders ALTER COLUMN user_id RESET (n_distinct);

-- hold_orders as migration `pending_count_by_customer` made it.
CREATE OR REPLACE FUNCTION hold_orders(p_orders uuid[], p_users uuid[], p_events uuid[], p_status text, p_currencies text[],
                            p_total_units bigint[], p_total_nanos integer[], p_idempotency_keys text[],
                            p_request_digests text[], p_expire_times timestamptz[], p_created_at timestamptz[],
                            p_line_ends integer[], p_categories uuid[], p_quantities integer[],
                            p_unit_units bigint[], p_unit_nanos integer[], p_start integer, p_exact boolean,
                            p_max_pending integer, p_customer_limits integer[])
RETURNS TABLE (out_index integer, out_outcome text, out_short_category uuid, out_held integer)
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    v_count integer := coalesce(array_length(p_orders, 1), 0);
    v_busy boolean[] := array_fill(false, ARRAY[v_count]);
    v_pending integer[] := array_fill(0, ARRAY[v_count]);
    v_held integer[] := array_fill(0, ARRAY[v_count]);
    -- Per customer, what this batch has held so far: orders and tickets.
    v_batch_orders jsonb := '{}';
    v_batch_tickets jsonb := '{}';
    v_first integer := 1;
    v_last integer;
    v_quantity integer;
    v_before integer;
    v_contended boolean := false;
BEGIN
    -- One customer's holds one at a time (a transaction-scoped advisory
    -- lock: no row written, nothing for another customer to wait on), so two
    -- concurrent orders cannot both see the last free place. The fast pass
    -- waits for no lock (batches taking customers' locks in arrival order
    -- could deadlock): a customer busy elsewhere is CUSTOMER_BUSY — that
    -- order alone, not the rest of its batch — and the exact pass, one order
    -- alone, waits its turn. Limits of 0 are no limits: no lock, no count.
    FOR i IN 1 .. v_count LOOP
        CONTINUE WHEN p_max_pending <= 0 AND p_customer_limits[i] <= 0;
        IF p_exact THEN
            PERFORM pg_advisory_xact_lock(hashtextextended(p_users[i]::text, 20261203));
        ELSIF NOT pg_try_advisory_xact_lock(hashtextextended(p_users[i]::text, 20261203)) THEN
            v_busy[i] := true;
            CONTINUE;
        END IF;
        -- Counting stops at the cap: at most that many index entries are read.
        IF p_max_pending > 0 THEN
            -- Not `status = 'pending'`: that would let the planner read
            -- every pending order of the sale (orders_pending_by_expiry)
            -- when its statistics predate the sale. See the header.
            SELECT count(*) INTO v_before
              FROM (SELECT FROM orders
                     WHERE user_id = p_users[i] AND status IN ('pending', 'paid') AND status <> 'paid'
                     LIMIT p_max_pending) AS pending;
            v_pending[i] := v_before;
        END IF;
        IF p_customer_limits[i] > 0 THEN
            SELECT coalesce(sum(item.quantity), 0) INTO v_before
              FROM orders o JOIN order_items item ON item.order_id = o.id
             WHERE o.user_id = p_users[i] AND o.event_id = p_events[i] AND o.status IN ('pending', 'paid');
            v_held[i] := v_before;
        END IF;
    END LOOP;

    FOR i IN 1 .. v_count LOOP
        out_index := i;
        out_short_category := NULL;
        out_held := NULL;
        v_last := p_line_ends[i];
        SELECT sum(q) INTO v_quantity FROM unnest(p_quantities[v_first:v_last]) AS q;
        IF v_contended THEN
            out_outcome := 'CONTENDED';
        ELSIF v_busy[i] THEN
            out_outcome := 'CUSTOMER_BUSY';
        ELSIF p_max_pending > 0
              AND v_pending[i] + coalesce((v_batch_orders ->> p_users[i]::text)::integer, 0) >= p_max_pending THEN
            out_outcome := 'PENDING_LIMIT';
        ELSIF p_customer_limits[i] > 0
              AND v_held[i] + coalesce((v_batch_tickets ->> p_users[i]::text)::integer, 0) + v_quantity
                  > p_customer_limits[i] THEN
            out_outcome := 'CUSTOMER_LIMIT';
            out_held := v_held[i] + coalesce((v_batch_tickets ->> p_users[i]::text)::integer, 0);
        ELSE
            SELECT t.outcome, t.short_category INTO out_outcome, out_short_category
              FROM take_tickets(p_categories[v_first:v_last], p_quantities[v_first:v_last], p_start, p_exact) AS t;
            v_contended := out_outcome = 'CONTENDED';
            IF out_outcome = 'TAKEN' THEN
                INSERT INTO orders (id, user_id, event_id, status, currency_code, total_units, total_nanos,
                                    idempotency_key, request_digest, expire_time, created_at, updated_at)
                VALUES (p_orders[i], p_users[i], p_events[i], p_status, p_currencies[i], p_total_units[i],
                        p_total_nanos[i], p_idempotency_keys[i], p_request_digests[i], p_expire_times[i],
                        p_created_at[i], p_created_at[i]);
                INSERT INTO order_items (order_id, ticket_category_id, quantity, unit_price_units, unit_price_nanos)
                SELECT p_orders[i], item.*
                  FROM unnest(p_categories[v_first:v_last], p_quantities[v_first:v_last],
                              p_unit_units[v_first:v_last], p_unit_nanos[v_first:v_last]) AS item;
                out_outcome := 'HELD';
                v_before := coalesce((v_batch_orders ->> p_users[i]::text)::integer, 0);
                v_batch_orders := v_batch_orders || jsonb_build_object(p_users[i]::text, v_before + 1);
                v_before := coalesce((v_batch_tickets ->> p_users[i]::text)::integer, 0);
                v_batch_tickets := v_batch_tickets || jsonb_build_object(p_users[i]::text, v_before + v_quantity);
            END IF;
        END IF;
        v_first := v_last + 1;
        RETURN NEXT;
    END LOOP;
END
$$;


-- take_tickets as migration `hold_in_one_call` made it.
CREATE OR REPLACE FUNCTION take_tickets(p_categories uuid[], p_quantities integer[], p_start integer, p_exact boolean,
                             OUT outcome text, OUT short_category uuid)
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    v_categories uuid[];
    v_quantities integer[];
    v_picked smallint[] := '{}';
    v_bucket smallint;
    v_room bigint;
    v_needed integer;
    v_take integer;
    v_free record;
BEGIN
    -- One line per category, in id order.
    SELECT array_agg(l.category ORDER BY l.category), array_agg(l.quantity ORDER BY l.category)
      INTO v_categories, v_quantities
      FROM (SELECT category, sum(quantity)::integer AS quantity
              FROM unnest(p_categories, p_quantities) AS u(category, quantity) GROUP BY category) AS l;

    FOR i IN 1 .. coalesce(array_length(v_categories, 1), 0) LOOP
        IF p_exact THEN
            SELECT coalesce(sum(b.capacity - b.held), 0) INTO v_room
              FROM (SELECT capacity, held FROM inventory_buckets
                     WHERE ticket_category_id = v_categories[i] ORDER BY bucket FOR UPDATE) AS b;
            IF v_room < v_quantities[i] THEN
                outcome := 'SOLD_OUT';
                short_category := v_categories[i];
                RETURN;
            END IF;
        ELSE
            v_bucket := NULL;
            FOR attempt IN 1 .. 4 LOOP
                SELECT b.bucket INTO v_bucket FROM inventory_buckets AS b
                 WHERE b.ticket_category_id = v_categories[i] AND b.capacity - b.held >= v_quantities[i]
                 ORDER BY b.bucket < p_start, b.bucket
                 LIMIT 1 FOR UPDATE SKIP LOCKED;
                EXIT WHEN v_bucket IS NOT NULL OR attempt = 4;
                -- A busy bucket is held for about one commit.
                PERFORM pg_sleep(0.001 * attempt);
            END LOOP;
            IF v_bucket IS NULL THEN
                outcome := 'CONTENDED';
                short_category := v_categories[i];
                RETURN;
            END IF;
            v_picked := v_picked || v_bucket;
        END IF;
    END LOOP;

    FOR i IN 1 .. coalesce(array_length(v_categories, 1), 0) LOOP
        IF p_exact THEN
            v_needed := v_quantities[i];
            FOR v_free IN SELECT bucket, capacity - held AS room FROM inventory_buckets
                           WHERE ticket_category_id = v_categories[i] AND held < capacity ORDER BY bucket LOOP
                v_take := least(v_needed, v_free.room);
                UPDATE inventory_buckets SET held = held + v_take
                 WHERE ticket_category_id = v_categories[i] AND bucket = v_free.bucket;
                v_needed := v_needed - v_take;
                EXIT WHEN v_needed = 0;
            END LOOP;
        ELSE
            UPDATE inventory_buckets SET held = held + v_quantities[i]
             WHERE ticket_category_id = v_categories[i] AND bucket = v_picked[i];
        END IF;
    END LOOP;
    outcome := 'TAKEN';
END
$$;
