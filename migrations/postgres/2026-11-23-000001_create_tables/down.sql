DROP TABLE device_tokens;
DROP TABLE sync_runs;
DROP TABLE processed_events;
DROP TABLE user_auth_sessions;
