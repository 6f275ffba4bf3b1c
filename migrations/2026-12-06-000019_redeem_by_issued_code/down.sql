-- Replicas of the earlier release call the six-argument function, which stays.
DROP FUNCTION redeem_tickets(uuid[], bytea[], uuid[], bytea[], text[], timestamptz[], text[]);
