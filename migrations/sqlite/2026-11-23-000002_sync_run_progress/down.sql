DROP INDEX user_auth_sessions_state_id;
ALTER TABLE sync_runs DROP COLUMN users_done;
ALTER TABLE sync_runs DROP COLUMN status;
