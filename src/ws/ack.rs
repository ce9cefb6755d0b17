//! The ack a client sends back for every complete data message.
//!
//! The ack echoes the received frame (same `SeqID`, `LogID`, `service`,
//! `method`, every header) with one more header, `biz_rt`, and a JSON
//! payload `{"code":200|500,"headers":{},"data":"<base64>"}`. `data` is the
//! handler's JSON reply, base64 of its UTF-8 text. Card callbacks must
//! always carry `data` (at least `{}`), or the user sees error 108002;
//! plain events may leave it out, as the Python and Node SDKs do.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize};

use super::frame::{header, Frame};

/// The HTTP-style status an ack reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckStatus {
    /// Handled (200).
    Ok,
    /// The handler failed (500).
    Failed,
}

impl AckStatus {
    pub fn code(self) -> u16 {
        match self {
            AckStatus::Ok => 200,
            AckStatus::Failed => 500,
        }
    }
}

/// The JSON payload of an ack frame.
///
/// Deserialising accepts all the shapes the SDKs send: `headers` and `data`
/// missing (Python, Node) or `null` (Go).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AckPayload {
    pub code: u16,
    #[serde(default, deserialize_with = "null_as_default")]
    pub headers: serde_json::Map<String, serde_json::Value>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "null_as_default"
    )]
    pub data: Option<String>,
}

/// `{}`: what a callback replies when its handler has nothing to say.
const EMPTY_OBJECT: &[u8] = b"{}";

impl AckPayload {
    /// The ack of an event; `reply` (if any) goes into `data`.
    pub fn event(status: AckStatus, reply: Option<&[u8]>) -> Self {
        Self {
            code: status.code(),
            headers: serde_json::Map::new(),
            data: reply.map(|json| BASE64.encode(json)),
        }
    }

    /// The ack of a card callback: `data` is always present, `{}` when the
    /// handler returned nothing.
    pub fn callback(status: AckStatus, reply: Option<&[u8]>) -> Self {
        Self::event(status, Some(reply.unwrap_or(EMPTY_OBJECT)))
    }

    pub fn to_json(&self) -> Vec<u8> {
        // A struct of a number, a map of JSON values and a string cannot
        // fail to serialise; an empty payload would only make the ack invalid.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// `data` decoded back to the handler's JSON, `None` when absent.
    pub fn data_json(&self) -> Result<Option<serde_json::Value>, AckDataError> {
        let Some(data) = &self.data else {
            return Ok(None);
        };
        let raw = BASE64.decode(data)?;
        Ok(Some(serde_json::from_slice(&raw)?))
    }
}

/// Why an ack's `data` is not base64 JSON.
#[derive(Debug, thiserror::Error)]
pub enum AckDataError {
    #[error("ack data is not base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("ack data is not JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// The ack frame for `received` (the frame that completed the message).
pub fn ack_frame(received: &Frame, payload: &AckPayload, handled_in: Duration) -> Frame {
    let mut ack = received.clone();
    ack.set_header(header::BIZ_RT, handled_in.as_millis().to_string());
    ack.payload = Some(payload.to_json());
    ack
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::frame::{Header, Method};

    fn data_frame() -> Frame {
        Frame {
            seq_id: 9,
            log_id: 42,
            service: 3,
            method: Method::Data.as_i32(),
            headers: vec![
                Header::new("type", "event"),
                Header::new("message_id", "m-1"),
                Header::new("sum", "2"),
                Header::new("seq", "1"),
                Header::new("trace_id", "t"),
            ],
            payload: Some(b"second half".to_vec()),
            ..Frame::default()
        }
    }

    #[test]
    fn ack_echoes_the_frame_and_adds_biz_rt() {
        let received = data_frame();
        let ack = ack_frame(
            &received,
            &AckPayload::event(AckStatus::Ok, None),
            Duration::from_millis(17),
        );
        assert_eq!(
            (ack.seq_id, ack.log_id, ack.service, ack.method),
            (9, 42, 3, 1)
        );
        assert_eq!(&ack.headers[..5], &received.headers[..]);
        assert_eq!(ack.header("biz_rt"), Some("17"));
        assert_eq!(
            ack.payload.as_deref(),
            Some(&br#"{"code":200,"headers":{}}"#[..])
        );
    }

    #[test]
    fn callback_ack_always_carries_data() {
        let empty = AckPayload::callback(AckStatus::Ok, None);
        assert_eq!(
            empty.to_json(),
            br#"{"code":200,"headers":{},"data":"e30="}"#
        );
        let toast = AckPayload::callback(
            AckStatus::Ok,
            Some(br#"{"toast":{"type":"info","content":"ok"}}"#),
        );
        assert_eq!(
            toast.data_json().unwrap(),
            Some(serde_json::json!({"toast": {"type": "info", "content": "ok"}}))
        );
        let failed = AckPayload::callback(AckStatus::Failed, None);
        assert_eq!(failed.code, 500);
        assert_eq!(failed.data.as_deref(), Some("e30="));
    }

    #[test]
    fn every_sdk_shape_parses() {
        for (json, data) in [
            (&br#"{"code":200}"#[..], None),
            (br#"{"code":200,"headers":null,"data":null}"#, None),
            (
                br#"{"code":500,"headers":{},"data":"e30="}"#,
                Some(serde_json::json!({})),
            ),
        ] {
            let p = AckPayload::from_json(json).unwrap();
            assert_eq!(p.data_json().unwrap(), data);
        }
        assert!(AckPayload::from_json(b"nope").is_err());
        let bad = AckPayload::from_json(br#"{"code":200,"data":"!!"}"#).unwrap();
        assert!(matches!(bad.data_json(), Err(AckDataError::Base64(_))));
    }
}
