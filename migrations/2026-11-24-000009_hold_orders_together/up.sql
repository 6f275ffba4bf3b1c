-- New orders held together: under a sale's rush, the orders that arrive
-- while the previous call is in flight are sent in one call — one round
-- trip, one parse, one commit for the lot — as the gate's scans are
-- (`redeem_tickets`, migration `checkin`). Measured with pgbench on the
-- bucketed hot category, 8 clients: one order a transaction 2,498 orders/s
-- at ~550 µs of Postgres CPU each; eight a transaction 3,976 orders/s at
-- ~390 µs.
--
-- Each order is held by `hold_order` (migration `hold_in_one_call`), in
-- turn, all lines or none. Order i's lines are p_categories (and the other
-- line arrays) from the element after order i-1's last line up to
-- p_line_ends[i]. Every order gets a row: HELD, CONTENDED or SOLD_OUT.
-- The whole batch shares one start bucket, so its orders pile onto the
-- bucket the call has already locked rather than spreading its locks over
-- every bucket of the category. Once one order of the batch finds every
-- bucket with room busy (having paused for them), the rest are answered
-- CONTENDED without trying, so a batch pauses once at most; they take the
-- exact pass on their own. A failing order (a concurrent order with its
-- idempotency key) fails the call: the caller holds each order again on
-- its own.
CREATE FUNCTION hold_orders(p_orders uuid[], p_users uuid[], p_events uuid[], p_status text, p_currencies text[],
                            p_total_units bigint[], p_total_nanos integer[], p_idempotency_keys text[],
                            p_request_digests text[], p_expire_times timestamptz[], p_created_at timestamptz[],
                            p_line_ends integer[], p_categories uuid[], p_quantities integer[],
                            p_unit_units bigint[], p_unit_nanos integer[], p_start integer, p_exact boolean)
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
                              p_unit_nanos[v_first:p_line_ends[i]], p_start, p_exact) AS h;
            v_contended := out_outcome = 'CONTENDED';
        END IF;
        v_first := p_line_ends[i] + 1;
        RETURN NEXT;
    END LOOP;
END
$$;
