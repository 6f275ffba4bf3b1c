DROP FUNCTION redeem_tickets;
DROP FUNCTION redeem_ticket;
DROP TABLE scans;
DROP TABLE checkins;
DROP TABLE scanners;
DROP INDEX tickets_manifest;
ALTER TABLE tickets DROP COLUMN version;
