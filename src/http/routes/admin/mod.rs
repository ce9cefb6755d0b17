//! `/admin/*`: the operator API, behind the bearer token.

pub mod actors;
pub mod apaas;
pub mod auth_cards;
pub mod device_logins;
pub mod outbox;
pub mod sessions;
pub mod sync;
