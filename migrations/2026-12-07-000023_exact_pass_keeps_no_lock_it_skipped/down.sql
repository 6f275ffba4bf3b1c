-- take_tickets as migration `hold_a_batch_in_few_statements` made it.
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
        FOR attempt IN 1 .. CASE WHEN p_exact THEN 1 ELSE 4 END LOOP
            SELECT b.bucket INTO v_bucket FROM inventory_buckets AS b
             WHERE b.ticket_category_id = v_categories[i] AND b.capacity - b.held >= v_quantities[i]
             ORDER BY b.bucket < p_start, b.bucket
             LIMIT 1 FOR UPDATE SKIP LOCKED;
            EXIT WHEN v_bucket IS NOT NULL OR p_exact OR attempt = 4;
            -- A busy bucket is held for about one commit.
            PERFORM pg_sleep(0.001 * attempt);
        END LOOP;
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
