ALTER TABLE sessions DROP COLUMN last_active_at;
ALTER TABLE sessions DROP COLUMN client_ip;
ALTER TABLE sessions DROP COLUMN user_agent;
DROP TABLE password_resets;
DROP TABLE mfa_recovery_codes;
DROP TABLE user_mfa;
