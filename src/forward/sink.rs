//! `Sink`: one configured destination, whichever kind it is, and what the
//! outbox and the card-callback path ask of it.

use std::time::Duration;

use serde_json::Value;

use super::config::{SinkConfig, SinkKind};
use super::http_sink::HttpSink;
use super::nats_sink::NatsSink;

/// The largest card-callback answer a sink may give. A toast and a card
/// fit in a few KiB; the platform itself caps a card well below this.
pub const MAX_REPLY_BYTES: usize = 64 * 1024;

/// One event on its way to a sink.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    pub event_id: &'a str,
    pub event_type: &'a str,
    /// The envelope JSON, as received from the platform.
    pub payload: &'a str,
    /// 1 for the first attempt.
    pub attempt: u32,
}

/// Why a delivery or request did not go through. All are retried by the
/// outbox until the sink's `max_attempts`.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot set up the sink: {0}")]
    Setup(String),
    #[error("timed out")]
    Timeout,
    #[error("unreachable: {0}")]
    Unreachable(String),
    #[error("answered HTTP {0}")]
    Status(u16),
    #[error("answered HTTP {0}, a redirect, which is not followed: configure the final URL")]
    Redirect(u16),
    #[error("answered with something that is not JSON: {0}")]
    BadReply(String),
    #[error("answered with more than {} KiB", MAX_REPLY_BYTES / 1024)]
    ReplyTooLarge,
    #[error("NATS: {0}")]
    Nats(String),
}

impl SinkError {
    pub fn from_reqwest(e: reqwest::Error) -> Self {
        if e.is_timeout() {
            Self::Timeout
        } else {
            // Without the URL: it may carry credentials in its userinfo.
            Self::Unreachable(e.without_url().to_string())
        }
    }

    /// A short label for metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            _ => "error",
        }
    }
}

/// A destination, ready to use.
pub enum Sink {
    Http(HttpSink),
    Nats(Box<NatsSink>),
}

impl Sink {
    /// Build the client for `config`. NATS connects in the background, so a
    /// broker that is down at start-up only delays deliveries.
    pub async fn connect(config: &SinkConfig) -> Result<Self, SinkError> {
        Ok(match &config.kind {
            SinkKind::Http { url, secret } => {
                Self::Http(HttpSink::new(url, secret.clone(), config.timeout)?)
            }
            SinkKind::Nats {
                url,
                stream,
                subject_prefix,
            } => Self::Nats(Box::new(
                NatsSink::connect(url.expose(), stream, subject_prefix, config.timeout).await?,
            )),
        })
    }

    pub async fn deliver(&self, delivery: &Delivery<'_>) -> Result<(), SinkError> {
        match self {
            Self::Http(s) => s.deliver(delivery).await,
            Self::Nats(s) => s.deliver(delivery).await,
        }
    }

    /// Ask the sink to answer `delivery` (a card callback) within `deadline`.
    pub async fn request(
        &self,
        delivery: &Delivery<'_>,
        deadline: Duration,
    ) -> Result<Value, SinkError> {
        let answer = async {
            match self {
                Self::Http(s) => s.request(delivery, deadline).await,
                Self::Nats(s) => s.request(delivery, deadline).await,
            }
        };
        tokio::time::timeout(deadline, answer)
            .await
            .unwrap_or(Err(SinkError::Timeout))
    }
}

/// A card-callback answer: blank means `{}` (no toast, card unchanged),
/// anything else must be JSON of at most [`MAX_REPLY_BYTES`].
pub fn parse_reply(body: &[u8]) -> Result<Value, SinkError> {
    if body.len() > MAX_REPLY_BYTES {
        return Err(SinkError::ReplyTooLarge);
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Default::default()));
    }
    serde_json::from_slice(body).map_err(|e| SinkError::BadReply(e.to_string()))
}
