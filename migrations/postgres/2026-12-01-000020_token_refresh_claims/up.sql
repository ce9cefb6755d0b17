-- The token refresher's claim on a session (a lease). A refresh token is
-- single use, so a session is refreshed only by the worker named in
-- refresh_claimed_by, and only while refresh_claimed_until is ahead; the
-- new tokens are written, and the claim released, in one statement.
-- With no claimer, refresh_claimed_until is the earliest time of the next
-- attempt (the backoff after a failed one). refresh_attempts counts the
-- failed attempts since the last success.
ALTER TABLE user_auth_sessions ADD COLUMN refresh_claimed_by TEXT;
ALTER TABLE user_auth_sessions ADD COLUMN refresh_claimed_until TIMESTAMP;
ALTER TABLE user_auth_sessions ADD COLUMN refresh_attempts INTEGER NOT NULL DEFAULT 0;
