DROP FUNCTION hold_orders(uuid[], uuid[], uuid[], text, text[], bigint[], integer[], text[], text[], timestamptz[], timestamptz[], integer[], uuid[], integer[], bigint[], integer[], integer, boolean, integer, integer[]);
CREATE INDEX orders_pending_by_user ON orders (user_id) WHERE status = 'pending';
DROP INDEX orders_held_by_customer;
DROP INDEX events_open_waiting_rooms;
ALTER TABLE events DROP COLUMN max_tickets_per_customer, DROP COLUMN waiting_room;

CREATE FUNCTION hold_order(p_order uuid, p_user uuid, p_event uuid, p_status text, p_currency text,
                           p_total_units bigint, p_total_nanos integer, p_idempotency_key text,
                           p_request_digest text, p_expire_time timestamptz, p_created_at timestamptz,
                           p_categories uuid[], p_quantities integer[], p_unit_units bigint[],
                           p_unit_nanos integer[], p_start integer, p_exact boolean, p_max_pending integer,
                           OUT outcome text, OUT short_category uuid)
LANGUAGE plpgsql SET enable_seqscan = off AS $$
BEGIN
    -- One customer's holds one at a time (a transaction-scoped advisory
    -- lock: no row written, nothing for another customer to wait on), so two
    -- concurrent orders cannot both see the last free place. The fast pass
    -- waits for no lock (batches taking customers' locks in arrival order
    -- could deadlock): a customer busy elsewhere is CUSTOMER_BUSY — that
    -- order alone, not the rest of its batch — and the exact pass, one order
    -- alone, waits its turn. A cap of 0 is no cap: no lock, no count.
    IF p_max_pending > 0 THEN
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
                                   LIMIT p_max_pending) AS held) >= p_max_pending THEN
        outcome := 'PENDING_LIMIT';
        short_category := NULL;
        RETURN;
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
                            p_max_pending integer)
RETURNS TABLE (out_index integer, out_outcome text, out_short_category uuid)
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
        ELSE
            SELECT h.outcome, h.short_category INTO out_outcome, out_short_category
              FROM hold_order(p_orders[i], p_users[i], p_events[i], p_status, p_currencies[i], p_total_units[i],
                              p_total_nanos[i], p_idempotency_keys[i], p_request_digests[i], p_expire_times[i],
                              p_created_at[i], p_categories[v_first:p_line_ends[i]],
                              p_quantities[v_first:p_line_ends[i]], p_unit_units[v_first:p_line_ends[i]],
                              p_unit_nanos[v_first:p_line_ends[i]], p_start, p_exact, p_max_pending) AS h;
            v_contended := out_outcome = 'CONTENDED';
        END IF;
        v_first := p_line_ends[i] + 1;
        RETURN NEXT;
    END LOOP;
END
$$;
