-- hold_orders' fast pass says SOLD_OUT itself instead of sending the order
-- to the exact pass to hear it.
--
-- A line no free bucket had room for was CONTENDED after four tries (1, 2
-- and 3 ms of sleep between them), whatever the reason, and so was every
-- later order of its batch. Each then took the exact pass alone, which
-- locks every bucket of the category in turn: at a sell-out, a batch of 64
-- orders became 64 exact passes one after another, each 40–60 ms. After it,
-- each lapse of a replica's sold-out memo sent the orders in flight the
-- same way (737 exact passes in a 20 s window on a category already sold
-- out, ci/bench flash_sale).
--
-- Now the fast pass waits only while a bucket with room is held by another
-- batch, and a line that finds none sums the category's room: less than the
-- line is SOLD_OUT for that order alone, and the batch's later orders go on
-- (a smaller one may still fit). The exact pass is left to what needs it:
-- a line split over buckets, and buckets busy past the wait (which still
-- sends the batch's later orders too, as they would wait as long). Saying
-- SOLD_OUT from committed rows refuses no seat that is free: another
-- batch's uncommitted takes only leave less, and a release not yet
-- committed is a seat coming back a moment after the answer.
CREATE OR REPLACE FUNCTION hold_orders(p_orders uuid[], p_users uuid[], p_events uuid[], p_status text, p_currencies text[],
                            p_total_units bigint[], p_total_nanos integer[], p_idempotency_keys text[],
                            p_request_digests text[], p_expire_times timestamptz[], p_created_at timestamptz[],
                            p_line_ends integer[], p_categories uuid[], p_quantities integer[],
                            p_unit_units bigint[], p_unit_nanos integer[], p_start integer, p_exact boolean,
                            p_max_pending integer, p_customer_limits integer[])
RETURNS TABLE (out_index integer, out_outcome text, out_short_category uuid, out_held integer)
LANGUAGE plpgsql
-- Every statement here reads by key. Scans and hash or merge joins are never
-- the right plan, and compiling one (JIT, which a misjudged cost turns on)
-- took 230 ms a call: whatever the statistics say, not those.
SET enable_seqscan = off SET enable_bitmapscan = off SET enable_hashjoin = off SET enable_mergejoin = off SET jit = off
AS $$
DECLARE
    v_count integer := coalesce(array_length(p_orders, 1), 0);
    v_busy boolean[];
    -- Per order: the batch's first order of its customer, and of its
    -- customer for its event (where the batch's own holds are counted).
    v_customer integer[];
    v_customer_event integer[];
    v_pending integer[];
    v_held integer[];
    v_batch_orders integer[] := array_fill(0, ARRAY[v_count]);
    v_batch_tickets integer[] := array_fill(0, ARRAY[v_count]);
    v_outcomes text[] := array_fill(NULL::text, ARRAY[v_count]);
    -- Per line: the id of its order once held (NULL otherwise), and the
    -- locked bucket it takes from.
    v_line_orders uuid[] := array_fill(NULL::uuid, ARRAY[coalesce(array_length(p_categories, 1), 0)]);
    v_line_buckets integer[] := array_fill(0, ARRAY[coalesce(array_length(p_categories, 1), 0)]);
    -- The buckets this batch has locked: category, bucket, room left, taken.
    v_bucket_categories uuid[] := '{}';
    v_buckets smallint[] := '{}';
    v_rooms integer[] := '{}';
    v_taken integer[] := '{}';
    v_bucket smallint;
    v_room integer;
    v_pick integer;
    v_first integer := 1;
    v_last integer;
    v_quantity integer;
    v_contended boolean := false;
    -- A line's category: room left in it (committed, beside what this
    -- batch's own buckets have left), and whether its wait ran out.
    v_left bigint;
    v_waited_out boolean;
BEGIN
    -- One customer's holds one at a time (a transaction-scoped advisory
    -- lock: no row written, nothing for another customer to wait on), so two
    -- concurrent orders cannot both see the last free place. The fast pass
    -- waits for no lock (batches taking customers' locks in arrival order
    -- could deadlock): a customer busy elsewhere is CUSTOMER_BUSY — that
    -- order alone, not the rest of its batch — and the exact pass, one order
    -- alone, waits its turn. Limits of 0 are no limits: no lock, no count.
    -- The counts below are a statement of their own: its snapshot is taken
    -- after the locks, so it sees what the lock's last holder committed.
    IF p_exact THEN
        PERFORM pg_advisory_xact_lock(hashtextextended(o.user_id::text, 20261203))
           FROM unnest(p_users, p_customer_limits) AS o(user_id, customer_limit)
          WHERE p_max_pending > 0 OR o.customer_limit > 0;
        v_busy := array_fill(false, ARRAY[v_count]);
    ELSE
        SELECT array_agg(CASE WHEN p_max_pending <= 0 AND o.customer_limit <= 0 THEN false
                              ELSE NOT pg_try_advisory_xact_lock(hashtextextended(o.user_id::text, 20261203)) END
                         ORDER BY o.i)
          INTO v_busy
          FROM unnest(p_users, p_customer_limits) WITH ORDINALITY AS o(user_id, customer_limit, i);
    END IF;

    -- Counting stops at the cap: at most that many index entries are read.
    -- Not `status = 'pending'`: that would let the planner read every
    -- pending order of the sale (orders_pending_by_expiry) when its
    -- statistics predate the sale (migration pending_count_by_customer).
    SELECT array_agg(c.customer ORDER BY c.i), array_agg(c.customer_event ORDER BY c.i),
           array_agg(c.pending ORDER BY c.i), array_agg(c.held ORDER BY c.i)
      INTO v_customer, v_customer_event, v_pending, v_held
      FROM (SELECT o.i::integer AS i,
                   min(o.i) OVER (PARTITION BY o.user_id)::integer AS customer,
                   min(o.i) OVER (PARTITION BY o.user_id, o.event_id)::integer AS customer_event,
                   CASE WHEN o.busy OR p_max_pending <= 0 THEN 0
                        ELSE (SELECT count(*) FROM (SELECT FROM orders AS mine
                                                     WHERE mine.user_id = o.user_id
                                                       AND mine.status IN ('pending', 'paid') AND mine.status <> 'paid'
                                                     LIMIT p_max_pending) AS pending)::integer END AS pending,
                   CASE WHEN o.busy OR o.customer_limit <= 0 THEN 0
                        ELSE (SELECT coalesce(sum((SELECT sum(item.quantity) FROM order_items AS item
                                                    WHERE item.order_id = mine.id)), 0)
                                FROM orders AS mine
                               WHERE mine.user_id = o.user_id AND mine.event_id = o.event_id
                                 AND mine.status IN ('pending', 'paid'))::integer END AS held
              FROM unnest(p_users, p_events, p_customer_limits, v_busy)
                   WITH ORDINALITY AS o(user_id, event_id, customer_limit, busy, i)) AS c;

    FOR i IN 1 .. v_count LOOP
        out_index := i;
        out_short_category := NULL;
        out_held := NULL;
        v_last := p_line_ends[i];
        v_quantity := 0;
        FOR j IN v_first .. v_last LOOP
            v_quantity := v_quantity + p_quantities[j];
        END LOOP;
        IF v_contended THEN
            out_outcome := 'CONTENDED';
        ELSIF v_busy[i] THEN
            out_outcome := 'CUSTOMER_BUSY';
        ELSIF p_max_pending > 0 AND v_pending[i] + v_batch_orders[v_customer[i]] >= p_max_pending THEN
            out_outcome := 'PENDING_LIMIT';
        ELSIF p_customer_limits[i] > 0
              AND v_held[i] + v_batch_tickets[v_customer_event[i]] + v_quantity > p_customer_limits[i] THEN
            out_outcome := 'CUSTOMER_LIMIT';
            out_held := v_held[i] + v_batch_tickets[v_customer_event[i]];
        ELSIF p_exact THEN
            SELECT t.outcome, t.short_category INTO out_outcome, out_short_category
              FROM take_tickets(p_categories[v_first:v_last], p_quantities[v_first:v_last], p_start, true) AS t;
        ELSE
            -- Each line from one bucket with room for all of it: one this
            -- batch holds already, else the next free one from p_start
            -- (wrapping), never waiting for a busy one for longer than
            -- about a commit.
            out_outcome := 'TAKEN';
            FOR j IN v_first .. v_last LOOP
                v_pick := NULL;
                FOR k IN 1 .. coalesce(array_length(v_buckets, 1), 0) LOOP
                    IF v_bucket_categories[k] = p_categories[j] AND v_rooms[k] >= p_quantities[j] THEN
                        v_pick := k;
                        EXIT;
                    END IF;
                END LOOP;
                IF v_pick IS NULL THEN
                    v_waited_out := false;
                    FOR attempt IN 1 .. 4 LOOP
                        v_bucket := NULL;
                        SELECT b.bucket, b.capacity - b.held INTO v_bucket, v_room FROM inventory_buckets AS b
                         WHERE b.ticket_category_id = p_categories[j] AND b.capacity - b.held >= p_quantities[j]
                           -- The batch's own are locked by it, so SKIP LOCKED
                           -- would not skip them, and their rows do not show
                           -- what it has taken yet.
                           AND NOT EXISTS (SELECT FROM unnest(v_bucket_categories, v_buckets) AS mine(category, bucket)
                                            WHERE mine.category = b.ticket_category_id AND mine.bucket = b.bucket)
                         ORDER BY b.bucket < p_start, b.bucket
                         LIMIT 1 FOR UPDATE SKIP LOCKED;
                        v_waited_out := v_bucket IS NULL AND attempt = 4;
                        EXIT WHEN v_bucket IS NOT NULL OR attempt = 4;
                        -- Only a bucket with room that another batch holds
                        -- is worth a wait (it is held for about one commit):
                        -- when no other bucket has room, none will.
                        EXIT WHEN NOT EXISTS (
                            SELECT FROM inventory_buckets AS b
                             WHERE b.ticket_category_id = p_categories[j] AND b.capacity - b.held >= p_quantities[j]
                               AND NOT EXISTS (SELECT FROM unnest(v_bucket_categories, v_buckets) AS mine(category, bucket)
                                                WHERE mine.category = b.ticket_category_id AND mine.bucket = b.bucket));
                        PERFORM pg_sleep(0.001 * attempt);
                    END LOOP;
                    IF v_bucket IS NOT NULL THEN
                        v_bucket_categories := v_bucket_categories || p_categories[j];
                        v_buckets := v_buckets || v_bucket;
                        v_rooms := v_rooms || v_room;
                        v_taken := v_taken || 0;
                        v_pick := array_length(v_buckets, 1);
                    END IF;
                END IF;
                IF v_pick IS NULL THEN
                    -- All or nothing: give back what its earlier lines took.
                    FOR earlier IN v_first .. j - 1 LOOP
                        v_rooms[v_line_buckets[earlier]] := v_rooms[v_line_buckets[earlier]] + p_quantities[earlier];
                        v_taken[v_line_buckets[earlier]] := v_taken[v_line_buckets[earlier]] - p_quantities[earlier];
                    END LOOP;
                    out_short_category := p_categories[j];
                    -- Sold out when the category has less room than the line
                    -- in all: its buckets this batch has not locked (as
                    -- committed: another batch's takes only make it less)
                    -- and what is left in those it has. Else the line needs
                    -- a split, or its buckets are busy: the exact pass.
                    SELECT coalesce(sum(b.capacity - b.held), 0) INTO v_left FROM inventory_buckets AS b
                     WHERE b.ticket_category_id = p_categories[j]
                       AND NOT EXISTS (SELECT FROM unnest(v_bucket_categories, v_buckets) AS mine(category, bucket)
                                        WHERE mine.category = b.ticket_category_id AND mine.bucket = b.bucket);
                    v_left := v_left + coalesce((SELECT sum(mine.room)
                                                   FROM unnest(v_bucket_categories, v_rooms) AS mine(category, room)
                                                  WHERE mine.category = p_categories[j]), 0);
                    IF v_left < p_quantities[j] THEN
                        out_outcome := 'SOLD_OUT';
                    ELSE
                        out_outcome := 'CONTENDED';
                        -- Busy buckets: the batch's later orders would wait
                        -- as long for them, so they take the exact pass too.
                        v_contended := v_waited_out;
                    END IF;
                    EXIT;
                END IF;
                v_rooms[v_pick] := v_rooms[v_pick] - p_quantities[j];
                v_taken[v_pick] := v_taken[v_pick] + p_quantities[j];
                v_line_buckets[j] := v_pick;
            END LOOP;
        END IF;
        IF out_outcome = 'TAKEN' THEN
            out_outcome := 'HELD';
            FOR j IN v_first .. v_last LOOP
                v_line_orders[j] := p_orders[i];
            END LOOP;
            v_batch_orders[v_customer[i]] := v_batch_orders[v_customer[i]] + 1;
            v_batch_tickets[v_customer_event[i]] := v_batch_tickets[v_customer_event[i]] + v_quantity;
        END IF;
        v_outcomes[i] := out_outcome;
        v_first := v_last + 1;
        RETURN NEXT;
    END LOOP;

    UPDATE inventory_buckets AS b SET held = b.held + t.taken
      FROM unnest(v_bucket_categories, v_buckets, v_taken) AS t(category, bucket, taken)
     WHERE t.taken > 0 AND b.ticket_category_id = t.category AND b.bucket = t.bucket;
    INSERT INTO orders (id, user_id, event_id, status, currency_code, total_units, total_nanos,
                        idempotency_key, request_digest, expire_time, created_at, updated_at)
    SELECT o.id, o.user_id, o.event_id, p_status, o.currency_code, o.total_units, o.total_nanos,
           o.idempotency_key, o.request_digest, o.expire_time, o.created_at, o.created_at
      FROM unnest(p_orders, p_users, p_events, p_currencies, p_total_units, p_total_nanos, p_idempotency_keys,
                  p_request_digests, p_expire_times, p_created_at, v_outcomes)
           AS o(id, user_id, event_id, currency_code, total_units, total_nanos, idempotency_key,
                request_digest, expire_time, created_at, outcome)
     WHERE o.outcome = 'HELD';
    INSERT INTO order_items (order_id, ticket_category_id, quantity, unit_price_units, unit_price_nanos)
    SELECT item.order_id, item.category, item.quantity, item.units, item.nanos
      FROM unnest(v_line_orders, p_categories, p_quantities, p_unit_units, p_unit_nanos)
           AS item(order_id, category, quantity, units, nanos)
     WHERE item.order_id IS NOT NULL;
END
$$;
