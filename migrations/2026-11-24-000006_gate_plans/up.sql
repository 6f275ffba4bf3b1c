-- The gate's function keeps its statements' plans per server connection
-- (migration `checkin`), so a plan made when the statistics said `checkins`
-- and `scanners` were empty or tiny — an event's first minutes, or any
-- database analyzed before its first event night — is a sequential scan,
-- and stays one while `checkins` grows by thousands of rows a minute.
-- ci/bench checkin measured it: 740 µs of Postgres CPU a scan instead of 150,
-- every scan reading the whole table. Every statement inside is a key
-- lookup, so the plans are made with sequential scans priced out.
ALTER FUNCTION redeem_tickets(uuid[], bytea[], uuid[], text[], timestamptz[], text[]) SET enable_seqscan = off;
