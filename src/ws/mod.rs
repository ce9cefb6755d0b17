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
pub mod connection;
pub mod endpoint;
pub mod fragments;
pub mod frame;
pub mod reconnect;

pub use ack::{ack_frame, AckPayload, AckStatus};
pub use client_config::{ClientConfig, ClientConfigUpdate};
pub use endpoint::{fetch_endpoint, Endpoint, EndpointError, HandshakeRefusal, RefusalKind};
pub use fragments::{FragmentBuffer, FragmentError, FRAGMENT_TTL};
pub use frame::{Frame, FrameError, FrameKind, Header, MessageType, Method};
pub use reconnect::{ReconnectSchedule, RefusedReason};

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
    #[error("no connection after {0} reconnect attempts; restarting the connection")]
    BurstExhausted(u32),
}

impl WsError {
    /// The platform refuses the app: retrying soon cannot help, so the
    /// connection waits [`reconnect::REFUSED_RETRY`] between attempts.
    pub fn refusal(&self) -> Option<RefusedReason> {
        match self {
            WsError::Endpoint(e) if !e.is_retryable() => Some(RefusedReason::AppRejected),
            WsError::Refused(r) => match r.kind() {
                RefusalKind::Forbidden => Some(RefusedReason::Forbidden),
                RefusalKind::ConnectionLimit => Some(RefusedReason::ConnectionLimit),
                RefusalKind::Retryable => None,
            },
            _ => None,
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
