//! `ApaasError`: why an AI call gave no answer, in terms a caller can act
//! on. Each variant is one `outcome` of `lark_apaas_requests_total`.

use std::time::Duration;

use crate::lark::client::LarkError;

#[derive(Debug, thiserror::Error)]
pub enum ApaasError {
    #[error("AILY_APP_ID is not set: AI calls run an Aily app; set AILY_APP_ID (and AILY_SKILL_ID if the app needs a skill)")]
    NotConfigured,
    #[error("{0}")]
    BadInput(String),
    /// No usable token for the user: only their (new) authorization helps.
    #[error("user `{user_id}` has not authorized the app, or must authorize it again ({reason}); send them an auth card: POST /admin/auth-cards {{\"user_id\": \"{user_id}\"}} or `lark-service send-auth-card {user_id}`")]
    AuthRequired { user_id: String, reason: String },
    /// The user's token lacks a scope the call needs (99991679): refreshing
    /// keeps the token's scopes, so only a new authorization asking for it
    /// helps. The session is moved to `reauth_required`.
    #[error("user `{user_id}` has not granted the app the scope `{scope}`; enable it for the app in the developer console (Permissions & Scopes), make sure OAUTH_SCOPES includes it, then have them authorize again: POST /admin/auth-cards {{\"user_id\": \"{user_id}\"}} or `lark-service send-auth-card {user_id}`")]
    ScopeMissing { user_id: String, scope: String },
    /// The user's token is due and could not be refreshed just now.
    #[error("the user's token could not be refreshed now ({0}); retry shortly")]
    TokenUnavailable(String),
    #[error("the AI run {} did not finish within {after:?}", run_id.as_deref().unwrap_or("(not started)"))]
    Timeout {
        run_id: Option<String>,
        after: Duration,
    },
    #[error("the AI run {run_id} ended {status}{}: {message}", code.as_deref().map(|c| format!(" (code {c})")).unwrap_or_default())]
    RunFailed {
        run_id: String,
        status: String,
        code: Option<String>,
        message: String,
    },
    #[error("the AI run {run_id} completed without a reply")]
    NoReply { run_id: String },
    #[error("rate limited by the open platform; retry after {retry_after:?}")]
    RateLimited { retry_after: Duration },
    #[error("the open platform refused the AI call: {0}")]
    Platform(LarkError),
    #[error("a component the AI call needs is unavailable ({0}); retry shortly")]
    Unavailable(String),
}

impl ApaasError {
    /// The `outcome` label of `lark_apaas_requests_total`.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::NotConfigured => "not_configured",
            Self::BadInput(_) => "bad_input",
            Self::AuthRequired { .. } => "auth_required",
            Self::ScopeMissing { .. } => "scope_missing",
            Self::TokenUnavailable(_) | Self::Unavailable(_) => "unavailable",
            Self::Timeout { .. } => "timeout",
            Self::RunFailed { .. } | Self::NoReply { .. } => "run_failed",
            Self::RateLimited { .. } => "rate_limited",
            Self::Platform(_) => "error",
        }
    }
}

impl From<LarkError> for ApaasError {
    fn from(e: LarkError) -> Self {
        match e {
            LarkError::RateLimited { retry_after } => Self::RateLimited { retry_after },
            other => Self::Platform(other),
        }
    }
}

impl From<actix::MailboxError> for ApaasError {
    fn from(e: actix::MailboxError) -> Self {
        Self::Unavailable(e.to_string())
    }
}
