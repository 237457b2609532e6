-- Identity (issue 14): TOTP second factor, recovery codes, admin-issued
-- set-password links, and what a session list shows.
CREATE TABLE user_mfa (
    user_id       BLOB PRIMARY KEY NOT NULL REFERENCES users(id),
    -- AES-256-GCM of the base32 secret under a key derived from
    -- JWT_REFRESH_SECRET (outside the database): nonce || ciphertext, base64.
    secret_enc    TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    -- Set when the first code was confirmed; until then MFA is not enforced.
    confirmed_at  TEXT,
    -- The last accepted RFC 6238 time step: a code of this step or an
    -- earlier one is refused (replay).
    last_step     INTEGER
);

CREATE TABLE mfa_recovery_codes (
    id         BLOB PRIMARY KEY NOT NULL,
    user_id    BLOB NOT NULL REFERENCES users(id),
    code_hash  TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    used_at    TEXT
);
CREATE INDEX mfa_recovery_codes_user ON mfa_recovery_codes(user_id);

CREATE TABLE password_resets (
    id          BLOB PRIMARY KEY NOT NULL,
    user_id     BLOB NOT NULL REFERENCES users(id),
    token_hash  TEXT NOT NULL UNIQUE,
    created_by  BLOB NOT NULL REFERENCES users(id),
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    used_at     TEXT
);
CREATE INDEX password_resets_user ON password_resets(user_id);

ALTER TABLE sessions ADD COLUMN user_agent TEXT;
ALTER TABLE sessions ADD COLUMN client_ip TEXT;
ALTER TABLE sessions ADD COLUMN last_active_at TEXT;
