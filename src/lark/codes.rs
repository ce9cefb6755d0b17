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
/// Refresh token invalid (or in the v1 format).
pub const REFRESH_TOKEN_INVALID: i64 = 20026;
/// Refresh token expired.
pub const REFRESH_TOKEN_EXPIRED: i64 = 20037;
/// Authentication service error; retrying once is advised.
pub const AUTHN_SERVER_ERROR: i64 = 20050;
/// Refresh token revoked.
pub const REFRESH_TOKEN_REVOKED: i64 = 20064;
/// Refresh token already used: refresh tokens rotate and are single use.
pub const REFRESH_TOKEN_USED: i64 = 20073;

/// Every code after which only a new authorization by the user helps.
pub const NEEDS_REAUTH: [i64; 4] = [
    REFRESH_TOKEN_INVALID,
    REFRESH_TOKEN_EXPIRED,
    REFRESH_TOKEN_REVOKED,
    REFRESH_TOKEN_USED,
];

/// IM: message content invalid (not a JSON string, or not a card).
pub const IM_INVALID_CONTENT: i64 = 230001;
/// IM: message not found (or recalled). *Sim-chosen.*
pub const IM_MESSAGE_NOT_FOUND: i64 = 230011;
/// IM: the card cannot be updated (e.g. `update_multi` missing).
pub const IM_CARD_NOT_UPDATABLE: i64 = 230099;

/// Aily: session or run not found. *Sim-chosen.*
pub const AILY_NOT_FOUND: i64 = 2320404;
