ALTER TABLE user_auth_sessions DROP COLUMN refresh_attempts;
ALTER TABLE user_auth_sessions DROP COLUMN refresh_claimed_until;
ALTER TABLE user_auth_sessions DROP COLUMN refresh_claimed_by;
