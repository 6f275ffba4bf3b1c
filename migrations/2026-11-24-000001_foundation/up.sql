-- Status and role columns are text with CHECK constraints rather than enum
-- types: through PgBouncer in transaction mode, custom types cost a named
-- prepared statement per client (shared/PGBOUNCER.md).

CREATE TABLE users (
    id            uuid        PRIMARY KEY,
    email         text        NOT NULL CHECK (email = lower(email) AND length(email) <= 254),
    password_hash text        NOT NULL,
    role          text        NOT NULL CHECK (role IN ('customer', 'organizer', 'admin')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (email);

CREATE TABLE events (
    id               uuid        PRIMARY KEY,
    organizer_id     uuid        NOT NULL REFERENCES users (id),
    name             text        NOT NULL,
    description      text        NOT NULL DEFAULT '',
    venue            text        NOT NULL,
    time_zone        text        NOT NULL,
    start_time       timestamptz NOT NULL,
    end_time         timestamptz NOT NULL,
    sales_start_time timestamptz NOT NULL,
    sales_end_time   timestamptz NOT NULL,
    status           text        NOT NULL DEFAULT 'draft'
                                 CHECK (status IN ('draft', 'published', 'cancelled')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (start_time < end_time),
    CHECK (sales_start_time < sales_end_time)
);
-- The public listing: published, not yet over, soonest first, keyset paged.
CREATE INDEX events_published_by_start ON events (start_time, id) WHERE status = 'published';
CREATE INDEX events_by_organizer ON events (organizer_id);

CREATE TABLE ticket_categories (
    id               uuid        PRIMARY KEY,
    event_id         uuid        NOT NULL REFERENCES events (id),
    name             text        NOT NULL,
    currency_code    text        NOT NULL CHECK (currency_code ~ '^[A-Z]{3}$'),
    price_units      bigint      NOT NULL CHECK (price_units >= 0),
    price_nanos      integer     NOT NULL CHECK (price_nanos BETWEEN 0 AND 999999999),
    capacity         integer     NOT NULL CHECK (capacity > 0),
    max_per_order    integer     NOT NULL CHECK (max_per_order BETWEEN 1 AND capacity),
    sales_start_time timestamptz,
    sales_end_time   timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
-- Ids are UUIDv7, so (event_id, id) lists an event's categories in creation order.
CREATE INDEX ticket_categories_by_event ON ticket_categories (event_id, id);
