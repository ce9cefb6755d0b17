-- A run's live state, so any replica can answer GET /admin/sync/{id}:
-- status is running | finished | failed | skipped (another replica held
-- the sync lock); users_done counts the users visited so far.
ALTER TABLE sync_runs ADD COLUMN status TEXT NOT NULL DEFAULT 'finished';
ALTER TABLE sync_runs ADD COLUMN users_done BIGINT NOT NULL DEFAULT 0;
-- Keyset paging of completed sessions by id.
CREATE INDEX user_auth_sessions_state_id ON user_auth_sessions (state, id);
