//! HTTP clients for the Feishu/Lark open platform.
//!
//! Plain async `reqwest` code with no actix types: actors hold a
//! [`LarkClient`] and call it, and tests point it at the simulator.
//!
//! - [`client`]: the client, the answer shapes, [`LarkError`] and its
//!   classifiers (retry? new token? re-authorize?).
//! - [`auth_api`]: app tokens, the OAuth authorize URL, user tokens (v1 and
//!   v2), user profile.
//! - [`im_api`]: send and update interactive cards.
//! - [`aily_api`]: Aily sessions, messages and runs as a user.
//! - [`codes`]: the platform error codes, shared with the simulator.
//! - [`pace`]: the rate-limit hold that concurrent callers share.

pub mod aily_api;
pub mod auth_api;
pub mod client;
pub mod codes;
mod de;
pub mod im_api;
pub mod pace;

pub use client::{ApiRequest, LarkClient, LarkError};

#[cfg(test)]
mod sim_tests;
