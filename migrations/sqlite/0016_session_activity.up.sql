-- One "last activity" column per session: `last_seen_at` (0010, written on
-- requests and refreshes, read by the inactivity limit) absorbs
-- `last_active_at` (0008, written on refreshes, shown in the session list),
-- keeping whichever of the two is newer. Timestamps are RFC 3339 text in UTC
-- ("+00:00"), so text order is time order.
UPDATE sessions SET last_seen_at = last_active_at
    WHERE last_active_at IS NOT NULL
      AND (last_seen_at IS NULL OR last_active_at > last_seen_at);
ALTER TABLE sessions DROP COLUMN last_active_at;
