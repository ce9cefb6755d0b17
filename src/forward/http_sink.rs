//! The HTTP sink: POST the event envelope to the operator's endpoint.
//!
//! Each request is signed so the endpoint can tell it from a forgery:
//! `X-Lark-Forward-Signature = hex(HMAC-SHA256(secret, timestamp + body))`,
//! where `timestamp` is the `X-Lark-Forward-Timestamp` header (Unix seconds,
//! as ASCII) and `body` the exact bytes sent. The event id, type and attempt
//! number ride along in headers so the endpoint can dedup without parsing.
//! Any 2xx answer is a delivery; anything else (or no answer within the
//! timeout) is retried by the outbox.
//!
//! Redirects are never followed: a 307 or 308 would re-send the body and
//! its signature to whatever host the `Location` names. A 3xx is a failed
//! delivery ([`SinkError::Redirect`]) that tells the operator to configure
//! the final URL. A card-callback answer is read in chunks and refused once
//! it passes [`MAX_REPLY_BYTES`], so a misbehaving endpoint cannot make the
//! service buffer an unbounded body.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::address::SinkAddress;
use super::sink::{Delivery, SinkError, MAX_REPLY_BYTES};
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
    pub fn new(url: &SinkAddress, secret: Secret, timeout: Duration) -> Result<Self, SinkError> {
        let client = reqwest::Client::builder()
            .connect_timeout(timeout)
            .pool_max_idle_per_host(64)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| SinkError::Setup(e.without_url().to_string()))?;
        let url = url::Url::parse(url.expose())
            .map_err(|e| SinkError::Setup(format!("`{url}` is not a URL ({e})")))?;
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
        let mut response = self.post(delivery, deadline.min(self.timeout)).await?;
        if response
            .content_length()
            .is_some_and(|n| n > MAX_REPLY_BYTES as u64)
        {
            return Err(SinkError::ReplyTooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(SinkError::from_reqwest)? {
            if body.len() + chunk.len() > MAX_REPLY_BYTES {
                return Err(SinkError::ReplyTooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        super::sink::parse_reply(&body)
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
        let status = response.status();
        if status.is_redirection() {
            return Err(SinkError::Redirect(status.as_u16()));
        }
        if !status.is_success() {
            return Err(SinkError::Status(status.as_u16()));
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
