//! Keeping tokens fresh: the app's own tokens ([`app_token_cache`]) and
//! users' tokens ([`token_refresher`]).

pub mod app_token_cache;
pub mod token_refresher;
