//! The `pbbp2` frame: one protobuf message per binary WebSocket message.
//!
//! The platform's schema is proto2, and fields 1–4 are `required`: the
//! official Python SDK refuses to serialise an ack whose frame lacks them,
//! so we always encode them, zero or not. prost's `required` label does
//! exactly that on encode and, on decode, leaves a missing field at its
//! default (0), which is the leniency the protocol notes ask for. The
//! structs are written by hand instead of generated, because the schema is
//! nine fields long and a build script would cost more than it saves.
//!
//! Nothing here matches on bare `0`/`1` or header strings: [`Method`],
//! [`MessageType`] and [`FrameKind`] name them once.

use prost::Message;

/// Header keys the platform and the SDKs use.
pub mod header {
    /// `event` | `card` | `ping` | `pong`.
    pub const TYPE: &str = "type";
    /// Shared by all fragments of one message; echoed on the ack.
    pub const MESSAGE_ID: &str = "message_id";
    /// Number of fragments, `"1"` when unsplit.
    pub const SUM: &str = "sum";
    /// 0-based fragment index.
    pub const SEQ: &str = "seq";
    pub const TRACE_ID: &str = "trace_id";
    /// Client handling time in ms, added on the ack.
    pub const BIZ_RT: &str = "biz_rt";
}

/// One `key: value` header of a frame (`pbbp2.Header`).
#[derive(Clone, PartialEq, Eq, Message)]
pub struct Header {
    #[prost(string, required, tag = "1")]
    pub key: String,
    #[prost(string, required, tag = "2")]
    pub value: String,
}

impl Header {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// A `pbbp2.Frame`. Field names are the schema's (`SeqID`, `LogID`,
/// `LogIDNew`) in snake case; numbers and labels are the schema's exactly.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct Frame {
    /// `SeqID`.
    #[prost(uint64, required, tag = "1")]
    pub seq_id: u64,
    /// `LogID`.
    #[prost(uint64, required, tag = "2")]
    pub log_id: u64,
    /// The `service_id` from the connection URL on client frames.
    #[prost(int32, required, tag = "3")]
    pub service: i32,
    /// See [`Method`].
    #[prost(int32, required, tag = "4")]
    pub method: i32,
    #[prost(message, repeated, tag = "5")]
    pub headers: Vec<Header>,
    #[prost(string, optional, tag = "6")]
    pub payload_encoding: Option<String>,
    #[prost(string, optional, tag = "7")]
    pub payload_type: Option<String>,
    #[prost(bytes = "vec", optional, tag = "8")]
    pub payload: Option<Vec<u8>>,
    /// `LogIDNew`.
    #[prost(string, optional, tag = "9")]
    pub log_id_new: Option<String>,
}

/// Why bytes from the socket are not a frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("not a pbbp2 frame: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("header `{key}` is `{value}`, not a non-negative integer")]
    BadNumber { key: &'static str, value: String },
}

/// The frame's `method` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Ping and pong.
    Control,
    /// Events, card callbacks and their acks.
    Data,
}

impl Method {
    pub fn as_i32(self) -> i32 {
        match self {
            Method::Control => 0,
            Method::Data => 1,
        }
    }

    pub fn from_i32(value: i32) -> Option<Self> {
        match value {
            0 => Some(Method::Control),
            1 => Some(Method::Data),
            _ => None,
        }
    }
}

/// The `type` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    Event,
    Card,
    Ping,
    Pong,
}

impl MessageType {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Event => "event",
            MessageType::Card => "card",
            MessageType::Ping => "ping",
            MessageType::Pong => "pong",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "event" => Some(MessageType::Event),
            "card" => Some(MessageType::Card),
            "ping" => Some(MessageType::Ping),
            "pong" => Some(MessageType::Pong),
            _ => None,
        }
    }
}

/// What a received frame is, from its method and `type` header together.
/// A frame whose two disagree (a data frame typed `pong`, say) is `Unknown`,
/// and so is any type we do not know yet; callers log and skip those.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    Ping,
    Pong,
    /// `type=event` data frame.
    Event,
    /// `type=card` data frame; handled exactly like `Event` (see §1.10).
    Card,
    Unknown,
}

