-- Reverting drops the key ids: keyed events then no longer verify with this
-- schema (an older release verifies plain SHA-256 only).
ALTER TABLE audit_events DROP COLUMN key_id;
