//! `ApiError`: the one place module errors become HTTP responses.
//!
//! Every error body is `{"error": {"code": "...", "message": "..."}}`. The
//! message says what was wrong and what to do; internal detail (source
//! chains, SQL) goes to the log, never to the client.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::db::DbError;

/// The body of every error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable (`unknown_session`, `auth_required`…).
    pub code: &'static str,
    /// What was wrong and what to do.
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("missing or wrong bearer token")]
    Unauthorized,
    /// A request that failed its authenticity checks (signature, token).
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    #[error("{message}")]
    NotFound { code: &'static str, message: String },
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("{message}")]
    Unavailable { code: &'static str, message: String },
    /// The open platform failed or refused.
    #[error("{message}")]
    BadGateway { code: &'static str, message: String },
    /// The open platform did not finish in time.
    #[error("{message}")]
    GatewayTimeout { code: &'static str, message: String },
    /// The open platform's rate limit; the answer carries `Retry-After`.
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after: std::time::Duration,
    },
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::NotFound {
            code,
            message: message.into(),
        }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
        }
    }

    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::Unavailable {
            code,
            message: message.into(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { code, .. }
            | Self::NotFound { code, .. }
            | Self::Conflict { code, .. }
            | Self::Unavailable { code, .. }
            | Self::BadGateway { code, .. }
            | Self::GatewayTimeout { code, .. }
            | Self::Forbidden { code, .. } => code,
            Self::TooManyRequests { .. } => "rate_limited",
            Self::Unauthorized => "unauthorized",
            Self::Internal(_) => "internal",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::UNAUTHORIZED,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::BadGateway { .. } => StatusCode::BAD_GATEWAY,
            Self::GatewayTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let Self::Internal(detail) = self {
            tracing::error!(%detail, "request failed");
        }
        let mut resp = HttpResponse::build(self.status_code());
        if matches!(self, Self::Unauthorized) {
            resp.insert_header(("WWW-Authenticate", "Bearer"));
        }
        if let Self::TooManyRequests { retry_after, .. } = self {
            // Whole seconds, rounded up: a zero would invite an instant retry.
            let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            resp.insert_header(("Retry-After", seconds.max(1).to_string()));
        }
        resp.json(ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.to_string(),
            },
        })
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Pool(_) | DbError::Connect(_) | DbError::Mailbox(_) => {
                tracing::warn!(error = %e, "database unavailable");
                Self::unavailable(
                    "database_unavailable",
                    "the database is unavailable; retry shortly",
                )
            }
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<actix::MailboxError> for ApiError {
    fn from(e: actix::MailboxError) -> Self {
        Self::unavailable(
            "actor_unavailable",
            format!("the service is restarting a component ({e}); retry shortly"),
        )
    }
}

/// JSON bodies that fail to parse get the same error shape as everything else.
pub fn json_config() -> actix_web::web::JsonConfig {
    actix_web::web::JsonConfig::default()
        .limit(64 * 1024)
        .error_handler(|err, _req| {
            crate::metrics::bad_input("http", "bad_json");
            ApiError::bad_request(
                "bad_json",
                format!("request body is not the expected JSON: {err}"),
            )
            .into()
        })
}

/// Path parameters that fail to parse (e.g. a non-numeric id).
pub fn path_config() -> actix_web::web::PathConfig {
    actix_web::web::PathConfig::default()
        .error_handler(|err, _req| ApiError::bad_request("bad_path", err.to_string()).into())
}

/// Query strings that fail to parse.
pub fn query_config() -> actix_web::web::QueryConfig {
    actix_web::web::QueryConfig::default()
        .error_handler(|err, _req| ApiError::bad_request("bad_query", err.to_string()).into())
}

impl From<crate::auth::error::AuthError> for ApiError {
    fn from(e: crate::auth::error::AuthError) -> Self {
        use crate::auth::error::AuthError as A;
        match e {
            A::UnknownSession(_) => Self::not_found("unknown_session", e.to_string()),
            A::NotPending(_) | A::Expired => Self::conflict("session_not_pending", e.to_string()),
            A::WrongOperator => Self::conflict("wrong_operator", e.to_string()),
            A::UnknownState => Self::bad_request("unknown_state", e.to_string()),
            A::ForeignUser => Self::conflict("wrong_user", e.to_string()),
            A::AuthRequired(_) | A::Unreadable { .. } => {
                Self::conflict("auth_required", e.to_string())
            }
            A::BadInput(_) => Self::bad_request("bad_input", e.to_string()),
            A::InProgress => Self::conflict("in_progress", e.to_string()),
            A::Exchange(_) => Self::bad_request("exchange_failed", e.to_string()),
            A::Platform(_) | A::DeviceLogin(_) => Self::BadGateway {
                code: "platform_error",
                message: e.to_string(),
            },
            A::Db(db) => db.into(),
            A::Mailbox(m) => m.into(),
            A::Vault(_) => Self::Internal(e.to_string()),
        }
    }
}

impl From<crate::apaas::error::ApaasError> for ApiError {
    fn from(e: crate::apaas::error::ApaasError) -> Self {
        use crate::apaas::error::ApaasError as A;
        let message = e.to_string();
        match e {
            A::NotConfigured => Self::unavailable("not_configured", message),
            A::BadInput(_) => Self::bad_request("bad_input", message),
            A::AuthRequired { .. } => Self::conflict("auth_required", message),
            A::ScopeMissing { .. } => Self::conflict("scope_missing", message),
            A::TokenUnavailable(_) => Self::unavailable("token_unavailable", message),
            A::Unavailable(_) => Self::unavailable("unavailable", message),
            A::Timeout { .. } => Self::GatewayTimeout {
                code: "ai_timeout",
                message,
            },
            A::RunFailed { .. } | A::NoReply { .. } => Self::BadGateway {
                code: "ai_run_failed",
                message,
            },
            A::RateLimited { retry_after } => Self::TooManyRequests {
                message,
                retry_after,
            },
            A::Platform(_) => Self::BadGateway {
                code: "platform_error",
                message,
            },
        }
    }
}
