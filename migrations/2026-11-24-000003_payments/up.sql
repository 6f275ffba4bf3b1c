-- One Ed25519 key pair per event signs its ticket codes. The private key is
-- stored sealed (AES-256-GCM under TICKET_KEY_ENCRYPTION_KEY, nonce first);
-- the public key is what scanners verify with offline.
CREATE TABLE event_signing_keys (
    event_id           uuid        PRIMARY KEY REFERENCES events (id),
    public_key         bytea       NOT NULL CHECK (length(public_key) = 32),
    sealed_private_key bytea       NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now()
);

-- One payment (one Midtrans Snap transaction) per order.
CREATE TABLE payments (
    id              uuid        PRIMARY KEY,
    order_id        uuid        NOT NULL UNIQUE REFERENCES orders (id),
    provider        text        NOT NULL,
    status          text        NOT NULL
                                CHECK (status IN ('pending', 'paid', 'failed', 'refund_pending', 'refunded')),
    -- The provider's last transaction_status applied (settlement, expire, …).
    provider_status text        NOT NULL DEFAULT '',
    token           text        NOT NULL,
    redirect_url    text        NOT NULL,
    gross_amount    bigint      NOT NULL CHECK (gross_amount >= 0),
    -- When the reconciliation job last asked the provider about it.
    checked_at      timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
-- The reconciliation job's scan: pending payments, least recently checked first.
CREATE INDEX payments_pending_by_check ON payments (checked_at) WHERE status = 'pending';

-- Every verified notification, and every status the reconciliation job
-- read, as received (append-only: never updated). `outcome` says what
-- processing it did. Forged notifications are not stored: an unsigned
-- caller must not be able to write to the database.
CREATE TABLE payment_notifications (
    id                 bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider           text        NOT NULL,
    source             text        NOT NULL CHECK (source IN ('notification', 'status_check')),
    order_id           text        NOT NULL,
    transaction_status text        NOT NULL,
    body               jsonb       NOT NULL,
    outcome            text        NOT NULL,
    received_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payment_notifications_by_order ON payment_notifications (order_id);

-- Work done after a commit by `ticketing worker`, written in the same
-- transaction as the change that asks for it. A claimed row is leased
-- (next_attempt_at pushed ahead) so a crashed worker's rows come back.
CREATE TABLE outbox (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            text        NOT NULL,
    payload         jsonb       NOT NULL,
    status          text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'dead')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    processed_at    timestamptz
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE status = 'pending';

CREATE TABLE reports (
    id           uuid        PRIMARY KEY,
    event_id     uuid        NOT NULL REFERENCES events (id),
    requested_by uuid        NOT NULL REFERENCES users (id),
    status       text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'ready', 'failed')),
    csv          text,
    error        text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz
);
CREATE INDEX reports_by_event ON reports (event_id, id DESC);


CREATE INDEX tickets_by_event ON tickets (event_id);
