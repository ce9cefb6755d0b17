//! Errors of the device-code login. Each variant maps to a stable code that
//! the CLI prints in its error envelope, because scripts branch on the code:
//!
//! | code | when | retryable |
//! |---|---|---|
//! | `INVALID_OPTION` | a flag is misused or malformed (`--phase` without `--device-code`, bad `--host`, bad `--format`) | no |
//! | `MISSING_OPTION` | a required flag is absent (`--phase poll` without `--device-code-value`/`--client-id`) | no |
//! | `HOST_NOT_CONFIGURED` | no `--host`, no `MEEGLE_HOST`, no host saved for the profile | no |
//! | `INSECURE_HOST` | `--host`/`MEEGLE_HOST` names `http://` on a non-loopback host | no |
//! | `NETWORK_ERROR` | the server could not be reached (connect, TLS, timeout); also an HTTP client that cannot be built (not retryable) | yes |
//! | `OAUTH_DISCOVERY_FAILED` | the discovery document answered a non-200 status | 5xx/429 only |
//! | `OAUTH_DISCOVERY_INVALID` | the discovery document is not JSON, misses a field, or names a non-https endpoint | no |
//! | `DEVICE_FLOW_UNSUPPORTED` | the discovery document has no `device_authorization_endpoint` | no |
//! | `CLIENT_REGISTRATION_FAILED` | dynamic client registration failed or gave no `client_id` | 5xx/429 only |
//! | `DEVICE_CODE_FAILED` | no usable device code, an unusable poll answer, or a poll `error` such as `access_denied` | yes |
//! | `DEVICE_CODE_EXPIRED` | the blocking poll reached its deadline or got `expired_token` | no |
//! | `TOKEN_REFRESH_FAILED` | the refresh grant was refused or answered garbage | 5xx/429 only |
//! | `MCP_CHECK_FAILED` | the `tools/list` verification answered garbage | no |
//! | `TOKEN_STORE_FAILED` | the database or vault failed | no |

use std::fmt;

use super::store::StoreError;

/// Which exchange with the authorization server went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Discovery,
    Registration,
    DeviceAuthorization,
    TokenPoll,
    Refresh,
    McpCheck,
}

impl Step {
    /// How a failure of this step starts its message.
    fn failure(self) -> &'static str {
        match self {
            Step::Discovery => "Invalid OAuth configuration",
            Step::Registration => "Client registration failed",
            Step::DeviceAuthorization => "Failed to obtain device code",
            Step::TokenPoll => "Device code authorization failed",
            Step::Refresh => "Token refresh failed",
            Step::McpCheck => "Token verification failed",
        }
    }

    fn code(self) -> &'static str {
        match self {
            Step::Discovery => "OAUTH_DISCOVERY_INVALID",
            Step::Registration => "CLIENT_REGISTRATION_FAILED",
            Step::DeviceAuthorization | Step::TokenPoll => "DEVICE_CODE_FAILED",
            Step::Refresh => "TOKEN_REFRESH_FAILED",
            Step::McpCheck => "MCP_CHECK_FAILED",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Discovery => "OAuth discovery",
            Step::Registration => "client registration",
            Step::DeviceAuthorization => "device authorization",
            Step::TokenPoll => "token",
            Step::Refresh => "token refresh",
            Step::McpCheck => "MCP",
        })
    }
}

