-- pgbench: the hot-row transaction of shared/PERF.md (one counter row, the
-- conditional UPDATE last before COMMIT, plus the order's INSERT), the
-- database's ceiling for one category without buckets. ci/bench runs it
-- through PgBouncer beside the scenarios.
\set quantity random(1, 4)
BEGIN;
INSERT INTO hot_row_orders (quantity) VALUES (:quantity);
UPDATE hot_row_stock SET sold = sold + :quantity WHERE id = 1 AND sold + :quantity <= capacity;
COMMIT;
