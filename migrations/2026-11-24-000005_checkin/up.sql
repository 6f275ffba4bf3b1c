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
-- one per ticket, whatever the concurrency and number of replicas.
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
