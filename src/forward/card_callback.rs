//! Card callbacks for cards that are not ours.
//!
//! A `card.action.trigger` whose value carries no authorization session
//! belongs to some other card the app sent (a form, a poll…). When a sink
//! takes `card.action.trigger`, such a callback goes to it as a request: its
//! answer (the HTTP response body, or the NATS reply) must come within
//! [`DEADLINE`] and becomes the callback response (toast and/or card). A
//! sink that is slow or down gets the user a neutral toast instead of an
//! error, and the miss is logged and counted; the event is recorded in the
//! dedup ledger like any other, so a redelivery is not asked again. The sink
//! gets the envelope without its verification token (see
//! [`super::payload`]), and its answer may be at most
//! [`super::sink::MAX_REPLY_BYTES`]; a larger one is a failed answer.
//! Authorization cards still go to `CardAuth`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Addr;
use serde_json::{json, Value};

use super::sink::{Delivery, Sink};
use crate::auth::card::session_id_from_action;
use crate::auth::card_auth::{card_action_handler, CardAuth};
use crate::events::envelope::Envelope;
use crate::events::router::EventHandler;
use crate::metrics::{FORWARD_SECONDS, FORWARD_TOTAL};

/// The sink's answer must arrive within this; the router's own handler
/// timeout (and the platform's 3 s) come after it.
pub const DEADLINE: Duration = Duration::from_millis(2_300);

/// What the user sees when the sink did not answer in time.
pub const FALLBACK_TOAST: &str = "Received; it is being processed.";

/// The sink that answers foreign card callbacks, with its name for metrics.
#[derive(Clone)]
pub struct CallbackSink {
    pub name: String,
    pub sink: Arc<Sink>,
}

/// The `card.action.trigger` handler: authorization cards to `CardAuth`,
/// the others to `sink` when there is one (otherwise they get no answer,
/// as before).
pub fn handler(card_auth: Addr<CardAuth>, sink: Option<CallbackSink>) -> impl EventHandler {
    let ours = Arc::new(card_action_handler(card_auth));
    move |envelope: Arc<Envelope>| {
        let ours = ours.clone();
        let sink = sink.clone();
        async move {
            let foreign = session_id_from_action(&envelope.event["action"]["value"]).is_none();
            match sink {
                Some(sink) if foreign => Ok(Some(ask(&sink, &envelope).await)),
                _ => ours.handle(envelope).await,
            }
        }
    }
}

async fn ask(sink: &CallbackSink, envelope: &Envelope) -> Value {
    let started = Instant::now();
    let Some(payload) = super::payload::for_sinks(envelope) else {
        crate::metrics::bad_input("forward", "unparsable_envelope");
        tracing::error!(event_id = %envelope.event_id, "an envelope that parsed once no longer does; the user got the fallback toast");
        return fallback();
    };
    let answer = sink
        .sink
        .request(
            &Delivery {
                event_id: envelope.event_id.as_str(),
                event_type: &envelope.event_type,
                payload: &payload,
                attempt: 1,
            },
            DEADLINE,
        )
        .await;
    metrics::histogram!(FORWARD_SECONDS, "sink" => sink.name.clone())
        .record(started.elapsed().as_secs_f64());
    let (body, outcome) = match answer {
        Ok(body) => (body, "ok"),
        Err(e) => {
            tracing::warn!(sink = %sink.name, event_id = %envelope.event_id.as_str(), error = %e,
                "card callback not answered by its sink; the user got the fallback toast");
            (fallback(), e.outcome())
        }
    };
    metrics::counter!(FORWARD_TOTAL, "sink" => sink.name.clone(), "outcome" => outcome)
        .increment(1);
    body
}

/// The neutral toast.
pub fn fallback() -> Value {
    json!({"toast": {"type": "info", "content": FALLBACK_TOAST}})
}
