-- Keyed audit chain: the key that computed each event's hash.
-- NULL = a legacy event hashed with plain SHA-256 (written before this
-- migration); otherwise the id of the AUDIT_KEY whose HMAC-SHA256 it carries.
-- A legacy event after a keyed one breaks the chain (see store::audit).
ALTER TABLE audit_events ADD COLUMN key_id TEXT;
