ALTER TABLE checkins
    ADD CONSTRAINT checkins_ticket_id_fkey FOREIGN KEY (ticket_id) REFERENCES tickets (id),
    ADD CONSTRAINT checkins_event_id_fkey FOREIGN KEY (event_id) REFERENCES events (id),
    ADD CONSTRAINT checkins_scanner_id_fkey FOREIGN KEY (scanner_id) REFERENCES scanners (id);
ALTER TABLE scans ADD CONSTRAINT scans_scanner_id_fkey FOREIGN KEY (scanner_id) REFERENCES scanners (id);
