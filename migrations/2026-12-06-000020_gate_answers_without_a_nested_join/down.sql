-- Migration `redeem_by_issued_code`'s body.
CREATE OR REPLACE FUNCTION redeem_tickets(p_scanners uuid[], p_token_hashes bytea[], p_tickets uuid[], p_code_digests bytea[],
                               p_gates text[], p_scan_times timestamptz[], p_scan_ids text[])
RETURNS TABLE (out_index integer, out_result text, out_ticket_id uuid, out_order_id uuid, out_event_id uuid,
               out_category_id uuid, out_code text, out_status text, out_first_scan_time timestamptz,
               out_first_gate text, out_first_scanner uuid)
LANGUAGE plpgsql
-- Every read is a key lookup (migration `gate_plans`).
SET enable_seqscan = off
AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        WITH scan AS (
            SELECT s.i::integer AS i, s.scanner, s.ticket, s.code_digest, s.gate, s.scan_time, s.scan_id,
                   sc.event_id AS scanner_event
              FROM unnest(p_scanners, p_token_hashes, p_tickets, p_code_digests, p_gates, p_scan_times, p_scan_ids)
                   WITH ORDINALITY AS s (scanner, token_hash, ticket, code_digest, gate, scan_time, scan_id, i)
              -- A scan whose credential matches no active scanner gets no row.
              JOIN scanners sc ON sc.id = s.scanner AND sc.token_hash = s.token_hash AND sc.revoked_at IS NULL
        ), decided AS (
            SELECT scan.*, prior.result AS prior_result, tk.id AS ticket_id, tk.order_id, tk.event_id,
                   tk.ticket_category_id, tk.code, tk.status AS ticket_status, ch.ticket_id IS NOT NULL AS checked_in,
                   ch.scan_time AS first_scan_time, ch.gate AS first_gate, ch.scanner_id AS first_scanner,
                   CASE WHEN tk.id IS NULL THEN 'INVALID'
                        ELSE coalesce(prior.result,
                                      scan_verdict(tk.id, tk.event_id, scan.scanner_event, tk.status, o.status))
                   END AS verdict
              FROM scan
              LEFT JOIN LATERAL (SELECT sc.result FROM scans sc
                                  WHERE scan.scan_id IS NOT NULL AND sc.scanner_id = scan.scanner
                                    AND sc.scan_id = scan.scan_id AND sc.ticket_id = scan.ticket) prior ON true
              -- The very code issued for the ticket, or no ticket. Compared as
              -- SHA-256 digests: the comparison's time says nothing about the
              -- code, and a slow batch's logged parameters hold no codes.
              LEFT JOIN tickets tk ON tk.id = scan.ticket
                                  AND sha256(convert_to(tk.code, 'UTF8')) = scan.code_digest
              LEFT JOIN orders o ON o.id = tk.order_id
              LEFT JOIN checkins ch ON ch.ticket_id = tk.id
        ), admitted AS (
            INSERT INTO checkins (ticket_id, event_id, scanner_id, gate, scan_time)
            SELECT DISTINCT ON (ticket) ticket, scanner_event, scanner, gate, scan_time
              FROM decided WHERE verdict = 'ADMISSIBLE' AND NOT checked_in
             ORDER BY ticket, i
            ON CONFLICT (ticket_id) DO NOTHING
            RETURNING ticket_id, scanner_id, gate, scan_time
        ), answered AS (
            SELECT d.*, a.ticket_id IS NOT NULL AS admitted_now, a.scan_time AS admitted_at, a.gate AS admitted_gate,
                   a.scanner_id AS admitted_by,
                   CASE WHEN d.verdict <> 'ADMISSIBLE' THEN d.verdict
                        WHEN a.ticket_id IS NOT NULL
                             AND d.i = min(d.i) FILTER (WHERE d.verdict = 'ADMISSIBLE') OVER (PARTITION BY d.ticket)
                            THEN 'ACCEPTED'
                        ELSE 'ALREADY_CHECKED_IN' END AS own_result
              FROM decided d LEFT JOIN admitted a ON a.ticket_id = d.ticket
        ), logged AS (
            INSERT INTO scans (event_id, ticket_id, scanner_id, gate, result, scan_time, scan_id)
            SELECT scanner_event, ticket, scanner, gate, own_result, scan_time, scan_id
              -- Forgeries are answered, not logged: a hostile code writes nothing.
              FROM answered WHERE prior_result IS NULL AND own_result <> 'INVALID' ORDER BY i
            -- A scan id used twice in this batch: the first is logged.
            ON CONFLICT (scanner_id, scan_id) WHERE scan_id IS NOT NULL DO NOTHING
        )
        SELECT a.*,
               -- A scan id used twice in this batch: both get the first's
               -- answer. A code that is not the issued one is answered alone:
               -- it neither borrows nor lends an answer under a shared scan id.
               CASE WHEN a.scan_id IS NULL OR a.ticket_id IS NULL THEN a.own_result
                    ELSE first_value(a.own_result)
                             OVER (PARTITION BY a.scanner, a.scan_id, a.ticket, a.ticket_id IS NULL ORDER BY a.i)
               END AS result
          FROM answered a
         ORDER BY a.i
    LOOP
        out_index := r.i;
        out_result := r.result;
        out_ticket_id := r.ticket_id;
        out_order_id := r.order_id;
        out_event_id := r.event_id;
        out_category_id := r.ticket_category_id;
        out_code := r.code;
        out_status := CASE WHEN r.checked_in OR r.admitted_now THEN 'checked_in' ELSE r.ticket_status END;
        out_first_scan_time := NULL;
        out_first_gate := NULL;
        out_first_scanner := NULL;
        IF r.result = 'ALREADY_CHECKED_IN' THEN
            IF r.checked_in THEN
                out_first_scan_time := r.first_scan_time;
                out_first_gate := r.first_gate;
                out_first_scanner := r.first_scanner;
            ELSIF r.admitted_now THEN
                out_first_scan_time := r.admitted_at;
                out_first_gate := r.admitted_gate;
                out_first_scanner := r.admitted_by;
            ELSE
                -- Admitted by a transaction that committed while the insert waited.
                out_status := 'checked_in';
                SELECT c.scan_time, c.gate, c.scanner_id INTO out_first_scan_time, out_first_gate, out_first_scanner
                  FROM checkins c WHERE c.ticket_id = r.ticket;
            END IF;
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;
