DROP INDEX tickets_by_event;
DROP TABLE reports;
DROP TABLE outbox;
DROP TABLE payment_notifications;
DROP TABLE payments;
DROP TABLE event_signing_keys;
