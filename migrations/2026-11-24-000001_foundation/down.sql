DROP TABLE ticket_categories;
DROP TABLE events;
DROP TABLE users;
