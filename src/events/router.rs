//! `EventRouter`: the one door every event comes through, from the long
//! connection and the webhook alike.
//!
//! For each event it parses the envelope, drops duplicates (an id already
//! handled, here or by another replica, per the dedup [`Ledger`]), makes a
//! copy that arrives while the first is still being handled wait for the
//! first's outcome (acking it before the first is durable would lose the
//! event if the first then failed), runs the handler registered for its type under a
//! concurrency limit and a timeout well inside the platform's 3 s ack
//! deadline, records the id once the handler succeeded, and answers with the
//! outcome the caller turns into an ack frame or an HTTP response.
//!
//! Events that a forwarding sink takes are queued in the outbox in the
//! same transaction as their ledger row (see [`crate::forward`]), so the
//! ack means "handled here, or durably queued for the sinks".
//!
//! Delivery is at least once: the id is recorded only after the handler
//! succeeded, so a crash between the two means the platform redelivers and
//! the handler runs again, rather than the event being lost.
//!
//! Events no handler or sink takes are not written to the ledger; their ids
//! go into a bounded in-memory [`RecentIds`] set instead, so a redelivery of
//! one is still a duplicate. Each delivery is counted once: in
//! `lark_events_total` by outcome, or, when it is a duplicate, only in
//! `lark_events_duplicate_total`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde_json::Value;
use tokio::sync::{oneshot, Semaphore};
use tracing::Instrument;

use super::envelope::Envelope;
use super::ledger::{IsProcessed, Ledger, RecordProcessed};
use super::recent::RecentIds;
use crate::db::models::processed_event::ProcessedEvent;
use crate::forward::Forwarding;
use crate::metrics::{EVENTS, EVENTS_DUPLICATE, EVENT_HANDLE_SECONDS};
use crate::supervise::{Lifecycle, Managed};

pub const NAME: &str = "event_router";

/// Handlers get this long; the platform re-pushes after 3 s without an ack.
pub const HANDLER_TIMEOUT: Duration = Duration::from_millis(2500);
/// Events handled at once; more wait for a slot.
pub const MAX_CONCURRENT: usize = 256;

/// A handler's failure; logged, counted and answered with code 500.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HandlerError(pub String);

/// What a handler returns: an optional callback response (toast/card JSON).
pub type HandlerResult = Result<Option<Value>, HandlerError>;
pub type HandlerFuture = Pin<Box<dyn Future<Output = HandlerResult> + Send>>;

/// Something that handles one event type.
pub trait EventHandler: Send + Sync + 'static {
    fn handle(&self, event: Arc<Envelope>) -> HandlerFuture;
}

impl<F, Fut> EventHandler for F
where
    F: Fn(Arc<Envelope>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
{
    fn handle(&self, event: Arc<Envelope>) -> HandlerFuture {
        Box::pin(self(event))
    }
}

/// Handlers by event type, fixed at start-up.
#[derive(Clone, Default)]
pub struct Handlers {
    by_type: HashMap<String, Arc<dyn EventHandler>>,
}

impl Handlers {
    pub fn on(mut self, event_type: impl Into<String>, handler: impl EventHandler) -> Self {
        self.by_type.insert(event_type.into(), Arc::new(handler));
        self
    }

    pub fn get(&self, event_type: &str) -> Option<Arc<dyn EventHandler>> {
        self.by_type.get(event_type).cloned()
    }
}

/// Where an event came from, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventSource {
    WebSocket,
    Webhook,
}

impl EventSource {
    fn as_str(self) -> &'static str {
        match self {
            Self::WebSocket => "websocket",
            Self::Webhook => "webhook",
        }
    }
}

/// Route one event (the decrypted envelope JSON).
#[derive(Message)]
#[rtype(result = "Routed")]
pub struct RouteEvent {
    pub payload: Vec<u8>,
    pub source: EventSource,
}

/// The router's answer: what became of the event, and whether it is a
/// callback.
#[derive(Debug, Clone, PartialEq)]
pub struct Routed {
    pub outcome: RouteOutcome,
    /// The envelope is a `card.action.trigger`, whatever frame or request
    /// carried it. Its answer must carry a JSON body (at least `{}`) for
    /// every outcome, duplicates and failures included, or the user sees
    /// error 108002/200340 (larksuite/cli#2456; larksuite/cli answers
    /// `CardActionTriggerResponse{}` when it has nothing to say).
    pub callback: bool,
}

