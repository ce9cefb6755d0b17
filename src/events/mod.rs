//! Events from the open platform, whichever way they arrive.
//!
//! - [`envelope`]: the JSON envelope (schema 2.0 or legacy 1.0), typed card
//!   actions and the callback reply shape.
//! - [`webhook`]: signature, decryption and challenge rules of the HTTP
//!   callback fallback.
//! - [`ledger`]: the dedup ledger, with group commit.
//! - [`recent`]: recent ids of events nobody handles, for their dedup.
//! - [`router`]: the one door every event comes through.

pub mod envelope;
pub mod ledger;
pub mod recent;
pub mod router;
pub mod webhook;

pub use envelope::{CallbackResponse, CardAction, Envelope, EnvelopeError, EventId};
pub use webhook::{parse_webhook, WebhookConfig, WebhookError, WebhookHeaders, WebhookInput};
