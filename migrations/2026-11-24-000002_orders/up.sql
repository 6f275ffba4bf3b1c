-- Inventory: a category's capacity is spread over a few buckets so buyers of
-- one hot category do not all queue on one row lock (shared/PERF.md). The
-- CHECK is the guarantee against overselling: no interleaving of
-- transactions can make a bucket hold more than it has.
CREATE TABLE inventory_buckets (
    ticket_category_id uuid     NOT NULL REFERENCES ticket_categories (id),
    bucket             smallint NOT NULL,
    capacity           integer  NOT NULL CHECK (capacity >= 0),
    held               integer  NOT NULL DEFAULT 0,
    PRIMARY KEY (ticket_category_id, bucket),
    CHECK (held >= 0 AND held <= capacity)
);

-- Categories made before this migration get their buckets.
INSERT INTO inventory_buckets (ticket_category_id, bucket, capacity)
SELECT c.id, b, c.capacity / least(16, c.capacity) + CASE WHEN b < c.capacity % least(16, c.capacity) THEN 1 ELSE 0 END
FROM ticket_categories c, generate_series(0, least(16, c.capacity) - 1) AS b;

CREATE TABLE orders (
    id              uuid        PRIMARY KEY,
    user_id         uuid        NOT NULL REFERENCES users (id),
    event_id        uuid        NOT NULL REFERENCES events (id),
    status          text        NOT NULL
                                CHECK (status IN ('pending', 'paid', 'expired', 'cancelled', 'refunded')),
    currency_code   text        NOT NULL,
    total_units     bigint      NOT NULL CHECK (total_units >= 0),
    total_nanos     integer     NOT NULL CHECK (total_nanos BETWEEN 0 AND 999999999),
    -- The client's Idempotency-Key (or gRPC request_id) and a digest of the
    -- request it came with: replays must match, reuse with another body is refused.
    idempotency_key text        NOT NULL,
    request_digest  text        NOT NULL,
    expire_time     timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
-- The guarantee behind idempotency: one order per (user, key), whatever Redis knows.
CREATE UNIQUE INDEX orders_idempotency_key ON orders (user_id, idempotency_key);
-- A user's orders, newest first (ids are UUIDv7, time-ordered).
CREATE INDEX orders_by_user ON orders (user_id, id DESC);
-- The expiry worker's scan.
CREATE INDEX orders_pending_by_expiry ON orders (expire_time) WHERE status = 'pending';
CREATE INDEX orders_by_event ON orders (event_id);

CREATE TABLE order_items (
    order_id           uuid    NOT NULL REFERENCES orders (id),
    ticket_category_id uuid    NOT NULL REFERENCES ticket_categories (id),
    quantity           integer NOT NULL CHECK (quantity > 0),
    unit_price_units   bigint  NOT NULL CHECK (unit_price_units >= 0),
    unit_price_nanos   integer NOT NULL CHECK (unit_price_nanos BETWEEN 0 AND 999999999),
    PRIMARY KEY (order_id, ticket_category_id)
);
CREATE INDEX order_items_by_category ON order_items (ticket_category_id);

-- Issued when an order is paid (the payments issue writes them).
CREATE TABLE tickets (
    id                 uuid        PRIMARY KEY,
    order_id           uuid        NOT NULL REFERENCES orders (id),
    event_id           uuid        NOT NULL REFERENCES events (id),
    ticket_category_id uuid        NOT NULL REFERENCES ticket_categories (id),
    code               text        NOT NULL,
    status             text        NOT NULL DEFAULT 'valid' CHECK (status IN ('valid', 'checked_in', 'void')),
    created_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tickets_by_order ON tickets (order_id);
