//! AI calls as a user: `call_ai_api(user_id, prompt)` on the platform's AI
//! surface that accepts a user token, Aily (§7 of the protocol notes).
//!
//! - [`apaas_client`]: the `ApaasClient` actor, one message per call.
//! - [`error`]: `ApaasError`, what a caller (and an operator) can act on.

pub mod apaas_client;
pub mod error;
