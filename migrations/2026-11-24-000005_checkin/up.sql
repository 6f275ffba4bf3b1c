-- A ticket's manifest version: the id of the transaction that last changed
-- it. A manifest reads up to the oldest transaction still running (its
-- snapshot's xmin), so a change committed late can never fall behind a
-- version a scanner already has.
ALTER TABLE tickets ADD COLUMN version bigint NOT NULL DEFAULT pg_current_xact_id()::text::bigint;
CREATE INDEX tickets_manifest ON tickets (event_id, version, id);

-- Scanner devices. The device token is shown once; only its SHA-256 is kept
-- (the token is 32 random bytes: a slow hash would add nothing).
CREATE TABLE scanners (
    id         uuid        PRIMARY KEY,
    event_id   uuid        NOT NULL REFERENCES events (id),
    name       text        NOT NULL,
    token_hash bytea       NOT NULL UNIQUE,
    created_by uuid        NOT NULL REFERENCES users (id),
    revoked_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX scanners_by_event ON scanners (event_id);

-- The check-in that admitted a ticket. The primary key is the guarantee:
-- one per ticket, whatever the concurrency and number of replicas. A
-- ticket's row is not touched by its check-in (its status stays 'valid';
-- reads join this table): the gate's hot path writes as little as it can.
CREATE TABLE checkins (
    ticket_id  uuid        PRIMARY KEY REFERENCES tickets (id),
    event_id   uuid        NOT NULL REFERENCES events (id),
    scanner_id uuid        NOT NULL REFERENCES scanners (id),
    gate       text        NOT NULL,
    scan_time  timestamptz NOT NULL,
    -- Set when the admitting scan was made offline.
    scan_id    text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX checkins_by_event ON checkins (event_id, gate);

-- Every scan of a genuine code, append-only except for `conflict`, which
-- marks an offline admission that lost to an earlier one: the gate log.
CREATE TABLE scans (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id    uuid        NOT NULL,
    ticket_id   uuid        NOT NULL,
    scanner_id  uuid        NOT NULL REFERENCES scanners (id),
    gate        text        NOT NULL,
    result      text        NOT NULL,
    scan_time   timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    -- Offline scans: the scanner's own id for the scan; a retried upload finds it.
    scan_id     text,
    conflict    boolean     NOT NULL DEFAULT false
);
CREATE UNIQUE INDEX scans_offline_id ON scans (scanner_id, scan_id) WHERE scan_id IS NOT NULL;
CREATE INDEX scans_by_event ON scans (event_id, gate, result);
CREATE INDEX scans_by_ticket ON scans (ticket_id);

-- One scan at the gate, decided and recorded in one call: the hot path of
-- check-in is this one round trip. A function rather than a bare statement
-- because PgBouncer in transaction mode rules out prepared statements, and
-- PL/pgSQL keeps its statements' plans per server connection: planning a
-- multi-table statement on every scan cost most of the database's CPU
-- (ci/bench checkin). Each statement inside takes a fresh snapshot, so after
-- losing the race to admit, the winner's check-in is visible to the last read.
-- No row back: the scanner credential matches no active scanner. With a
-- scan id the scanner already used for this ticket, the first answer comes
-- back and nothing is written (a retry after a lost answer).
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

-- Many scans in one call: under load, scans that arrive while the previous
-- call is in flight are sent together (one round trip, one commit for all).
-- Row i of the result answers scan i; a scan whose scanner credential
-- matches no active scanner has no row.
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
