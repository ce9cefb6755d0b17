//! User authorization: the token vault, sessions, and the ways a user
//! authorizes the app (card click, OAuth redirect, device code).

pub mod card;
pub mod card_auth;
pub mod card_updates;
pub mod device_logins;
pub mod error;
pub mod redirect;
pub mod registry;
pub mod rekey;
pub mod vault;
