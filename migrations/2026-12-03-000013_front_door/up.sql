-- The on-sale front door's settings on the event, and the per-customer
-- ticket limit in the hold itself.
--
-- max_tickets_per_customer: the tickets one customer holds for the event
-- across PENDING and PAID orders (0: the default, 10 — the service passes
-- the effective limit). Counted inside `hold_order` under the customer's
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

CREATE FUNCTION hold_order(p_order uuid, p_user uuid, p_event uuid, p_status text, p_currency text,
                           p_total_units bigint, p_total_nanos integer, p_idempotency_key text,
                           p_request_digest text, p_expire_time timestamptz, p_created_at timestamptz,
                           p_categories uuid[], p_quantities integer[], p_unit_units bigint[],
                           p_unit_nanos integer[], p_start integer, p_exact boolean, p_max_pending integer,
                           p_customer_limit integer,
                           OUT outcome text, OUT short_category uuid, OUT held integer)
LANGUAGE plpgsql SET enable_seqscan = off AS $$
BEGIN
    held := NULL;
    -- One customer's holds one at a time (a transaction-scoped advisory
    -- lock: no row written, nothing for another customer to wait on), so two
    -- concurrent orders cannot both see the last free place. The fast pass
    -- waits for no lock (batches taking customers' locks in arrival order
    -- could deadlock): a customer busy elsewhere is CUSTOMER_BUSY — that
    -- order alone, not the rest of its batch — and the exact pass, one order
    -- alone, waits its turn. Limits of 0 are no limits: no lock, no count.
    IF p_max_pending > 0 OR p_customer_limit > 0 THEN
        IF p_exact THEN
            PERFORM pg_advisory_xact_lock(hashtextextended(p_user::text, 20261203));
        ELSIF NOT pg_try_advisory_xact_lock(hashtextextended(p_user::text, 20261203)) THEN
            outcome := 'CUSTOMER_BUSY';
            short_category := NULL;
            RETURN;
        END IF;
    END IF;
    -- Counting stops at the cap: at most that many index entries are read.
    IF p_max_pending > 0
       AND (SELECT count(*) FROM (SELECT FROM orders WHERE user_id = p_user AND status = 'pending'
                                   LIMIT p_max_pending) AS pending) >= p_max_pending THEN
        outcome := 'PENDING_LIMIT';
        short_category := NULL;
        RETURN;
    END IF;
    IF p_customer_limit > 0 THEN
        SELECT coalesce(sum(i.quantity), 0) INTO held
          FROM orders o JOIN order_items i ON i.order_id = o.id
         WHERE o.user_id = p_user AND o.event_id = p_event AND o.status IN ('pending', 'paid');
        IF held + (SELECT sum(q) FROM unnest(p_quantities) AS q) > p_customer_limit THEN
            outcome := 'CUSTOMER_LIMIT';
            short_category := NULL;
            RETURN;
        END IF;
    END IF;
    SELECT t.outcome, t.short_category INTO outcome, short_category
      FROM take_tickets(p_categories, p_quantities, p_start, p_exact) AS t;
    IF outcome <> 'TAKEN' THEN
        RETURN;
    END IF;
    INSERT INTO orders (id, user_id, event_id, status, currency_code, total_units, total_nanos,
                        idempotency_key, request_digest, expire_time, created_at, updated_at)
    VALUES (p_order, p_user, p_event, p_status, p_currency, p_total_units, p_total_nanos,
            p_idempotency_key, p_request_digest, p_expire_time, p_created_at, p_created_at);
    INSERT INTO order_items (order_id, ticket_category_id, quantity, unit_price_units, unit_price_nanos)
    SELECT p_order, item.* FROM unnest(p_categories, p_quantities, p_unit_units, p_unit_nanos) AS item;
    outcome := 'HELD';
END
$$;

CREATE FUNCTION hold_orders(p_orders uuid[], p_users uuid[], p_events uuid[], p_status text, p_currencies text[],
                            p_total_units bigint[], p_total_nanos integer[], p_idempotency_keys text[],
                            p_request_digests text[], p_expire_times timestamptz[], p_created_at timestamptz[],
                            p_line_ends integer[], p_categories uuid[], p_quantities integer[],
                            p_unit_units bigint[], p_unit_nanos integer[], p_start integer, p_exact boolean,
                            p_max_pending integer, p_customer_limits integer[])
RETURNS TABLE (out_index integer, out_outcome text, out_short_category uuid, out_held integer)
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    v_first integer := 1;
    v_contended boolean := false;
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_orders, 1), 0) LOOP
        out_index := i;
        IF v_contended THEN
            out_outcome := 'CONTENDED';
            out_short_category := NULL;
            out_held := NULL;
        ELSE
            SELECT h.outcome, h.short_category, h.held INTO out_outcome, out_short_category, out_held
              FROM hold_order(p_orders[i], p_users[i], p_events[i], p_status, p_currencies[i], p_total_units[i],
                              p_total_nanos[i], p_idempotency_keys[i], p_request_digests[i], p_expire_times[i],
                              p_created_at[i], p_categories[v_first:p_line_ends[i]],
                              p_quantities[v_first:p_line_ends[i]], p_unit_units[v_first:p_line_ends[i]],
                              p_unit_nanos[v_first:p_line_ends[i]], p_start, p_exact, p_max_pending,
                              p_customer_limits[i]) AS h;
            v_contended := out_outcome = 'CONTENDED';
        END IF;
        v_first := p_line_ends[i] + 1;
        RETURN NEXT;
    END LOOP;
END
$$;
