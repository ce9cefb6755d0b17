//! The NATS JetStream sink: publish each event to
//! `<subject_prefix>.<event_type>` on a stream the service creates if it is
//! absent, with `Nats-Msg-Id` set to the event id so JetStream drops a
//! second copy (a redelivery, or two replicas racing) within the stream's
//! duplicate window. A delivery counts only once the publish ack is back.
//!
//! Card callbacks are core NATS requests to
//! `<subject_prefix>_callbacks.<event_type>`: outside the stream's subjects,
//! so JetStream neither stores them nor answers them with a publish ack.

use std::time::Duration;

use async_nats::header::{HeaderMap, NATS_MESSAGE_ID};
use async_nats::jetstream::{self, stream};
use async_nats::RequestErrorKind;
use serde_json::Value;
use tokio::sync::OnceCell;

use super::sink::{Delivery, SinkError};

/// The event type, so a consumer can route without parsing the payload.
pub const HEADER_EVENT_TYPE: &str = "Lark-Event-Type";

/// How long JetStream remembers a `Nats-Msg-Id` (its default).
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

pub struct NatsSink {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    stream: String,
    subject_prefix: String,
    /// Per publish ack, and the longest a card-callback request may take.
    timeout: Duration,
    /// Set once the stream is known to exist.
    stream_ready: OnceCell<()>,
}

impl NatsSink {
    pub async fn connect(
        url: &str,
        stream: &str,
        subject_prefix: &str,
        timeout: Duration,
    ) -> Result<Self, SinkError> {
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .request_timeout(Some(timeout))
            .connect(url)
            .await
            .map_err(|e| SinkError::Setup(e.to_string()))?;
        let mut jetstream = jetstream::new(client.clone());
        jetstream.set_timeout(timeout);
        Ok(Self {
            client,
            jetstream,
            stream: stream.to_owned(),
            subject_prefix: subject_prefix.to_owned(),
            timeout,
            stream_ready: OnceCell::new(),
        })
    }

    /// Subject for events of `event_type`.
    pub fn subject(prefix: &str, event_type: &str) -> String {
        format!("{prefix}.{event_type}")
    }

    /// Subject card callbacks of `event_type` are requested on.
    pub fn callback_subject(prefix: &str, event_type: &str) -> String {
        format!("{prefix}_callbacks.{event_type}")
    }

    async fn ensure_stream(&self) -> Result<(), SinkError> {
        self.stream_ready
            .get_or_try_init(|| async {
                self.jetstream
                    .get_or_create_stream(stream::Config {
                        name: self.stream.clone(),
                        subjects: vec![format!("{}.>", self.subject_prefix)],
                        duplicate_window: DUPLICATE_WINDOW,
                        ..Default::default()
                    })
                    .await
                    .map(drop)
                    .map_err(|e| SinkError::Nats(format!("stream {}: {e}", self.stream)))
            })
            .await
            .map(drop)
    }

    /// Publish and wait for the stream's ack.
    pub async fn deliver(&self, d: &Delivery<'_>) -> Result<(), SinkError> {
        self.ensure_stream().await?;
        let ack = self
            .jetstream
            .publish_with_headers(
                Self::subject(&self.subject_prefix, d.event_type),
                headers(d),
                d.payload.to_owned().into(),
            )
            .await
            .map_err(|e| SinkError::Nats(e.to_string()))?;
        ack.await.map_err(|e| SinkError::Nats(e.to_string()))?;
        Ok(())
    }

    /// A core request-reply, answered within `deadline` (or the sink's own
    /// timeout, if shorter); the reply's JSON body is the answer.
    pub async fn request(&self, d: &Delivery<'_>, deadline: Duration) -> Result<Value, SinkError> {
        let request = async_nats::Request::new()
            .headers(headers(d))
            .payload(d.payload.to_owned().into())
            .timeout(Some(deadline.min(self.timeout)));
        let reply = self
            .client
            .send_request(
                Self::callback_subject(&self.subject_prefix, d.event_type),
                request,
            )
            .await
            .map_err(|e| match e.kind() {
                RequestErrorKind::TimedOut => SinkError::Timeout,
                RequestErrorKind::NoResponders => {
                    SinkError::Unreachable("nobody subscribes to the callback subject".into())
                }
                _ => SinkError::Nats(e.to_string()),
            })?;
        super::sink::parse_reply(&reply.payload)
    }
}

/// `Nats-Msg-Id` (the event id) and the event type.
fn headers(d: &Delivery<'_>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(NATS_MESSAGE_ID, d.event_id);
    headers.insert(HEADER_EVENT_TYPE, d.event_type);
    headers
}
