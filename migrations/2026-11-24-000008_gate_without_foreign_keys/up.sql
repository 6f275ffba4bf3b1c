-- No foreign keys on the gate's tables. Each one made every check-in lock
-- the row it points to (FOR KEY SHARE): the ticket's row, written to the WAL
-- with a full-page image of its page after every checkpoint, and the
-- event's and scanners' rows, shared by both redeem lanes at once (a
-- multixact each time). At 4,000 scans/s they were 32 % of the gate's WAL
-- (91 → 62 MB for 80,000 scans), ~7 % of its database CPU and most of its
-- p99 (70–104 → 53–56 ms, runs alternated); and a scan waited for any
-- transaction holding the event row, such as an organizer's edit.
-- Both tables are written only by the gate function (`redeem_ticket`,
-- migration `checkin`) and the offline sync, which read the scanner and the
-- ticket they record first; tickets, events and scanners are never deleted
-- (voided, cancelled, revoked instead). The guarantee that matters, one
-- admission per ticket, is the primary key of `checkins`.
ALTER TABLE checkins
    DROP CONSTRAINT checkins_ticket_id_fkey,
    DROP CONSTRAINT checkins_event_id_fkey,
    DROP CONSTRAINT checkins_scanner_id_fkey;
ALTER TABLE scans DROP CONSTRAINT scans_scanner_id_fkey;
