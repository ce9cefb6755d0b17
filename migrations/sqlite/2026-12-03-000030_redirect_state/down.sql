DROP INDEX user_auth_sessions_oauth_state_hash;
ALTER TABLE user_auth_sessions DROP COLUMN pkce_verifier_enc;
ALTER TABLE user_auth_sessions DROP COLUMN oauth_state_hash;
