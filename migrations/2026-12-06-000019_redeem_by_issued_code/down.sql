-- Replicas of the earlier release call the six-argument function, which stays.
DROP FUNCTION redeem_tickets(uuid[], bytea[], uuid[], text[], text[], timestamptz[], text[]);
