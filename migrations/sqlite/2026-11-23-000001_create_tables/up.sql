-- Timestamps are UTC, stored without a zone (diesel `Timestamp`), the same
-- type on both backends so one query code path serves both.

CREATE TABLE user_auth_sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL UNIQUE,
    app_id TEXT NOT NULL,
    user_id TEXT,
    open_id TEXT,
    union_id TEXT,
    user_name TEXT,
    email TEXT,
    avatar_url TEXT,
    auth_method TEXT NOT NULL CHECK (auth_method IN ('websocket_card', 'oauth_redirect', 'device_code')),
    state TEXT NOT NULL CHECK (state IN ('pending', 'completed', 'expired', 'failed', 'revoked', 'reauth_required')),
    access_token_enc TEXT,
    refresh_token_enc TEXT,
    scope TEXT,
    token_expires_at TIMESTAMP,
    refresh_expires_at TIMESTAMP,
    expires_at TIMESTAMP NOT NULL,
    error TEXT,
    message_id TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    completed_at TIMESTAMP,
    last_synced_at TIMESTAMP
);
CREATE INDEX user_auth_sessions_open_id ON user_auth_sessions (open_id, state);
CREATE INDEX user_auth_sessions_state_expiry ON user_auth_sessions (state, token_expires_at);
CREATE INDEX user_auth_sessions_pending ON user_auth_sessions (state, expires_at);

CREATE TABLE processed_events (
    event_id TEXT PRIMARY KEY,
    event_type TEXT NOT NULL,
    received_at TIMESTAMP NOT NULL
);
CREATE INDEX processed_events_received_at ON processed_events (received_at);

CREATE TABLE sync_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    "trigger" TEXT NOT NULL CHECK ("trigger" IN ('cron', 'admin')),
    started_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP,
    users_total BIGINT NOT NULL DEFAULT 0,
    users_updated BIGINT NOT NULL DEFAULT 0,
    users_failed BIGINT NOT NULL DEFAULT 0,
    error TEXT
);

CREATE TABLE device_tokens (
    profile TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    client_id TEXT,
    access_token_enc TEXT,
    refresh_token_enc TEXT,
    expires_at TIMESTAMP,
    updated_at TIMESTAMP NOT NULL
);
