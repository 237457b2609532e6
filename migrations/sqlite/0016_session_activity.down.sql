-- Restore the second column, filled from the one kept (the newer of the two
-- was kept, so both columns read the same after reverting).
ALTER TABLE sessions ADD COLUMN last_active_at TEXT;
UPDATE sessions SET last_active_at = last_seen_at;
