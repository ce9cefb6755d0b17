//! Keeping tokens fresh: the app's own tokens, and (later) users' tokens.

pub mod app_token_cache;
