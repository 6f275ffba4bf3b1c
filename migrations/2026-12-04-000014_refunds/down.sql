DROP TRIGGER audit_log_append_only ON audit_log;
DROP FUNCTION audit_log_is_append_only();
DROP TABLE audit_log;
DROP INDEX orders_by_event;
CREATE INDEX orders_by_event ON orders (event_id);
DROP INDEX events_cancellations_in_progress;
ALTER TABLE events DROP COLUMN cancelled_at, DROP COLUMN cancellation_settled_at;
-- Pending refund jobs go back to the payload the old worker reads.
UPDATE outbox ob SET payload = jsonb_build_object('order_id', r.order_id, 'amount', r.amount_units, 'reason', r.reason)
  FROM refunds r WHERE ob.kind = 'refund' AND ob.status = 'pending' AND (ob.payload ->> 'refund_id')::uuid = r.id;
DROP TABLE refunded_tickets;
DROP TABLE refunds;
ALTER TABLE orders DROP CONSTRAINT orders_refunds_within_total, DROP COLUMN refunded_units;
ALTER TABLE payments DROP COLUMN payment_type;
