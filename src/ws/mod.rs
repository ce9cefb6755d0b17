//! The long connection to the open platform (§1 of the protocol notes).
//!
//! Pure pieces, each testable without an actix `System`:
//! - [`frame`]: the `pbbp2` protobuf frame and its header vocabulary.
//! - [`ack`]: the ack frame a client returns for each data message.
//! - [`fragments`]: reassembly of messages split over several frames.
//! - [`client_config`]: the platform's connection settings.
//! - [`endpoint`]: the bootstrap call and handshake refusal rules.
//! - [`reconnect`]: when to try again after the socket dropped.

pub mod ack;
pub mod client_config;
pub mod endpoint;
pub mod fragments;
pub mod frame;
pub mod reconnect;

pub use ack::{ack_frame, AckPayload, AckStatus};
pub use client_config::{ClientConfig, ClientConfigUpdate};
pub use endpoint::{fetch_endpoint, Endpoint, EndpointError, HandshakeRefusal, RefusalKind};
pub use fragments::{FragmentBuffer, FragmentError, FRAGMENT_TTL};
pub use frame::{Frame, FrameError, FrameKind, Header, MessageType, Method};
pub use reconnect::ReconnectSchedule;

use std::time::Duration;

use tokio_tungstenite::tungstenite;

/// Why a long connection ended or could not start.
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error("websocket handshake refused ({0})")]
    Refused(HandshakeRefusal),
    #[error("websocket failed: {0}")]
    Socket(Box<tungstenite::Error>),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Fragment(#[from] FragmentError),
    #[error("nothing received from the platform for {0:?}")]
    Silent(Duration),
    #[error("gave up after {0} reconnect attempts")]
    GaveUp(u32),
}

impl WsError {
    /// Reconnecting cannot fix this: the app is refused or attempts ran out.
    pub fn is_fatal(&self) -> bool {
        match self {
            WsError::Endpoint(e) => !e.is_retryable(),
            WsError::Refused(r) => r.is_fatal(),
            WsError::GaveUp(_) => true,
            WsError::Socket(_) | WsError::Frame(_) | WsError::Fragment(_) | WsError::Silent(_) => {
                false
            }
        }
    }
}

impl From<tungstenite::Error> for WsError {
    /// A non-101 upgrade answer becomes [`WsError::Refused`], so its
    /// `handshake-*` headers decide whether to retry.
    fn from(err: tungstenite::Error) -> Self {
        match HandshakeRefusal::from_ws_error(&err) {
            Some(refusal) => WsError::Refused(refusal),
            None => WsError::Socket(Box::new(err)),
        }
    }
}
