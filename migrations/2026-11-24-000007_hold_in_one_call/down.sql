DROP FUNCTION hold_order;
DROP FUNCTION take_tickets;
