ALTER TABLE user_auth_sessions DROP COLUMN token_generation;
