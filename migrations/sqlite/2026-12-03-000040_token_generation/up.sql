-- Which stored token pair a row holds: bumped every time tokens are
-- stored (completion, refresh, revocation). A transition made because a
-- token was refused (the sync's reauth_required, a refused refresh) names
-- the generation it tried and applies only while the row still holds it,
-- so a pair stored meanwhile by another worker is never condemned.
ALTER TABLE user_auth_sessions ADD COLUMN token_generation BIGINT NOT NULL DEFAULT 0;
