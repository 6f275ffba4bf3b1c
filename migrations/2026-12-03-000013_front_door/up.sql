-- The on-sale front door's settings on the event, and the per-customer
-- ticket limit in the hold itself.
--
-- max_tickets_per_customer: the tickets one customer holds for the event
-- across PENDING and PAID orders (0: the default, 10 — the service passes
-- the effective limit). Counted inside `hold_orders` under the customer's
-- advisory lock, in the same statement as the hold: 50 concurrent orders of
-- one account over several replicas cannot pass it together. A refused
-- order writes nothing: CUSTOMER_LIMIT, with the tickets already held.
--
-- The waiting room's settings (API.md "On-sale front door"); its queue
-- lives in Redis.
ALTER TABLE events
    ADD COLUMN max_tickets_per_customer integer NOT NULL DEFAULT 0
        CHECK (max_tickets_per_customer >= 0),
    -- {enabled, admitPerMinute, admissionMinutes, maxActiveBuyers,
    -- challengeDifficulty}: one document, read and written whole with the
    -- event (the domain validates it); NULL is a room never set up.
    ADD COLUMN waiting_room jsonb;
-- The worker's every tick: the events whose room admits now.
CREATE INDEX events_open_waiting_rooms ON events (sales_end_time)
    WHERE (waiting_room->>'enabled')::boolean AND status = 'published';

-- One index serves both counts (a customer's pending orders; the tickets of
-- their live orders for one event) in place of the pending-only one.
CREATE INDEX orders_held_by_customer ON orders (user_id, event_id, status) WHERE status IN ('pending', 'paid');
DROP INDEX orders_pending_by_user;

DROP FUNCTION hold_orders(uuid[], uuid[], uuid[], text, text[], bigint[], integer[], text[], text[], timestamptz[], timestamptz[], integer[], uuid[], integer[], bigint[], integer[], integer, boolean, integer);
DROP FUNCTION hold_order(uuid, uuid, uuid, text, text, bigint, integer, text, text, timestamptz, timestamptz, uuid[], integer[], bigint[], integer[], integer, boolean, integer);

-- Holds a batch of new orders, each all or nothing (`hold_order` is folded
-- in: one function). Two phases: first every order's customer lock and
-- counts (pending orders, tickets held for the event), then the takes —
-- counting while earlier orders of the batch hold their buckets would keep
-- those hot rows locked longer. Orders of one customer in one batch count
-- each other in the second phase, from what the first read plus what the
-- batch took.
CREATE FUNCTION hold_orders(p_orders uuid[], p_users uuid[], p_events uuid[], p_status text, p_currencies text[],
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
            SELECT count(*) INTO v_before
              FROM (SELECT FROM orders WHERE user_id = p_users[i] AND status = 'pending' LIMIT p_max_pending) AS pending;
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
