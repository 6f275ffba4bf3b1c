-- A customer's pending orders counted through their own index entries,
-- whatever the planner's statistics say.
--
-- `hold_orders` counted them with `user_id = … AND status = 'pending'`,
-- which the partial index orders_pending_by_expiry (every pending order of
-- every customer, by expiry) can also serve. Statistics from before a sale
-- say no order is pending, so that index looks empty and cheapest: the
-- planner picked it, and each new order then read every pending order of
-- the sale to find its customer's few — 7.8 ms for 40,000 pending against
-- 0.04 ms by the customer's index, the statement 2.19 ms on average over a
-- flash sale at 4,000 orders/s offered, which fell to 768 orders/s while
-- stock lasted until autovacuum's next analyze (loadtest/README, stop 36).
-- `status IN ('pending', 'paid') AND status <> 'paid'` means the same rows
-- but cannot prove orders_pending_by_expiry's predicate, so only indexes led
-- by user_id can serve it: orders_held_by_customer, whose predicate it is.
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