/// Everything that can stop a device-code command.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("{0}")]
    InvalidOption(String),
    #[error("{0}")]
    MissingOption(String),
    #[error("host not configured: pass --host <host> (for example project.feishu.cn) or set MEEGLE_HOST")]
    HostNotConfigured,
    #[error("`{0}` uses plain http://, which is allowed only for 127.0.0.1, ::1 and localhost; pass the host without a scheme or with https://")]
    InsecureHost(String),
    #[error("could not set up the HTTP client: {0}")]
    HttpClient(String),
    #[error("could not reach the {step} endpoint {url}: {detail}")]
    Network {
        step: Step,
        url: String,
        detail: String,
    },
    #[error("{}: the server answered HTTP {status}{}", status_failure(*.step), status_hint(*.step))]
    HttpStatus { step: Step, status: u16 },
    #[error("{}: {detail}", .step.failure())]
    Malformed { step: Step, detail: String },
    #[error("This site does not support the Device Code flow: its OAuth discovery document has no device_authorization_endpoint")]
    DeviceFlowUnsupported,
    #[error("Device code authorization failed: {0}")]
    AuthorizationFailed(String),
    #[error("Authorization timed out, please re-run lark-service auth login --device-code")]
    Expired,
    #[error("Token refresh failed: the server refused the refresh token (HTTP {status}{})", .error.as_deref().map(|e| format!(", {e}")).unwrap_or_default())]
    RefreshRejected { status: u16, error: Option<String> },
    #[error("token store failed: {0}; check DATABASE_URL and ENCRYPTION_KEY")]
    Store(#[from] StoreError),
}

fn status_failure(step: Step) -> &'static str {
    match step {
        Step::Discovery => "Failed to fetch OAuth configuration",
        other => other.failure(),
    }
}

fn status_hint(step: Step) -> &'static str {
    match step {
        Step::Discovery => " (check that the host is correct)",
        _ => "",
    }
}

fn server_side(status: u16) -> bool {
    status >= 500 || status == 429
}

impl DeviceError {
    /// The stable code printed in the error envelope.
    pub fn code(&self) -> &'static str {
        match self {
            DeviceError::InvalidOption(_) => "INVALID_OPTION",
            DeviceError::MissingOption(_) => "MISSING_OPTION",
            DeviceError::HostNotConfigured => "HOST_NOT_CONFIGURED",
            DeviceError::InsecureHost(_) => "INSECURE_HOST",
            DeviceError::HttpClient(_) | DeviceError::Network { .. } => "NETWORK_ERROR",
            DeviceError::HttpStatus {
                step: Step::Discovery,
                ..
            } => "OAUTH_DISCOVERY_FAILED",
            DeviceError::HttpStatus { step, .. } | DeviceError::Malformed { step, .. } => {
                step.code()
            }
            DeviceError::DeviceFlowUnsupported => "DEVICE_FLOW_UNSUPPORTED",
            DeviceError::AuthorizationFailed(_) => "DEVICE_CODE_FAILED",
            DeviceError::Expired => "DEVICE_CODE_EXPIRED",
            DeviceError::RefreshRejected { .. } => "TOKEN_REFRESH_FAILED",
            DeviceError::Store(_) => "TOKEN_STORE_FAILED",
        }
    }

    /// Whether running the same command again may succeed unchanged.
    pub fn retryable(&self) -> bool {
        match self {
            DeviceError::Network { .. } | DeviceError::AuthorizationFailed(_) => true,
            DeviceError::HttpStatus { status, .. } => server_side(*status),
            DeviceError::Malformed { step, .. } => {
                matches!(step, Step::DeviceAuthorization | Step::TokenPoll)
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_step() {
        let e = DeviceError::HttpStatus {
            step: Step::Discovery,
            status: 404,
        };
        assert_eq!(e.code(), "OAUTH_DISCOVERY_FAILED");
        assert!(!e.retryable());
        assert_eq!(
            e.to_string(),
            "Failed to fetch OAuth configuration: the server answered HTTP 404 (check that the host is correct)"
        );
        let e = DeviceError::Malformed {
            step: Step::Discovery,
            detail: "x".into(),
        };
        assert_eq!(e.code(), "OAUTH_DISCOVERY_INVALID");
        let e = DeviceError::HttpStatus {
            step: Step::Registration,
            status: 503,
        };
        assert_eq!(e.code(), "CLIENT_REGISTRATION_FAILED");
        assert!(e.retryable());
        let e = DeviceError::AuthorizationFailed("access_denied".into());
        assert_eq!(
            e.to_string(),
            "Device code authorization failed: access_denied"
        );
        assert!(e.retryable());
        assert!(!DeviceError::Expired.retryable());
    }
}
