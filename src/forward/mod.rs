//! Forwarding the app's events to the operator's systems, durably.
//!
//! - [`config`]: `FORWARD_SINKS`, checked at start-up; [`address`]: sink
//!   URLs, masked wherever they are shown.
//! - [`sink`], [`http_sink`], [`nats_sink`]: the destinations.
//! - [`payload`]: what a sink gets of an event (no verification token).
//! - [`outbox`]: the `Outbox` actor, which delivers queued rows with
//!   retries, leases and dead letters.
//! - [`card_callback`]: card callbacks for cards that are not ours, answered
//!   by a sink within the platform's deadline.
//!
//! The contract is at least once: the router writes an `event_outbox` row
//! in the same transaction as the event's dedup-ledger row and only then
//! acks the platform, so an acked event is never lost; a crash after a
//! delivery but before it is marked means it is delivered again.

pub mod address;
pub mod card_callback;
pub mod config;
pub mod http_sink;
pub mod nats_sink;
pub mod outbox;
pub mod payload;
pub mod sink;

use std::sync::Arc;

use tokio::sync::Notify;

use crate::db::models::outbox_event::NewOutboxEvent;
use crate::events::envelope::Envelope;
use config::ForwardSettings;

/// Event types never queued: card callbacks are requests that need an
/// answer now (see [`card_callback`]), not events to pass on later.
pub const NOT_QUEUED: &[&str] = &[crate::auth::card_auth::CARD_ACTION];

/// What the router needs to queue events: the sinks' patterns and a way
/// to wake the outbox once rows are committed.
#[derive(Clone, Default)]
pub struct Forwarding {
    settings: Arc<ForwardSettings>,
    wake: Arc<Notify>,
}

impl Forwarding {
    pub fn new(settings: ForwardSettings) -> Self {
        Self {
            settings: Arc::new(settings),
            wake: Arc::new(Notify::new()),
        }
    }

    pub fn settings(&self) -> &ForwardSettings {
        &self.settings
    }

    /// The outbox rows for `envelope`, one per sink that takes its type.
    pub fn rows_for(&self, envelope: &Envelope) -> Vec<NewOutboxEvent> {
        if NOT_QUEUED.contains(&envelope.event_type.as_str()) {
            return Vec::new();
        }
        let mut sinks = self.settings.sinks_for(&envelope.event_type).peekable();
        if sinks.peek().is_none() {
            return Vec::new();
        }
        let Some(payload) = payload::for_sinks(envelope) else {
            crate::metrics::bad_input("forward", "unparsable_envelope");
            tracing::error!(event_id = %envelope.event_id, "an envelope that parsed once no longer does; not forwarded");
            return Vec::new();
        };
        sinks
            .map(|sink| {
                NewOutboxEvent::pending(
                    envelope.event_id.as_str(),
                    &envelope.event_type,
                    &sink.name,
                    &payload,
                )
            })
            .collect()
    }

    /// Tell the outbox that rows are waiting.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Resolves at the next [`wake`](Self::wake) (or at once if one came
    /// while nobody was waiting).
    pub async fn woken(&self) {
        self.wake.notified().await;
    }
}
