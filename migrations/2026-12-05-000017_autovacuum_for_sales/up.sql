-- Autovacuum sized for an on-sale, on the tables a sale fills. Postgres
-- vacuums a table after inserts of 20 % of its rows (and analyzes it after
-- changes to 10 %): on a tickets table of a million rows, a 50,000-seat sale
-- is never vacuumed before the doors open, and the gate's first reads of the
-- sold tickets set their hint bits and wait behind a vacuum of 200,000 rows'
-- worth of pages. ci/bench measured exactly that on an unsettled seed
-- (SETTLE=0 --scale large: a 7 s autovacuum of tickets and 41,061 of its
-- blocks read inside check-in's 20 s window; loadtest/README). At 1 %, each
-- pass covers the last ~10,000 rows sold (a vacuum after inserts visits only
-- pages not yet all-visible), and the planner's statistics follow the sale.
-- Set per table, so every deployment (ci/stack, the Patroni cluster,
-- Kubernetes) gets them with the schema.
ALTER TABLE tickets SET (autovacuum_vacuum_insert_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.01);
ALTER TABLE orders SET (autovacuum_vacuum_insert_scale_factor = 0.01, autovacuum_vacuum_scale_factor = 0.02,
                        autovacuum_analyze_scale_factor = 0.01);
ALTER TABLE order_items SET (autovacuum_vacuum_insert_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.01);
ALTER TABLE payments SET (autovacuum_vacuum_insert_scale_factor = 0.01, autovacuum_vacuum_scale_factor = 0.02);
ALTER TABLE checkins SET (autovacuum_vacuum_insert_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.01);
ALTER TABLE scans SET (autovacuum_vacuum_insert_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.01);
