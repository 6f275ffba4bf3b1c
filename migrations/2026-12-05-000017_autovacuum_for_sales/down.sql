ALTER TABLE tickets RESET (autovacuum_vacuum_insert_scale_factor, autovacuum_analyze_scale_factor);
ALTER TABLE orders RESET (autovacuum_vacuum_insert_scale_factor, autovacuum_vacuum_scale_factor,
                          autovacuum_analyze_scale_factor);
ALTER TABLE order_items RESET (autovacuum_vacuum_insert_scale_factor, autovacuum_analyze_scale_factor);
ALTER TABLE payments RESET (autovacuum_vacuum_insert_scale_factor, autovacuum_vacuum_scale_factor);
ALTER TABLE checkins RESET (autovacuum_vacuum_insert_scale_factor, autovacuum_analyze_scale_factor);
ALTER TABLE scans RESET (autovacuum_vacuum_insert_scale_factor, autovacuum_analyze_scale_factor);
