//! `AuthError`: everything that can go wrong authorizing a user or using
//! their token, in terms an operator (and a toast) can act on.

use crate::auth::vault::VaultError;
use crate::db::DbError;
use crate::domain::SessionState;
use crate::lark::client::LarkError;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no authorization session `{0}`")]
    UnknownSession(String),
    #[error("the session is {0}, not pending")]
    NotPending(SessionState),
    #[error("the session expired before it was completed; send a new authorization card")]
    Expired,
    #[error("this card was sent to another user")]
    WrongOperator,
    #[error("the callback's `state` names no pending authorization (unknown, or already used); open the link on a new authorization card")]
    UnknownState,
    #[error("the authorization was approved by another account than the one it was sent to; nothing was stored")]
    ForeignUser,
    #[error("a code for this authorization is being requested; try again in a moment")]
    InProgress,
    #[error("exchanging the authorization code failed: {0}")]
    Exchange(LarkError),
    #[error("the open platform refused: {0}")]
    Platform(#[from] LarkError),
    #[error(
        "user `{0}` has not authorized the app (or must re-authorize); send them an auth card"
    )]
    AuthRequired(String),
    #[error("{0}")]
    BadInput(String),
    #[error("the accounts host refused the device login: {0}")]
    DeviceLogin(crate::device::error::DeviceError),
    /// The user's stored token cannot be opened (its key is unknown, or it
    /// is damaged); the session was moved to `reauth_required`.
    #[error("the stored token of user `{open_id}` cannot be opened ({reason}); they must authorize the app again: send them an auth card")]
    Unreadable { open_id: String, reason: String },
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("the session registry is unavailable: {0}")]
    Mailbox(#[from] actix::MailboxError),
}

impl AuthError {
    /// A short label for `lark_auth_failed_total{reason}`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::UnknownSession(_) => "unknown_session",
            Self::NotPending(_) => "not_pending",
            Self::Expired => "expired",
            Self::WrongOperator => "wrong_operator",
            Self::UnknownState => "unknown_state",
            Self::ForeignUser => "wrong_user",
            Self::InProgress => "in_progress",
            Self::Exchange(_) => "exchange_failed",
            Self::Platform(_) => "platform_error",
            Self::AuthRequired(_) => "auth_required",
            Self::BadInput(_) => "bad_input",
            Self::DeviceLogin(_) => "device_login_refused",
            Self::Unreadable { .. } => "token_unreadable",
            Self::Vault(_) => "vault",
            Self::Db(_) | Self::Mailbox(_) => "unavailable",
        }
    }
}
