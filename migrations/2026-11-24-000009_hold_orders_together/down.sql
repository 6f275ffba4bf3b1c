DROP FUNCTION hold_orders;
