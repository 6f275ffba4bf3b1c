-- Which Snap payment methods an event offers, and how long a buyer who
-- picks one has to pay ({"enabledMethods": [...], "holdMinutesByMethod": {...}}).
ALTER TABLE events ADD COLUMN payment jsonb;
