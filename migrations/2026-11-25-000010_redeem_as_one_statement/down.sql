-- The loop of migration `checkin`, one `redeem_ticket` call per scan.
DROP FUNCTION redeem_tickets(uuid[], bytea[], uuid[], text[], timestamptz[], text[]);
CREATE FUNCTION redeem_ticket(p_scanner uuid, p_token_hash bytea, p_ticket uuid, p_gate text, p_scan_time timestamptz,
                              p_scan_id text)
RETURNS TABLE (out_result text, out_ticket_id uuid, out_order_id uuid, out_event_id uuid, out_category_id uuid,
               out_code text, out_status text, out_first_scan_time timestamptz, out_first_gate text,
               out_first_scanner uuid)
LANGUAGE plpgsql AS $$
DECLARE
    v_event uuid;
    v_result text;
    v_prior text;
    v_found boolean;
    t record;
BEGIN
    SELECT s.event_id INTO v_event FROM scanners s
     WHERE s.id = p_scanner AND s.token_hash = p_token_hash AND s.revoked_at IS NULL;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF p_scan_id IS NOT NULL THEN
        SELECT sc.result INTO v_prior FROM scans sc
         WHERE sc.scanner_id = p_scanner AND sc.scan_id = p_scan_id AND sc.ticket_id = p_ticket;
    END IF;
    SELECT tk.id, tk.order_id, tk.event_id, tk.ticket_category_id, tk.code,
           CASE WHEN EXISTS (SELECT 1 FROM checkins ch WHERE ch.ticket_id = tk.id) THEN 'checked_in' ELSE tk.status END
               AS status,
           o.status AS order_status
      INTO t
      FROM tickets tk JOIN orders o ON o.id = tk.order_id
     WHERE tk.id = p_ticket;
    v_found := FOUND;
    IF v_prior IS NOT NULL THEN
        v_result := v_prior;
    ELSIF NOT v_found THEN
        v_result := 'INVALID';
    ELSIF t.event_id <> v_event THEN
        v_result := 'WRONG_EVENT';
    ELSIF t.status = 'void' OR t.order_status IN ('refunded', 'cancelled') THEN
        v_result := 'VOID';
    ELSIF t.order_status <> 'paid' THEN
        v_result := 'NOT_PAID';
    ELSE
        INSERT INTO checkins (ticket_id, event_id, scanner_id, gate, scan_time)
        VALUES (p_ticket, v_event, p_scanner, p_gate, p_scan_time)
        ON CONFLICT (ticket_id) DO NOTHING;
        IF FOUND THEN
            v_result := 'ACCEPTED';
            t.status := 'checked_in';
        ELSE
            v_result := 'ALREADY_CHECKED_IN';
        END IF;
    END IF;
    IF v_prior IS NULL THEN
        INSERT INTO scans (event_id, ticket_id, scanner_id, gate, result, scan_time, scan_id)
        VALUES (v_event, p_ticket, p_scanner, p_gate, v_result, p_scan_time, p_scan_id)
        ON CONFLICT (scanner_id, scan_id) WHERE scan_id IS NOT NULL DO NOTHING;
    END IF;
    IF NOT v_found THEN
        RETURN QUERY SELECT v_result, NULL::uuid, NULL::uuid, NULL::uuid, NULL::uuid, NULL::text, NULL::text,
                            NULL::timestamptz, NULL::text, NULL::uuid;
        RETURN;
    END IF;
    RETURN QUERY
        SELECT v_result, t.id, t.order_id, t.event_id, t.ticket_category_id, t.code, t.status,
               c.scan_time, c.gate, c.scanner_id
          FROM (SELECT 1) AS one
          LEFT JOIN checkins c ON c.ticket_id = p_ticket AND v_result = 'ALREADY_CHECKED_IN';
END
$$;

CREATE FUNCTION redeem_tickets(p_scanners uuid[], p_token_hashes bytea[], p_tickets uuid[], p_gates text[],
                               p_scan_times timestamptz[], p_scan_ids text[])
RETURNS TABLE (out_index integer, out_result text, out_ticket_id uuid, out_order_id uuid, out_event_id uuid,
               out_category_id uuid, out_code text, out_status text, out_first_scan_time timestamptz,
               out_first_gate text, out_first_scanner uuid)
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_tickets, 1), 0) LOOP
        RETURN QUERY SELECT i, r.* FROM redeem_ticket(p_scanners[i], p_token_hashes[i], p_tickets[i], p_gates[i],
                                                      p_scan_times[i], p_scan_ids[i]) AS r;
    END LOOP;
END
$$;
ALTER FUNCTION redeem_tickets(uuid[], bytea[], uuid[], text[], timestamptz[], text[]) SET enable_seqscan = off;
