-- take_tickets' exact pass lets go of the buckets its pick skipped before it
-- waits for every bucket of the category in bucket order.
--
-- The pick (`LIMIT 1 FOR UPDATE SKIP LOCKED`, filtered on room) meets a
-- bucket whose row a commit changed after the pick's snapshot: Postgres
-- locks the row's newest version, checks the filter again, and when the
-- bucket has no room left skips it without unlocking it. When the pick then
-- found nothing, the pass locked every bucket in order while holding that
-- one: a release (every bucket in order) holding the buckets before it and
-- waiting for it, and the pass waiting for theirs, is a deadlock; Postgres
-- aborted one after a second (deadlock_timeout), and its request was a 500
-- (orders::multi_category_orders_racing_over_three_processes_never_deadlock_or_oversell,
-- once in a CI run). Rolling back a block's subtransaction releases the row
-- locks taken in it (the Postgres manual, "Explicit Locking": a lock taken
-- after a savepoint is released when the savepoint is rolled back).
CREATE OR REPLACE FUNCTION take_tickets(p_categories uuid[], p_quantities integer[], p_start integer, p_exact boolean,
                                        OUT outcome text, OUT short_category uuid)
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    v_categories uuid[];
    v_quantities integer[];
    -- Per category: the one bucket it takes from, or NULL in the exact pass
    -- when it splits across every bucket it has locked.
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
        v_bucket := NULL;
        IF p_exact THEN
            -- The pick runs in a block of its own, undone when it finds
            -- nothing: undoing it releases the buckets it locked and skipped
            -- (a bucket changed by a commit during the pick is locked, found
            -- without room and skipped, yet stays locked). Kept, such a
            -- bucket is held out of bucket order by the wait below, and a
            -- release holding the buckets before it, waiting for it,
            -- deadlocks with this pass.
            BEGIN
                SELECT b.bucket INTO STRICT v_bucket FROM inventory_buckets AS b
                 WHERE b.ticket_category_id = v_categories[i] AND b.capacity - b.held >= v_quantities[i]
                 ORDER BY b.bucket < p_start, b.bucket
                 LIMIT 1 FOR UPDATE SKIP LOCKED;
            EXCEPTION WHEN no_data_found THEN
                v_bucket := NULL;
            END;
        ELSE
            FOR attempt IN 1 .. 4 LOOP
                SELECT b.bucket INTO v_bucket FROM inventory_buckets AS b
                 WHERE b.ticket_category_id = v_categories[i] AND b.capacity - b.held >= v_quantities[i]
                 ORDER BY b.bucket < p_start, b.bucket
                 LIMIT 1 FOR UPDATE SKIP LOCKED;
                EXIT WHEN v_bucket IS NOT NULL OR attempt = 4;
                -- A busy bucket is held for about one commit.
                PERFORM pg_sleep(0.001 * attempt);
            END LOOP;
        END IF;
        IF v_bucket IS NULL AND p_exact THEN
            -- Every bucket, in bucket order (so two exact passes never wait
            -- for each other in a circle), waiting for the busy ones.
            SELECT coalesce(sum(b.capacity - b.held), 0) INTO v_room
              FROM (SELECT capacity, held FROM inventory_buckets
                     WHERE ticket_category_id = v_categories[i] ORDER BY bucket FOR UPDATE) AS b;
            IF v_room < v_quantities[i] THEN
                outcome := 'SOLD_OUT';
                short_category := v_categories[i];
                RETURN;
            END IF;
        ELSIF v_bucket IS NULL THEN
            outcome := 'CONTENDED';
            short_category := v_categories[i];
            RETURN;
        END IF;
        v_picked[i] := v_bucket;
    END LOOP;

    -- Nothing is taken until every category has room: all or nothing.
    FOR i IN 1 .. coalesce(array_length(v_categories, 1), 0) LOOP
        IF v_picked[i] IS NOT NULL THEN
            UPDATE inventory_buckets SET held = held + v_quantities[i]
             WHERE ticket_category_id = v_categories[i] AND bucket = v_picked[i];
        ELSE
            v_needed := v_quantities[i];
            FOR v_free IN SELECT bucket, capacity - held AS room FROM inventory_buckets
                           WHERE ticket_category_id = v_categories[i] AND held < capacity ORDER BY bucket LOOP
                v_take := least(v_needed, v_free.room);
                UPDATE inventory_buckets SET held = held + v_take
                 WHERE ticket_category_id = v_categories[i] AND bucket = v_free.bucket;
                v_needed := v_needed - v_take;
                EXIT WHEN v_needed = 0;
            END LOOP;
        END IF;
    END LOOP;
    outcome := 'TAKEN';
END
$$;
