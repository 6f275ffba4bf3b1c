-- Taking tickets from a category's buckets (migration `orders`), all lines
-- or none: every line is locked and checked before anything is written, so
-- a short line leaves nothing taken and needs no savepoint or rollback.
-- Categories in id order. The fast pass (p_exact false) takes each line from
-- one bucket with room, starting at bucket p_start so concurrent buyers
-- spread out, and never waits for a lock (SKIP LOCKED; a few short pauses
-- when every bucket with room is busy): it answers CONTENDED rather than
-- wait. The exact pass locks all of a category's buckets in bucket order,
-- waiting, and splits the quantity across them: SOLD_OUT when the category
-- has less left. Only the exact pass (and release and resize, in Rust) wait,
-- all in the same order, so nothing deadlocks. The `held <= capacity` CHECK
-- on each bucket stays the guarantee against overselling.
CREATE FUNCTION take_tickets(p_categories uuid[], p_quantities integer[], p_start integer, p_exact boolean,
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

-- A new order in one call, so one round trip and one commit: its tickets
-- taken (above), then the order and its items written. The bucket locks are
-- held only from the take to this statement's commit, never across a round
-- trip. Nothing is written unless outcome is HELD. A concurrent order with
-- the same idempotency key fails the statement on the unique index.
CREATE FUNCTION hold_order(p_order uuid, p_user uuid, p_event uuid, p_status text, p_currency text,
                           p_total_units bigint, p_total_nanos integer, p_idempotency_key text,
                           p_request_digest text, p_expire_time timestamptz, p_created_at timestamptz,
                           p_categories uuid[], p_quantities integer[], p_unit_units bigint[],
                           p_unit_nanos integer[], p_start integer, p_exact boolean,
                           OUT outcome text, OUT short_category uuid)
LANGUAGE plpgsql SET enable_seqscan = off AS $$
BEGIN
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
