ALTER FUNCTION redeem_tickets(uuid[], bytea[], uuid[], text[], timestamptz[], text[]) RESET enable_seqscan;
