ALTER TABLE events DROP COLUMN payment;
