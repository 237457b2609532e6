-- Identity (issue 14): TOTP second factor, recovery codes, admin-issued
-- set-password links, and what a session list shows.
CREATE TABLE user_mfa (
    user_id       UUID PRIMARY KEY REFERENCES users(id),
    -- AES-256-GCM of the base32 secret under a key derived from
    -- JWT_REFRESH_SECRET (outside the database): nonce || ciphertext, base64.
    secret_enc    TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    -- Set when the first code was confirmed; until then MFA is not enforced.
    confirmed_at  TIMESTAMPTZ,
    -- The last accepted RFC 6238 time step: a code of this step or an
    -- earlier one is refused (replay).
    last_step     BIGINT
);

CREATE TABLE mfa_recovery_codes (
    id         UUID PRIMARY KEY,
    user_id    UUID NOT NULL REFERENCES users(id),
    code_hash  TEXT NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL,
    used_at    TIMESTAMPTZ
);
CREATE INDEX mfa_recovery_codes_user ON mfa_recovery_codes(user_id);

CREATE TABLE password_resets (
    id          UUID PRIMARY KEY,
    user_id     UUID NOT NULL REFERENCES users(id),
    token_hash  TEXT NOT NULL UNIQUE,
    created_by  UUID NOT NULL REFERENCES users(id),
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    used_at     TIMESTAMPTZ
);
CREATE INDEX password_resets_user ON password_resets(user_id);

ALTER TABLE sessions ADD COLUMN user_agent TEXT;
ALTER TABLE sessions ADD COLUMN client_ip TEXT;
ALTER TABLE sessions ADD COLUMN last_active_at TIMESTAMPTZ;