impl FrameKind {
    /// A label for metrics (`lark_ws_frames_total{kind}`).
    pub fn as_str(self) -> &'static str {
        match self {
            FrameKind::Ping => "ping",
            FrameKind::Pong => "pong",
            FrameKind::Event => "event",
            FrameKind::Card => "card",
            FrameKind::Unknown => "unknown",
        }
    }
}

/// Where a data frame sits in its message (headers `message_id`, `sum`, `seq`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentPosition<'a> {
    pub message_id: &'a str,
    /// At least 1: a missing or `0` sum means "unsplit", as in the Go SDK.
    pub sum: u32,
    pub seq: u32,
}

impl Frame {
    /// The ping a client sends right after connecting and then every
    /// `PingInterval`.
    pub fn ping(service_id: i32) -> Self {
        Self::control(service_id, MessageType::Ping, None)
    }

    /// A pong, optionally carrying a `ClientConfig` JSON payload.
    pub fn pong(service_id: i32, client_config: Option<Vec<u8>>) -> Self {
        Self::control(service_id, MessageType::Pong, client_config)
    }

    fn control(service_id: i32, kind: MessageType, payload: Option<Vec<u8>>) -> Self {
        Self {
            service: service_id,
            method: Method::Control.as_i32(),
            headers: vec![Header::new(header::TYPE, kind.as_str())],
            payload,
            ..Self::default()
        }
    }

