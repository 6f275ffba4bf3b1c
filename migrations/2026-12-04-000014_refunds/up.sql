-- Refunds an organizer asks for, that an event's cancellation makes, and that
-- a payment for an order that could not be kept needs: one record each, paid
-- back through Midtrans (or by hand where Midtrans cannot), never twice.

-- How the order was paid decides whether Midtrans can refund it by API.
ALTER TABLE payments ADD COLUMN payment_type text;

-- What the order's refunds add up to; the database refuses more than was paid.
ALTER TABLE orders ADD COLUMN refunded_units bigint NOT NULL DEFAULT 0,
    ADD CONSTRAINT orders_refunds_within_total CHECK (refunded_units >= 0 AND refunded_units <= total_units);

CREATE TABLE refunds (
    id uuid PRIMARY KEY,
    order_id uuid NOT NULL REFERENCES orders (id),
    event_id uuid NOT NULL REFERENCES events (id),
    cause text NOT NULL CHECK (cause IN ('organizer', 'event_cancelled', 'unkept_payment', 'provider')),
    ticket_ids uuid[] NOT NULL DEFAULT '{}',
    currency_code text NOT NULL,
    amount_units bigint NOT NULL CHECK (amount_units > 0),
    status text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'manual_required')),
    reason text NOT NULL,
    return_to_sale boolean NOT NULL,
    -- Midtrans's refund_key: the refund's id (a migrated job keeps the key it was tried with).
    refund_key text NOT NULL UNIQUE,
    payment_type text,
    -- Who asked (NULL: the system), with their idempotency key.
    requested_by uuid REFERENCES users (id),
    idempotency_key text,
    request_digest text,
    -- A manual refund's closing: who, when, the bank's reference.
    completed_by uuid REFERENCES users (id),
    completed_at timestamptz,
    manual_reference text,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX refunds_idempotency ON refunds (requested_by, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- An event's cancellation refunds each order once, however often its sweep runs.
CREATE UNIQUE INDEX refunds_one_per_cancelled_order ON refunds (order_id) WHERE cause = 'event_cancelled';
CREATE INDEX refunds_by_event ON refunds (event_id, id);
CREATE INDEX refunds_by_order ON refunds (order_id);

-- A ticket is refunded at most once.
CREATE TABLE refunded_tickets (
    ticket_id uuid PRIMARY KEY REFERENCES tickets (id),
    refund_id uuid NOT NULL REFERENCES refunds (id)
);

-- A cancelled event's sweep (cancel pending orders, refund paid ones) runs
-- until nothing is left to do.
ALTER TABLE events ADD COLUMN cancelled_at timestamptz, ADD COLUMN cancellation_settled_at timestamptz;
CREATE INDEX events_cancellations_in_progress ON events (cancelled_at)
    WHERE status = 'cancelled' AND cancellation_settled_at IS NULL;
-- The sweep finds an event's pending and paid orders among all it sold:
-- the event index gains the status (no extra index on the order path).
DROP INDEX orders_by_event;
CREATE INDEX orders_by_event ON orders (event_id, status);

-- Who changed money or access, when, from what to what. Append-only: the
-- trigger refuses every change to a written row.
CREATE TABLE audit_log (
    id bigserial PRIMARY KEY,
    event_id uuid NOT NULL,
    actor_id uuid,
    action text NOT NULL CHECK (action ~ '^[a-z_]+\.[a-z_]+$'),
    subject_id text NOT NULL,
    before jsonb,
    after jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_by_event ON audit_log (event_id, id);

CREATE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();

-- Refund jobs already in an outbox ({order_id, amount, reason}) become
-- refunds; their jobs name the refund and keep the key they were tried with.
WITH old AS (
    SELECT ob.id AS job_id, o.id AS order_id, o.event_id, o.currency_code,
           (ob.payload ->> 'amount')::bigint AS amount, coalesce(ob.payload ->> 'reason', '') AS reason,
           gen_random_uuid() AS refund_id
      FROM outbox ob JOIN orders o ON o.id = (ob.payload ->> 'order_id')::uuid
     WHERE ob.kind = 'refund' AND ob.status = 'pending' AND ob.payload ? 'amount'
), made AS (
    INSERT INTO refunds (id, order_id, event_id, cause, currency_code, amount_units, status, reason, return_to_sale,
                         refund_key)
    SELECT refund_id, order_id, event_id, 'unkept_payment', currency_code, amount, 'pending', reason, false,
           'refund-' || order_id
      FROM old
    RETURNING id
)
UPDATE outbox ob SET payload = jsonb_build_object('refund_id', old.refund_id)
  FROM old WHERE ob.id = old.job_id;
UPDATE orders o SET refunded_units = r.amount_units FROM refunds r WHERE r.order_id = o.id;
