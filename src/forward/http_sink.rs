//! The HTTP sink: POST the event envelope to the operator's endpoint.
//!
//! Each request is signed so the endpoint can tell it from a forgery:
//! `X-Lark-Forward-Signature = hex(HMAC-SHA256(secret, timestamp + body))`,
//! where `timestamp` is the `X-Lark-Forward-Timestamp` header (Unix seconds,
//! as ASCII) and `body` the exact bytes sent. The event id, type and attempt
//! number ride along in headers so the endpoint can dedup without parsing.
//! Any 2xx answer is a delivery; anything else (or no answer within the
//! timeout) is retried by the outbox.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::sink::{Delivery, SinkError};
use crate::domain::Secret;

pub const HEADER_SIGNATURE: &str = "X-Lark-Forward-Signature";
pub const HEADER_TIMESTAMP: &str = "X-Lark-Forward-Timestamp";
pub const HEADER_EVENT_ID: &str = "X-Lark-Event-Id";
pub const HEADER_EVENT_TYPE: &str = "X-Lark-Event-Type";
pub const HEADER_ATTEMPT: &str = "X-Lark-Forward-Attempt";

/// One configured HTTP endpoint.
pub struct HttpSink {
    url: url::Url,
    secret: Secret,
    client: reqwest::Client,
    timeout: Duration,
}

impl HttpSink {
    pub fn new(url: url::Url, secret: Secret, timeout: Duration) -> Result<Self, SinkError> {
        let client = reqwest::Client::builder()
            .connect_timeout(timeout)
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| SinkError::Setup(e.to_string()))?;
        Ok(Self {
            url,
            secret,
            client,
            timeout,
        })
    }

    /// POST one event; `Ok` once the endpoint answered 2xx.
    pub async fn deliver(&self, delivery: &Delivery<'_>) -> Result<(), SinkError> {
        self.post(delivery, self.timeout).await.map(drop)
    }

    /// POST a card callback and return the endpoint's JSON answer, which
    /// must come within `deadline`.
    pub async fn request(
        &self,
        delivery: &Delivery<'_>,
        deadline: Duration,
    ) -> Result<Value, SinkError> {
        let response = self.post(delivery, deadline.min(self.timeout)).await?;
        let bytes = response.bytes().await.map_err(SinkError::from_reqwest)?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Object(Default::default()));
        }
        serde_json::from_slice(&bytes).map_err(|e| SinkError::BadReply(e.to_string()))
    }

    async fn post(
        &self,
        d: &Delivery<'_>,
        timeout: Duration,
    ) -> Result<reqwest::Response, SinkError> {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
            .to_string();
        let signature = sign(self.secret.expose(), &timestamp, d.payload.as_bytes());
        let response = self
            .client
            .post(self.url.clone())
            .timeout(timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(HEADER_SIGNATURE, signature)
            .header(HEADER_TIMESTAMP, timestamp)
            .header(HEADER_EVENT_ID, d.event_id)
            .header(HEADER_EVENT_TYPE, d.event_type)
            .header(HEADER_ATTEMPT, d.attempt.to_string())
            .body(d.payload.to_owned())
            .send()
            .await
            .map_err(SinkError::from_reqwest)?;
        if !response.status().is_success() {
            return Err(SinkError::Status(response.status().as_u16()));
        }
        Ok(response)
    }
}

/// `hex(HMAC-SHA256(secret, timestamp + body))`.
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(timestamp.as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Does `signature` match? Constant-time, for endpoints written in Rust
/// (and the simulated sink).
pub fn verify(secret: &str, timestamp: &str, body: &[u8], signature: &str) -> bool {
    let Ok(given) = hex::decode(signature) else {
        return false;
    };
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(timestamp.as_bytes());
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_cover_timestamp_and_body() {
        let s = sign("0123456789abcdef", "1700000000", b"{}");
        assert_eq!(s.len(), 64);
        assert!(verify("0123456789abcdef", "1700000000", b"{}", &s));
        assert!(!verify("0123456789abcdef", "1700000001", b"{}", &s));
        assert!(!verify("0123456789abcdef", "1700000000", b"{ }", &s));
        assert!(!verify("another-secret-xx", "1700000000", b"{}", &s));
    }
}