    /// The first header named `key`.
    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.key == key)
            .map(|h| h.value.as_str())
    }

    /// Replace every header named `key` by one with `value`, or add it.
    pub fn set_header(&mut self, key: &str, value: impl Into<String>) {
        self.headers.retain(|h| h.key != key);
        self.headers.push(Header::new(key, value));
    }

    pub fn method(&self) -> Option<Method> {
        Method::from_i32(self.method)
    }

    pub fn message_type(&self) -> Option<MessageType> {
        self.header(header::TYPE).and_then(MessageType::parse)
    }

    pub fn kind(&self) -> FrameKind {
        match (self.method(), self.message_type()) {
            (Some(Method::Control), Some(MessageType::Ping)) => FrameKind::Ping,
            (Some(Method::Control), Some(MessageType::Pong)) => FrameKind::Pong,
            (Some(Method::Data), Some(MessageType::Event)) => FrameKind::Event,
            (Some(Method::Data), Some(MessageType::Card)) => FrameKind::Card,
            _ => FrameKind::Unknown,
        }
    }

    /// The fragment headers of a data frame. A missing `message_id` reads as
    /// `""` (harmless for an unsplit message), a missing `sum` as 1 and a
    /// missing `seq` as 0; present but non-numeric values are an error.
    pub fn fragment_position(&self) -> Result<FragmentPosition<'_>, FrameError> {
        let number = |key: &'static str, default: u32| match self.header(key) {
            None => Ok(default),
            Some(v) => v.trim().parse::<u32>().map_err(|_| FrameError::BadNumber {
                key,
                value: v.to_owned(),
            }),
        };
        Ok(FragmentPosition {
            message_id: self.header(header::MESSAGE_ID).unwrap_or(""),
            sum: number(header::SUM, 1)?.max(1),
            seq: number(header::SEQ, 0)?,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        self.encode_to_vec()
    }

    pub fn decode(bytes: &[u8]) -> Result<Frame, FrameError> {
        Ok(<Frame as Message>::decode(bytes)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    #[test]
    fn ping_encodes_byte_for_byte() {
        // 08 00 | 10 00 | 18 07 | 20 00: the four required varints, zeros included.
        // 2a 0c: header (field 5, length 12) = 0a 04 "type" 12 04 "ping".
        let expected = unhex("0800 1000 1807 2000 2a0c 0a04 74797065 1204 70696e67");
        assert_eq!(Frame::ping(7).encode(), expected);
    }

    #[test]
    fn all_zero_frame_still_carries_the_required_fields() {
        assert_eq!(Frame::default().encode(), unhex("0800 1000 1800 2000"));
    }

    #[test]
    fn data_frame_encodes_byte_for_byte() {
        let frame = Frame {
            seq_id: 300,
            log_id: 1,
            service: -1,
            method: Method::Data.as_i32(),
            headers: vec![Header::new("sum", "1")],
            payload: Some(b"{}".to_vec()),
            log_id_new: Some("x".into()),
            ..Frame::default()
        };
        // 300 = ac 02; int32 -1 is a ten-byte varint; payload is field 8 (0x42),
        // LogIDNew field 9 (0x4a); header 0a 03 "sum" 12 01 "1".
        let expected = unhex(
            "08ac02 1001 18ffffffffffffffffff01 2001 2a08 0a03 73756d 1201 31 4202 7b7d 4a01 78",
        );
        assert_eq!(frame.encode(), expected);
        assert_eq!(Frame::decode(&expected).unwrap(), frame);
    }

    #[test]
    fn missing_required_fields_decode_as_zero() {
        let only_header = unhex("2a0c 0a04 74797065 1204 70696e67");
        let frame = Frame::decode(&only_header).unwrap();
        assert_eq!(
            (frame.seq_id, frame.log_id, frame.service, frame.method),
            (0, 0, 0, 0)
        );
        assert_eq!(frame.kind(), FrameKind::Ping);
        // ...and re-encoding restores them, so an ack built from it is valid proto2.
        assert!(frame.encode().starts_with(&unhex("0800 1000 1800 2000")));
        assert_eq!(Frame::decode(&[]).unwrap(), Frame::default());
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(Frame::decode(&[0xff]).is_err());
        assert!(Frame::decode(&unhex("2a05 0a")).is_err());
        // Header key that is not UTF-8.
        assert!(Frame::decode(&unhex("2a04 0a02 fffe")).is_err());
    }

    #[test]
    fn kind_needs_method_and_type_to_agree() {
        let mut f = Frame::ping(1);
        assert_eq!(f.kind(), FrameKind::Ping);
        f.method = Method::Data.as_i32();
        assert_eq!(f.kind(), FrameKind::Unknown);
        f.set_header(header::TYPE, "card");
        assert_eq!(f.kind(), FrameKind::Card);
        assert_eq!(f.headers.len(), 1);
        f.set_header(header::TYPE, "event");
        assert_eq!(f.kind(), FrameKind::Event);
        f.method = 7;
        assert_eq!(f.kind(), FrameKind::Unknown);
        assert_eq!(Frame::pong(1, None).kind(), FrameKind::Pong);
    }

    #[test]
    fn fragment_position_defaults_and_errors() {
        let mut f = Frame::default();
        let p = f.fragment_position().unwrap();
        assert_eq!((p.message_id, p.sum, p.seq), ("", 1, 0));
        f.set_header(header::MESSAGE_ID, "m1");
        f.set_header(header::SUM, "3");
        f.set_header(header::SEQ, "2");
        let p = f.fragment_position().unwrap();
        assert_eq!((p.message_id, p.sum, p.seq), ("m1", 3, 2));
        f.set_header(header::SUM, "0");
        assert_eq!(f.fragment_position().unwrap().sum, 1);
        f.set_header(header::SEQ, "-1");
        assert!(matches!(
            f.fragment_position(),
            Err(FrameError::BadNumber { key: "seq", .. })
        ));
    }

    fn arb_frame() -> impl Strategy<Value = Frame> {
        let header = (".{0,8}", ".{0,8}").prop_map(|(k, v)| Header::new(k, v));
        (
            any::<u64>(),
            any::<u64>(),
            any::<i32>(),
            any::<i32>(),
            proptest::collection::vec(header, 0..5),
            proptest::option::of(".{0,6}"),
            proptest::option::of(".{0,6}"),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
            proptest::option::of(".{0,6}"),
        )
            .prop_map(
                |(seq_id, log_id, service, method, headers, enc, ty, payload, new)| Frame {
                    seq_id,
                    log_id,
                    service,
                    method,
                    headers,
                    payload_encoding: enc,
                    payload_type: ty,
                    payload,
                    log_id_new: new,
                },
            )
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Frame::decode(&bytes);
        }

        #[test]
        fn any_frame_round_trips(frame in arb_frame()) {
            prop_assert_eq!(Frame::decode(&frame.encode()).unwrap(), frame);
        }
    }
}