/// What became of an event.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteOutcome {
    /// Handled now; the callback response, if the handler gave one.
    Handled(Option<Value>),
    /// Already handled (by another copy, here or elsewhere): acknowledge,
    /// do nothing.
    Duplicate,
    /// No handler and no sink for this type: acknowledged and dropped.
    Unhandled,
    /// The handler failed or timed out: answer 500 so the platform
    /// delivers it again.
    Failed(String),
    /// The dedup ledger (the database) could not be reached, so the event
    /// was not recorded and must not be acknowledged at all: over the long
    /// connection no ack is sent (the platform redelivers what it has no
    /// ack for), over the webhook the answer is 503.
    Unavailable(String),
    /// Not an event envelope at all.
    Rejected(String),
}

impl RouteOutcome {
    /// The HTTP-style code for the ack frame / webhook response.
    pub fn code(&self) -> u16 {
        match self {
            Self::Handled(_) | Self::Duplicate | Self::Unhandled => 200,
            Self::Failed(_) => 500,
            Self::Unavailable(_) => 503,
            Self::Rejected(_) => 400,
        }
    }

    /// The callback response body, if any.
    pub fn body(&self) -> Option<&Value> {
        match self {
            Self::Handled(body) => body.as_ref(),
            _ => None,
        }
    }

    /// What a copy that waited for this outcome answers: the first one's
    /// failure (so the platform redelivers), otherwise a duplicate.
    fn for_copy(self) -> Self {
        match self {
            Self::Failed(reason) => Self::Failed(reason),
            Self::Unavailable(reason) => Self::Unavailable(reason),
            _ => Self::Duplicate,
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Self::Handled(_) => "ok",
            Self::Duplicate => "duplicate",
            Self::Unhandled => "unhandled",
            Self::Failed(_) => "error",
            Self::Unavailable(_) => "unavailable",
            Self::Rejected(_) => "rejected",
        }
    }
}

pub struct EventRouter {
    handlers: Handlers,
    ledger: Addr<Ledger>,
    forwarding: Forwarding,
    slots: Arc<Semaphore>,
    /// Ids being handled now, with the copies waiting for the outcome.
    in_flight: HashMap<String, Vec<oneshot::Sender<RouteOutcome>>>,
    /// Recent ids of events nobody takes; kept across restarts.
    unhandled: RecentIds,
    lifecycle: Lifecycle,
}

impl EventRouter {
    pub fn new(handlers: Handlers, ledger: Addr<Ledger>, forwarding: Forwarding) -> Self {
        Self {
            handlers,
            ledger,
            forwarding,
            slots: Arc::new(Semaphore::new(MAX_CONCURRENT)),
            in_flight: HashMap::new(),
            unhandled: RecentIds::default(),
            lifecycle: Lifecycle::new(NAME),
        }
    }
}

impl Managed for EventRouter {
    const NAME: &'static str = NAME;

    fn on_start(&mut self, _: &mut Context<Self>) {}

    fn on_restart(&mut self) {
        // Dropping the waiters' senders answers them `Failed`.
        self.in_flight.clear();
    }

    fn in_flight(&self) -> u64 {
        self.in_flight.len() as u64
    }
}

crate::managed_actor!(EventRouter);

impl Handler<RouteEvent> for EventRouter {
    type Result = ResponseActFuture<Self, Routed>;

