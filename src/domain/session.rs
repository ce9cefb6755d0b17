//! The states and methods of a user authorization session, as stored in
//! `user_auth_sessions.state` / `.auth_method`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    Pending,
    Completed,
    Expired,
    Failed,
    Revoked,
    ReauthRequired,
}

impl SessionState {
    pub const ALL: [SessionState; 6] = [
        Self::Pending,
        Self::Completed,
        Self::Expired,
        Self::Failed,
        Self::Revoked,
        Self::ReauthRequired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Completed => "completed",
            Self::Expired => "expired",
            Self::Failed => "failed",
            Self::Revoked => "revoked",
            Self::ReauthRequired => "reauth_required",
        }
    }
}

/// How the user authorized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    WebsocketCard,
    OauthRedirect,
    DeviceCode,
}

impl AuthMethod {
    pub const ALL: [AuthMethod; 3] = [Self::WebsocketCard, Self::OauthRedirect, Self::DeviceCode];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::WebsocketCard => "websocket_card",
            Self::OauthRedirect => "oauth_redirect",
            Self::DeviceCode => "device_code",
        }
    }
}

/// A stored value that is not one of the known names.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown {kind} `{value}`; expected one of: {expected}")]
pub struct UnknownName {
    kind: &'static str,
    value: String,
    expected: String,
}

macro_rules! name_enum {
    ($ty:ident, $kind:literal) => {
        impl FromStr for $ty {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, UnknownName> {
                Self::ALL
                    .into_iter()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| UnknownName {
                        kind: $kind,
                        value: s.to_owned(),
                        expected: Self::ALL.map(Self::as_str).join(", "),
                    })
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

name_enum!(SessionState, "session state");
name_enum!(AuthMethod, "auth method");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in SessionState::ALL {
            assert_eq!(s.as_str().parse::<SessionState>().unwrap(), s);
        }
        for m in AuthMethod::ALL {
            assert_eq!(m.as_str().parse::<AuthMethod>().unwrap(), m);
        }
        let err = "done".parse::<SessionState>().unwrap_err().to_string();
        assert!(err.contains("pending, completed"), "{err}");
    }
}
