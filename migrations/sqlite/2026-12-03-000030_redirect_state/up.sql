-- The OAuth redirect flow's secrets for a pending oauth_redirect session.
-- oauth_state_hash is the hex SHA-256 of the `state` sent to the authorize
-- page: the callback finds its session by it, and the value itself (which
-- travels in the user's browser) is never stored. pkce_verifier_enc is the
-- PKCE code verifier, sealed by the vault like the tokens. Both are
-- cleared when the session completes, so a state works at most once.
ALTER TABLE user_auth_sessions ADD COLUMN oauth_state_hash TEXT;
ALTER TABLE user_auth_sessions ADD COLUMN pkce_verifier_enc TEXT;
CREATE UNIQUE INDEX user_auth_sessions_oauth_state_hash ON user_auth_sessions (oauth_state_hash);
