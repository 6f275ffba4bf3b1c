-- Which Snap payment methods an event offers, and how long a buyer who
-- picks one has to pay ({"enabledMethods": [...], "holdMinutesByMethod": {...}}).
ALTER TABLE events ADD COLUMN payment jsonb;

-- A card capture held for the merchant's fraud review waits for a decision.
ALTER TABLE payments DROP CONSTRAINT payments_status_check,
    ADD CONSTRAINT payments_status_check
        CHECK (status IN ('pending', 'challenged', 'paid', 'failed', 'refund_pending', 'refunded'));
