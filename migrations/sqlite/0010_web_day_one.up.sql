-- Web day one: the last request of each session, for the inactivity limit
-- (AMAL_IDLE_TIMEOUT). NULL for sessions opened before this migration: their
-- creation time stands in.
ALTER TABLE sessions ADD COLUMN last_seen_at TEXT;
