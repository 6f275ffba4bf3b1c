UPDATE payments SET status = 'pending' WHERE status = 'challenged';
ALTER TABLE payments DROP CONSTRAINT payments_status_check,
    ADD CONSTRAINT payments_status_check CHECK (status IN ('pending', 'paid', 'failed', 'refund_pending', 'refunded'));
ALTER TABLE events DROP COLUMN payment;