    fn handle(&mut self, msg: RouteEvent, _: &mut Context<Self>) -> Self::Result {
        let started = Instant::now();
        let envelope = match Envelope::parse(msg.payload) {
            Ok(e) => Arc::new(e),
            Err(e) => {
                crate::metrics::bad_input(msg.source.as_str(), "bad_envelope");
                tracing::warn!(source = msg.source.as_str(), error = %e, "rejected an event that is not an envelope");
                let outcome = RouteOutcome::Rejected(e.to_string());
                count(&outcome, "unknown", started);
                return Box::pin(fut::ready(Routed {
                    outcome,
                    callback: false,
                }));
            }
        };
        let callback = envelope.is_card_action();
        let routed = move |outcome| Routed { outcome, callback };
        let event_id = envelope.event_id.as_str().to_owned();
        let event_type = envelope.event_type.clone();
        let span =
            tracing::info_span!("event", %event_id, %event_type, source = msg.source.as_str());

        let handler = self.handlers.get(&event_type);
        let outbox = self.forwarding.rows_for(&envelope);
        if handler.is_none() && outbox.is_empty() {
            let outcome = if self.unhandled.insert(&event_id) {
                RouteOutcome::Unhandled
            } else {
                RouteOutcome::Duplicate
            };
            span.in_scope(|| {
                tracing::debug!(outcome = outcome.label(), "no handler for this event type")
            });
            count(&outcome, &event_type, started);
            return Box::pin(fut::ready(routed(outcome)));
        }
        if let Some(waiters) = self.in_flight.get_mut(&event_id) {
            let (tx, rx) = oneshot::channel();
            waiters.push(tx);
            span.in_scope(|| tracing::debug!("copy of an event being handled; waiting for it"));
            return Box::pin(fut::wrap_future(async move {
                let outcome = match rx.await {
                    Ok(first) => first.for_copy(),
                    Err(_) => RouteOutcome::Failed("the event router restarted".into()),
                };
                count(&outcome, &event_type, started);
                routed(outcome)
            }));
        }
        self.in_flight.insert(event_id.clone(), Vec::new());

        let ledger = self.ledger.clone();
        let forwarding = self.forwarding.clone();
        let slots = self.slots.clone();
        let work = {
            let event_id = event_id.clone();
            let event_type = event_type.clone();
            async move {
                // The semaphore is never closed, so acquiring only waits.
                let _slot = slots.acquire_owned().await;
                match ledger
                    .send(IsProcessed {
                        event_id: event_id.clone(),
                    })
                    .await
                {
                    Ok(Ok(true)) => return RouteOutcome::Duplicate,
                    Ok(Ok(false)) => {}
                    Ok(Err(e)) => return RouteOutcome::Unavailable(e.to_string()),
                    Err(e) => {
                        return RouteOutcome::Unavailable(format!("dedup ledger unavailable: {e}"))
                    }
                }
                let body = match handler {
                    None => None,
                    Some(handler) => {
                        match tokio::time::timeout(HANDLER_TIMEOUT, handler.handle(envelope)).await
                        {
                            Ok(Ok(body)) => body,
                            Ok(Err(e)) => return RouteOutcome::Failed(e.to_string()),
                            Err(_) => {
                                return RouteOutcome::Failed(format!(
                                    "handler timed out after {HANDLER_TIMEOUT:?}"
                                ))
                            }
                        }
                    }
                };
                let queued = !outbox.is_empty();
                let row = ProcessedEvent {
                    event_id,
                    event_type,
                    received_at: crate::db::now(),
                };
                match ledger.send(RecordProcessed { event: row, outbox }).await {
                    Ok(Ok(_)) => {
                        if queued {
                            forwarding.wake();
                        }
                        RouteOutcome::Handled(body)
                    }
                    Ok(Err(e)) => RouteOutcome::Unavailable(e.to_string()),
                    Err(e) => RouteOutcome::Unavailable(format!("dedup ledger unavailable: {e}")),
                }
            }
            .instrument(span.clone())
        };
        Box::pin(work.into_actor(self).map(move |outcome, act, _| {
            for waiter in act.in_flight.remove(&event_id).unwrap_or_default() {
                // A waiter that gave up (its caller went away) needs no answer.
                let _ = waiter.send(outcome.clone());
            }
            span.in_scope(|| match &outcome {
                RouteOutcome::Failed(reason) | RouteOutcome::Unavailable(reason) => {
                    tracing::warn!(%reason, "event not handled; the platform will redeliver")
                }
                RouteOutcome::Duplicate => tracing::info!("duplicate event dropped"),
                _ => tracing::debug!(outcome = outcome.label(), "event routed"),
            });
            count(&outcome, &event_type, started);
            routed(outcome)
        }))
    }
}

/// Count a delivery once: a duplicate only as a duplicate, so that
/// `lark_events_total` counts each event once however often it arrives.
fn count(outcome: &RouteOutcome, event_type: &str, started: Instant) {
    if matches!(outcome, RouteOutcome::Duplicate) {
        metrics::counter!(EVENTS_DUPLICATE).increment(1);
    } else {
        metrics::counter!(EVENTS, "event_type" => event_type.to_owned(), "outcome" => outcome.label())
            .increment(1);
    }
    metrics::histogram!(EVENT_HANDLE_SECONDS).record(started.elapsed().as_secs_f64());
}
