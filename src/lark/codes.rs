//! Error codes of the open platform that the service reacts to.
//!
//! One list shared by the clients (to classify failures) and the simulator
//! (to produce them), so the two cannot drift apart. Codes come from the
//! platform's generic-error-code page as mirrored by the official CLI;
//! the few marked *sim-chosen* are not documented publicly and were picked
//! to be plausible, in the platform's numbering ranges.

/// The gateway's rate limit (usually with HTTP 429 and `x-ogw-ratelimit-reset`).
pub const RATE_LIMITED: i64 = 99991400;
/// Wrong `app_id` / `app_secret` on the app and tenant token endpoints.
pub const APP_CREDENTIALS_INVALID: i64 = 99991543;
/// The `Authorization` header is missing or empty.
pub const AUTHORIZATION_MISSING: i64 = 99991661;
/// Access token (any kind) invalid.
pub const ACCESS_TOKEN_INVALID: i64 = 99991663;
/// `app_access_token` invalid.
pub const APP_ACCESS_TOKEN_INVALID: i64 = 99991664;
/// `user_access_token` invalid, revoked or unknown.
pub const USER_ACCESS_TOKEN_INVALID: i64 = 99991668;
/// `user_access_token` expired; refresh it.
pub const USER_ACCESS_TOKEN_EXPIRED: i64 = 99991677;
/// The user did not grant a scope the call needs (the app has it enabled,
/// the user's token does not carry it). Source: larksuite/cli
/// `internal/output/lark_errors.go` (`LarkErrUserScopeInsufficient`) and
/// `internal/errclass/codemeta.go` (missing-scope subtype, not retryable):
/// only a new authorization that asks for the scope helps; refreshing keeps
/// the token's scopes.
pub const SCOPE_NOT_GRANTED: i64 = 99991679;
/// A request field failed validation.
pub const FIELD_VALIDATION_FAILED: i64 = 99992402;

/// Every code that means "the bearer token is no good; get a new one".
pub const TOKEN_INVALID: [i64; 4] = [
    ACCESS_TOKEN_INVALID,
    APP_ACCESS_TOKEN_INVALID,
    USER_ACCESS_TOKEN_INVALID,
    USER_ACCESS_TOKEN_EXPIRED,
];

/// OAuth: a required parameter is missing or malformed.
pub const OAUTH_INVALID_REQUEST: i64 = 20001;
/// OAuth: `client_id` / `client_secret` wrong.
pub const OAUTH_INVALID_CLIENT: i64 = 20002;
/// OAuth: the authorization code is unknown.
pub const AUTH_CODE_INVALID: i64 = 20003;
/// OAuth: the authorization code is older than its 5-minute lifetime.
pub const AUTH_CODE_EXPIRED: i64 = 20004;
/// OAuth: the authorization code was already exchanged (codes are single
/// use). *Sim-chosen*: the platform documents single use, not this number.
pub const AUTH_CODE_USED: i64 = 20065;
/// OAuth: `redirect_uri` or PKCE `code_verifier` does not match the
/// authorization request. *Sim-chosen.*
pub const AUTH_GRANT_MISMATCH: i64 = 20071;
/// The authorization code or refresh token was not issued to this client
/// (`client_id` mismatch).
pub const REFRESH_TOKEN_WRONG_CLIENT: i64 = 20024;
/// Refresh token invalid (or in the v1 format).
pub const REFRESH_TOKEN_INVALID: i64 = 20026;
/// Refresh token expired.
pub const REFRESH_TOKEN_EXPIRED: i64 = 20037;
/// Authentication service error; retrying is advised.
pub const AUTHN_SERVER_ERROR: i64 = 20050;
/// Refresh token revoked.
pub const REFRESH_TOKEN_REVOKED: i64 = 20064;
/// The refresh endpoint is temporarily unavailable.
pub const REFRESH_UNAVAILABLE: i64 = 20072;
/// Refresh token already used: refresh tokens rotate and are single use.
pub const REFRESH_TOKEN_USED: i64 = 20073;
/// The app does not allow refresh tokens (`offline_access` switched off).
pub const REFRESH_NOT_ALLOWED: i64 = 20074;

/// Every code after which only a new authorization by the user helps.
///
/// Source: larksuite/cli `internal/errclass/codemeta.go`, which files
/// 20024/20026/20037/20064/20073 under the refresh-token-invalid, -expired,
/// -revoked and -reused subtypes and 20074 ("app specified not allows for
/// refresh token") under app-unavailable; none is retryable there, and
/// presenting the same refresh token again cannot change the answer.
pub const NEEDS_REAUTH: [i64; 6] = [
    REFRESH_TOKEN_WRONG_CLIENT,
    REFRESH_TOKEN_INVALID,
    REFRESH_TOKEN_EXPIRED,
    REFRESH_TOKEN_REVOKED,
    REFRESH_TOKEN_USED,
    REFRESH_NOT_ALLOWED,
];

/// Refresh answers worth trying again later with the same refresh token.
///
/// Source: larksuite/cli `internal/errclass/codemeta.go` files both under
/// `SubtypeRefreshServerError`: 20050 "refresh endpoint transient error"
/// (`Retryable: true`) and 20072 "refresh endpoint temporarily unavailable".
/// Neither says the refresh token was consumed, so it is kept.
pub const REFRESH_TRANSIENT: [i64; 2] = [AUTHN_SERVER_ERROR, REFRESH_UNAVAILABLE];

/// IM: message content invalid (not a JSON string, or not a card).
pub const IM_INVALID_CONTENT: i64 = 230001;
/// IM: message not found (or recalled). *Sim-chosen.*
pub const IM_MESSAGE_NOT_FOUND: i64 = 230011;
/// IM: the card cannot be updated (e.g. `update_multi` missing).
pub const IM_CARD_NOT_UPDATABLE: i64 = 230099;

/// Aily: session or run not found. *Sim-chosen.*
pub const AILY_NOT_FOUND: i64 = 2320404;

#[cfg(test)]
mod tests {
    //! One test per refresh code, so a reclassification is a visible change.

    use super::*;

    fn reauth(code: i64) -> bool {
        NEEDS_REAUTH.contains(&code)
    }

    fn transient(code: i64) -> bool {
        REFRESH_TRANSIENT.contains(&code)
    }

    #[test]
    fn code_20024_wrong_client_needs_reauth() {
        assert!(reauth(20024) && !transient(20024));
    }

    #[test]
    fn code_20026_invalid_needs_reauth() {
        assert!(reauth(20026) && !transient(20026));
    }

    #[test]
    fn code_20037_expired_needs_reauth() {
        assert!(reauth(20037) && !transient(20037));
    }

    #[test]
    fn code_20064_revoked_needs_reauth() {
        assert!(reauth(20064) && !transient(20064));
    }

    #[test]
    fn code_20073_reused_needs_reauth() {
        assert!(reauth(20073) && !transient(20073));
    }

    #[test]
    fn code_20074_refresh_not_allowed_needs_reauth() {
        assert!(reauth(20074) && !transient(20074));
    }

    #[test]
    fn code_20050_server_error_is_transient() {
        assert!(transient(20050) && !reauth(20050));
    }

    #[test]
    fn code_20072_unavailable_is_transient() {
        assert!(transient(20072) && !reauth(20072));
    }

    #[test]
    fn no_code_is_both() {
        assert!(NEEDS_REAUTH.iter().all(|c| !transient(*c)));
    }
}
