DROP TABLE tickets;
DROP TABLE order_items;
DROP TABLE orders;
DROP TABLE inventory_buckets;
